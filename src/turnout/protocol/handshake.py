"""Connection-phase messages: the server greeting (HandshakeV10), the client's
HandshakeResponse41 (and SSLRequest), AuthSwitchRequest, and COM_CHANGE_USER."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from turnout.protocol.constants import (
    CHARSET_UTF8_GENERAL_CI,
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_MYSQL,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SSL,
    COM_CHANGE_USER,
    DEFAULT_SERVER_CAPABILITIES,
    NATIVE_PASSWORD,
    SERVER_STATUS_AUTOCOMMIT,
)
from turnout.protocol.packets import (
    Buffer,
    MalformedPacket,
    read_fixed,
    read_lenenc_bytes,
    read_lenenc_uint,
    read_nul_bytes,
    read_uint,
    write_lenenc_bytes,
)

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
SSL_REQUEST_LENGTH = 32


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Greeting:
    protocol_version: int = 10
    server_version: str = ""
    connection_id: int = 0
    salt: bytes = b""
    capabilities: int = DEFAULT_SERVER_CAPABILITIES
    charset: int = CHARSET_UTF8_GENERAL_CI
    status_flags: int = SERVER_STATUS_AUTOCOMMIT
    auth_plugin: str = NATIVE_PASSWORD
    # MariaDB's extended capabilities, sent when it clears CLIENT_MYSQL.
    mariadb_capabilities: int = 0


def build_greeting(g: Greeting) -> bytes:
    """A HandshakeV10 payload. Without MariaDB extended capabilities CLIENT_MYSQL is set, as MySQL
    does, so MariaDB clients do not look for them; with them it is cleared, as MariaDB does."""
    caps = g.capabilities | CLIENT_MYSQL | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
    if g.mariadb_capabilities:
        caps &= ~CLIENT_MYSQL
    salt = g.salt
    plugin_len = len(salt) + 1 if caps & CLIENT_PLUGIN_AUTH else 0
    part2 = salt[8:] + b"\x00"
    if len(part2) < 13:
        part2 = part2.ljust(13, b"\x00")
    out = [
        bytes((g.protocol_version,)),
        _raw(g.server_version) + b"\x00",
        _U32.pack(g.connection_id & 0xFFFFFFFF),
        salt[:8].ljust(8, b"\x00"),
        b"\x00",
        _U16.pack(caps & 0xFFFF),
        bytes((g.charset & 0xFF,)),
        _U16.pack(g.status_flags & 0xFFFF),
        _U16.pack((caps >> 16) & 0xFFFF),
        bytes((min(plugin_len, 255),)),
        b"\x00" * 6,
        _U32.pack(g.mariadb_capabilities & 0xFFFFFFFF),
        part2,
    ]
    if caps & CLIENT_PLUGIN_AUTH:
        out.append(_raw(g.auth_plugin) + b"\x00")
    return b"".join(out)


def parse_greeting(payload: Buffer) -> Greeting:
    if not payload or payload[0] != 10:
        raise MalformedPacket("not a protocol 10 greeting")
    version, pos = read_nul_bytes(payload, 1)
    connection_id, pos = read_uint(payload, pos, 4)
    part1, pos = read_fixed(payload, pos, 8)
    pos += 1
    caps, pos = read_uint(payload, pos, 2)
    if pos >= len(payload):
        return Greeting(10, _text(version), connection_id, part1, caps, 0, 0, "", 0)
    charset, pos = read_uint(payload, pos, 1)
    status, pos = read_uint(payload, pos, 2)
    upper, pos = read_uint(payload, pos, 2)
    caps |= upper << 16
    plugin_len, pos = read_uint(payload, pos, 1)
    reserved, pos = read_fixed(payload, pos, 10)
    mariadb_caps = 0 if caps & CLIENT_MYSQL else int.from_bytes(reserved[6:], "little")
    salt = part1
    if caps & CLIENT_SECURE_CONNECTION:
        part2_len = max(13, plugin_len - 8)
        part2, pos = read_fixed(payload, pos, min(part2_len, len(payload) - pos))
        salt = part1 + part2.rstrip(b"\x00")
    plugin = ""
    if caps & CLIENT_PLUGIN_AUTH and pos < len(payload):
        rest = bytes(payload[pos:])
        plugin = _text(rest.split(b"\x00", 1)[0])
    return Greeting(10, _text(version), connection_id, salt, caps, charset, status, plugin, mariadb_caps)


def _read_attributes(payload: Buffer, pos: int) -> tuple[dict[str, str], int]:
    total, pos = read_lenenc_uint(payload, pos)
    end = pos + total
    if end > len(payload):
        raise MalformedPacket("truncated connection attributes")
    attributes: dict[str, str] = {}
    while pos < end:
        key, pos = read_lenenc_bytes(payload, pos)
        value, pos = read_lenenc_bytes(payload, pos)
        if key is None or value is None or pos > end:
            raise MalformedPacket("bad connection attribute")
        attributes[_text(key)] = _text(value)
    return attributes, end


def _write_attributes(attributes: dict[str, str]) -> bytes:
    body = b"".join(write_lenenc_bytes(_raw(k)) + write_lenenc_bytes(_raw(v)) for k, v in attributes.items())
    return write_lenenc_bytes(body)


@dataclass(frozen=True, slots=True)
class HandshakeResponse:
    capabilities: int  # MariaDB's extended capabilities in the upper 32 bits
    max_packet_size: int
    charset: int
    username: str
    auth_response: bytes
    database: str | None = None
    auth_plugin: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


def is_ssl_request(payload: Buffer) -> bool:
    """An SSLRequest: the first 32 bytes of a HandshakeResponse41 alone, with CLIENT_SSL."""
    if len(payload) != SSL_REQUEST_LENGTH:
        return False
    caps = int.from_bytes(payload[:4], "little")
    return bool(caps & CLIENT_SSL)


def parse_handshake_response(payload: Buffer) -> HandshakeResponse:
    caps, pos = read_uint(payload, 0, 4)
    if not caps & CLIENT_PROTOCOL_41:
        raise MalformedPacket("pre-4.1 handshake responses are not supported")
    max_packet, pos = read_uint(payload, pos, 4)
    charset, pos = read_uint(payload, pos, 1)
    filler, pos = read_fixed(payload, pos, 23)
    # A MariaDB client answering a greeting without CLIENT_MYSQL puts its extended capabilities
    # in the last 4 filler bytes; MySQL clients send zeros there.
    caps |= int.from_bytes(filler[19:], "little") << 32
    user, pos = read_nul_bytes(payload, pos)
    auth: bytes | None
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        auth, pos = read_lenenc_bytes(payload, pos)
    elif caps & CLIENT_SECURE_CONNECTION:
        length, pos = read_uint(payload, pos, 1)
        auth, pos = read_fixed(payload, pos, length)
    else:
        auth, pos = read_nul_bytes(payload, pos)
    if auth is None:
        raise MalformedPacket("NULL auth response")
    database: str | None = None
    if caps & CLIENT_CONNECT_WITH_DB and pos < len(payload):
        db, pos = read_nul_bytes(payload, pos)
        database = _text(db)
    plugin: str | None = None
    if caps & CLIENT_PLUGIN_AUTH and pos < len(payload):
        name, pos = read_nul_bytes(payload, pos)
        plugin = _text(name)
    attributes: dict[str, str] = {}
    if caps & CLIENT_CONNECT_ATTRS and pos < len(payload):
        attributes, pos = _read_attributes(payload, pos)
    return HandshakeResponse(caps, max_packet, charset, _text(user), auth, database, plugin, attributes)


def _filler(capabilities: int) -> bytes:
    """The 23 reserved bytes, the last 4 holding MariaDB's extended capabilities."""
    return b"\x00" * 19 + _U32.pack((capabilities >> 32) & 0xFFFFFFFF)


def build_ssl_request(capabilities: int, max_packet_size: int, charset: int) -> bytes:
    return (
        _U32.pack((capabilities | CLIENT_SSL) & 0xFFFFFFFF)
        + _U32.pack(max_packet_size)
        + bytes((charset & 0xFF,))
        + _filler(capabilities)
    )


def build_handshake_response(r: HandshakeResponse) -> bytes:
    caps = r.capabilities | CLIENT_PROTOCOL_41
    if r.database:
        caps |= CLIENT_CONNECT_WITH_DB
    out = [
        _U32.pack(caps & 0xFFFFFFFF),
        _U32.pack(r.max_packet_size & 0xFFFFFFFF),
        bytes((r.charset & 0xFF,)),
        _filler(caps),
        _raw(r.username) + b"\x00",
    ]
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
        out.append(write_lenenc_bytes(r.auth_response))
    elif caps & CLIENT_SECURE_CONNECTION:
        if len(r.auth_response) > 255:
            raise ValueError("auth response too long without CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA")
        out.append(bytes((len(r.auth_response),)) + r.auth_response)
    else:
        out.append(r.auth_response + b"\x00")
    if caps & CLIENT_CONNECT_WITH_DB:
        out.append(_raw(r.database or "") + b"\x00")
    if caps & CLIENT_PLUGIN_AUTH:
        out.append(_raw(r.auth_plugin or "") + b"\x00")
    if caps & CLIENT_CONNECT_ATTRS:
        out.append(_write_attributes(r.attributes))
    return b"".join(out)


def build_auth_switch_request(plugin: str, data: bytes) -> bytes:
    """0xFE, the plugin name, and its data with the NUL servers end it with."""
    return b"\xfe" + _raw(plugin) + b"\x00" + data + b"\x00"


def parse_auth_switch_request(payload: Buffer) -> tuple[str, bytes]:
    if not payload or payload[0] != 0xFE:
        raise MalformedPacket("not an AuthSwitchRequest")
    if len(payload) == 1:
        return "mysql_old_password", b""
    name, pos = read_nul_bytes(payload, 1)
    data = bytes(payload[pos:])
    if data.endswith(b"\x00"):
        data = data[:-1]
    return _text(name), data


@dataclass(frozen=True, slots=True)
class ChangeUser:
    user: str
    auth_response: bytes
    database: str | None = None
    charset: int = CHARSET_UTF8_GENERAL_CI
    auth_plugin: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


def parse_change_user(payload: Buffer, capabilities: int) -> ChangeUser:
    """A COM_CHANGE_USER payload; `capabilities` are the ones agreed at the handshake."""
    if not payload or payload[0] != COM_CHANGE_USER:
        raise MalformedPacket("not a COM_CHANGE_USER")
    user, pos = read_nul_bytes(payload, 1)
    if capabilities & CLIENT_SECURE_CONNECTION:
        length, pos = read_uint(payload, pos, 1)
        auth, pos = read_fixed(payload, pos, length)
    else:
        auth, pos = read_nul_bytes(payload, pos)
    database: str | None = None
    if pos < len(payload):
        db, pos = read_nul_bytes(payload, pos)
        database = _text(db) or None
    charset = CHARSET_UTF8_GENERAL_CI
    if pos < len(payload):
        charset, pos = read_uint(payload, pos, 2)
    plugin: str | None = None
    if capabilities & CLIENT_PLUGIN_AUTH and pos < len(payload):
        name, pos = read_nul_bytes(payload, pos)
        plugin = _text(name)
    attributes: dict[str, str] = {}
    if capabilities & CLIENT_CONNECT_ATTRS and pos < len(payload):
        attributes, pos = _read_attributes(payload, pos)
    return ChangeUser(_text(user), auth, database, charset, plugin, attributes)


def build_change_user(c: ChangeUser, capabilities: int) -> bytes:
    out = [bytes((COM_CHANGE_USER,)), _raw(c.user) + b"\x00"]
    if capabilities & CLIENT_SECURE_CONNECTION:
        out.append(bytes((len(c.auth_response),)) + c.auth_response)
    else:
        out.append(c.auth_response + b"\x00")
    out.append(_raw(c.database or "") + b"\x00")
    out.append(_U16.pack(c.charset & 0xFFFF))
    if capabilities & CLIENT_PLUGIN_AUTH:
        out.append(_raw(c.auth_plugin or NATIVE_PASSWORD) + b"\x00")
    if capabilities & CLIENT_CONNECT_ATTRS:
        out.append(_write_attributes(c.attributes))
    return b"".join(out)
