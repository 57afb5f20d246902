"""A statement whose server dies under it: every client library reads the proxy's answer.

Found by bench/chaos.py: sysbench (libmariadb) ended with "Received malformed packet" (2027) at
every kill -9 of the master, because the proxy answered with an ERR packet carrying 2013, a
client-side code that libmariadb refuses to read from a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from system_harness import wait_for
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def test_the_mariadb_client_reads_the_error_when_the_server_dies_under_its_statement(
    fresh_sandbox: Sandbox, tmp_path: Path
) -> None:
    box = fresh_sandbox
    port = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(box, tmp_path / "data", port, port + 1))
    proxy = subprocess.Popen([sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def serving() -> bool:
            pymysql.connect(host="127.0.0.1", port=port, user=APP.user, password=APP.password).close()
            return True

        wait_for(serving, 30, "the proxy to serve")
        client = subprocess.Popen(
            ["mariadb", "-h127.0.0.1", f"-P{port}", f"-u{APP.user}", f"-p{APP.password}",
             "-e", "SELECT SLEEP(30) AS killed_here FROM DUAL FOR UPDATE; SELECT 'the connection goes on' AS after"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        wait_for(lambda: bool(box.execute(0, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                                             "'%killed_here%' AND INFO NOT LIKE '%PROCESSLIST%'")),
                 30, "the statement to run on the master")
        box.kill(0)
        output, _ = client.communicate(timeout=120)
        assert "2027" not in output and "malformed" not in output, output
        assert "ERROR 1927 (70100)" in output and "Lost connection" in output, output
    finally:
        proxy.terminate()
        proxy.wait(timeout=15)
