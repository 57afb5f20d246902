"""Causal reads under `turnout up` (one process, and with --workers): a read after a write goes
without a wait to a replica the monitor already saw past the write (its delayed SQL thread applied
it), what the admin's stats_mysql_gtid_executed shows."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from system_harness import RunningTurnout, start_turnout, stop_turnout, wait_for
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox


def _seen_past(running: RunningTurnout, written: str, replicas: set[int]) -> bool:
    """The monitor saw every replica apply `written` (one MariaDB GTID per domain)."""
    wanted = {int(d): int(n) for d, _, n in (g.split("-") for g in written.split(","))}
    with running.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT port, gtid_executed FROM stats_mysql_gtid_executed")
        seen = {int(port): gtids for port, gtids in cur.fetchall()}
    for port in replicas:
        applied = {int(d): int(n) for d, _, n in (g.split("-") for g in (seen.get(port) or "").split(",") if g)}
        if any(applied.get(domain, -1) < number for domain, number in wanted.items()):
            return False
    return True


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "workers"])
def test_a_read_goes_without_a_wait_to_a_replica_the_monitor_saw_past_its_writes(
    fresh_sandbox: Sandbox, tmp_path: Path, workers: int
) -> None:
    box = fresh_sandbox
    box.execute(0, "CREATE DATABASE causal", "CREATE TABLE causal.t (id INT PRIMARY KEY, v INT)")
    box.wait_replicas_caught_up()
    for node in (1, 2):
        box.execute(node, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 2", "START SLAVE")
    replicas = {box.nodes[1].port, box.nodes[2].port}
    running = start_turnout(box, tmp_path, "--workers", str(workers))
    try:
        with running.admin() as admin, admin.cursor() as cur:
            cur.execute("SET mysql-causal_reads = 'session'")
            cur.execute("SET mysql-causal_reads_timeout = 10000")
            cur.execute("SET mysql-monitor_writer_is_also_reader = 'false'")  # only replicas read
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
        wait_for(lambda: _seen_past(running, box.execute(0, "SELECT @@gtid_binlog_pos AS p")[0]["p"], replicas),
                 60, "the monitor to see the replicas past the table")
        conn = pymysql.connect(host="127.0.0.1", port=running.proxy_port, user=APP.user, password=APP.password,
                               autocommit=True)
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO causal.t VALUES (1, 1)")
            written = box.execute(0, "SELECT @@gtid_binlog_pos AS p")[0]["p"]
            # the replicas apply it 2 s later; the monitor sees it at its next check after that
            wait_for(lambda: _seen_past(running, written, replicas), 60, "the monitor to see the replicas past the write")
            cur.execute("DO 1")  # a round trip: a worker has read the positions sent before this
            cur.execute("SELECT v, @@port FROM causal.t WHERE id = 1")
            ((value, port),) = cur.fetchall()
        assert value == 1 and port in replicas
        # the workers' counters reach the admin within a second
        wait_for(lambda: running.global_status("Causal_reads_caught_up") == "1", 30, "the read counted")
        assert running.global_status("Causal_reads_waited") == "0"
        assert running.global_status("Causal_reads_to_writer") == "0"
    finally:
        stop_turnout(running)
