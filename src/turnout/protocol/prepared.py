"""COM_STMT_PREPARE's first response packet."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from turnout.protocol.packets import Buffer, MalformedPacket

_PREPARE_OK = struct.Struct("<BIHHBH")


@dataclass(frozen=True, slots=True)
class PrepareOk:
    statement_id: int
    num_columns: int
    num_params: int
    warnings: int


def parse_prepare_ok(payload: Buffer) -> PrepareOk:
    if len(payload) < 9 or payload[0] != 0x00:
        raise MalformedPacket("not a COM_STMT_PREPARE OK packet")
    padded = bytes(payload[:12]).ljust(12, b"\x00")
    _, stmt_id, columns, params, _, warnings = _PREPARE_OK.unpack(padded)
    return PrepareOk(stmt_id, columns, params, warnings)


def build_prepare_ok(p: PrepareOk) -> bytes:
    return _PREPARE_OK.pack(0, p.statement_id, p.num_columns, p.num_params, 0, p.warnings)
