"""A proxy in front of scripted in-memory servers: session behaviour without mariadbd.

Everything on the wire is built and parsed by turnout's own protocol/ code: the fake server
greets with `ServerHandshake` and answers with `build_ok`, `build_err`, `build_text_resultset`
and `build_prepare_ok`; the fake client logs in with `ClientHandshake` and finds where answers end
with `ResponseFramer`. Bytes travel over in-memory transports delivered by the event loop, so the
proxy's coroutine and its fast path run exactly as over TCP.

A server's answers come from `FakeServer.answer`, which a test may replace per server
(`server.script = lambda connection, sql: ...`). The default models what multiplexing depends
on: transactions (BEGIN … COMMIT), user variables, session variables and the current schema per
connection, and `SELECT CONNECTION_ID()`.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from turnout.config.model import MysqlServer, MysqlUser, QueryRule, ReplicationHostgroup, RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.client import ClientHandshake
from turnout.protocol.events import AuthDone, AuthFailed
from turnout.protocol.generic import ErrPacket, build_eof, build_err, build_ok, parse_err, parse_ok
from turnout.protocol.packets import PacketBuffer, encode_packet
from turnout.protocol.prepared import PrepareOk, build_prepare_ok
from turnout.protocol.response import ResponseFramer
from turnout.protocol.resultset import ColumnDef, build_column_def, build_text_resultset, parse_text_resultset
from turnout.protocol.server import ServerHandshake
from turnout.proxy.channel import Channel
from turnout.proxy.proxy import Proxy

WRITER, READER = 10, 20
USER, PASSWORD = "app", "app_pass"
SERVER_CAPABILITIES = (
    c.DEFAULT_SERVER_CAPABILITIES | c.CLIENT_MULTI_STATEMENTS | c.CLIENT_MULTI_RESULTS
    | c.CLIENT_PS_MULTI_RESULTS | c.CLIENT_FOUND_ROWS
)


# ---- in-memory transports ---------------------------------------------------------------------------
class MemoryTransport(asyncio.Transport):
    """One end of an in-memory connection: writes reach the peer's protocol on the next loop turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, peername: tuple[str, int]) -> None:
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self.peer: MemoryTransport | None = None
        self._closing = False
        self._lost = False
        self._peername = peername

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self.peer is None:
            return
        self._loop.call_soon(self.peer._receive, bytes(data))

    def _receive(self, data: bytes) -> None:
        if not self._lost:
            self._protocol.data_received(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self.peer is not None:
            self._loop.call_soon(self.peer._peer_closed)
        self._loop.call_soon(self._connection_lost)

    abort = close

    def _peer_closed(self) -> None:
        if not self._lost:
            self._protocol.eof_received()
            self.close()

    def _connection_lost(self) -> None:
        if not self._lost:
            self._lost = True
            self._protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._peername if name == "peername" else default


_ports = itertools.count(40000)


def pipe(left: Channel, right: Channel) -> None:
    """Connect two channels, as a TCP connection would."""
    loop = asyncio.get_running_loop()
    a = MemoryTransport(loop, left, ("127.0.0.2", next(_ports)))
    b = MemoryTransport(loop, right, ("127.0.0.1", next(_ports)))
    a.peer, b.peer = b, a
    left.connection_made(a)
    right.connection_made(b)


# ---- the scripted server -------------------------------------------------------------------------------
Answer = bytes | None  # framed response packets, or None: close the connection instead
Script = Callable[["ServerConnection", str], Answer]


@dataclass
class ServerConnection:
    """The fake server's side of one backend connection, with the session state it models."""

    server: FakeServer
    thread_id: int
    channel: Channel
    queries: list[str] = field(default_factory=list)  # every COM_QUERY's SQL, in order
    commands: list[int] = field(default_factory=list)  # every command byte, in order
    in_transaction: bool = False
    user_variables: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    schema: str | None = None
    statements: dict[int, str] = field(default_factory=dict)

    @property
    def status(self) -> int:
        return c.SERVER_STATUS_AUTOCOMMIT | (c.SERVER_STATUS_IN_TRANS if self.in_transaction else 0)

    def ok(self, affected_rows: int = 0, last_insert_id: int = 0) -> bytes:
        return encode_packet(build_ok(affected_rows, last_insert_id, status_flags=self.status), 1)

    def rows(self, columns: list[str], rows: list[list[object]]) -> bytes:
        return build_text_resultset(columns, rows, status_flags=self.status)

    def error(self, code: int, message: str) -> bytes:
        return encode_packet(build_err(code, message, c.sql_state_for(code)), 1)

    async def serve(self) -> None:
        handshake = ServerHandshake(self.thread_id, "10.11.6-MariaDB-fake", SERVER_CAPABILITIES)
        self.channel.write(handshake.greeting())
        packets = PacketBuffer()
        logged_in = False
        while True:
            data = await self.channel.read()
            if not data:
                return
            packets.feed(data)
            while (packet := packets.next_packet()) is not None:
                if not logged_in:
                    handshake.receive(packet)
                    self.channel.write(handshake.ok_packet())
                    logged_in = True
                    continue
                answer = self.answer_command(packet.payload)
                if answer is None:
                    self.channel.close()
                    return
                if answer:
                    self.channel.write(answer)

    def answer_command(self, payload: bytes) -> Answer:
        command = payload[0]
        self.commands.append(command)
        if command == c.COM_QUERY:
            sql = payload[1:].decode()
            self.queries.append(sql)
            return self.server.script(self, sql)
        if command == c.COM_INIT_DB:
            self.schema = payload[1:].decode()
            return self.ok()
        if command == c.COM_SET_OPTION:
            return encode_packet(build_eof(status_flags=self.status), 1)
        if command == c.COM_PING:
            return self.ok()
        if command == c.COM_RESET_CONNECTION:  # as MariaDB: the session's state is gone
            self.in_transaction = False
            self.user_variables.clear()
            self.variables.clear()
            self.statements.clear()
            return self.ok()
        if command == c.COM_QUIT:
            return None
        if command == c.COM_STMT_PREPARE:
            return self._prepare(payload[1:].decode())
        if command == c.COM_STMT_EXECUTE:
            statement_id = int.from_bytes(payload[1:5], "little")
            sql = self.statements.get(statement_id)
            if sql is None:
                return self.error(c.ER_UNKNOWN_STMT_HANDLER, f"Unknown prepared statement handler ({statement_id})")
            self.queries.append(sql)
            return self.server.script(self, sql)
        if command == c.COM_STMT_CLOSE:
            self.statements.pop(int.from_bytes(payload[1:5], "little"), None)
            return b""
        return self.error(c.ER_UNKNOWN_COM_ERROR, "Unknown command")

    def _prepare(self, sql: str) -> bytes:
        statement_id = self.server.next_statement_id()
        self.statements[statement_id] = sql
        params = sql.count("?")
        columns = 1 if sql.upper().startswith("SELECT") else 0
        packets = [build_prepare_ok(PrepareOk(statement_id, columns, params, 0))]
        packets += [build_column_def(ColumnDef("?")) for _ in range(params)]
        if params:
            packets.append(build_eof(status_flags=self.status))
        packets += [build_column_def(ColumnDef("c")) for _ in range(columns)]
        if columns:
            packets.append(build_eof(status_flags=self.status))
        return b"".join(encode_packet(p, seq) for seq, p in enumerate(packets, start=1))


_SET_USER_VARIABLE = re.compile(r"SET\s+@(\w+)\s*=\s*(.+)", re.IGNORECASE)
_SET_VARIABLE = re.compile(r"SET\s+(?:SESSION\s+)?(\w+)\s*=\s*(.+)", re.IGNORECASE)
_SELECT_USER_VARIABLE = re.compile(r"SELECT\s+@(\w+)$", re.IGNORECASE)


def default_script(connection: ServerConnection, sql: str) -> Answer:
    """A server that keeps per-connection state the way MariaDB does, for what tests ask of it."""
    statement = sql.strip().rstrip(";")
    upper = statement.upper()
    if upper in ("BEGIN", "START TRANSACTION"):
        connection.in_transaction = True
        return connection.ok()
    if upper in ("COMMIT", "ROLLBACK"):
        connection.in_transaction = False
        return connection.ok()
    if upper == "SELECT CONNECTION_ID()":
        return connection.rows(["CONNECTION_ID()"], [[connection.thread_id]])
    if match := _SELECT_USER_VARIABLE.match(statement):
        return connection.rows([f"@{match[1]}"], [[connection.user_variables.get(match[1])]])
    if match := _SET_USER_VARIABLE.match(statement):
        connection.user_variables[match[1]] = match[2].strip("'")
        return connection.ok()
    if upper.startswith("SET NAMES"):
        connection.variables["names"] = statement.split()[2]
        return connection.ok()
    if match := _SET_VARIABLE.match(statement):
        connection.variables[match[1].lower()] = match[2]
        return connection.ok()
    if upper.startswith("INSERT"):
        return connection.ok(affected_rows=1, last_insert_id=connection.server.next_insert_id())
    if upper.startswith("SELECT"):
        return connection.rows(["c"], [[1]])
    return connection.ok()


class FakeServer:
    """One scripted server at an address; every connection to it is a `ServerConnection`."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.connections: list[ServerConnection] = []
        self.script: Script = default_script
        self.refuse_connections = False
        self._thread_ids = itertools.count(address[1] * 1000 + 1)
        self._statement_ids = itertools.count(1)
        self._insert_ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def next_statement_id(self) -> int:
        return next(self._statement_ids)

    def next_insert_id(self) -> int:
        return next(self._insert_ids)

    def accept(self, proxy_side: Channel) -> None:
        server_side = Channel()
        pipe(proxy_side, server_side)
        connection = ServerConnection(self, next(self._thread_ids), server_side)
        self.connections.append(connection)
        task = asyncio.get_running_loop().create_task(connection.serve())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def queries(self) -> list[str]:
        return [sql for connection in self.connections for sql in connection.queries]


class FakeNetwork:
    """The servers a proxy reaches; `connect` is the proxy's connector."""

    def __init__(self, addresses: list[tuple[str, int]]) -> None:
        self.servers = {address: FakeServer(address) for address in addresses}

    async def connect(self, host: str, port: int) -> Channel:
        server = self.servers.get((host, port))
        if server is None or server.refuse_connections:
            raise ConnectionRefusedError(f"nothing listens on {host}:{port}")
        channel = Channel()
        server.accept(channel)
        return channel


# ---- the client -------------------------------------------------------------------------------------
@dataclass
class Reply:
    """A whole response as the client received it."""

    framer: ResponseFramer
    data: bytes

    @property
    def error(self) -> ErrPacket | None:
        return self.framer.error

    @property
    def status_flags(self) -> int:
        return self.framer.status_flags

    def packets(self) -> list[bytes]:
        buffer = PacketBuffer()
        buffer.feed(self.data)
        return [packet.payload for packet in iter(buffer.next_packet, None)]

    def rows(self) -> list[tuple[bytes | None, ...]]:
        if self.error is not None:
            raise AssertionError(f"an error, not rows: {self.error}")
        return parse_text_resultset(self.packets())[1]

    def value(self) -> bytes | None:
        rows = self.rows()
        assert len(rows) == 1 and len(rows[0]) == 1, rows
        return rows[0][0]


class FakeClient:
    """A client connection to the proxy, speaking through turnout's protocol code."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.packets = PacketBuffer()

    async def login(self, user: str = USER, password: str = PASSWORD, database: str | None = None) -> AuthDone | AuthFailed:
        handshake = ClientHandshake(user, password=password, database=database, capabilities=c.DEFAULT_SERVER_CAPABILITIES)
        while True:
            packet = await self._packet()
            outcome = handshake.receive(packet)
            if isinstance(outcome, AuthDone | AuthFailed):
                return outcome
            if isinstance(outcome, bytes):
                self.channel.write(outcome)

    async def _packet(self) -> Any:
        while (packet := self.packets.next_packet()) is None:
            data = await self.channel.read()
            if not data:
                raise ConnectionError("the proxy closed the connection")
            self.packets.feed(data)
        return packet

    async def command(self, payload: bytes) -> Reply:
        self.channel.write(encode_packet(payload, 0))
        framer = ResponseFramer(payload[0], keep_columns=payload[0] == c.COM_STMT_PREPARE)
        data = b""
        while not framer.done:
            chunk = self.packets.take_rest()
            if not chunk:
                chunk = await self.channel.read()
                if not chunk:
                    raise ConnectionError("the proxy closed the connection mid-answer")
            used = framer.feed(chunk)
            data += chunk[:used]
            if used != len(chunk):
                self.packets.feed(chunk[used:])
        return Reply(framer, data)

    async def query(self, sql: str) -> Reply:
        return await self.command(bytes([c.COM_QUERY]) + sql.encode())

    async def prepare(self, sql: str) -> int:
        reply = await self.command(bytes([c.COM_STMT_PREPARE]) + sql.encode())
        assert reply.error is None and reply.framer.prepare is not None, reply.error
        return reply.framer.prepare.statement_id

    async def execute(self, statement_id: int) -> Reply:
        """COM_STMT_EXECUTE of a statement without parameters."""
        payload = bytes([c.COM_STMT_EXECUTE]) + statement_id.to_bytes(4, "little") + b"\x00" + (1).to_bytes(4, "little")
        return await self.command(payload)

    def closed(self) -> bool:
        return self.channel.at_eof()

    def close(self) -> None:
        self.channel.close()


# ---- the proxy ----------------------------------------------------------------------------------------
def fake_config(readers: int = 2, rules: bool = True, **variables: str) -> RuntimeConfig:
    """One writer (hostgroup 10) and `readers` readers (20), the read/write split's rules."""
    servers = [MysqlServer(WRITER, "10.0.0.1", 3306)]
    servers += [MysqlServer(READER, f"10.0.0.{2 + n}", 3306) for n in range(readers)]
    query_rules = (
        QueryRule(rule_id=1, active=1, match_digest=r"^SELECT.*FOR UPDATE", destination_hostgroup=WRITER, apply=1),
        QueryRule(rule_id=2, active=1, match_digest=r"^SELECT", destination_hostgroup=READER, apply=1),
    ) if rules else ()
    return RuntimeConfig(
        version=1,
        servers=tuple(servers),
        users=(MysqlUser(USER, PASSWORD, default_hostgroup=WRITER),),
        query_rules=query_rules,
        replication_hostgroups=(ReplicationHostgroup(WRITER, READER),),
        variables={"mysql-connect_timeout_server_max": "300", **variables},
    )


@dataclass
class FakeSetup:
    proxy: Proxy
    network: FakeNetwork
    clients: list[FakeClient] = field(default_factory=list)

    def server(self, address: tuple[str, int]) -> FakeServer:
        return self.network.servers[address]

    @property
    def writer(self) -> FakeServer:
        return self.network.servers[("10.0.0.1", 3306)]

    @property
    def readers(self) -> list[FakeServer]:
        return [s for address, s in self.network.servers.items() if address != ("10.0.0.1", 3306)]

    def all_servers(self) -> Iterator[FakeServer]:
        return iter(self.network.servers.values())

    async def client(self, user: str = USER, password: str = PASSWORD, database: str | None = None) -> FakeClient:
        """A client logged in to the proxy (asserting that the login succeeded)."""
        channel = Channel()
        pipe(channel, Channel(self.proxy.accept))
        client = FakeClient(channel)
        self.clients.append(client)
        outcome = await client.login(user, password, database)
        assert isinstance(outcome, AuthDone), outcome
        return client

    async def raw_client(self) -> FakeClient:
        channel = Channel()
        pipe(channel, Channel(self.proxy.accept))
        client = FakeClient(channel)
        self.clients.append(client)
        return client


@asynccontextmanager
async def fake_proxy(config: RuntimeConfig | None = None) -> Any:
    """A Proxy (the production class) whose backend connections go to fake servers."""
    config = config or fake_config()
    network = FakeNetwork([server.address for server in config.servers])
    proxy = Proxy(config, connector=network.connect)
    setup = FakeSetup(proxy, network)
    try:
        yield setup
    finally:
        for client in setup.clients:
            client.close()
        await proxy.stop()
        await asyncio.sleep(0)


def parse_reply_ok(reply: Reply) -> Any:
    return parse_ok(reply.packets()[0])


def parse_reply_err(reply: Reply) -> ErrPacket:
    return parse_err(reply.packets()[0])
