"""One configuration file, one truth: `turnout manager` and `turnout proxy` started from the same
file keep and read their state in the same place, the datadir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from system_harness import turnout_process, wait_for
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox
from turnout.state.sqlite import SQLiteStateStore

pytestmark = pytest.mark.sandbox


def _api_clusters(port: int) -> list[dict[str, object]]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/clusters-info", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def _writer_port(proxy_port: int) -> int:
    with pymysql.connect(host="127.0.0.1", port=proxy_port, user=APP.user, password=APP.password,
                         autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port FROM DUAL FOR UPDATE")  # the rules send FOR UPDATE to the writer
        return int(cur.fetchone()[0])


def test_manager_and_proxy_from_one_file_follow_one_state(fresh_sandbox: Sandbox, tmp_path: Path) -> None:
    box = fresh_sandbox
    base = free_port_block(3)
    config = tmp_path / "etc" / "turnout.toml"
    config.parent.mkdir()
    datadir = tmp_path / "data"
    config.write_text(sandbox_config(box, datadir, base, base + 1, api_port=base + 2))
    with turnout_process("manager", config, tmp_path / "manager.log") as manager, \
            turnout_process("proxy", config, tmp_path / "proxy.log") as proxy:
        wait_for(lambda: bool(_api_clusters(base + 2)), 60, "the manager to discover the sandbox")
        assert (datadir / "turnout-state.db").exists()
        assert not (config.parent / "turnout-state.db").exists(), "the manager kept its state next to the file"
        # the proxy follows what the manager publishes there: its writer is the published master,
        # and a second server turning writable is fenced, not written to
        wait_for(lambda: _writer_port(base) == box.nodes[0].port, 30, "the proxy to serve writes")
        box.execute(1, "SET GLOBAL read_only = OFF")
        try:
            def fenced() -> bool:
                with pymysql.connect(host="127.0.0.1", port=base + 1, user="admin", password="admin") as conn, \
                        conn.cursor() as cur:
                    cur.execute("SELECT status, comment FROM runtime_mysql_servers WHERE port = %s AND hostgroup_id = 10",
                                (box.nodes[1].port,))
                    return any(status == "OFFLINE_HARD" and "published master" in comment
                               for status, comment in cur.fetchall())

            wait_for(fenced, 30, "the proxy to fence the second writable server against the published master")
            assert _writer_port(base) == box.nodes[0].port
        finally:
            box.execute(1, "SET GLOBAL read_only = ON")
        assert manager.poll() is None and proxy.poll() is None


def test_a_state_file_at_the_old_place_stops_every_role_with_what_to_do(tmp_path: Path) -> None:
    base = free_port_block(3)
    config = tmp_path / "turnout.toml"
    box_free = (
        f'datadir = "{tmp_path / "data"}"\n[admin_variables]\nmysql_ifaces = "127.0.0.1:{base + 1}"\n'
        f'[mysql_variables]\ninterfaces = "127.0.0.1:{base}"\n'
        f'[manager]\nListenAddress = "127.0.0.1:{base + 2}"\nMySQLTopologyUser = "u"\nMySQLTopologyPassword = "p"\n'
    )
    config.write_text(box_free)
    SQLiteStateStore(tmp_path / "turnout-state.db")  # what an older `turnout manager` left there
    for role in ("manager", "up", "proxy"):
        result = subprocess.run([sys.executable, "-m", "turnout.cli", role, "--config", str(config)],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 1, (role, result.stdout, result.stderr)
        message = " ".join(result.stderr.split())  # the console may wrap it
        assert str(tmp_path / "turnout-state.db") in message, (role, message)
        assert str(tmp_path / "data" / "turnout-state.db") in message, (role, message)
        assert "mv " in message, (role, message)
    assert not (tmp_path / "data" / "turnout-state.db").exists()
