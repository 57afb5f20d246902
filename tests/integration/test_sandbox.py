"""The sandbox itself: real servers, real replication, and the CLI around it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from turnout.sandbox.config import APP
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox, SandboxError, pid_alive

TURNOUT = [sys.executable, "-m", "turnout.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TURNOUT, *args], capture_output=True, text=True, timeout=120)


def test_cli_up_status_down(tmp_path: Path) -> None:
    directory = tmp_path / "sbx"
    base = free_port_block(3)
    up = run_cli("sandbox", "up", "--dir", str(directory), "--base-port", str(base), "--replicas", "2")
    assert up.returncode == 0, up.stderr
    try:
        status = json.loads(run_cli("sandbox", "status", "--dir", str(directory), "--json").stdout)
        roles = [row["role"] for row in status]
        assert roles == ["master", "replica", "replica"]
        assert [row["read_only"] for row in status] == [False, True, True]
        for row in status[1:]:
            assert row["replicating_from"] == f"127.0.0.1:{base}"
            assert (row["io_thread"], row["sql_thread"], row["lag"]) == ("Yes", "Yes", 0)

        box = Sandbox.open(directory)
        box.execute(0, "CREATE DATABASE IF NOT EXISTS t", "CREATE TABLE t.x (id INT PRIMARY KEY)",
                    "INSERT INTO t.x VALUES (42)")
        deadline = time.monotonic() + 1.0
        seen: set[int] = set()
        while time.monotonic() < deadline and len(seen) < 2:
            for node in (1, 2):
                try:
                    if box.execute(node, "SELECT id FROM t.x") == [{"id": 42}]:
                        seen.add(node)
                except pymysql.err.ProgrammingError:
                    pass
            time.sleep(0.01)
        assert seen == {1, 2}, "the row did not reach both replicas within a second"
        pids = [row["pid"] for row in status]
    finally:
        down = run_cli("sandbox", "down", "--dir", str(directory))
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)


def test_up_reuses_existing_dir_and_survives_stale_pid(make_sandbox) -> None:  # type: ignore[no-untyped-def]
    box = make_sandbox(replicas=1)
    box.kill(1)
    box.node(1).paths.pid_file.write_text("999999\n")  # stale
    again = Sandbox.create(box.dir, box.meta.base_port, 1)
    assert again.pid(1) is not None
    assert again.status()[1]["role"] == "replica"


def test_errors_are_one_line_and_actionable(tmp_path: Path, make_sandbox) -> None:  # type: ignore[no-untyped-def]
    not_sandbox = tmp_path / "other"
    not_sandbox.mkdir()
    (not_sandbox / "file").write_text("x")
    result = run_cli("sandbox", "up", "--dir", str(not_sandbox), "--base-port", "23306", "--replicas", "1")
    assert result.returncode == 1
    assert "is not a turnout sandbox" in result.stderr

    box = make_sandbox(replicas=0)
    with pytest.raises(SandboxError, match="already in use"):
        Sandbox.create(tmp_path / "clash", box.meta.base_port, 0)

    status = run_cli("sandbox", "status", "--dir", str(tmp_path / "missing"))
    assert status.returncode == 1 and "create one with" in status.stderr


def test_pause_resume_and_app_user_cannot_bypass_read_only(sandbox: Sandbox) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo, \
            sandbox.connect(1, user=APP.user, password=APP.password) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS app_write_test")
    assert excinfo.value.args[0] == 1290  # ER_OPTION_PREVENTS_STATEMENT: read_only
    sandbox.pause(2)
    try:
        assert sandbox.status()[2]["state"] == "paused"
    finally:
        sandbox.resume(2)
    assert sandbox.status()[2]["state"] == "running"
