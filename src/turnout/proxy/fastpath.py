"""A session's steady state, relayed by callbacks: no task wakes up for it.

Most statements of a multiplexed session change nothing in the session: nothing is held, the
statement goes to an idle pooled connection already set up like the session, the answer goes
back untouched, the connection returns to the pool. Statements of a session that holds a
connection (a transaction…) go to that connection. `FastPath` does exactly that from the event loop's callbacks —
the client's bytes arrive, the backend's answer arrives — while the session's coroutine stays
parked waiting for its next command.

Anything else declines: the bytes go to the session's coroutine, which does the general thing
(new connections, settings to restore, statements to prepare, transactions, retries, errors).
Declining happens before anything changes, so the coroutine sees the command as if the fast path
did not exist. Every decision is the coroutine's too: where a statement runs and what the session
keeps after it come from `decisions` (`runs_anywhere`, `placement`, `retention` through
`SessionState.settle`), and a statement ends through the same relay rule (`SessionState`). One
thing is handed back after the fact: a write the writer refused with read_only (a switchover) did
not run, and the coroutine takes it again to wait for the new master; so is a read whose server
failed before any of its answer was relayed (`decisions.after_loss`), which the coroutine runs
again on another server.
"""

from __future__ import annotations

import time
from typing import Final

from turnout.protocol import constants as c
from turnout.protocol.commands import query_text
from turnout.protocol.packets import MAX_PAYLOAD, ProtocolError
from turnout.protocol.response import ResponseFramer, WholeResultSet, whole_result_set
from turnout.proxy.backend import BackendConnection, BackendStatement, ServerAddress
from turnout.proxy.causal import SessionStateStripper
from turnout.proxy.channel import WRITE_BUFFER_HIGH
from turnout.proxy.decisions import AfterLoss, Placement, commits, placement, runs_anywhere
from turnout.proxy.replay import LOST_SERVER
from turnout.proxy.rules import RuleOutcome
from turnout.proxy.settings import same_settings
from turnout.proxy.state import ClientStatement, SessionState
from turnout.proxy.statement import StatementInfo, first_word
from turnout.proxy.stats import command_name

# Module constants: compiled, a read of one is a C global, where Placement.X looks the member up.
_POOLED: Final = Placement.POOLED
_KEPT: Final = Placement.KEPT


class FastPath:
    __slots__ = (
        "_anywhere",
        "_backend_statement",
        "_command",
        "_command_name",
        "_connection",
        "_digest",
        "_framer",
        "_hostgroup",
        "_info",
        "_keep_columns",
        "_kept",
        "_on_backend_closed_cb",
        "_on_backend_data_cb",
        "_on_client_closed_cb",
        "_relayed",
        "_request",
        "_rule",
        "_started",
        "_statement",
        "_stripper",
        "state",
    )

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self._connection: BackendConnection | None = None
        self._backend_statement: BackendStatement | None = None
        self._statement: ClientStatement | None = None
        # A COM_STMT_EXECUTE on a connection with metadata caching: column definitions the server
        # sends are kept, to follow what the client and the server have cached.
        self._keep_columns = False
        self._framer: ResponseFramer | None = None
        self._stripper: SessionStateStripper | None = None
        self._command = 0
        self._command_name = ""
        self._digest = ""
        self._hostgroup = 0
        self._anywhere = False  # decisions.runs_anywhere for the statement in flight
        self._kept = False  # the connection is the one the session keeps (a transaction…)
        self._info = StatementInfo(is_write=False)
        self._rule = RuleOutcome()
        self._relayed = 0
        self._request = b""
        self._started = 0.0
        # Bound once: a bound method made per statement is an allocation per statement.
        self._on_backend_data_cb = self._on_backend_data
        self._on_backend_closed_cb = self._on_backend_closed
        self._on_client_closed_cb = self._on_client_closed

    # ---- the client's command -------------------------------------------------------------------
    def on_client_data(self, data: bytes) -> bool:
        """Relay `data` if it is one whole command the fast path can take; False leaves it to
        the session's coroutine, with nothing changed."""
        state = self.state
        if (
            self._connection is not None  # a pipelining client: its next command waits its turn
            or state.in_flight is not None
            or state.delay_multiplex
            or state.ended_reason is not None
            or state.replay_pending
            or state.killed
            or state.client.has_unread()
        ):
            return False
        size = len(data)
        if size < 5 or data[3] != 0:
            return False
        length = data[0] | data[1] << 8 | data[2] << 16
        if length + 4 != size or length == MAX_PAYLOAD or length > state.shared.max_allowed_packet:
            return False
        command = data[4]
        if command == c.COM_STMT_EXECUTE:
            return self._execute(data)
        if command == c.COM_QUERY:
            return self._query(data)
        return False

    def _execute(self, data: bytes) -> bool:
        state = self.state
        if len(data) < 9:
            return False
        statement = state.statements.get(int.from_bytes(data[5:9], "little"))
        if statement is None:
            return False
        connection = self._connection_for(statement.info, statement.rule, statement.anywhere)
        if connection is None:
            return False
        backend_statement = connection.statements.get(statement.sql)
        if backend_statement is None:
            return self._give_back(connection)
        if statement.num_params:
            # COM_STMT_EXECUTE: id(4) flags(1) iterations(4) null bitmap, then new_params_bound
            # and, when it is 1, the parameter types: what this backend statement must have.
            flag_at = 14 + (statement.num_params + 7) // 8
            if flag_at >= len(data):
                return self._give_back(connection)
            if data[flag_at] == 1:
                types = data[flag_at + 1 : flag_at + 1 + 2 * statement.num_params]
                statement.param_types = types
                backend_statement.bound_types = types
            elif data[flag_at] != 0 or backend_statement.bound_types is None or (
                backend_statement.bound_types != statement.param_types
            ):
                return self._give_back(connection)
        caching = connection.caches_metadata
        if caching and not backend_statement.cached_metadata_is(statement.metadata):
            return self._give_back(connection)  # the coroutine puts the server's definitions back in
        packet = data[:5] + backend_statement.statement_id.to_bytes(4, "little") + data[9:]
        state.begin_recording(data, statement.sql, statement, 4)
        self._start(connection, data, packet, statement.info, statement.rule, statement.digest_text, statement.command)
        self._anywhere = statement.anywhere
        self._backend_statement = backend_statement
        self._statement = statement
        self._keep_columns = caching
        return True

    def _query(self, data: bytes) -> bool:
        state = self.state
        sql = query_text(data[4:])
        info, digest, rule = state.classify(sql)
        if rule.error_msg is not None or rule.ok_msg is not None:
            return False  # the coroutine answers for the rule
        word = first_word(sql)
        if word == "LOAD" or word == "KILL":  # LOAD DATA LOCAL: the file comes mid-answer; KILL: proxy sessions
            return False
        anywhere = runs_anywhere(info, rule)
        connection = self._connection_for(info, rule, anywhere)
        if connection is None:
            return False
        state.begin_recording(data, sql, None, 4)
        self._start(connection, data, data, info, rule, digest, command_name(word, info.is_write))
        self._anywhere = anywhere
        if rule.matched:
            state.shared.stats.count_rule_hits(rule.matched)
        return True

    def _connection_for(self, info: StatementInfo, rule: RuleOutcome, anywhere: bool) -> BackendConnection | None:
        """Where `decisions.placement` runs the statement, when that is the kept connection or
        (for a statement that runs anywhere) an idle pooled one; None declines."""
        state = self.state
        kept = state.kept
        hostgroup = state.hostgroup_for(rule)
        where = Placement.POOLED
        if kept is not None:
            where = placement(
                kept, hostgroup, info.is_write, False,
                not kept.reasons and state.kept_moved(kept),
                kept.hostgroup in state.shared.reader_hostgroups, info.reads_diagnostics,
            )
            if where is Placement.LET_GO and kept.diagnostics_only:
                if not anywhere:
                    return None  # declined before anything changed
                # nothing of the session's on it: let it go as the coroutine would, and the
                # statement goes where placement(None, …) says (the same rule decides, only sooner)
                state.kept = None
                state.give_back(kept.connection, reusable=not kept.connection.broken)
                kept = None
        if kept is None:
            if not anywhere:
                return None
            only: tuple[ServerAddress, ...] = ()
            if state.shared.causal and not info.is_write:
                wanted = state.causal_wanted(hostgroup, rule)
                if wanted is not None:
                    # a read that must see earlier writes: here only on a replica known to have
                    # them (decisions.causal_route); one that waits, or goes to the writer, is
                    # the coroutine's
                    only = state.caught_up(hostgroup, wanted)
                    if not only:
                        return None
            # placement() never refuses a read: only writes ask it (the common case is a read).
            if info.is_write and placement(
                None, hostgroup, True, hostgroup in state.backends.routing.write_blocked, False, False, False
            ) is not _POOLED:
                return None  # two writers: the coroutine refuses it and says why
            self._kept = False
            self._hostgroup = hostgroup
            connection = self._take_connection(hostgroup, only)
            if only and connection is not None:
                state.shared.stats.counters.causal_reads_caught_up += 1
            return connection
        if where is not _KEPT or not kept.connection.idle_usable():
            return None  # closed, or sent something unasked: let the coroutine see
        self._kept = True
        self._hostgroup = kept.hostgroup
        return kept.connection

    def _take_connection(self, hostgroup: int, only: tuple[ServerAddress, ...] = ()) -> BackendConnection | None:
        state = self.state
        connection = state.take_idle(hostgroup, only)
        if connection is None:
            return None
        if connection.settings is not state.settings:
            if not same_settings(connection.settings, state.settings):
                self._give_back(connection)
                return None
            connection.settings = state.settings  # equal and immutable: next time `is` answers
        return connection

    def _give_back(self, connection: BackendConnection) -> bool:
        """Decline after all: a pooled connection goes back untouched; a kept one stays kept."""
        if not self._kept:
            self.state.give_back(connection, reusable=True)
        return False

    def _start(
        self, connection: BackendConnection, request: bytes, packet: bytes, info: StatementInfo,
        rule: RuleOutcome, digest: str, command_name: str,
    ) -> None:
        """Send `packet` (the client's `request`, addressed to this connection) to the server."""
        state = self.state
        self._request = request
        if not self._kept:
            state.in_flight = connection
        state.relaying = connection
        state.current_command = "Query"
        state.command_started = self._started = now = time.monotonic()
        state.arm_timeout(rule, now)
        self._connection = connection
        self._command = packet[4]
        self._info = info
        self._rule = rule
        self._digest = digest
        self._command_name = command_name
        self._framer = None
        self._backend_statement = None
        self._statement = None
        self._keep_columns = False
        self._relayed = 0
        client = state.client
        client.hold = True
        client.on_closed = self._on_client_closed_cb
        backend = connection.channel
        backend.on_data = self._on_backend_data_cb
        backend.on_closed = self._on_backend_closed_cb
        backend.write(packet)

    # ---- the server's answer ----------------------------------------------------------------------
    def _on_backend_data(self, data: bytes) -> bool:
        connection = self._connection
        assert connection is not None
        client = self.state.client
        framer = self._framer
        if framer is None and not self._relayed:
            if self._refused_as_read_only(data):
                self._hand_back()
                return True
            flags = whole_result_set(data, connection.deprecate_eof)
            strips = connection.session_state and not self.state.client_session_track
            # Definitions that follow are kept by the framer (with caching, the count packet is 2 bytes);
            # session state the client did not ask for is the stripper's.
            if (
                flags >= 0
                and not (self._keep_columns and data[0] == 2 and data[5] == 1)
                and not (strips and flags & c.SERVER_SESSION_STATE_CHANGED)
            ):
                client.write(data)
                recording = self.state.recording
                if recording is not None:
                    recording.feed(data)
                self._finish(WholeResultSet(flags))
                return True
            self._stripper = SessionStateStripper() if strips else None
            framer = self._framer = ResponseFramer(self._command, self._keep_columns, connection.deprecate_eof, strips)
        assert framer is not None
        try:
            used = framer.feed(data)
        except ProtocolError as exc:
            self._fail(f"Malformed communication packet from the backend: {exc}")
            return True
        if framer.local_infile:
            # Never expected for a read; the connection's state is not worth guessing.
            self._fail("The server asked for a LOCAL INFILE during a read")
            return True
        relayed = data if used == len(data) else data[:used]
        stripper = self._stripper
        if stripper is not None:
            relayed = stripper.relay(relayed, framer)
        if relayed:
            client.write(relayed)
            recording = self.state.recording
            if recording is not None:
                recording.feed(relayed)
            self._relayed += len(relayed)
        if framer.done:
            self.state.response_ended(connection, framer, used != len(data))
            self._finish(framer)
        elif client.write_buffer_size() > WRITE_BUFFER_HIGH:
            connection.channel.pause_reading()
            client.on_writable = self._client_caught_up
        return True

    def _refused_as_read_only(self, data: bytes) -> bool:
        """The answer is ERR 1290 (read_only) to a write the coroutine would retry: the writer
        turned read_only under it, so it did not run."""
        return (
            self._command == c.COM_QUERY
            and self._info.is_write
            and not self._kept
            and len(data) >= 7
            and data[4] == 0xFF
            and data[5] | data[6] << 8 == c.ER_OPTION_PREVENTS_STATEMENT
        )

    def _hand_back(self) -> None:
        """Give the command back to the session's coroutine, which waits for the new master."""
        connection = self._detach()
        state = self.state
        state.give_back(connection, reusable=True)
        state.current_command = ""
        state.client.unread(self._request)
        state.client.release_hold()

    def _client_caught_up(self) -> None:
        self.state.client.on_writable = None
        if self._connection is not None:
            self._connection.channel.resume_reading()

    def _finish(self, outcome: ResponseFramer | WholeResultSet) -> None:
        connection = self._detach()
        backend_statement = self._backend_statement
        if outcome.error is not None and backend_statement is not None:
            backend_statement.bound_types = None  # the server may not have taken the types
        statement = self._statement
        if isinstance(outcome, ResponseFramer) and statement is not None and backend_statement is not None:
            statement.after_result(backend_statement, outcome)
        state = self.state
        state.finished(
            connection, self._hostgroup, outcome, self._info, self._rule, self._anywhere, self._command_name,
            self._digest, int((time.monotonic() - self._started) * 1e6),
        )
        state.shared.stats.counters.statements_fast_path += 1
        state.current_command = ""
        state.client.release_hold()

    # ---- when something breaks ----------------------------------------------------------------------
    def _on_backend_closed(self) -> None:
        connection = self._detach()
        state = self.state
        statement = self._statement
        sql = statement.sql if statement is not None else query_text(self._request[4:])
        decided = state.lost(connection, self._relayed, self._info, self._anywhere, commits(first_word(sql)), True)
        if decided is AfterLoss.CLOSE_CLIENT:
            state.client.close()  # the client has part of an answer: only closing is honest
        elif decided is AfterLoss.RETRY or decided is AfterLoss.REPLAY:
            # A read nobody saw any of: the coroutine runs it again, waiting for a server; or a
            # statement of a lost transaction: the coroutine replays the transaction, then runs it.
            if decided is AfterLoss.REPLAY:
                state.replay_cause = LOST_SERVER
            state.client.unread(self._request)
        state.current_command = ""
        state.client.release_hold()

    def _on_client_closed(self) -> None:
        """The client left mid-answer: the rest of it is unread, so the connection is not reused."""
        connection = self._detach()
        self.state.forget(connection)
        self.state.client.release_hold()

    def _fail(self, message: str) -> None:
        connection = self._detach()
        state = self.state
        state.forget(connection)
        if not self._relayed:
            state.send_error(c.ER_MALFORMED_PACKET, message)
        state.client.close()
        state.client.release_hold()

    def _detach(self) -> BackendConnection:
        connection = self._connection
        assert connection is not None
        state = self.state
        state.deadline = 0.0
        state.idle_since = time.monotonic()
        state.relaying = None
        self._connection = None
        self._framer = None
        self._stripper = None
        backend = connection.channel
        backend.on_data = None
        backend.on_closed = None
        client = state.client
        client.on_closed = None
        if client.on_writable is not None:
            client.on_writable = None
            backend.resume_reading()
        return connection
