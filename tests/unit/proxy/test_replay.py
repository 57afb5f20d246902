"""Transaction replay's record: what cannot be replayed, the answers' checksums, the bounded log,
and after_loss's replay verdicts."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.config.model import RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.generic import build_eof, build_err, build_ok
from turnout.protocol.packets import encode_packet, write_lenenc_int
from turnout.protocol.resultset import ColumnDef, build_column_def
from turnout.proxy.decisions import AfterLoss, after_loss
from turnout.proxy.proxy import Proxy
from turnout.proxy.replay import (
    TOO_LARGE,
    UNREPRODUCIBLE,
    ResultDigest,
    TransactionLog,
    may_open_transaction,
    opens_transaction,
    unreproducible,
    unrestorable,
)
from turnout.proxy.settings import SessionSettings
from turnout.proxy.statement import Keep, first_word

IN_TRANS = c.SERVER_STATUS_IN_TRANS | c.SERVER_STATUS_AUTOCOMMIT


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (NOW())", "select now ()", "UPDATE t SET a = RAND()", "SELECT UUID()",
        "SELECT uuid_short()", "SELECT CONNECTION_ID()", "SELECT LAST_INSERT_ID()", "SELECT @@server_id",
        "SELECT @@SESSION.server_id", "SELECT @@hostname", "INSERT INTO t VALUES (CURRENT_TIMESTAMP)",
        "SELECT CURRENT_DATE", "SELECT SYSDATE()", "SELECT UNIX_TIMESTAMP()", "SELECT UTC_TIMESTAMP()",
        "SELECT GET_LOCK('a', 1)", "SELECT NEXTVAL(s)", "SELECT NEXT VALUE FOR s", "SELECT @@last_insert_id",
        "SELECT @@identity", "LOAD DATA LOCAL INFILE 'x' INTO TABLE t", "SELECT @@gtid_current_pos",
        "SELECT MASTER_GTID_WAIT('0-1-1')", "SELECT LOCALTIMESTAMP", "SELECT @@global.server_uuid",
    ],
)
def test_unreproducible_statements_say_why(sql: str) -> None:
    assert unreproducible(sql) is not None
    assert unreproducible(sql) == unreproducible(sql)  # cached, same answer


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT c FROM sbtest1 WHERE id = ?", "UPDATE sbtest1 SET k = k + 1 WHERE id = 5",
        "INSERT INTO t (a, b) VALUES (1, 'x')", "BEGIN", "SELECT SUM(k) FROM t WHERE id BETWEEN 1 AND 9",
        "SELECT nowhere FROM t", "SELECT randomly FROM t", "SELECT @server_id", "SELECT uuid_col FROM t",
        "DELETE FROM t WHERE created_now = 1", "SELECT 1",
    ],
)
def test_reproducible_statements(sql: str) -> None:
    assert unreproducible(sql) is None


def test_unrestorable_state() -> None:
    assert unrestorable(frozenset()) is None
    assert unrestorable(frozenset({Keep.TRANSACTION, Keep.RULE_NO_MULTIPLEX})) is None
    for reason in set(Keep) - {Keep.TRANSACTION, Keep.RULE_NO_MULTIPLEX}:
        why = unrestorable(frozenset({reason, Keep.TRANSACTION}))
        assert why is not None and str(reason) in why


def test_opens_transaction() -> None:
    assert opens_transaction("BEGIN", True) and opens_transaction("START", True)
    assert not opens_transaction("SELECT", True) and not opens_transaction("INSERT", True)
    assert opens_transaction("SELECT", False)


@pytest.mark.parametrize(
    "sql",
    ["BEGIN", "begin work", "START TRANSACTION", "start transaction read only", "SELECT 1", "select 1",
     "  BEGIN", "/* x */ BEGIN", "/* x */ SELECT 1", "BEGINNING", "STARTS", "STAR", "B", "S", "", "(SELECT 1)",
     "-- c\nSTART TRANSACTION", "UPDATE t SET a = 1", "SET autocommit = 0", "Begin;", "BEGIN\u00df", "beg\u0131n",
     "START1", "STARTED", "\u00e9BEGIN", "Start\ttransaction"],
)
def test_may_open_transaction_is_opens_transaction_of_the_first_word(sql: str) -> None:
    for autocommit in (True, False):
        assert may_open_transaction(sql, autocommit) is opens_transaction(first_word(sql), autocommit)


# ---- checksums ----------------------------------------------------------------------------------
def _packets(*payloads: bytes) -> bytes:
    return b"".join(encode_packet(payload, seq) for seq, payload in enumerate(payloads, 1))


def _result(rows: list[list[bytes]], metadata: bool = True, caching: bool = False, flags: int = IN_TRANS,
            warnings: int = 0, deprecate_eof: bool = False) -> bytes:
    columns = [build_column_def(ColumnDef(name=f"c{i}", table="t")) for i in range(len(rows[0]) if rows else 1)]
    count = write_lenenc_int(len(columns)) + ((b"\x01" if metadata else b"\x00") if caching else b"")
    payloads = [count, *(columns if metadata else [])]
    if not deprecate_eof:
        payloads.append(build_eof(0, flags))
    for row in rows:
        payloads.append(b"".join(write_lenenc_int(len(v)) + v for v in row))
    payloads.append(b"\xfe" + build_ok(0, 0, flags, warnings)[1:] if deprecate_eof else build_eof(warnings, flags))
    return _packets(*payloads)


def _digest(data: bytes, split: int | None = None) -> int:
    digest = ResultDigest()
    if split is None:
        digest.feed(data)
    else:
        for at in range(0, len(data), split):
            digest.feed(data[at : at + split])
    return digest.value


ROWS = [[b"1", b"alpha"], [b"2", b"beta" * 20], [b"3", b""]]


@given(st.integers(1, 40))
def test_digest_does_not_depend_on_how_the_bytes_arrive(split: int) -> None:
    for data in (_result(ROWS), _packets(build_ok(3, 7, IN_TRANS, 1, b"Rows matched: 3")),
                 _packets(build_err(1062, "Duplicate entry '1' for key 'PRIMARY'", "23000"))):
        assert _digest(data, split) == _digest(data)


LONG_ROWS = [[str(i).encode(), b"row %d " % i * 12] for i in range(300)]  # rows longer than an EOF, seq ids wrap


@given(st.integers(1, 5000))
def test_digest_of_many_rows_does_not_depend_on_their_split_or_sequence_ids(split: int) -> None:
    plain = _digest(_result(LONG_ROWS))
    assert plain == _digest(_result(LONG_ROWS), split)
    assert plain == _digest(_result(LONG_ROWS, caching=True, metadata=False), split)  # other sequence ids
    assert plain != _digest(_result([*LONG_ROWS[:150], [b"x", b"y" * 20], *LONG_ROWS[151:]]), split)


def test_digest_ignores_what_differs_between_servers_for_the_same_result() -> None:
    # status flags (OK and EOF), an OK's info, the column definitions and metadata caching
    assert _digest(_packets(build_ok(1, 0, IN_TRANS))) == _digest(
        _packets(build_ok(1, 0, IN_TRANS | c.SERVER_STATUS_NO_INDEX_USED, 0, b"info"))
    )
    plain = _digest(_result(ROWS))
    assert plain == _digest(_result(ROWS, flags=IN_TRANS | c.SERVER_STATUS_NO_INDEX_USED))
    assert plain == _digest(_result(ROWS, caching=True)) == _digest(_result(ROWS, metadata=False, caching=True))


@pytest.mark.parametrize("deprecate_eof", [False, True], ids=["classic", "deprecate-eof"])
def test_digest_of_either_framing(deprecate_eof: bool) -> None:
    plain = _digest(_result(ROWS, deprecate_eof=deprecate_eof))
    assert plain == _digest(_result(ROWS, caching=True, metadata=False, deprecate_eof=deprecate_eof), 5)
    assert plain == _digest(_result(ROWS, flags=IN_TRANS | c.SERVER_STATUS_NO_INDEX_USED, deprecate_eof=deprecate_eof))
    assert plain != _digest(_result(ROWS[:2], deprecate_eof=deprecate_eof))
    assert plain != _digest(_result(ROWS, warnings=2, deprecate_eof=deprecate_eof))
    assert plain != _digest(_result([[b"1", b"alpha"], [b"2", b"b"], [b"3", b""]], deprecate_eof=deprecate_eof))
    short = [[b"1"], [b"2"]]  # rows shorter than an EOF
    assert _digest(_result(short, deprecate_eof=deprecate_eof)) != _digest(_result([[b"1"], [b"3"]], deprecate_eof=deprecate_eof))
    assert _digest(_result(short, deprecate_eof=deprecate_eof)) == _digest(
        _result(short, caching=True, metadata=False, deprecate_eof=deprecate_eof), 1
    )


def test_digest_sees_every_difference_in_the_result() -> None:
    ok = _digest(_packets(build_ok(1, 0, IN_TRANS)))
    assert ok != _digest(_packets(build_ok(2, 0, IN_TRANS)))  # affected rows
    assert ok != _digest(_packets(build_ok(1, 5, IN_TRANS)))  # insert id
    assert ok != _digest(_packets(build_ok(1, 0, IN_TRANS, 1)))  # warnings
    assert ok != _digest(_packets(build_err(1213, "Deadlock found", "40001")))
    rows = _digest(_result(ROWS))
    assert rows != _digest(_result(ROWS[:2]))  # a row fewer
    assert rows != _digest(_result([ROWS[1], ROWS[0], ROWS[2]]))  # another order
    assert rows != _digest(_result([[b"1", b"alpha"], [b"2", b"gamma"], [b"3", b""]]))  # a value
    assert rows != _digest(_result(ROWS, warnings=1))
    assert rows != _digest(_result([[*row, b"x"] for row in ROWS]))  # a column more


def test_digest_of_several_results() -> None:
    more = IN_TRANS | c.SERVER_MORE_RESULTS_EXISTS
    first = _result([[b"1"]], flags=more)
    second_a = _packets(build_ok(1, 0, IN_TRANS))
    second_b = _packets(build_ok(2, 0, IN_TRANS))
    assert _digest(first + second_a) != _digest(first + second_b)
    assert _digest(first + second_a, 3) == _digest(first + second_a)



@pytest.mark.parametrize("deprecate_eof", [False, True], ids=["classic", "deprecate-eof"])
def test_digest_of_an_empty_result_keeps_its_warnings(deprecate_eof: bool) -> None:
    empty = _digest(_result([], deprecate_eof=deprecate_eof))
    assert empty == _digest(_result([], caching=True, metadata=False, deprecate_eof=deprecate_eof), 2)
    assert empty != _digest(_result([], warnings=1, deprecate_eof=deprecate_eof))
    assert empty != _digest(_result([[b"1"]], deprecate_eof=deprecate_eof))


def test_digest_leaves_out_the_eof_after_the_definitions() -> None:
    # a server that sends no EOF after definitions it left out gives the same checksum
    with_eof = _result(ROWS, caching=True, metadata=False)
    count = encode_packet(write_lenenc_int(2) + b"\x00", 1)
    assert with_eof.startswith(count)
    eof_len = len(encode_packet(build_eof(0, IN_TRANS), 2))
    assert _digest(with_eof) == _digest(count + with_eof[len(count) + eof_len :])


def test_digest_reads_a_row_longer_than_a_packet_as_one_row() -> None:
    # a row of 16 MiB - 1 bytes goes on in the next packet, whatever that one starts with
    head = write_lenenc_int(0xFFFFFF + 2) + b"a" * (0xFFFFFF - 9)
    rest_fe, rest_other = b"\xfe\x00\x00\x00\x00", b"\xfe\x00\x00\x02\x00"  # as EOFs, they differ in status only
    definitions = _packets(write_lenenc_int(1), build_column_def(ColumnDef(name="c", table="t")), build_eof(0, IN_TRANS))
    results = [definitions + b"\xff\xff\xff\x04" + head + encode_packet(rest, 5) + encode_packet(build_eof(0, IN_TRANS), 6)
               for rest in (rest_fe, rest_other)]
    assert _digest(results[0]) != _digest(results[1])
    assert _digest(results[0], 1 << 20) == _digest(results[0]) == _digest(results[0], 65536 + 7)
    assert _digest(results[0]) != _digest(_packets(write_lenenc_int(1), build_eof(0, IN_TRANS)))

# ---- the log ------------------------------------------------------------------------------------
def _run(log: TransactionLog, sql: str, answer: bytes, flags: int = IN_TRANS, error: bool = False) -> None:
    payload = b"\x03" + sql.encode()
    digest = log.start(payload, sql, 0, None)
    if digest is not None:
        digest.feed(answer)
    log.done(not error, flags)


def test_log_records_a_transaction_and_forgets_it_at_its_end() -> None:
    log = TransactionLog(1 << 20)
    log.open(SessionSettings(schema="test"), None)
    _run(log, "BEGIN", _packets(build_ok(0, 0, IN_TRANS)))
    _run(log, "UPDATE t SET a = 1", _packets(build_ok(1, 0, IN_TRANS)))
    _run(log, "INSERT INTO t VALUES (1)", _packets(build_err(1062, "Duplicate", "23000")), flags=0, error=True)
    assert log.active and [e.sql for e in log.entries] == ["BEGIN", "UPDATE t SET a = 1", "INSERT INTO t VALUES (1)"]
    assert log.entries[1].checksum == _digest(_packets(build_ok(1, 0, IN_TRANS)))
    assert log.entries[1].payload == b"\x03UPDATE t SET a = 1"
    _run(log, "COMMIT", _packets(build_ok(0, 0, c.SERVER_STATUS_AUTOCOMMIT)), flags=c.SERVER_STATUS_AUTOCOMMIT)
    assert not log.active and not log.entries and log.refused is None


def test_log_refuses_an_unreproducible_statement_until_the_end() -> None:
    log = TransactionLog(1 << 20)
    log.open(SessionSettings(), None)
    _run(log, "BEGIN", _packets(build_ok(0, 0, IN_TRANS)))
    _run(log, "INSERT INTO t VALUES (NOW())", _packets(build_ok(1, 0, IN_TRANS)))
    assert log.refused is not None and log.refused.startswith(UNREPRODUCIBLE) and "NOW()" in log.refused
    assert not log.entries
    _run(log, "SELECT 1", _packets(build_ok(0, 0, IN_TRANS)))
    assert not log.entries and log.active
    _run(log, "ROLLBACK", _packets(build_ok(0, 0, 2)), flags=2)
    assert not log.active and log.refused is None


def test_log_is_bounded() -> None:
    log = TransactionLog(1000)
    log.open(SessionSettings(), None)
    for i in range(100):
        _run(log, f"UPDATE t SET a = {i}", _packets(build_ok(1, 0, IN_TRANS)))
        if log.refused is not None:
            break
    assert log.refused is not None and log.refused.startswith(TOO_LARGE)
    assert not log.entries and log.size == 0


def test_log_opened_refused_keeps_its_reason() -> None:
    log = TransactionLog(1 << 20)
    log.open(SessionSettings(), "it may depend on session state kept on the lost connection (user variable)")
    _run(log, "BEGIN", _packets(build_ok(0, 0, IN_TRANS)))
    assert not log.entries and log.refused is not None and "user variable" in log.refused


# ---- after_loss with replay ----------------------------------------------------------------------
def test_after_loss_replays_only_an_open_transactions_statement_before_its_commit() -> None:
    for relayed, is_write, anywhere, in_tx, commits_, proxy_ended, may_retry, replay_on, refused in itertools.product(
        [0, 10], *[[False, True]] * 7, [None, "why"]
    ):
        decided = after_loss(relayed, is_write, anywhere, in_tx, commits_, in_tx, proxy_ended, may_retry,
                             replay_on, refused)
        without = after_loss(relayed, is_write, anywhere, in_tx, commits_, in_tx, proxy_ended, may_retry)
        if decided in (AfterLoss.REPLAY, AfterLoss.NOT_REPLAYED):
            assert not relayed and not proxy_ended and in_tx and replay_on and not commits_
            assert (decided is AfterLoss.REPLAY) == (refused is None)
            assert without is AfterLoss.LOST  # what the client heard before: rolled back
        else:
            assert decided is without
        if commits_ and is_write and in_tx and not relayed and not proxy_ended:
            assert decided is AfterLoss.UNKNOWN_OUTCOME  # a COMMIT in flight is never replayed


@pytest.mark.parametrize(
    ("setting", "managed", "on"),
    [
        (None, True, True), (None, False, False),
        ("auto", True, True), ("auto", False, False),
        ("false", True, False), ("true", False, True), ("ON", False, True), ("0", True, False),
    ],
)
def test_transaction_replay_is_on_by_default_in_managed_mode(setting: str | None, managed: bool, on: bool) -> None:
    variables = {} if setting is None else {"mysql-transaction_replay": setting}
    proxy = Proxy(RuntimeConfig(variables=variables), managed=managed)
    assert proxy.transaction_replay is on
