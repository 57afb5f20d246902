"""Multiplexing: backend connections go back to the pool between statements unless session
state lives on them; replayable settings follow the session to whichever connection it uses."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from proxy_harness import RunningProxy, split_config
from turnout.config.model import RuntimeConfig
from turnout.sandbox.sandbox import Sandbox


@pytest.fixture
def writer_only(sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy]) -> RunningProxy:
    """Every statement to the master (no rules): one server, so pool sizes are easy to reason about."""
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS test")
    config = split_config(sandbox)
    return start_proxy(RuntimeConfig(version=1, servers=config.servers[:1], users=config.users,
                                     variables=config.variables))


def _pool(running: RunningProxy) -> tuple[int, int]:
    stats = running.call(lambda: next(iter(running.proxy.pools.servers.values())).stats)
    return stats.conn_used, stats.conn_free


def _backend_ids(running: RunningProxy, conn, n: int = 12) -> set[int]:  # type: ignore[no-untyped-def]
    ids = set()
    with conn.cursor() as cur:
        for _ in range(n):
            cur.execute("SELECT CONNECTION_ID()")
            ids.add(cur.fetchone()[0])
    return ids


def test_idle_sessions_hold_no_backend(writer_only: RunningProxy) -> None:
    clients = [writer_only.connect() for _ in range(20)]
    try:
        for conn in clients:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        used, free = _pool(writer_only)
        assert used == 0  # 20 connected clients, nothing in flight: no backend held
        assert 1 <= free <= 20
    finally:
        for conn in clients:
            conn.close()


def test_pooled_connections_unused_too_long_are_closed(writer_only: RunningProxy, sandbox: Sandbox) -> None:
    def shorten() -> None:
        writer_only.proxy.idle_timeout = 1.0
        writer_only.proxy.idle_sweep_interval = 0.2

    writer_only.call(shorten)
    with writer_only.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            thread_id = cur.fetchone()[0]
        assert _pool(writer_only) == (0, 1)
        deadline = time.monotonic() + 30  # a safety net against hanging, not a measurement
        while _pool(writer_only) != (0, 0):
            assert time.monotonic() < deadline, "the idle connection was never closed"
            time.sleep(0.1)
        # Closed on the server too, and the session gets a new one for its next statement.
        rows = sandbox.execute(0, f"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = {thread_id}")
        while rows[0]["n"]:
            assert time.monotonic() < deadline, "the server still has the connection"
            time.sleep(0.1)
            rows = sandbox.execute(0, f"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = {thread_id}")
        with conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            assert cur.fetchone()[0] != thread_id


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("SET @x = 5", "user variable"),
        ("CREATE TEMPORARY TABLE test.tmp_m (id INT)", "temporary table"),
        ("SELECT GET_LOCK('turnout_test_lock', 1)", "named lock"),
        ("LOCK TABLES mysql.user READ", "LOCK TABLES"),
        ("PREPARE s1 FROM 'SELECT 1'", "SQL PREPARE"),
        ("BEGIN", "transaction"),
        ("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE", None),
    ],
)
def test_state_that_pins_the_backend(writer_only: RunningProxy, statement: str, reason: str | None) -> None:
    other = writer_only.connect()  # keeps a second backend connection in the pool
    with other.cursor() as cur:
        cur.execute("SELECT 1")
    with writer_only.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.execute(statement)
        ids = _backend_ids(writer_only, conn)
        assert len(ids) == 1
        session = writer_only.call(lambda: max(writer_only.proxy.sessions.values(), key=lambda s: s.id))
        if reason is not None:
            assert session.kept is not None and reason in session.kept.reasons
    other.close()


def test_user_variable_survives_many_statements(writer_only: RunningProxy) -> None:
    with writer_only.connect() as conn, conn.cursor() as cur:
        cur.execute("SET @turnout = 42")
        for _ in range(10):
            cur.execute("SELECT @turnout")
            assert cur.fetchone() == (42,)


def test_last_insert_id_follows_the_insert(sandbox: Sandbox, writer_only: RunningProxy) -> None:
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS m",
                    "CREATE TABLE IF NOT EXISTS m.ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    noise = [writer_only.connect() for _ in range(3)]
    with writer_only.connect() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO m.ai (v) VALUES (1)")
        inserted = cur.lastrowid
        for other in noise:  # other sessions take pooled connections meanwhile
            with other.cursor() as ocur:
                ocur.execute("INSERT INTO m.ai (v) VALUES (2)")
        cur.execute("SELECT LAST_INSERT_ID()")
        assert cur.fetchone() == (inserted,)
    for other in noise:
        other.close()


def test_session_settings_follow_the_session(writer_only: RunningProxy) -> None:
    first = writer_only.connect()
    second = writer_only.connect()
    with first.cursor() as cur, second.cursor() as cur2:
        cur.execute("SET SESSION sql_mode = 'ANSI_QUOTES', time_zone = '+03:00'")
        cur.execute("SET NAMES latin1")
        cur.execute("USE mysql")
        for _ in range(6):
            cur2.execute("SELECT @@session.sql_mode, @@session.time_zone, @@character_set_client, DATABASE()")
            mode, tz, charset, db = cur2.fetchone()
            assert "ANSI_QUOTES" not in mode and tz == "SYSTEM" and charset != "latin1" and db == "information_schema"
            cur.execute("SELECT @@session.sql_mode, @@session.time_zone, @@character_set_client, DATABASE()")
            assert cur.fetchone() == ("ANSI_QUOTES", "+03:00", "latin1", "mysql")
        used, _ = _pool(writer_only)
        assert used == 0  # replayable settings do not pin a backend
    first.close()
    second.close()


def test_clients_connect_and_read_while_the_writer_hostgroup_is_empty(
    sandbox: Sandbox, split_proxy: RunningProxy
) -> None:
    """Two writers refused (no ONLINE writer): connectors still connect — their SET NAMES and
    SET autocommit are answered by the proxy — and reads keep flowing to the replicas."""
    import mysql.connector

    from turnout.config.model import MysqlServer

    readers = [MysqlServer(20, "127.0.0.1", node.port) for node in sandbox.nodes[1:]]
    blocked = {10: "turnout: writes refused, two servers report read_only=OFF"}
    split_proxy.set_servers([MysqlServer(10, "127.0.0.1", sandbox.nodes[0].port, status="SHUNNED"), *readers],
                            blocked)
    conn = mysql.connector.connect(host="127.0.0.1", port=split_proxy.port, user="app", password="app_pass",
                                   use_pure=True, charset="utf8mb4", autocommit=True, connection_timeout=5)
    try:
        cur = conn.cursor()
        cur.execute("SET NAMES latin1")
        cur.execute("SELECT @@character_set_client, @@read_only")
        assert cur.fetchall() == [("latin1", 1)]
    finally:
        conn.close()
    with split_proxy.connect(init_command="SET autocommit = 1") as pconn, pconn.cursor() as pcur:
        pcur.execute("SELECT @@read_only")
        assert pcur.fetchone() == (1,)
