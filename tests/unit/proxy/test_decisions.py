"""The session's policy (proxy/decisions.py), exhaustively and by property."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol import constants as c
from turnout.proxy.backend import BackendConnection
from turnout.proxy.channel import Channel
from turnout.proxy.decisions import (
    AfterLoss,
    AtEnd,
    Kept,
    KillVerdict,
    Placement,
    after_loss,
    at_session_end,
    breaks_connection,
    commits,
    hostgroup_for,
    idle_limit,
    idle_too_long,
    keeps_diagnostics,
    kill_verdict,
    placement,
    releases_at_once,
    retention,
    runs_anywhere,
)
from turnout.proxy.errors import CONNECTION_ENDING_ERRORS
from turnout.proxy.rules import RuleOutcome
from turnout.proxy.settings import SessionSettings
from turnout.proxy.statement import Keep, KillRequest, StatementInfo, analyze, first_word, parse_kill

CONNECTION = BackendConnection(("10.0.0.1", 3306), "app", 0, Channel(), 1, SessionSettings())

# What statement analysis can say a statement keeps (the others come from results and commands).
STATEMENT_REASONS = sorted(set(Keep) - {Keep.TRANSACTION, Keep.OPEN_CURSOR, Keep.LONG_DATA, Keep.RULE_NO_MULTIPLEX})
reasons = st.frozensets(st.sampled_from(list(Keep)), max_size=4)
kept = st.one_of(
    st.none(),
    st.builds(Kept, st.just(CONNECTION), st.sampled_from([10, 20]), reasons, st.booleans(), st.booleans()),
)
infos = st.one_of(
    st.sampled_from(["SELECT 1", "INSERT INTO t VALUES (1)", "BEGIN", "SET @a = 1", "LOCK TABLES t READ",
                     "UNLOCK TABLES", "SELECT SQL_CALC_FOUND_ROWS * FROM t", "SET TRANSACTION READ ONLY",
                     "SET sql_mode = 'ANSI'", "USE db", "SELECT LAST_INSERT_ID()", "CREATE TEMPORARY TABLE t (a INT)"]).map(analyze),
    st.builds(StatementInfo, st.booleans(), keeps_backend=st.one_of(st.none(), st.sampled_from(STATEMENT_REASONS)),
              unlock_tables=st.booleans(), calc_found_rows=st.booleans()),
)
rules = st.builds(RuleOutcome, multiplex=st.sampled_from([None, 0, 1, 2]), hostgroup=st.sampled_from([None, 10, 20]))
flags = st.sampled_from([0, c.SERVER_STATUS_AUTOCOMMIT, c.SERVER_STATUS_IN_TRANS, c.SERVER_STATUS_CURSOR_EXISTS,
                         c.SERVER_STATUS_IN_TRANS | c.SERVER_STATUS_CURSOR_EXISTS])


@given(kept, st.integers(0, 5), infos, rules, st.booleans(), flags, st.integers(0, 3), st.integers(0, 5), st.booleans())
def test_retention(
    before: Kept | None, delay: int, info: StatementInfo, rule: RuleOutcome, succeeded: bool, status: int,
    last_id: int, auto_increment_delay: int, diagnostics: bool,
) -> None:
    decided = retention(before, delay, info, rule, succeeded, status, last_id, auto_increment_delay, diagnostics)
    assert decided.keeps == (bool(decided.reasons) or decided.delay_multiplex > 0 or diagnostics)
    # held for diagnostics alone: for the next statement only, whatever was held before
    assert decided.diagnostics_only == (diagnostics and not decided.reasons and not decided.delay_multiplex)
    assert (Keep.TRANSACTION in decided.reasons) == bool(status & c.SERVER_STATUS_IN_TRANS)
    if status & c.SERVER_STATUS_CURSOR_EXISTS:
        assert Keep.OPEN_CURSOR in decided.reasons
    if rule.multiplex == 0:
        assert Keep.RULE_NO_MULTIPLEX in decided.reasons
    # the transaction a SET TRANSACTION inside it was for has ended: nothing left to keep for
    spent = info.keeps_backend is Keep.NEXT_TRANSACTION and before is not None and (
        Keep.TRANSACTION in before.reasons and not status & c.SERVER_STATUS_IN_TRANS
    )
    if info.keeps_backend is not None and succeeded and not info.unlock_tables and not spent:
        assert info.keeps_backend in decided.reasons
    previous = before.reasons if before is not None else frozenset()
    # Only a transaction's end, UNLOCK TABLES and the end of the transaction a SET TRANSACTION
    # was for take a reason away.
    assert previous - decided.reasons <= {Keep.TRANSACTION, Keep.TABLE_LOCK, Keep.NEXT_TRANSACTION}
    if not succeeded:
        assert decided.reasons - previous <= {Keep.TRANSACTION, Keep.OPEN_CURSOR, Keep.RULE_NO_MULTIPLEX}
    assert decided.wrote == ((before is not None and before.wrote) or (info.is_write and succeeded))
    if last_id:
        assert decided.delay_multiplex == auto_increment_delay


@given(infos, rules, flags, st.integers(0, 3), st.booleans(), st.booleans())
def test_the_fast_paths_shortcut_is_retention(
    info: StatementInfo, rule: RuleOutcome, status: int, last_id: int, succeeded: bool, diagnostics: bool
) -> None:
    """For what the fast path runs on a pooled connection (a statement that runs anywhere, in a
    session that keeps nothing and delays no multiplexing), `releases_at_once` is `retention`."""
    if not runs_anywhere(info, rule):
        return
    decided = retention(None, 0, info, rule, succeeded, status, last_id, 5, diagnostics)
    assert releases_at_once(False, status, last_id, diagnostics) == (not decided.keeps)


def test_keeps_diagnostics_exhaustively() -> None:
    """Errors, warnings and OKs (ROW_COUNT()) are asked about on their connection; a result set
    without warnings leaves a connection as any other does."""
    for error, ok, warnings in itertools.product([False, True], [False, True], [0, 1, 65535]):
        assert keeps_diagnostics(error, ok, warnings) == (error or ok or warnings > 0)


@given(kept, st.sampled_from([10, 20]), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_placement(
    before: Kept | None, hostgroup: int, is_write: bool, blocked: bool, moved: bool, on_reader: bool, reads: bool
) -> None:
    where = placement(before, hostgroup, is_write, blocked, moved, on_reader, reads)
    if before is None:
        assert where is (Placement.REFUSED_TWO_WRITERS if is_write and blocked else Placement.POOLED)
        return
    assert where in (Placement.KEPT, Placement.LET_GO, Placement.END_READER_TRANSACTION)
    if before.reasons - {Keep.TRANSACTION}:
        assert where is Placement.KEPT  # state that lives on the connection never moves
    if not before.reasons and before.diagnostics_only:
        # the next statement reads the diagnostics where they are, else goes where it is routed
        assert (where is Placement.KEPT) == reads
    if where is Placement.LET_GO:
        assert not before.reasons and (moved or before.diagnostics_only)
    if where is Placement.END_READER_TRANSACTION:
        assert before.reasons == {Keep.TRANSACTION} and is_write and not before.wrote and on_reader
        assert hostgroup != before.hostgroup


def test_idle_limit_is_the_clients_wait_timeout_within_the_proxys() -> None:
    assert idle_limit(28800.0, None) == 28800.0
    assert idle_limit(28800.0, "1") == 1.0
    assert idle_limit(28800.0, "'5'") == 5.0
    assert idle_limit(10.0, "31536000") == 10.0  # never past mysql-wait_timeout
    assert idle_limit(28800.0, "0") == 1.0  # the server's minimum
    for unknown in ("DEFAULT", "@@global.wait_timeout", "(1)", "-3", ""):
        assert idle_limit(28800.0, unknown) == 28800.0, unknown


@given(st.booleans(), st.floats(0, 100), st.floats(0, 100), st.floats(0, 50))
def test_idle_too_long(busy: bool, idle_since: float, now: float, limit: float) -> None:
    assert idle_too_long(busy, idle_since, now, limit) == (not busy and limit > 0 and now - idle_since > limit)
    if busy:  # a command in progress is never cut by wait_timeout (its statement timeout is another matter)
        assert not idle_too_long(busy, idle_since, now, limit)


def test_kill_verdict_exhaustively() -> None:
    """The server's rules: an unknown id first (1094), then ownership or the privilege (1095)."""
    for found, same_user, privileged in itertools.product([False, True], [False, True], [None, False, True]):
        verdict = kill_verdict(found, same_user, privileged)
        if not found:
            assert verdict is KillVerdict.UNKNOWN_THREAD
        elif same_user or privileged:
            assert verdict is KillVerdict.ALLOWED
        else:
            assert verdict is KillVerdict.NOT_OWNER
    assert KillVerdict.UNKNOWN_THREAD.value == 1094 and KillVerdict.NOT_OWNER.value == 1095


def test_parse_kill() -> None:
    assert parse_kill("KILL 12") == KillRequest(12, query_only=False)
    assert parse_kill("kill connection 12;") == KillRequest(12, query_only=False)
    assert parse_kill("/* x */ KILL QUERY 7") == KillRequest(7, query_only=True)
    assert parse_kill("KILL HARD QUERY 7") == KillRequest(7, query_only=True)
    assert parse_kill("KILL SOFT CONNECTION 3") == KillRequest(3, query_only=False)
    for other in ("KILL USER app", "KILL QUERY ID 5", "KILL", "KILL 1, 2", "KILL CONNECTION x", "SELECT 'KILL 1'"):
        assert parse_kill(other) is None, other


@given(reasons, st.booleans(), st.booleans())
def test_at_session_end(kept_for: frozenset[Keep], busy: bool, usable: bool) -> None:
    """A connection with an answer possibly on its way, or in no known state, is closed; one
    that holds nothing goes back as it is; state on it is reset, but a prepared XA transaction."""
    fate = at_session_end(kept_for, busy, usable)
    if busy or not usable or Keep.XA_TRANSACTION in kept_for:
        assert fate is AtEnd.CLOSE
    else:
        assert fate is (AtEnd.RESET if kept_for else AtEnd.POOL)


def test_runs_anywhere_only_without_session_effects() -> None:
    assert runs_anywhere(analyze("SELECT 1"), RuleOutcome())
    assert runs_anywhere(analyze("BEGIN"), RuleOutcome())
    assert runs_anywhere(analyze("INSERT INTO t VALUES (1)"), RuleOutcome())
    for sql in ["SET @a = 1", "SET NAMES utf8mb4", "USE db", "LOCK TABLES t READ", "UNLOCK TABLES",
                "SELECT LAST_INSERT_ID()", "SELECT SQL_CALC_FOUND_ROWS * FROM t", "SELECT FOUND_ROWS()"]:
        assert not runs_anywhere(analyze(sql), RuleOutcome()), sql
    for rule in [RuleOutcome(multiplex=0), RuleOutcome(error_msg="no"), RuleOutcome(ok_msg="yes")]:
        assert not runs_anywhere(analyze("SELECT 1"), rule)


def test_hostgroup_for() -> None:
    assert hostgroup_for(RuleOutcome(hostgroup=20), 10) == 20
    assert hostgroup_for(RuleOutcome(), 10) == 10


def test_breaks_connection_exhaustively() -> None:
    for code, surplus in itertools.product([None, 1064, 1290, 2013, *CONNECTION_ENDING_ERRORS], [False, True]):
        assert breaks_connection(code, surplus) == (surplus or code in CONNECTION_ENDING_ERRORS)


def test_after_loss_exhaustively() -> None:
    """Every combination: only a read that changes nothing, outside what the session holds, of
    which nothing was relayed, runs again; a write outside a transaction, or a commit, has an
    unknown outcome; nothing else is ever retried."""
    for relayed, is_write, anywhere, in_tx, commits_, holds, proxy_ended, may_retry in itertools.product(
        [0, 1, 4096], *[[False, True]] * 7
    ):
        if in_tx and not holds:
            continue  # a transaction is something the session holds
        decided = after_loss(relayed, is_write, anywhere, in_tx, commits_, holds, proxy_ended, may_retry)
        if relayed:
            assert decided is AfterLoss.CLOSE_CLIENT
        elif proxy_ended:
            assert decided is AfterLoss.LOST
        elif decided is AfterLoss.RETRY:
            assert not is_write and anywhere and not holds and may_retry
        elif decided is AfterLoss.UNKNOWN_OUTCOME:
            assert is_write and (commits_ or not in_tx)
        else:
            assert decided is AfterLoss.LOST
            assert not (not is_write and anywhere and not holds and may_retry)
            assert not (is_write and (commits_ or not in_tx))


@given(st.sampled_from(["SELECT SLEEP(1)", "SELECT 1 FOR UPDATE", "INSERT INTO t VALUES (1)", "COMMIT",
                        "SELECT @a", "SET @a = 1", "SELECT LAST_INSERT_ID()", "CREATE TABLE t (a INT)",
                        "ROLLBACK", "UPDATE t SET a = 1", "SHOW TABLES", "SELECT GET_LOCK('x', 1)"]),
       kept, rules, st.integers(0, 3), st.booleans())
def test_after_loss_of_real_statements(sql: str, before: Kept | None, rule: RuleOutcome, relayed: int,
                                       may_retry: bool) -> None:
    """A retried statement is always one the fast path could run on any connection, and a write
    or a commit is never retried."""
    info = analyze(sql)
    anywhere = runs_anywhere(info, rule)
    holds = before is not None and bool(before.reasons)
    in_tx = before is not None and Keep.TRANSACTION in before.reasons
    decided = after_loss(relayed, info.is_write, anywhere, in_tx, commits(first_word(sql)), holds, False, may_retry)
    if decided is AfterLoss.RETRY:
        assert anywhere and not info.is_write and not relayed and not holds
    if info.is_write and not relayed and not in_tx:
        assert decided is AfterLoss.UNKNOWN_OUTCOME
    if sql == "COMMIT" and not relayed:
        assert decided is AfterLoss.UNKNOWN_OUTCOME
    if sql == "ROLLBACK" and in_tx and not relayed:
        assert decided is AfterLoss.LOST
