"""The client side of the connection phase, sans-IO: how the proxy logs into a backend.

It knows the user's password, or only SHA1(password) (stage1) recovered from the client's
own login, which is enough for mysql_native_password. With `tls`, it asks for TLS before it
sends its credentials (mysql_servers.use_ssl), and may then answer caching_sha2_password's full
authentication with the password, as MySQL clients do over TLS.
"""

from __future__ import annotations

from turnout.protocol import auth
from turnout.protocol.constants import (
    CACHING_SHA2_PASSWORD,
    CHARSET_UTF8_GENERAL_CI,
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SSL,
    DEFAULT_CLIENT_CAPABILITIES,
    ER_NOT_SUPPORTED_AUTH_MODE,
    ER_SSL_CONNECTION_ERROR,
    NATIVE_PASSWORD,
    sql_state_for,
)
from turnout.protocol.events import AuthDone, AuthFailed, TlsStart
from turnout.protocol.generic import ErrPacket, is_err, parse_err, parse_ok
from turnout.protocol.handshake import (
    Greeting,
    HandshakeResponse,
    build_handshake_response,
    build_ssl_request,
    parse_auth_switch_request,
    parse_greeting,
)
from turnout.protocol.packets import MalformedPacket, Packet, ProtocolError, encode_packet

DEFAULT_MAX_PACKET_SIZE = 64 * 1024 * 1024
_FAST_AUTH_SUCCESS = 3
_PERFORM_FULL_AUTH = 4

_GREETING = "greeting"
_TLS = "tls"
_AUTH = "auth"
_FINISHED = "finished"


def _unsupported(message: str) -> AuthFailed:
    code = ER_NOT_SUPPORTED_AUTH_MODE
    return AuthFailed(ErrPacket(code, sql_state_for(code), message))


class ClientHandshake:
    def __init__(
        self,
        username: str,
        stage1: bytes | None = None,
        password: str | None = None,
        database: str | None = None,
        capabilities: int = DEFAULT_CLIENT_CAPABILITIES,
        charset: int = CHARSET_UTF8_GENERAL_CI,
        attributes: dict[str, str] | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        tls: bool = False,
    ) -> None:
        self.username = username
        self.tls = tls
        self.password = password
        self.stage1 = stage1 if stage1 is not None else auth.stage1(password or "")
        self.database = database
        self.requested_capabilities = capabilities
        self.charset = charset
        self.attributes = dict(attributes or {})
        self.max_packet_size = max_packet_size
        self.greeting: Greeting | None = None
        self.capabilities = 0
        self._state = _GREETING
        self._seq = 0

    def receive(self, packet: Packet) -> bytes | AuthDone | AuthFailed | TlsStart | None:
        """Feed one server packet: bytes to send back, None to wait for the next packet,
        or the outcome."""
        if self._state in (_FINISHED, _TLS):
            raise ProtocolError("the handshake is over" if self._state == _FINISHED else "a packet in the clear after TLS started")
        if self._state == _AUTH and packet.seq != self._seq:
            raise MalformedPacket(f"packet out of order: got sequence id {packet.seq}, expected {self._seq}")
        payload = packet.payload
        if is_err(payload):
            self._state = _FINISHED
            return AuthFailed(parse_err(payload))
        if self._state == _GREETING:
            return self._on_greeting(packet)
        if not payload:
            raise MalformedPacket("empty packet during authentication")
        kind = payload[0]
        if kind == 0x00:
            self._state = _FINISHED
            greeting = self.greeting
            if greeting is None:
                raise ProtocolError("OK before the greeting")
            return AuthDone(greeting, greeting.capabilities, parse_ok(payload))
        if kind == 0xFE:
            plugin, data = parse_auth_switch_request(payload)
            return self._answer(plugin, data, packet.seq)
        if kind == 0x01:
            return self._on_more_data(payload, packet.seq)
        raise MalformedPacket(f"unexpected packet 0x{kind:02x} during authentication")

    def _on_greeting(self, packet: Packet) -> bytes | TlsStart | AuthFailed:
        greeting = parse_greeting(packet.payload)
        self.greeting = greeting
        required = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
        if greeting.capabilities & required != required:
            raise ProtocolError("the server does not speak protocol 4.1 with secure connection")
        offered = greeting.capabilities | greeting.mariadb_capabilities << 32
        caps = self.requested_capabilities & offered & ~CLIENT_SSL
        if not self.database:
            caps &= ~CLIENT_CONNECT_WITH_DB
        if self.tls:
            if not greeting.capabilities & CLIENT_SSL:
                self._state = _FINISHED
                code = ER_SSL_CONNECTION_ERROR
                return AuthFailed(ErrPacket(code, sql_state_for(code), "the server does not offer TLS, which use_ssl asks for"))
            self.capabilities = caps | CLIENT_SSL
            self._state = _TLS
            self._seq = (packet.seq + 1) & 0xFF
            request = build_ssl_request(self.capabilities, self.max_packet_size, self.charset)
            return TlsStart(encode_packet(request, self._seq))
        self.capabilities = caps
        return self._response((packet.seq + 1) & 0xFF)

    def after_tls(self) -> bytes:
        """The handshake response, to send once TLS is up (after a TlsStart)."""
        if self._state != _TLS:
            raise ProtocolError("TLS was not asked for")
        return self._response((self._seq + 1) & 0xFF)

    def _response(self, seq: int) -> bytes:
        greeting = self.greeting
        assert greeting is not None
        caps = self.capabilities
        plugin, data = self._scramble(greeting.auth_plugin, greeting.salt)
        response = HandshakeResponse(
            caps,
            self.max_packet_size,
            self.charset,
            self.username,
            data,
            self.database,
            plugin if caps & CLIENT_PLUGIN_AUTH else None,
            self.attributes if caps & CLIENT_CONNECT_ATTRS else {},
        )
        self._state = _AUTH
        self._seq = (seq + 1) & 0xFF
        return encode_packet(build_handshake_response(response), seq)

    def _scramble(self, plugin: str, salt: bytes) -> tuple[str, bytes]:
        if plugin == CACHING_SHA2_PASSWORD and self.password is not None:
            return plugin, auth.scramble_caching_sha2(self.password, salt)
        return NATIVE_PASSWORD, auth.scramble_native(self.stage1, salt)

    def _answer(self, plugin: str, data: bytes, seq: int) -> bytes | AuthFailed:
        if plugin == NATIVE_PASSWORD:
            answer = auth.scramble_native(self.stage1, data)
        elif plugin == CACHING_SHA2_PASSWORD and self.password is not None:
            answer = auth.scramble_caching_sha2(self.password, data)
        else:
            self._state = _FINISHED
            return _unsupported(f"cannot authenticate with {plugin!r} without the clear password")
        self._seq = (seq + 2) & 0xFF
        return encode_packet(answer, (seq + 1) & 0xFF)

    def _on_more_data(self, payload: bytes, seq: int) -> bytes | AuthFailed | None:
        if len(payload) >= 2 and payload[1] == _FAST_AUTH_SUCCESS:
            self._seq = (self._seq + 1) & 0xFF
            return None
        if len(payload) >= 2 and payload[1] == _PERFORM_FULL_AUTH:
            if self.capabilities & CLIENT_SSL and self.password is not None:
                # Over TLS the password itself is the answer.
                self._seq = (seq + 2) & 0xFF
                return encode_packet(self.password.encode() + b"\0", (seq + 1) & 0xFF)
            self._state = _FINISHED
            if self.password is None:
                return _unsupported("caching_sha2_password full authentication needs the password in mysql_users")
            return _unsupported("caching_sha2_password full authentication needs TLS to the server (use_ssl = 1)")
        self._state = _FINISHED
        return _unsupported("unexpected AuthMoreData from the server")
