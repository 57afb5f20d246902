"""Causal reads on a sandbox whose replicas lag (MASTER_DELAY, or a stopped SQL thread): a read
after a write sees the write with causal reads on (per user, per query rule, or for every
session), and some reads are stale without; a wait that times out reads from the writer."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import mysql.connector
import pymysql
import pytest

from proxy_harness import RunningProxy, split_config
from turnout.protocol.constants import CLIENT_SESSION_TRACK, SERVER_SESSION_STATE_CHANGED
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

WRITER, READER = 10, 20
PATHS = pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "coroutine"])


@pytest.fixture
def lagging(fresh_sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with a table, its replicas applying 1 s behind their master."""
    box = fresh_sandbox
    box.execute(0, "CREATE DATABASE IF NOT EXISTS causal", "CREATE TABLE causal.t (id INT PRIMARY KEY, v INT)")
    box.wait_replicas_caught_up()  # the table is there before the replicas lag
    for node in (1, 2):
        box.execute(node, "STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 1", "START SLAVE")
    yield box


def _proxy(
    box: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool, causal_user: int = 0,
    rules_causal: bool = False, **variables: str,
) -> RunningProxy:
    config = split_config(box, **variables)
    user = dataclasses.replace(config.users[0], causal_reads=causal_user)
    rules = config.query_rules
    if rules_causal:
        rules = tuple(
            dataclasses.replace(r, gtid_from_hostgroup=WRITER) if r.destination_hostgroup == READER else r for r in rules
        )
    running = start_proxy(dataclasses.replace(config, users=(user,), query_rules=rules))
    running.call(lambda: setattr(running.proxy, "fast_path", fast_path))
    return running


def _stale_reads(running: RunningProxy, first: int, count: int, reader: Any = None, **connect: Any) -> int:
    """Insert `count` rows, each read back at once (by `reader`'s connection when given): how
    many reads did not see their row."""
    conn = running.connect(**connect)
    tracking = bool(connect.get("client_flag", 0) & CLIENT_SESSION_TRACK)
    other = reader or conn
    stale = 0
    try:
        for key in range(first, first + count):
            with conn.cursor() as cur:
                cur.execute("INSERT INTO causal.t VALUES (%s, %s)", (key, key))
                # a client gets session state only when it asked for it
                assert bool(conn.server_status & SERVER_SESSION_STATE_CHANGED) == tracking
            with other.cursor() as cur:
                cur.execute("SELECT v FROM causal.t WHERE id = %s", (key,))
                if cur.fetchall() != ((key,),):
                    stale += 1
    finally:
        conn.close()
    return stale


def _counters(running: RunningProxy) -> dict[str, int]:
    counters = running.call(lambda: running.proxy.stats.counters)
    return {
        "caught_up": counters.causal_reads_caught_up, "waited": counters.causal_reads_waited,
        "timed_out": counters.causal_reads_timed_out, "to_writer": counters.causal_reads_to_writer,
    }


@PATHS
def test_reads_after_writes_are_stale_without_causal_reads_and_never_with(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    without = _proxy(lagging, start_proxy, fast_path)
    assert _stale_reads(without, 1, 5) > 0
    with_causal = _proxy(lagging, start_proxy, fast_path, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    assert _stale_reads(with_causal, 100, 5) == 0
    counters = _counters(with_causal)
    assert counters["waited"] >= 1  # the replicas waited for the writes
    assert counters["timed_out"] == counters["to_writer"] == 0


def test_a_query_rules_gtid_from_hostgroup_makes_its_reads_causal(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(lagging, start_proxy, True, rules_causal=True, **{"mysql-causal_reads_timeout": "10000"})
    assert _stale_reads(running, 200, 3) == 0
    assert _counters(running)["waited"] >= 1


def test_global_mode_reads_wait_for_other_sessions_writes(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(
        lagging, start_proxy, True, **{"mysql-causal_reads": "global", "mysql-causal_reads_timeout": "10000"}
    )
    reader = running.connect()
    try:
        assert _stale_reads(running, 300, 3, reader=reader) == 0
    finally:
        reader.close()


def test_session_mode_does_not_wait_for_other_sessions_writes(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(
        lagging, start_proxy, True, **{"mysql-causal_reads": "session", "mysql-causal_reads_timeout": "10000"}
    )
    reader = running.connect()
    try:
        assert _stale_reads(running, 400, 3, reader=reader) > 0
        assert _stale_reads(running, 500, 3) == 0
    finally:
        reader.close()


@PATHS
def test_a_wait_that_times_out_reads_from_the_writer(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    for node in (1, 2):
        lagging.execute(node, "STOP SLAVE SQL_THREAD")
    running = _proxy(lagging, start_proxy, fast_path, causal_user=1, **{"mysql-causal_reads_timeout": "200"})
    assert _stale_reads(running, 600, 3) == 0
    counters = _counters(running)
    assert counters["timed_out"] == 3
    assert counters["waited"] == counters["caught_up"] == 0


def test_no_wait_at_all_reads_from_the_writer(lagging: Sandbox, start_proxy: Callable[..., RunningProxy]) -> None:
    running = _proxy(lagging, start_proxy, True, causal_user=1, **{"mysql-causal_reads_timeout": "0"})
    assert _stale_reads(running, 700, 3) == 0
    assert _counters(running)["to_writer"] == 3


def test_a_replica_known_to_have_the_writes_serves_without_a_wait(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(lagging, start_proxy, True, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    conn = running.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO causal.t VALUES (800, 800)")
            for _ in range(6):
                cur.execute("SELECT v FROM causal.t WHERE id = 800")
                assert cur.fetchall() == ((800,),)
    finally:
        conn.close()
    counters = _counters(running)
    # at most one wait per replica; the other reads went to one already known to have the write
    assert 1 <= counters["waited"] <= 2
    assert counters["caught_up"] == 6 - counters["waited"]
    # those need no wait: the fast path relays them
    fast = running.call(lambda: running.proxy.stats.counters.statements_fast_path)
    assert fast >= counters["caught_up"]


def test_prepared_reads_are_causal(lagging: Sandbox, start_proxy: Callable[..., RunningProxy]) -> None:
    running = _proxy(lagging, start_proxy, True, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    conn = _connector(running)
    try:
        cur = conn.cursor(prepared=True)
        _write_then_read(cur, range(900, 903))
        cur.close()
    finally:
        conn.close()
    assert _counters(running)["waited"] >= 1


def test_rules_without_gtid_from_hostgroup_and_users_without_causal_reads_change_nothing(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(lagging, start_proxy, True)
    assert not running.call(lambda: running.proxy.causal)
    assert not running.call(lambda: running.proxy.backends.track_gtids)
    assert _stale_reads(running, 1000, 2) > 0
    assert _counters(running) == {"caught_up": 0, "waited": 0, "timed_out": 0, "to_writer": 0}


def test_causal_reads_reuse_pooled_connections(lagging: Sandbox, start_proxy: Callable[..., RunningProxy]) -> None:
    """Connections that track GTIDs for the proxy serve clients that track nothing: they go back
    to the same pool, not one of their own."""
    running = _proxy(lagging, start_proxy, True, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    assert _stale_reads(running, 1100, 8) == 0
    opened = running.call(lambda: sum(pool.total for pool in running.proxy.pools.servers.values()))
    assert opened <= 3  # one client, one statement at a time: the writer's and at most one per replica


def test_a_client_that_tracks_session_state_gets_it_with_causal_reads(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    running = _proxy(lagging, start_proxy, True, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    assert _stale_reads(running, 1200, 1) == 0  # the proxy logs in to the servers: it learns what they offer
    offered = running.call(lambda: running.proxy.backends.offered_capabilities(running.proxy.server_version))
    assert offered & CLIENT_SESSION_TRACK
    assert _stale_reads(running, 1300, 3, client_flag=CLIENT_SESSION_TRACK) == 0


def _each_result(conn: Any, sql: str) -> list[tuple[object, ...]]:
    """Every result of a multi-statement as the client read it: affected rows, insert id, the
    OK's info message, whether it said session state changed, and rows."""
    seen: list[tuple[object, ...]] = []
    with conn.cursor() as cur:
        cur.execute(sql)
        while True:
            result = cur._result
            seen.append((cur.rowcount, cur.lastrowid, result.message, bool((result.server_status or 0) & SERVER_SESSION_STATE_CHANGED),
                         cur.fetchall()))
            if not cur.nextset():
                return seen


@PATHS
def test_a_client_that_does_not_track_session_state_never_sees_it_in_multi_statement_answers(
    fresh_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], fast_path: bool
) -> None:
    """With causal reads on, the proxy's backend connections track the GTID of every write; a
    client that did not ask for session tracking gets every OK of a multi-statement as the server
    sends it to such a client: the same info messages, no session state."""
    box = fresh_sandbox
    box.execute(0, "CREATE DATABASE IF NOT EXISTS causal",
                *(f"CREATE TABLE causal.{t} (id INT AUTO_INCREMENT PRIMARY KEY, v INT)" for t in ("via", "direct")))
    running = _proxy(box, start_proxy, fast_path, causal_user=1, **{"mysql-causal_reads_timeout": "10000"})
    statements = ("INSERT INTO causal.{t} (v) VALUES (1), (2), (3); UPDATE causal.{t} SET v = v + 10 WHERE id > 1; "
                  "SELECT id, v FROM causal.{t} ORDER BY id; DELETE FROM causal.{t} WHERE id = 1; "
                  "INSERT INTO causal.{t} (v) VALUES (4)")
    multi = pymysql.constants.CLIENT.MULTI_STATEMENTS
    with running.connect(client_flag=multi) as via:
        got = [_each_result(via, statements.format(t="via")) for _ in range(3)]
    master = box.nodes[0]
    with pymysql.connect(host="127.0.0.1", port=master.port, user=APP.user, password=APP.password, autocommit=True,
                         client_flag=multi) as direct:
        expected = [_each_result(direct, statements.format(t="direct")) for _ in range(3)]
    assert got == expected
    assert not any(state_changed for _, _, _, state_changed, _ in got[0])
    assert b"Records: 3  Duplicates: 0" in got[0][0][2] and b"Rows matched: 2  Changed: 2" in got[0][1][2]
    # the answers came through connections that got session state (the proxy's GTID tracking)
    tracking = running.call(lambda: [connection.tracks_gtids and connection.session_state
                                     for pool in running.proxy.pools.servers.values()
                                     for idle in pool.idle.values() for connection in idle])
    assert tracking and all(tracking)


# ---- the wait and the read in one round trip ---------------------------------------------------------
def _in_flight_to_replica(running: RunningProxy, writer_port: int) -> tuple[int, int, int] | None:
    """The backend connection a session has in flight to a replica: (the replica's port, the
    server's thread id, the port of the proxy's end)."""
    def look() -> tuple[int, int, int] | None:
        for state in running.proxy.sessions.values():
            connection = state.in_flight
            if connection is not None and connection.address[1] != writer_port:
                return connection.address[1], connection.thread_id, connection.channel.get_extra_info("sockname")[1]
        return None
    return running.call(look)


def _wait_running(box: Sandbox, running: RunningProxy) -> tuple[int, int, int]:
    """Wait until a replica runs the proxy's MASTER_GTID_WAIT: (the replica's node, its thread
    id there, the port of the proxy's end of that connection)."""
    deadline = time.monotonic() + 30
    while True:
        found = _in_flight_to_replica(running, box.nodes[0].port)
        if found is not None:
            port, thread_id, proxy_port = found
            node = box.index_of_port(port)
            assert node is not None
            rows = box.execute(node, f"SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = {thread_id}")
            if rows and "MASTER_GTID_WAIT" in (rows[0]["INFO"] or ""):
                return node, thread_id, proxy_port
        assert time.monotonic() < deadline, "no replica ever ran the wait"
        time.sleep(0.05)


def _unread_by_server(box: Sandbox, node: int, peer_port: int) -> int:
    """The bytes the kernel holds on the server's socket from the proxy's `peer_port` that the
    server has not read yet (rx_queue of /proc/net/tcp)."""
    server_port = box.nodes[node].port
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, queues = fields[1], fields[2], fields[4]
            if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == peer_port:
                return int(queues.split(":")[1], 16)
    raise AssertionError(f"no socket of port {server_port} from port {peer_port}")


def _read_in_thread(conn: Any, sql: str, outcome: dict[str, Any], prepared: bool = False) -> threading.Thread:
    """Run a read of a mysql.connector connection in a thread: its rows, or error, in `outcome`."""
    def read() -> None:
        try:
            cur = conn.cursor(prepared=prepared)
            cur.execute(sql)
            outcome["rows"] = cur.fetchall()
            cur.close()
        except mysql.connector.Error as exc:
            outcome["error"] = exc
    thread = threading.Thread(target=read)
    thread.start()
    return thread


def _connector(running: RunningProxy) -> Any:
    return mysql.connector.connect(
        host="127.0.0.1", port=running.port, user=APP.user, password=APP.password, autocommit=True
    )


def test_a_waited_read_goes_to_the_replica_with_its_wait_in_one_round_trip(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    """While the replica's wait for the session's write blocks (its SQL thread stopped), the read
    is already at the replica: the server's socket holds it, unread behind the wait (the server
    reads a command when it has answered the one before). Once the replica applies the write,
    the read answers, with the write in it."""
    for node in (1, 2):
        lagging.execute(node, "STOP SLAVE SQL_THREAD")
    running = _proxy(lagging, start_proxy, False, causal_user=1, **{"mysql-causal_reads_timeout": "60000"})
    conn = _connector(running)
    read = "SELECT v FROM causal.t WHERE id = 1400"
    outcome: dict[str, Any] = {}
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO causal.t VALUES (1400, 1400)")
        cur.close()
        thread = _read_in_thread(conn, read, outcome)
        try:
            node, _, proxy_port = _wait_running(lagging, running)
            # the read's whole packet (4-byte header, COM_QUERY, the text) is there already
            assert _unread_by_server(lagging, node, proxy_port) == 4 + 1 + len(read)
            assert "rows" not in outcome  # nothing answered before the write is applied
        finally:
            for node in (1, 2):
                lagging.execute(node, "START SLAVE SQL_THREAD")
            thread.join(60)
    finally:
        conn.close()
    assert outcome == {"rows": [(1400,)]}
    counters = _counters(running)
    assert counters["waited"] == 1
    assert counters["timed_out"] == counters["to_writer"] == 0


def _replica_pools(running: RunningProxy, writer_port: int) -> list[tuple[int, int]]:
    """Per replica the proxy has a pool for: (connections opened to it, of them idle in the pool)."""
    return running.call(lambda: [(p.stats.conn_ok, p.stats.conn_free) for p in running.proxy.pools.servers.values()
                                 if p.address[1] != writer_port])


def _write_then_read(cur: Any, keys: range) -> None:
    """Each key inserted, then read back at once on the same cursor: the read must see it."""
    for key in keys:
        cur.execute("INSERT INTO causal.t VALUES (%s, %s)", (key, key))
        cur.execute("SELECT v FROM causal.t WHERE id = %s", (key,))
        assert cur.fetchall() == [(key,)]


@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
def test_a_timed_out_wait_drops_the_replicas_answer_and_keeps_its_connection(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy], prepared: bool
) -> None:
    """The replica ran the read behind its timed-out wait: that answer (stale, the write is not
    there) is read and dropped, the client gets the writer's; the replica's connection goes back
    to its pool and serves the next reads."""
    for node in (1, 2):
        lagging.execute(node, "STOP SLAVE SQL_THREAD")
    running = _proxy(lagging, start_proxy, False, causal_user=1, **{"mysql-causal_reads_timeout": "200"})
    writer_port = lagging.nodes[0].port
    conn = _connector(running)
    try:
        cur = conn.cursor(prepared=prepared)
        _write_then_read(cur, range(1500, 1503))  # each read gets the writer's answer, and only it
        assert _counters(running)["timed_out"] == 3
        pools = _replica_pools(running, writer_port)
        opened, idle = sum(o for o, _ in pools), sum(i for _, i in pools)
        assert idle == opened >= 1  # every replica connection went back to its pool
        for node in (1, 2):
            lagging.execute(node, "START SLAVE SQL_THREAD")
        lagging.wait_replicas_caught_up()
        for key in range(1500, 1503):  # on a replica now: it has the session's writes
            cur.execute("SELECT v FROM causal.t WHERE id = %s", (key,))
            assert cur.fetchall() == [(key,)]
        cur.close()
    finally:
        conn.close()
    counters = _counters(running)
    assert counters["waited"] + counters["caught_up"] == 3
    assert counters["waited"] >= 1
    # the reads after the timeouts ran on the connections those left in the pools: no second
    # connection to any replica (a replica the timed-out reads did not happen to pick may have
    # got its first one since: which replica serves a read is a weighted random choice)
    pools = _replica_pools(running, writer_port)
    assert pools and max(o for o, _ in pools) == 1


@pytest.mark.parametrize("prepared", [False, True], ids=["text", "prepared"])
def test_a_replica_killed_during_the_wait_loses_no_read(
    lagging: Sandbox, start_proxy: Callable[..., RunningProxy], prepared: bool
) -> None:
    """The replica a read waits on dies: nothing of its answer reached the client, so the read
    runs again (on the replica still up, which then has the write), or the client hears a clean
    error; it never gets rows without its write."""
    for node in (1, 2):
        lagging.execute(node, "STOP SLAVE SQL_THREAD")
    running = _proxy(lagging, start_proxy, False, causal_user=1, **{"mysql-causal_reads_timeout": "60000"})
    conn = _connector(running)
    outcome: dict[str, Any] = {}
    try:
        cur = conn.cursor(prepared=prepared)
        cur.execute("INSERT INTO causal.t VALUES (%s, %s)", (1600, 1600))
        cur.close()
        thread = _read_in_thread(conn, "SELECT v FROM causal.t WHERE id = 1600", outcome, prepared)
        try:
            node, _, _ = _wait_running(lagging, running)
            lagging.execute(3 - node, "START SLAVE SQL_THREAD")
            lagging.kill(node)
        finally:
            thread.join(90)
        assert not thread.is_alive()
    finally:
        conn.close()
    if "error" in outcome:  # a clean error: the connection to the server was lost
        assert outcome["error"].errno in (1927, 2013), outcome
    else:
        assert outcome == {"rows": [(1600,)]}
        assert _counters(running)["waited"] == 1  # on the other replica
