"""Failover invisible to reads: a read whose server dies before any of its answer reached the
client runs again elsewhere (or on the writer once it is back); one that had sent part of its
answer, one inside a transaction, and a write whose outcome is unknown fail as documented.

Each test kills (kill -9) a server of its own sandbox while a statement runs there, through the
fast path and through the session's coroutine."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
import pymysql
import pytest

from proxy_harness import RunningProxy, split_config
from turnout.proxy.errors import ER_LOST_BACKEND
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

MARKER = "retry_probe"
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "coroutine"])


def _running_on(box: Sandbox, nodes: list[int], marker: str) -> int | None:
    """The node whose processlist shows the statement carrying `marker`, if any yet."""
    for node in nodes:
        rows = box.execute(
            node,
            f"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' "
            "AND INFO NOT LIKE '%PROCESSLIST%'",
        )
        if rows:
            return node
    return None


def _kill_when_running(box: Sandbox, nodes: list[int], marker: str, killed: list[int], restart: bool) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        node = _running_on(box, nodes, marker)
        if node is not None:
            box.kill(node)
            killed.append(node)
            if restart:
                box.start(node)
            return
        time.sleep(0.02)


def _run_while_killing(
    box: Sandbox, conn: pymysql.Connection[Any], nodes: list[int], sql: str, restart: bool = False
) -> tuple[Any, list[int]]:
    """Run `sql` (which names MARKER) on `conn`, kill -9 the node of `nodes` it runs on (and
    start it again with `restart`); the statement's rows or its error's (code, message)."""
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_running, args=(box, nodes, MARKER, killed, restart))
    killer.start()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            result: Any = cur.fetchall()
    except pymysql.MySQLError as exc:
        result = exc.args
    finally:
        killer.join()
    return result, killed


def _proxy(
    box: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool, split: bool = True
) -> RunningProxy:
    config = split_config(box, **{"mysql-connect_timeout_server_max": "60000"})
    if not split:  # every statement goes to the writer
        config = dataclasses.replace(config, query_rules=())
    running = start_proxy(config)
    running.call(lambda: setattr(running.proxy, "fast_path", fast_path))
    return running


def _retried(running: RunningProxy) -> int:
    return running.call(lambda: running.proxy.stats.counters.statements_retried)


def _warm(conn: pymysql.Connection[Any]) -> None:
    """A pooled connection of the hostgroup, so that the fast path can take the next read."""
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)


@PATHS
def test_read_on_a_killed_replica_returns_its_rows(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = running.connect()
    _warm(conn)
    result, killed = _run_while_killing(fresh_sandbox, conn, [1, 2], f"SELECT SLEEP(1) AS {MARKER}, 42")
    assert len(killed) == 1
    assert result == ((0, 42),)
    assert _retried(running) == 1
    _warm(conn)  # the session goes on
    conn.close()


@PATHS
def test_read_on_a_killed_writer_runs_once_it_is_back(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """Only the writer serves the read: it waits for the writer (here the same server started
    again; in managed mode the new master, once published) and runs there."""
    running = _proxy(fresh_sandbox, start_proxy, fast_path, split=False)
    conn = running.connect()
    _warm(conn)
    result, killed = _run_while_killing(fresh_sandbox, conn, [0], f"SELECT SLEEP(1) AS {MARKER}, 43", restart=True)
    assert killed == [0]
    assert result == ((0, 43),)
    assert _retried(running) == 1
    conn.close()


@PATHS
def test_read_that_sent_part_of_its_result_fails(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """Rows already reached the client: running it again could repeat or miss some; it fails."""
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = running.connect()
    _warm(conn)
    # The server sends rows as its network buffer fills, then sleeps in the middle of them.
    sql = f"SELECT seq, REPEAT('x', 200) AS {MARKER}, SLEEP(2 * (seq = 2000)) FROM mysql.seq_1_to_4000"
    result, killed = _run_while_killing(fresh_sandbox, conn, [1, 2], sql)
    assert len(killed) == 1
    assert result[0] == 2013
    assert _retried(running) == 0


@PATHS
def test_read_in_a_transaction_is_not_retried(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    running = _proxy(fresh_sandbox, start_proxy, fast_path, split=False)
    conn = running.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
    result, killed = _run_while_killing(fresh_sandbox, conn, [0], f"SELECT SLEEP(1) AS {MARKER}, 44")
    assert killed == [0]
    assert result[0] == ER_LOST_BACKEND
    assert "may or may not" not in result[1]
    assert _retried(running) == 0


@PATHS
def test_autocommit_write_in_flight_has_an_unknown_outcome(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    running = _proxy(fresh_sandbox, start_proxy, fast_path, split=False)
    conn = running.connect()
    _warm(conn)
    result, killed = _run_while_killing(fresh_sandbox, conn, [0], f"DO SLEEP(1) /* {MARKER} */")
    assert killed == [0]
    assert result[0] == ER_LOST_BACKEND
    assert "the statement may or may not have been applied" in result[1]
    assert _retried(running) == 0


@PATHS
def test_prepared_read_on_a_killed_replica_returns_its_rows(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """COM_STMT_EXECUTE (mysql-connector-python's prepared cursor): prepared again on the other
    replica, and executed there."""
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = mysql.connector.connect(host="127.0.0.1", port=running.port, user=APP.user, password=APP.password,
                                   autocommit=True, use_pure=True, connection_timeout=60)
    try:
        cur = conn.cursor(prepared=True)
        sql = f"SELECT SLEEP(?) AS {MARKER}, ?"
        for _ in range(4):  # prepared on both replicas' pooled connections, for the fast path
            cur.execute(sql, (0, 1))
            assert [tuple(row) for row in cur.fetchall()] == [(0, 1)]
        killed: list[int] = []
        killer = threading.Thread(target=_kill_when_running, args=(fresh_sandbox, [1, 2], MARKER, killed, False))
        killer.start()
        try:
            cur.execute(sql, (1, 45))
            rows = [tuple(row) for row in cur.fetchall()]
        finally:
            killer.join()
        assert len(killed) == 1
        assert rows == [(0, 45)]
        assert _retried(running) == 1
    finally:
        conn.close()


@PATHS
def test_commit_in_flight_has_an_unknown_outcome(
    make_sandbox: Callable[..., Sandbox], start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """A COMMIT waiting for a semi-sync acknowledgement (no replica is replicating) when the
    master dies: it may or may not have been applied, and the client is told so."""
    box = make_sandbox(semi_sync=True)
    box.execute(0, "CREATE DATABASE retry_db", "CREATE TABLE retry_db.t (a INT PRIMARY KEY)")
    for replica in (1, 2):
        box.execute(replica, "STOP SLAVE")
    running = _proxy(box, start_proxy, fast_path, split=False)
    conn = running.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO retry_db.t VALUES (1)")
    result, killed = _run_while_killing(box, conn, [0], f"COMMIT /* {MARKER} */")
    assert killed == [0]
    assert result[0] == ER_LOST_BACKEND
    assert "the statement may or may not have been applied" in result[1]
    assert _retried(running) == 0
