"""What can happen during the connection phase, as plain data."""

from __future__ import annotations

from dataclasses import dataclass

from turnout.protocol.generic import ErrPacket, OkPacket
from turnout.protocol.handshake import Greeting, HandshakeResponse


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The client's HandshakeResponse41 reached the server."""

    response: HandshakeResponse


@dataclass(frozen=True, slots=True)
class TlsRequested:
    """The client sent an SSLRequest: TLS starts now, and its HandshakeResponse41 comes over it."""


@dataclass(frozen=True, slots=True)
class AuthSwitchResponse:
    """The client's answer to an AuthSwitchRequest."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TlsStart:
    """Send this SSLRequest, start TLS as the client, then send `ClientHandshake.after_tls()`."""

    ssl_request: bytes


@dataclass(frozen=True, slots=True)
class AuthDone:
    """The server accepted the client."""

    greeting: Greeting
    server_capabilities: int
    ok: OkPacket


@dataclass(frozen=True, slots=True)
class AuthFailed:
    """The server refused the client (or the client could not answer it)."""

    error: ErrPacket
