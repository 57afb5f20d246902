"""The generic response packets: OK, ERR and EOF (protocol 4.1 layout), and the session state an
OK carries for a client with CLIENT_SESSION_TRACK."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from turnout.protocol.constants import (
    EOF_HEADER,
    ERR_HEADER,
    OK_HEADER,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
)
from turnout.protocol.packets import (
    Buffer,
    MalformedPacket,
    read_lenenc_uint,
    write_lenenc_bytes,
    write_lenenc_int,
)

# Session state change types (CLIENT_SESSION_TRACK).
SESSION_TRACK_SYSTEM_VARIABLES = 0
SESSION_TRACK_SCHEMA = 1

_U16 = struct.Struct("<H")
_EOF = struct.Struct("<BHH")


@dataclass(frozen=True, slots=True)
class OkPacket:
    affected_rows: int
    last_insert_id: int
    status_flags: int
    warnings: int
    info: bytes


@dataclass(frozen=True, slots=True)
class ErrPacket:
    code: int
    sql_state: str
    message: str


@dataclass(frozen=True, slots=True)
class EofPacket:
    warnings: int
    status_flags: int


def build_ok(
    affected_rows: int = 0,
    last_insert_id: int = 0,
    status_flags: int = SERVER_STATUS_AUTOCOMMIT,
    warnings: int = 0,
    info: bytes = b"",
    session_state: bytes = b"",
) -> bytes:
    """An OK packet as MariaDB's net_send_ok builds it: the info, when there is one, as a
    length-encoded string whether or not the client tracks session state (not the rest of the
    packet, as the protocol's documentation has it); with `session_state` (for a client with
    CLIENT_SESSION_TRACK), the info (empty or not) and then the state changes."""
    if session_state:
        status_flags |= SERVER_SESSION_STATE_CHANGED
        info = write_lenenc_bytes(info) + write_lenenc_bytes(session_state)
    elif info:
        info = write_lenenc_bytes(info)
    return (
        b"\x00"
        + write_lenenc_int(affected_rows)
        + write_lenenc_int(last_insert_id)
        + _U16.pack(status_flags & 0xFFFF)
        + _U16.pack(warnings & 0xFFFF)
        + info
    )


def schema_change(schema: str) -> bytes:
    """The session state change SESSION_TRACK_SCHEMA: the current database is now `schema`."""
    return bytes((SESSION_TRACK_SCHEMA,)) + write_lenenc_bytes(write_lenenc_bytes(schema.encode("utf-8", "surrogateescape")))


def build_end(warnings: int = 0, status_flags: int = SERVER_STATUS_AUTOCOMMIT, deprecate_eof: bool = False) -> bytes:
    """What ends a list (rows, COM_FIELD_LIST's definitions) and answers COM_SET_OPTION: an EOF,
    or for a client with CLIENT_DEPRECATE_EOF the OK packet with the EOF's header."""
    if deprecate_eof:
        return bytes((EOF_HEADER,)) + build_ok(0, 0, status_flags, warnings)[1:]
    return build_eof(warnings, status_flags)


def build_err(code: int, message: str, sql_state: str = "HY000") -> bytes:
    state = sql_state.encode("ascii", "replace")[:5].ljust(5, b"0")
    return b"\xff" + _U16.pack(code & 0xFFFF) + b"#" + state + message.encode("utf-8", "replace")


def build_eof(warnings: int = 0, status_flags: int = SERVER_STATUS_AUTOCOMMIT) -> bytes:
    return _EOF.pack(EOF_HEADER, warnings & 0xFFFF, status_flags & 0xFFFF)


def is_ok(payload: Buffer) -> bool:
    return len(payload) >= 7 and payload[0] == OK_HEADER


def is_err(payload: Buffer) -> bool:
    return len(payload) >= 3 and payload[0] == ERR_HEADER


def is_eof(payload: Buffer) -> bool:
    return len(payload) < 9 and len(payload) > 0 and payload[0] == EOF_HEADER


def parse_ok(payload: Buffer) -> OkPacket:
    """An OK packet (header 0x00, or 0xFE when it stands in for an EOF)."""
    if len(payload) < 7 or payload[0] not in (OK_HEADER, EOF_HEADER):
        raise MalformedPacket("not an OK packet")
    affected, pos = read_lenenc_uint(payload, 1)
    insert_id, pos = read_lenenc_uint(payload, pos)
    if pos + 4 > len(payload):
        raise MalformedPacket("truncated OK packet")
    status = payload[pos] | payload[pos + 1] << 8
    warnings = payload[pos + 2] | payload[pos + 3] << 8
    return OkPacket(affected, insert_id, status, warnings, bytes(payload[pos + 4 :]))


def parse_err(payload: Buffer) -> ErrPacket:
    if len(payload) < 3 or payload[0] != ERR_HEADER:
        raise MalformedPacket("not an ERR packet")
    code = payload[1] | payload[2] << 8
    rest = bytes(payload[3:])
    if rest[:1] == b"#":
        if len(rest) < 6:
            raise MalformedPacket("truncated SQLSTATE in ERR packet")
        state = rest[1:6].decode("ascii", "replace")
        rest = rest[6:]
    else:
        state = "HY000"
    return ErrPacket(code, state, rest.decode("utf-8", "replace"))


def parse_eof(payload: Buffer) -> EofPacket:
    if not is_eof(payload):
        raise MalformedPacket("not an EOF packet")
    if len(payload) < 5:
        # Pre-4.1 EOF: just the header byte.
        return EofPacket(0, 0)
    return EofPacket(payload[1] | payload[2] << 8, payload[3] | payload[4] << 8)
