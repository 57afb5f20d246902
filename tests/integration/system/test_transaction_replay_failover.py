"""Transaction replay under `turnout up` (on by default there): an open transaction survives a
kill -9 of its semi-sync master, and a graceful takeover whose drain deadline reaches it; the
client carries on and commits on the new master, every row written exactly once."""

from __future__ import annotations

import threading
from typing import Any

import mysql.connector

from system_harness import RunningTurnout, wait_for
from turnout.sandbox.config import APP


def _connect(running: RunningTurnout) -> Any:
    return mysql.connector.connect(host="127.0.0.1", port=running.proxy_port, user=APP.user,
                                   password=APP.password, autocommit=True, use_pure=True, connection_timeout=120,
                                   charset="utf8mb4", collation="utf8mb4_general_ci")


def _schema(running: RunningTurnout) -> None:
    box = running.box
    box.execute(0, "CREATE DATABASE replay_db",
                "CREATE TABLE replay_db.t (id INT AUTO_INCREMENT PRIMARY KEY, a INT, note VARCHAR(100))",
                "INSERT INTO replay_db.t (a, note) VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    box.wait_replicas_caught_up()


def _open_transaction(conn: Any) -> None:
    """Inserts (auto-increment ids), an update, reads, prepared statements."""
    cur = conn.cursor()
    prepared = conn.cursor(prepared=True)
    cur.execute("BEGIN")
    cur.execute("INSERT INTO replay_db.t (a, note) VALUES (10, 'text insert')")
    assert cur.lastrowid == 4
    prepared.execute("INSERT INTO replay_db.t (a, note) VALUES (?, ?)", (11, "prepared insert"))
    assert prepared.lastrowid == 5
    prepared.execute("UPDATE replay_db.t SET a = a + ? WHERE id <= ?", (100, 2))
    assert prepared.rowcount == 2
    cur.execute("SELECT id, a FROM replay_db.t ORDER BY id")
    assert [tuple(r) for r in cur.fetchall()] == [(1, 101), (2, 102), (3, 3), (4, 10), (5, 11)]
    prepared.execute("SELECT note FROM replay_db.t WHERE id = ?", (5,))
    assert [tuple(r) for r in prepared.fetchall()] == [("prepared insert",)]


def _finish_transaction(conn: Any) -> None:
    """After the failover: more statements of the same transaction, then its COMMIT."""
    prepared = conn.cursor(prepared=True)
    prepared.execute("INSERT INTO replay_db.t (a, note) VALUES (?, ?)", (12, "after"))
    assert prepared.lastrowid == 6
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*), SUM(a) FROM replay_db.t")
    assert [tuple(r) for r in cur.fetchall()] == [(6, 239)]
    cur.execute("COMMIT")


EXPECTED = [(1, 101, "one"), (2, 102, "two"), (3, 3, "three"), (4, 10, "text insert"),
            (5, 11, "prepared insert"), (6, 12, "after")]


def _rows(running: RunningTurnout, node: int) -> list[tuple[Any, ...]]:
    return [(r["id"], r["a"], r["note"]) for r in running.box.execute(node, "SELECT * FROM replay_db.t ORDER BY id")]


def test_open_transaction_survives_a_kill_of_the_semisync_master(turnout_up_semisync: RunningTurnout) -> None:
    running = turnout_up_semisync
    box = running.box
    _schema(running)
    conn = _connect(running)
    _open_transaction(conn)
    victim = running.master()
    box.kill(box.index_of_port(int(victim.split(":")[1])) or 0)
    # the next statement finds the master gone: the transaction is replayed on the new master
    # once the manager has promoted and published one, and the statement runs there
    _finish_transaction(conn)
    new = running.master()
    assert new != victim
    assert _rows(running, box.index_of_port(int(new.split(":")[1])) or 0) == EXPECTED  # each row once
    assert running.global_status("Transaction_replays_succeeded") == "1"
    conn.close()


def test_open_transaction_survives_a_takeovers_drain(turnout_up: RunningTurnout) -> None:
    """The transaction stays open longer than TakeoverDrainSeconds: the drain ends it, and its
    next statement replays it on the new master."""
    running = turnout_up
    box = running.box
    _schema(running)
    conn = _connect(running)
    _open_transaction(conn)
    old = running.master()
    new_port = box.nodes[1].port
    cluster = running.cluster()["ClusterName"]
    answers: list[Any] = []
    takeover = threading.Thread(target=lambda: answers.append(
        running.api(f"graceful-master-takeover-auto/{cluster}/127.0.0.1/{new_port}")))
    takeover.start()
    takeover.join(timeout=120)
    assert answers and answers[0]["Code"] == "OK", answers
    wait_for(lambda: running.master() == f"127.0.0.1:{new_port}" != old, 30, "the takeover to be published")
    assert running.global_status("Transactions_ended_by_switchover") == "1"
    _finish_transaction(conn)
    assert _rows(running, 1) == EXPECTED
    assert running.global_status("Transaction_replays_succeeded") == "1"
    conn.close()
