"""Transaction replay: an open transaction whose server is killed (kill -9) before its COMMIT is
replayed when the writer is back (here the same server started again, its transaction rolled
back by crash recovery; the system tests do it across a failover), every answer compared; the
client carries on. A transaction whose replay would differ, one using NOW(), an oversized one
fail with error 1213 and leave nothing applied; a COMMIT in flight has an unknown outcome.

Through the fast path and through the session's coroutine, with text and prepared statements."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import mysql.connector
import pytest

from proxy_harness import RunningProxy, split_config
from turnout.proxy.errors import ER_LOST_BACKEND, ER_TRANSACTION_ENDED
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

MARKER = "replay_probe"
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "coroutine"])
Connection = Any  # mysql.connector's connection (its types are loose)


def _proxy(box: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool, **variables: str) -> RunningProxy:
    config = split_config(
        box, **{"mysql-connect_timeout_server_max": "60000", "mysql-transaction_replay": "true", **variables}
    )
    running = start_proxy(config)
    running.call(lambda: setattr(running.proxy, "fast_path", fast_path))
    return running


def _connect(running: RunningProxy) -> Connection:
    return mysql.connector.connect(host="127.0.0.1", port=running.port, user=APP.user, password=APP.password,
                                   autocommit=True, use_pure=True, connection_timeout=90)


def _counters(running: RunningProxy) -> dict[str, int]:
    rows = running.call(lambda: running.proxy.stats_table("stats_mysql_global")) or []
    return {str(r["Variable_Name"]): int(str(r["Variable_Value"])) for r in rows
            if str(r["Variable_Name"]).startswith("Transaction_replays")}


def _schema(box: Sandbox) -> None:
    box.execute(0, "CREATE DATABASE IF NOT EXISTS replay_db",
                "CREATE TABLE replay_db.t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, note VARCHAR(200))",
                "INSERT INTO replay_db.t (a, note) VALUES (1, 'one'), (2, 'two'), (3, 'three')",
                # held(): sleeps while replay_db.gate has a row, so a statement can be caught in
                # flight however slow the machine, and runs at once once the gate is emptied
                "CREATE TABLE replay_db.gate (id INT PRIMARY KEY)",
                "INSERT INTO replay_db.gate VALUES (1)",
                "CREATE FUNCTION replay_db.held() RETURNS INT NOT DETERMINISTIC READS SQL DATA "
                "BEGIN IF (SELECT COUNT(*) FROM replay_db.gate) > 0 THEN DO SLEEP(60); END IF; RETURN 0; END")
    box.wait_replicas_caught_up()  # reads outside a transaction go to the replicas


def _rows(box: Sandbox) -> list[tuple[Any, ...]]:
    return [(row["id"], row["a"], row["note"]) for row in box.execute(0, "SELECT id, a, note FROM replay_db.t ORDER BY id")]


def _restart(box: Sandbox) -> None:
    box.kill(0)
    box.start(0)
    box.execute(0, "SET GLOBAL read_only = 0")  # the sandbox starts its servers read_only


def _kill_when_running(box: Sandbox, killed: list[int]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = box.execute(0, f"SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{MARKER}%' "
                              "AND INFO NOT LIKE '%PROCESSLIST%'")
        if rows:
            _restart(box)
            killed.append(0)
            return
        time.sleep(0.02)


def _kill_when_held(box: Sandbox, killed: list[int]) -> None:
    """Once a statement sits in held()'s sleep on the writer (PROCESSLIST shows a stored
    function's running statement), empty the gate, so that the statement runs at once when it
    runs again, and kill -9 the writer under it."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if box.execute(0, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP(60)%'"):
            box.execute(0, "DELETE FROM replay_db.gate")
            _restart(box)
            killed.append(0)
            return
        time.sleep(0.02)


def _open_transaction(conn: Connection) -> None:
    """Inserts, an update, reads, prepared statements: what the replay must reproduce."""
    cur = conn.cursor()
    prepared = conn.cursor(prepared=True)
    cur.execute("BEGIN")
    # Explicit ids: a server restarted after a crash has counted the rolled-back auto-increment
    # values (a replay there would get other ids, and rightly fail); a failover's replica has not.
    cur.execute("INSERT INTO replay_db.t (id, a, note) VALUES (4, 10, 'text insert')")
    prepared.execute("INSERT INTO replay_db.t (id, a, note) VALUES (?, ?, ?)", (5, 11, "prepared insert"))
    prepared.execute("UPDATE replay_db.t SET a = a + ? WHERE id <= ?", (100, 2))
    assert prepared.rowcount == 2
    cur.execute("SELECT id, a FROM replay_db.t ORDER BY id")
    assert [tuple(r) for r in cur.fetchall()] == [(1, 101), (2, 102), (3, 3), (4, 10), (5, 11)]
    prepared.execute("SELECT note FROM replay_db.t WHERE id = ?", (5,))
    assert [tuple(r) for r in prepared.fetchall()] == [("prepared insert",)]
    cur.close()
    prepared.close()


EXPECTED = [(1, 101, "one"), (2, 102, "two"), (3, 3, "three"), (4, 10, "text insert"),
            (5, 11, "prepared insert"), (6, 12, "after")]


@PATHS
def test_transaction_killed_while_idle_is_replayed(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    _schema(fresh_sandbox)
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = _connect(running)
    _open_transaction(conn)
    _restart(fresh_sandbox)  # between two statements of the transaction
    prepared = conn.cursor(prepared=True)
    prepared.execute("INSERT INTO replay_db.t (id, a, note) VALUES (?, ?, ?)", (6, 12, "after"))
    cur = conn.cursor()
    cur.execute("COMMIT")
    assert _rows(fresh_sandbox) == EXPECTED  # each row once
    assert _counters(running)["Transaction_replays_succeeded"] == 1
    conn.close()


@PATHS
def test_statement_in_flight_runs_after_the_replay(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    _schema(fresh_sandbox)
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = _connect(running)
    _open_transaction(conn)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_held, args=(fresh_sandbox, killed))
    killer.start()
    cur = conn.cursor()
    try:
        cur.execute(f"SELECT replay_db.held() AS {MARKER}, COUNT(*) FROM replay_db.t")
        assert [tuple(r) for r in cur.fetchall()] == [(0, 5)]
    finally:
        killer.join()
    assert killed == [0]
    cur.execute("INSERT INTO replay_db.t (id, a, note) VALUES (6, 12, 'after')")
    cur.execute("COMMIT")
    assert _rows(fresh_sandbox) == EXPECTED
    assert _counters(running)["Transaction_replays_succeeded"] == 1
    conn.close()


def _fails_with_1213(conn: Connection, sql: str) -> str:
    cur = conn.cursor()
    with pytest.raises(mysql.connector.Error) as failed:
        cur.execute(sql)
    assert failed.value.errno == ER_TRANSACTION_ENDED
    assert failed.value.sqlstate == "40001"
    assert "rolled back" in failed.value.msg
    return str(failed.value.msg)


@PATHS
def test_replay_with_a_different_result_fails_and_applies_nothing(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    _schema(fresh_sandbox)
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = _connect(running)
    _open_transaction(conn)
    _restart(fresh_sandbox)
    fresh_sandbox.execute(0, "UPDATE replay_db.t SET a = 7 WHERE id = 3")  # someone else, in between
    message = _fails_with_1213(conn, "INSERT INTO replay_db.t (a, note) VALUES (12, 'after')")
    assert "different result" in message
    assert _rows(fresh_sandbox) == [(1, 1, "one"), (2, 2, "two"), (3, 7, "three")]
    assert _counters(running)["Transaction_replays_mismatched"] == 1
    cur = conn.cursor()  # the session goes on, outside any transaction
    cur.execute("SELECT COUNT(*) FROM replay_db.t")
    assert cur.fetchall() == [(3,)]
    conn.close()


@PATHS
def test_transaction_using_now_is_not_replayed(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    _schema(fresh_sandbox)
    running = _proxy(fresh_sandbox, start_proxy, fast_path)
    conn = _connect(running)
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO replay_db.t (a, note) VALUES (10, NOW())")
    _restart(fresh_sandbox)
    message = _fails_with_1213(conn, "INSERT INTO replay_db.t (a, note) VALUES (12, 'after')")
    assert "NOW()" in message and "not replayed" in message
    assert len(_rows(fresh_sandbox)) == 3
    counters = _counters(running)
    assert counters["Transaction_replays_refused_unreproducible"] == 1
    assert counters["Transaction_replays"] == 0
    conn.close()


@PATHS
def test_oversized_transaction_is_not_replayed(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    _schema(fresh_sandbox)
    running = _proxy(fresh_sandbox, start_proxy, fast_path, **{"mysql-transaction_replay_max_size": "1000"})
    conn = _connect(running)
    cur = conn.cursor()
    cur.execute("BEGIN")
    for i in range(10):
        cur.execute(f"INSERT INTO replay_db.t (a, note) VALUES ({i}, '{'x' * 150}')")
    _restart(fresh_sandbox)
    message = _fails_with_1213(conn, "SELECT COUNT(*) FROM replay_db.t")
    assert "mysql-transaction_replay_max_size" in message
    assert len(_rows(fresh_sandbox)) == 3
    assert _counters(running)["Transaction_replays_refused_too_large"] == 1
    conn.close()


@PATHS
def test_commit_in_flight_is_not_replayed(
    make_sandbox: Callable[..., Sandbox], start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """A COMMIT waiting for a semi-sync acknowledgement when the master dies: unknown outcome."""
    box = make_sandbox(semi_sync=True)
    _schema(box)
    for replica in (1, 2):
        box.execute(replica, "STOP SLAVE")
    running = _proxy(box, start_proxy, fast_path)
    conn = _connect(running)
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute("INSERT INTO replay_db.t (a, note) VALUES (10, 'x')")
    killed: list[int] = []
    killer = threading.Thread(target=_kill_when_running, args=(box, killed))
    killer.start()
    try:
        with pytest.raises(mysql.connector.Error) as failed:
            cur.execute(f"COMMIT /* {MARKER} */")
    finally:
        killer.join()
    assert killed == [0]
    assert failed.value.errno == ER_LOST_BACKEND
    assert "may or may not have been applied" in failed.value.msg
    assert _counters(running)["Transaction_replays"] == 0
