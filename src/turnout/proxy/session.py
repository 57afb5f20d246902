"""One client connection's coroutine: login, then every command the fast path declines, routed
to a backend and its answer relayed.

The session's state lives in its `SessionState` (state.py), which the fast path works on too;
where statements run and what the session keeps after them are `decisions`' pure functions.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from turnout.protocol import constants as c
from turnout.protocol.auth import new_salt, verify_native
from turnout.protocol.commands import (
    bulk_param_types,
    parse_set_option,
    parse_stmt_execute,
    query_text,
    stmt_id_of,
    with_stmt_id,
)
from turnout.protocol.events import AuthSwitchResponse, ClientHello, TlsRequested
from turnout.protocol.generic import ErrPacket, build_end, build_err, build_ok, schema_change
from turnout.protocol.handshake import build_auth_switch_request, parse_change_user
from turnout.protocol.metadata import with_metadata
from turnout.protocol.packets import (
    MalformedPacket,
    Packet,
    PacketBuffer,
    PacketTooLarge,
    ProtocolError,
    encode_packet,
    piece_count,
)
from turnout.protocol.response import ResponseFramer, expects_response
from turnout.protocol.server import ServerHandshake
from turnout.proxy.acquisition import Login
from turnout.proxy.backend import (
    REPLY_CAPABILITIES,
    BackendConnection,
    BackendStatement,
    ServerAddress,
    bulk_payload,
    execute_payload,
)
from turnout.proxy.causal import Position, SessionStateStripper, merged, position_text, wait_reached, wait_sql
from turnout.proxy.channel import WRITE_BUFFER_HIGH, Channel
from turnout.proxy.decisions import (
    AfterLoss,
    CausalRoute,
    Kept,
    KillVerdict,
    Placement,
    causal_route,
    commits,
    kill_verdict,
    placement,
    runs_anywhere,
)
from turnout.proxy.errors import (
    ER_CONNECTION_KILLED,
    ER_KILL_DENIED,
    ER_LOST_BACKEND,
    ER_NO_SUCH_THREAD,
    ER_NOT_SUPPORTED_YET,
    ER_PROXY_NO_SERVER,
    ER_PROXY_RULE_ERROR,
    ER_QUERY_INTERRUPTED,
    ER_SUBQUERY_NO_1_ROW,
    ER_TRANSACTION_ENDED,
    BackendError,
    BackendLost,
    BackendRefused,
    ClientGone,
    NoServer,
)
from turnout.proxy.fastpath import FastPath
from turnout.proxy.replay import LOST_SERVER, SWITCHED
from turnout.proxy.replayer import replay
from turnout.proxy.rules import NO_MATCH, RuleOutcome
from turnout.proxy.settings import SessionSettings, charset_for_collation, same_settings
from turnout.proxy.state import ClientStatement, SessionState, Shared, UserEntry, not_replayed_message
from turnout.proxy.statement import Keep, KillRequest, StatementInfo, first_word, parse_kill, settles_locally
from turnout.proxy.stats import command_name

# A statement's backend connection, its hostgroup, and the writes it must wait for there first
# (a causal read's, sent with it: ClientSession._wait_before; None: nothing to wait for).
Target = tuple[BackendConnection, int, Position | None]

# One row per global privilege of the current user that lets it kill others' threads, plus one.
KILL_PRIVILEGE_PROBE = (
    "SELECT (SELECT 1 FROM information_schema.USER_PRIVILEGES "
    "WHERE GRANTEE = CONCAT(CHAR(39), REPLACE(CURRENT_USER(), '@', CONCAT(CHAR(39), '@', CHAR(39))), CHAR(39)) "
    "AND PRIVILEGE_TYPE IN ('SUPER', 'CONNECTION ADMIN', 'CONNECTION_ADMIN') UNION ALL SELECT 1)"
)


class ClientSession:
    """The coroutine of one client connection; its state is `self.state`."""

    def __init__(self, shared: Shared, client: Channel, session_id: int) -> None:
        self.shared = shared
        self.backends = shared.backends
        self.client = client
        self.id = session_id
        self.state = SessionState(shared, client, session_id)
        self.packets = PacketBuffer(max_payload=shared.max_allowed_packet)
        self.salt = b""
        self.capabilities = c.DEFAULT_SERVER_CAPABILITIES  # what the client and the proxy agreed at login
        self.fast = FastPath(self.state)

    # ---- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._login():
                await self._command_loop()
        except ClientGone:
            pass
        except PacketTooLarge:
            self.state.send_error(c.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", seq=1)
        except ProtocolError as exc:
            self.state.send_error(c.ER_MALFORMED_PACKET, f"Malformed communication packet: {exc}", seq=1)
        except OSError:
            pass
        finally:
            if self.state.in_flight is not None:
                self.state.give_back(self.state.in_flight, reusable=False)
            self.state.close()

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
        proxy = self.shared
        tls_context = proxy.tls_context
        capabilities = (
            c.DEFAULT_SERVER_CAPABILITIES | c.CLIENT_COMPRESS | self.backends.offered_capabilities(proxy.server_version)
        )
        handshake = ServerHandshake(
            self.id,
            server_version=proxy.server_version,
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
        denied = f"Access denied for user '{hello.username}'@'{self.state.client_address.rsplit(':', 1)[0]}' (using password: {using_password})"
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
        stage1 = verify_native(handshake.auth_data, handshake.salt, entry.double_sha1)
        if stage1 is None:
            self.client.write(handshake.error_packet(c.ER_ACCESS_DENIED_ERROR, denied))
            proxy.stats.counters.client_connections_aborted += 1
            proxy.stats.counters.access_denied_wrong_password += 1
            return False
        refusal = proxy.admit(self.state, entry)
        if refusal is not None:
            self.client.write(handshake.error_packet(*refusal))
            return False
        self._logged_in(entry, stage1)
        self.capabilities = handshake.capabilities
        self.state.reply_capabilities = handshake.capabilities & REPLY_CAPABILITIES
        self.state.client_session_track = bool(handshake.capabilities & c.CLIENT_SESSION_TRACK)
        self.state.settings = SessionSettings(
            names=charset_for_collation(hello.charset),
            schema=hello.database or entry.user.default_schema or proxy.default_schema,
            multi_statements=bool(hello.capabilities & c.CLIENT_MULTI_STATEMENTS),
        )
        # As the server: a client that tracks session state hears which database it is in when it
        # named one.
        named = hello.database if handshake.capabilities & c.CLIENT_SESSION_TRACK else None
        self.client.write(handshake.ok_packet(session_state=schema_change(named) if named else b""))
        if handshake.capabilities & c.CLIENT_COMPRESS:
            self.client.start_compression(self.packets.take_rest())
        return True

    def _logged_in(self, entry: UserEntry, stage1: bytes) -> None:
        """The client is `entry`'s user; `stage1`, SHA1(password) from its scramble (b"" for an
        empty password), logs its backend connections in."""
        state = self.state
        state.user = entry
        state.login = Login(entry.user.username, stage1 or entry.stage1 or None, entry.password)

    # ---- command phase ------------------------------------------------------------------------
    async def _command_loop(self) -> None:
        while True:
            self.state.current_command = ""
            self.state.idle_since = time.monotonic()
            if not self.packets and self.shared.fast_path:
                self.client.on_data = self.fast.on_client_data
            try:
                packet = await self._read_packet()
            finally:
                self.client.on_data = None
            if (packet.seq - piece_count(len(packet.payload)) + 1) & 0xFF != 0:
                self.state.send_error(c.ER_NET_PACKETS_OUT_OF_ORDER, "Got packets out of order", seq=packet.seq + 1)
                raise ClientGone("out of order")
            payload = packet.payload
            if not payload:
                raise ProtocolError("empty command packet")
            command = payload[0]
            if self.state.killed:  # KILL CONNECTION arrived while its previous command ran
                raise ClientGone("killed")
            self.state.current_command, self.state.command_started = command_label(command), time.monotonic()
            if self.state.ended_reason is not None and expects_response(command) and command != c.COM_QUIT:
                reason, self.state.ended_reason = self.state.ended_reason, None
                if self.state.kept is not None:
                    refused = self.state.end_of_record() if self.state.log is not None else None
                    self.state.drop_kept()
                    if not self.state.replay_pending:
                        if refused is None:
                            self.state.send_error(ER_TRANSACTION_ENDED, f"turnout: {reason}")
                        else:
                            self.state.count_refused(refused)
                            self.state.send_error(ER_TRANSACTION_ENDED, not_replayed_message(SWITCHED, refused))
                        continue
                    self.state.replay_cause = SWITCHED
            if (
                self.state.replay_pending
                and expects_response(command)
                and command != c.COM_QUIT
                and not await replay(self.state, self.state.replay_cause)
            ):
                continue
            if command == c.COM_QUERY:
                await self._on_query(payload)
            elif command == c.COM_STMT_EXECUTE or command == c.COM_STMT_BULK_EXECUTE:
                await self._on_execute(payload)
            elif command == c.COM_STMT_PREPARE:
                await self._on_prepare(payload)
            elif command == c.COM_QUIT:
                self.state.current_command = ""  # nothing in flight: what it kept may be reused
                raise ClientGone("quit")
            elif command == c.COM_PROCESS_KILL:
                if len(payload) < 5:
                    self.state.send_error(c.ER_MALFORMED_PACKET, "Malformed communication packet: short COM_PROCESS_KILL")
                else:
                    await self._on_kill(KillRequest(int.from_bytes(payload[1:5], "little"), query_only=False))
            elif command == c.COM_PING:
                self.state.send(build_ok(status_flags=self._status_flags()), 1)
            elif command == c.COM_STMT_CLOSE:
                self.state.statements.pop(self._statement_id(payload), None)
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
                self.state.settings = SessionSettings(
                    self.state.settings.names, self.state.settings.schema, self.state.settings.variables, option == 0
                )
                deprecate_eof = bool(self.state.reply_capabilities & c.CLIENT_DEPRECATE_EOF)
                self.state.send(build_end(0, self._status_flags(), deprecate_eof), 1)
            elif command == c.COM_RESET_CONNECTION:
                self._reset_session(self.state.settings.schema)
                self.state.send(build_ok(status_flags=c.SERVER_STATUS_AUTOCOMMIT), 1)
            elif command == c.COM_CHANGE_USER:
                await self._on_change_user(payload)
            else:
                self.state.send_error(c.ER_UNKNOWN_COM_ERROR, "Unknown command", seq=1)

    def _status_flags(self) -> int:
        flags = c.SERVER_STATUS_AUTOCOMMIT
        if self.state.settings.variables.get("autocommit", "1").strip("'\"").upper() in ("0", "OFF", "FALSE"):
            flags = 0
        if self.state.kept is not None and Keep.TRANSACTION in self.state.kept.reasons:
            flags |= c.SERVER_STATUS_IN_TRANS
        return flags

    def _reset_session(self, schema: str | None) -> None:
        self.state.drop_kept()
        self.state.forget_transaction()
        self.state.statements.clear()
        self.state.delay_multiplex = 0
        self.state.settings = SessionSettings(names=self.state.settings.names, schema=schema)

    # ---- where a statement runs ---------------------------------------------------------------
    async def _connection_for(
        self, hostgroup: int, info: StatementInfo, rule: RuleOutcome | None = None, wait_failed: bool = False
    ) -> Target | None:
        """The backend connection this statement runs on (decisions.placement; for a read that
        must see earlier writes, decisions.causal_route), and the writes it must first wait for
        there (None: none; else the caller sends the wait with the statement, `_wait_before`);
        None when an error was sent to the client. Without `rule`, the statement is no read of
        the client's; with `wait_failed`, it is one whose wait timed out: it goes to the writer."""
        state = self.state
        kept = state.kept
        if kept is not None:
            where = placement(
                kept, hostgroup, info.is_write, False,
                not kept.reasons and state.kept_moved(kept),
                kept.hostgroup in self.shared.reader_hostgroups, info.reads_diagnostics,
            )
            if where is Placement.KEPT:
                return kept.connection, kept.hostgroup, None
            state.kept = None
            if where is Placement.END_READER_TRANSACTION:
                await self._end_reader_transaction(kept)
            else:  # LET_GO: kept only to delay multiplexing or for diagnostics, nothing to lose
                self.backends.pools.release(kept.connection, reusable=not kept.connection.broken)
        blocked = self.backends.routing.write_blocked.get(hostgroup)
        if placement(None, hostgroup, info.is_write, blocked is not None, False, False, False) is Placement.REFUSED_TWO_WRITERS:
            self.shared.stats.counters.statements_refused_two_writers += 1
            self.state.send_error(c.ER_OPTION_PREVENTS_STATEMENT, blocked or "")
            return None
        if rule is not None and self.shared.causal and not info.is_write:
            wanted = state.causal_wanted(hostgroup, rule)
            if wanted is not None:
                return await self._causal_connection(hostgroup, wanted, wait_failed)
        target = await self._pooled(hostgroup)
        return None if target is None else (target[0], target[1], None)

    async def _causal_connection(self, hostgroup: int, wanted: Position, wait_failed: bool) -> Target | None:
        """A connection for a read that must see the writes `wanted` (decisions.causal_route): to
        a replica known to have applied them; else to one where it waits for them first (up to
        mysql-causal_reads_timeout: the caller sends the wait with the read, `_wait_before`);
        else, or once that wait failed (`wait_failed`), to the writer."""
        shared = self.shared
        counters = shared.stats.counters
        applied = shared.applied
        candidates = [(server.address, applied.get(server.address)) for server in self.backends.routing.online(hostgroup)]
        route, where = causal_route(wanted, candidates, shared.causal_timeout_ms)
        target: tuple[BackendConnection, int] | None
        if route is CausalRoute.CAUGHT_UP:
            counters.causal_reads_caught_up += 1
            target = await self._pooled(hostgroup, where)
            return None if target is None else (target[0], target[1], None)
        if route is CausalRoute.WAIT and not wait_failed:
            target = await self._pooled(hostgroup)
            return None if target is None else (target[0], target[1], wanted)
        if route is not CausalRoute.WAIT:
            counters.causal_reads_to_writer += 1  # (one whose wait failed was counted timed out)
        target = await self._pooled(shared.writer_of.get(hostgroup, hostgroup))
        return None if target is None else (target[0], target[1], None)

    async def _wait_before(self, connection: BackendConnection, wanted: Position, then: bytes = b"") -> bool:
        """Wait on `connection`'s server until it has applied `wanted` (causal.wait_sql:
        MASTER_GTID_WAIT / WAIT_FOR_EXECUTED_GTID_SET, up to mysql-causal_reads_timeout), with the
        client's command `then` written right behind the wait: one round trip for both, the
        server running `then` once the wait has ended. The wait's answer is consumed here.

        True when the server has applied `wanted` (shared.applied records it): `then`'s answer,
        next on the connection, is the caller's to relay (`_relay` with `sent`). False when the
        wait timed out or failed: `then`'s answer, which may be stale, is read and dropped here
        (no byte of it reaches the client), the connection given back (closed when its state is
        unknown), and the statement goes to the writer (`_connection_for` with `wait_failed`).
        Raises BackendLost (nothing relayed) when the connection ends first."""
        shared = self.shared
        counters = shared.stats.counters
        timeout_ms = shared.causal_timeout_ms
        sql = wait_sql(connection.flavour, position_text(connection.flavour, wanted), timeout_ms)
        value: bytes | None = None
        try:
            _, value = await asyncio.wait_for(
                connection.query_value(sql, then), timeout_ms / 1000 + self.backends.connect_timeout_server
            )
        except TimeoutError:
            connection.close()  # the server did not answer in time: the connection is in no known state
        except BackendError as failed:
            raise BackendLost(0, str(failed)) from failed
        if wait_reached(value):
            counters.causal_reads_waited += 1
            applied = shared.applied  # replaced whole while this waited, perhaps
            applied[connection.address] = merged(applied.get(connection.address, {}), wanted)
            return True
        counters.causal_reads_timed_out += 1
        if then and not connection.broken:
            try:
                await connection.skip_response(then[0])
            except BackendError as skipped:
                raise BackendLost(0, str(skipped)) from skipped
        self.state.give_back(connection, reusable=not connection.broken)
        return False

    async def _waited_alone(self, connection: BackendConnection, wanted: Position) -> bool:
        """`_wait_before` with nothing behind the wait, for a command that has no answer to send
        the wait with (COM_STMT_SEND_LONG_DATA); a connection lost meanwhile is a failed wait."""
        try:
            return await self._wait_before(connection, wanted)
        except BackendLost:
            self.shared.stats.counters.causal_reads_timed_out += 1
            self.state.give_back(connection, reusable=False)
            return False

    async def _pooled(
        self, hostgroup: int, only: tuple[ServerAddress, ...] = ()
    ) -> tuple[BackendConnection, int] | None:
        """A pooled (or new) connection to a server of the hostgroup (of `only` those, when
        given), set up like the session; None when an error was sent to the client."""
        state = self.state
        connection = state.take_idle(hostgroup, only)  # the common case, without awaiting
        if connection is None:
            try:
                connection = await self.backends.acquire(hostgroup, state.login, state.reply_capabilities, only)
            except NoServer as none:
                state.send_error(ER_PROXY_NO_SERVER, str(none))
                return None
            except BackendRefused as refused:
                state.send(build_err(refused.err.code, refused.err.message, refused.err.sql_state), 1)
                return None
            state.previous_connection = connection
        state.in_flight = connection
        if same_settings(connection.settings, state.settings):
            connection.settings = state.settings
            return connection, hostgroup
        error = await self._prepare_connection(connection)
        if error is not None:
            state.give_back(connection, reusable=not connection.broken)
            state.send(build_err(error.code, error.message, error.sql_state), 1)
            return None
        return connection, hostgroup

    async def _end_reader_transaction(self, kept: Kept) -> None:
        try:
            framer = await kept.connection.query("COMMIT")
            reusable = framer.error is None and not framer.status_flags & c.SERVER_STATUS_IN_TRANS
        except BackendError:
            reusable = False
        self.backends.pools.release(kept.connection, reusable=reusable)

    async def _prepare_connection(self, connection: BackendConnection) -> ErrPacket | None:
        try:
            return await connection.apply_settings(self.state.settings)
        except BackendError as exc:
            return ErrPacket(ER_LOST_BACKEND, "HY000", f"Lost connection to backend while restoring session: {exc}")

    # ---- relaying -----------------------------------------------------------------------------
    async def _relay(
        self,
        connection: BackendConnection,
        payload: bytes,
        retry_read_only: bool = False,
        keep_columns: bool = False,
        sent: bool = False,
    ) -> ResponseFramer:
        """Send one client command to the backend (unless already `sent`, behind a causal read's
        wait: `_wait_before`) and stream the answer back, untouched.

        With `retry_read_only`, a response that is only a read_only refusal (1290) is kept from
        the client: the statement did not execute, so the caller may run it on the new master.
        """
        stripper = SessionStateStripper() if connection.session_state and not self.state.client_session_track else None
        framer = ResponseFramer(payload[0], keep_columns, connection.deprecate_eof, stripper is not None)
        backend = connection.channel
        client = self.client
        recording = self.state.recording
        if not sent:
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
            relayed_data = data if used == len(data) else data[:used]
            if stripper is not None:
                relayed_data = stripper.relay(relayed_data, framer)
            if relayed_data:
                client.write(relayed_data)
                if recording is not None:
                    recording.feed(relayed_data)
                relayed += len(relayed_data)
            if framer.local_infile:
                await self._relay_infile(connection)
                framer.resume_after_infile()
                continue
            if framer.done:
                self.state.response_ended(connection, framer, used != len(data))
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
        routed = hostgroup
        target = await self._connection_for(hostgroup, info, rule)
        if target is None:
            return
        connection, hostgroup, wait = target
        started = time.perf_counter()
        deadline = time.monotonic() + self.backends.connect_timeout_server_max
        anywhere = runs_anywhere(info, rule)
        while True:
            retry = info.is_write and self.state.kept is None and time.monotonic() < deadline
            self.state.begin_recording(payload, sql, None)
            self.state.arm_timeout(rule, time.monotonic())
            # (no continue/break inside try/finally: mypyc does not compile them)
            lost: BackendLost | None = None
            waited = True
            try:
                if wait is not None:  # a causal read: its wait and itself in one round trip
                    waited = await self._wait_before(connection, wait, payload)
                if waited:
                    framer = await self._relay(connection, payload, retry_read_only=retry, sent=wait is not None)
            except BackendLost as exc:
                lost = exc
            finally:
                self.state.deadline = 0.0
            if lost is not None:
                if not self._backend_lost(connection, lost, info, anywhere, sql, time.monotonic() < deadline):
                    return
                # The open transaction was lost: replayed on the new master, the statement follows.
                if self.state.replay_pending and not await replay(self.state, LOST_SERVER):
                    return
                # A read nobody saw any of: it runs again on a healthy server of its hostgroup,
                # waiting for one (the writer coming back, a new master) as a new statement would.
                target = await self._connection_for(routed, info, rule)
                if target is None:
                    return
                connection, hostgroup, wait = target
                continue
            if not waited:  # the wait timed out: the read, its replica's answer dropped, goes to the writer
                target = await self._connection_for(routed, info, rule, wait_failed=True)
                if target is None:
                    return
                connection, hostgroup, wait = target
                continue
            if not (retry and framer.error is not None and framer.error.code == c.ER_OPTION_PREVENTS_STATEMENT):
                break
            # The writer turned read_only under us (a switchover): the statement did not run, so it
            # waits for the new master, exactly like a statement held during the switch.
            self.shared.stats.counters.statements_retried += 1
            self.state.give_back(connection, reusable=True)
            await self.backends.writer_changed(hostgroup, connection.address, deadline)
            target = await self._connection_for(hostgroup, info)
            if target is None:
                return
            connection, hostgroup, wait = target
        self.state.finished(
            connection, hostgroup, framer, info, rule, runs_anywhere(info, rule),
            command_name(first_word(sql), info.is_write), digest, int((time.perf_counter() - started) * 1e6),
        )

    def _backend_lost(
        self,
        connection: BackendConnection,
        lost: BackendLost,
        info: StatementInfo | None = None,
        anywhere: bool = False,
        sql: str = "",
        may_retry: bool = False,
    ) -> bool:
        """The statement's connection ended under it (SessionState.lost); True when the statement
        is to run again (decisions.after_loss), else the client heard why."""
        decided = self.state.lost(connection, lost.relayed, info, anywhere, commits(first_word(sql)), may_retry)
        if decided is AfterLoss.CLOSE_CLIENT:
            raise ClientGone("backend lost in the middle of a result")
        return decided is AfterLoss.RETRY or decided is AfterLoss.REPLAY

    # ---- commands -----------------------------------------------------------------------------
    async def _on_query(self, payload: bytes) -> None:
        sql = query_text(payload)
        if first_word(sql) == "KILL":
            kill = parse_kill(sql)
            if kill is None:
                self.state.send_error(
                    ER_NOT_SUPPORTED_YET,
                    "turnout: KILL USER and KILL QUERY ID name the servers' threads, which clients share "
                    "through the proxy; KILL [QUERY|CONNECTION] takes the id of a proxy session",
                )
            else:
                await self._on_kill(kill)
            return
        info, digest, rule = self.state.classify(sql)
        if rule.matched:  # counted where a statement is taken on: here, or where the fast path starts it
            self.shared.stats.count_rule_hits(rule.matched)
        if rule.error_msg is not None:
            self.state.send_error(ER_PROXY_RULE_ERROR, rule.error_msg)
            return
        if rule.ok_msg is not None:
            self.state.send(build_ok(status_flags=self._status_flags(), info=rule.ok_msg.encode()), 1)
            return
        if (
            self.state.kept is None
            and rule.hostgroup is None
            and settles_locally(info)
            # a client that tracks session state hears what changed from the server
            and not self.state.reply_capabilities & c.CLIENT_SESSION_TRACK
        ):
            if info.names is not None:
                self.state.settings = self.state.settings.with_names(info.names)
            self.state.settings = self.state.settings.with_variables(info.sets)
            self.state.send(build_ok(status_flags=self._status_flags()), 1)
            return
        await self._run(payload, info, rule, self.state.hostgroup_for(rule), digest, sql)

    # ---- KILL ---------------------------------------------------------------------------------
    async def _on_kill(self, request: KillRequest) -> None:
        """KILL by the id a client got in its handshake: the proxy's own session of that id, never
        a server thread (decisions.kill_verdict; the server's errors)."""
        state = self.state
        assert state.user is not None
        number = request.thread_id
        target = self.shared.sessions.get(number)
        same_user = target is not None and target.user is not None and (
            target.user.user.username == state.user.user.username
        )
        privileged: bool | None = None
        if target is not None and not same_user:
            privileged = await self._may_kill_others()
            if privileged is None:
                return  # the client heard why no server could answer
        verdict = kill_verdict(target is not None, same_user, privileged)
        if verdict is KillVerdict.UNKNOWN_THREAD:
            state.send_error(ER_NO_SUCH_THREAD, f"Unknown thread id: {number}")
            return
        if verdict is KillVerdict.NOT_OWNER:
            state.send_error(ER_KILL_DENIED, f"You are not owner of thread {number}")
            return
        assert target is not None
        if target is state:  # as the server: the KILL itself is the statement killed
            if request.query_only:
                state.send_error(ER_QUERY_INTERRUPTED, "Query execution was interrupted")
                return
            state.send_error(ER_CONNECTION_KILLED, "Connection was killed")
            raise ClientGone("killed itself")
        target.kill(request.query_only)
        state.send(build_ok(status_flags=self._status_flags()), 1)

    async def _may_kill_others(self) -> bool | None:
        """Whether the server grants this client's user SUPER or CONNECTION ADMIN (what lets a
        user kill another user's threads), asked on one of its own backend connections: the
        probe's subquery returns a second row (error 1242) exactly when the user holds one. None
        when no connection could be had (the client has heard why)."""
        state = self.state
        assert state.user is not None
        target = await self._connection_for(state.user.user.default_hostgroup, StatementInfo(is_write=False))
        if target is None:
            return None
        connection, _, _ = target
        try:
            framer = await connection.query(KILL_PRIVILEGE_PROBE)
        except BackendError:
            state.forget(connection)
            return False
        state.not_executed(connection)
        return framer.error is not None and framer.error.code == ER_SUBQUERY_NO_1_ROW

    async def _on_simple(self, payload: bytes) -> None:
        """COM_INIT_DB, COM_FIELD_LIST, COM_STATISTICS: to the held backend or the default hostgroup."""
        assert self.state.user is not None
        info = StatementInfo(is_write=False)
        target = await self._connection_for(self.state.user.user.default_hostgroup, info)
        if target is None:
            return
        connection, hostgroup, _ = target
        try:
            framer = await self._relay(connection, payload)
        except BackendLost as lost:
            self._backend_lost(connection, lost)
            return
        self.state.refuse_replay(f"it ran {command_label(payload[0]).lower()}, which is not recorded")
        if payload[0] == c.COM_INIT_DB and framer.error is None:
            schema = payload[1:].decode("utf-8", "surrogateescape")
            info = StatementInfo(is_write=False, use_schema=schema)
        self.state.settle(connection, hostgroup, framer, info, NO_MATCH)

    async def _on_prepare(self, payload: bytes) -> None:
        sql = query_text(payload)
        info, digest, rule = self.state.classify(sql)
        if rule.matched:
            self.shared.stats.count_rule_hits(rule.matched)
        if rule.error_msg is not None:
            self.state.send_error(ER_PROXY_RULE_ERROR, rule.error_msg)
            return
        statement_id = self.state.next_statement_id
        self.state.last_prepared = 0
        # (per reply capabilities: they shape the response, deprecate-EOF and extended type info)
        key = (self.state.reply_capabilities, self.state.settings.schema, sql)
        cached = self.shared.prepared_responses.get(key)
        if cached is None:
            target = await self._connection_for(self.state.hostgroup_for(rule), StatementInfo(is_write=False))
            if target is None:
                return
            connection, hostgroup, _ = target
            try:
                response, framer = await self._collect(connection, payload, keep_columns=True)
            except BackendLost as lost:
                self._backend_lost(connection, lost)
                return
            if framer.error is None:
                # A prepare runs nothing: the session keeps what it kept (with deprecate-EOF a
                # PrepareOk carries no status flags to tell a transaction by).
                self.state.not_executed(connection)
            else:
                self.state.settle(connection, hostgroup, framer, StatementInfo(is_write=False), NO_MATCH)
            if framer.error is not None or framer.prepare is None:
                self.client.write(response)
                return
            metadata = tuple(framer.columns or ())
            connection.remember_statement(sql, framer.prepare, metadata)
            cached = (response, framer.prepare.num_params, framer.prepare.num_columns, metadata)
            self.shared.prepared_responses[key] = cached
        response, num_params, num_columns, metadata = cached
        self.state.next_statement_id += 1
        self.state.last_prepared = statement_id
        command = "EXECUTE" if not info.is_write else command_name(first_word(sql), True)
        self.state.statements[statement_id] = ClientStatement(
            sql, num_params, num_columns, info, rule, digest, command, runs_anywhere(info, rule), metadata=metadata
        )
        # The first packet is the PrepareOk: 4-byte header, 0x00, then the 4-byte statement id.
        self.client.write(response[:5] + statement_id.to_bytes(4, "little") + response[9:])

    async def _collect(
        self, connection: BackendConnection, payload: bytes, keep_columns: bool = False, sent: bool = False
    ) -> tuple[bytes, ResponseFramer]:
        """Send a command (unless already `sent`) and gather its whole response instead of streaming it."""
        framer = ResponseFramer(payload[0], keep_columns, connection.deprecate_eof)
        if not sent:
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
            if framer.done:
                self.state.response_ended(connection, framer, used != len(data))
        return b"".join(chunks), framer

    def _statement_id(self, payload: bytes) -> int:
        """The statement a command names: LAST_STMT_ID is the one the session prepared last."""
        statement_id = stmt_id_of(payload)
        return self.state.last_prepared if statement_id == c.LAST_STMT_ID else statement_id

    def _statement(self, payload: bytes, command: str) -> ClientStatement | None:
        statement = self.state.statements.get(self._statement_id(payload))
        if statement is None:
            self.state.send_error(
                c.ER_UNKNOWN_STMT_HANDLER,
                f"Unknown prepared statement handler ({stmt_id_of(payload)}) given to {command}",
            )
        return statement

    async def _backend_statement(
        self, statement: ClientStatement, wait_failed: bool = False
    ) -> tuple[BackendConnection, int, int, Position | None] | None:
        """A connection for the statement, with it prepared there: (connection, hostgroup, backend
        id, the writes to wait for there first as `_connection_for` says)."""
        target = await self._connection_for(
            self.state.hostgroup_for(statement.rule), statement.info, statement.rule, wait_failed
        )
        if target is None:
            return None
        connection, hostgroup, wait = target
        known = connection.statements.get(statement.sql)
        if known is not None:
            return connection, hostgroup, known.statement_id, wait
        try:
            prepared = await connection.prepare(statement.sql)
        except BackendError as exc:
            if not self._backend_lost(connection, BackendLost(0, str(exc)), statement.info, False, statement.sql):
                return None
            if not self.state.replay_pending or not await replay(self.state, LOST_SERVER):
                return None
            return await self._backend_statement(statement, wait_failed)
        if isinstance(prepared, ErrPacket):
            self.state.not_executed(connection)
            self.state.send(build_err(prepared.code, prepared.message, prepared.sql_state), 1)
            return None
        return connection, hostgroup, prepared.statement_id, wait

    async def _on_execute(self, payload: bytes) -> None:
        """COM_STMT_EXECUTE, and MariaDB's COM_STMT_BULK_EXECUTE (many rows of parameters)."""
        bulk = payload[0] == c.COM_STMT_BULK_EXECUTE
        statement = self._statement(payload, "mysqld_stmt_bulk_execute" if bulk else "mysqld_stmt_execute")
        if statement is None:
            return
        execute = None
        if bulk:
            types = bulk_param_types(payload, statement.num_params)
            if types is not None:
                statement.param_types = types
        elif statement.num_params:
            execute = parse_stmt_execute(payload, statement.num_params)
            if execute.new_params_bound:
                statement.param_types = execute.param_types
        started = time.perf_counter()
        deadline = time.monotonic() + self.backends.connect_timeout_server_max
        wait_failed = False
        while True:
            target = await self._backend_statement(statement, wait_failed)
            if target is None:
                return
            connection, hostgroup, _, wait = target
            backend_statement = connection.statements[statement.sql]
            try:
                if bulk:
                    backend_payload = bulk_payload(payload, backend_statement, statement.param_types)
                else:
                    backend_payload = execute_payload(payload, execute, backend_statement, statement.param_types)
            except ValueError as malformed:
                self.state.not_executed(connection)
                self.state.send_error(c.ER_MALFORMED_PACKET, str(malformed))
                return
            self.state.begin_recording(payload, statement.sql, statement)
            self.state.arm_timeout(statement.rule, time.monotonic())
            caching = connection.caches_metadata
            sent = wait is not None
            waited = True
            lost: BackendLost | None = None  # (no break inside try/finally: mypyc does not compile it)
            try:
                if wait is not None:  # a causal read: its wait and itself in one round trip
                    waited = await self._wait_before(connection, wait, backend_payload)
                if waited and caching and not backend_statement.cached_metadata_is(statement.metadata):
                    framer = await self._execute_with_metadata(
                        connection, backend_payload, statement, backend_statement, sent
                    )
                elif waited:
                    framer = await self._relay(connection, backend_payload, keep_columns=caching, sent=sent)
            except BackendLost as exc:
                lost = exc
            finally:
                self.state.deadline = 0.0
            if lost is None and waited:
                break
            if lost is None:  # the wait timed out: the read, its replica's answer dropped, goes to the writer
                wait_failed = True
                continue
            retry = time.monotonic() < deadline
            if not self._backend_lost(connection, lost, statement.info, statement.anywhere, statement.sql, retry):
                return
            if self.state.replay_pending and not await replay(self.state, LOST_SERVER):
                return
        statement.after_result(backend_statement, framer)
        if framer.error is not None:
            backend_statement.bound_types = None  # the server may not have taken the types
        self.state.finished(
            connection, hostgroup, framer, statement.info, statement.rule, statement.anywhere,
            statement.command, statement.digest_text, int((time.perf_counter() - started) * 1e6),
        )

    async def _execute_with_metadata(
        self,
        connection: BackendConnection,
        payload: bytes,
        statement: ClientStatement,
        backend_statement: BackendStatement,
        sent: bool = False,
    ) -> ResponseFramer:
        """COM_STMT_EXECUTE where the client's cached column definitions are not the server's (see
        protocol.metadata): the response is gathered whole, and if the server left its
        definitions out, they are put back in so the client decodes the rows with the right ones."""
        response, framer = await self._collect(connection, payload, keep_columns=True, sent=sent)
        if framer.metadata_omitted and backend_statement.metadata is not None:
            try:
                response = with_metadata(response, backend_statement.metadata)
            except MalformedPacket as exc:
                connection.broken = True
                raise BackendLost(0, f"cannot put the column definitions back in: {exc}") from exc
            statement.metadata = backend_statement.metadata
            self.shared.stats.counters.metadata_restored += 1
        recording = self.state.recording
        if recording is not None:
            recording.feed(response)
        self.client.write(response)
        return framer

    async def _on_long_data(self, payload: bytes) -> None:
        """No response; the data lives on one backend connection, which the session then keeps."""
        statement = self.state.statements.get(self._statement_id(payload))
        if statement is None:
            return  # the server would ignore it too; the following EXECUTE reports the error
        target = await self._backend_statement(statement)
        if target is not None and target[3] is not None and not await self._waited_alone(target[0], target[3]):
            target = await self._backend_statement(statement, wait_failed=True)
        if target is None:
            return
        connection, hostgroup, backend_id, _ = target
        self.state.refuse_replay("it sent long data for a prepared statement, which is not recorded")
        connection.channel.write(encode_packet(with_stmt_id(payload, backend_id), 0))
        state = self.state
        kept = state.kept if state.kept is not None and state.kept.connection is connection else None
        if kept is None:
            state.kept = Kept(connection, hostgroup, _LONG_DATA)
        else:
            state.kept = replace(kept, reasons=kept.reasons | _LONG_DATA)
        if state.in_flight is connection:
            state.in_flight = None

    async def _on_stmt_reset(self, payload: bytes) -> None:
        statement = self._statement(payload, "mysqld_stmt_reset")
        if statement is None:
            return
        kept = self.state.kept
        backend = kept.connection.statements.get(statement.sql) if kept is not None else None
        if kept is None or backend is None:
            self.state.send(build_ok(status_flags=self._status_flags()), 1)
            return
        self.state.kept = kept = replace(kept, reasons=kept.reasons - _LONG_DATA)
        try:
            framer = await self._relay(kept.connection, with_stmt_id(payload, backend.statement_id))
        except BackendLost as lost:
            # In a transaction: replayed (the statement is prepared afresh there, nothing to reset)
            if (
                self._backend_lost(kept.connection, lost, _RESETS, False, statement.sql)
                and self.state.replay_pending
                and await replay(self.state, LOST_SERVER)
            ):
                self.state.send(build_ok(status_flags=self._status_flags()), 1)
            return
        self.state.settle(kept.connection, kept.hostgroup, framer, statement.info, NO_MATCH)

    async def _on_fetch(self, payload: bytes) -> None:
        statement = self._statement(payload, "mysqld_stmt_fetch")
        if statement is None:
            return
        kept = self.state.kept
        backend = kept.connection.statements.get(statement.sql) if kept is not None else None
        if kept is None or backend is None:
            self.state.send_error(c.ER_UNKNOWN_STMT_HANDLER, "The statement has no open cursor")
            return
        self.state.refuse_replay("it fetched from a cursor, which is not recorded")
        await self._relay_kept(with_stmt_id(payload, backend.statement_id), statement.info)

    async def _relay_kept(self, payload: bytes, info: StatementInfo) -> None:
        kept = self.state.kept
        assert kept is not None
        try:
            framer = await self._relay(kept.connection, payload)
        except BackendLost as lost:
            self._backend_lost(kept.connection, lost)
            return
        self.state.settle(kept.connection, kept.hostgroup, framer, info, NO_MATCH)

    async def _on_change_user(self, payload: bytes) -> None:
        change = parse_change_user(payload, self.capabilities)
        entry = self.shared.users.get(change.user)
        seq = 1
        response = change.auth_response
        salt = self.salt
        if entry is not None and change.auth_plugin not in (None, "", c.NATIVE_PASSWORD):
            salt = new_salt()
            self.state.send(build_auth_switch_request(c.NATIVE_PASSWORD, salt), seq)
            packet = await self._read_packet()
            response = packet.payload
            seq = packet.seq + 1
        stage1 = verify_native(response, salt, entry.double_sha1) if entry is not None and entry.user.active else None
        tls_missing = entry is not None and entry.user.use_ssl and self.client.tls is None
        if entry is None or stage1 is None or tls_missing:
            self.state.send_error(
                c.ER_ACCESS_DENIED_ERROR,
                f"Access denied for user '{change.user}' (using password: {'YES' if response else 'NO'})"
                + (". SSL is required" if tls_missing else ""),
                seq,
            )
            raise ClientGone("change user denied")
        assert self.state.user is not None
        self.shared.user_changed(self.state.user, entry)
        self._logged_in(entry, stage1)
        self._reset_session(change.database or entry.user.default_schema or self.shared.default_schema)
        if change.charset:
            self.state.settings = self.state.settings.with_names(charset_for_collation(change.charset))
        # As the server: a client that tracks session state hears the database it named.
        named = change.database if self.state.client_session_track else None
        self.state.send(build_ok(status_flags=c.SERVER_STATUS_AUTOCOMMIT, session_state=schema_change(named) if named else b""), seq)


_LONG_DATA = frozenset({Keep.LONG_DATA})
_RESETS = StatementInfo(is_write=False)  # COM_STMT_RESET, as after_loss sees it


def command_label(command: int) -> str:
    """What stats_mysql_processlist shows for a command in progress."""
    if command in (c.COM_QUERY, c.COM_STMT_EXECUTE, c.COM_STMT_PREPARE, c.COM_STMT_BULK_EXECUTE):
        return "Query"
    return f"Command 0x{command:02x}"
