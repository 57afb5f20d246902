"""One client connection: login, then every command routed to a backend and its answer relayed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from turnout.protocol import constants as c
from turnout.protocol.auth import new_salt, verify_native
from turnout.protocol.commands import (
    parse_set_option,
    parse_stmt_execute,
    query_text,
    stmt_id_of,
    with_stmt_id,
)
from turnout.protocol.events import AuthSwitchResponse, ClientHello, TlsRequested
from turnout.protocol.generic import ErrPacket, build_eof, build_err, build_ok
from turnout.protocol.handshake import build_auth_switch_request, parse_change_user
from turnout.protocol.metadata import Metadata, with_metadata
from turnout.protocol.packets import (
    MalformedPacket,
    Packet,
    PacketBuffer,
    PacketTooLarge,
    ProtocolError,
    encode_packet,
    piece_count,
)
from turnout.protocol.response import ResponseFramer, ResponseOutcome, expects_response
from turnout.protocol.server import ServerHandshake
from turnout.proxy.backend import (
    CONNECTION_ENDING_ERRORS,
    ER_LOST_BACKEND,
    FLAVOUR_CAPABILITIES,
    BackendConnection,
    BackendError,
    BackendRefused,
    BackendStatement,
    execute_payload,
)
from turnout.proxy.channel import WRITE_BUFFER_HIGH, Channel
from turnout.proxy.digest import digest_text
from turnout.proxy.fastpath import FastPath, stateless
from turnout.proxy.rules import NO_MATCH, RuleOutcome, evaluate
from turnout.proxy.settings import SessionSettings, charset_for_collation, same_settings
from turnout.proxy.statement import (
    NEXT_TRANSACTION,
    TABLE_LOCK,
    StatementInfo,
    analyze,
    first_word,
    settles_locally,
)
from turnout.proxy.stats import command_name

if TYPE_CHECKING:
    from turnout.proxy.proxy import Proxy, UserEntry

ER_PROXY_NO_SERVER = 9001
ER_PROXY_RULE_ERROR = 1148
ER_STATEMENT_TIMEOUT = 1969  # MariaDB's "max_statement_time exceeded": what drivers know as a timeout
# SQLSTATE 40001 ("transaction rolled back, retry it"): what drivers and ORMs already retry on.
ER_TRANSACTION_ENDED = 1213


class ClientGone(Exception):
    """The client closed its connection or sent something that ends it."""


class NoServer(Exception):
    def __init__(self, hostgroup: int, waited_ms: int, reason: str = "") -> None:
        super().__init__(
            f"Max connect timeout reached while reaching hostgroup {hostgroup} after {waited_ms}ms"
            + (f": {reason}" if reason else "")
        )


@dataclass(slots=True)
class ClientStatement:
    """A prepared statement as the client knows it; prepared on backends lazily."""

    sql: str
    num_params: int
    num_columns: int
    info: StatementInfo
    rule: RuleOutcome
    digest_text: str  # for stats_mysql_query_digest
    command: str  # stats_mysql_commands_counters' Command
    stateless: bool  # changes nothing in the session: the fast path may run it on any connection
    param_types: bytes | None = None
    # The column definitions the client last received for it (its PrepareOk, then any result
    # that carried them): what it decodes rows with when metadata caching leaves them out.
    metadata: Metadata = ()

    def after_result(self, backend: BackendStatement, framer: ResponseFramer) -> None:
        """A result of `backend` went to the client: definitions it carried are cached by both now."""
        if framer.columns is not None and framer.error is None:
            self.metadata = backend.metadata = tuple(framer.columns)


@dataclass(slots=True)
class Held:
    """The backend connection a session keeps between statements, and why."""

    connection: BackendConnection
    hostgroup: int
    reasons: set[str] = field(default_factory=set)
    wrote: bool = False


class ClientSession:
    def __init__(self, proxy: Proxy, client: Channel, session_id: int) -> None:
        self.proxy = proxy
        self.client = client
        self.id = session_id
        peer = client.get_extra_info("peername") or ("", 0)
        self.client_address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.packets = PacketBuffer(max_payload=proxy.max_allowed_packet)
        self.user: UserEntry | None = None
        self.stage1: bytes | None = None
        self.flavour = 0  # capabilities its backend connections must share (backend.FLAVOUR_CAPABILITIES)
        self.settings = SessionSettings()
        self.held: Held | None = None
        # The connection acquired for the command in progress, until it is held or given back:
        # if the command ends any other way (client gone, bad input, a bug), its state is unknown.
        self.in_flight: BackendConnection | None = None
        # The connection of the session's previous statement, preferred while it is idle.
        self.previous_connection: BackendConnection | None = None
        self.delay_multiplex = 0
        self.statements: dict[int, ClientStatement] = {}
        self.next_statement_id = 1
        self.salt = b""
        self.current_command = ""
        self.command_started = 0.0
        self.closed = False
        self.ended_reason: str | None = None
        # The statement in flight ends by this monotonic time (0: none in flight), or is killed.
        self.deadline = 0.0
        self.statement_timeout = 0.0
        self.timed_out_after: float | None = None  # seconds, once the proxy killed it
        self.cut_reason: str | None = None  # why the proxy cut the statement's connection (self-fencing)
        self.fast = FastPath(self)

    def processlist_row(self) -> dict[str, object]:
        held = self.held
        host, _, port = self.client_address.rpartition(":")
        return {
            "ThreadID": self.id,
            "SessionID": self.id,
            "user": self.user.user.username if self.user else None,
            "db": self.settings.schema,
            "cli_host": host,
            "cli_port": int(port) if port.isdigit() else None,
            "hostgroup": held.hostgroup if held else None,
            "srv_host": held.connection.address[0] if held else None,
            "srv_port": held.connection.address[1] if held else None,
            "command": "Query" if self.current_command else "Sleep",
            "time_ms": int((time.monotonic() - self.command_started) * 1000) if self.current_command else 0,
            "info": ", ".join(sorted(held.reasons)) if held else None,
        }

    # ---- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._login():
                await self._command_loop()
        except ClientGone:
            pass
        except PacketTooLarge:
            self.send_error(c.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", seq=1)
        except ProtocolError as exc:
            self.send_error(c.ER_MALFORMED_PACKET, f"Malformed communication packet: {exc}", seq=1)
        except OSError:
            pass
        finally:
            if self.in_flight is not None:
                self.release(self.in_flight, reusable=False)
            await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._drop_held()
        self.client.close()
        self.proxy.session_ended(self)

    def end_held(self, reason: str) -> None:
        """End the session's hold on its backend at its next command: the connection is closed
        (its transaction rolls back) and the client hears `reason` as an error. Deferred to the
        session's own task, so a command in flight is never cut."""
        self.ended_reason = reason

    def _drop_held(self) -> None:
        """A held connection carries this client's state (transaction, locks…): close it."""
        if self.held is not None:
            self.release(self.held.connection, reusable=False)
            self.held = None

    def release(self, connection: BackendConnection, reusable: bool) -> None:
        if self.in_flight is connection:
            self.in_flight = None
        self.proxy.pools.release(connection, reusable=reusable)

    async def _read_packet(self, timeout: float | None = None) -> Packet:
        while True:
            packet = self.packets.next_packet()
            if packet is not None:
                return packet
            try:
                if timeout is None:
                    data = await self.client.read()
                else:
                    data = await asyncio.wait_for(self.client.read(), timeout)
            except TimeoutError as exc:
                raise ClientGone("timeout") from exc
            if not data:
                raise ClientGone("closed")
            self.packets.feed(data)

    # ---- login --------------------------------------------------------------------------------
    async def _login(self) -> bool:
        proxy = self.proxy
        tls_context = proxy.tls_context
        capabilities = c.DEFAULT_SERVER_CAPABILITIES | c.CLIENT_COMPRESS
        caching = proxy.offers_metadata_caching()
        if caching:
            capabilities |= c.MARIADB_CLIENT_CACHE_METADATA
        handshake = ServerHandshake(
            self.id,
            server_version=proxy.greeting_version(caching),
            capabilities=capabilities,
            tls=tls_context is not None,
        )
        self.client.write(handshake.greeting())
        self.salt = handshake.salt
        event = handshake.receive(await self._read_packet(timeout=proxy.connect_timeout_client))
        if isinstance(event, TlsRequested):
            assert tls_context is not None
            started = self.client.start_tls(tls_context, self.packets.take_rest())
            try:
                await asyncio.wait_for(started, proxy.connect_timeout_client)
            except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
                proxy.stats.counters.client_connections_aborted += 1
                raise ClientGone(f"TLS handshake failed: {exc}") from exc
            event = handshake.receive(await self._read_packet(timeout=proxy.connect_timeout_client))
        assert isinstance(event, ClientHello)
        hello = event.response
        entry = proxy.users.get(hello.username)
        using_password = "YES" if hello.auth_response else "NO"
        denied = f"Access denied for user '{hello.username}'@'{self.client_address.rsplit(':', 1)[0]}' (using password: {using_password})"
        if entry is None or not entry.user.active or not entry.user.frontend:
            self.client.write(handshake.error_packet(c.ER_ACCESS_DENIED_ERROR, denied))
            proxy.stats.counters.client_connections_aborted += 1
            proxy.stats.counters.access_denied_wrong_password += 1
            return False
        if entry.user.use_ssl and self.client.tls is None:
            # As ProxySQL: a user with use_ssl=1 must come over TLS.
            self.client.write(handshake.error_packet(c.ER_ACCESS_DENIED_ERROR, denied + ". SSL is required"))
            proxy.stats.counters.client_connections_aborted += 1
            return False
        if handshake.wants_switch:
            self.client.write(handshake.switch_to_native())
            switched = handshake.receive(await self._read_packet(timeout=proxy.connect_timeout_client))
            assert isinstance(switched, AuthSwitchResponse)
            self.salt = handshake.salt
        stage1 = self._verify(entry, handshake.auth_data, handshake.salt)
        if stage1 is None:
            self.client.write(handshake.error_packet(c.ER_ACCESS_DENIED_ERROR, denied))
            proxy.stats.counters.client_connections_aborted += 1
            proxy.stats.counters.access_denied_wrong_password += 1
            return False
        refusal = proxy.admit(self, entry)
        if refusal is not None:
            self.client.write(handshake.error_packet(*refusal))
            return False
        self.user = entry
        self.stage1 = stage1 or entry.stage1
        self.flavour = handshake.capabilities & FLAVOUR_CAPABILITIES
        self.settings = SessionSettings(
            names=charset_for_collation(hello.charset),
            schema=hello.database or entry.user.default_schema or proxy.default_schema,
            multi_statements=bool(hello.capabilities & c.CLIENT_MULTI_STATEMENTS),
        )
        self.client.write(handshake.ok_packet())
        if handshake.capabilities & c.CLIENT_COMPRESS:
            self.client.start_compression(self.packets.take_rest())
        return True

    @staticmethod
    def _verify(entry: UserEntry, response: bytes, salt: bytes) -> bytes | None:
        """SHA1(password) recovered from the client's scramble; b"" for a correct empty password."""
        if not entry.double_sha1:
            return b"" if not response else None
        return verify_native(response, salt, entry.double_sha1)

    # ---- command phase ------------------------------------------------------------------------
    async def _command_loop(self) -> None:
        while True:
            self.current_command = ""
            if not self.packets:
                self.client.on_data = self.fast.on_client_data
            try:
                packet = await self._read_packet()
            finally:
                self.client.on_data = None
            if (packet.seq - piece_count(len(packet.payload)) + 1) & 0xFF != 0:
                self.send_error(c.ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order", seq=packet.seq + 1)
                raise ClientGone("out of order")
            payload = packet.payload
            if not payload:
                raise ProtocolError("empty command packet")
            command = payload[0]
            self.current_command, self.command_started = command_label(command), time.monotonic()
            if self.ended_reason is not None and expects_response(command) and command != c.COM_QUIT:
                reason, self.ended_reason = self.ended_reason, None
                if self.held is not None:
                    self._drop_held()
                    self.send_error(ER_TRANSACTION_ENDED, f"turnout: {reason}")
                    continue
            if command == c.COM_QUERY:
                await self._on_query(payload)
            elif command == c.COM_STMT_EXECUTE:
                await self._on_execute(payload)
            elif command == c.COM_STMT_PREPARE:
                await self._on_prepare(payload)
            elif command == c.COM_QUIT:
                raise ClientGone("quit")
            elif command == c.COM_PING:
                self._send(build_ok(status_flags=self._status_flags()), 1)
            elif command == c.COM_STMT_CLOSE:
                self.statements.pop(stmt_id_of(payload), None)
            elif command == c.COM_STMT_RESET:
                await self._on_stmt_reset(payload)
            elif command == c.COM_STMT_SEND_LONG_DATA:
                await self._on_long_data(payload)
            elif command == c.COM_STMT_FETCH:
                await self._on_fetch(payload)
            elif command in (c.COM_INIT_DB, c.COM_FIELD_LIST, c.COM_STATISTICS):
                await self._on_simple(payload)
            elif command == c.COM_SET_OPTION:
                option = parse_set_option(payload)
                self.settings = SessionSettings(
                    self.settings.names, self.settings.schema, self.settings.variables, option == 0
                )
                self._send(build_eof(status_flags=self._status_flags()), 1)
            elif command == c.COM_RESET_CONNECTION:
                self._reset_session(self.settings.schema)
                self._send(build_ok(status_flags=c.SERVER_STATUS_AUTOCOMMIT), 1)
            elif command == c.COM_CHANGE_USER:
                await self._on_change_user(payload)
            else:
                self.send_error(c.ER_UNKNOWN_COM_ERROR, "Unknown command", seq=1)

    def _status_flags(self) -> int:
        flags = c.SERVER_STATUS_AUTOCOMMIT
        if self.settings.variables.get("autocommit", "1").strip("'\"").upper() in ("0", "OFF", "FALSE"):
            flags = 0
        if self.held is not None and "transaction" in self.held.reasons:
            flags |= c.SERVER_STATUS_IN_TRANS
        return flags

    def _send(self, payload: bytes, seq: int) -> None:
        self.client.write(encode_packet(payload, seq))

    def send_error(self, code: int, message: str, seq: int = 1) -> None:
        if not self.client.is_closing():
            self.client.write(encode_packet(build_err(code, message, c.sql_state_for(code)), seq))

    def _reset_session(self, schema: str | None) -> None:
        self._drop_held()
        self.statements.clear()
        self.delay_multiplex = 0
        self.settings = SessionSettings(names=self.settings.names, schema=schema)

    # ---- routing ------------------------------------------------------------------------------
    def _route(self, sql: str, digest: str) -> RuleOutcome:
        assert self.user is not None
        rules = self.proxy.rules
        if not rules:
            return NO_MATCH
        return evaluate(rules, sql, digest, self.user.user.username, self.settings.schema)

    def hostgroup_for(self, rule: RuleOutcome) -> int:
        assert self.user is not None
        return rule.hostgroup if rule.hostgroup is not None else self.user.user.default_hostgroup

    async def _connection_for(self, hostgroup: int, info: StatementInfo) -> tuple[BackendConnection, int] | None:
        """The backend connection this statement runs on; None when an error was sent to the client."""
        held = self.held
        if held is not None and not held.reasons and self._connection_moved(held):
            # held only to delay multiplexing: no state to lose, follow the routing instead
            self.held = None
            self.proxy.pools.release(held.connection, reusable=not held.connection.broken)
            held = None
        if held is not None:
            if (
                "transaction" in held.reasons
                and len(held.reasons) == 1
                and info.is_write
                and not held.wrote
                and hostgroup != held.hostgroup
                and self.proxy.is_reader_hostgroup(held.hostgroup)
            ):
                # autocommit=0 clients open a transaction with their first read; it ran on a
                # reader and read only, so ending it there loses nothing and the writes can go
                # to the writer.
                await self._end_reader_transaction(held)
            else:
                return held.connection, held.hostgroup
        blocked = self.proxy.routing.write_blocked.get(hostgroup)
        if blocked is not None and info.is_write:
            self.proxy.stats.counters.statements_refused_two_writers += 1
            self.send_error(c.ER_OPTION_PREVENTS_STATEMENT, blocked)
            return None
        connection = self.proxy.take_idle(hostgroup, self)  # the common case, without awaiting
        if connection is None:
            try:
                connection = await self.proxy.acquire(hostgroup, self)
            except NoServer as none:
                self.send_error(ER_PROXY_NO_SERVER, str(none))
                return None
            except BackendRefused as refused:
                self._send(build_err(refused.err.code, refused.err.message, refused.err.sql_state), 1)
                return None
        self.in_flight = connection
        if same_settings(connection.settings, self.settings):
            connection.settings = self.settings
            return connection, hostgroup
        error = await self._prepare_connection(connection)
        if error is not None:
            self.release(connection, reusable=not connection.broken)
            self._send(build_err(error.code, error.message, error.sql_state), 1)
            return None
        return connection, hostgroup

    def _connection_moved(self, held: Held) -> bool:
        """The held connection's server is no longer where its hostgroup's traffic goes."""
        table = self.proxy.routing
        if held.hostgroup in table.held:
            return True
        return all(server.address != held.connection.address for server in table.online(held.hostgroup))

    async def _end_reader_transaction(self, held: Held) -> None:
        try:
            framer = await held.connection.query("COMMIT")
            reusable = framer.error is None and not framer.status_flags & c.SERVER_STATUS_IN_TRANS
        except BackendError:
            reusable = False
        self.proxy.pools.release(held.connection, reusable=reusable)
        self.held = None

    async def _prepare_connection(self, connection: BackendConnection) -> ErrPacket | None:
        try:
            return await connection.apply_settings(self.settings)
        except BackendError as exc:
            return ErrPacket(ER_LOST_BACKEND, "HY000", f"Lost connection to backend while restoring session: {exc}")

    def after_statement(
        self,
        connection: BackendConnection,
        hostgroup: int,
        outcome: ResponseOutcome,
        info: StatementInfo,
        rule: RuleOutcome,
    ) -> None:
        """Keep or give back the backend connection, given what the statement did to the session."""
        held = self.held
        reasons = set(held.reasons) if held is not None else set()
        reasons.discard("transaction")
        succeeded = outcome.error is None
        if succeeded:
            if info.sets:
                self.settings = self.settings.with_variables(info.sets)
                connection.settings = connection.settings.with_variables(info.sets)
            if info.names:
                self.settings = self.settings.with_names(info.names)
                connection.settings = connection.settings.with_names(info.names)
            if info.use_schema:
                self.settings = self.settings.with_schema(info.use_schema)
                connection.settings = connection.settings.with_schema(info.use_schema)
            if info.keeps_backend:
                reasons.add(info.keeps_backend)
            if info.unlock_tables:
                reasons.discard(TABLE_LOCK)
        if outcome.status_flags & c.SERVER_STATUS_IN_TRANS:
            reasons.add("transaction")
        elif held is not None and "transaction" in held.reasons:
            reasons.discard(NEXT_TRANSACTION)  # the transaction it was set for has ended
        if outcome.status_flags & c.SERVER_STATUS_CURSOR_EXISTS:
            reasons.add("open cursor")
        if outcome.ok is not None and outcome.ok.last_insert_id:
            self.delay_multiplex = self.proxy.auto_increment_delay_multiplex
        elif info.calc_found_rows:
            self.delay_multiplex = max(self.delay_multiplex, 1)
        elif self.delay_multiplex:
            self.delay_multiplex -= 1
        if rule.multiplex == 0:
            reasons.add("query rule multiplex=0")
        keep = bool(reasons) or self.delay_multiplex > 0
        if keep:
            wrote = (held.wrote if held is not None else False) or (info.is_write and succeeded)
            self.held = Held(connection, hostgroup, reasons, wrote)
            if self.in_flight is connection:
                self.in_flight = None
        else:
            self.held = None
            self.release(connection, reusable=not connection.broken)

    def _not_executed(self, connection: BackendConnection, hostgroup: int) -> None:
        """The statement never ran: the session keeps exactly what it held before."""
        if self.held is None or self.held.connection is not connection:
            self.release(connection, reusable=not connection.broken)

    # ---- relaying -----------------------------------------------------------------------------
    async def _relay(
        self,
        connection: BackendConnection,
        payload: bytes,
        retry_read_only: bool = False,
        keep_columns: bool = False,
    ) -> ResponseFramer:
        """Send one client command to the backend and stream the answer back, untouched.

        With `retry_read_only`, a response that is only a read_only refusal (1290) is kept from
        the client: the statement did not execute, so the caller may run it on the new master.
        """
        framer = ResponseFramer(payload[0], keep_columns)
        backend = connection.channel
        client = self.client
        backend.write(encode_packet(payload, 0))
        relayed = 0
        while True:
            try:
                data = await backend.read()
            except OSError:
                data = b""
            if not data:
                connection.broken = True
                raise BackendLost(relayed)
            used = framer.feed(data)
            if (
                retry_read_only
                and relayed == 0
                and framer.done
                and framer.error is not None
                and framer.error.code == c.ER_OPTION_PREVENTS_STATEMENT
            ):
                return framer
            client.write(data if used == len(data) else data[:used])
            relayed += used
            if framer.local_infile:
                await self._relay_infile(connection)
                framer.resume_after_infile()
                continue
            if framer.done:
                if used != len(data):
                    connection.broken = True  # the server sent more than one response: unknown state
                if framer.error is not None and framer.error.code in CONNECTION_ENDING_ERRORS:
                    connection.broken = True  # e.g. KILL: the server closes it next
                break
            if client.is_closing():
                connection.broken = True
                raise ClientGone("client left during a result")
            if client.write_buffer_size() > WRITE_BUFFER_HIGH:
                await client.drain()
        return framer

    async def _relay_infile(self, connection: BackendConnection) -> None:
        """LOAD DATA LOCAL INFILE: the client's file packets go to the server up to the empty one."""
        while True:
            packet = await self._read_packet()
            connection.channel.write(encode_packet(packet.payload, packet.seq))
            if not packet.payload:
                return

    async def _run(
        self, payload: bytes, info: StatementInfo, rule: RuleOutcome, hostgroup: int, digest: str, sql: str
    ) -> None:
        target = await self._connection_for(hostgroup, info)
        if target is None:
            return
        connection, hostgroup = target
        started = time.perf_counter()
        deadline = time.monotonic() + self.proxy.connect_timeout_server_max
        while True:
            retry = info.is_write and self.held is None and time.monotonic() < deadline
            self.arm_timeout(rule, time.monotonic())
            try:
                framer = await self._relay(connection, payload, retry_read_only=retry)
            except BackendLost as lost:
                self._backend_lost(connection, lost)
                return
            finally:
                self.deadline = 0.0
            if not (retry and framer.error is not None and framer.error.code == c.ER_OPTION_PREVENTS_STATEMENT):
                break
            # The writer turned read_only under us (a switchover): the statement did not run, so it
            # waits for the new master, exactly like a statement held during the switch.
            self.proxy.stats.counters.statements_retried += 1
            self.release(connection, reusable=True)
            await self.proxy.writer_changed(hostgroup, connection.address, deadline)
            target = await self._connection_for(hostgroup, info)
            if target is None:
                return
            connection, hostgroup = target
        self.after_statement(connection, hostgroup, framer, info, rule)
        elapsed_us = int((time.perf_counter() - started) * 1e6)
        assert self.user is not None
        self.proxy.record(
            command_name(first_word(sql), info.is_write),
            hostgroup,
            self.settings.schema or "",
            self.user.user.username,
            digest,
            elapsed_us,
            framer.ok.affected_rows if framer.ok is not None else 0,
            connection.address,
            framer.error,
        )

    def _backend_lost(self, connection: BackendConnection, lost: BackendLost) -> None:
        if not self.statement_lost(connection, lost.relayed):
            raise ClientGone("backend lost in the middle of a result")

    def statement_lost(self, connection: BackendConnection, relayed: int) -> bool:
        """The statement's backend connection ended under it: the server went away, or the proxy
        killed the statement for its timeout. The connection is dropped (with whatever the session
        held on it); the client hears why, unless part of an answer reached it already (then
        False: the client connection must end)."""
        if self.held is not None and self.held.connection is connection:
            self.held = None
        self.release(connection, reusable=False)
        timed_out, self.timed_out_after = self.timed_out_after, None
        cut, self.cut_reason = self.cut_reason, None
        if timed_out is None and cut is None:
            self.proxy.backend_failed(connection.address)
        if relayed:
            return False
        if cut is not None:
            self.send_error(ER_LOST_BACKEND, f"turnout: {cut}; the statement was cut off and its outcome is unknown")
        elif timed_out is None:
            self.send_error(ER_LOST_BACKEND, "Lost connection to backend server during query")
        else:
            self.send_error(
                ER_STATEMENT_TIMEOUT,
                f"turnout: the statement ran longer than its timeout ({timed_out * 1000:.0f} ms: "
                "mysql-default_query_timeout, or its query rule's timeout) and was killed; "
                "an open transaction was rolled back",
            )
        return True

    def arm_timeout(self, rule: RuleOutcome, now: float) -> None:
        self.statement_timeout = rule.timeout_ms / 1000 if rule.timeout_ms else self.proxy.default_query_timeout
        self.deadline = now + self.statement_timeout

    def time_out(self) -> None:
        """The statement in flight ran past its deadline: kill it on the server and drop its
        connection; the session's relay then tells the client (`statement_lost`)."""
        self.deadline = 0.0
        connection = self.fast.connection or self.in_flight or (self.held.connection if self.held else None)
        if connection is None or connection.broken:
            return
        self.timed_out_after = self.statement_timeout
        self.proxy.stats.counters.statements_timed_out += 1
        self.proxy.kill_query(connection, self)
        connection.broken = True
        connection.channel.close()

    def cut(self, addresses: frozenset[tuple[str, int]], reason: str) -> bool:
        """Close the connection of a statement in flight to one of `addresses` (the client hears
        `reason`), and end at its next command a transaction held there. True if anything was."""
        connection = self.fast.connection or self.in_flight
        cut = False
        if connection is not None and not connection.broken and connection.address in addresses:
            self.cut_reason = reason
            connection.broken = True
            connection.channel.close()
            cut = True
        held = self.held
        if held is not None and held.reasons and held.connection.address in addresses:
            self.end_held(reason)
            cut = True
        return cut

    # ---- commands -----------------------------------------------------------------------------
    def classify(self, sql: str) -> tuple[StatementInfo, str, RuleOutcome]:
        """What the statement does, its digest, and where the rules send it."""
        digest = digest_text(sql)
        return analyze(sql), digest, self._route(sql, digest)

    async def _on_query(self, payload: bytes) -> None:
        sql = query_text(payload)
        info, digest, rule = self.classify(sql)
        if rule.matched:  # counted where a statement is taken on: here, or where the fast path starts it
            self.proxy.stats.count_rule_hits(rule.matched)
        if rule.error_msg is not None:
            self.send_error(ER_PROXY_RULE_ERROR, rule.error_msg)
            return
        if rule.ok_msg is not None:
            self._send(build_ok(status_flags=self._status_flags(), info=rule.ok_msg.encode()), 1)
            return
        if self.held is None and rule.hostgroup is None and settles_locally(info):
            if info.names is not None:
                self.settings = self.settings.with_names(info.names)
            self.settings = self.settings.with_variables(info.sets)
            self._send(build_ok(status_flags=self._status_flags()), 1)
            return
        await self._run(payload, info, rule, self.hostgroup_for(rule), digest, sql)

    async def _on_simple(self, payload: bytes) -> None:
        """COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS: to the held backend or the default hostgroup."""
        assert self.user is not None
        info = StatementInfo(is_write=False)
        target = await self._connection_for(self.user.user.default_hostgroup, info)
        if target is None:
            return
        connection, hostgroup = target
        try:
            framer = await self._relay(connection, payload)
        except BackendLost as lost:
            self._backend_lost(connection, lost)
            return
        if payload[0] == c.COM_INIT_DB and framer.error is None:
            schema = payload[1:].decode("utf-8", "surrogateescape")
            info = StatementInfo(is_write=False, use_schema=schema)
        self.after_statement(connection, hostgroup, framer, info, NO_MATCH)

    async def _on_prepare(self, payload: bytes) -> None:
        sql = query_text(payload)
        info, digest, rule = self.classify(sql)
        if rule.matched:
            self.proxy.stats.count_rule_hits(rule.matched)
        if rule.error_msg is not None:
            self.send_error(ER_PROXY_RULE_ERROR, rule.error_msg)
            return
        statement_id = self.next_statement_id
        cached = self.proxy.prepared_responses.get((self.settings.schema, sql))
        if cached is None:
            target = await self._connection_for(self.hostgroup_for(rule), StatementInfo(is_write=False))
            if target is None:
                return
            connection, hostgroup = target
            try:
                response, framer = await self._collect(connection, payload, keep_columns=True)
            except BackendLost as lost:
                self._backend_lost(connection, lost)
                return
            self.after_statement(connection, hostgroup, framer, StatementInfo(is_write=False), NO_MATCH)
            if framer.error is not None or framer.prepare is None:
                self.client.write(response)
                return
            metadata = tuple(framer.columns or ())
            connection.remember_statement(sql, framer.prepare, metadata)
            cached = (response, framer.prepare.num_params, framer.prepare.num_columns, metadata)
            self.proxy.prepared_responses[(self.settings.schema, sql)] = cached
        response, num_params, num_columns, metadata = cached
        self.next_statement_id += 1
        command = "EXECUTE" if not info.is_write else command_name(first_word(sql), True)
        self.statements[statement_id] = ClientStatement(
            sql, num_params, num_columns, info, rule, digest, command, stateless(info, rule), metadata=metadata
        )
        # The first packet is the PrepareOk: 4-byte header, 0x00, then the 4-byte statement id.
        self.client.write(response[:5] + statement_id.to_bytes(4, "little") + response[9:])

    async def _collect(
        self, connection: BackendConnection, payload: bytes, keep_columns: bool = False
    ) -> tuple[bytes, ResponseFramer]:
        """Send a command and gather its whole response instead of streaming it."""
        framer = ResponseFramer(payload[0], keep_columns)
        connection.channel.write(encode_packet(payload, 0))
        chunks: list[bytes] = []
        while not framer.done:
            try:
                data = await connection.channel.read()
            except OSError:
                data = b""
            if not data:
                connection.broken = True
                raise BackendLost(0)
            used = framer.feed(data)
            chunks.append(data[:used])
            if used != len(data):
                connection.broken = True
        return b"".join(chunks), framer

    def _statement(self, payload: bytes, command: str) -> ClientStatement | None:
        statement_id = stmt_id_of(payload)
        statement = self.statements.get(statement_id)
        if statement is None:
            self.send_error(
                c.ER_UNKNOWN_STMT_HANDLER,
                f"Unknown prepared statement handler ({statement_id}) given to {command}",
            )
        return statement

    async def _backend_statement(
        self, statement: ClientStatement
    ) -> tuple[BackendConnection, int, int] | None:
        """A connection for the statement, with it prepared there: (connection, hostgroup, backend id)."""
        target = await self._connection_for(self.hostgroup_for(statement.rule), statement.info)
        if target is None:
            return None
        connection, hostgroup = target
        known = connection.statements.get(statement.sql)
        if known is not None:
            return connection, hostgroup, known.statement_id
        try:
            prepared = await connection.prepare(statement.sql)
        except BackendError as exc:
            self._backend_lost(connection, BackendLost(0, str(exc)))
            return None
        if isinstance(prepared, ErrPacket):
            self._not_executed(connection, hostgroup)
            self._send(build_err(prepared.code, prepared.message, prepared.sql_state), 1)
            return None
        return connection, hostgroup, prepared.statement_id

    async def _on_execute(self, payload: bytes) -> None:
        statement = self._statement(payload, "mysqld_stmt_execute")
        if statement is None:
            return
        execute = None
        if statement.num_params:
            execute = parse_stmt_execute(payload, statement.num_params)
            if execute.new_params_bound:
                statement.param_types = execute.param_types
        target = await self._backend_statement(statement)
        if target is None:
            return
        connection, hostgroup, _ = target
        backend_statement = connection.statements[statement.sql]
        try:
            backend_payload = execute_payload(payload, execute, backend_statement, statement.param_types)
        except ValueError as exc:
            self._not_executed(connection, hostgroup)
            self.send_error(c.ER_MALFORMED_PACKET, str(exc))
            return
        started = time.perf_counter()
        self.arm_timeout(statement.rule, time.monotonic())
        caching = connection.caches_metadata
        try:
            if caching and not backend_statement.cached_metadata_is(statement.metadata):
                framer = await self._execute_with_metadata(connection, backend_payload, statement, backend_statement)
            else:
                framer = await self._relay(connection, backend_payload, keep_columns=caching)
        except BackendLost as lost:
            self._backend_lost(connection, lost)
            return
        finally:
            self.deadline = 0.0
        statement.after_result(backend_statement, framer)
        if framer.error is not None:
            backend_statement.bound_types = None  # the server may not have taken the types
        self.after_statement(connection, hostgroup, framer, statement.info, statement.rule)
        assert self.user is not None
        self.proxy.record(
            statement.command,
            hostgroup,
            self.settings.schema or "",
            self.user.user.username,
            statement.digest_text,
            int((time.perf_counter() - started) * 1e6),
            framer.ok.affected_rows if framer.ok is not None else 0,
            connection.address,
            framer.error,
        )

    async def _execute_with_metadata(
        self,
        connection: BackendConnection,
        payload: bytes,
        statement: ClientStatement,
        backend_statement: BackendStatement,
    ) -> ResponseFramer:
        """COM_STMT_EXECUTE where the client's cached column definitions are not the server's (see
        protocol.metadata): the response is gathered whole, and if the server left its
        definitions out, they are put back in so the client decodes the rows with the right ones."""
        response, framer = await self._collect(connection, payload, keep_columns=True)
        if framer.error is not None and framer.error.code in CONNECTION_ENDING_ERRORS:
            connection.broken = True  # e.g. KILL: the server closes it next
        if framer.metadata_omitted and backend_statement.metadata is not None:
            try:
                response = with_metadata(response, backend_statement.metadata)
            except MalformedPacket as exc:
                connection.broken = True
                raise BackendLost(0, f"cannot put the column definitions back in: {exc}") from exc
            statement.metadata = backend_statement.metadata
            self.proxy.stats.counters.metadata_restored += 1
        self.client.write(response)
        return framer

    async def _on_long_data(self, payload: bytes) -> None:
        """No response; the data lives on one backend connection, which the session then keeps."""
        statement = self.statements.get(stmt_id_of(payload))
        if statement is None:
            return  # the server would ignore it too; the following EXECUTE reports the error
        target = await self._backend_statement(statement)
        if target is None:
            return
        connection, hostgroup, backend_id = target
        connection.channel.write(encode_packet(with_stmt_id(payload, backend_id), 0))
        held = self.held if self.held is not None and self.held.connection is connection else None
        reasons = set(held.reasons) if held else set()
        reasons.add("long data")
        self.held = Held(connection, hostgroup, reasons, held.wrote if held else False)
        if self.in_flight is connection:
            self.in_flight = None

    async def _on_stmt_reset(self, payload: bytes) -> None:
        statement = self._statement(payload, "mysqld_stmt_reset")
        if statement is None:
            return
        held = self.held
        backend = held.connection.statements.get(statement.sql) if held is not None else None
        if held is None or backend is None:
            self._send(build_ok(status_flags=self._status_flags()), 1)
            return
        held.reasons.discard("long data")
        await self._relay_held(with_stmt_id(payload, backend.statement_id), statement.info)

    async def _on_fetch(self, payload: bytes) -> None:
        statement = self._statement(payload, "mysqld_stmt_fetch")
        if statement is None:
            return
        held = self.held
        backend = held.connection.statements.get(statement.sql) if held is not None else None
        if held is None or backend is None:
            self.send_error(c.ER_UNKNOWN_STMT_HANDLER, "The statement has no open cursor")
            return
        await self._relay_held(with_stmt_id(payload, backend.statement_id), statement.info)

    async def _relay_held(self, payload: bytes, info: StatementInfo) -> None:
        assert self.held is not None
        held = self.held
        try:
            framer = await self._relay(held.connection, payload)
        except BackendLost as lost:
            self._backend_lost(held.connection, lost)
            return
        self.after_statement(held.connection, held.hostgroup, framer, info, NO_MATCH)

    async def _on_change_user(self, payload: bytes) -> None:
        change = parse_change_user(payload, c.DEFAULT_SERVER_CAPABILITIES)
        entry = self.proxy.users.get(change.user)
        seq = 1
        response = change.auth_response
        salt = self.salt
        if entry is not None and change.auth_plugin not in (None, "", c.NATIVE_PASSWORD):
            salt = new_salt()
            self._send(build_auth_switch_request(c.NATIVE_PASSWORD, salt), seq)
            packet = await self._read_packet()
            response = packet.payload
            seq = packet.seq + 1
        stage1 = self._verify(entry, response, salt) if entry is not None and entry.user.active else None
        tls_missing = entry is not None and entry.user.use_ssl and self.client.tls is None
        if entry is None or stage1 is None or tls_missing:
            self.send_error(
                c.ER_ACCESS_DENIED_ERROR,
                f"Access denied for user '{change.user}' (using password: {'YES' if response else 'NO'})"
                + (". SSL is required" if tls_missing else ""),
                seq,
            )
            raise ClientGone("change user denied")
        assert self.user is not None
        self.proxy.user_changed(self, self.user, entry)
        self.user = entry
        self.stage1 = stage1 or entry.stage1
        self._reset_session(change.database or entry.user.default_schema or self.proxy.default_schema)
        if change.charset:
            self.settings = self.settings.with_names(charset_for_collation(change.charset))
        self._send(build_ok(status_flags=c.SERVER_STATUS_AUTOCOMMIT), seq)


def command_label(command: int) -> str:
    """What stats_mysql_processlist shows for a command in progress."""
    if command in (c.COM_QUERY, c.COM_STMT_EXECUTE, c.COM_STMT_PREPARE):
        return "Query"
    return f"Command 0x{command:02x}"


class BackendLost(Exception):
    def __init__(self, relayed: int, message: str = "") -> None:
        super().__init__(message or f"backend lost after {relayed} bytes")
        self.relayed = relayed


def query_text_of_prepare(payload: bytes) -> str:
    return payload[1:].decode("utf-8", errors="surrogateescape")

