"""ClientHandshake and ServerHandshake talking to each other in memory, and to scripted peers."""

from __future__ import annotations

import pytest

from turnout.protocol.auth import native_password_hash, parse_stored_password, stage1
from turnout.protocol.client import ClientHandshake
from turnout.protocol.constants import (
    CACHING_SHA2_PASSWORD,
    CLIENT_CONNECT_ATTRS,
    CLIENT_PLUGIN_AUTH,
    CLIENT_SSL,
    DEFAULT_SERVER_CAPABILITIES,
    ER_ACCESS_DENIED_ERROR,
    ER_NOT_SUPPORTED_AUTH_MODE,
    ER_SSL_CONNECTION_ERROR,
)
from turnout.protocol.events import (
    AuthDone,
    AuthFailed,
    AuthSwitchResponse,
    ClientHello,
    TlsRequested,
    TlsStart,
)
from turnout.protocol.generic import build_ok, parse_err
from turnout.protocol.handshake import (
    Greeting,
    build_auth_switch_request,
    build_greeting,
    build_ssl_request,
    parse_handshake_response,
)
from turnout.protocol.packets import MalformedPacket, Packet, PacketBuffer, ProtocolError, encode_packet
from turnout.protocol.server import ServerHandshake

STORED = parse_stored_password(native_password_hash("app_pass"))[0]


def unframe(wire: bytes) -> Packet:
    buf = PacketBuffer()
    buf.feed(wire)
    packet = buf.next_packet()
    assert packet is not None and len(buf) == 0
    return packet


def run(client: ClientHandshake, server: ServerHandshake, switch: bool) -> tuple[AuthDone | AuthFailed, bytes | None]:
    reply = client.receive(unframe(server.greeting()))
    assert isinstance(reply, bytes)
    hello = server.receive(unframe(reply))
    assert isinstance(hello, ClientHello)
    if switch:
        reply = client.receive(unframe(server.switch_to_native()))
        assert isinstance(reply, bytes)
        assert isinstance(server.receive(unframe(reply)), AuthSwitchResponse)
    recovered = server.accept_native(STORED)
    final = server.ok_packet() if recovered is not None else server.error_packet(ER_ACCESS_DENIED_ERROR, "denied")
    outcome = client.receive(unframe(final))
    assert isinstance(outcome, AuthDone | AuthFailed)
    return outcome, recovered


@pytest.mark.parametrize("switch", [False, True])
@pytest.mark.parametrize("secret", [{"password": "app_pass"}, {"stage1": stage1("app_pass")}])
def test_login(secret: dict[str, object], switch: bool) -> None:
    client = ClientHandshake("app", database="shop", attributes={"_client_name": "turnout"}, **secret)  # type: ignore[arg-type]
    server = ServerHandshake(connection_id=9)
    outcome, recovered = run(client, server, switch)
    assert isinstance(outcome, AuthDone)
    assert recovered == stage1("app_pass")
    assert server.response is not None
    assert server.response.database == "shop"
    assert server.response.attributes == {"_client_name": "turnout"}
    assert outcome.greeting.connection_id == 9 and outcome.server_capabilities & CLIENT_PLUGIN_AUTH
    assert client.capabilities & CLIENT_CONNECT_ATTRS


def test_wrong_password() -> None:
    outcome, recovered = run(ClientHandshake("app", password="nope"), ServerHandshake(1), switch=False)
    assert recovered is None
    assert isinstance(outcome, AuthFailed) and outcome.error.code == ER_ACCESS_DENIED_ERROR
    assert outcome.error.sql_state == "28000"


def test_capabilities_are_intersected() -> None:
    client = ClientHandshake("app", password="x", capabilities=DEFAULT_SERVER_CAPABILITIES | CLIENT_SSL)
    server = ServerHandshake(1, capabilities=DEFAULT_SERVER_CAPABILITIES & ~CLIENT_CONNECT_ATTRS)
    reply = client.receive(unframe(server.greeting()))
    assert isinstance(reply, bytes)
    sent = parse_handshake_response(unframe(reply).payload)
    assert not sent.capabilities & (CLIENT_SSL | CLIENT_CONNECT_ATTRS)


def test_server_checks_sequence_ids_and_state() -> None:
    server = ServerHandshake(1)
    with pytest.raises(ProtocolError):
        server.receive(Packet(1, b""))
    greeting = server.greeting()
    with pytest.raises(ProtocolError):
        server.greeting()
    reply = ClientHandshake("app", password="app_pass").receive(unframe(greeting))
    assert isinstance(reply, bytes)
    with pytest.raises(MalformedPacket):
        server.receive(Packet(2, unframe(reply).payload))
    fresh = ServerHandshake(3)
    fresh.greeting()
    with pytest.raises(MalformedPacket):
        fresh.receive(Packet(1, b"garbage"))


def test_server_refuses_ssl_and_errors_before_greeting() -> None:
    server = ServerHandshake(1)
    server.greeting()
    with pytest.raises(ProtocolError):
        server.receive(Packet(1, build_ssl_request(DEFAULT_SERVER_CAPABILITIES, 1 << 24, 33)))
    too_many = unframe(ServerHandshake(2).error_packet(1040, "Too many connections"))
    assert too_many.seq == 0 and parse_err(too_many.payload).sql_state == "08004"


def test_client_without_plugin_auth_cannot_be_switched() -> None:
    server = ServerHandshake(1)
    client = ClientHandshake("app", password="app_pass", capabilities=DEFAULT_SERVER_CAPABILITIES & ~CLIENT_PLUGIN_AUTH)
    reply = client.receive(unframe(server.greeting()))
    assert isinstance(reply, bytes)
    server.receive(unframe(reply))
    assert not server.can_switch and not server.wants_switch
    with pytest.raises(ProtocolError):
        server.switch_to_native()
    assert server.accept_native(STORED) == stage1("app_pass")


def greeting(plugin: str) -> Packet:
    g = Greeting(10, "8.0.36", 1, b"n" * 20, DEFAULT_SERVER_CAPABILITIES, 255, 2, plugin)
    return Packet(0, build_greeting(g))


def test_caching_sha2_fast_path() -> None:
    client = ClientHandshake("app", password="app_pass")
    first = client.receive(greeting(CACHING_SHA2_PASSWORD))
    assert isinstance(first, bytes)
    assert parse_handshake_response(unframe(first).payload).auth_plugin == CACHING_SHA2_PASSWORD
    assert client.receive(Packet(2, b"\x01\x03")) is None
    done = client.receive(Packet(3, build_ok()))
    assert isinstance(done, AuthDone)


def test_caching_sha2_full_auth_and_unknown_plugins_fail_cleanly() -> None:
    client = ClientHandshake("app", password="app_pass")
    client.receive(greeting(CACHING_SHA2_PASSWORD))
    failed = client.receive(Packet(2, b"\x01\x04"))
    assert isinstance(failed, AuthFailed) and failed.error.code == ER_NOT_SUPPORTED_AUTH_MODE
    # Only stage1 known: the client answers with mysql_native_password, and cannot do sha2.
    hashed_only = ClientHandshake("app", stage1=stage1("app_pass"))
    first = hashed_only.receive(greeting(CACHING_SHA2_PASSWORD))
    assert isinstance(first, bytes)
    assert parse_handshake_response(unframe(first).payload).auth_plugin == "mysql_native_password"
    refused = hashed_only.receive(Packet(2, build_auth_switch_request(CACHING_SHA2_PASSWORD, b"n" * 20)))
    assert isinstance(refused, AuthFailed)


def test_client_switch_to_native_and_sequence_ids() -> None:
    client = ClientHandshake("app", password="app_pass")
    client.receive(greeting("client_ed25519"))
    reply = client.receive(Packet(2, build_auth_switch_request("mysql_native_password", b"s" * 20)))
    assert isinstance(reply, bytes) and unframe(reply).seq == 3
    with pytest.raises(MalformedPacket):
        client.receive(Packet(9, build_ok()))
    assert isinstance(client.receive(Packet(4, build_ok())), AuthDone)
    with pytest.raises(ProtocolError):
        client.receive(Packet(5, build_ok()))


def test_client_reports_an_err_instead_of_a_greeting() -> None:
    client = ClientHandshake("app", password="x")
    failed = client.receive(unframe(encode_packet(b"\xff\x10\x04Too many connections", 0)))
    assert isinstance(failed, AuthFailed) and failed.error.code == 1040


# ---- TLS: the SSLRequest step on both sides ---------------------------------------------------
def test_tls_login_between_client_and_server() -> None:
    """Client asks for TLS; the bytes that would run over TLS are handed over in the clear here
    (the layer is tested with real TLS in the proxy's tests), sequence ids continue across."""
    client = ClientHandshake("app", password="app_pass", tls=True)
    server = ServerHandshake(4, tls=True)
    start = client.receive(unframe(server.greeting()))
    assert isinstance(start, TlsStart)
    request = unframe(start.ssl_request)
    assert request.seq == 1 and len(request.payload) == 32
    assert isinstance(server.receive(request), TlsRequested) and server.tls_requested
    with pytest.raises(ProtocolError):
        client.receive(Packet(2, b"\x00"))  # nothing in the clear after TLS started
    response = unframe(client.after_tls())
    assert response.seq == 2
    hello = server.receive(response)
    assert isinstance(hello, ClientHello) and hello.response.capabilities & CLIENT_SSL
    assert server.accept_native(STORED) == stage1("app_pass")
    outcome = client.receive(unframe(server.ok_packet()))
    assert isinstance(outcome, AuthDone)


def test_tls_asked_of_a_server_that_offers_none() -> None:
    outcome = ClientHandshake("app", password="x", tls=True).receive(unframe(ServerHandshake(1).greeting()))
    assert isinstance(outcome, AuthFailed) and outcome.error.code == ER_SSL_CONNECTION_ERROR
    assert "does not offer TLS" in outcome.error.message


def test_server_without_tls_never_offers_it_and_refuses_the_request() -> None:
    server = ServerHandshake(1, capabilities=DEFAULT_SERVER_CAPABILITIES | CLIENT_SSL)
    assert not server.server_capabilities & CLIENT_SSL
    server.greeting()
    with pytest.raises(ProtocolError):
        server.receive(Packet(1, build_ssl_request(DEFAULT_SERVER_CAPABILITIES, 1 << 24, 33)))


def _caching_sha2_greeting() -> bytes:
    greeting = Greeting(10, "8.0.36", 7, b"s" * 20, DEFAULT_SERVER_CAPABILITIES | CLIENT_SSL, 45, 2, CACHING_SHA2_PASSWORD)
    return encode_packet(build_greeting(greeting), 0)


@pytest.mark.parametrize("tls", [False, True])
def test_caching_sha2_full_authentication_sends_the_password_only_over_tls(tls: bool) -> None:
    client = ClientHandshake("app", password="app_pass", tls=tls)
    first = client.receive(unframe(_caching_sha2_greeting()))
    if tls:
        assert isinstance(first, TlsStart)
        response = unframe(client.after_tls())
    else:
        assert isinstance(first, bytes)
        response = unframe(first)
    more_data = Packet(response.seq + 1, b"\x01\x04")  # perform full authentication
    answer = client.receive(more_data)
    if not tls:
        assert isinstance(answer, AuthFailed) and answer.error.code == ER_NOT_SUPPORTED_AUTH_MODE
        assert "needs TLS" in answer.error.message
        return
    assert isinstance(answer, bytes)
    sent = unframe(answer)
    assert sent.seq == response.seq + 2 and sent.payload == b"app_pass\0"
    outcome = client.receive(Packet(response.seq + 3, build_ok()))
    assert isinstance(outcome, AuthDone)
