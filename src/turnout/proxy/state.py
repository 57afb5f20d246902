"""The data path's state: what every session of a proxy process shares (`Shared`), and what one
session owns (`SessionState`).

`SessionState` is the one owner of a session's mutable state. The session's coroutine
(session.py) and its fast path (fastpath.py) both work on it by name, and both finish a
statement through its relay rule: `response_ended` (whether the connection is broken),
`settle` (keep or give back the connection, as `decisions.retention` says, and record the
statement in the stats), `lost` (the connection ended under the statement).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from turnout.config.model import MysqlUser
from turnout.protocol import constants as c
from turnout.protocol.auth import parse_stored_password
from turnout.protocol.constants import SERVER_SESSION_STATE_CHANGED as SESSION_STATE_CHANGED
from turnout.protocol.generic import build_err
from turnout.protocol.metadata import Metadata
from turnout.protocol.packets import MalformedPacket, encode_packet
from turnout.protocol.response import ResponseFramer, ResponseOutcome
from turnout.proxy.acquisition import Backends, Connector, Login
from turnout.proxy.backend import BackendConnection, BackendStatement, ServerAddress
from turnout.proxy.causal import Position, gtid_of_ok, merged, parse_position
from turnout.proxy.channel import Channel, open_channel
from turnout.proxy.decisions import (
    CAUSAL_GLOBAL,
    CAUSAL_OFF,
    CAUSAL_USER,
    AfterLoss,
    AtEnd,
    CausalRoute,
    Kept,
    after_loss,
    at_session_end,
    breaks_connection,
    causal_mode,
    causal_route,
    idle_limit,
    idle_too_long,
    keeps_diagnostics,
    releases_at_once,
    retention,
)
from turnout.proxy.decisions import hostgroup_for as route_hostgroup
from turnout.proxy.digest import digest_text
from turnout.proxy.errors import (
    ER_LOST_BACKEND,
    ER_STATEMENT_TIMEOUT,
    ER_TRANSACTION_ENDED,
    LOST_BACKEND,
    LOST_ROLLED_BACK,
    LOST_UNKNOWN_OUTCOME,
)
from turnout.proxy.replay import (
    TOO_LARGE,
    UNREPRODUCIBLE,
    ResultDigest,
    TransactionLog,
    may_open_transaction,
    unrestorable,
)
from turnout.proxy.rules import NO_MATCH, CompiledRule, RuleOutcome, evaluate
from turnout.proxy.settings import SessionSettings
from turnout.proxy.statement import Keep, StatementInfo, analyze
from turnout.proxy.stats import ProxyStats


@dataclass(frozen=True, slots=True)
class UserEntry:
    """A frontend user as the proxy checks its logins: the stored password's hashes."""

    user: MysqlUser
    double_sha1: bytes
    stage1: bytes | None
    password: str | None


def user_entry(user: MysqlUser) -> UserEntry:
    double_sha1, stage1 = parse_stored_password(user.password)
    clear = user.password if user.password and not user.password.startswith("*") else None
    return UserEntry(user, double_sha1, stage1, clear if user.password else "")


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
    anywhere: bool  # decisions.runs_anywhere: the fast path may run it on any pooled connection
    param_types: bytes | None = None
    # The column definitions the client last received for it (its PrepareOk, then any result
    # that carried them): what it decodes rows with when metadata caching leaves them out.
    metadata: Metadata = ()

    def after_result(self, backend: BackendStatement, framer: ResponseFramer) -> None:
        """A result of `backend` went to the client: definitions it carried are cached by both now."""
        if framer.columns is not None and framer.error is None:
            self.metadata = backend.metadata = tuple(framer.columns)


class Shared:
    """What every session of one proxy process shares: the configuration in force (replaced by
    `Proxy.apply_config`), users, query rules, backend acquisition, stats, the sessions."""

    def __init__(self, connector: Connector = open_channel) -> None:
        self.stats = ProxyStats()
        self.backends = Backends(self.stats.counters, connector)
        self.sessions: dict[int, SessionState] = {}
        self.connections_by_user: dict[str, int] = {}
        # PrepareOk responses by (reply capabilities, schema, SQL): the whole response, params,
        # columns, definitions.
        self.prepared_responses: dict[tuple[int, str | None, str], tuple[bytes, int, int, Metadata]] = {}
        self.users: dict[str, UserEntry] = {}
        self.rules: tuple[CompiledRule, ...] = ()
        self.reader_hostgroups: frozenset[int] = frozenset()
        self.tls_context: ssl.SSLContext | None = None
        self.max_allowed_packet = 64 * 1024 * 1024
        self.max_connections = 10000
        self.connect_timeout_client = 10.0
        self.default_query_timeout = 86_400.0
        self.wait_timeout = 28_800.0  # mysql-wait_timeout, seconds: idle sessions are ended
        self.auto_increment_delay_multiplex = 5
        self.server_version = "5.5.30"
        self.default_schema = "information_schema"
        # Off: every command goes through the sessions' coroutines (tests compare the two paths).
        self.fast_path = True
        # Transaction replay (mysql-transaction_replay*): record open transactions, replay them
        # on the new master when their server is lost before their COMMIT.
        self.transaction_replay = False
        self.transaction_replay_max_size = 1024 * 1024
        self.transaction_replay_attempts = 5
        self.transaction_replay_timeout = 30.0
        # Causal reads: mysql-causal_reads, mysql-causal_reads_timeout; `causal` says whether
        # anything asks for them (the mode, a user, a rule), so that reads check nothing else.
        self.causal_mode = CAUSAL_USER
        self.causal_timeout_ms = 1000
        self.causal = False
        # reader hostgroup -> the writer hostgroup of its replication pair
        self.writer_of: dict[int, int] = {}
        # Every write this proxy process acknowledged (mysql-causal_reads = global), and what
        # each replica is known to have applied: what the monitor last saw it apply
        # (`monitor_applied`, replaced whole by Proxy.apply_positions), merged with its waits for
        # writes that succeeded since.
        self.written: Position = {}
        self.applied: dict[ServerAddress, Position] = {}
        self.monitor_applied: dict[ServerAddress, Position] = {}

    def admit(self, session: SessionState, entry: UserEntry) -> tuple[int, str] | None:
        """None when the session may start, else the error code and message to refuse it with."""
        if len(self.sessions) >= self.max_connections:
            self.stats.counters.access_denied_max_connections += 1
            return (c.ER_CON_COUNT_ERROR, "Too many connections")
        name = entry.user.username
        if self.connections_by_user.get(name, 0) >= entry.user.max_connections:
            self.stats.counters.access_denied_max_user_connections += 1
            return (c.ER_TOO_MANY_USER_CONNECTIONS, f"User '{name}' has exceeded the 'max_user_connections' resource")
        self.sessions[session.id] = session
        self.connections_by_user[name] = self.connections_by_user.get(name, 0) + 1
        self.stats.counters.client_connections_created += 1
        return None

    def user_changed(self, old: UserEntry, new: UserEntry) -> None:
        self.connections_by_user[old.user.username] -= 1
        self.connections_by_user[new.user.username] = self.connections_by_user.get(new.user.username, 0) + 1

    def session_ended(self, session: SessionState) -> None:
        if self.sessions.pop(session.id, None) is not None and session.user is not None:
            self.connections_by_user[session.user.user.username] -= 1


class SessionState:
    """One client session's state, and the rules both of its paths apply to it."""

    def __init__(self, shared: Shared, client: Channel, session_id: int) -> None:
        self.shared = shared
        self.backends = shared.backends
        self.client = client
        self.id = session_id
        peer = client.get_extra_info("peername") or ("", 0)
        self.client_address = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.user: UserEntry | None = None
        self.login = Login("", None, None)  # how its backend connections log in
        # The client capabilities its backend connections must share (backend.REPLY_CAPABILITIES).
        self.reply_capabilities = 0
        self.settings = SessionSettings()
        self.kept: Kept | None = None  # the connection it keeps between statements, and why
        # The connection taken for the command in progress, until it is kept or given back: if
        # the command ends any other way (client gone, bad input, a bug), its state is unknown.
        self.in_flight: BackendConnection | None = None
        # The connection the fast path is relaying a statement on (pooled or kept).
        self.relaying: BackendConnection | None = None
        # The connection of the session's previous statement, preferred while it is idle.
        self.previous_connection: BackendConnection | None = None
        self.delay_multiplex = 0
        self.statements: dict[int, ClientStatement] = {}
        self.next_statement_id = 1
        # The statement its last COM_STMT_PREPARE created (0 when that failed): what
        # c.LAST_STMT_ID names.
        self.last_prepared = 0
        self.current_command = ""
        self.command_started = 0.0
        self.closed = False
        self.ended_reason: str | None = None
        # The statement in flight ends by this monotonic time (0: none in flight), or is killed.
        self.deadline = 0.0
        self.statement_timeout = 0.0
        self.timed_out_after: float | None = None  # seconds, once the proxy killed it
        self.cut_reason: str | None = None  # why the proxy cut the statement's connection (self-fencing)
        # A client's KILL CONNECTION of this session: it ends once its command in flight has.
        self.killed = False
        # When its last command ended (monotonic): an idle session ends after its wait_timeout.
        self.idle_since = time.monotonic()
        # Transaction replay: the open transaction's record (None while replay is off), the
        # digest the statement in progress feeds its answer to (None: not recorded), and whether
        # the transaction is to be replayed before the session's next command runs.
        self.log: TransactionLog | None = None
        self.recording: ResultDigest | None = None
        self.replay_pending = False
        self.replay_hostgroup = 0
        self.replay_reasons: frozenset[Keep] = frozenset()
        self.replay_cause = ""
        # The GTIDs its writes committed, per domain (causal reads), and their flavour.
        self.written: Position = {}
        self.flavour = ""
        # The client agreed to CLIENT_SESSION_TRACK: OK packets keep their session state.
        self.client_session_track = False

    # ---- where statements go ------------------------------------------------------------------
    def classify(self, sql: str) -> tuple[StatementInfo, str, RuleOutcome]:
        """What the statement does, its digest, and where the rules send it."""
        digest = digest_text(sql)
        return analyze(sql), digest, self.route(sql, digest)

    def route(self, sql: str, digest: str) -> RuleOutcome:
        assert self.user is not None
        rules = self.shared.rules
        if not rules:
            return NO_MATCH
        return evaluate(rules, sql, digest, self.user.user.username, self.settings.schema)

    def hostgroup_for(self, rule: RuleOutcome) -> int:
        assert self.user is not None
        return route_hostgroup(rule, self.user.user.default_hostgroup)

    def take_idle(self, hostgroup: int, only: tuple[ServerAddress, ...] = ()) -> BackendConnection | None:
        """An idle pooled connection for a statement to `hostgroup` (to one of `only` those
        servers, when given), at once or not at all."""
        connection = self.backends.idle_for(
            hostgroup, self.login.username, self.reply_capabilities, self.previous_connection, only
        )
        if connection is not None:
            self.previous_connection = connection
        return connection

    def causal_wanted(self, hostgroup: int, rule: RuleOutcome) -> Position | None:
        """The writes a read to `hostgroup` must see (decisions.causal_mode): None when it need
        not see any (it is not going to a reader hostgroup, or nothing was written)."""
        shared = self.shared
        if hostgroup not in shared.writer_of:
            return None
        assert self.user is not None
        mode = causal_mode(shared.causal_mode, self.user.user.causal_reads, rule.gtid_from_hostgroup)
        if mode == CAUSAL_OFF:
            return None
        wanted = shared.written if mode == CAUSAL_GLOBAL else self.written
        return wanted or None

    def caught_up(self, hostgroup: int, wanted: Position) -> tuple[ServerAddress, ...]:
        """The ONLINE servers of `hostgroup` known to have applied `wanted`, when
        decisions.causal_route sends the read to them (else none: it waits, or goes to the writer)."""
        applied = self.shared.applied
        if not applied:
            return ()
        candidates = [(server.address, applied.get(server.address)) for server in self.backends.routing.online(hostgroup)]
        route, where = causal_route(wanted, candidates, self.shared.causal_timeout_ms)
        return where if route is CausalRoute.CAUGHT_UP else ()

    def wrote_gtid(self, connection: BackendConnection, outcome: ResponseOutcome) -> None:
        """A statement's OK reported the GTID it committed: the session's reads (and, with
        mysql-causal_reads = global, everyone's) must see it from now on."""
        ok = outcome.ok
        if ok is None:
            return
        try:
            gtid = gtid_of_ok(ok)
        except MalformedPacket:
            return  # no session state this proxy can read
        if gtid is None:
            return
        try:
            position = parse_position(connection.flavour, gtid)
        except ValueError:
            return  # not a GTID this proxy can read: nothing to wait for
        self.flavour = connection.flavour
        self.written = merged(self.written, position)
        shared = self.shared
        shared.written = merged(shared.written, position)

    def kept_moved(self, kept: Kept) -> bool:
        """The kept connection's server no longer takes its hostgroup's traffic."""
        return not self.backends.serves(kept.hostgroup, kept.connection.address)

    # ---- transaction replay's record ---------------------------------------------------------
    def begin_recording(self, payload: bytes, sql: str, statement: ClientStatement | None, skip: int = 0) -> None:
        """A statement starts: recorded (its answer fed to `self.recording`) when it runs inside a
        transaction, or may open one, and transaction replay is on."""
        shared = self.shared
        log = self.log
        if not shared.transaction_replay:
            if log is not None:
                self.log = None
            self.recording = None
            return
        if log is None:
            log = self.log = TransactionLog(shared.transaction_replay_max_size)
        if not log.active:
            kept = self.kept
            if kept is not None and Keep.TRANSACTION in kept.reasons:
                log.open(self.settings, "its beginning was not recorded (transaction replay was turned on during it)")
            elif may_open_transaction(sql, self.autocommit()):
                log.open(self.settings, unrestorable(kept.reasons) if kept is not None else None)
            else:
                self.recording = None
                return
        if skip:
            payload = payload[skip:]
        if statement is None:
            self.recording = log.start(payload, sql, 0, None)
        else:
            self.recording = log.start(payload, sql, statement.num_params, statement.param_types)

    def refuse_replay(self, reason: str) -> None:
        """Something the record cannot follow ran inside the transaction (a cursor, long data…)."""
        log = self.log
        if log is not None and log.active:
            log.refuse(reason)

    def count_refused(self, reason: str | None) -> None:
        counters = self.shared.stats.counters
        counters.transaction_replays_refused += 1
        if reason is not None:
            if reason.startswith(UNREPRODUCIBLE):
                counters.transaction_replays_refused_unreproducible += 1
            elif reason.startswith(TOO_LARGE):
                counters.transaction_replays_refused_too_large += 1

    def autocommit(self) -> bool:
        value = self.settings.variables.get("autocommit")
        return value is None or value.strip("'\"").upper() not in ("0", "OFF", "FALSE")

    def end_of_record(self) -> str | None:
        """The kept transaction's connection is let go (a switchover's drain): None when the
        transaction is to be replayed before the next command, else why it cannot be."""
        log = self.log
        kept = self.kept
        if log is None or kept is None or Keep.TRANSACTION not in kept.reasons:
            return None
        if not log.active:
            return "it was not recorded"
        refused = log.refused
        if refused is None:
            self.replay_pending = True
            self.replay_hostgroup = kept.hostgroup
            self.replay_reasons = kept.reasons
        else:
            log.close()
        return refused

    # ---- the relay rule -----------------------------------------------------------------------
    def give_back(self, connection: BackendConnection, reusable: bool) -> None:
        if self.in_flight is connection:
            self.in_flight = None
        self.backends.pools.release(connection, reusable=reusable)

    def drop_kept(self) -> None:
        """A kept connection carries this client's state (transaction, locks…): close it."""
        kept = self.kept
        if kept is not None:
            self.kept = None
            self.give_back(kept.connection, reusable=False)

    def let_go_at_end(self) -> None:
        """The session ends: its kept connection is pooled, reset then pooled, or closed
        (decisions.at_session_end)."""
        kept = self.kept
        if kept is None:
            return
        self.kept = None
        connection = kept.connection
        busy = bool(self.current_command) or self.relaying is connection or self.in_flight is connection
        fate = at_session_end(kept.reasons, busy, connection.idle_usable())
        if fate is AtEnd.RESET:
            if self.in_flight is connection:
                self.in_flight = None
            self.backends.reset_then_pool(connection)
        else:
            self.give_back(connection, reusable=fate is AtEnd.POOL)

    @staticmethod
    def response_ended(connection: BackendConnection, outcome: ResponseOutcome, surplus: bool) -> None:
        """A response is complete: whether it leaves its connection broken (decisions)."""
        error = outcome.error
        if breaks_connection(error.code if error is not None else None, surplus):
            connection.broken = True

    def settle(
        self,
        connection: BackendConnection,
        hostgroup: int,
        outcome: ResponseOutcome,
        info: StatementInfo,
        rule: RuleOutcome,
    ) -> None:
        """After a statement's result: keep or give back its connection, given what the statement
        did to the session (decisions.retention), and follow the settings it changed."""
        kept = self.kept
        error = outcome.error
        succeeded = error is None
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
        ok = outcome.ok
        diagnostics = not connection.broken and keeps_diagnostics(not succeeded, ok is not None, outcome.warnings)
        decided = retention(
            kept, self.delay_multiplex, info, rule, succeeded, outcome.status_flags,
            ok.last_insert_id if ok is not None else 0, self.shared.auto_increment_delay_multiplex, diagnostics,
        )
        self.delay_multiplex = decided.delay_multiplex
        if decided.keeps:
            self.kept = Kept(connection, hostgroup, decided.reasons, decided.wrote, decided.diagnostics_only)
            if self.in_flight is connection:
                self.in_flight = None
        else:
            self.kept = None
            self.give_back(connection, reusable=not connection.broken)

    def finished(
        self,
        connection: BackendConnection,
        hostgroup: int,
        outcome: ResponseOutcome,
        info: StatementInfo,
        rule: RuleOutcome,
        anywhere: bool,
        command: str,
        digest: str,
        elapsed_us: int,
    ) -> None:
        """A statement's result reached the client: keep or give back its connection and record
        it in the stats. `anywhere`: decisions.runs_anywhere(info, rule)."""
        log = self.log
        if log is not None and log.active:
            self.recording = None
            log.done(outcome.error is None, outcome.status_flags)
        ok = outcome.ok
        if ok is not None and ok.status_flags & SESSION_STATE_CHANGED and connection.tracks_gtids:
            self.wrote_gtid(connection, outcome)
        if (
            anywhere
            and self.kept is None
            and not self.delay_multiplex
            and releases_at_once(
                False, outcome.status_flags, ok.last_insert_id if ok is not None else 0,
                keeps_diagnostics(outcome.error is not None, ok is not None, outcome.warnings),
            )
        ):
            self.give_back(connection, reusable=not connection.broken)
        else:
            self.settle(connection, hostgroup, outcome, info, rule)
        self.record(command, hostgroup, digest, elapsed_us, outcome, connection)

    def not_executed(self, connection: BackendConnection) -> None:
        """The statement never ran: the session keeps exactly what it kept before."""
        if self.kept is None or self.kept.connection is not connection:
            self.give_back(connection, reusable=not connection.broken)

    def record(
        self, command: str, hostgroup: int, digest: str, elapsed_us: int, outcome: ResponseOutcome,
        connection: BackendConnection,
    ) -> None:
        """The statement in stats_mysql_commands_counters, _query_digest and _connection_pool."""
        assert self.user is not None
        ok = outcome.ok
        stats = self.shared.stats
        schema = self.settings.schema or ""
        username = self.user.user.username
        stats.record(command, hostgroup, schema, username, digest, elapsed_us, ok.affected_rows if ok is not None else 0)
        address = connection.address
        stats.count_server_query(hostgroup, address)
        self.backends.pools.pool_of(connection).stats.queries += 1
        error = outcome.error
        if error is not None:
            stats.count_error((hostgroup, address[0], address[1], username, schema, error.code), error.message)

    def lost(
        self,
        connection: BackendConnection,
        relayed: int,
        info: StatementInfo | None = None,
        anywhere: bool = False,
        commits: bool = False,
        may_retry: bool = False,
    ) -> AfterLoss:
        """The statement's backend connection ended under it: the server went away, or the proxy
        killed the statement for its timeout. The connection is dropped (with whatever the session
        kept on it), and `decisions.after_loss` says what follows: RETRY (nothing is sent; the
        caller runs the statement again), CLOSE_CLIENT (part of an answer reached the client: its
        connection must end), else the client hears why. `info`, `anywhere` (runs_anywhere) and
        `commits` describe the statement; without `info`, it is never retried."""
        kept = self.kept
        on_kept = kept is not None and kept.connection is connection
        in_transaction = kept is not None and on_kept and Keep.TRANSACTION in kept.reasons
        holds_session = kept is not None and on_kept and bool(kept.reasons)
        connection.broken = True
        if on_kept:
            self.kept = None
        self.give_back(connection, reusable=False)
        self.recording = None
        log = self.log
        replay_on = log is not None and log.active and info is not None
        refused = log.refused if log is not None else None
        timed_out, self.timed_out_after = self.timed_out_after, None
        cut, self.cut_reason = self.cut_reason, None
        if timed_out is None and cut is None and not self.killed:
            self.backends.backend_failed(connection.address)
        # a KILL CONNECTION of this session: its client finds the connection closed, as directly
        decided = AfterLoss.CLOSE_CLIENT if self.killed else after_loss(
            relayed,
            info.is_write if info is not None else False,
            anywhere and info is not None,
            in_transaction,
            commits,
            holds_session,
            timed_out is not None or cut is not None,
            may_retry and info is not None,
            replay_on,
            refused,
        )
        if decided is AfterLoss.REPLAY:
            assert kept is not None
            self.replay_pending = True
            self.replay_hostgroup = kept.hostgroup
            self.replay_reasons = kept.reasons
            return decided
        if log is not None:
            log.close()
        if decided is AfterLoss.RETRY:
            self.shared.stats.counters.statements_retried += 1
        elif decided is AfterLoss.CLOSE_CLIENT:
            pass
        elif decided is AfterLoss.NOT_REPLAYED:
            self.count_refused(refused)
            self.send_error(ER_TRANSACTION_ENDED, not_replayed_message(f"its server was lost ({LOST_BACKEND})", refused))
        elif cut is not None:
            self.send_error(ER_LOST_BACKEND, f"turnout: {cut}; the statement was cut off and its outcome is unknown")
        elif timed_out is not None:
            self.send_error(
                ER_STATEMENT_TIMEOUT,
                f"turnout: the statement ran longer than its timeout ({timed_out * 1000:.0f} ms: "
                "mysql-default_query_timeout, or its query rule's timeout) and was killed; "
                "an open transaction was rolled back",
            )
        elif decided is AfterLoss.UNKNOWN_OUTCOME:
            self.send_error(ER_LOST_BACKEND, LOST_UNKNOWN_OUTCOME)
        else:
            self.send_error(ER_LOST_BACKEND, LOST_ROLLED_BACK if in_transaction else LOST_BACKEND)
        return decided

    def forget(self, connection: BackendConnection) -> None:
        """A connection in an unknown state: closed, whether pooled for this statement or kept."""
        connection.broken = True
        if self.kept is not None and self.kept.connection is connection:
            self.kept = None
        self.give_back(connection, reusable=False)

    # ---- KILL ---------------------------------------------------------------------------------
    def kill(self, query_only: bool) -> None:
        """Another client's KILL [QUERY] of this session (decisions.kill_verdict allowed it): the
        statement in flight is killed on its server as this session's own user, so the client
        hears the server's own error (1317, or 1927 for a connection); KILL CONNECTION then ends
        the session: at once when idle, else as soon as that statement's answer has gone out."""
        busy = bool(self.current_command)
        connection = self.relaying or self.in_flight or (self.kept.connection if busy and self.kept else None)
        if busy and connection is not None and not connection.broken and self.user is not None:
            self.backends.kill_query(connection, self.login, connection_too=not query_only)
        if query_only:
            return
        self.killed = True
        if not busy:
            self.close()

    # ---- timeouts -----------------------------------------------------------------------------
    def idle_too_long(self, now: float) -> bool:
        """Idle past its wait_timeout (decisions.idle_limit): the proxy ends it, as the server would."""
        limit = idle_limit(self.shared.wait_timeout, self.settings.variables.get("wait_timeout"))
        return idle_too_long(bool(self.current_command), self.idle_since, now, limit)

    def arm_timeout(self, rule: RuleOutcome, now: float) -> None:
        self.statement_timeout = rule.timeout_ms / 1000 if rule.timeout_ms else self.shared.default_query_timeout
        self.deadline = now + self.statement_timeout

    def time_out(self) -> None:
        """The statement in flight ran past its deadline: kill it on the server and drop its
        connection; the session's relay then tells the client (`lost`)."""
        self.deadline = 0.0
        connection = self.relaying or self.in_flight or (self.kept.connection if self.kept else None)
        if connection is None or connection.broken:
            return
        self.timed_out_after = self.statement_timeout
        self.shared.stats.counters.statements_timed_out += 1
        if self.user is not None:
            self.backends.kill_query(connection, self.login)
        connection.broken = True
        connection.channel.close()

    def cut(self, addresses: frozenset[tuple[str, int]], reason: str) -> bool:
        """Close the connection of a statement in flight to one of `addresses` (the client hears
        `reason`), and end at its next command a transaction kept there. True if anything was."""
        connection = self.relaying or self.in_flight
        cut = False
        if connection is not None and not connection.broken and connection.address in addresses:
            self.cut_reason = reason
            connection.broken = True
            connection.channel.close()
            cut = True
        kept = self.kept
        if kept is not None and kept.reasons and kept.connection.address in addresses:
            self.end_kept(reason)
            cut = True
        return cut

    # ---- the client ---------------------------------------------------------------------------
    def send(self, payload: bytes, seq: int) -> None:
        self.client.write(encode_packet(payload, seq))

    def send_error(self, code: int, message: str, seq: int = 1) -> None:
        if not self.client.is_closing():
            self.client.write(encode_packet(build_err(code, message, c.sql_state_for(code)), seq))

    def forget_transaction(self) -> None:
        """The session's transaction is gone (its connection dropped, the session reset)."""
        self.replay_pending = False
        self.recording = None
        if self.log is not None:
            self.log.close()

    def end_kept(self, reason: str) -> None:
        """End the session's hold on its backend at its next command: the connection is closed
        (its transaction rolls back) and the client hears `reason` as an error. Deferred to the
        session's own task, so a command in flight is never cut."""
        self.ended_reason = reason

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.let_go_at_end()
        self.client.close()
        self.shared.session_ended(self)

    def processlist_row(self) -> dict[str, object]:
        kept = self.kept
        host, _, port = self.client_address.rpartition(":")
        return {
            "ThreadID": self.id,
            "SessionID": self.id,
            "user": self.user.user.username if self.user else None,
            "db": self.settings.schema,
            "cli_host": host,
            "cli_port": int(port) if port.isdigit() else None,
            "hostgroup": kept.hostgroup if kept else None,
            "srv_host": kept.connection.address[0] if kept else None,
            "srv_port": kept.connection.address[1] if kept else None,
            "command": "Query" if self.current_command else "Sleep",
            "time_ms": int((time.monotonic() - self.command_started) * 1000) if self.current_command else 0,
            "info": ", ".join(sorted(kept.reasons)) if kept else None,
        }


def not_replayed_message(cause: str, reason: str | None) -> str:
    """Error 1213's text for a transaction that was rolled back and not replayed."""
    return f"turnout: {cause}; the transaction was rolled back and not replayed: {reason}; run it again"


def replay_failed_message(cause: str, reason: str) -> str:
    """Error 1213's text for a transaction whose replay failed (nothing of it was applied)."""
    return f"turnout: {cause}; the transaction was rolled back and its replay failed: {reason}; run it again"
