"""Transaction replay under `turnout up` (on by default there): an open transaction survives a
kill -9 of its semi-sync master, and a graceful takeover whose drain deadline reaches it; the
client carries on and commits on the new master, every row written exactly once."""

from __future__ import annotations

import re
import subprocess
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
    # the manager's API shows the new master once its next discovery round has seen it
    wait_for(lambda: running.master() != victim, 60, "the new master in the manager's view")
    new = running.master()
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


def _sysbench(running: RunningTurnout, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={running.proxy_port}",
         f"--mysql-user={APP.user}", f"--mysql-password={APP.password}", "--mysql-db=sbtest",
         "--tables=4", "--table-size=5000", *args],
        capture_output=True, text=True, timeout=timeout,
    )


def _sysbench_run(running: RunningTurnout, seconds: int, results: list[subprocess.CompletedProcess[str]]) -> None:
    results.append(_sysbench(
        running, "--threads=8", f"--time={seconds}", "--db-ps-mode=auto",
        # 1927: a COMMIT in flight on the killed master (unknown outcome); 1213: InnoDB's own
        # deadlocks between sysbench threads, with or without a proxy. The proxy's counters below
        # say that no transaction was lost to the kill.
        # --verbosity=5 makes sysbench print each error it ignored, with its message.
        "--mysql-ignore-errors=1927,1213", "--verbosity=5", "oltp_read_write", "run", timeout=180))


def _prepare_sysbench(running: RunningTurnout) -> None:
    running.box.execute(0, "CREATE DATABASE sbtest")
    prepared = _sysbench(running, "oltp_read_write", "prepare")
    assert prepared.returncode == 0, prepared.stderr
    running.box.wait_replicas_caught_up()


def _ignored_errors(output: str) -> list[tuple[int, str]]:
    return [(int(code), message) for code, message in re.findall(r"Ignoring error (\d+) (.*)", output)]


def test_sysbench_across_a_kill_of_the_semisync_master(turnout_up_semisync: RunningTurnout) -> None:
    """The only errors are COMMITs in flight on the killed master (at most one per thread):
    every transaction open there is replayed on the new master."""
    running = turnout_up_semisync
    box = running.box
    _prepare_sysbench(running)
    victim = running.master()
    results: list[subprocess.CompletedProcess[str]] = []
    run = threading.Thread(target=_sysbench_run, args=(running, 25, results))
    questions = int(running.global_status("Questions"))
    run.start()
    wait_for(lambda: int(running.global_status("Questions")) > questions + 2000, 60, "sysbench to run")
    box.kill(box.index_of_port(int(victim.split(":")[1])) or 0)
    wait_for(lambda: running.master() != victim, 60, "the manager to promote a replica")
    run.join(timeout=240)
    (result,) = results
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reconnects:                          0" in result.stdout
    errors = _ignored_errors(result.stdout + result.stderr)
    unknown = [message for code, message in errors if code == 1927]
    assert len(unknown) <= 8 and all("may or may not have been applied" in m for m in unknown), unknown
    # The other errors: InnoDB's deadlocks between threads, and replays that found a row they had
    # read changed by a transaction committed after their read (REPEATABLE READ: the replay's
    # snapshot is newer than the original's). Those are reads whose rows differ, nothing else.
    for code, message in errors:
        assert code == 1927 or "Deadlock" in message or (
            "gave a different result" in message and "(SELECT" in message
        ), message
    # Transactions open at the kill were replayed; whether a replay succeeds or finds a row it
    # read changed since depends on how the threads interleaved, so only the count is fixed.
    assert int(running.global_status("Transaction_replays")) >= 1
    for failed in ("Transaction_replays_failed", "Transaction_replays_refused"):
        assert running.global_status(failed) == "0", failed


def test_sysbench_and_a_long_transaction_across_a_takeover(turnout_up: RunningTurnout) -> None:
    """A transaction open longer than the drain is replayed; sysbench sees no error at all."""
    running = turnout_up
    box = running.box
    _prepare_sysbench(running)
    _schema(running)
    conn = _connect(running)
    _open_transaction(conn)
    old = running.master()
    new_port = box.nodes[1].port
    cluster = running.cluster()["ClusterName"]
    results: list[subprocess.CompletedProcess[str]] = []
    run = threading.Thread(target=_sysbench_run, args=(running, 15, results))
    questions = int(running.global_status("Questions"))
    run.start()
    wait_for(lambda: int(running.global_status("Questions")) > questions + 2000, 60, "sysbench to run")
    takeover = running.api(f"graceful-master-takeover-auto/{cluster}/127.0.0.1/{new_port}")
    assert takeover["Code"] == "OK", takeover
    run.join(timeout=240)
    (result,) = results
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "reconnects:                          0" in result.stdout
    assert [e for e in _ignored_errors(result.stdout + result.stderr) if "Deadlock" not in e[1]] == []
    assert running.master() == f"127.0.0.1:{new_port}" != old
    _finish_transaction(conn)
    assert _rows(running, 1) == EXPECTED
    assert running.global_status("Transactions_ended_by_switchover") == "1"
    assert running.global_status("Transaction_replays_succeeded") == "1"
    conn.close()
