"""Text result sets the proxy and its admin interface produce themselves, and a reader for them."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from turnout.protocol.constants import (
    CHARSET_UTF8_GENERAL_CI,
    MYSQL_TYPE_VAR_STRING,
    SERVER_STATUS_AUTOCOMMIT,
)
from turnout.protocol.generic import ErrPacket, build_eof, is_eof, is_err, parse_err
from turnout.protocol.packets import (
    MalformedPacket,
    ProtocolError,
    encode_packet,
    next_seq_after,
    read_lenenc_bytes,
    read_lenenc_uint,
    read_uint,
    write_lenenc_bytes,
    write_lenenc_int,
)

_COLUMN_TAIL = struct.Struct("<BHIBHBH")
_NULL = b"\xfb"


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    type: int = MYSQL_TYPE_VAR_STRING
    charset: int = CHARSET_UTF8_GENERAL_CI
    length: int = 1024
    flags: int = 0
    decimals: int = 0
    schema: str = ""
    table: str = ""


class ResultSetError(ProtocolError):
    """The server answered with ERR instead of a result set."""

    def __init__(self, err: ErrPacket) -> None:
        super().__init__(f"{err.code} ({err.sql_state}): {err.message}")
        self.err = err


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def build_column_def(col: ColumnDef) -> bytes:
    """A ColumnDefinition41 payload."""
    name = write_lenenc_bytes(_utf8(col.name))
    table = write_lenenc_bytes(_utf8(col.table))
    return b"".join(
        (
            write_lenenc_bytes(b"def"),
            write_lenenc_bytes(_utf8(col.schema)),
            table,
            table,
            name,
            name,
            _COLUMN_TAIL.pack(0x0C, col.charset, col.length, col.type, col.flags, col.decimals, 0),
        )
    )


def parse_column_def(payload: bytes) -> ColumnDef:
    pos = 0
    fields: list[bytes] = []
    for _ in range(6):
        value, pos = read_lenenc_bytes(payload, pos)
        fields.append(value or b"")
    fixed_len, pos = read_lenenc_uint(payload, pos)
    if fixed_len < 10:
        raise MalformedPacket("column definition too short")
    charset, pos = read_uint(payload, pos, 2)
    length, pos = read_uint(payload, pos, 4)
    col_type, pos = read_uint(payload, pos, 1)
    flags, pos = read_uint(payload, pos, 2)
    decimals, pos = read_uint(payload, pos, 1)
    text = [f.decode("utf-8", "surrogateescape") for f in fields]
    return ColumnDef(text[4], col_type, charset, length, flags, decimals, text[1], text[2])


def encode_value(value: object) -> bytes:
    """One text-protocol cell: NULL as 0xFB, everything else as a length-encoded string."""
    if value is None:
        return _NULL
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
    elif isinstance(value, bool):
        raw = b"1" if value else b"0"
    elif isinstance(value, int | Decimal):
        raw = str(value).encode("ascii")
    elif isinstance(value, float):
        raw = repr(value).encode("ascii")
    else:
        raw = _utf8(str(value))
    return write_lenenc_bytes(raw)


def build_text_resultset(
    columns: Sequence[str | ColumnDef],
    rows: Iterable[Sequence[object]],
    seq: int = 1,
    status_flags: int = SERVER_STATUS_AUTOCOMMIT,
) -> bytes:
    """A complete framed result set: column count, definitions, EOF, rows, EOF."""
    out: list[bytes] = []

    def emit(payload: bytes) -> None:
        nonlocal seq
        out.append(encode_packet(payload, seq))
        seq = next_seq_after(len(payload), seq)

    emit(write_lenenc_int(len(columns)))
    for column in columns:
        emit(build_column_def(column if isinstance(column, ColumnDef) else ColumnDef(column)))
    emit(build_eof(0, status_flags))
    width = len(columns)
    for row in rows:
        if len(row) != width:
            raise ValueError(f"row has {len(row)} values for {width} columns")
        emit(b"".join(encode_value(v) for v in row))
    emit(build_eof(0, status_flags))
    return b"".join(out)


def parse_text_row(payload: bytes, width: int) -> tuple[bytes | None, ...]:
    pos = 0
    values: list[bytes | None] = []
    for _ in range(width):
        value, pos = read_lenenc_bytes(payload, pos)
        values.append(value)
    if pos != len(payload):
        raise MalformedPacket("trailing bytes after the last column of a row")
    return tuple(values)


def parse_text_resultset(packets: list[bytes]) -> tuple[list[str], list[tuple[bytes | None, ...]]]:
    """Column names and raw rows from the payloads of one text result set."""
    if not packets:
        raise MalformedPacket("empty result set")
    if is_err(packets[0]):
        raise ResultSetError(parse_err(packets[0]))
    count, _ = read_lenenc_uint(packets[0], 0)
    if count == 0 or len(packets) < count + 3:
        raise MalformedPacket("truncated result set")
    names = [parse_column_def(p).name for p in packets[1 : 1 + count]]
    if not is_eof(packets[1 + count]):
        raise MalformedPacket("missing EOF after column definitions")
    rows: list[tuple[bytes | None, ...]] = []
    for payload in packets[2 + count :]:
        if is_eof(payload):
            return names, rows
        if is_err(payload):
            raise ResultSetError(parse_err(payload))
        rows.append(parse_text_row(payload, count))
    raise MalformedPacket("result set without its final EOF")
