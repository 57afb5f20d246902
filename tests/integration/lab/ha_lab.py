"""The multi-host HA deployment the scenarios run on, and the acknowledged-write checker.

3 MariaDB servers with semi-sync (node0..2), 3 etcd members (etcd0..2), 2 managers (mgr1, mgr2)
and 2 proxies (proxy-a, proxy-b), each on a lab host of its own. Clients run in the test's own
namespace, which no partition cuts: a client of proxy A keeps reaching proxy A, as the
application servers beside it would.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from integration.ha.ha_harness import TIMINGS, wait_until
from turnout.sandbox.config import APP, MANAGER, REPLICATION
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.sandbox import Sandbox

TURNOUT = [sys.executable, "-m", "turnout.cli"]
# Long enough that a master cut off from its replicas never acknowledges (or commits) alone while
# the test runs: longer than detection + poll + proxy lease (README: semi-sync trade-off).
SEMI_SYNC_TIMEOUT_MS = 600_000
# The loopback timings, with deadlines that outlast an etcd leader election (the lab's members
# elect within about 1-3 s): losing one member, even the leader, must change nothing.
LAB_TIMINGS = {**TIMINGS, "LeaderLeaseSeconds": 6, "LeaderRenewDeadlineSeconds": 4.5,
               "ProxyLeaseSeconds": 6, "ProxyRenewDeadlineSeconds": 4.5}


def api(host: str, path: str, timeout: float = 10) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://{host}:3000/api/{path}", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None


def leads(host: str) -> bool:
    try:
        return api(host, "leader-check", timeout=3)[0] == 200
    except OSError:
        return False


@dataclass
class Deployment:
    box: Sandbox
    workdir: Path
    url: str
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def cluster(self, via: str) -> dict[str, Any]:
        """The manager's view of the one cluster; KeyError (waited out by wait_until) while it has none:
        a manager that just started or just took the lead lists no cluster until its first discovery."""
        status, body = api(self.hosts[via], "clusters-info")
        assert status == 200, body
        if not body:
            raise KeyError(f"{via} knows no cluster yet")
        return dict(body[0])

    def master(self, via: str = "mgr1") -> str:
        m = self.cluster(via)["Master"]
        return f"{m['Hostname']}:{m['Port']}"

    def phase(self, via: str) -> str:
        return str(self.cluster(via)["Phase"])

    def global_status(self, proxy: str, name: str) -> str | None:
        # ProxySQL's admin:admin works from localhost only: the test comes from another host
        with pymysql.connect(host=self.hosts[proxy], port=6032, user="radmin", password="radmin", autocommit=True,
                             connect_timeout=3, read_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = %s", (name,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def deploy(box: Sandbox, workdir: Path) -> Deployment:
    lab = box.lab
    url = box.etcd.store_url("/ha-scenarios")
    made = Deployment(box, workdir, url)
    box.execute(0, f"SET GLOBAL rpl_semi_sync_master_timeout = {SEMI_SYNC_TIMEOUT_MS}")
    for name in ("mgr1", "mgr2", "proxy-a", "proxy-b"):
        made.hosts[name] = lab.add_host(name)
    for name in ("mgr1", "mgr2"):
        values: dict[str, Any] = {
            "ListenAddress": "0.0.0.0:3000", "AdvertiseAddress": f"{made.hosts[name]}:3000", "ManagerId": name,
            "MySQLTopologyUser": MANAGER.user, "MySQLTopologyPassword": MANAGER.password,
            "MySQLReplicaUser": REPLICATION.user, "MySQLReplicaPassword": REPLICATION.password,
            "StateStore": url, "DiscoverySeeds": [box.nodes[0].address], **LAB_TIMINGS,
        }
        config = workdir / f"{name}.toml"
        config.write_text("[manager]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
        made.procs[name] = lab.spawn(name, [*TURNOUT, "manager", "--config", str(config)], log=workdir / f"{name}.log")
        if name == "mgr1":  # mgr1 leads first, so the scenarios know which one to kill
            wait_until(lambda: leads(made.hosts["mgr1"]), "mgr1 to lead", 60)
    for name in ("proxy-a", "proxy-b"):
        text = sandbox_config(box, workdir / f"{name}-data", 6033, 6032, state_store=url, bind="0.0.0.0")
        text = text.replace("connect_timeout_server_max = 10000", "connect_timeout_server_max = 4000")
        text = text.replace('admin_credentials = "admin:admin"', 'admin_credentials = "admin:admin;radmin:radmin"')
        text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in LAB_TIMINGS.items() if k.startswith("Proxy"))
        config = workdir / f"{name}.toml"
        config.write_text(text)
        made.procs[name] = lab.spawn(name, [*TURNOUT, "proxy", "--config", str(config)], log=workdir / f"{name}.log")
    for name in ("proxy-a", "proxy-b"):
        wait_until(lambda name=name: made.global_status(name, "Store_proxy_fenced") == "0", f"{name} to be up", 60)
    wait_until(lambda: made.master("mgr2") == box.nodes[0].address, "mgr2 to follow", 60)
    box.execute(0, "CREATE DATABASE IF NOT EXISTS ha",
                "CREATE TABLE IF NOT EXISTS ha.w (id BIGINT PRIMARY KEY, via CHAR(1), created DATETIME(6))")
    box.wait_replicas_caught_up()
    return made


@dataclass
class Writer:
    """Autocommit inserts through one proxy; every acknowledged id is recorded with its time."""

    deployment: Deployment
    proxy: str
    ids: itertools.count[int]
    lock: threading.Lock
    acked: list[tuple[int, float]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = pymysql.connect(host=self.deployment.hosts[self.proxy], port=6033, user=APP.user,
                                           password=APP.password, autocommit=True, connect_timeout=5,
                                           read_timeout=30, write_timeout=30)
                with self.lock:
                    next_id = next(self.ids)
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO ha.w VALUES (%s, %s, NOW(6))", (next_id, self.proxy[-1]))
                self.acked.append((next_id, time.time()))
            except pymysql.err.MySQLError as exc:
                self.errors.append((time.time(), str(exc)))
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.01)
        if conn is not None:
            conn.close()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(60)

    def longest_pause(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement within [start, end]."""
        times = [start, *sorted(t for _, t in self.acked if start <= t <= end), end]
        return max(b - a for a, b in itertools.pairwise(times))


def writers(deployment: Deployment, *proxies: str) -> list[Writer]:
    ids = itertools.count(1)
    lock = threading.Lock()
    made = [Writer(deployment, proxy, ids, lock) for proxy in proxies]
    for writer in made:
        writer.start()
    return made


def rows(box: Sandbox, index: int) -> dict[int, float]:
    found = box.execute(index, "SELECT id, UNIX_TIMESTAMP(created) AS at FROM ha.w")
    return {int(r["id"]): float(r["at"]) for r in found}
