"""The server side of the connection phase, sans-IO: greet, read the client's response,
optionally switch it to mysql_native_password, then OK or ERR.

The caller owns the user table: after `ClientHello` it looks the user up and calls
`accept_native(stored_double_sha1)`, or `switch_to_native()` first when the client
scrambled for another plugin.
"""

from __future__ import annotations

from turnout.protocol.auth import new_salt, verify_native
from turnout.protocol.constants import (
    CHARSET_UTF8_GENERAL_CI,
    CLIENT_PLUGIN_AUTH,
    CLIENT_SSL,
    DEFAULT_SERVER_CAPABILITIES,
    NATIVE_PASSWORD,
    SERVER_STATUS_AUTOCOMMIT,
    sql_state_for,
)
from turnout.protocol.events import AuthSwitchResponse, ClientHello, TlsRequested
from turnout.protocol.generic import build_err, build_ok
from turnout.protocol.handshake import (
    Greeting,
    HandshakeResponse,
    build_auth_switch_request,
    build_greeting,
    is_ssl_request,
    parse_handshake_response,
)
from turnout.protocol.packets import MalformedPacket, Packet, ProtocolError, encode_packet

_NEW = "new"
_AWAIT_RESPONSE = "await-response"
_DECIDING = "deciding"
_AWAIT_SWITCH = "await-switch"
_FINISHED = "finished"


class ServerHandshake:
    def __init__(
        self,
        connection_id: int,
        server_version: str = "5.5.30 (turnout)",
        capabilities: int = DEFAULT_SERVER_CAPABILITIES,
        salt: bytes | None = None,
        tls: bool = False,
    ) -> None:
        self.connection_id = connection_id
        self.server_version = server_version
        self.server_capabilities = capabilities | CLIENT_SSL if tls else capabilities & ~CLIENT_SSL
        self.tls_requested = False  # the client sent its SSLRequest (the caller starts TLS)
        self.salt = salt if salt is not None else new_salt()
        self.response: HandshakeResponse | None = None
        self.auth_data = b""
        self._state = _NEW
        self._seq = 0

    @property
    def capabilities(self) -> int:
        """The capabilities both sides have (after ClientHello)."""
        client = self.response.capabilities if self.response else 0
        return client & self.server_capabilities

    @property
    def client_plugin(self) -> str | None:
        return self.response.auth_plugin if self.response else None

    @property
    def wants_switch(self) -> bool:
        """Whether the client scrambled for a plugin other than mysql_native_password and can switch."""
        return self.can_switch and self.client_plugin != NATIVE_PASSWORD

    @property
    def can_switch(self) -> bool:
        return self.response is not None and bool(self.response.capabilities & CLIENT_PLUGIN_AUTH)

    def greeting(self) -> bytes:
        if self._state != _NEW:
            raise ProtocolError("greeting already sent")
        payload = build_greeting(
            Greeting(
                10,
                self.server_version,
                self.connection_id,
                self.salt,
                self.server_capabilities & 0xFFFFFFFF,
                CHARSET_UTF8_GENERAL_CI,
                SERVER_STATUS_AUTOCOMMIT,
                NATIVE_PASSWORD,
                self.server_capabilities >> 32,  # MariaDB's extended capabilities, if any
            )
        )
        self._state = _AWAIT_RESPONSE
        self._seq = 1
        return encode_packet(payload, 0)

    def receive(self, packet: Packet) -> ClientHello | AuthSwitchResponse | TlsRequested:
        if self._state not in (_AWAIT_RESPONSE, _AWAIT_SWITCH):
            raise ProtocolError(f"unexpected packet from the client while {self._state}")
        if packet.seq != self._seq:
            raise MalformedPacket(f"packet out of order: got sequence id {packet.seq}, expected {self._seq}")
        self._seq = (packet.seq + 1) & 0xFF
        if self._state == _AWAIT_SWITCH:
            self._state = _DECIDING
            self.auth_data = packet.payload
            return AuthSwitchResponse(packet.payload)
        if is_ssl_request(packet.payload):
            if not self.server_capabilities & CLIENT_SSL:
                raise ProtocolError("the client asked for TLS, which this server does not offer")
            if self.tls_requested:
                raise ProtocolError("a second SSLRequest")
            self.tls_requested = True
            return TlsRequested()
        self.response = parse_handshake_response(packet.payload)
        self.auth_data = self.response.auth_response
        self._state = _DECIDING
        return ClientHello(self.response)

    def accept_native(self, stored_double_sha1: bytes) -> bytes | None:
        """Verify the client's last scramble against the stored SHA1(SHA1(password));
        the recovered SHA1(password) on success, None otherwise."""
        if self._state != _DECIDING:
            raise ProtocolError("no client response to verify")
        return verify_native(self.auth_data, self.salt, stored_double_sha1)

    def switch_to_native(self) -> bytes:
        """A framed AuthSwitchRequest to mysql_native_password with a fresh salt."""
        if self._state != _DECIDING:
            raise ProtocolError("cannot switch auth plugin now")
        if not self.can_switch:
            raise ProtocolError("the client does not support CLIENT_PLUGIN_AUTH")
        self.salt = new_salt()
        packet = encode_packet(build_auth_switch_request(NATIVE_PASSWORD, self.salt), self._seq)
        self._seq = (self._seq + 1) & 0xFF
        self._state = _AWAIT_SWITCH
        return packet

    def ok_packet(self, status_flags: int = SERVER_STATUS_AUTOCOMMIT, session_state: bytes = b"") -> bytes:
        """The OK that ends the login; `session_state` for a client with session tracking."""
        if self._state != _DECIDING:
            raise ProtocolError("cannot accept a client before it answered")
        self._state = _FINISHED
        return encode_packet(build_ok(status_flags=status_flags, session_state=session_state), self._seq)

    def error_packet(self, code: int, message: str, sql_state: str | None = None) -> bytes:
        """A framed ERR with the sequence id the client expects now (0 before the greeting)."""
        seq = self._seq if self._state != _NEW else 0
        self._state = _FINISHED
        return encode_packet(build_err(code, message, sql_state or sql_state_for(code)), seq)
