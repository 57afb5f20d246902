"""The web console in a real headless Chromium against `turnout up` in front of a real sandbox.

One scenario, in order, without ever reloading the page: the tree shows the real topology, a
graceful takeover started from the console succeeds and is audited with the operator's name, the
read-only viewer sees everything and the server refuses its actions, and a kill -9 of the master
appears (dead master marked, the recovery, the new master and epoch).

Screenshots go to the test's directory; with TURNOUT_SCREENSHOTS=docs/console they are also
copied there (that is how the README's pictures are made).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import playwright.async_api as playwright_api
import pymysql
import pytest

from system_harness import spawn_turnout, stop_process
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OPERATOR = ("alice", "s3cret-pass")
WAIT_MS = 90_000


@dataclass
class Turnout:
    box: Sandbox
    url: str
    proxy_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, user: tuple[str, str] = OPERATOR, prefix: str = "/api/") -> tuple[int, Any]:
        token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        request = urllib.request.Request(f"{self.url}{prefix}{path}", headers={"Authorization": f"Basic {token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


async def until(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError, KeyError, IndexError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
async def turnout(make_sandbox: Any, tmp_path: Path) -> AsyncIterator[Turnout]:
    box: Sandbox = make_sandbox(replicas=2, semi_sync=True)
    base = free_port_block(3)
    config = sandbox_config(box, tmp_path / "data", base, base + 1, api_port=base + 2).replace(
        "[manager]\n",
        f'[manager]\nAuthenticationMethod = "multi"\nHTTPAuthUser = "{OPERATOR[0]}"\n'
        f'HTTPAuthPassword = "{OPERATOR[1]}"\n', 1)
    (tmp_path / "turnout.toml").write_text(config)
    log = tmp_path / "turnout.log"
    process = spawn_turnout("up", tmp_path / "turnout.toml", log)
    running = Turnout(box, f"http://127.0.0.1:{base + 2}", base, process, log)
    try:
        await until(lambda: running.api("clusters-info")[1], "the manager to discover the sandbox", 30)
        yield running
    finally:
        stop_process(process)


class Traffic(threading.Thread):
    """Reads and writes through the proxy until stopped, so pools and questions per second move."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                conn = pymysql.connect(host="127.0.0.1", port=self.port, user=APP.user, password=APP.password,
                                       autocommit=True, connect_timeout=2, read_timeout=10)
                with conn, conn.cursor() as cur:
                    while not self.stopped.is_set():
                        cur.execute("INSERT INTO console.t (v) VALUES (1)")
                        cur.execute("SELECT COUNT(*) FROM console.t")
                        self.stopped.wait(0.02)
            except pymysql.err.MySQLError:
                self.stopped.wait(0.2)


async def test_console_shows_topology_takeover_viewer_and_failover(turnout: Turnout, tmp_path: Path) -> None:
    box = turnout.box
    m, r1, r2 = (n.address for n in box.nodes)
    box.execute(0, "CREATE DATABASE console", "CREATE TABLE console.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    box.wait_replicas_caught_up()
    traffic = Traffic(turnout.proxy_port)
    traffic.start()
    shots = tmp_path / "screenshots"
    shots.mkdir()
    expect = playwright_api.expect
    try:
        async with playwright_api.async_playwright() as pw:
            # Playwright starts Chromium with a fresh temporary user-data-dir of its own.
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                operator_ctx = await browser.new_context(
                    viewport={"width": 1280, "height": 860},
                    http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]})
                viewer_ctx = await browser.new_context(
                    viewport={"width": 1280, "height": 860},
                    http_credentials={"username": "readonly", "password": "anything"})
                page = await operator_ctx.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(turnout.url + "/")
                await page.evaluate("window.__notReloaded = true")

                # ---- the tree shows the real topology ------------------------------------------
                card = page.locator("[data-cluster]")
                await expect(card).to_have_count(1, timeout=WAIT_MS)
                await expect(card.locator("[data-role=published-master]")).to_have_text(m)
                await expect(card.locator("[data-role=epoch]")).to_have_text("epoch 1")
                rows = card.locator("tbody tr")
                await expect(rows).to_have_count(3, timeout=WAIT_MS)
                assert await rows.nth(0).get_attribute("data-server") == m
                assert sorted([await rows.nth(1).get_attribute("data-server"),
                               await rows.nth(2).get_attribute("data-server")]) == sorted([r1, r2])
                master_row = card.locator(f'tr[data-server="{m}"]')
                await expect(master_row).to_contain_text("published master")
                await expect(master_row).to_contain_text("OFF")  # read_only
                await expect(master_row).to_contain_text("master")  # semi-sync side
                for replica in (r1, r2):
                    row = card.locator(f'tr[data-server="{replica}"]')
                    await expect(row).to_contain_text("IO Yes", timeout=WAIT_MS)
                    await expect(row).to_contain_text("SQL Yes", timeout=WAIT_MS)
                    await expect(row).to_contain_text("replica")
                proxy = page.locator('[data-proxy="local"]')
                await expect(proxy.locator("[data-role=applies]")).to_contain_text(f"master {m} epoch 1", timeout=WAIT_MS)
                await expect(proxy.locator("[data-role=writer]")).to_have_text(f"hg 10 writes to {m}", timeout=WAIT_MS)
                await expect(proxy.locator("[data-role=qps]")).to_have_text(re.compile(r"^[1-9][0-9]*$"), timeout=WAIT_MS)
                await expect(page.locator(".toast")).to_have_count(0)
                await page.screenshot(path=shots / "console-clusters.png")

                # ---- a graceful takeover from the console, by keyboard ----------------------------
                await page.locator("body").click(position={"x": 5, "y": 200})
                await page.keyboard.press("t")
                dialog = page.locator("#dlg-takeover")
                await expect(dialog).to_be_visible()
                await page.select_option("#tk-designated", r1)
                await expect(page.locator("#tk-verdict")).to_contain_text("Allowed", timeout=WAIT_MS)
                await expect(page.locator("#tk-checks li.yes")).not_to_have_count(0)
                await expect(page.locator("#tk-checks li.no")).to_have_count(0)
                await page.keyboard.press("Tab")  # to the "auto" checkbox
                await page.keyboard.press("Space")
                assert await page.locator("#tk-auto").is_checked()
                await page.screenshot(path=shots / "console-takeover-checks.png")
                await expect(page.locator("#tk-confirm")).to_be_enabled()
                await page.keyboard.press("Tab")
                await page.keyboard.press("Enter")
                await expect(page.locator("#tk-result")).to_contain_text("OK:", timeout=WAIT_MS)
                await expect(page.locator("#tk-result")).to_contain_text(f"published master {r1}")
                await page.keyboard.press("Escape")
                await expect(dialog).to_be_hidden()
                await expect(card.locator("[data-role=published-master]")).to_have_text(r1, timeout=WAIT_MS)
                await expect(card.locator("[data-role=epoch]")).to_have_text("epoch 2")
                await expect(card.locator("tbody tr").first).to_have_attribute("data-server", r1)
                status, audit = turnout.api("audit")
                assert status == 200
                mine = [e for e in audit if e["AuditType"] == "graceful-master-takeover-auto"
                        and "by alice from the console" in e["Message"]]
                assert mine and "OK" in mine[0]["Message"], audit[:5]
                await expect(page.locator("#audit-body")).to_contain_text("by alice from the console", timeout=WAIT_MS)

                # ---- the viewer sees everything; the server refuses its actions ---------------------
                viewer = await viewer_ctx.new_page()
                await viewer.goto(turnout.url + "/")
                vcard = viewer.locator("[data-cluster]")
                await expect(vcard.locator("[data-role=epoch]")).to_have_text("epoch 2", timeout=WAIT_MS)
                await expect(viewer.locator("#role")).to_have_text("viewer: read-only")
                await expect(vcard.get_by_role("button", name="Takeover…")).to_be_disabled()
                name = await vcard.get_attribute("data-cluster")
                assert name is not None
                host, port = r2.rsplit(":", 1)
                for path in (f"/api/graceful-master-takeover/{name}/{host}/{port}",
                             f"/api/begin-downtime/{host}/{port}/readonly/try/1h", f"/api/unfence/{host}/{port}"):
                    answer = await viewer.evaluate(
                        """async (path) => { const r = await fetch(path, {headers: {"X-Turnout-Console": "1"}});
                                             return [r.status, await r.json()]; }""", path)
                    assert answer[0] == 403 and answer[1]["Code"] == "ERROR", (path, answer)
                status, info = turnout.api("clusters-info", ("readonly", "whatever"))
                assert status == 200 and info[0]["Epoch"] == 2 and info[0]["Master"]["Port"] == int(r1.rsplit(":")[1])
                status, inst = turnout.api(f"instance/{host}/{port}")
                assert status == 200 and inst["IsDowntimed"] is False
                status, _ = turnout.api("openapi.json", ("readonly", ""))
                assert status == 200
                status, _ = turnout.api("clusters", ("alice", "wrong"))
                assert status == 401
                await viewer.close()

                # ---- kill -9 of the master: seen live, without a reload -------------------------------
                victim = box.index_of_port(int(r1.rsplit(":", 1)[1]))
                assert victim is not None
                box.kill(victim)
                dead = card.locator(f'tr[data-server="{r1}"].dead')
                await expect(dead).to_have_count(1, timeout=WAIT_MS)
                await expect(card.locator("[data-role=published-master]")).not_to_have_text(r1, timeout=WAIT_MS)
                await expect(card.locator("[data-role=epoch]")).to_have_text("epoch 3", timeout=WAIT_MS)
                new_master = await card.locator("[data-role=published-master]").inner_text()
                assert new_master in (m, r2)
                recovery = page.locator("[data-recovery]").first
                await expect(recovery).to_contain_text(r1, timeout=WAIT_MS)
                await expect(recovery).to_contain_text(new_master)
                await expect(recovery).to_contain_text("recovered")
                await expect(page.locator("#audit-body")).to_contain_text(f"DeadMaster detected on {r1}", timeout=WAIT_MS)
                await expect(card.locator(f'tr[data-server="{r1}"]')).to_contain_text("fenced", timeout=WAIT_MS)
                await expect(dead).to_contain_text("unreachable", timeout=WAIT_MS)
                await expect(proxy.locator("[data-role=applies]")).to_contain_text(f"master {new_master} epoch 3",
                                                                           timeout=WAIT_MS)
                await expect(proxy.locator("[data-role=writer]")).to_have_text(f"hg 10 writes to {new_master}",
                                                                              timeout=WAIT_MS)
                writer_row = proxy.locator(f'tr[data-row="10|{new_master}"]')
                await expect(writer_row).to_contain_text("ONLINE", timeout=WAIT_MS)
                assert await page.evaluate("window.__notReloaded === true")
                await expect(page.locator(".toast")).to_have_count(0, timeout=WAIT_MS)
                await expect(card.locator(f'tr[data-server="{r1}"]')).to_contain_text("fenced former master")
                await page.locator("[data-recovery] summary").first.click()
                await page.set_viewport_size({"width": 1600, "height": 1000})  # a wide screen: two columns
                await page.evaluate("window.scrollTo(0, 0)")
                await page.screenshot(path=shots / "console-failover.png")

                # ---- acknowledge, downtime and end it, all from the console ------------------------------
                await page.set_viewport_size({"width": 1280, "height": 860})
                action = page.locator("#dlg-action")
                await card.get_by_role("button", name="Acknowledge…").focus()
                await page.keyboard.press("Enter")
                await expect(action).to_be_visible()
                await page.keyboard.type("seen in the console test")
                await page.keyboard.press("Enter")
                await expect(page.locator("#act-result")).to_contain_text("OK: Acknowledged cluster recoveries", timeout=WAIT_MS)
                await expect(recovery).to_contain_text("acknowledged by alice", timeout=WAIT_MS)
                await expect(action).to_be_hidden(timeout=WAIT_MS)
                replica_row = card.locator("tbody tr").nth(1)
                replica_key = await replica_row.get_attribute("data-server")
                await replica_row.get_by_role("button", name="Downtime…").click()
                await page.fill("#act-reason", "kernel upgrade")
                await page.fill("#act-duration", "10m")
                await page.keyboard.press("Enter")
                await expect(replica_row).to_contain_text("alice: kernel upgrade", timeout=WAIT_MS)
                await expect(action).to_be_hidden(timeout=WAIT_MS)
                await replica_row.get_by_role("button", name="End downtime").click()
                await page.locator("#act-confirm").press("Enter")
                await expect(replica_row).not_to_contain_text("downtimed", timeout=WAIT_MS)
                header = page.locator("#manager")
                await header.get_by_role("button", name="Disable…").click()
                await page.locator("#act-confirm").press("Enter")
                await expect(header).to_contain_text("automated recoveries disabled", timeout=WAIT_MS)
                await expect(card).to_contain_text("auto-recovery off", timeout=WAIT_MS)
                await expect(action).to_be_hidden(timeout=WAIT_MS)
                await header.get_by_role("button", name="Enable…").click()
                await page.locator("#act-confirm").press("Enter")
                await expect(header).to_contain_text("automated recoveries on", timeout=WAIT_MS)
                await expect(card).to_contain_text("auto-recovery on", timeout=WAIT_MS)
                status, audit = turnout.api("audit")
                ours = {e["AuditType"] for e in audit if "by alice from the console → OK" in e["Message"]}
                assert ours == {"graceful-master-takeover-auto", "ack-recovery", "begin-downtime", "end-downtime",
                                "disable-global-recoveries", "enable-global-recoveries"}, ours
                status, recoveries = turnout.api("audit-recovery")
                assert recoveries[0]["AcknowledgedBy"] == "alice"
                assert recoveries[0]["AcknowledgedComment"] == "seen in the console test"
                assert replica_key is not None

                # With no designated replica, the checks are those of the replica the manager would pick.
                status, check = turnout.api(f"takeover-check/{name}", ("readonly", "x"), prefix="/console/api/")
                assert status == 200 and check["verdict"]["ok"] and check["verdict"]["successor"] == replica_key
                assert "designated replica is eligible" in {c["name"] for c in check["checks"]}
                assert not errors, errors
            finally:
                await browser.close()
    finally:
        traffic.stopped.set()
        traffic.join(timeout=15)
    keep = os.environ.get("TURNOUT_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for shot in shots.iterdir():
            shutil.copy(shot, Path(keep) / shot.name)


