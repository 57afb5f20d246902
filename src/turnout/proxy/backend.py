"""One connection from the proxy to a MySQL server, logged in as a client's user."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from turnout.protocol.client import ClientHandshake
from turnout.protocol.commands import StmtExecute, build_stmt_execute, bulk_param_types, with_bulk_param_types
from turnout.protocol.constants import (
    CLIENT_DEPRECATE_EOF,
    CLIENT_FOUND_ROWS,
    CLIENT_LOCAL_FILES,
    CLIENT_MULTI_RESULTS,
    CLIENT_MULTI_STATEMENTS,
    CLIENT_NO_SCHEMA,
    CLIENT_PS_MULTI_RESULTS,
    CLIENT_SESSION_TRACK,
    COM_INIT_DB,
    COM_QUERY,
    COM_STMT_CLOSE,
    COM_STMT_PREPARE,
    DEFAULT_SERVER_CAPABILITIES,
    MARIADB_CLIENT_CACHE_METADATA,
    MARIADB_CLIENT_EXTENDED_TYPE_INFO,
    MARIADB_CLIENT_PROGRESS,
    MARIADB_CLIENT_STMT_BULK_OPERATIONS,
)
from turnout.protocol.events import AuthDone, AuthFailed, TlsStart
from turnout.protocol.generic import ErrPacket
from turnout.protocol.metadata import Metadata
from turnout.protocol.packets import MAX_PAYLOAD, PacketBuffer, encode_packet, read_lenenc_bytes
from turnout.protocol.prepared import PrepareOk
from turnout.protocol.response import ResponseFramer
from turnout.proxy.causal import flavour_of, track_sql
from turnout.proxy.channel import Channel, open_channel
from turnout.proxy.errors import CONNECTION_ENDING_ERRORS, BackendError, BackendRefused
from turnout.proxy.settings import SessionSettings, restore_statements

ServerAddress = tuple[str, int]
MAX_CACHED_STATEMENTS = 256

# A session's reply capabilities: the client capabilities that change what a server does or sends
# back (FOUND_ROWS the affected rows it reports, LOCAL_FILES whether LOAD DATA LOCAL asks the
# client for a file or fails with 4166, SESSION_TRACK what its OK packets carry, DEPRECATE_EOF how
# its results are framed, MariaDB's PROGRESS whether it sends progress reports, EXTENDED_TYPE_INFO
# what its column definitions carry, CACHE_METADATA the shape of its result sets, NO_SCHEMA
# whether `db.table.column` names its database: MariaDB then ignores `db`). Connections
# are pooled per reply capabilities: a backend connection serves only sessions that agreed on the
# same ones, so what the server sends goes to the client untouched.
REPLY_CAPABILITIES = (
    CLIENT_FOUND_ROWS
    | CLIENT_NO_SCHEMA
    | CLIENT_LOCAL_FILES
    | CLIENT_SESSION_TRACK
    | CLIENT_DEPRECATE_EOF
    | MARIADB_CLIENT_PROGRESS
    | MARIADB_CLIENT_EXTENDED_TYPE_INFO
    | MARIADB_CLIENT_CACHE_METADATA
)
# What the proxy asks of every backend connection, plus the session's reply capabilities (bulk
# statements change no answer: every connection asks for them, where the server offers them).
BACKEND_CAPABILITIES = (
    DEFAULT_SERVER_CAPABILITIES | CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS
) & ~REPLY_CAPABILITIES | MARIADB_CLIENT_STMT_BULK_OPERATIONS

_ids = itertools.count(1)


@dataclass(slots=True)
class BackendStatement:
    statement_id: int
    num_params: int
    num_columns: int
    bound_types: bytes | None = None  # parameter types the server-side statement last received
    # The column definitions the server last sent for it (PrepareOk, then any result that
    # carried them): what it means when metadata caching leaves them out.
    metadata: Metadata | None = None

    def cached_metadata_is(self, metadata: Metadata) -> bool:
        """Whether the column definitions the server has cached for this statement are `metadata`."""
        mine = self.metadata
        if mine is metadata:
            return True
        if mine is None or mine != metadata:
            return False
        self.metadata = metadata  # equal: shared from now on, so that `is` answers
        return True


class BackendConnection:
    """A logged-in server connection; the session that holds it reads and writes its channel."""

    def __init__(
        self,
        address: ServerAddress,
        user: str,
        reply_capabilities: int,
        channel: Channel,
        thread_id: int,
        settings: SessionSettings,
        server_capabilities: int = 0,
        server_version: str = "",
    ) -> None:
        self.id = next(_ids)
        self.address = address
        self.user = user
        self.reply_capabilities = reply_capabilities
        self.caches_metadata = bool(reply_capabilities & MARIADB_CLIENT_CACHE_METADATA)
        # Its results are framed with OK packets instead of EOFs (response.ResponseFramer).
        self.deprecate_eof = bool(reply_capabilities & CLIENT_DEPRECATE_EOF)
        self.server_capabilities = server_capabilities  # offered in its greeting, MariaDB's included
        self.server_version = server_version
        self.channel = channel
        self.thread_id = thread_id
        self.settings = settings
        self.statements: dict[str, BackendStatement] = {}
        self.broken = False
        self.created_at = time.monotonic()
        self.last_used = self.created_at
        self.counted_sent = 0  # the channel's byte counts already added to the pool's stats
        self.counted_received = 0
        self.server_pool: object = None  # its ServerPool, set by Pools: saves a lookup per statement
        self.flavour = flavour_of(server_version)  # causal.MARIADB or causal.MYSQL
        # The OK packet of each statement that commits reports its GTID (causal reads): the
        # connection asked for CLIENT_SESSION_TRACK and turned the GTID tracker on.
        self.tracks_gtids = False
        # CLIENT_SESSION_TRACK was agreed: OK packets may carry session state, which a client
        # that did not ask for it must not get (causal.SessionStateStripper).
        self.session_state = False

    def idle_usable(self) -> bool:
        """Whether an idle connection can take a command: an idle connection the server closed
        (KILL, wait_timeout, a restart) shows end-of-file or an error on its channel, which nobody
        reads while it sits in the pool; one the server sent anything to since is in no known state."""
        channel = self.channel
        return not (self.broken or channel.is_closing() or channel.at_eof() or channel.has_unread())

    def close(self) -> None:
        self.broken = True
        self.channel.close()

    # ---- internal exchanges (the proxy's own commands, never relayed to a client) -------------
    async def exchange(
        self, payload: bytes, received: bytearray | None = None, then: bytes = b""
    ) -> ResponseFramer:
        """Send one command and consume its whole response (keeping a PrepareOk's columns, or the
        first result set's when the response's bytes are wanted in `received`).

        With `then`, that command is written right behind this one (one round trip for both):
        what follows this response on the channel is `then`'s answer, left there for the caller
        (to relay, or to drop with `skip_response`)."""
        keep_columns = payload[0] == COM_STMT_PREPARE or received is not None
        framer = ResponseFramer(payload[0], keep_columns, self.deprecate_eof)
        self.channel.write(encode_packet(payload, 0) + (encode_packet(then, 0) if then else b""))
        await self._receive(framer, received, bool(then))
        return framer

    async def skip_response(self, command: int) -> ResponseFramer:
        """Consume the whole response to `command`, already sent, and drop it: the answer of a
        command written behind another (`exchange`'s `then`) that nobody is to see."""
        framer = ResponseFramer(command, False, self.deprecate_eof)
        await self._receive(framer, None, False)
        return framer

    async def _receive(self, framer: ResponseFramer, received: bytearray | None, more_follows: bool) -> None:
        """Read one response into `framer` (its bytes into `received`); what follows it is put
        back on the channel when `more_follows` (a pipelined command's answer), else an error."""
        try:
            while not framer.done:
                data = await self.channel.read()
                if not data:
                    raise BackendError(f"server {self.address[0]}:{self.address[1]} closed the connection")
                used = framer.feed(data)
                if received is not None:
                    received += data[:used]
                if framer.local_infile or (used != len(data) and not more_follows):
                    raise BackendError("unexpected data from the server")
                if used != len(data):
                    self.channel.unread(data[used:])
            if framer.error is not None and framer.error.code in CONNECTION_ENDING_ERRORS:
                raise BackendError(f"server {self.address[0]}:{self.address[1]}: {framer.error.message}")
        except OSError as exc:
            self.broken = True
            raise BackendError(str(exc)) from exc
        except BackendError:
            self.broken = True
            raise

    async def query(self, sql: str, received: bytearray | None = None, then: bytes = b"") -> ResponseFramer:
        return await self.exchange(bytes([COM_QUERY]) + sql.encode("utf-8", "surrogateescape"), received, then)

    async def query_value(self, sql: str, then: bytes = b"") -> tuple[ResponseFramer, bytes | None]:
        """A SELECT of one value: its response, and the first column of its first row (None for
        NULL, an error or no row). With `then`, a command written right behind it (`exchange`)."""
        received = bytearray()
        framer = await self.query(sql, received, then)
        if framer.error is not None or framer.columns is None:
            return framer, None
        return framer, first_value(bytes(received), len(framer.columns), self.deprecate_eof)

    async def apply_settings(self, wanted: SessionSettings) -> ErrPacket | None:
        """Make this connection's session match `wanted`; returns the server's error, if any."""
        if wanted == self.settings:
            return None
        for sql in restore_statements(self.settings, wanted):
            framer = await self.query(sql)
            if framer.error is not None:
                return framer.error
        if wanted.schema is not None and wanted.schema != self.settings.schema:
            framer = await self.exchange(bytes([COM_INIT_DB]) + wanted.schema.encode("utf-8", "surrogateescape"))
            if framer.error is not None:
                return framer.error
        if wanted.multi_statements != self.settings.multi_statements:
            from turnout.protocol.constants import COM_SET_OPTION

            option = 0 if wanted.multi_statements else 1
            framer = await self.exchange(bytes([COM_SET_OPTION]) + option.to_bytes(2, "little"))
            if framer.error is not None:
                return framer.error
        self.settings = SessionSettings(
            names=wanted.names,
            schema=wanted.schema if wanted.schema is not None else self.settings.schema,
            variables=wanted.variables,
            multi_statements=wanted.multi_statements,
        )
        return None

    def remember_statement(self, sql: str, prepare: PrepareOk, metadata: Metadata | None) -> None:
        """Record a statement the client's own COM_STMT_PREPARE created on this connection."""
        self._cache_statement(
            sql, BackendStatement(prepare.statement_id, prepare.num_params, prepare.num_columns, metadata=metadata)
        )

    def _cache_statement(self, sql: str, statement: BackendStatement) -> None:
        previous = self.statements.pop(sql, None)
        if previous is not None:
            self._close_statement(previous)
        if len(self.statements) >= MAX_CACHED_STATEMENTS:
            oldest_sql = next(iter(self.statements))
            self._close_statement(self.statements.pop(oldest_sql))
        self.statements[sql] = statement

    def _close_statement(self, statement: BackendStatement) -> None:
        self.channel.write(encode_packet(bytes([COM_STMT_CLOSE]) + statement.statement_id.to_bytes(4, "little"), 0))

    async def prepare(self, sql: str) -> BackendStatement | ErrPacket:
        """The server-side statement for `sql` on this connection, prepared if needed."""
        known = self.statements.get(sql)
        if known is not None:
            return known
        framer = await self.exchange(bytes([COM_STMT_PREPARE]) + sql.encode("utf-8", "surrogateescape"))
        if framer.error is not None:
            return framer.error
        assert framer.prepare is not None
        statement = BackendStatement(
            framer.prepare.statement_id,
            framer.prepare.num_params,
            framer.prepare.num_columns,
            metadata=tuple(framer.columns or ()),
        )
        self._cache_statement(sql, statement)
        return statement


def first_value(data: bytes, columns: int, deprecate_eof: bool) -> bytes | None:
    """The first column of the first row of a whole text result set of `columns` columns: the
    column count, the definitions, an EOF unless the connection speaks deprecate-EOF, then the
    row, or the end (an EOF, or deprecate-EOF's OK with the EOF's header) when there is none."""
    skip = 1 + columns + (0 if deprecate_eof else 1)
    end_limit = MAX_PAYLOAD if deprecate_eof else 9
    pos = 0
    while pos + 4 <= len(data):
        length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        payload = data[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if skip:
            skip -= 1
            continue
        if length >= MAX_PAYLOAD or (payload[:1] == b"\xfe" and length < end_limit):
            return None
        return read_lenenc_bytes(payload, 0)[0]
    return None


def execute_payload(
    client_payload: bytes, execute: StmtExecute | None, statement: BackendStatement, param_types: bytes | None
) -> bytes:
    """A client's COM_STMT_EXECUTE for this backend statement: its id, and the parameter types
    whenever the server-side statement does not have these types bound already (it may have
    been bound by another client's session, or never)."""
    with_id = client_payload[:1] + statement.statement_id.to_bytes(4, "little") + client_payload[5:]
    if statement.num_params == 0:
        return with_id
    assert execute is not None
    if execute.new_params_bound:
        statement.bound_types = execute.param_types
        return with_id
    if param_types is None:
        raise ValueError("COM_STMT_EXECUTE without parameter types for a statement never bound")
    if statement.bound_types == param_types:
        return with_id
    statement.bound_types = param_types
    return build_stmt_execute(
        replace(execute, stmt_id=statement.statement_id, new_params_bound=True, param_types=param_types)
    )


def bulk_payload(client_payload: bytes, statement: BackendStatement, param_types: bytes | None) -> bytes:
    """A client's COM_STMT_BULK_EXECUTE for this backend statement: its id, and the parameter
    types added when the client sent none and the server-side statement may not have these."""
    with_id = client_payload[:1] + statement.statement_id.to_bytes(4, "little") + client_payload[5:]
    if statement.num_params == 0:
        return with_id
    sent = bulk_param_types(client_payload, statement.num_params)
    if sent is None:
        if param_types is None:
            raise ValueError("COM_STMT_BULK_EXECUTE without parameter types for a statement never bound")
        if statement.bound_types != param_types:
            with_id = with_bulk_param_types(client_payload, statement.statement_id, param_types)
    # What a bulk run leaves bound is not worth guessing: the next execute sends its types.
    statement.bound_types = None
    return with_id


async def connect_backend(
    address: ServerAddress,
    user: str,
    stage1: bytes | None,
    password: str | None,
    reply_capabilities: int,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    connector: Callable[[str, int], Awaitable[Channel]] = open_channel,
    track_gtids: bool = False,
) -> BackendConnection:
    """Open and log in a backend connection as `user` (with SHA1(password) or the password),
    over TLS when `tls` is given (the server's use_ssl). The connection asks for the session's
    `reply_capabilities`; its own `reply_capabilities` says which of them the server agreed to.
    With `track_gtids` (causal reads in use) it asks for session tracking and turns the GTID
    tracker on (causal.track_sql), when the server offers it."""
    capabilities = BACKEND_CAPABILITIES | reply_capabilities | (CLIENT_SESSION_TRACK if track_gtids else 0)
    try:
        channel = await asyncio.wait_for(connector(*address), timeout)
    except (OSError, TimeoutError) as exc:
        raise BackendError(f"cannot connect to {address[0]}:{address[1]}: {exc or 'timed out'}") from exc
    handshake = ClientHandshake(
        username=user,
        stage1=stage1,
        password=password,
        database=None,
        capabilities=capabilities,
        charset=45,
        tls=tls is not None,
    )
    packets = PacketBuffer()
    try:
        connection = await asyncio.wait_for(_login(address, user, channel, handshake, packets, tls), timeout)
        if handshake.capabilities & CLIENT_SESSION_TRACK:
            connection.session_state = True
            client_tracks = bool(reply_capabilities & CLIENT_SESSION_TRACK)
            if not client_tracks:
                # asked for the GTIDs only: pooled with the connections of clients that do not
                # track session state (their OK packets lose it on the way, causal.SessionStateStripper)
                connection.reply_capabilities &= ~CLIENT_SESSION_TRACK
            if track_gtids:
                sql = track_sql(connection.flavour, keep_others=client_tracks)
                framer = await asyncio.wait_for(connection.query(sql), timeout)
                connection.tracks_gtids = framer.error is None
        return connection
    except TimeoutError as timed_out:
        channel.close()
        raise BackendError(f"login to {address[0]}:{address[1]} timed out") from timed_out
    except BaseException:
        channel.close()
        raise


async def _login(
    address: ServerAddress,
    user: str,
    channel: Channel,
    handshake: ClientHandshake,
    packets: PacketBuffer,
    tls: ssl.SSLContext | None,
) -> BackendConnection:
    while True:
        data = await channel.read()
        if not data:
            raise BackendError(f"{address[0]}:{address[1]} closed the connection during login")
        packets.feed(data)
        while (packet := packets.next_packet()) is not None:
            outcome = handshake.receive(packet)
            if isinstance(outcome, AuthDone):
                greeting = outcome.greeting
                return BackendConnection(
                    address, user, handshake.capabilities & REPLY_CAPABILITIES, channel, greeting.connection_id,
                    SessionSettings(names="utf8mb4", schema=None),
                    greeting.capabilities | greeting.mariadb_capabilities << 32,
                    greeting.server_version,
                )
            if isinstance(outcome, AuthFailed):
                raise BackendRefused(outcome.error)
            if isinstance(outcome, TlsStart):
                assert tls is not None
                channel.write(outcome.ssl_request)
                try:
                    await channel.start_tls(tls, packets.take_rest(), server_side=False)
                except OSError as exc:  # ssl.SSLError and a lost connection are OSErrors
                    raise BackendError(f"TLS to {address[0]}:{address[1]} failed: {exc}") from exc
                channel.write(handshake.after_tls())
            elif outcome is not None:
                channel.write(outcome)
