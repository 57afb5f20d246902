"""`turnout up` as a real process in front of a sandbox, for end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox


@dataclass
class RunningTurnout:
    box: Sandbox
    proxy_port: int
    admin_port: int
    api_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, timeout: float = 60) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/api/{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def cluster(self) -> dict[str, Any]:
        clusters = self.api("clusters-info", timeout=5)
        assert clusters, "the manager knows no cluster"
        return clusters[0]  # type: ignore[no-any-return]

    def master(self) -> str:
        master = self.cluster()["Master"]
        return f"{master['Hostname']}:{master['Port']}"

    def admin(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(host="127.0.0.1", port=self.admin_port, user="admin", password="admin", autocommit=True)

    def global_status(self, name: str) -> str:
        with self.admin() as conn, conn.cursor() as cur:
            cur.execute("SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = %s", (name,))
            row = cur.fetchone()
        assert row is not None, name
        return str(row[0])


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (OSError, AssertionError, pymysql.err.MySQLError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_turnout(box: Sandbox, workdir: Path, *extra: str) -> RunningTurnout:
    base = free_port_block(3)
    config = workdir / "turnout.toml"
    config.write_text(sandbox_config(box, workdir / "data", base, base + 1, api_port=base + 2))
    log = workdir / "turnout.log"
    process = spawn_turnout("up", config, log, *extra)
    running = RunningTurnout(box, base, base + 1, base + 2, process, log)
    wait_for(lambda: running.master() is not None, 30, "the manager to discover the sandbox")
    return running


def spawn_turnout(role: str, config: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`turnout ROLE --config CONFIG EXTRA...` as a process, its output in `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "turnout.cli", role, "--config", str(config), *extra], stdout=out, stderr=out
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM; SIGKILL if the process has not exited 15 s later."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


@contextmanager
def turnout_process(role: str, config: Path, log: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """`spawn_turnout`, stopped on leaving the block."""
    process = spawn_turnout(role, config, log, *extra)
    try:
        yield process
    finally:
        stop_process(process)


def stop_turnout(running: RunningTurnout) -> None:
    stop_process(running.process)


@pytest.fixture
def turnout_up(fresh_sandbox: Sandbox, tmp_path: Path) -> Iterator[RunningTurnout]:
    running = start_turnout(fresh_sandbox, tmp_path)
    try:
        yield running
    finally:
        stop_turnout(running)


@pytest.fixture
def turnout_up_semisync(make_sandbox: Any, tmp_path: Path) -> Iterator[RunningTurnout]:
    running = start_turnout(make_sandbox(replicas=2, semi_sync=True), tmp_path)
    try:
        yield running
    finally:
        stop_turnout(running)
