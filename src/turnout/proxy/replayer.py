"""Transaction replay: a lost transaction's recorded statements run again on its hostgroup's
writer (the new master once it is published), each answer checked against the recorded one.

`replay` is called by the session's coroutine before it runs the command that found the
transaction lost (a statement whose server died under it, or the next command after a
switchover's drain ended the transaction). When every checksum matches, the session keeps the
new connection, inside the transaction, and the command runs there as if nothing happened. When
one differs, the new connection's transaction is rolled back (nothing of the replay is applied)
and the client hears error 1213 saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from enum import Enum

from turnout.protocol.commands import parse_stmt_execute
from turnout.protocol.constants import COM_STMT_EXECUTE, ER_OPTION_PREVENTS_STATEMENT
from turnout.protocol.generic import ErrPacket
from turnout.protocol.packets import ProtocolError, encode_packet
from turnout.protocol.response import ResponseFramer
from turnout.proxy.backend import BackendConnection, execute_payload
from turnout.proxy.decisions import Kept
from turnout.proxy.errors import ER_TRANSACTION_ENDED, BackendError, NoServer
from turnout.proxy.replay import ResultDigest, TransactionLog
from turnout.proxy.state import SessionState, not_replayed_message, replay_failed_message
from turnout.proxy.statement import Keep

logger = logging.getLogger("turnout.proxy")

READ_ONLY_WAIT = 1.0  # seconds an attempt refused by read_only waits before the next one


# A deadlock or a lock wait timeout during a replay (transactions replayed at once contend for
# the same rows) rolls the attempt back; the next one may succeed.
RETRIED_ERRORS = frozenset({1213, 1205})


class Attempt(Enum):
    DONE = 0
    MISMATCH = 1  # an answer differed: the transaction cannot be replayed
    LOST = 2  # the connection failed: another attempt may succeed
    FAILED = 3  # it cannot succeed (an error restoring the session, no server)


async def replay(state: SessionState, cause: str) -> bool:
    """Replay the session's recorded transaction; True when the session carries on (its kept
    connection is the replayed transaction's), else the client has heard error 1213 and why.
    `cause`: what ended the transaction (said in the error)."""
    state.replay_pending = False
    shared = state.shared
    counters = shared.stats.counters
    log = state.log
    if log is None or not log.active or log.refused is not None:
        refused = log.refused if log is not None else "transaction replay is off"
        state.count_refused(refused)
        state.forget_transaction()
        state.send_error(ER_TRANSACTION_ENDED, not_replayed_message(cause, refused))
        return False
    counters.transaction_replays += 1
    deadline = time.monotonic() + shared.transaction_replay_timeout
    reason = "no attempt was made (mysql-transaction_replay_attempts is 0)"
    outcome = Attempt.FAILED
    for _ in range(shared.transaction_replay_attempts):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            outcome = Attempt.FAILED
            reason = f"it did not succeed within mysql-transaction_replay_timeout ({shared.transaction_replay_timeout:g} s)"
            break
        connection: BackendConnection | None = None
        try:
            connection, outcome, reason = await asyncio.wait_for(_attempt(state, log), remaining)
        except TimeoutError:
            outcome = Attempt.FAILED
            reason = f"it did not succeed within mysql-transaction_replay_timeout ({shared.transaction_replay_timeout:g} s)"
        if outcome is not Attempt.LOST:
            if outcome is Attempt.DONE and connection is not None:
                connection.settings = state.settings  # the replayed SETs made it so
                state.kept = Kept(
                    connection, state.replay_hostgroup, state.replay_reasons | _TRANSACTION, wrote=True
                )
                if state.in_flight is connection:
                    state.in_flight = None
                counters.transaction_replays_succeeded += 1
                return True
            break
    if outcome is Attempt.MISMATCH:
        counters.transaction_replays_mismatched += 1
    else:
        counters.transaction_replays_failed += 1
    state.forget_transaction()
    logger.warning("session %d: transaction replay failed: %s", state.id, reason)
    state.send_error(ER_TRANSACTION_ENDED, replay_failed_message(cause, reason))
    return False


_TRANSACTION = frozenset({Keep.TRANSACTION})


async def _attempt(state: SessionState, log: TransactionLog) -> tuple[BackendConnection | None, Attempt, str]:
    """One replay on a fresh connection to the hostgroup's writer (waiting for one, as any
    statement does while the hostgroup is held or has no writer)."""
    try:
        connection = await state.backends.acquire(state.replay_hostgroup, state.login, state.reply_capabilities)
    except NoServer as none:  # none yet (a failover takes a while): another attempt may find one
        return None, Attempt.LOST, f"no server to replay it on: {none}"
    except BackendError as refused:
        return None, Attempt.LOST, f"no connection to replay it on: {refused}"
    state.in_flight = connection  # closed, not pooled, if the session ends meanwhile
    kept = False
    try:
        restore_error = await connection.apply_settings(log.settings)
        if restore_error is not None:
            return None, Attempt.FAILED, f"restoring the session's settings failed: {restore_error.message}"
        for number, entry in enumerate(log.entries, 1):
            payload = entry.payload
            if payload[0] == COM_STMT_EXECUTE:
                prepared = await connection.prepare(entry.sql)
                if isinstance(prepared, ErrPacket):
                    await _roll_back(connection)
                    return None, Attempt.MISMATCH, f"statement {number} could not be prepared again: {prepared.message}"
                execute = parse_stmt_execute(payload, entry.num_params) if entry.num_params else None
                payload = execute_payload(payload, execute, prepared, entry.param_types)
            checksum, code = await _answer(connection, payload)
            if checksum != entry.checksum:
                await _roll_back(connection)
                if code == ER_OPTION_PREVENTS_STATEMENT:
                    # read_only: the writer is not writable yet (a switchover, a server just
                    # started): try again once the hostgroup's writer has changed, or a moment later
                    await state.backends.writer_changed(
                        state.replay_hostgroup, connection.address, time.monotonic() + READ_ONLY_WAIT
                    )
                    return None, Attempt.LOST, "the writer refused it as read_only"
                if code in RETRIED_ERRORS:  # another replay (or client) took the rows first
                    return None, Attempt.LOST, f"statement {number} met a lock conflict (error {code})"
                return None, Attempt.MISMATCH, (
                    f"statement {number} of the transaction gave a different result on the new server "
                    f"({_shorten(entry.sql)})"
                )
        kept = True
        return connection, Attempt.DONE, ""
    except BackendError as lost:
        return None, Attempt.LOST, f"its server was lost during the replay: {lost}"
    except ProtocolError as bad:
        return None, Attempt.FAILED, f"an answer could not be read: {bad}"
    except ValueError as malformed:
        return None, Attempt.FAILED, f"a recorded statement could not be sent again: {malformed}"
    finally:
        if not kept:
            state.give_back(connection, reusable=False)


async def _answer(connection: BackendConnection, payload: bytes) -> tuple[int, int]:
    """Send one recorded command; the checksum of its answer (as `ResultDigest` computes it),
    and its error code (0: none)."""
    framer = ResponseFramer(payload[0], connection.caches_metadata, connection.deprecate_eof)
    digest = ResultDigest()
    channel = connection.channel
    channel.write(encode_packet(payload, 0))
    while not framer.done:
        try:
            data = await channel.read()
        except OSError as exc:
            connection.broken = True
            raise BackendError(str(exc)) from exc
        if not data:
            connection.broken = True
            raise BackendError(f"server {connection.address[0]}:{connection.address[1]} closed the connection")
        used = framer.feed(data)
        if framer.local_infile or used != len(data):
            connection.broken = True
            raise BackendError("unexpected data from the server")
        digest.feed(data)
    error = framer.error
    return digest.value, error.code if error is not None else 0


async def _roll_back(connection: BackendConnection) -> None:
    """Undo what the replay applied before its answers differed; the connection is closed after
    (closing alone would roll it back too, but only once the server notices)."""
    with contextlib.suppress(BackendError):
        await connection.query("ROLLBACK")


def _shorten(sql: str) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= 120 else text[:117] + "..."
