"""Real client libraries log into ServerHandshake and read result sets from build_text_resultset.

The server side is a tiny blocking loop in a thread, one connection at a time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal

import mysql.connector
import pymysql
import pytest

from turnout.protocol.auth import native_password_hash, parse_stored_password, stage1
from turnout.protocol.commands import command_of, query_text
from turnout.protocol.constants import (
    BINARY_FLAG,
    CHARSET_BINARY,
    COM_INIT_DB,
    COM_PING,
    COM_QUERY,
    COM_QUIT,
    ER_ACCESS_DENIED_ERROR,
    ER_UNKNOWN_COM_ERROR,
    MYSQL_TYPE_BLOB,
    MYSQL_TYPE_LONGLONG,
)
from turnout.protocol.events import AuthSwitchResponse, ClientHello
from turnout.protocol.generic import build_err, build_ok
from turnout.protocol.packets import Packet, PacketBuffer, encode_packet
from turnout.protocol.resultset import ColumnDef, build_text_resultset
from turnout.protocol.server import ServerHandshake

USERS = {"app": native_password_hash("app_pass"), "empty": ""}
COLUMNS = [
    ColumnDef("id", type=MYSQL_TYPE_LONGLONG),
    "name",
    "price",
    ColumnDef("raw", type=MYSQL_TYPE_BLOB, charset=CHARSET_BINARY, flags=BINARY_FLAG),
    "missing",
]
ROWS = [
    (1, "one", Decimal("1.50"), b"\xff\x00", None),
    (2, "zwei ü", 2.25, b"", None),
    (3, "drei", True, bytearray(b"x"), None),
]
EXPECTED = (
    (1, "one", "1.50", b"\xff\x00", None),
    (2, "zwei ü", "2.25", b"", None),
    (3, "drei", "1", b"x", None),
)


@dataclass
class Served:
    logins: list[tuple[str, str | None, str | None, bytes | None]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    switched: list[bool] = field(default_factory=list)


def _read(sock: socket.socket, buf: PacketBuffer) -> Packet | None:
    while (packet := buf.next_packet()) is None:
        data = sock.recv(65536)
        if not data:
            return None
        buf.feed(data)
    return packet


def _session(sock: socket.socket, served: Served) -> None:
    buf = PacketBuffer()
    hs = ServerHandshake(connection_id=42)
    sock.sendall(hs.greeting())
    packet = _read(sock, buf)
    assert packet is not None
    hello = hs.receive(packet)
    assert isinstance(hello, ClientHello)
    served.switched.append(hs.wants_switch)
    if hs.wants_switch:
        sock.sendall(hs.switch_to_native())
        packet = _read(sock, buf)
        assert packet is not None
        assert isinstance(hs.receive(packet), AuthSwitchResponse)
    user = hello.response.username
    stored = USERS.get(user)
    recovered = hs.accept_native(parse_stored_password(stored)[0]) if stored is not None else None
    served.logins.append((user, hello.response.database, hello.response.auth_plugin, recovered))
    if recovered is None:
        sock.sendall(hs.error_packet(ER_ACCESS_DENIED_ERROR, f"Access denied for user '{user}'"))
        return
    sock.sendall(hs.ok_packet())
    while (packet := _read(sock, buf)) is not None:
        command = command_of(packet.payload)
        if command == COM_QUIT:
            return
        if command == COM_QUERY:
            sql = query_text(packet.payload)
            served.queries.append(sql)
            if sql.lstrip().upper().startswith("SELECT"):
                sock.sendall(build_text_resultset(COLUMNS, ROWS))
            else:
                sock.sendall(encode_packet(build_ok(), 1))
        elif command in (COM_PING, COM_INIT_DB):
            sock.sendall(encode_packet(build_ok(), 1))
        else:
            sock.sendall(encode_packet(build_err(ER_UNKNOWN_COM_ERROR, "Unknown command", "08S01"), 1))


@pytest.fixture
def server() -> Iterator[tuple[int, Served]]:
    listener = socket.create_server(("127.0.0.1", 0))
    served = Served()

    def loop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                _session(conn, served)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], served
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()


def test_pymysql_logs_in_and_reads_a_result_set(server: tuple[int, Served]) -> None:
    port, served = server
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="app_pass", database="shop")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, price, raw, missing FROM anything")
        rows = cur.fetchall()
        assert [d[0] for d in cur.description] == ["id", "name", "price", "raw", "missing"]
        conn.ping(reconnect=False)
        conn.select_db("other")
    assert rows == EXPECTED
    assert served.queries[-1] == "SELECT id, name, price, raw, missing FROM anything"
    user, database, plugin, recovered = served.logins[0]
    assert (user, database, plugin) == ("app", "shop", "mysql_native_password")
    assert recovered == stage1("app_pass")
    assert served.switched == [False]


def test_pymysql_wrong_password_is_refused(server: tuple[int, Served]) -> None:
    port, served = server
    with pytest.raises(pymysql.err.OperationalError) as info:
        pymysql.connect(host="127.0.0.1", port=port, user="app", password="nope")
    assert info.value.args[0] == ER_ACCESS_DENIED_ERROR
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=port, user="nobody", password="")
    assert [login[3] for login in served.logins] == [None, None]


def test_empty_password(server: tuple[int, Served]) -> None:
    port, served = server
    pymysql.connect(host="127.0.0.1", port=port, user="empty", password="").close()
    assert served.logins[0][3] == b""


def test_mysql8_client_is_switched_from_caching_sha2(server: tuple[int, Served]) -> None:
    port, served = server
    conn = mysql.connector.connect(
        host="127.0.0.1",
        port=port,
        user="app",
        password="app_pass",
        auth_plugin="caching_sha2_password",
        use_pure=True,
        ssl_disabled=True,
    )
    try:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert [tuple(row) for row in cur.fetchall()] == list(EXPECTED)
    finally:
        conn.close()
    assert served.switched == [True]
    assert served.logins[0][2] == "caching_sha2_password"
    assert served.logins[0][3] == stage1("app_pass")
