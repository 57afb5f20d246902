"""sysbench oltp_read_write with prepared statements through turnout across a graceful takeover."""

from __future__ import annotations

import subprocess
import threading

from system_harness import RunningTurnout, wait_for
from turnout.sandbox.config import APP

TABLES = 4


def _sysbench(running: RunningTurnout, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={running.proxy_port}",
         f"--mysql-user={APP.user}", f"--mysql-password={APP.password}", "--mysql-db=sbtest",
         f"--tables={TABLES}", "--table-size=5000", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def test_graceful_takeover_under_sysbench_has_no_errors(turnout_up: RunningTurnout) -> None:
    box = turnout_up.box
    box.execute(0, "CREATE DATABASE sbtest")
    prepared = _sysbench(turnout_up, "oltp_read_write", "prepare")
    assert prepared.returncode == 0, prepared.stderr
    box.wait_replicas_caught_up()
    old = turnout_up.master()
    new_port = box.nodes[1].port
    cluster = turnout_up.cluster()["ClusterName"]
    results: list[subprocess.CompletedProcess[str]] = []
    run = threading.Thread(target=lambda: results.append(_sysbench(
        turnout_up, "--threads=8", "--time=12", "--db-ps-mode=auto",
        # InnoDB's own deadlocks between sysbench threads (1213) happen with or without a proxy;
        # any other error fails the run, and the proxy's counter below proves that no transaction
        # was ended by the switchover (which would also be a 1213).
        "--mysql-ignore-errors=1213", "oltp_read_write", "run")))
    questions = int(turnout_up.global_status("Questions"))
    run.start()
    # the takeover happens under load: once sysbench's statements flow through the proxy
    wait_for(lambda: int(turnout_up.global_status("Questions")) > questions + 2000, 60, "sysbench to run")
    takeover = turnout_up.api(f"graceful-master-takeover-auto/{cluster}/127.0.0.1/{new_port}")
    assert takeover["Code"] == "OK", takeover
    run.join(timeout=120)
    (result,) = results
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reconnects:                          0" in result.stdout
    assert turnout_up.master() == f"127.0.0.1:{new_port}" != old
    assert turnout_up.global_status("Transactions_ended_by_switchover") == "0"
    # every server holds the same rows: the old master replicates from the new one now
    wait_for(lambda: _checksums(turnout_up, 0) == _checksums(turnout_up, 1) == _checksums(turnout_up, 2),
             30, "identical table checksums on all servers")


def _checksums(running: RunningTurnout, node: int) -> list[object]:
    tables = ", ".join(f"sbtest.sbtest{i}" for i in range(1, TABLES + 1))
    return [row["Checksum"] for row in running.box.execute(node, f"CHECKSUM TABLE {tables}")]
