"""ResponseFramer against hand-built responses of every kind, fed in every chunking."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.constants import (
    COM_FIELD_LIST,
    COM_INIT_DB,
    COM_PING,
    COM_QUERY,
    COM_QUIT,
    COM_RESET_CONNECTION,
    COM_SET_OPTION,
    COM_STATISTICS,
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_RESET,
    COM_STMT_SEND_LONG_DATA,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_CURSOR_EXISTS,
    SERVER_STATUS_IN_TRANS,
    SERVER_STATUS_LAST_ROW_SENT,
)
from turnout.protocol.generic import build_eof, build_err, build_ok
from turnout.protocol.packets import MAX_PAYLOAD, MalformedPacket, ProtocolError, encode_packet, header
from turnout.protocol.prepared import PrepareOk, build_prepare_ok
from turnout.protocol.response import ResponseFramer, expects_response, is_progress_report, whole_result_set
from turnout.protocol.resultset import ColumnDef, build_column_def, encode_value
from unit.protocol.framing import frame

AC = SERVER_STATUS_AUTOCOMMIT
MORE = SERVER_MORE_RESULTS_EXISTS
NEXT = encode_packet(b"\x03SELECT 'next command'", 0)


def defs(n: int) -> list[bytes]:
    return [build_column_def(ColumnDef(f"c{i}")) for i in range(n)]


def text_row(*values: object) -> bytes:
    return b"".join(encode_value(v) for v in values)


def result_set(rows: list[bytes], width: int = 2, status: int = AC) -> list[bytes]:
    return [bytes((width,)), *defs(width), build_eof(0, AC), *rows, build_eof(0, status)]


def ok_eof(status: int = AC, warnings: int = 0, tail: bytes = b"") -> bytes:
    """What ends a list with CLIENT_DEPRECATE_EOF: an OK packet with the EOF's header."""
    return b"\xfe" + build_ok(0, 0, status, warnings)[1:] + tail


def deprecated_result_set(rows: list[bytes], width: int = 2, status: int = AC) -> list[bytes]:
    return [bytes((width,)), *defs(width), *rows, ok_eof(status)]


def progress(stage: int = 1, done: int = 12345, info: bytes = b"copy to tmp table") -> bytes:
    """A MariaDB progress report: ERR header, code 0xFFFF, then stage, of stages, progress."""
    return b"\xff\xff\xff\x01" + bytes((stage, 2)) + done.to_bytes(3, "little") + bytes((len(info),)) + info


@dataclass(frozen=True)
class Case:
    name: str
    command: int
    payloads: list[bytes]
    status: int = AC
    result_sets: int = 0
    error: int | None = None
    ok_rows: int | None = None
    prepare: PrepareOk | None = None
    deprecate_eof: bool = False


TEXT_ROWS = [
    text_row("", "b"),  # starts with 0x00, still a row
    text_row(None, "x"),  # starts with 0xFB
    text_row("y" * 300, None),  # starts with 0xFC
    b"\xfe" + bytes(8),  # 0xFE but 9 bytes long: a row, not an EOF
    text_row("\xff", ""),
]
# With CLIENT_DEPRECATE_EOF a short packet starting with 0xFE always ends the rows (a row never
# starts with 0xFE below 16 MiB; only a hand-made one does).
OK_EOF_TEXT_ROWS = [row for row in TEXT_ROWS if row[0] != 0xFE]
BINARY_ROWS = [b"\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", b"\x00\x0c" + b"\xfe" * 8, b"\x00\x04"]

CASES = [
    Case("ok", COM_QUERY, [build_ok(3, 7, AC | SERVER_STATUS_IN_TRANS)], AC | SERVER_STATUS_IN_TRANS, ok_rows=3),
    Case("err", COM_QUERY, [build_err(1146, "no table", "42S02")], 0, error=1146),
    Case("text", COM_QUERY, result_set(TEXT_ROWS), result_sets=1),
    Case("empty set", COM_QUERY, result_set([]), result_sets=1),
    Case("err mid rows", COM_QUERY, [*result_set(TEXT_ROWS)[:-1], build_err(1317, "interrupted")], AC, error=1317),
    Case("err in defs", COM_QUERY, [b"\x03", *defs(1), build_err(1105, "boom")], 0, error=1105),
    Case(
        "multi",
        COM_QUERY,
        result_set(TEXT_ROWS, status=AC | MORE) + result_set(TEXT_ROWS[:1], status=AC | MORE) + [build_ok(1)],
        result_sets=2,
        ok_rows=1,
    ),
    Case("ok then set", COM_QUERY, [build_ok(0, 0, AC | MORE), *result_set(TEXT_ROWS)], result_sets=1, ok_rows=0),
    Case("multi err", COM_QUERY, [build_ok(0, 0, AC | MORE), build_err(1064, "syntax")], AC, error=1064, ok_rows=0),
    Case("binary", COM_STMT_EXECUTE, result_set(BINARY_ROWS, width=3), result_sets=1),
    Case(
        "binary procedure",
        COM_STMT_EXECUTE,
        [*result_set(BINARY_ROWS, width=3, status=AC | MORE), build_ok(0, 0, AC)],
        result_sets=1,
        ok_rows=0,
    ),
    Case(
        "cursor",
        COM_STMT_EXECUTE,
        [b"\x02", *defs(2), build_eof(0, AC | SERVER_STATUS_CURSOR_EXISTS)],
        AC | SERVER_STATUS_CURSOR_EXISTS,
        result_sets=1,
    ),
    Case("execute ok", COM_STMT_EXECUTE, [build_ok(2)], ok_rows=2),
    # Metadata caching (MARIADB_CLIENT_CACHE_METADATA): the column count carries one more byte.
    Case("text, caching", COM_QUERY, [b"\x02\x01", *result_set(TEXT_ROWS)[1:]], result_sets=1),
    Case("binary, definitions sent", COM_STMT_EXECUTE, [b"\x03\x01", *result_set(BINARY_ROWS, 3)[1:]], result_sets=1),
    Case(
        "binary, definitions left out",
        COM_STMT_EXECUTE,
        [b"\x03\x00", build_eof(0, AC), *BINARY_ROWS, build_eof(0, AC)],
        result_sets=1,
    ),
    Case(
        "procedure, definitions left out",
        COM_STMT_EXECUTE,
        [b"\x03\x00", build_eof(0, AC), *BINARY_ROWS, build_eof(0, AC | MORE), build_ok(0, 0, AC)],
        result_sets=1,
        ok_rows=0,
    ),
    Case(
        "cursor, definitions left out",
        COM_STMT_EXECUTE,
        [b"\x02\x00", build_eof(0, AC | SERVER_STATUS_CURSOR_EXISTS)],
        AC | SERVER_STATUS_CURSOR_EXISTS,
        result_sets=1,
    ),
    Case(
        "fetch",
        COM_STMT_FETCH,
        [*BINARY_ROWS, build_eof(0, AC | SERVER_STATUS_CURSOR_EXISTS | SERVER_STATUS_LAST_ROW_SENT)],
        AC | SERVER_STATUS_CURSOR_EXISTS | SERVER_STATUS_LAST_ROW_SENT,
        result_sets=1,
    ),
    Case("fetch err", COM_STMT_FETCH, [build_err(1243, "unknown stmt")], 0, error=1243),
    Case(
        "prepare both",
        COM_STMT_PREPARE,
        [build_prepare_ok(PrepareOk(9, 2, 3, 0)), *defs(3), build_eof(), *defs(2), build_eof()],
        prepare=PrepareOk(9, 2, 3, 0),
    ),
    Case(
        "prepare params",
        COM_STMT_PREPARE,
        [build_prepare_ok(PrepareOk(1, 0, 2, 1)), *defs(2), build_eof()],
        prepare=PrepareOk(1, 0, 2, 1),
    ),
    Case(
        "prepare columns",
        COM_STMT_PREPARE,
        [build_prepare_ok(PrepareOk(2, 1, 0, 0)), *defs(1), build_eof()],
        prepare=PrepareOk(2, 1, 0, 0),
    ),
    Case("prepare none", COM_STMT_PREPARE, [build_prepare_ok(PrepareOk(3, 0, 0, 0))], 0, prepare=PrepareOk(3, 0, 0, 0)),
    Case("prepare err", COM_STMT_PREPARE, [build_err(1064, "syntax")], 0, error=1064),
    Case("field list", COM_FIELD_LIST, [*defs(4), build_eof()]),
    Case("field list err", COM_FIELD_LIST, [build_err(1146, "no table")], 0, error=1146),
    Case("statistics", COM_STATISTICS, [b"Uptime: 5  Threads: 1  Questions: 2"], 0),
    Case("ping", COM_PING, [build_ok()], ok_rows=0),
    Case("init db err", COM_INIT_DB, [build_err(1049, "Unknown database")], 0, error=1049),
    Case("set option", COM_SET_OPTION, [build_eof()]),
    Case("stmt reset", COM_STMT_RESET, [build_ok()], ok_rows=0),
    Case("reset connection", COM_RESET_CONNECTION, [build_ok()], ok_rows=0),
    # MariaDB's progress reports come before the answer, and between the results of a multi-statement.
    Case("progress then ok", COM_QUERY, [progress(1), progress(2, 0), build_ok(5)], ok_rows=5),
    Case("progress then err", COM_QUERY, [progress(), build_err(1317, "interrupted")], 0, error=1317),
    Case(
        "progress between results",
        COM_QUERY,
        [*result_set(TEXT_ROWS, status=AC | MORE), progress(), build_ok(2)],
        result_sets=1,
        ok_rows=2,
    ),
]

SESSION_STATE = b"\x00\x06\x01\x04\x03drv"  # empty info, then SESSION_TRACK_SCHEMA "drv"

# CLIENT_DEPRECATE_EOF: no EOF after definitions; an OK with header 0xFE ends rows and lists.
DEPRECATED_CASES = [
    Case("ok", COM_QUERY, [build_ok(3, 7, AC | SERVER_STATUS_IN_TRANS)], AC | SERVER_STATUS_IN_TRANS, ok_rows=3),
    Case("err", COM_QUERY, [build_err(1146, "no table", "42S02")], 0, error=1146),
    Case("text", COM_QUERY, deprecated_result_set(OK_EOF_TEXT_ROWS), result_sets=1),
    Case("empty set", COM_QUERY, deprecated_result_set([]), result_sets=1),
    Case(
        "tracked end",
        COM_QUERY,
        [*deprecated_result_set(OK_EOF_TEXT_ROWS)[:-1], ok_eof(AC | SERVER_SESSION_STATE_CHANGED, 0, SESSION_STATE)],
        AC | SERVER_SESSION_STATE_CHANGED,
        result_sets=1,
    ),
    # (no EOF after the definitions: no status known before the ERR, which carries none)
    Case("err mid rows", COM_QUERY, [*deprecated_result_set(OK_EOF_TEXT_ROWS)[:-1], build_err(1317, "stop")], 0, error=1317),
    Case(
        "multi",
        COM_QUERY,
        deprecated_result_set(OK_EOF_TEXT_ROWS, status=AC | MORE) + deprecated_result_set([], status=AC | MORE) + [build_ok(1)],
        result_sets=2,
        ok_rows=1,
    ),
    Case("binary", COM_STMT_EXECUTE, deprecated_result_set(BINARY_ROWS, width=3), result_sets=1),
    Case(
        "cursor",
        COM_STMT_EXECUTE,
        [b"\x02", *defs(2), ok_eof(AC | SERVER_STATUS_CURSOR_EXISTS)],
        AC | SERVER_STATUS_CURSOR_EXISTS,
        result_sets=1,
    ),
    Case("text, caching", COM_QUERY, [b"\x02\x01", *deprecated_result_set(OK_EOF_TEXT_ROWS)[1:]], result_sets=1),
    Case(
        "binary, definitions left out",
        COM_STMT_EXECUTE,
        [b"\x03\x00", *BINARY_ROWS, ok_eof(AC)],
        result_sets=1,
    ),
    Case(
        "cursor, definitions left out",
        COM_STMT_EXECUTE,
        [b"\x02\x00", ok_eof(AC | SERVER_STATUS_CURSOR_EXISTS)],
        AC | SERVER_STATUS_CURSOR_EXISTS,
        result_sets=1,
    ),
    Case(
        "fetch",
        COM_STMT_FETCH,
        [*BINARY_ROWS, ok_eof(AC | SERVER_STATUS_CURSOR_EXISTS | SERVER_STATUS_LAST_ROW_SENT)],
        AC | SERVER_STATUS_CURSOR_EXISTS | SERVER_STATUS_LAST_ROW_SENT,
        result_sets=1,
    ),
    Case(
        "prepare both",
        COM_STMT_PREPARE,
        [build_prepare_ok(PrepareOk(9, 2, 3, 0)), *defs(3), *defs(2)],
        0,
        prepare=PrepareOk(9, 2, 3, 0),
    ),
    Case("prepare params", COM_STMT_PREPARE, [build_prepare_ok(PrepareOk(1, 0, 2, 1)), *defs(2)], 0,
         prepare=PrepareOk(1, 0, 2, 1)),
    Case("prepare columns", COM_STMT_PREPARE, [build_prepare_ok(PrepareOk(2, 1, 0, 0)), *defs(1)], 0,
         prepare=PrepareOk(2, 1, 0, 0)),
    Case("field list", COM_FIELD_LIST, [*defs(4), ok_eof(AC)]),
    Case("set option", COM_SET_OPTION, [ok_eof(AC)]),
    Case("progress then set", COM_QUERY, [progress(), *deprecated_result_set(OK_EOF_TEXT_ROWS)], result_sets=1),
]
for _case in DEPRECATED_CASES:
    object.__setattr__(_case, "deprecate_eof", True)
ALL_CASES = CASES + DEPRECATED_CASES


def case_id(case: Case) -> str:
    return case.name + (", deprecate-EOF" if case.deprecate_eof else "")


def feed_in_chunks(framer: ResponseFramer, data: bytes, cuts: list[int]) -> int:
    """Feed data cut at `cuts`; the number of bytes the framer took before it was done."""
    consumed = 0
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        chunk = data[last:cut]
        if not chunk:
            continue
        n = framer.feed(memoryview(chunk) if cut % 2 else chunk)
        assert 0 <= n <= len(chunk)
        consumed += n
        if framer.done:
            return consumed
        assert n == len(chunk), "a framer that is not done takes every byte"
        last = cut
    return consumed


def check(case: Case, cuts: list[int], track_state_oks: bool = False) -> None:
    response = frame(case.payloads)
    framer = ResponseFramer(case.command, deprecate_eof=case.deprecate_eof, track_state_oks=track_state_oks)
    assert feed_in_chunks(framer, response + NEXT, cuts) == len(response)
    assert framer.done and not framer.local_infile
    assert framer.boundary == len(response)  # the end of the last whole packet: the response's end
    if track_state_oks and case.status & SERVER_SESSION_STATE_CHANGED:  # its last OK carries some
        assert framer.state_oks == [(len(response) - 4 - len(case.payloads[-1]), len(response))]
    else:
        assert framer.state_oks == []
    assert framer.status_flags == case.status
    assert framer.result_sets == case.result_sets
    assert (framer.error.code if framer.error else None) == case.error
    assert (framer.ok.affected_rows if framer.ok else None) == case.ok_rows
    assert framer.prepare == case.prepare
    assert framer.last_seq == len(case.payloads)
    assert framer.feed(NEXT) == 0


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_whole_and_byte_by_byte(case: Case) -> None:
    check(case, [])
    check(case, list(range(len(frame(case.payloads)) + len(NEXT))))


@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
@given(data=st.data())
def test_random_chunkings(case: Case, data: st.DataObject) -> None:
    total = len(frame(case.payloads)) + len(NEXT)
    check(case, data.draw(st.lists(st.integers(1, total - 1), max_size=30)), data.draw(st.booleans()))


def test_multi_piece_rows_are_not_misread() -> None:
    # A row of MAX_PAYLOAD + 5 bytes whose continuation piece looks like an EOF (0xFE, short),
    # and a row of exactly MAX_PAYLOAD bytes, followed by its empty trailing piece.
    long_row = b"\x00" + bytes(MAX_PAYLOAD - 1) + b"\xfe\x00\x00\x02\x00"
    exact_row = b"\x00" + b"\xff" * (MAX_PAYLOAD - 1)
    payloads = result_set([long_row, exact_row, text_row("a", "b")])
    response = frame(payloads)
    for cuts in ([], list(range(0, len(response), 4_000_000)), [5, 6, 7, MAX_PAYLOAD + 40, MAX_PAYLOAD + 41]):
        framer = ResponseFramer(COM_STMT_EXECUTE)
        assert feed_in_chunks(framer, response + NEXT, cuts) == len(response)
        assert framer.result_sets == 1 and framer.error is None
        assert framer.last_seq == len(payloads) + 2  # two extra continuation pieces


def test_local_infile_pauses_and_resumes() -> None:
    request = encode_packet(b"\xfbrows.txt", 1)
    framer = ResponseFramer(COM_QUERY)
    assert framer.feed(request + b"junk") == len(request)
    assert framer.local_infile and not framer.done
    assert framer.feed(b"junk") == 0
    framer.resume_after_infile()
    ok = encode_packet(build_ok(3), 4)
    assert framer.feed(ok + NEXT) == len(ok)
    assert framer.done and framer.ok is not None and framer.ok.affected_rows == 3
    with pytest.raises(MalformedPacket):
        framer.resume_after_infile()


def test_out_of_order_sequence_is_refused() -> None:
    framer = ResponseFramer(COM_QUERY)
    data = encode_packet(b"\x01", 1) + encode_packet(defs(1)[0], 3)
    with pytest.raises(MalformedPacket):
        framer.feed(data)


def test_premature_eof_in_definitions() -> None:
    framer = ResponseFramer(COM_QUERY)
    with pytest.raises(MalformedPacket):
        framer.feed(frame([b"\x02", *defs(1), build_eof()]))


def test_expects_response() -> None:
    assert not any(map(expects_response, (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT)))
    assert all(map(expects_response, (COM_QUERY, COM_PING, COM_STMT_EXECUTE, COM_FIELD_LIST)))


@pytest.mark.parametrize("command", [COM_QUERY, COM_STMT_EXECUTE, COM_STMT_PREPARE, COM_FIELD_LIST, COM_STMT_FETCH])
@given(data=st.binary(max_size=600), deprecate_eof=st.booleans())
def test_arbitrary_bytes_only_raise_protocol_errors(command: int, data: bytes, deprecate_eof: bool) -> None:
    framer = ResponseFramer(command, deprecate_eof=deprecate_eof)
    with contextlib.suppress(ProtocolError):
        n = framer.feed(data)
        assert n == len(data) or framer.done or framer.local_infile


def test_header_only_chunks() -> None:
    framer = ResponseFramer(COM_PING)
    ok = build_ok()
    assert framer.feed(header(len(ok), 1)[:2]) == 2
    assert framer.feed(header(len(ok), 1)[2:]) == 2
    assert not framer.done
    assert framer.feed(ok) == len(ok) and framer.done


# ---- whole_result_set: the fast scan must agree with the framer whenever it answers ----------
@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_whole_result_set_agrees_with_the_framer(case: Case) -> None:
    data = frame(case.payloads)
    flags = whole_result_set(data, case.deprecate_eof)
    if case.command not in (COM_QUERY, COM_STMT_EXECUTE):
        return  # only answers to these reach the scan
    framer = ResponseFramer(case.command, deprecate_eof=case.deprecate_eof)
    used = framer.feed(data)
    simple = case.result_sets == 1 and case.error is None and case.ok_rows is None and not (
        case.status & SERVER_STATUS_CURSOR_EXISTS
    ) and not is_progress_report(case.payloads[0])
    assert (flags >= 0) == simple
    if flags >= 0:
        assert framer.done and used == len(data) and flags == framer.status_flags
    # no prefix of a response, and no response with more after it, passes as whole
    for cut in range(len(data)):
        assert whole_result_set(data[:cut], case.deprecate_eof) == -1
    assert whole_result_set(data + NEXT, case.deprecate_eof) == -1
    # nor is one flavour's result set taken for a whole one of the other
    assert whole_result_set(data, not case.deprecate_eof) == -1


@given(
    width=st.integers(1, 250),
    rows=st.lists(st.sampled_from(TEXT_ROWS + BINARY_ROWS), max_size=6),
    status=st.integers(0, 0xFFFF),
    tail=st.binary(max_size=12),
    deprecate_eof=st.booleans(),
    tracked=st.booleans(),
)
def test_whole_result_set_on_generated_result_sets(
    width: int, rows: list[bytes], status: int, tail: bytes, deprecate_eof: bool, tracked: bool
) -> None:
    if deprecate_eof:
        rows = [row for row in rows if row[0] != 0xFE]
        payloads = deprecated_result_set(rows, width=width, status=status)
        if tracked:  # session tracking's info after the OK's fields
            payloads[-1] = ok_eof(status, 0, SESSION_STATE)
    else:
        payloads = result_set(rows, width=width, status=status)
    data = frame(payloads)
    flags = whole_result_set(data, deprecate_eof)
    if status & (MORE | SERVER_STATUS_CURSOR_EXISTS):
        assert flags == -1
    else:
        framer = ResponseFramer(COM_QUERY, deprecate_eof=deprecate_eof)
        assert framer.feed(data) == len(data) and framer.done
        assert flags == framer.status_flags == status
    # extra bytes after a result set are never taken for part of it
    if tail:
        extended = whole_result_set(data + tail, deprecate_eof)
        if extended >= 0:
            framer = ResponseFramer(COM_QUERY, deprecate_eof=deprecate_eof)
            assert framer.feed(data + tail) == len(data + tail) and framer.done


@given(data=st.binary(max_size=400), deprecate_eof=st.booleans())
def test_whole_result_set_on_arbitrary_bytes(data: bytes, deprecate_eof: bool) -> None:
    flags = whole_result_set(data, deprecate_eof)
    if flags >= 0:
        framer = ResponseFramer(COM_QUERY, deprecate_eof=deprecate_eof)
        assert framer.feed(data) == len(data) and framer.done and framer.status_flags == flags


# ---- metadata caching: definitions kept for the proxy's bookkeeping ---------------------------
def test_kept_definitions_of_an_execute_and_a_prepare() -> None:
    sent = [b"\x02\x01", *defs(2), build_eof(0, AC), *BINARY_ROWS, build_eof(0, AC)]
    framer = ResponseFramer(COM_STMT_EXECUTE, keep_columns=True)
    assert framer.feed(frame(sent)) == len(frame(sent))
    assert framer.columns == defs(2) and not framer.metadata_omitted

    left_out = [b"\x02\x00", build_eof(0, AC), *BINARY_ROWS, build_eof(0, AC)]
    for cuts in ([], list(range(len(frame(left_out))))):
        framer = ResponseFramer(COM_STMT_EXECUTE, keep_columns=True)
        assert feed_in_chunks(framer, frame(left_out), cuts) == len(frame(left_out))
        assert framer.columns is None and framer.metadata_omitted

    prepare = [build_prepare_ok(PrepareOk(9, 2, 3, 0)), *defs(3), build_eof(), *defs(2), build_eof()]
    for cuts in ([], list(range(len(frame(prepare))))):
        framer = ResponseFramer(COM_STMT_PREPARE, keep_columns=True)
        assert feed_in_chunks(framer, frame(prepare), cuts) == len(frame(prepare))
        assert framer.columns == defs(2)  # the result's columns, not the parameters

    without = ResponseFramer(COM_STMT_EXECUTE)
    without.feed(frame(sent))
    assert without.done and without.columns is None  # kept only when asked


def test_only_the_first_result_sets_definitions_are_kept() -> None:
    payloads = [b"\x01\x01", *defs(1), build_eof(0, AC), build_eof(0, AC | MORE), b"\x02\x01", *defs(2)]
    payloads += [build_eof(0, AC), build_eof(0, AC)]
    framer = ResponseFramer(COM_STMT_EXECUTE, keep_columns=True)
    assert framer.feed(frame(payloads)) == len(frame(payloads))
    assert framer.result_sets == 2 and framer.columns == defs(1)


@pytest.mark.parametrize("count_packet", [b"\x02\x02", b"\x02\x01\x00"])
def test_a_bad_metadata_byte_is_refused(count_packet: bytes) -> None:
    with pytest.raises(MalformedPacket):
        ResponseFramer(COM_STMT_EXECUTE).feed(frame([count_packet, build_eof(0, AC)]))


@pytest.mark.parametrize("command", [COM_QUERY, COM_STMT_PREPARE])
def test_an_empty_column_definition_is_refused_when_definitions_are_kept(command: int) -> None:
    """Found by bench/fuzz.py: an empty packet where a kept definition belongs was indexed
    (IndexError, a session ending in a traceback) instead of refused."""
    first = b"\x01" if command == COM_QUERY else build_prepare_ok(PrepareOk(1, 1, 0, 0))
    framer = ResponseFramer(command, keep_columns=True)
    with pytest.raises(MalformedPacket, match="empty packet"):
        framer.feed(frame([first, b"", build_eof()]))


# ---- warnings: the count of the response's last OK or EOF ---------------------------------------
@given(warnings=st.integers(0, 0xFFFF), rows=st.lists(st.sampled_from(TEXT_ROWS), max_size=3))
def test_the_framer_reports_the_last_warning_count(warnings: int, rows: list[bytes]) -> None:
    """SHOW WARNINGS must run where a statement with warnings ran: the session reads the count
    from the framer; the fast whole-result scan takes only results without warnings."""
    data = frame([bytes((2,)), *defs(2), build_eof(0, AC), *rows, build_eof(warnings, AC)])
    framer = ResponseFramer(COM_QUERY)
    assert framer.feed(data) == len(data) and framer.done and framer.warnings == warnings
    assert whole_result_set(data) == (AC if warnings == 0 else -1)
    ok = frame([build_ok(3, 0, AC, warnings)])
    framer = ResponseFramer(COM_QUERY)
    assert framer.feed(ok) == len(ok) and framer.done and framer.warnings == warnings


def test_progress_reports_are_told_apart() -> None:
    assert is_progress_report(progress()) and is_progress_report(b"\xff\xff\xff")
    assert not is_progress_report(build_err(1317, "interrupted")) and not is_progress_report(b"\xff\xff")
    framer = ResponseFramer(COM_QUERY)
    assert framer.feed(frame([progress()])) == len(frame([progress()]))
    assert not framer.done and framer.error is None


def test_kept_definitions_with_deprecate_eof() -> None:
    sent = [b"\x02\x01", *defs(2), *BINARY_ROWS, ok_eof(AC)]
    framer = ResponseFramer(COM_STMT_EXECUTE, keep_columns=True, deprecate_eof=True)
    assert framer.feed(frame(sent)) == len(frame(sent))
    assert framer.columns == defs(2) and not framer.metadata_omitted
    prepare = [build_prepare_ok(PrepareOk(9, 2, 3, 0)), *defs(3), *defs(2)]
    for cuts in ([], list(range(len(frame(prepare))))):
        framer = ResponseFramer(COM_STMT_PREPARE, keep_columns=True, deprecate_eof=True)
        assert feed_in_chunks(framer, frame(prepare) + NEXT, cuts) == len(frame(prepare))
        assert framer.columns == defs(2)
