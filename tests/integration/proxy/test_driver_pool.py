"""The writer's pool under sysbench oltp_read_write: connections go back to the pool rather than
being closed and opened again."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from proxy_harness import RunningProxy, split_config
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox
THREADS = 4


def _sysbench(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={port}",
         f"--mysql-user={APP.user}", f"--mysql-password={APP.password}", "--mysql-db=sbpool",
         "--tables=2", "--table-size=1000", *args],
        capture_output=True, text=True, timeout=300,
    )



def test_writer_pool_keeps_its_connections_under_oltp_read_write(
    sandbox: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    sandbox.execute(0, "DROP DATABASE IF EXISTS sbpool", "CREATE DATABASE sbpool")
    prepared = _sysbench(sandbox.nodes[0].port, "oltp_read_write", "prepare")
    assert prepared.returncode == 0, prepared.stderr
    sandbox.wait_replicas_caught_up()
    running = start_proxy(split_config(sandbox))
    writer = ("127.0.0.1", sandbox.nodes[0].port)

    def opened() -> int:
        def read() -> int:
            pool = running.proxy.pools.servers.get(writer)
            return 0 if pool is None else pool.stats.conn_ok
        return running.call(read)

    # A first backend login: the proxy greets clients with what the servers offer (session
    # tracking…) once it knows, so both runs' clients ask for the same and share one pool.
    with running.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    for _ in range(2):  # the first run opens what the load needs; the second must reuse it
        before = opened()
        run = _sysbench(running.port, f"--threads={THREADS}", "--events=3000", "--time=0",
                        "--db-ps-mode=auto", "oltp_read_write", "run")
        assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
        new = opened() - before
    assert new <= 1, f"the second run opened {new} new connections to the writer"
    sandbox.execute(0, "DROP DATABASE IF EXISTS sbpool")
