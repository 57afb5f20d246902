"""The session's policy, as pure functions over plain data: one place for each decision.

The session's coroutine (session.py) and its fast path (fastpath.py) both call these; neither
decides anything of its own about where a statement runs, whether a session keeps its
connection, or whether a response leaves its connection unusable.

- `runs_anywhere`: may a statement run on any pooled connection, or only where the session is?
- `hostgroup_for`: which hostgroup a statement goes to (the server within it: hostgroups.py).
- `placement`: on which connection a statement runs, given what the session keeps.
- `retention`: whether the session keeps its connection after a result, and why (`Keep`).
- `keeps_diagnostics`: whether a result is one the next statement may ask about (SHOW WARNINGS…).
- `releases_at_once`: the fast path's shortcut for `retention` in the common case.
- `breaks_connection`: whether a response leaves its connection in an unknown state.
- `after_loss`: what becomes of a statement whose server failed under it (run again elsewhere,
  or which error the client hears).
- `idle_limit`: how long a session may sit idle before the proxy ends it (wait_timeout).
- `kill_verdict`: whether a client's KILL of a proxy session may act, else the server's error.
- `at_session_end`: what becomes of the connection a session keeps when the session ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from turnout.protocol import constants as c
from turnout.proxy.backend import BackendConnection, ServerAddress
from turnout.proxy.causal import Position, covers
from turnout.proxy.errors import CONNECTION_ENDING_ERRORS
from turnout.proxy.rules import RuleOutcome
from turnout.proxy.statement import Keep, StatementInfo

# Server status flags after which a session keeps its connection.
KEEPING_FLAGS = c.SERVER_STATUS_IN_TRANS | c.SERVER_STATUS_CURSOR_EXISTS
NO_REASONS: frozenset[Keep] = frozenset()


def runs_anywhere(info: StatementInfo, rule: RuleOutcome) -> bool:
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


def hostgroup_for(rule: RuleOutcome, default_hostgroup: int) -> int:
    """The rule's destination hostgroup, else the user's default one."""
    return rule.hostgroup if rule.hostgroup is not None else default_hostgroup


class Placement(Enum):
    """Where a statement runs."""

    KEPT = "the connection the session keeps"
    POOLED = "a pooled connection of its hostgroup"
    # Kept only to delay multiplexing, and the routing moved away from its server: nothing to
    # lose, so the connection goes back and the statement follows the routing.
    LET_GO = "let the kept connection go, then a pooled one"
    # autocommit=0 clients open a transaction with their first read; it ran on a reader and read
    # only, so ending it there loses nothing and the write goes to the writer.
    END_READER_TRANSACTION = "end the read-only transaction on the reader, then a pooled one"
    REFUSED_TWO_WRITERS = "refused: the hostgroup has two writers"


@dataclass(frozen=True, slots=True)
class Kept:
    """The backend connection a session keeps between statements, and why (`Keep`)."""

    connection: BackendConnection
    hostgroup: int
    reasons: frozenset[Keep] = NO_REASONS
    wrote: bool = False  # a write succeeded on it: no longer a read-only transaction
    # Kept for no reason but the next statement's diagnostics (`keeps_diagnostics`): a statement
    # that does not read them lets it go.
    diagnostics_only: bool = False


def placement(
    kept: Kept | None,
    hostgroup: int,
    is_write: bool,
    write_blocked: bool,
    kept_moved: bool,
    kept_on_reader: bool,
    reads_diagnostics: bool,
) -> Placement:
    """Where a statement for `hostgroup` runs. `write_blocked`: the hostgroup's writes are refused
    (two writers); `kept_moved`: the kept connection's server no longer takes its hostgroup's
    traffic (only asked when the session keeps it for no reason but delayed multiplexing);
    `kept_on_reader`: the kept connection's hostgroup is a reader hostgroup; `reads_diagnostics`:
    the statement reads the previous one's diagnostics (SHOW WARNINGS, ROW_COUNT()…).

    After LET_GO or END_READER_TRANSACTION the session keeps nothing, and `placement(None, …)`
    says where the statement goes then."""
    if kept is not None:
        reasons = kept.reasons
        if not reasons:
            if kept.diagnostics_only:
                # a statement that does not read them runs as if nothing were kept (it may be
                # retried elsewhere, a read goes to its readers); it usually takes the same
                # connection back from the pool, which prefers the session's previous one
                return Placement.KEPT if reads_diagnostics else Placement.LET_GO
            return Placement.LET_GO if kept_moved else Placement.KEPT
        if (
            reasons == _TRANSACTION_ONLY
            and is_write
            and not kept.wrote
            and hostgroup != kept.hostgroup
            and kept_on_reader
        ):
            return Placement.END_READER_TRANSACTION
        return Placement.KEPT
    return Placement.REFUSED_TWO_WRITERS if is_write and write_blocked else Placement.POOLED


_TRANSACTION_ONLY = frozenset({Keep.TRANSACTION})


@dataclass(frozen=True, slots=True)
class Retention:
    """What a session keeps after a statement's result."""

    reasons: frozenset[Keep]
    delay_multiplex: int  # statements to come that still stay on this connection
    wrote: bool
    diagnostics: bool = False  # kept for the next statement's diagnostics (`keeps_diagnostics`)

    @property
    def keeps(self) -> bool:
        return bool(self.reasons) or self.delay_multiplex > 0 or self.diagnostics

    @property
    def diagnostics_only(self) -> bool:
        return self.diagnostics and not self.reasons and self.delay_multiplex <= 0


def retention(
    kept: Kept | None,
    delay_multiplex: int,
    info: StatementInfo,
    rule: RuleOutcome,
    succeeded: bool,
    status_flags: int,
    last_insert_id: int,
    auto_increment_delay_multiplex: int,
    diagnostics: bool,
) -> Retention:
    """Whether the session keeps the statement's connection after its result, and why.

    `kept`: what it kept before the statement; `succeeded`: the result was not an error;
    `status_flags` and `last_insert_id`: from the result's final OK/EOF; `diagnostics`:
    `keeps_diagnostics` said so of the result (and its connection is not broken)."""
    reasons = set(kept.reasons) if kept is not None else set()
    reasons.discard(Keep.TRANSACTION)
    if succeeded:
        if info.keeps_backend is not None:
            reasons.add(info.keeps_backend)
        if info.unlock_tables:
            reasons.discard(Keep.TABLE_LOCK)
    if status_flags & c.SERVER_STATUS_IN_TRANS:
        reasons.add(Keep.TRANSACTION)
    elif kept is not None and Keep.TRANSACTION in kept.reasons:
        reasons.discard(Keep.NEXT_TRANSACTION)  # the transaction it was set for has ended
    if status_flags & c.SERVER_STATUS_CURSOR_EXISTS:
        reasons.add(Keep.OPEN_CURSOR)
    if last_insert_id:
        delay_multiplex = auto_increment_delay_multiplex
    elif info.calc_found_rows:
        delay_multiplex = max(delay_multiplex, 1)
    elif delay_multiplex:
        delay_multiplex -= 1
    if rule.multiplex == 0:
        reasons.add(Keep.RULE_NO_MULTIPLEX)
    wrote = (kept.wrote if kept is not None else False) or (info.is_write and succeeded)
    return Retention(frozenset(reasons), delay_multiplex, wrote, diagnostics)


def keeps_diagnostics(error: bool, ok: bool, warnings: int) -> bool:
    """Whether a result is one the session's next statement may ask about on its connection, so
    the connection stays with the session for that statement: an error (SHOW ERRORS,
    @@error_count), warnings (SHOW WARNINGS, @@warning_count), or an OK (ROW_COUNT(): the rows
    a write changed). Not a result set without warnings: what a pooled connection's last
    statement leaves (ROW_COUNT() -1, no warnings) is the same, whoever ran it — except
    FOUND_ROWS() of a SELECT without SQL_CALC_FOUND_ROWS (the README's known differences)."""
    return error or ok or warnings > 0


def releases_at_once(kept: bool, status_flags: int, last_insert_id: int, diagnostics: bool) -> bool:
    """`retention`'s answer without building it, for a statement that `runs_anywhere` in a
    session that kept nothing and delays no multiplexing (the fast path's pooled statements):
    the connection goes back unless the result opened a transaction or a cursor, made an
    auto-increment value to be read back, or has diagnostics to read (`keeps_diagnostics`)."""
    return not (kept or status_flags & KEEPING_FLAGS or last_insert_id or diagnostics)


def breaks_connection(error_code: int | None, surplus: bool) -> bool:
    """A complete response leaves its connection unusable when the server sent more than that one
    response (`surplus`: the connection is in no known state) or its error ends the connection
    (e.g. KILL: the server closes it next). A response that ends early always does."""
    return surplus or (error_code is not None and error_code in CONNECTION_ENDING_ERRORS)


class AfterLoss(Enum):
    """What becomes of a statement whose backend connection ended under it."""

    RETRY = "run it again on another connection: it was a read and nothing of it was seen"
    UNKNOWN_OUTCOME = "error 1927 saying the statement may or may not have been applied"
    LOST = "error 1927: the connection was lost (nothing was applied, or the cause says why)"
    CLOSE_CLIENT = "part of the answer reached the client: only closing its connection is honest"
    REPLAY = "replay the open transaction on the new master, then run the statement (transaction replay)"
    NOT_REPLAYED = "error 1213: the open transaction was rolled back and cannot be replayed (the reason)"


# Statements that end an open transaction by committing it (explicitly, or implicitly as DDL does).
COMMITTING_WORDS = frozenset({"COMMIT", "CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE"})


def commits(first_word: str) -> bool:
    """A statement (by its first word, upper case) that commits an open transaction."""
    return first_word in COMMITTING_WORDS


def after_loss(
    relayed: int,
    is_write: bool,
    anywhere: bool,
    in_transaction: bool,
    commits: bool,
    holds_session: bool,
    proxy_ended: bool,
    may_retry: bool,
    replay_on: bool = False,
    replay_refused: str | None = None,
) -> AfterLoss:
    """What the client gets when a statement's server fails under it (connection lost, server
    killed). `relayed`: bytes of its answer already sent to the client; `anywhere`:
    `runs_anywhere` (no effect on the session's state); `in_transaction`: the session's
    connection held an open transaction; `commits`: the statement commits one (COMMIT, DDL);
    `holds_session`: the session kept the connection for a reason its loss destroys (a
    transaction, a user variable, a lock…); `proxy_ended`: the proxy itself ended the statement
    (its timeout, a self-fencing cut), which has its own message; `may_retry`: attempts and time
    are left; `replay_on`: transaction replay records the session's transactions;
    `replay_refused`: why the open transaction's record cannot be replayed (None: it can).

    Only a read that changes nothing and whose answer nobody saw runs again: its result cannot
    differ from what the client would have got. A write in autocommit mode, or a COMMIT, may have
    been applied before the server died: that is said, never retried. A statement of an open
    transaction (not its COMMIT) is run again after the transaction is replayed, when it can be;
    else the client hears that the transaction was rolled back and why."""
    if relayed:
        return AfterLoss.CLOSE_CLIENT
    if proxy_ended:
        return AfterLoss.LOST
    if in_transaction and replay_on and not commits:
        return AfterLoss.REPLAY if replay_refused is None else AfterLoss.NOT_REPLAYED
    if is_write:
        return AfterLoss.UNKNOWN_OUTCOME if commits or not in_transaction else AfterLoss.LOST
    if anywhere and not holds_session and may_retry:
        return AfterLoss.RETRY
    return AfterLoss.LOST


def idle_limit(proxy_wait_timeout: float, session_wait_timeout: str | None) -> float:
    """Seconds a client session may sit idle between commands before the proxy closes it, as
    the server closes a connection idle past its wait_timeout: the client's own
    `SET wait_timeout` (as the session settings hold it: SQL text) when it set one, never more
    than the proxy's mysql-wait_timeout. A value the server would refuse leaves the proxy's."""
    if session_wait_timeout is None:
        return proxy_wait_timeout
    text = session_wait_timeout.strip("'\"")
    if not text.isdigit():
        return proxy_wait_timeout
    return min(proxy_wait_timeout, float(max(int(text), 1)))


def idle_too_long(busy: bool, idle_since: float, now: float, limit: float) -> bool:
    """A session past its `idle_limit`: no command in progress, and none for longer than `limit`."""
    return not busy and limit > 0 and now - idle_since > limit


class KillVerdict(Enum):
    """What a KILL of a proxy session (by the id its client got in the handshake) does."""

    ALLOWED = 0
    UNKNOWN_THREAD = 1094  # ER_NO_SUCH_THREAD: "Unknown thread id: N"
    NOT_OWNER = 1095  # ER_KILL_DENIED_ERROR: "You are not owner of thread N"


def kill_verdict(found: bool, same_user: bool, privileged: bool | None) -> KillVerdict:
    """As the server decides: an unknown id is 1094; a session of the same user may be killed;
    another user's only with the privilege (SUPER / CONNECTION ADMIN, as the server grants it to
    the killer: `privileged`, asked only when it matters, else None)."""
    if not found:
        return KillVerdict.UNKNOWN_THREAD
    if same_user or privileged:
        return KillVerdict.ALLOWED
    return KillVerdict.NOT_OWNER


class AtEnd(Enum):
    """What becomes of the connection a session kept, when the session ends."""

    POOL = "back to the pool as it is: it holds nothing of the session's"
    RESET = "reset on the server (COM_RESET_CONNECTION), then back to the pool"
    CLOSE = "closed"


# Kept for what COM_RESET_CONNECTION may not undo: a prepared XA transaction outlives it.
_NOT_RESETTABLE = frozenset({Keep.XA_TRANSACTION})


def at_session_end(reasons: frozenset[Keep], busy: bool, usable: bool) -> AtEnd:
    """The connection a session kept when it ends: `busy` (a command in flight: its answer may
    still be coming) or not `usable` (closed, or the server sent something unasked) closes it; one
    kept only to delay multiplexing or for diagnostics goes back as it is; state that lives on
    it (a transaction, user variables, temporary tables, locks, prepared statements…) is undone by
    COM_RESET_CONNECTION, so the connection is reused rather than closed and opened again."""
    if busy or not usable or reasons & _NOT_RESETTABLE:
        return AtEnd.CLOSE
    return AtEnd.RESET if reasons else AtEnd.POOL


# ---- causal reads -------------------------------------------------------------------------------
# mysql-causal_reads: which reads wait for writes made before them.
CAUSAL_USER = "user"  # as each user's causal_reads and each rule's gtid_from_hostgroup say
CAUSAL_SESSION = "session"  # every session reads its own writes
CAUSAL_GLOBAL = "global"  # every read sees every write this proxy acknowledged before it
CAUSAL_MODES = (CAUSAL_USER, CAUSAL_SESSION, CAUSAL_GLOBAL)
CAUSAL_OFF = "off"  # (a read's mode only) it waits for nothing


def causal_mode(proxy_mode: str, user_causal_reads: int, rule_gtid_from_hostgroup: int | None) -> str:
    """Which writes a read must see: CAUSAL_GLOBAL (every write the proxy acknowledged before it:
    mysql-causal_reads = global), CAUSAL_SESSION (its session's own: mysql-causal_reads =
    session, the user's causal_reads = 1, or its query rule's gtid_from_hostgroup, ProxySQL's
    column for the same), else CAUSAL_OFF."""
    if proxy_mode == CAUSAL_GLOBAL:
        return CAUSAL_GLOBAL
    if proxy_mode == CAUSAL_SESSION or user_causal_reads or rule_gtid_from_hostgroup is not None:
        return CAUSAL_SESSION
    return CAUSAL_OFF


class CausalRoute(Enum):
    """Where a read that must see earlier writes goes."""

    ANY = "nothing to wait for: where its routing says"
    CAUGHT_UP = "a replica the proxy already knows has applied the writes"
    WAIT = "a replica, after waiting there (bounded by mysql-causal_reads_timeout) for the writes"
    WRITER = "the writer of its replication pair, which has every write"


def causal_route(
    wanted: Position | None,
    candidates: Sequence[tuple[ServerAddress, Position | None]],
    timeout_ms: int,
) -> tuple[CausalRoute, tuple[ServerAddress, ...]]:
    """Where a read goes that must see the writes `wanted` (a position: the session's last
    writes, or the proxy's, as `causal_mode` says; None or empty when there were none), given the
    replicas that may serve it (the ONLINE servers of its reader hostgroup) and the position each
    is known to have applied (seen by the monitor, or by an earlier wait; None when unknown).

    A replica known to be past the writes serves it at once (CAUGHT_UP, with those replicas);
    otherwise it waits on one of them for the writes, up to `timeout_ms` (WAIT, with every
    candidate), and goes to the writer when that times out; with no candidate, or waiting off
    (`timeout_ms` 0), it goes to the writer at once."""
    if not wanted:
        return CausalRoute.ANY, ()
    caught_up = tuple(address for address, seen in candidates if seen is not None and covers(seen, wanted))
    if caught_up:
        return CausalRoute.CAUGHT_UP, caught_up
    if not candidates or timeout_ms <= 0:
        return CausalRoute.WRITER, ()
    return CausalRoute.WAIT, tuple(address for address, _ in candidates)
