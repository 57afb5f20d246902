"""The sans-IO protocol driven over a plain blocking socket against a real MariaDB server.

Commands are pipelined (all written before any response is read) so that one recv() often
holds the end of one response and the start of the next: the framer must stop exactly at
each response's last byte.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from turnout.protocol.auth import (
    native_password_hash,
    new_salt,
    parse_stored_password,
    scramble_native,
    stage1,
    verify_native,
)
from turnout.protocol.client import ClientHandshake
from turnout.protocol.commands import (
    StmtExecute,
    build_command,
    build_field_list,
    build_query,
    build_stmt_close,
    build_stmt_execute,
    build_stmt_fetch,
    build_stmt_prepare,
)
from turnout.protocol.constants import (
    CLIENT_LOCAL_FILES,
    CLIENT_MYSQL,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PROTOCOL_41,
    COM_FIELD_LIST,
    COM_PING,
    COM_QUERY,
    COM_STATISTICS,
    COM_STMT_EXECUTE,
    CURSOR_TYPE_READ_ONLY,
    DEFAULT_CLIENT_CAPABILITIES,
    ER_ACCESS_DENIED_ERROR,
    ER_BAD_DB_ERROR,
    MYSQL_TYPE_LONGLONG,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_CURSOR_EXISTS,
    SERVER_STATUS_IN_TRANS,
    SERVER_STATUS_LAST_ROW_SENT,
)
from turnout.protocol.events import AuthDone, AuthFailed
from turnout.protocol.generic import is_eof, is_err, is_ok, parse_eof
from turnout.protocol.handshake import parse_greeting
from turnout.protocol.packets import Packet, PacketBuffer, encode_packet
from turnout.protocol.response import ResponseFramer, expects_response
from turnout.protocol.resultset import parse_text_resultset
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

DB = "protocol_live"


class Wire:
    """A blocking socket that hands out packets during login and raw chunks afterwards."""

    def __init__(self, sock: socket.socket, chunk: int = 65536) -> None:
        self.sock = sock
        self.buffer = PacketBuffer()
        self.chunk = chunk
        self.rng = random.Random(7)

    def packet(self) -> Packet:
        while True:
            packet = self.buffer.next_packet()
            if packet is not None:
                return packet
            data = self.sock.recv(65536)
            assert data, "server closed the connection"
            self.buffer.feed(data)

    def recv(self) -> bytes:
        # Random small reads put chunk boundaries everywhere, headers included.
        data = self.sock.recv(self.rng.randint(1, self.chunk))
        assert data, "server closed the connection"
        return data


def login(box: Sandbox, **kwargs: object) -> tuple[Wire, AuthDone | AuthFailed]:
    sock = socket.create_connection(("127.0.0.1", box.nodes[0].port), timeout=30)
    wire = Wire(sock)
    handshake = ClientHandshake(**kwargs)  # type: ignore[arg-type]
    while True:
        result = handshake.receive(wire.packet())
        if isinstance(result, bytes):
            sock.sendall(result)
        elif result is not None:
            return wire, result


@pytest.fixture
def wire(sandbox: Sandbox) -> Iterator[Wire]:
    sandbox.execute(
        0,
        f"CREATE DATABASE IF NOT EXISTS {DB}",
        f"CREATE OR REPLACE TABLE {DB}.t (id INT PRIMARY KEY, name VARCHAR(20), note TEXT)",
        f"INSERT INTO {DB}.t VALUES (1, 'one', NULL), (2, 'two', 'second')",
        f"CREATE OR REPLACE PROCEDURE {DB}.two_sets() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END",
    )
    w, result = login(
        sandbox,
        username=APP.user,
        password=APP.password,
        database=DB,
        capabilities=DEFAULT_CLIENT_CAPABILITIES,
    )
    assert isinstance(result, AuthDone)
    try:
        yield w
    finally:
        w.sock.close()


@dataclass
class Answer:
    framer: ResponseFramer
    raw: bytes

    @property
    def payloads(self) -> list[bytes]:
        buf = PacketBuffer()
        buf.feed(self.raw)
        out = []
        while (packet := buf.next_packet()) is not None:
            out.append(packet.payload)
        assert len(buf) == 0, "the framer cut a packet in two"
        return out


def exchange(wire: Wire, *commands: bytes) -> list[Answer]:
    """Send every command at once (plus a closing COM_PING), frame each answer in turn."""
    commands = (*commands, build_command(COM_PING))
    wire.sock.sendall(b"".join(encode_packet(c, 0) for c in commands))
    answers: list[Answer] = []
    pending = b""
    for command in commands:
        assert expects_response(command[0])
        framer = ResponseFramer(command[0])
        raw = bytearray()
        while not framer.done:
            data = pending or wire.recv()
            n = framer.feed(data)
            raw += data[:n]
            pending = data[n:]
            assert framer.local_infile is False
        answers.append(Answer(framer, bytes(raw)))
    assert pending == b"", "bytes after the last response"
    ping = answers.pop()
    assert ping.payloads == [ping.payloads[0]] and is_ok(ping.payloads[0])
    return answers


def test_login_with_clear_password_and_with_stage1_only(sandbox: Sandbox) -> None:
    for secret in ({"password": APP.password}, {"stage1": stage1(APP.password)}):
        wire, result = login(sandbox, username=APP.user, **secret)
        wire.sock.close()
        assert isinstance(result, AuthDone)
        assert result.greeting.server_version.startswith("5.5.5-10.11")
        assert result.ok.status_flags & SERVER_STATUS_AUTOCOMMIT


def test_password_hash_matches_mariadb(sandbox: Sandbox) -> None:
    for password in (APP.password, "x", "ünïcode", ""):
        row = sandbox.execute(0, f"SELECT PASSWORD('{password}') AS h")[0]
        assert native_password_hash(password) == row["h"]
        stored, _ = parse_stored_password(row["h"])
        salt = new_salt()
        assert verify_native(scramble_native(stage1(password), salt), salt, stored) == stage1(password)


def test_greeting_of_a_real_server(sandbox: Sandbox) -> None:
    with socket.create_connection(("127.0.0.1", sandbox.nodes[0].port), timeout=30) as sock:
        packet = Wire(sock).packet()
    greeting = parse_greeting(packet.payload)
    assert packet.seq == 0
    assert greeting.server_version.startswith("5.5.5-10.11")
    assert len(greeting.salt) == 20 and b"\x00" not in greeting.salt
    assert greeting.auth_plugin == "mysql_native_password"
    assert greeting.capabilities & CLIENT_PLUGIN_AUTH and greeting.capabilities & CLIENT_PROTOCOL_41
    assert not greeting.capabilities & CLIENT_MYSQL and greeting.mariadb_capabilities


def test_login_refused(sandbox: Sandbox) -> None:
    wire, result = login(sandbox, username=APP.user, password="wrong")
    wire.sock.close()
    assert isinstance(result, AuthFailed)
    assert result.error.code == ER_ACCESS_DENIED_ERROR
    assert result.error.sql_state == "28000"
    wire, result = login(sandbox, username=APP.user, password=APP.password, database="no_such_db")
    wire.sock.close()
    assert isinstance(result, AuthFailed) and result.error.code == ER_BAD_DB_ERROR


def test_result_sets_ok_and_err(wire: Wire) -> None:
    small, big, ok, err, begin = exchange(
        wire,
        build_query("SELECT id, name, note FROM t ORDER BY id"),
        build_query("SELECT seq, REPEAT('x', seq MOD 300) FROM seq_1_to_3000"),
        build_query("UPDATE t SET note = 'n' WHERE id = 2"),
        build_query("SELECT * FROM missing_table"),
        build_query("BEGIN"),
    )
    assert small.framer.result_sets == 1 and small.framer.error is None
    assert parse_text_resultset(small.payloads) == (
        ["id", "name", "note"],
        [(b"1", b"one", None), (b"2", b"two", b"second")],
    )
    names, rows = parse_text_resultset(big.payloads)
    assert len(names) == 2
    assert len(rows) == 3000 and rows[-1] == (b"3000", b"x" * 0)
    assert ok.framer.ok is not None and ok.framer.ok.affected_rows == 1
    assert err.framer.error is not None and err.framer.error.code == 1146
    assert begin.framer.status_flags & SERVER_STATUS_IN_TRANS


def test_multi_statement_and_procedure(wire: Wire) -> None:
    multi, call = exchange(
        wire,
        build_query("SELECT 1; SELECT 2, 3; DO 1"),
        build_query("CALL two_sets()"),
    )
    assert multi.framer.result_sets == 2
    assert multi.framer.ok is not None
    assert not multi.framer.status_flags & SERVER_MORE_RESULTS_EXISTS
    assert call.framer.result_sets == 2
    # A procedure's last result is the OK for the CALL itself.
    assert call.framer.ok is not None and is_ok(call.payloads[-1])
    last_eofs = [parse_eof(p) for p in call.payloads if is_eof(p)]
    assert last_eofs[-1].status_flags & SERVER_MORE_RESULTS_EXISTS


def _execute(stmt_id: int, values: list[int], flags: int = 0) -> bytes:
    if not values:
        return build_stmt_execute(StmtExecute(stmt_id, flags, 1, b"", False, None, b""))
    types = bytes((MYSQL_TYPE_LONGLONG, 0)) * len(values)
    payload = b"".join(struct.pack("<q", v) for v in values)
    bitmap = bytes((len(values) + 7) // 8)
    return build_stmt_execute(StmtExecute(stmt_id, flags, 1, bitmap, True, types, payload))


def test_prepared_statements_binary_protocol_and_cursor(wire: Wire) -> None:
    (prep,) = exchange(wire, build_stmt_prepare("SELECT id, name, ? + ? AS s FROM t WHERE id >= ?"))
    assert prep.framer.prepare is not None
    assert (prep.framer.prepare.num_params, prep.framer.prepare.num_columns) == (3, 3)
    stmt = prep.framer.prepare.statement_id
    (no_defs,) = exchange(wire, build_stmt_prepare("DO 1"))
    assert no_defs.framer.prepare is not None and len(no_defs.payloads) == 1

    rows, cursor = exchange(
        wire,
        _execute(stmt, [40, 2, 1]),
        _execute(stmt, [1, 1, 1], flags=CURSOR_TYPE_READ_ONLY),
    )
    assert rows.framer.result_sets == 1 and rows.framer.error is None
    binary_rows = rows.payloads[5:-1]
    assert len(binary_rows) == 2 and all(r[0] == 0 for r in binary_rows)
    assert cursor.framer.status_flags & SERVER_STATUS_CURSOR_EXISTS
    assert is_eof(cursor.payloads[-1])

    first, rest, closed_err = exchange(
        wire,
        build_stmt_fetch(stmt, 1),
        build_stmt_fetch(stmt, 10),
        build_stmt_fetch(stmt + 1000, 1),
    )
    assert len(first.payloads) == 2 and first.framer.error is None
    assert rest.framer.status_flags & SERVER_STATUS_LAST_ROW_SENT
    assert closed_err.framer.error is not None
    assert not expects_response(build_stmt_close(stmt)[0])


def test_field_list_statistics_and_errors(wire: Wire) -> None:
    fields, missing, stats = exchange(
        wire,
        build_field_list("t"),
        build_field_list("missing_table"),
        build_command(COM_STATISTICS),
    )
    assert fields.framer.error is None and len(fields.payloads) == 4  # 3 definitions + EOF
    assert missing.framer.error is not None and missing.framer.error.code == 1146
    assert stats.payloads[0].startswith(b"Uptime:")
    assert [f.framer.command for f in (fields, stats)] == [COM_FIELD_LIST, COM_STATISTICS]


def test_local_infile(sandbox: Sandbox) -> None:
    sandbox.execute(0, f"CREATE DATABASE IF NOT EXISTS {DB}", f"CREATE OR REPLACE TABLE {DB}.f (v INT)")
    wire, result = login(
        sandbox,
        username=APP.user,
        password=APP.password,
        database=DB,
        capabilities=DEFAULT_CLIENT_CAPABILITIES | CLIENT_LOCAL_FILES,
    )
    assert isinstance(result, AuthDone)
    try:
        wire.sock.sendall(encode_packet(build_query("LOAD DATA LOCAL INFILE 'rows.txt' INTO TABLE f"), 0))
        framer = ResponseFramer(COM_QUERY)
        raw = bytearray()
        while not framer.local_infile:
            data = wire.recv()
            n = framer.feed(data)
            assert n == len(data)
            raw += data
        assert framer.feed(b"more") == 0
        seq = framer.last_seq + 1
        wire.sock.sendall(encode_packet(b"1\n2\n3\n", seq) + encode_packet(b"", seq + 1))
        framer.resume_after_infile()
        while not framer.done:
            data = wire.recv()
            assert framer.feed(data) == len(data)
        assert framer.ok is not None and framer.ok.affected_rows == 3
        assert framer.error is None and not is_err(raw[4:])
    finally:
        wire.sock.close()
    assert sandbox.execute(0, f"SELECT COUNT(*) AS n FROM {DB}.f")[0]["n"] == 3


def test_command_bytes_reach_the_right_framer(wire: Wire) -> None:
    (prep,) = exchange(wire, build_stmt_prepare("SELECT 1"))
    assert prep.framer.prepare is not None
    stmt = prep.framer.prepare.statement_id
    answers = exchange(wire, *([build_query("SELECT 1"), _execute(stmt, [])] * 20))
    assert [a.framer.result_sets for a in answers] == [1] * 40
    assert {a.framer.command for a in answers} == {COM_QUERY, COM_STMT_EXECUTE}
