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
did not exist. Decisions about the session after the statement stay in the session
(`ClientSession.after_statement`), used by both. One thing is handed back after the fact: a
write the writer refused with read_only (a switchover) did not run, and the coroutine takes it
again to wait for the new master.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from turnout.protocol import constants as c
from turnout.protocol.commands import query_text
from turnout.protocol.packets import MAX_PAYLOAD, ProtocolError
from turnout.protocol.response import ResponseFramer, WholeResultSet, whole_result_set
from turnout.proxy.backend import (
    CONNECTION_ENDING_ERRORS,
    BackendConnection,
    BackendStatement,
)
from turnout.proxy.channel import WRITE_BUFFER_HIGH
from turnout.proxy.rules import RuleOutcome
from turnout.proxy.settings import same_settings
from turnout.proxy.statement import StatementInfo, first_word
from turnout.proxy.stats import command_name

if TYPE_CHECKING:
    from turnout.proxy.session import ClientSession, ClientStatement

# Server status flags after which a session keeps its connection (see after_statement).
_KEEPING_FLAGS = c.SERVER_STATUS_IN_TRANS | c.SERVER_STATUS_CURSOR_EXISTS


def stateless(info: StatementInfo, rule: RuleOutcome) -> bool:
    """A statement that changes nothing in the proxy's view of the session: it may run on any
    connection of its hostgroup (a read, a write in autocommit mode, BEGIN)."""
    return not (
        info.sets
        or info.names is not None
        or info.use_schema is not None
        or info.keeps_backend is not None
        or info.unlock_tables
        or info.reads_last_insert_id
        or info.calc_found_rows
        or info.reads_found_rows
        or info.releases
        or rule.multiplex == 0
        or rule.error_msg is not None
        or rule.ok_msg is not None
    )


class FastPath:
    __slots__ = (
        "_backend_statement",
        "_command",
        "_command_name",
        "_connection",
        "_digest",
        "_framer",
        "_held",
        "_hostgroup",
        "_info",
        "_keep_columns",
        "_on_backend_closed_cb",
        "_on_backend_data_cb",
        "_on_client_closed_cb",
        "_relayed",
        "_request",
        "_rule",
        "_started",
        "_statement",
        "session",
    )

    def __init__(self, session: ClientSession) -> None:
        self.session = session
        self._connection: BackendConnection | None = None
        self._backend_statement: BackendStatement | None = None
        self._statement: ClientStatement | None = None
        # A COM_STMT_EXECUTE on a connection with metadata caching: column definitions the server
        # sends are kept, to follow what the client and the server have cached.
        self._keep_columns = False
        self._framer: ResponseFramer | None = None
        self._command = 0
        self._command_name = ""
        self._digest = ""
        self._hostgroup = 0
        self._held = False  # the connection is the one the session holds (a transaction…)
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
        session = self.session
        if (
            self._connection is not None  # a pipelining client: its next command waits its turn
            or session.in_flight is not None
            or session.delay_multiplex
            or session.ended_reason is not None
            or session.client.has_unread()
        ):
            return False
        size = len(data)
        if size < 5 or data[3] != 0:
            return False
        length = data[0] | data[1] << 8 | data[2] << 16
        if length + 4 != size or length == MAX_PAYLOAD or length > session.proxy.max_allowed_packet:
            return False
        command = data[4]
        if command == c.COM_STMT_EXECUTE:
            return self._execute(data)
        if command == c.COM_QUERY:
            return self._query(data)
        return False

    def _execute(self, data: bytes) -> bool:
        session = self.session
        if len(data) < 9:
            return False
        statement = session.statements.get(int.from_bytes(data[5:9], "little"))
        if statement is None:
            return False
        connection = self._connection_for(statement.info, statement.rule, statement.stateless)
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
        self._start(connection, data, packet, statement.info, statement.rule, statement.digest_text, statement.command)
        self._backend_statement = backend_statement
        self._statement = statement
        self._keep_columns = caching
        return True

    def _query(self, data: bytes) -> bool:
        session = self.session
        sql = query_text(data[4:])
        info, digest, rule = session.classify(sql)
        word = first_word(sql)
        if word == "LOAD":  # LOAD DATA LOCAL INFILE: the file comes from the client, mid-answer
            return False
        connection = self._connection_for(info, rule, stateless(info, rule))
        if connection is None:
            return False
        self._start(connection, data, data, info, rule, digest, command_name(word, info.is_write))
        if rule.matched:
            session.proxy.stats.count_rule_hits(rule.matched)
        return True

    def _connection_for(self, info: StatementInfo, rule: RuleOutcome, anywhere: bool) -> BackendConnection | None:
        """The session's held connection, or an idle pooled one for a stateless statement; None
        declines."""
        held = self.session.held
        if held is None:
            self._held = False
            return self._take_connection(info, rule) if anywhere else None
        if (
            not held.reasons  # held only to delay multiplexing: the routing may move it
            or rule.error_msg is not None
            or rule.ok_msg is not None
            or (info.is_write and not held.wrote)  # maybe a read-only transaction on a reader
            or not held.connection.idle_usable()  # closed, or sent something unasked: let the coroutine see
        ):
            return None
        # Whatever the statement, it runs where the session's state is, and after_statement
        # decides from its answer what the session keeps: the same as the coroutine does.
        self._held = True
        self._hostgroup = held.hostgroup
        return held.connection

    def _take_connection(self, info: StatementInfo, rule: RuleOutcome) -> BackendConnection | None:
        session = self.session
        self._hostgroup = session.hostgroup_for(rule)
        if info.is_write and self._hostgroup in session.proxy.routing.write_blocked:
            return None  # two writers: the coroutine refuses it and says why
        connection = session.proxy.take_idle(self._hostgroup, session)
        if connection is None:
            return None
        if connection.settings is not session.settings:
            if not same_settings(connection.settings, session.settings):
                self._give_back(connection)
                return None
            connection.settings = session.settings  # equal and immutable: next time `is` answers
        return connection

    def _give_back(self, connection: BackendConnection) -> bool:
        """Decline after all: a pooled connection goes back untouched; a held one stays held."""
        if not self._held:
            self.session.proxy.pools.release(connection, reusable=True)
        return False

    def _start(
        self, connection: BackendConnection, request: bytes, packet: bytes, info: StatementInfo,
        rule: RuleOutcome, digest: str, command_name: str,
    ) -> None:
        """Send `packet` (the client's `request`, addressed to this connection) to the server."""
        session = self.session
        self._request = request
        if not self._held:
            session.in_flight = connection
        session.current_command = "Query"
        session.command_started = self._started = now = time.monotonic()
        session.arm_timeout(rule, now)
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
        client = session.client
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
        client = self.session.client
        framer = self._framer
        if framer is None and not self._relayed:
            if self._refused_as_read_only(data):
                self._hand_back()
                return True
            flags = whole_result_set(data)
            # Definitions that follow are kept by the framer (with caching, the count packet is 2 bytes).
            if flags >= 0 and not (self._keep_columns and data[0] == 2 and data[5] == 1):
                client.write(data)
                self._finish(WholeResultSet(flags))
                return True
            framer = self._framer = ResponseFramer(self._command, self._keep_columns)
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
        client.write(data if used == len(data) else data[:used])
        self._relayed += used
        if framer.done:
            if used != len(data):
                connection.broken = True  # the server sent more than one response: unknown state
            if framer.error is not None and framer.error.code in CONNECTION_ENDING_ERRORS:
                connection.broken = True
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
            and not self._held
            and len(data) >= 7
            and data[4] == 0xFF
            and data[5] | data[6] << 8 == c.ER_OPTION_PREVENTS_STATEMENT
        )

    def _hand_back(self) -> None:
        """Give the command back to the session's coroutine, which waits for the new master."""
        connection = self._detach()
        session = self.session
        session.release(connection, reusable=True)
        session.current_command = ""
        session.client.unread(self._request)
        session.client.release_hold()

    def _client_caught_up(self) -> None:
        session = self.session
        session.client.on_writable = None
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
        session = self.session
        ok = outcome.ok
        if self._held or outcome.status_flags & _KEEPING_FLAGS or (ok is not None and ok.last_insert_id):
            session.after_statement(connection, self._hostgroup, outcome, self._info, self._rule)
        else:
            # What after_statement decides for a stateless statement that opened nothing, in a session
            # that held nothing (the fast path's preconditions): the connection goes back.
            session.release(connection, reusable=not connection.broken)
        assert session.user is not None
        session.proxy.record(
            self._command_name,
            self._hostgroup,
            session.settings.schema or "",
            session.user.user.username,
            self._digest,
            int((time.monotonic() - self._started) * 1e6),
            outcome.ok.affected_rows if outcome.ok is not None else 0,
            connection.address,
            outcome.error,
        )
        session.proxy.stats.counters.statements_fast_path += 1
        session.current_command = ""
        session.client.release_hold()

    # ---- when something breaks ----------------------------------------------------------------------
    def _on_backend_closed(self) -> None:
        connection = self._detach()
        connection.broken = True
        session = self.session
        if not session.statement_lost(connection, self._relayed):
            session.client.close()  # the client has part of an answer: only closing is honest
        session.current_command = ""
        session.client.release_hold()

    def _on_client_closed(self) -> None:
        """The client left mid-answer: the rest of it is unread, so the connection is not reused."""
        connection = self._detach()
        connection.broken = True
        self._forget(connection)
        self.session.client.release_hold()

    def _fail(self, message: str) -> None:
        connection = self._detach()
        connection.broken = True
        session = self.session
        self._forget(connection)
        if not self._relayed:
            session.send_error(c.ER_MALFORMED_PACKET, message)
        session.client.close()
        session.client.release_hold()

    def _forget(self, connection: BackendConnection) -> None:
        """A connection in an unknown state: closed, whether pooled for this statement or held."""
        session = self.session
        if session.held is not None and session.held.connection is connection:
            session.held = None
        session.release(connection, reusable=False)

    @property
    def connection(self) -> BackendConnection | None:
        """The connection of the statement this fast path is relaying, if any."""
        return self._connection

    def _detach(self) -> BackendConnection:
        connection = self._connection
        assert connection is not None
        self.session.deadline = 0.0
        self._connection = None
        self._framer = None
        backend = connection.channel
        backend.on_data = None
        backend.on_closed = None
        client = self.session.client
        client.on_closed = None
        if client.on_writable is not None:
            client.on_writable = None
            backend.resume_reading()
        return connection
