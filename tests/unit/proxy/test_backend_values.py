"""The value of a one-value SELECT the proxy runs itself (MASTER_GTID_WAIT's answer), read from a
whole response in either framing: classic EOFs, or deprecate-EOF's OK with the EOF's header
(which may carry session state, as it does on the connections causal reads track GTIDs on)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.constants import COM_QUERY, SERVER_STATUS_AUTOCOMMIT
from turnout.protocol.generic import build_end, build_ok, schema_change
from turnout.protocol.packets import encode_packet, next_seq_after, write_lenenc_int
from turnout.protocol.response import ResponseFramer
from turnout.protocol.resultset import ColumnDef, build_column_def, encode_value
from turnout.proxy.backend import first_value


def result(columns: list[str], rows: list[tuple[object, ...]], deprecate_eof: bool, session_state: bytes = b"") -> bytes:
    payloads = [write_lenenc_int(len(columns)), *(build_column_def(ColumnDef(name)) for name in columns)]
    if not deprecate_eof:
        payloads.append(build_end())
    payloads += [b"".join(encode_value(v) for v in row) for row in rows]
    if deprecate_eof:
        end = build_ok(0, 0, SERVER_STATUS_AUTOCOMMIT, 0, b"", session_state)
        payloads.append(b"\xfe" + end[1:])
    else:
        payloads.append(build_end())
    out, seq = [], 1
    for payload in payloads:
        out.append(encode_packet(payload, seq))
        seq = next_seq_after(len(payload), seq)
    return b"".join(out)


def value_of(data: bytes, deprecate_eof: bool) -> bytes | None:
    framer = ResponseFramer(COM_QUERY, True, deprecate_eof)
    assert framer.feed(data) == len(data) and framer.done
    assert framer.columns is not None
    return first_value(data, len(framer.columns), deprecate_eof)


@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("session_state", [b"", schema_change("a" * 40)])
@pytest.mark.parametrize(("rows", "expected"), [([(0,)], b"0"), ([(-1,)], b"-1"), ([(None,)], None), ([], None)])
def test_the_first_value_in_either_framing(
    deprecate_eof: bool, session_state: bytes, rows: list[tuple[object, ...]], expected: bytes | None
) -> None:
    data = result(["MASTER_GTID_WAIT('0-1-5', 1.000)"], rows, deprecate_eof, session_state if deprecate_eof else b"")
    assert value_of(data, deprecate_eof) == expected


@given(
    st.integers(1, 5),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=300)), min_size=0, max_size=4),
    st.booleans(),
)
def test_the_first_value_of_any_result(width: int, firsts: list[object], deprecate_eof: bool) -> None:
    rows = [(first, *["x"] * (width - 1)) for first in firsts]
    data = result([f"c{i}" for i in range(width)], rows, deprecate_eof)
    expected = None if not firsts or firsts[0] is None else encode_value(firsts[0])[1:]
    if firsts and isinstance(firsts[0], str) and len(firsts[0].encode()) >= 251:
        expected = firsts[0].encode()
    assert value_of(data, deprecate_eof) == expected
