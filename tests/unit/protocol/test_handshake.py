from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.constants import (
    CLIENT_CONNECT_ATTRS,
    CLIENT_CONNECT_WITH_DB,
    CLIENT_MYSQL,
    CLIENT_PLUGIN_AUTH,
    CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
    CLIENT_PROTOCOL_41,
    CLIENT_SECURE_CONNECTION,
    CLIENT_SSL,
    DEFAULT_SERVER_CAPABILITIES,
    MARIADB_CLIENT_CACHE_METADATA,
)
from turnout.protocol.handshake import (
    ChangeUser,
    Greeting,
    HandshakeResponse,
    build_auth_switch_request,
    build_change_user,
    build_greeting,
    build_handshake_response,
    build_ssl_request,
    is_ssl_request,
    parse_auth_switch_request,
    parse_change_user,
    parse_greeting,
    parse_handshake_response,
)
from turnout.protocol.packets import MalformedPacket, ProtocolError

BASE = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION
names = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=20)


def test_greeting_round_trip() -> None:
    g = Greeting(10, "5.5.30 (turnout)", 77, b"abcdefghijklmnopqrst", DEFAULT_SERVER_CAPABILITIES, 33, 2)
    parsed = parse_greeting(build_greeting(g))
    assert parsed.capabilities & CLIENT_MYSQL
    assert parsed == Greeting(
        10, "5.5.30 (turnout)", 77, g.salt, DEFAULT_SERVER_CAPABILITIES | CLIENT_MYSQL, 33, 2, "mysql_native_password"
    )


def test_mariadb_style_greeting() -> None:
    # A MariaDB greeting clears CLIENT_MYSQL and carries extended capabilities in the filler.
    g = Greeting(10, "5.5.5-10.11.6-MariaDB", 5, b"12345678ABCDEFGHIJKL", DEFAULT_SERVER_CAPABILITIES, 45, 2)
    payload = bytearray(build_greeting(g))
    caps_pos = 1 + len(g.server_version) + 1 + 4 + 8 + 1
    payload[caps_pos] &= ~CLIENT_MYSQL
    filler = caps_pos + 2 + 1 + 2 + 2 + 1
    payload[filler + 6 : filler + 10] = (0x1D).to_bytes(4, "little")
    parsed = parse_greeting(bytes(payload))
    assert parsed.mariadb_capabilities == 0x1D and parsed.server_version == g.server_version
    assert parsed.salt == g.salt


def test_greeting_with_extended_capabilities_is_mariadb_style() -> None:
    g = Greeting(10, "5.5.30", 5, b"12345678ABCDEFGHIJKL", DEFAULT_SERVER_CAPABILITIES, 45, 2, mariadb_capabilities=0x10)
    parsed = parse_greeting(build_greeting(g))
    assert not parsed.capabilities & CLIENT_MYSQL
    assert parsed.mariadb_capabilities == 0x10 and parsed.salt == g.salt


def test_extended_capabilities_in_the_response_and_the_ssl_request() -> None:
    caps = BASE | MARIADB_CLIENT_CACHE_METADATA
    parsed = parse_handshake_response(build_handshake_response(HandshakeResponse(caps, 1, 45, "u", b"")))
    assert parsed.capabilities == caps
    ssl_request = build_ssl_request(caps, 1, 45)
    assert is_ssl_request(ssl_request) and ssl_request[-4:] == (MARIADB_CLIENT_CACHE_METADATA >> 32).to_bytes(4, "little")
    # A MySQL client's zeros there ask for nothing more.
    assert parse_handshake_response(build_handshake_response(HandshakeResponse(BASE, 1, 45, "u", b""))).capabilities == BASE


@given(
    names,
    st.binary(max_size=40),
    st.one_of(st.none(), names.filter(bool)),
    st.one_of(st.none(), names),
    st.dictionaries(names, names, max_size=4),
    st.sampled_from([0, CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA]),
)
def test_handshake_response_round_trip(
    user: str, auth: bytes, db: str | None, plugin: str | None, attrs: dict[str, str], lenenc: int
) -> None:
    caps = BASE | lenenc | (CLIENT_PLUGIN_AUTH if plugin is not None else 0) | (CLIENT_CONNECT_ATTRS if attrs else 0)
    r = HandshakeResponse(caps, 1 << 24, 45, user, auth, db, plugin, attrs)
    parsed = parse_handshake_response(build_handshake_response(r))
    expected_caps = caps | (CLIENT_CONNECT_WITH_DB if db else 0)
    assert parsed == HandshakeResponse(expected_caps, 1 << 24, 45, user, auth, db, plugin, attrs)


def test_ssl_request() -> None:
    payload = build_ssl_request(BASE, 1 << 24, 33)
    assert is_ssl_request(payload)
    assert not is_ssl_request(build_ssl_request(BASE, 1 << 24, 33)[:31])
    full = build_handshake_response(HandshakeResponse(BASE | CLIENT_SSL, 1, 33, "u", b""))
    assert not is_ssl_request(full)


def test_pre41_and_truncated_responses_are_malformed() -> None:
    good = build_handshake_response(HandshakeResponse(BASE, 1, 33, "user", b"x" * 20, "db"))
    with pytest.raises(MalformedPacket):
        parse_handshake_response(b"\x00\x00\x00\x00" + good[4:])
    for cut in (3, 20, 33, 40):
        with pytest.raises(MalformedPacket):
            parse_handshake_response(good[:cut])


@given(st.binary(max_size=120))
def test_garbage_only_raises_protocol_errors(data: bytes) -> None:
    for parse in (parse_greeting, parse_handshake_response, parse_auth_switch_request):
        with contextlib.suppress(ProtocolError):
            parse(data)
    with contextlib.suppress(ProtocolError):
        parse_change_user(data, DEFAULT_SERVER_CAPABILITIES)


def test_auth_switch_round_trip() -> None:
    payload = build_auth_switch_request("mysql_native_password", b"s" * 20)
    assert payload.endswith(b"\x00")
    assert parse_auth_switch_request(payload) == ("mysql_native_password", b"s" * 20)
    assert parse_auth_switch_request(b"\xfe") == ("mysql_old_password", b"")
    with pytest.raises(MalformedPacket):
        parse_auth_switch_request(b"\x00abc")


@given(names, st.binary(max_size=20), st.one_of(st.none(), names.filter(bool)), st.dictionaries(names, names, max_size=3))
def test_change_user_round_trip(user: str, auth: bytes, db: str | None, attrs: dict[str, str]) -> None:
    caps = DEFAULT_SERVER_CAPABILITIES
    c = ChangeUser(user, auth, db, 45, "mysql_native_password", attrs)
    assert parse_change_user(build_change_user(c, caps), caps) == c


def test_change_user_minimal() -> None:
    # Old clients stop after the database.
    parsed = parse_change_user(b"\x11bob\x00\x02ab" + b"shop\x00", BASE)
    assert parsed == ChangeUser("bob", b"ab", "shop", 33, None, {})
