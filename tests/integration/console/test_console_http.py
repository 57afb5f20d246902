"""The API's and the console's HTTP side over real sockets: authentication, refusals, audit with
the user, the static page, the live event stream and the listener warning. No MySQL needed: the
manager service runs with an empty topology over a real SQLite state store."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from turnout.api.app import serve
from turnout.manager.service import ManagerService
from turnout.manager.settings import ManagerSettings
from turnout.sandbox.ports import free_port_block
from turnout.state import SQLiteStateStore
from turnout.state.base import ClusterState


def auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


DBA = auth("dba", "pw")
VIEWER = auth("readonly", "whatever")


async def start(tmp_path: Path, host: str = "127.0.0.1", **settings: Any) -> tuple[ManagerService, Any, str]:
    store = SQLiteStateStore(tmp_path / f"state-{len(list(tmp_path.iterdir()))}.db")
    service = ManagerService(ManagerSettings.from_mapping(settings), store)
    port = free_port_block(1)
    runner = await serve(service, host, port)
    return service, runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def multi(tmp_path: Path) -> AsyncIterator[tuple[ManagerService, str]]:
    service, runner, url = await start(tmp_path, AuthenticationMethod="multi", HTTPAuthUser="dba",
                                       HTTPAuthPassword="pw")
    try:
        yield service, url
    finally:
        await runner.cleanup()
        await service.store.close()


async def test_multi_authentication_for_api_and_console(multi: tuple[ManagerService, str]) -> None:
    service, url = multi
    async with aiohttp.ClientSession() as http:
        for path in ("/api/clusters", "/", "/console/api/model", "/console/static/console.js"):
            async with http.get(url + path) as answer:
                assert answer.status == 401, path
                assert answer.headers["WWW-Authenticate"].startswith("Basic")
            async with http.get(url + path, headers=auth("dba", "nope")) as answer:
                assert answer.status == 401, path
            for who in (DBA, VIEWER):
                async with http.get(url + path, headers=who) as answer:
                    assert answer.status == 200, path
        async with http.get(url + "/", headers=VIEWER) as answer:
            assert "turnout console" in await answer.text()
            assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
        async with http.get(url + "/console/api/model", headers=VIEWER) as answer:
            me = (await answer.json())["me"]
            assert me == {"user": "readonly", "can_act": False, "authentication": "multi"}

        # The viewer's actions are refused by the server and leave no trace.
        await service.store.begin_downtime("h:1", "ops", "disk", 3600)
        before = len(await service.store.audit_log())
        for path in ("/api/end-downtime/h/1", "/api/unfence/h/1", "/api/graceful-master-takeover/c",
                     "/api/begin-downtime/h/1/me/x/1h", "/api/discover/h/1"):
            async with http.get(url + path, headers=VIEWER) as answer:
                body = await answer.json()
                assert answer.status == 403 and body["Code"] == "ERROR" and body["Message"] == "Unauthorized", path
        assert [d.key for d in await service.store.downtimes()] == ["h:1"]
        assert len(await service.store.audit_log()) == before

        # A page of another site cannot make the operator's browser act.
        async with http.get(url + "/api/end-downtime/h/1", headers={**DBA, "Sec-Fetch-Site": "cross-site"}) as answer:
            assert answer.status == 403
        assert [d.key for d in await service.store.downtimes()] == ["h:1"]

        # The operator acts; the action is audited with who took it and from where.
        async with http.get(url + "/api/end-downtime/h/1", headers={**DBA, "X-Turnout-Console": "1",
                                                                   "Sec-Fetch-Site": "same-origin"}) as answer:
            assert answer.status == 200 and (await answer.json())["Code"] == "OK"
        assert await service.store.downtimes() == []
        async with http.get(url + "/api/unfence/h/1", headers=DBA) as answer:
            assert answer.status == 200
        # Acknowledgements carry the authenticated user, whatever ?owner= says (Orchestrator's getUserId).
        await service.store.publish(ClusterState("c1", "h:1", 1), None)
        rec = await service.store.start_recovery("c1", "DeadMaster", "h:1", manual=False)
        await service.store.finish_recovery(rec, True, "h:2", ())
        async with http.get(url + "/api/ack-all-recoveries?comment=seen&owner=someone", headers=DBA) as answer:
            assert answer.status == 200, await answer.text()
        assert [(r.acknowledged_by, r.acknowledge_comment) for r in await service.store.recoveries()] == [("dba", "seen")]
    entries = await service.store.audit_log()
    messages = [(e.action, e.message, e.instance) for e in entries]
    assert ("end-downtime", "end-downtime by dba from the console → OK: Downtime ended: h:1", "h:1") in messages
    assert ("unfence", "unfence by dba from the API → OK: h:1 was not fenced", "h:1") in messages


async def read_event(stream: aiohttp.StreamReader) -> tuple[str, Any]:
    event, data = "", ""
    while True:
        line = (await stream.readline()).decode()
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: "):
            data = line[6:].strip()
        elif line == "\n" and event:
            return event, json.loads(data)


async def test_live_events_and_shutdown_with_a_stream_open(tmp_path: Path) -> None:
    service, runner, url = await start(tmp_path, AuthenticationMethod="basic", HTTPAuthUser="dba",
                                       HTTPAuthPassword="pw")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/console/api/events", headers=VIEWER) as answer:
                assert answer.status == 401  # "basic" knows no readonly user
            async with http.get(url + "/console/api/events", headers=DBA) as answer:
                assert answer.headers["Content-Type"] == "text/event-stream"
                assert await read_event(answer.content) == (
                    "hello", {"user": "dba", "can_act": True, "authentication": "basic"})
                sections = {}
                while set(sections) != {"manager", "clusters", "proxies", "recoveries", "audit"}:
                    name, value = await read_event(answer.content)
                    sections[name] = value
                assert sections["clusters"] == [] and sections["proxies"] == []
                # An audited change reaches the open stream without asking.
                await service.store.audit("c1", "begin-downtime", "h:1 downtimed by dba", "h:1")
                while True:
                    name, value = await read_event(answer.content)
                    if name == "audit" and value and value[0]["steps"][-1]["message"] == "h:1 downtimed by dba":
                        break
                # The server stops while the stream is open: the stream ends, the stop completes.
                await runner.cleanup()
                assert await answer.content.read() == b""
    finally:
        await runner.cleanup()
        await service.store.close()


async def test_a_listener_beyond_loopback_without_authentication_warns(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="turnout.api")
    for host, settings, warned in (("0.0.0.0", {}, True), ("127.0.0.1", {}, False),
                                   ("0.0.0.0", {"AuthenticationMethod": "multi", "HTTPAuthUser": "dba",
                                                "HTTPAuthPassword": "pw"}, False)):
        caplog.clear()
        service, runner, url = await start(tmp_path, host, **settings)
        try:
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert bool(warnings) is warned, warnings
            if warned:
                assert "without authentication" in warnings[0] and 'AuthenticationMethod = "multi"' in warnings[0]
            async with aiohttp.ClientSession() as http, http.get(url + "/api/clusters", headers=DBA) as answer:
                assert answer.status == 200  # open without auth; the credentials are accepted with it
        finally:
            await runner.cleanup()
            await service.store.close()
        await asyncio.sleep(0)


async def cli(url: str, env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout.cli", *args, "--api", url, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def test_the_cli_authenticates_with_orchestrator_clients_variables(multi: tuple[ManagerService, str]) -> None:
    _, url = multi
    code, out = await cli(url, {"ORCHESTRATOR_AUTH_USER": ""}, "clusters")
    assert code != 0 and "ORCHESTRATOR_AUTH_USER" in out
    code, out = await cli(url, {"ORCHESTRATOR_AUTH_USER": "dba", "ORCHESTRATOR_AUTH_PASSWORD": "pw"}, "clusters")
    assert code == 0, out
    code, out = await cli(url, {"ORCHESTRATOR_AUTH_USER": "readonly", "ORCHESTRATOR_AUTH_PASSWORD": "x"},
                          "unfence", "-i", "h:1")
    assert code != 0 and "Unauthorized" in out, out
