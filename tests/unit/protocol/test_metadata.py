"""Putting left-out column definitions back into a COM_STMT_EXECUTE result (metadata caching)."""

from __future__ import annotations

import pytest

from turnout.protocol.constants import COM_STMT_EXECUTE, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_AUTOCOMMIT
from turnout.protocol.generic import build_eof, build_ok
from turnout.protocol.metadata import with_metadata
from turnout.protocol.packets import MAX_PAYLOAD, MalformedPacket, PacketBuffer
from turnout.protocol.response import ResponseFramer
from turnout.protocol.resultset import ColumnDef, build_column_def
from unit.protocol.framing import frame

AC = SERVER_STATUS_AUTOCOMMIT
ROWS = [b"\x00\x00\x01\x00\x00\x00", b"\x00\x00\x02\x00\x00\x00"]
DEFS = (build_column_def(ColumnDef("id", type=3)), build_column_def(ColumnDef("k", type=3)))


def payloads_of(data: bytes) -> list[tuple[int, bytes]]:
    buffer = PacketBuffer(max_payload=len(data))
    buffer.feed(data)
    out = []
    while (packet := buffer.next_packet()) is not None:
        out.append((packet.seq, packet.payload))
    assert not len(buffer)
    return out


def test_definitions_go_back_in_and_sequence_ids_follow() -> None:
    left_out = frame([b"\x02\x00", build_eof(0, AC), *ROWS, build_eof(0, AC)])
    rebuilt = with_metadata(left_out, DEFS)
    assert rebuilt == frame([b"\x02\x01", *DEFS, build_eof(0, AC), *ROWS, build_eof(0, AC)])
    assert [seq for seq, _ in payloads_of(rebuilt)] == list(range(1, 8))
    framer = ResponseFramer(COM_STMT_EXECUTE, keep_columns=True)
    assert framer.feed(rebuilt) == len(rebuilt) and framer.done
    assert framer.columns == list(DEFS) and not framer.metadata_omitted


def test_later_results_of_a_procedure_move_along_too() -> None:
    more = AC | SERVER_MORE_RESULTS_EXISTS
    left_out = frame([b"\x02\x00", build_eof(0, AC), *ROWS, build_eof(0, more), build_ok(0, 0, AC)])
    rebuilt = with_metadata(left_out, DEFS)
    assert payloads_of(rebuilt)[-1] == (8, build_ok(0, 0, AC))


def test_a_row_of_16_mib_and_more_keeps_its_pieces() -> None:
    big = b"\x00\x00" + bytes(MAX_PAYLOAD + 10)
    rebuilt = with_metadata(frame([b"\x02\x00", build_eof(0, AC), big, build_eof(0, AC)]), DEFS)
    framer = ResponseFramer(COM_STMT_EXECUTE)
    assert framer.feed(rebuilt) == len(rebuilt) and framer.done and framer.error is None
    assert framer.last_seq == 7  # count, 2 definitions, EOF, 2 pieces of the row, EOF


@pytest.mark.parametrize(
    "response",
    [
        frame([b"\x02\x01", *DEFS, build_eof(0, AC), build_eof(0, AC)]),  # definitions already there
        frame([b"\x02", *DEFS, build_eof(0, AC), build_eof(0, AC)]),  # no caching at all
        frame([b"\x03\x00", build_eof(0, AC), build_eof(0, AC)]),  # 3 columns, 2 definitions known
        frame([b"\x02\x00", build_eof(0, AC)])[:-2],  # cut short
        b"",
    ],
)
def test_anything_else_is_refused(response: bytes) -> None:
    with pytest.raises(MalformedPacket):
        with_metadata(response, DEFS)
