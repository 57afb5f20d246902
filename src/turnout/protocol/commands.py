"""Command-phase requests: what the proxy reads from (and rewrites in) a client's command packet."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from turnout.protocol.constants import (
    COM_FIELD_LIST,
    COM_INIT_DB,
    COM_QUERY,
    COM_SET_OPTION,
    COM_STMT_BULK_EXECUTE,
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_RESET,
    COM_STMT_SEND_LONG_DATA,
    STMT_BULK_FLAG_CLIENT_SEND_TYPES,
)
from turnout.protocol.packets import Buffer, MalformedPacket, read_fixed, read_nul_bytes, read_uint

_STMT_ID_COMMANDS = frozenset(
    {COM_STMT_EXECUTE, COM_STMT_SEND_LONG_DATA, COM_STMT_RESET, COM_STMT_CLOSE, COM_STMT_FETCH, COM_STMT_BULK_EXECUTE}
)
_U32 = struct.Struct("<I")
_EXECUTE_HEAD = struct.Struct("<BIBI")


def command_of(payload: Buffer) -> int:
    if not payload:
        raise MalformedPacket("empty command packet")
    return payload[0]


def _text(data: Buffer) -> str:
    return bytes(data).decode("utf-8", "surrogateescape")


def _expect(payload: Buffer, command: int) -> None:
    if not payload or payload[0] != command:
        raise MalformedPacket(f"expected command 0x{command:02x}")


def query_text(payload: Buffer) -> str:
    """The SQL of a COM_QUERY (or the text of a COM_STMT_PREPARE); undecodable bytes survive as
    surrogate escapes."""
    if not payload or payload[0] not in (COM_QUERY, COM_STMT_PREPARE):
        raise MalformedPacket("not a COM_QUERY")
    return _text(payload[1:])


def build_command(command: int, body: bytes = b"") -> bytes:
    return bytes((command,)) + body


def build_query(sql: str) -> bytes:
    return bytes((COM_QUERY,)) + sql.encode("utf-8", "surrogateescape")


def build_stmt_prepare(sql: str) -> bytes:
    return bytes((COM_STMT_PREPARE,)) + sql.encode("utf-8", "surrogateescape")


def stmt_id_of(payload: Buffer) -> int:
    """The statement id of a COM_STMT_EXECUTE / SEND_LONG_DATA / RESET / CLOSE / FETCH."""
    if len(payload) < 5 or payload[0] not in _STMT_ID_COMMANDS:
        raise MalformedPacket("not a statement command")
    return int.from_bytes(payload[1:5], "little")


def with_stmt_id(payload: Buffer, new_id: int) -> bytes:
    """The same statement command addressed to statement `new_id`."""
    stmt_id_of(payload)
    return bytes(payload[:1]) + _U32.pack(new_id) + bytes(payload[5:])


def bulk_param_types(payload: Buffer, num_params: int) -> bytes | None:
    """The parameter types a COM_STMT_BULK_EXECUTE sends (id(4), flags(2), then with
    STMT_BULK_FLAG_CLIENT_SEND_TYPES two bytes per parameter, then the rows); None without them."""
    _expect(payload, COM_STMT_BULK_EXECUTE)
    flags, pos = read_uint(payload, 5, 2)
    if not flags & STMT_BULK_FLAG_CLIENT_SEND_TYPES:
        return None
    types, _ = read_fixed(payload, pos, 2 * num_params)
    return types


def with_bulk_param_types(payload: Buffer, stmt_id: int, param_types: bytes) -> bytes:
    """A COM_STMT_BULK_EXECUTE that sent no types, addressed to `stmt_id` with `param_types` sent."""
    _expect(payload, COM_STMT_BULK_EXECUTE)
    flags, _ = read_uint(payload, 5, 2)
    head = bytes((COM_STMT_BULK_EXECUTE,)) + _U32.pack(stmt_id)
    return head + struct.pack("<H", flags | STMT_BULK_FLAG_CLIENT_SEND_TYPES) + param_types + bytes(payload[7:])


def build_stmt_close(stmt_id: int) -> bytes:
    return bytes((COM_STMT_CLOSE,)) + _U32.pack(stmt_id)


def build_stmt_reset(stmt_id: int) -> bytes:
    return bytes((COM_STMT_RESET,)) + _U32.pack(stmt_id)


def build_stmt_fetch(stmt_id: int, num_rows: int) -> bytes:
    return bytes((COM_STMT_FETCH,)) + _U32.pack(stmt_id) + _U32.pack(num_rows)


@dataclass(frozen=True, slots=True)
class StmtExecute:
    stmt_id: int
    flags: int
    iteration_count: int
    null_bitmap: bytes
    new_params_bound: bool
    param_types: bytes | None
    values: bytes


def parse_stmt_execute(payload: Buffer, num_params: int) -> StmtExecute:
    """A COM_STMT_EXECUTE for a statement with `num_params` parameters."""
    _expect(payload, COM_STMT_EXECUTE)
    if len(payload) < _EXECUTE_HEAD.size:
        raise MalformedPacket("truncated COM_STMT_EXECUTE")
    _, stmt_id, flags, iterations = _EXECUTE_HEAD.unpack_from(bytes(payload[: _EXECUTE_HEAD.size]))
    pos = _EXECUTE_HEAD.size
    if num_params <= 0:
        return StmtExecute(stmt_id, flags, iterations, b"", False, None, bytes(payload[pos:]))
    bitmap, pos = read_fixed(payload, pos, (num_params + 7) // 8)
    bound, pos = read_uint(payload, pos, 1)
    types: bytes | None = None
    if bound:
        types, pos = read_fixed(payload, pos, 2 * num_params)
    return StmtExecute(stmt_id, flags, iterations, bitmap, bool(bound), types, bytes(payload[pos:]))


def build_stmt_execute(e: StmtExecute) -> bytes:
    head = _EXECUTE_HEAD.pack(COM_STMT_EXECUTE, e.stmt_id, e.flags, e.iteration_count)
    if not e.null_bitmap and e.param_types is None and not e.new_params_bound:
        return head + e.values
    if e.new_params_bound:
        if e.param_types is None:
            raise ValueError("new_params_bound needs param_types")
        return head + e.null_bitmap + b"\x01" + e.param_types + e.values
    return head + e.null_bitmap + b"\x00" + e.values


def parse_init_db(payload: Buffer) -> str:
    _expect(payload, COM_INIT_DB)
    return _text(payload[1:])


def build_init_db(database: str) -> bytes:
    return bytes((COM_INIT_DB,)) + database.encode("utf-8", "surrogateescape")


def parse_set_option(payload: Buffer) -> int:
    _expect(payload, COM_SET_OPTION)
    value, _ = read_uint(payload, 1, 2)
    return value


def build_set_option(option: int) -> bytes:
    return bytes((COM_SET_OPTION,)) + option.to_bytes(2, "little")


def parse_field_list(payload: Buffer) -> tuple[str, str]:
    """(table, wildcard) of a COM_FIELD_LIST."""
    _expect(payload, COM_FIELD_LIST)
    if b"\x00" not in bytes(payload[1:]):
        return _text(payload[1:]), ""
    table, pos = read_nul_bytes(payload, 1)
    return _text(table), _text(payload[pos:])


def build_field_list(table: str, wildcard: str = "") -> bytes:
    return (
        bytes((COM_FIELD_LIST,))
        + table.encode("utf-8", "surrogateescape")
        + b"\x00"
        + wildcard.encode("utf-8", "surrogateescape")
    )
