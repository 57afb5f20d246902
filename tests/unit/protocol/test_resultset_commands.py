from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.commands import (
    StmtExecute,
    build_field_list,
    build_init_db,
    build_query,
    build_set_option,
    build_stmt_close,
    build_stmt_execute,
    build_stmt_fetch,
    build_stmt_reset,
    command_of,
    parse_field_list,
    parse_init_db,
    parse_set_option,
    parse_stmt_execute,
    query_text,
    stmt_id_of,
    with_stmt_id,
)
from turnout.protocol.constants import (
    COM_QUERY,
    COM_STMT_EXECUTE,
    MYSQL_OPTION_MULTI_STATEMENTS_OFF,
    MYSQL_TYPE_LONG,
    SERVER_STATUS_IN_TRANS,
)
from turnout.protocol.generic import build_err, is_eof, parse_eof
from turnout.protocol.packets import MalformedPacket, PacketBuffer, ProtocolError, encode_packet
from turnout.protocol.resultset import (
    ColumnDef,
    ResultSetError,
    build_column_def,
    build_text_resultset,
    parse_column_def,
    parse_text_resultset,
)


def payloads(wire: bytes) -> list[tuple[int, bytes]]:
    buf = PacketBuffer()
    buf.feed(wire)
    out = []
    while (p := buf.next_packet()) is not None:
        out.append((p.seq, p.payload))
    assert len(buf) == 0
    return out


def test_text_resultset_round_trip() -> None:
    cols = ["a", ColumnDef("b", type=MYSQL_TYPE_LONG, schema="s", table="t")]
    rows = [
        (None, 1),
        (b"raw\x00", -5),
        ("ü", True),
        (Decimal("1.10"), 2.5),
        ("x" * 300, False),
    ]
    wire = build_text_resultset(cols, rows, seq=3, status_flags=SERVER_STATUS_IN_TRANS)
    packets = payloads(wire)
    assert [s for s, _ in packets] == list(range(3, 3 + len(packets)))
    names, got = parse_text_resultset([p for _, p in packets])
    assert names == ["a", "b"]
    assert got == [
        (None, b"1"),
        (b"raw\x00", b"-5"),
        ("ü".encode(), b"1"),
        (b"1.10", b"2.5"),
        (b"x" * 300, b"0"),
    ]
    assert is_eof(packets[-1][1]) and parse_eof(packets[-1][1]).status_flags == SERVER_STATUS_IN_TRANS


def test_empty_resultset_and_width_mismatch() -> None:
    assert parse_text_resultset([p for _, p in payloads(build_text_resultset(["x"], []))]) == (["x"], [])
    with pytest.raises(ValueError):
        build_text_resultset(["x", "y"], [(1,)])


def test_column_def_round_trip() -> None:
    col = ColumnDef("name", MYSQL_TYPE_LONG, 63, 11, 0x21, 0, "db", "tbl")
    assert parse_column_def(build_column_def(col)) == col


def test_resultset_errors() -> None:
    with pytest.raises(ResultSetError) as info:
        parse_text_resultset([build_err(1146, "no such table", "42S02")])
    assert info.value.err.code == 1146
    with pytest.raises(MalformedPacket):
        parse_text_resultset([p for _, p in payloads(build_text_resultset(["x"], [(1,)]))][:-1])


def test_query_and_simple_commands() -> None:
    q = build_query("SELECT 'é'")
    assert command_of(q) == COM_QUERY and query_text(q) == "SELECT 'é'"
    assert query_text(b"\x03\xff") == "\udcff"
    assert parse_init_db(build_init_db("shop")) == "shop"
    assert parse_set_option(build_set_option(MYSQL_OPTION_MULTI_STATEMENTS_OFF)) == 1
    assert parse_field_list(build_field_list("t", "c%")) == ("t", "c%")
    assert parse_field_list(b"\x04t") == ("t", "")
    with pytest.raises(MalformedPacket):
        command_of(b"")
    with pytest.raises(MalformedPacket):
        parse_init_db(q)


@pytest.mark.parametrize("build", [build_stmt_close, build_stmt_reset, lambda i: build_stmt_fetch(i, 10)])
def test_statement_ids_are_rewritten(build: object) -> None:
    payload = build(7)  # type: ignore[operator]
    assert stmt_id_of(payload) == 7
    rewritten = with_stmt_id(payload, 0xDEADBEEF)
    assert stmt_id_of(rewritten) == 0xDEADBEEF
    assert rewritten[0] == payload[0] and rewritten[5:] == payload[5:]
    with pytest.raises(MalformedPacket):
        stmt_id_of(build_query("x"))


def test_stmt_execute_round_trip_and_rebinding() -> None:
    types = bytes((MYSQL_TYPE_LONG, 0)) * 2
    values = (5).to_bytes(4, "little")
    first = StmtExecute(3, 0, 1, b"\x02", True, types, values)
    payload = build_stmt_execute(first)
    assert parse_stmt_execute(payload, 2) == first
    # A later execution that relies on the types bound earlier:
    later = build_stmt_execute(StmtExecute(3, 0, 1, b"\x00", False, None, values + values))
    parsed = parse_stmt_execute(later, 2)
    assert parsed.new_params_bound is False and parsed.param_types is None
    # Re-prepared on another backend: send the types again under the new statement id.
    rebound = StmtExecute(9, parsed.flags, parsed.iteration_count, parsed.null_bitmap, True, types, parsed.values)
    again = parse_stmt_execute(build_stmt_execute(rebound), 2)
    assert again == rebound and stmt_id_of(build_stmt_execute(rebound)) == 9
    no_params = build_stmt_execute(StmtExecute(4, 0, 1, b"", False, None, b""))
    assert no_params == bytes((COM_STMT_EXECUTE,)) + b"\x04\x00\x00\x00\x00\x01\x00\x00\x00"
    assert parse_stmt_execute(no_params, 0).stmt_id == 4
    with pytest.raises(MalformedPacket):
        parse_stmt_execute(payload[:12], 2)


@given(st.binary(max_size=60), st.integers(0, 10))
def test_command_parsers_only_raise_protocol_errors(data: bytes, num_params: int) -> None:
    for parse in (query_text, stmt_id_of, parse_init_db, parse_set_option, parse_field_list):
        with contextlib.suppress(ProtocolError):
            parse(data)  # type: ignore[operator]
    with contextlib.suppress(ProtocolError):
        parse_stmt_execute(b"\x17" + data, num_params)
    with contextlib.suppress(ProtocolError):
        parse_text_resultset([data, data, data])


def test_framed_output_is_consistent() -> None:
    wire = build_text_resultset(["a"], [("1",)])
    assert wire.startswith(encode_packet(b"\x01", 1))
