"""Bad input and failures hurt only the connection concerned.

Raw sockets speak the MySQL protocol (built with turnout.protocol) and misbehave: garbage,
truncated packets, wrong sequence ids, unknown commands, oversized packets, vanishing in the
middle of a result or a transaction. Backends get killed and hang. Next to them a well-behaved
PyMySQL client keeps working, and never sees another client's session on its backend
connections. After each scenario the proxy's bookkeeping (sessions, connections per user, pool
counters) must match what is really connected, and no pooled connection may be in an unknown
state.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pymysql.cursors
import pytest

from proxy_harness import READER, WRITER, RunningProxy, split_config
from turnout.config.model import MysqlServer, MysqlUser, QueryRule, RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.client import ClientHandshake
from turnout.protocol.commands import build_query
from turnout.protocol.events import AuthDone, AuthFailed
from turnout.protocol.generic import ErrPacket, is_err, parse_err
from turnout.protocol.packets import Packet, PacketBuffer, encode_packet, header
from turnout.protocol.response import ResponseFramer
from turnout.proxy.hostgroups import HostgroupTable
from turnout.sandbox.config import APP, MONITOR
from turnout.sandbox.sandbox import Sandbox

WAIT = 15.0  # seconds any wait below may take at most
MAX_PACKET = 1 << 20
HEALTHY_TIME_ZONE = "+01:00"
EVIL_TIME_ZONE = "+05:00"


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---- a raw protocol client -------------------------------------------------------------------
class RawClient:
    """A MySQL client on a plain socket: it sends exactly the bytes a test asks for."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.packets = PacketBuffer(max_payload=1 << 30)
        self.response = b""  # the bytes of the last command's response

    def read_packet(self) -> Packet | None:
        """The next packet, or None when the proxy closed the connection."""
        while True:
            packet = self.packets.next_packet()
            if packet is not None:
                return packet
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self.packets.feed(data)

    def greeting(self) -> Packet:
        packet = self.read_packet()
        assert packet is not None and packet.seq == 0
        return packet

    def login(self, user: str = APP.user, password: str = APP.password) -> AuthDone | AuthFailed:
        handshake = ClientHandshake(user, password=password, capabilities=c.DEFAULT_CLIENT_CAPABILITIES)
        while True:
            packet = self.read_packet()
            assert packet is not None, "the proxy closed the connection during login"
            outcome = handshake.receive(packet)
            if isinstance(outcome, AuthDone | AuthFailed):
                return outcome
            if outcome is not None:
                self.sock.sendall(outcome)

    def logged_in(self) -> RawClient:
        assert isinstance(self.login(), AuthDone)
        return self

    def send(self, payload: bytes, seq: int = 0) -> None:
        self.sock.sendall(encode_packet(payload, seq))

    def command(self, payload: bytes) -> ResponseFramer:
        """Send one command and read its whole response."""
        self.send(payload)
        framer = ResponseFramer(payload[0])
        pending = b""
        self.response = b""
        while not framer.done:
            data = self.sock.recv(65536)
            assert data, "the proxy closed the connection instead of answering"
            self.response += data
            pending += data
            used = framer.feed(pending)
            pending = pending[used:]
        assert not pending
        return framer

    def query(self, sql: str) -> ResponseFramer:
        return self.command(build_query(sql))

    def final_packets(self) -> list[Packet]:
        """Everything the proxy sends until it closes the connection (which it must)."""
        packets = []
        while (packet := self.read_packet()) is not None:
            packets.append(packet)
        return packets

    def close(self, reset: bool = False) -> None:
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.sock.close()


def closing_error(raw: RawClient) -> ErrPacket | None:
    """The error the proxy sent before closing the connection (None when it closed silently)."""
    packets = raw.final_packets()
    assert all(is_err(p.payload) for p in packets), packets
    assert len(packets) <= 1
    return parse_err(packets[0].payload) if packets else None


# ---- the proxy, a healthy client, and the checks ---------------------------------------------
@pytest.fixture
def no_session_crash(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No session may end in an unexpected exception (the proxy logs those as errors)."""
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    yield
    crashes = [r for r in caplog.records if r.name.startswith("turnout.proxy") and r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() + (r.exc_text or "") for r in crashes]


@pytest.fixture
def robust(sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None) -> RunningProxy:
    sandbox.execute(
        0,
        "CREATE DATABASE IF NOT EXISTS rb",
        "CREATE TABLE IF NOT EXISTS rb.t (id INT PRIMARY KEY, v INT)",
        "DELETE FROM rb.t",
        "INSERT INTO rb.t VALUES (1, 10), (2, 20), (3, 30)",
    )
    sandbox.wait_replicas_caught_up()
    return start_proxy(split_config(sandbox, **{
        "mysql-max_allowed_packet": str(MAX_PACKET),
        "mysql-connect_timeout_client": "1000",
    }))


class Healthy:
    """A well-behaved client; `check()` proves it still works and holds only its own session."""

    def __init__(self, running: RunningProxy) -> None:
        self.conn = running.connect(database="rb")
        with self.conn.cursor() as cur:
            cur.execute(f"SET time_zone = '{HEALTHY_TIME_ZONE}'")
            cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")

    def check(self) -> None:
        with self.conn.cursor() as cur:
            for _ in range(3):  # readers and writer, several pooled connections each
                cur.execute("SELECT @@session.time_zone, @@session.sql_mode, id, v FROM rb.t ORDER BY id")
                rows = cur.fetchall()
                assert [r[2:] for r in rows] == [(1, 10), (2, 20), (3, 30)]
                assert {r[:2] for r in rows} == {(HEALTHY_TIME_ZONE, "STRICT_ALL_TABLES")}
                cur.execute("SHOW SESSION VARIABLES WHERE Variable_name IN ('time_zone', 'sql_mode')")
                assert dict(cur.fetchall()) == {"time_zone": HEALTHY_TIME_ZONE, "sql_mode": "STRICT_ALL_TABLES"}
                cur.execute("SELECT COUNT(*) FROM rb.t FOR UPDATE")
                assert cur.fetchone() == (3,)
                assert not self.conn.server_status & c.SERVER_STATUS_IN_TRANS

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def healthy(robust: RunningProxy) -> Iterator[Healthy]:
    client = Healthy(robust)
    client.check()
    yield client
    client.check()
    client.close()


def bookkeeping(running: RunningProxy) -> dict[str, Any]:
    """What the proxy believes, read on its own loop."""

    def read() -> dict[str, Any]:
        proxy = running.proxy
        held: dict[tuple[str, int], int] = {}
        for session in proxy.sessions.values():
            if session.kept is not None:
                address = session.kept.connection.address
                held[address] = held.get(address, 0) + 1
        users: dict[str, int] = {}
        for session in proxy.sessions.values():
            assert session.user is not None
            users[session.user.user.username] = users.get(session.user.user.username, 0) + 1
        pools = {}
        for address, pool in proxy.pools.servers.items():
            idle = [conn for queue in pool.idle.values() for conn in queue]
            pools[address] = {
                "used": pool.stats.conn_used,
                "free": pool.stats.conn_free,
                "idle": len(idle),
                "idle_unknown": sum(
                    1 for conn in idle if conn.broken or conn.channel.is_closing() or conn.channel.at_eof()
                ),
                "held": held.get(address, 0),
            }
        return {
            "sessions": len(proxy.sessions),
            "users": {name: n for name, n in proxy.connections_by_user.items() if n},
            "counted_users": users,
            "pools": pools,
        }

    return running.call(read)


def settled(running: RunningProxy, sessions: int, in_flight: int = 0) -> dict[str, Any]:
    """Wait until the proxy holds exactly `sessions` sessions and its pools account for every
    backend connection: used = held by a session (or running one of `in_flight` statements),
    free = idle and in a known state."""
    state: dict[str, Any] = {}

    def consistent() -> bool:
        nonlocal state
        state = bookkeeping(running)
        return (
            state["sessions"] == sessions
            and state["users"] == state["counted_users"]
            and all(
                p["used"] >= p["held"] and p["free"] == p["idle"] and p["idle_unknown"] == 0
                for p in state["pools"].values()
            )
            and sum(p["used"] - p["held"] for p in state["pools"].values()) == in_flight
        )

    try:
        wait_for(consistent, "the proxy's bookkeeping to settle")
    except AssertionError:
        raise AssertionError(f"bookkeeping never settled: {state}") from None
    return state


# ---- before login -----------------------------------------------------------------------------
def _handshake_response(body: bytes) -> bytes:
    caps = c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_PLUGIN_AUTH
    return caps.to_bytes(4, "little") + (1 << 24).to_bytes(4, "little") + bytes([45]) + bytes(23) + body


BAD_HANDSHAKE_RESPONSES = {
    "garbage": bytes(range(7, 90)),
    "truncated fixed part": b"\x85\xa6\x0f",
    "no NUL after the user name": _handshake_response(b"app"),
    "auth length beyond the packet": _handshake_response(b"app\x00\xf0abc"),
    "lenenc auth length beyond the packet": (
        (c.CLIENT_PROTOCOL_41 | c.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA).to_bytes(4, "little")
        + bytes(28) + b"app\x00\xfe\xff\xff\xff\xff\xff\xff\xff\x7fxyz"
    ),
    "attributes length beyond the packet": (
        (c.CLIENT_PROTOCOL_41 | c.CLIENT_SECURE_CONNECTION | c.CLIENT_CONNECT_ATTRS).to_bytes(4, "little")
        + bytes(28) + b"app\x00\x00\xfd\xff\xff\xff\x03abc"
    ),
    "pre-4.1 response": b"\x00\x00" + b"\x00" * 30,
    "TLS request": (c.CLIENT_PROTOCOL_41 | c.CLIENT_SSL).to_bytes(4, "little") + bytes(28),
}


@pytest.mark.parametrize("name", list(BAD_HANDSHAKE_RESPONSES))
def test_malformed_handshake_response_closes_only_that_client(
    robust: RunningProxy, healthy: Healthy, name: str
) -> None:
    raw = RawClient(robust.port)
    raw.greeting()
    raw.send(BAD_HANDSHAKE_RESPONSES[name], seq=1)
    error = closing_error(raw)
    assert error is None or error.code in (c.ER_MALFORMED_PACKET, c.ER_HANDSHAKE_ERROR, c.ER_ACCESS_DENIED_ERROR)
    healthy.check()
    settled(robust, sessions=1)


def test_garbage_truncation_and_wrong_sequence_before_login(robust: RunningProxy, healthy: Healthy) -> None:
    # raw garbage instead of a handshake response
    raw = RawClient(robust.port)
    raw.greeting()
    raw.sock.sendall(b"GET / HTTP/1.1\r\nHost: turnout\r\n\r\n")
    closing_error(raw)
    # a handshake response whose header promises more than is ever sent: closed at
    # mysql-connect_timeout_client, and meanwhile nobody else waits for it
    stalled = RawClient(robust.port)
    stalled.greeting()
    stalled.sock.sendall(header(200, 1) + b"\x85\xa6")
    healthy.check()
    closing_error(stalled)
    # a client that goes away in the middle of its handshake response
    gone = RawClient(robust.port)
    gone.greeting()
    gone.sock.sendall(header(200, 1) + b"\x85\xa6\x0f\x00")
    gone.close()
    # a correct handshake response with a wrong sequence id
    wrong_seq = RawClient(robust.port)
    response = ClientHandshake(APP.user, password=APP.password).receive(wrong_seq.greeting())
    assert isinstance(response, bytes)
    wrong_seq.sock.sendall(response[:3] + b"\x07" + response[4:])
    error = closing_error(wrong_seq)
    assert error is None or error.code == c.ER_MALFORMED_PACKET
    # nothing before the greeting is even read: a client that sends first and leaves
    early = socket.create_connection(("127.0.0.1", robust.port))
    early.sendall(b"\x00" * 100)
    early.close()
    healthy.check()
    settled(robust, sessions=1)


# ---- after login ------------------------------------------------------------------------------
UNKNOWN_COMMANDS = [
    c.COM_SLEEP, c.COM_CREATE_DB, c.COM_DROP_DB, c.COM_REFRESH, c.COM_SHUTDOWN, c.COM_PROCESS_INFO,
    c.COM_CONNECT, c.COM_DEBUG, c.COM_TIME, c.COM_DELAYED_INSERT, c.COM_BINLOG_DUMP,
    c.COM_TABLE_DUMP, c.COM_CONNECT_OUT, c.COM_REGISTER_SLAVE, c.COM_DAEMON, c.COM_BINLOG_DUMP_GTID,
    0x20, 0x63, 0xFE, 0xFF,
]


def test_unknown_commands_get_an_error_and_the_connection_stays_usable(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy
) -> None:
    raw = RawClient(robust.port).logged_in()
    for command in UNKNOWN_COMMANDS:
        framer = raw.command(bytes([command]) + b"\x01\x02\x03")
        assert framer.error is not None and framer.error.code == c.ER_UNKNOWN_COM_ERROR, command
        framer = raw.query("SELECT COUNT(*) FROM rb.t")
        assert framer.error is None and framer.result_sets == 1
    # COM_PROCESS_KILL acts on the proxy's sessions: a short one is refused, an unknown id is 1094
    framer = raw.command(bytes([c.COM_PROCESS_KILL]) + b"\x01\x02\x03")
    assert framer.error is not None and framer.error.code == c.ER_MALFORMED_PACKET
    framer = raw.command(bytes([c.COM_PROCESS_KILL]) + (987654321).to_bytes(4, "little"))
    assert framer.error is not None and framer.error.code == 1094
    assert raw.query("SELECT COUNT(*) FROM rb.t").error is None
    # nothing reached a server as a shutdown, a kill or a binlog dump
    for node in range(3):
        assert sandbox.execute(node, "SELECT 1 AS up") == [{"up": 1}]
    healthy.check()
    raw.close()
    settled(robust, sessions=1)


def test_wrong_sequence_id_and_empty_command_close_that_client(robust: RunningProxy, healthy: Healthy) -> None:
    raw = RawClient(robust.port).logged_in()
    raw.query("SET time_zone = '+05:00'")
    raw.send(build_query("SELECT 1"), seq=3)
    error = closing_error(raw)
    assert error is not None and error.code == c.ER_NET_PACKETS_OUT_OF_ORDER

    empty = RawClient(robust.port).logged_in()
    empty.query("SET @evil = 1")  # the session now keeps its backend connection
    empty.sock.sendall(header(0, 0))
    error = closing_error(empty)
    assert error is None or error.code == c.ER_MALFORMED_PACKET
    healthy.check()
    settled(robust, sessions=1)


def test_truncated_packets_after_login(robust: RunningProxy, healthy: Healthy) -> None:
    raw = RawClient(robust.port).logged_in()
    raw.query("BEGIN")
    raw.query("UPDATE rb.t SET v = 99 WHERE id = 1")
    raw.sock.sendall(header(100, 0) + b"\x03SELECT")  # and then it goes away
    raw.close()
    healthy.check()  # the row lock and the update died with the client's backend connection
    settled(robust, sessions=1)


MALFORMED_KNOWN_COMMANDS = {
    "stmt execute, 2 bytes": bytes([c.COM_STMT_EXECUTE, 1]),
    "stmt execute, unknown id": bytes([c.COM_STMT_EXECUTE]) + (77).to_bytes(4, "little") + b"\x00\x01\x00\x00\x00",
    "stmt close, short": bytes([c.COM_STMT_CLOSE]),
    "stmt reset, short": bytes([c.COM_STMT_RESET, 1, 2]),
    "stmt fetch, short": bytes([c.COM_STMT_FETCH, 1]),
    "long data, short": bytes([c.COM_STMT_SEND_LONG_DATA, 1]),
    "set option, short": bytes([c.COM_SET_OPTION]),
    "set option, unknown option": bytes([c.COM_SET_OPTION, 9, 0]),
    "change user, garbage": bytes([c.COM_CHANGE_USER]) + b"\xff" * 7,
    "change user, unknown user": bytes([c.COM_CHANGE_USER]) + b"nobody\x00\x00rb\x00",
    "field list, no NUL": bytes([c.COM_FIELD_LIST]) + b"t",
    "init db, invalid utf-8": bytes([c.COM_INIT_DB]) + b"\xff\xfe",
    "query, invalid utf-8": bytes([c.COM_QUERY]) + b"SELECT '\xff\xfe'",
    "prepare, invalid utf-8": bytes([c.COM_STMT_PREPARE]) + b"SELECT \xff",
}


@pytest.mark.parametrize("name", list(MALFORMED_KNOWN_COMMANDS))
def test_malformed_known_commands(robust: RunningProxy, healthy: Healthy, name: str) -> None:
    """An error (the connection stays usable) or a close, and nothing else for anyone else."""
    raw = RawClient(robust.port).logged_in()
    raw.query(f"SET time_zone = '{EVIL_TIME_ZONE}'")
    payload = MALFORMED_KNOWN_COMMANDS[name]
    raw.send(payload)
    raw.sock.sendall(encode_packet(bytes([c.COM_PING]), 0))
    # an answer (or none: COM_STMT_CLOSE and SEND_LONG_DATA have none), then the ping's OK; or a close
    answered = []
    while (packet := raw.read_packet()) is not None:
        answered.append(packet)
        if packet.seq == 1 and packet.payload[:1] == b"\x00" and len(packet.payload) < 16:
            break
    healthy.check()
    raw.close()
    settled(robust, sessions=1)


def test_queries_that_are_not_utf8(robust: RunningProxy, healthy: Healthy) -> None:
    """A latin1 client's bytes are relayed as they are, in queries and prepared statements
    (they used to end the session when they reached the digest or a backend prepare)."""
    raw = RawClient(robust.port).logged_in()
    assert raw.query("SET NAMES latin1").error is None
    framer = raw.command(bytes([c.COM_QUERY]) + b"SELECT 'caf\xe9' AS caf\xe9 FROM rb.t WHERE id = 1")
    assert framer.error is None and b"caf\xe9" in raw.response
    framer = raw.command(bytes([c.COM_STMT_PREPARE]) + b"SELECT 'th\xe9' AS t\xe9 FROM rb.t WHERE id = 1")
    assert framer.error is None and framer.prepare is not None
    statement_id = framer.prepare.statement_id.to_bytes(4, "little")
    framer = raw.command(bytes([c.COM_STMT_EXECUTE]) + statement_id + b"\x00\x01\x00\x00\x00")
    assert framer.error is None and b"th\xe9" in raw.response
    healthy.check()
    raw.close()
    settled(robust, sessions=1)


def test_packet_over_max_allowed_packet(robust: RunningProxy, healthy: Healthy) -> None:
    # just under the limit works
    with healthy.conn.cursor() as cur:
        big = "x" * (MAX_PACKET - 1024)
        cur.execute("SELECT LENGTH(%s)", (big,))
        assert cur.fetchone() == (len(big),)
    raw = RawClient(robust.port).logged_in()
    raw.query("SET @evil = 1")
    raw.sock.sendall(header(2 * MAX_PACKET, 0) + b"\x03SELECT '" + b"x" * 1000)
    error = closing_error(raw)
    assert error is not None and error.code == c.ER_NET_PACKET_TOO_LARGE
    healthy.check()
    settled(robust, sessions=1)


# ---- clients vanishing ------------------------------------------------------------------------
def _running_queries(sandbox: Sandbox, marker: str) -> int:
    total = 0
    for node in range(3):
        rows = sandbox.execute(
            node, f"SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' "
                  "AND INFO NOT LIKE '%PROCESSLIST%'"
        )
        total += int(rows[0]["n"])
    return total


def _single_values(response: bytes) -> list[bytes | None]:
    """The value of each one-column, one-row text result set in `response`, in order."""
    buffer = PacketBuffer(max_payload=1 << 30)
    buffer.feed(response)
    values: list[bytes | None] = []
    while (first := buffer.next_packet()) is not None:
        assert first.payload == b"\x01", f"not a one-column result set: {first.payload[:40]!r}"
        packets = [buffer.next_packet() for _ in range(4)]  # definition, EOF, row, EOF
        assert all(p is not None for p in packets)
        row = packets[2].payload  # type: ignore[union-attr]
        values.append(None if row == b"\xfb" else row[1 : 1 + row[0]])
    return values


def test_pipelined_commands_are_answered_in_order(robust: RunningProxy, healthy: Healthy) -> None:
    """A client that sends its next commands before reading the answers (pipelining) gets them in
    order, whether a statement is relayed by callbacks or by the session's coroutine."""
    statements = [
        "SELECT 1", "SELECT v FROM rb.t WHERE id = 2", "SET @pipelined = 7", "SELECT @pipelined",
        "SELECT 'after'", "SELECT v FROM rb.t WHERE id = 3", "SELECT 'last'",
    ]
    raw = RawClient(robust.port).logged_in()
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for round_no in range(6):
        packets = [encode_packet(build_query(sql), 0) for sql in statements if not sql.startswith("SET")]
        if round_no % 2:
            raw.sock.sendall(b"".join(packets))  # all in one segment
        else:
            for packet in packets:  # one by one: later ones arrive while the first are relayed
                raw.sock.sendall(packet)
        values = _single_values(_receive_responses(raw, len(packets)))
        assert values[:2] + values[3:] == [b"1", b"20", b"after", b"30", b"last"]
        assert values[2] is None  # @pipelined was never set on this connection: NULL
    # and with the SET in the pipeline, the user variable pins the backend for what follows
    raw.sock.sendall(b"".join(encode_packet(build_query(sql), 0) for sql in statements))
    responses = _complete_responses(_receive_responses(raw, len(statements)))
    assert responses[2][0].ok is not None  # the SET's OK
    without_set = b"".join(chunk for i, (_, chunk) in enumerate(responses) if i != 2)
    assert _single_values(without_set) == [b"1", b"20", b"7", b"after", b"30", b"last"]
    raw.close()
    healthy.check()
    settled(robust, sessions=1)


def _receive_responses(raw: RawClient, count: int) -> bytes:
    """Read until `count` whole responses to COM_QUERY have arrived."""
    received = b""
    while len(_complete_responses(received)) < count:
        data = raw.sock.recv(65536)
        assert data, "the proxy closed the connection"
        received += data
    return received


def _complete_responses(data: bytes) -> list[tuple[ResponseFramer, bytes]]:
    """`data` cut into whole responses to COM_QUERY: each framer, with the bytes it read."""
    responses = []
    while data:
        framer = ResponseFramer(c.COM_QUERY)
        used = framer.feed(data)
        if not framer.done:
            break
        responses.append((framer, data[:used]))
        data = data[used:]
    return responses


@pytest.mark.parametrize("in_transaction", [False, True], ids=["pooled", "held"])
@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_vanishes_in_the_middle_of_a_large_result(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy, reset: bool, in_transaction: bool
) -> None:
    raw = RawClient(robust.port).logged_in()
    if in_transaction:  # the result then streams from the connection the session holds
        assert raw.query("BEGIN").error is None
        assert raw.query("SELECT v FROM rb.t WHERE id = 1 FOR UPDATE").error is None
    raw.send(build_query("SELECT seq, REPEAT('vanish', 100) FROM rb.seq_1_to_300000"))
    received = 0
    while received < 20000:
        received += len(raw.sock.recv(4096))
    raw.close(reset=reset)
    settled(robust, sessions=1)
    # the server is not left streaming to a connection nobody reads
    wait_for(lambda: _running_queries(sandbox, "vanish") == 0, "the abandoned query to end on the server")
    # pooled connections answer their own statements, not the rest of the abandoned result
    with healthy.conn.cursor() as cur:
        for i in range(20):
            cur.execute(f"SELECT seq FROM seq_1_to_{i + 2}")
            assert [r[0] for r in cur.fetchall()] == list(range(1, i + 3))
    healthy.check()
    settled(robust, sessions=1)


def test_client_vanishes_in_the_middle_of_a_transaction(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy
) -> None:
    raw = RawClient(robust.port).logged_in()
    raw.query("SET SESSION innodb_lock_wait_timeout = 50")
    raw.query("BEGIN")
    assert raw.query("INSERT INTO rb.t VALUES (100, 100)").error is None
    assert raw.query("UPDATE rb.t SET v = v + 1 WHERE id = 2").error is None
    raw.close()
    settled(robust, sessions=1)
    with healthy.conn.cursor() as cur:
        cur.execute("SET SESSION innodb_lock_wait_timeout = 10")  # bounds a wait on a lock left behind
        cur.execute("SELECT id, v FROM rb.t WHERE id IN (2, 100) FOR UPDATE")
        assert cur.fetchall() == ((2, 20),)
        cur.execute("INSERT INTO rb.t VALUES (100, 1)")
        cur.execute("DELETE FROM rb.t WHERE id = 100")
    sandbox.wait_replicas_caught_up()  # check() reads from the replicas, which apply the DELETE asynchronously
    healthy.check()


# ---- backends dying ---------------------------------------------------------------------------
def _idle_thread_ids(running: RunningProxy, address: tuple[str, int]) -> list[int]:
    def read() -> list[int]:
        pool = running.proxy.pools.servers.get(address)
        return [] if pool is None else [conn.thread_id for q in pool.idle.values() for conn in q]

    return running.call(read)


def test_backend_connection_killed_while_idle_in_the_pool(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy
) -> None:
    writer = ("127.0.0.1", sandbox.nodes[0].port)
    with healthy.conn.cursor() as cur:
        cur.execute("UPDATE rb.t SET v = v WHERE id = 1")
        cur.execute("SELECT 1")  # the UPDATE's OK holds its connection for ROW_COUNT(); a read lets it go
    idle = _idle_thread_ids(robust, writer)
    assert idle
    for thread_id in idle:
        sandbox.execute(0, f"KILL {thread_id}")
    # the next statements find the pool's dead connections dead, and work
    with healthy.conn.cursor() as cur:
        for _ in range(3):
            cur.execute("UPDATE rb.t SET v = v WHERE id = 1")
            cur.execute("SHOW SESSION VARIABLES LIKE 'time_zone'")
            assert cur.fetchone() == ("time_zone", HEALTHY_TIME_ZONE)
    healthy.check()
    settled(robust, sessions=1)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["pooled", "held"])
def test_backend_connection_killed_while_a_query_runs(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy, in_transaction: bool
) -> None:
    victim = robust.connect()
    outcome: list[BaseException | tuple[Any, ...]] = []
    statement = "SELECT SLEEP(30) AS killed_here FROM rb.t WHERE id = 1 FOR UPDATE"
    if in_transaction:  # a plain read, on the connection the session holds for its transaction
        with victim.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("UPDATE rb.t SET v = v WHERE id = 3")
        statement = "SELECT SLEEP(30) AS killed_here FROM rb.t WHERE id = 1"

    def run() -> None:
        try:
            with victim.cursor() as cur:
                cur.execute(statement)
                outcome.append(cur.fetchall())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    found: list[dict[str, Any]] = []

    def running_on_writer() -> bool:
        found[:] = sandbox.execute(0, "SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%killed_here%' "
                                      "AND INFO NOT LIKE '%PROCESSLIST%'")
        return bool(found)

    wait_for(running_on_writer, "the query to run")
    sandbox.execute(0, f"KILL {found[0]['ID']}")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert isinstance(outcome[0], pymysql.err.OperationalError)
    assert outcome[0].args[0] in (1927, 2013)  # the server's "Connection was killed", or the proxy's
    # the victim's connection to the proxy still works, and so does everyone else's
    with victim.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM rb.t FOR UPDATE")
        assert cur.fetchone() == (3,)
    healthy.check()
    victim.close()
    settled(robust, sessions=1)


def test_backend_hangs_in_the_middle_of_a_result(
    fresh_sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    box = fresh_sandbox
    box.execute(0, "CREATE DATABASE IF NOT EXISTS rb", "CREATE TABLE rb.t (id INT PRIMARY KEY)",
                "INSERT INTO rb.t VALUES (1), (2)")
    box.wait_replicas_caught_up()
    other_readers = 30
    config = RuntimeConfig(
        version=1,
        servers=(
            MysqlServer(WRITER, "127.0.0.1", box.nodes[0].port),
            MysqlServer(READER, "127.0.0.1", box.nodes[1].port),
            MysqlServer(other_readers, "127.0.0.1", box.nodes[2].port),
        ),
        users=(MysqlUser(APP.user, APP.password, default_hostgroup=WRITER),),
        query_rules=(
            QueryRule(rule_id=1, active=1, match_pattern="hangs_here", destination_hostgroup=READER, apply=1),
            QueryRule(rule_id=2, active=1, match_digest="^SELECT", destination_hostgroup=other_readers, apply=1),
        ),
        variables={"mysql-connect_timeout_server_max": "2000"},
    )
    running = start_proxy(config)
    rows = 100_000  # ~100 MB: far more than every buffer between the server and the client
    victim = running.connect(cursorclass=pymysql.cursors.SSCursor)
    cur = victim.cursor()
    cur.execute(f"SELECT seq, REPEAT('x', 1000) AS hangs_here FROM rb.seq_1_to_{rows}")
    assert cur.fetchone() is not None
    box.pause(1)
    try:
        done = threading.Event()
        counted: list[int] = []

        def drain() -> None:
            counted.append(1 + sum(1 for _ in cur))
            done.set()

        thread = threading.Thread(target=drain, daemon=True)
        thread.start()
        others = running.connect()
        with others.cursor() as other_cur:
            for i in range(20):
                other_cur.execute("INSERT INTO rb.t VALUES (%s)", (100 + i,))
                other_cur.execute("SELECT COUNT(*) FROM rb.t")  # the other replica
                other_cur.fetchone()
        assert box.execute(0, "SELECT COUNT(*) AS n FROM rb.t") == [{"n": 22}]
        late = running.connect()  # logging in needs no backend
        with late.cursor() as late_cur:
            late_cur.execute("SELECT 1")
            assert late_cur.fetchone() == (1,)
        late.close()
        others.close()
        assert not done.is_set()  # the server is stopped: the rest of the result cannot have arrived
        settled(running, sessions=1, in_flight=1)
    finally:
        box.resume(1)
    thread.join(60)
    assert counted == [rows]
    cur.close()
    with victim.cursor() as again:
        again.execute("SELECT COUNT(*) FROM rb.t WHERE id < 100 AND 'hangs_here' <> ''")
        assert again.fetchone() == (2,)
    victim.close()
    settled(running, sessions=0)


# ---- no server available ----------------------------------------------------------------------
def test_no_server_available_waits_then_names_the_hostgroup(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    config = split_config(sandbox, **{"mysql-connect_timeout_server_max": "500"})
    running = start_proxy(config)
    running.set_servers([s for s in config.servers if s.hostgroup_id == WRITER])
    with running.connect() as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as excinfo:
            cur.execute("SELECT 1")
        assert excinfo.value.args[0] == 9001
        assert f"hostgroup {READER}" in excinfo.value.args[1]
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES FOR UPDATE")  # the writer still works
        assert cur.fetchone()[0] > 0
    settled(running, sessions=0)


def test_a_server_refusing_the_login_answers_the_client_and_the_session_goes_on(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    """A user the proxy knows but the servers do not: the server's own 1045 reaches the client,
    for every statement, and nothing else breaks."""
    config = split_config(sandbox)
    config = dataclasses.replace(
        config, users=(*config.users, MysqlUser("nobody_on_the_servers", "pw", default_hostgroup=WRITER))
    )
    running = start_proxy(config)
    with running.connect(user="nobody_on_the_servers", password="pw") as conn, conn.cursor() as cur:
        for statement in ("SELECT 1", "SELECT 1 FOR UPDATE"):
            with pytest.raises(pymysql.err.OperationalError) as refused:
                cur.execute(statement)
            assert refused.value.args[0] == c.ER_ACCESS_DENIED_ERROR
    with running.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    settled(running, sessions=0)


def test_a_server_appearing_during_the_wait_serves_the_statement(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    config = split_config(sandbox, **{"mysql-connect_timeout_server_max": str(int(WAIT * 1000))})
    running = start_proxy(config)
    running.set_servers([s for s in config.servers if s.hostgroup_id == WRITER])
    conn = running.connect()
    result: list[Any] = []

    def run() -> None:
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT @@server_id")
                result.append(cur.fetchone())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def waiting() -> bool:
        rows = running.call(lambda: running.proxy.stats_table("stats_mysql_processlist")) or []
        return any(row["command"] == "Query" for row in rows)

    wait_for(waiting, "the statement to wait for a server")
    assert not result
    running.set_servers(list(config.servers))
    thread.join(WAIT)
    reader_ids = {sandbox.execute(n, "SELECT @@server_id AS id")[0]["id"] for n in (1, 2)}
    assert len(result) == 1 and isinstance(result[0], tuple) and result[0][0] in reader_ids
    conn.close()
    settled(running, sessions=0)


# ---- who may connect --------------------------------------------------------------------------
def test_login_refusals_use_mysql_codes_and_messages(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    base = split_config(sandbox, **{"mysql-max_connections": "4"})
    config = RuntimeConfig(
        version=1,
        servers=base.servers,
        users=(
            MysqlUser(APP.user, APP.password, default_hostgroup=WRITER, max_connections=2),
            MysqlUser("sleeper", "pw", active=0, default_hostgroup=WRITER),
            MysqlUser(MONITOR.user, MONITOR.password, default_hostgroup=WRITER),
        ),
        query_rules=base.query_rules,
        replication_hostgroups=base.replication_hostgroups,
        variables=base.variables,
    )
    running = start_proxy(config)

    def refused(user: str, password: str) -> tuple[int, str]:
        with pytest.raises(pymysql.err.OperationalError) as excinfo:
            running.connect(user=user, password=password)
        return excinfo.value.args[0], excinfo.value.args[1]

    assert refused(APP.user, "wrong") == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")
    assert refused(APP.user, "") == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: NO)")
    assert refused("nobody", "x") == (1045, "Access denied for user 'nobody'@'127.0.0.1' (using password: YES)")
    assert refused("sleeper", "pw") == (1045, "Access denied for user 'sleeper'@'127.0.0.1' (using password: YES)")
    app = [running.connect(), running.connect()]
    assert refused(APP.user, APP.password) == (1203, "User 'app' has exceeded the 'max_user_connections' resource")
    other = [running.connect(user=MONITOR.user, password=MONITOR.password) for _ in range(2)]
    assert refused(MONITOR.user, MONITOR.password) == (1040, "Too many connections")
    assert settled(running, sessions=4)["users"] == {APP.user: 2, MONITOR.user: 2}
    app.pop().close()
    app.append(running.connect())  # a freed slot is usable again
    for conn in app + other:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    for conn in app + other:
        conn.close()
    state = settled(running, sessions=0)
    assert state["users"] == {}


# ---- the two-writer guard as the data path sees it --------------------------------------------
def test_write_blocked_hostgroup_refuses_writes_and_reads_continue(
    sandbox: Sandbox, robust: RunningProxy, healthy: Healthy
) -> None:
    servers = list(split_config(sandbox).servers)
    message = "turnout: two writers in hostgroup 10; writes refused until one is fenced"
    before = robust.connect()  # a client connected before the guard
    robust.set_servers(servers, write_blocked={WRITER: message})
    after = robust.connect()  # and one after: its SET NAMES is no write
    for conn in (before, after):
        with conn.cursor() as cur:
            with pytest.raises(pymysql.err.MySQLError) as excinfo:
                cur.execute("INSERT INTO rb.t VALUES (50, 50)")
            assert excinfo.value.args == (c.ER_OPTION_PREVENTS_STATEMENT, message)
            with pytest.raises(pymysql.err.MySQLError) as excinfo:
                cur.execute("SELECT v FROM rb.t WHERE id = 1 FOR UPDATE")
            assert excinfo.value.args == (c.ER_OPTION_PREVENTS_STATEMENT, message)
            for _ in range(5):
                cur.execute("SELECT COUNT(*) FROM rb.t")  # the readers
                assert cur.fetchone() == (3,)
    # the writers shunned too, as the monitor does: writes still get the guard's error at once
    readers = [s for s in servers if s.hostgroup_id == READER]
    robust.set_servers(readers, write_blocked={WRITER: message})
    with after.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as excinfo:
            cur.execute("UPDATE rb.t SET v = 0")
        assert excinfo.value.args == (c.ER_OPTION_PREVENTS_STATEMENT, message)
        cur.execute("SELECT SUM(v) FROM rb.t")
        assert cur.fetchone() == (60,)
    robust.set_servers(servers)
    with after.cursor() as cur:
        cur.execute("INSERT INTO rb.t VALUES (50, 50)")
        cur.execute("DELETE FROM rb.t WHERE id = 50")
    sandbox.wait_replicas_caught_up()  # the healthy client's check() reads from the replicas
    before.close()
    after.close()
    settled(robust, sessions=1)


# ---- query timeouts ---------------------------------------------------------------------------
def test_statements_past_their_timeout_are_killed(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    """mysql-default_query_timeout, and a query rule's timeout: the statement is killed on the
    server, the client hears 1969 (what drivers know as a statement timeout), and its session and
    everyone else's go on."""
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS rb", "CREATE TABLE IF NOT EXISTS rb.timeouts (id INT PRIMARY KEY)",
                    "DELETE FROM rb.timeouts")
    sandbox.wait_replicas_caught_up()
    config = split_config(sandbox, **{"mysql-default_query_timeout": "30000"})
    rule = QueryRule(rule_id=0, active=1, match_pattern="short_fuse", timeout=1000, apply=0)
    config = RuntimeConfig(
        version=1, servers=config.servers, users=config.users, query_rules=(rule, *config.query_rules),
        replication_hostgroups=config.replication_hostgroups, variables=config.variables,
    )
    running = start_proxy(config)
    conn = running.connect(autocommit=True)
    with conn.cursor() as cur:
        # a read relayed by callbacks, on a replica
        with pytest.raises(pymysql.err.OperationalError) as raised:
            cur.execute("SELECT SLEEP(20) AS short_fuse")
        assert raised.value.args[0] == 1969 and "timeout" in raised.value.args[1]
        wait_for(lambda: _running_queries(sandbox, "short_fuse") == 0, "the statement to be killed on the server")
        # inside a transaction: the statement ends and so does the transaction
        cur.execute("BEGIN")
        cur.execute("INSERT INTO rb.timeouts VALUES (1)")
        with pytest.raises(pymysql.err.OperationalError) as raised:
            cur.execute("SELECT SLEEP(20) AS short_fuse FROM rb.timeouts FOR UPDATE")
        assert raised.value.args[0] == 1969 and "rolled back" in raised.value.args[1]
        wait_for(lambda: _running_queries(sandbox, "short_fuse") == 0, "the statement to be killed on the server")
        cur.execute("SELECT COUNT(*) FROM rb.timeouts FOR UPDATE")
        assert cur.fetchone() == (0,)
        # statements within their timeout are untouched, on the same session
        cur.execute("SELECT SLEEP(1.5) AS slow_but_allowed")
        assert cur.fetchone() == (0,)
    assert running.call(lambda: running.proxy.stats.counters.statements_timed_out) == 2
    state = settled(running, sessions=1)
    assert state["sessions"] == 1


def test_a_paused_server_cannot_hold_a_client_past_the_timeout(
    fresh_sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    """A server that stops answering (SIGSTOP) mid-statement: at the timeout the client gets an
    error and its connection to the proxy keeps working, served by the servers still running."""
    box = fresh_sandbox
    running = start_proxy(split_config(box, **{"mysql-default_query_timeout": "1000", "mysql-connect_timeout_server": "1000"}))
    conn = running.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("SELECT @@port")  # a reader's connection is now pooled
        port = cur.fetchone()[0]
        victim = box.index_of_port(port)
        assert victim is not None
        box.pause(victim)
        try:
            # the same session reads again; statements landing on the paused replica time out
            outcomes = []
            for _ in range(6):
                try:
                    cur.execute("SELECT @@port")
                    outcomes.append(cur.fetchone()[0])
                except pymysql.err.OperationalError as exc:
                    outcomes.append(exc.args[0])
            assert 1969 in outcomes
            assert all(o in (1969, box.nodes[3 - victim].port) for o in outcomes)
        finally:
            box.resume(victim)


def test_a_write_refused_by_read_only_waits_for_the_new_writer(
    fresh_sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], no_session_crash: None
) -> None:
    """A switchover seen from the data path: the writer turns read_only before the proxy hears of
    the new one. An autocommit write it refuses (1290) did not run, so the proxy keeps it from the
    client, waits for the new writer and runs it there."""
    box = fresh_sandbox
    box.execute(0, "CREATE DATABASE IF NOT EXISTS rb", "CREATE TABLE rb.moved (id INT PRIMARY KEY)")
    box.wait_replicas_caught_up()
    running = start_proxy(split_config(box, **{"mysql-connect_timeout_server_max": "20000"}))
    conn = running.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO rb.moved VALUES (1)")  # the next write finds a pooled connection
        box.execute(0, "SET GLOBAL read_only = ON")
        box.execute(1, "STOP SLAVE", "SET GLOBAL read_only = OFF")
        promoted = HostgroupTable.build([
            MysqlServer(WRITER, "127.0.0.1", box.nodes[1].port),
            MysqlServer(READER, "127.0.0.1", box.nodes[2].port),
        ])

        def promote() -> None:
            # once the INSERT has been refused by the read_only writer and waits for a new one
            deadline = time.monotonic() + 60  # a safety net against hanging, not a measurement
            while running.call(lambda: running.proxy.stats.counters.statements_retried) < 1:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            running.call(lambda: running.proxy.apply_routing(promoted))

        thread = threading.Thread(target=promote)
        thread.start()
        cur.execute("INSERT INTO rb.moved VALUES (2)")
        thread.join()
    assert box.execute(1, "SELECT id FROM rb.moved ORDER BY id") == [{"id": 1}, {"id": 2}]
    assert box.execute(0, "SELECT id FROM rb.moved") == [{"id": 1}]
    assert running.call(lambda: running.proxy.stats.counters.statements_retried) >= 1
