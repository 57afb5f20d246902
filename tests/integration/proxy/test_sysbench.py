"""sysbench through the proxy, checked with the servers' own counters."""

from __future__ import annotations

import subprocess

from proxy_harness import RunningProxy, server_counter
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox


def _sysbench(proxy: RunningProxy, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={proxy.port}",
         f"--mysql-user={APP.user}", f"--mysql-password={APP.password}", "--mysql-db=sbproxy",
         "--tables=2", "--table-size=2000", *args],
        capture_output=True, text=True, timeout=120,
    )


def _counters(box: Sandbox) -> dict[int, dict[str, int]]:
    names = ("Com_select", "Com_insert", "Com_update", "Com_delete", "Com_stmt_execute")
    return {n: {name: server_counter(box, n, name) for name in names} for n in range(3)}


def _app_statistics(box: Sandbox) -> dict[int, tuple[int, int]]:
    """(SELECT_COMMANDS, UPDATE_COMMANDS) of the application account on each server since the
    last flush. Replicated changes run as the replication thread, not as the account."""
    result = {}
    for node in range(3):
        rows = box.execute(node, f"SELECT SELECT_COMMANDS, UPDATE_COMMANDS FROM information_schema.USER_STATISTICS "
                                 f"WHERE USER = '{APP.user}'")
        result[node] = (rows[0]["SELECT_COMMANDS"], rows[0]["UPDATE_COMMANDS"]) if rows else (0, 0)
    return result


def _reset_statistics(box: Sandbox) -> None:
    for node in range(3):
        box.execute(node, "SET GLOBAL userstat = 1", "FLUSH LOCAL USER_STATISTICS")


def test_sysbench_point_select_goes_to_replicas(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    sandbox.execute(0, "DROP DATABASE IF EXISTS sbproxy", "CREATE DATABASE sbproxy")
    prepared = _sysbench(split_proxy, "oltp_point_select", "prepare")
    assert prepared.returncode == 0, prepared.stderr
    sandbox.wait_replicas_caught_up()
    before = _counters(sandbox)
    counters = split_proxy.proxy.stats.counters
    fast_before = counters.statements_fast_path
    run = _sysbench(split_proxy, "--threads=4", "--events=4000", "--time=0", "--db-ps-mode=auto",
                    "oltp_point_select", "run")
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    after = _counters(sandbox)
    executed = {n: after[n]["Com_stmt_execute"] - before[n]["Com_stmt_execute"] for n in range(3)}
    assert executed[1] + executed[2] >= 4000
    assert executed[1] > 0 and executed[2] > 0  # both replicas share the reads
    assert executed[0] < 50  # the master only saw the monitor's and manager's own probes, if any
    # The steady state is relayed by callbacks; the session's coroutine only sets up (new backend
    # connections, statements not yet prepared on them).
    assert counters.statements_fast_path - fast_before > 3000


def test_sysbench_read_write_writes_on_master(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    sandbox.execute(0, "DROP DATABASE IF EXISTS sbproxy", "CREATE DATABASE sbproxy")
    assert _sysbench(split_proxy, "oltp_read_write", "prepare").returncode == 0
    sandbox.wait_replicas_caught_up()
    _reset_statistics(sandbox)
    counters = split_proxy.proxy.stats.counters
    questions, fast = counters.questions, counters.statements_fast_path
    run = _sysbench(split_proxy, "--threads=4", "--events=300", "--time=0", "--db-ps-mode=auto",
                    "--mysql-ignore-errors=1213", "oltp_read_write", "run")
    assert run.returncode == 0, run.stdout[-1500:] + run.stderr[-1500:]
    # Inside its transactions too, most statements are relayed by callbacks on the held
    # connection (all but BEGIN and each transaction's first write).
    assert counters.statements_fast_path - fast > (counters.questions - questions) * 0.6
    stats = _app_statistics(sandbox)
    # every write of the application ran on the master, none on a replica
    assert stats[0][1] >= 300 * 4
    assert stats[1][1] == stats[2][1] == 0
    sandbox.wait_replicas_caught_up()
    sums = [sandbox.execute(n, "CHECKSUM TABLE sbproxy.sbtest1, sbproxy.sbtest2") for n in range(3)]
    assert sums[0] == sums[1] == sums[2]


def test_autocommit_off_reads_then_writes(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    """PyMySQL's default is autocommit=0: its first read opens a transaction on a replica; the
    first write ends that read-only transaction there and runs on the master."""
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS ac", "CREATE TABLE IF NOT EXISTS ac.t (id INT PRIMARY KEY)",
                    "DELETE FROM ac.t")
    sandbox.wait_replicas_caught_up()  # the first read runs on a replica, which must have the table
    conn = split_proxy.connect(autocommit=False)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM ac.t")
        cur.execute("INSERT INTO ac.t VALUES (1)")
        cur.execute("SELECT COUNT(*) FROM ac.t")  # inside the write transaction: sees its own row
        assert cur.fetchone() == (1,)
        conn.commit()
    assert sandbox.execute(0, "SELECT COUNT(*) AS n FROM ac.t") == [{"n": 1}]


def test_change_user_to_another_proxy_user(sandbox: Sandbox, start_proxy) -> None:  # type: ignore[no-untyped-def]
    import mysql.connector

    from proxy_harness import split_config
    from turnout.config.model import MysqlUser, RuntimeConfig

    sandbox.execute(0, "CREATE USER IF NOT EXISTS 'app2'@'%' IDENTIFIED BY 'app2_pass'",
                    "GRANT SELECT ON *.* TO 'app2'@'%'")
    sandbox.wait_replicas_caught_up()
    base = split_config(sandbox)
    config = RuntimeConfig(version=1, servers=base.servers, query_rules=base.query_rules,
                           users=(*base.users, MysqlUser("app2", "*" + _native_hash("app2_pass"), default_hostgroup=10)),
                           variables=base.variables)
    proxy = start_proxy(config)
    conn = mysql.connector.connect(host="127.0.0.1", port=proxy.port, user=APP.user, password=APP.password,
                                   use_pure=True, autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("SET @mine = 1")
        conn.cmd_change_user(username="app2", password="app2_pass")
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER(), @mine")
        user, mine = cur.fetchone()
        assert str(user).startswith("app2@") and mine is None  # new user, fresh session state
    finally:
        conn.close()


def _native_hash(password: str) -> str:
    from turnout.protocol.auth import native_password_hash

    return native_password_hash(password)[1:]
