"""The proxy follows the manager's published master: a fenced old master that comes back
writable gets no statement, and several proxies on one state store all follow."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql

from system_harness import RunningTurnout, wait_for
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block


def _app(port: int) -> pymysql.connections.Connection:  # type: ignore[type-arg]
    return pymysql.connect(host="127.0.0.1", port=port, user=APP.user, password=APP.password, autocommit=True)


def _writer_port(proxy_port: int) -> int:
    with _app(proxy_port) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port FROM DUAL FOR UPDATE")  # the rules send FOR UPDATE to the writer
        return int(cur.fetchone()[0])


def test_fenced_master_back_with_read_only_off_gets_no_statement(turnout_up: RunningTurnout) -> None:
    box = turnout_up.box
    with _app(turnout_up.proxy_port) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS f")
        cur.execute("CREATE TABLE IF NOT EXISTS f.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    box.wait_replicas_caught_up()  # replication is asynchronous: the promoted replica must have f.t
    old = turnout_up.master()
    box.kill(0)
    wait_for(lambda: turnout_up.master() != old, 60, "the manager to promote a replica")
    wait_for(lambda: _writer_port(turnout_up.proxy_port) != box.nodes[0].port, 30, "writes to reach the new master")
    # The old master comes back, and someone makes it writable: a second writer.
    box.start(0)
    box.execute(0, "SET GLOBAL userstat = 1", "FLUSH LOCAL USER_STATISTICS", "SET GLOBAL read_only = OFF")
    writable_us = time.time_ns() // 1000
    # the proxy's monitor has reached it since it came back, before the traffic starts (whether it
    # still sees it writable then is a race with the manager, which sets read_only=ON again)
    wait_for(lambda: _admin_rows(
        turnout_up, "SELECT ping_success_time_us FROM monitor.mysql_server_ping_log WHERE port = %s "
        "AND ping_error IS NULL AND time_start_us > %s", box.nodes[0].port, writable_us), 30,
        "the monitor to reach the restarted server")
    failures: list[str] = []

    def traffic() -> None:
        try:
            with _app(turnout_up.proxy_port) as conn, conn.cursor() as cur:
                for _ in range(200):  # a fixed amount of traffic, not a fixed time
                    cur.execute("INSERT INTO f.t (v) VALUES (1)")
                    cur.execute("SELECT COUNT(*) FROM f.t")
                    cur.fetchall()
        except pymysql.err.MySQLError as exc:
            failures.append(str(exc))

    threads = [threading.Thread(target=traffic) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    app_stats = box.execute(0, f"SELECT * FROM information_schema.USER_STATISTICS WHERE USER = '{APP.user}'")
    assert not app_stats or (app_stats[0]["SELECT_COMMANDS"], app_stats[0]["UPDATE_COMMANDS"]) == (0, 0)
    # and the manager fences it for real: read_only back ON
    wait_for(lambda: box.execute(0, "SELECT @@read_only AS ro")[0]["ro"] == 1, 30, "the fenced master to be set read_only")
    port = box.nodes[0].port
    assert turnout_up.api(f"instance/127.0.0.1/{port}")["IsFenced"] is True
    # the operator rebuilt it: lift the fence from the command line
    lifted = subprocess.run(
        [sys.executable, "-m", "turnout.cli", "unfence", "-i", f"127.0.0.1:{port}",
         "--api", f"http://127.0.0.1:{turnout_up.api_port}"],
        capture_output=True, text=True, timeout=30,
    )
    assert lifted.returncode == 0 and "Fence lifted" in lifted.stdout, lifted.stderr
    assert turnout_up.api(f"instance/127.0.0.1/{port}")["IsFenced"] is False


def _reader_port(proxy_port: int) -> int:
    with _app(proxy_port) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port")  # the rules send plain SELECTs to the readers
        return int(cur.fetchone()[0])


def _admin_rows(running: RunningTurnout, sql: str, *args: object) -> list[tuple[object, ...]]:
    with running.admin() as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def test_fenced_master_rebuilt_as_a_healthy_replica_serves_no_read_until_unfenced(
    turnout_up: RunningTurnout,
) -> None:
    box = turnout_up.box
    old_port = box.nodes[0].port
    with _app(turnout_up.proxy_port) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS f")
        cur.execute("CREATE TABLE IF NOT EXISTS f.t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        cur.execute("INSERT INTO f.t (v) VALUES (1)")
    # The sandbox replicates asynchronously: a write the replicas had not received when the master
    # died would stay in the old master's binlog only, and the hand rebuild below (gtid_slave_pos
    # = its own binlog position) would then be ahead of the new master and never replicate.
    box.wait_replicas_caught_up(timeout=60)
    old = turnout_up.master()
    box.kill(0)
    wait_for(lambda: turnout_up.master() != old, 60, "the manager to promote a replica")
    new = box.nodes[box.index_of_port(int(turnout_up.master().rsplit(":", 1)[1])) or 0]
    wait_for(lambda: _writer_port(turnout_up.proxy_port) == new.port, 30, "writes to reach the new master")
    # The operator rebuilds the old master by hand as a replica of the new one: read_only=ON,
    # replicating, caught up; but does not lift the fence yet.
    box.start(0)
    box.execute(0, "SET GLOBAL read_only = ON", "STOP SLAVE", "RESET SLAVE ALL",
                "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos")
    box.execute(0, *box.replication_sql(new))
    wait_for(lambda: (status := box.replica_status(0)) is not None
             and (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes"),
             60, "the rebuilt server's replication threads to run")
    box.wait_replicas_caught_up(timeout=60)
    rebuilt_us = time.time_ns() // 1000
    # the proxy's monitor has seen it since: read_only=ON and no replication lag
    wait_for(lambda: any(
        int(str(started)) > rebuilt_us and lag is not None and int(str(lag)) == 0
        for started, lag in _admin_rows(turnout_up, "SELECT time_start_us, repl_lag FROM "
                                        "monitor.mysql_server_replication_lag_log WHERE port = %s", old_port)
    ), 30, "the monitor to see the rebuilt server replicating without lag")
    rows = _admin_rows(turnout_up, "SELECT hostgroup_id, status, comment FROM runtime_mysql_servers WHERE port = %s",
                       old_port)
    assert rows and all(status == "OFFLINE_HARD" and "fenced by the manager" in str(comment)
                        for _, status, comment in rows), rows
    ports = [_reader_port(turnout_up.proxy_port) for _ in range(60)]
    assert old_port not in ports, f"{ports.count(old_port)} of 60 reads went to the fenced server"
    # `turnout unfence` lets it back: reads reach it, the admin table says ONLINE
    lifted = subprocess.run(
        [sys.executable, "-m", "turnout.cli", "unfence", "-i", f"127.0.0.1:{old_port}",
         "--api", f"http://127.0.0.1:{turnout_up.api_port}"],
        capture_output=True, text=True, timeout=30,
    )
    assert lifted.returncode == 0 and "Fence lifted" in lifted.stdout, lifted.stderr
    wait_for(lambda: ("20", "ONLINE") in {(str(hg), str(status)) for hg, status, _ in _admin_rows(
        turnout_up, "SELECT hostgroup_id, status, comment FROM runtime_mysql_servers WHERE port = %s", old_port)},
        30, "the unfenced server to be ONLINE among the readers")
    wait_for(lambda: _reader_port(turnout_up.proxy_port) == old_port, 30, "reads to reach the unfenced server")


def test_several_proxies_follow_one_state_store(turnout_up: RunningTurnout, tmp_path: Path) -> None:
    box = turnout_up.box
    base = free_port_block(2)
    config = tmp_path / "second.toml"
    shared = (Path(turnout_up.log).parent / "data" / "turnout-state.db").resolve()
    config.write_text(sandbox_config(box, tmp_path / "second-data", base, base + 1, state_store=str(shared)))
    second = subprocess.Popen([sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _writer_port(base) == box.nodes[0].port, 30, "the second proxy to serve writes")
        cluster = turnout_up.cluster()["ClusterName"]
        new_port = box.nodes[2].port
        result = turnout_up.api(f"graceful-master-takeover-auto/{cluster}/127.0.0.1/{new_port}")
        assert result["Code"] == "OK", result
        for proxy_port in (turnout_up.proxy_port, base):
            wait_for(lambda port=proxy_port: _writer_port(port) == new_port, 30, f"proxy {proxy_port} to follow")
        # The second proxy knows the master from the store, not from read_only alone: another
        # server turning writable is fenced there, writes keep going to the published master.
        box.execute(1, "SET GLOBAL read_only = OFF")
        try:
            def second_proxy_fenced_it() -> bool:
                with pymysql.connect(host="127.0.0.1", port=base + 1, user="admin", password="admin") as conn, \
                        conn.cursor() as cur:
                    cur.execute("SELECT status FROM runtime_mysql_servers WHERE port = %s AND hostgroup_id = 10",
                                (box.nodes[1].port,))
                    return ("OFFLINE_HARD",) in cur.fetchall()

            wait_for(second_proxy_fenced_it, 30, "the second proxy to see the writable server and fence it")
            assert _writer_port(base) == new_port
        finally:
            box.execute(1, "SET GLOBAL read_only = ON")
    finally:
        second.terminate()
        second.wait(timeout=15)
