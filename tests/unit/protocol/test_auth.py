from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from mysql.connector.plugins.caching_sha2_password import MySQLCachingSHA2PasswordAuthPlugin

from turnout.protocol.auth import (
    native_password_hash,
    new_salt,
    parse_stored_password,
    scramble_caching_sha2,
    scramble_native,
    stage1,
    verify_native,
)


def test_password_function_vector() -> None:
    # MySQL's documented PASSWORD('password').
    assert native_password_hash("password") == "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
    assert native_password_hash("") == ""


def test_salt_shape() -> None:
    salts = {new_salt() for _ in range(50)}
    assert len(salts) == 50
    assert all(len(s) == 20 and b"\x00" not in s and all(0x20 < b < 0x7F for b in s) for s in salts)


@given(st.text(min_size=1, max_size=40), st.text(max_size=40))
def test_verify_native_recovers_stage1(password: str, other: str) -> None:
    salt = new_salt()
    stored, first = parse_stored_password(password)
    assert first == stage1(password)
    response = scramble_native(stage1(password), salt)
    assert len(response) == 20
    assert verify_native(response, salt, stored) == stage1(password)
    # Only the hash is known: the same verification works.
    hashed, none = parse_stored_password(native_password_hash(password))
    assert (hashed, none) == (stored, None)
    assert verify_native(response, salt, hashed) == stage1(password)
    if other != password:
        assert verify_native(scramble_native(stage1(other), salt), salt, stored) is None


def test_verify_native_wrong_salt_and_shapes() -> None:
    salt, other_salt = b"A" * 20, b"B" * 20
    stored, _ = parse_stored_password("secret")
    response = scramble_native(stage1("secret"), salt)
    assert verify_native(response, other_salt, stored) is None
    assert verify_native(response[:10], salt, stored) is None
    assert verify_native(b"", salt, stored) is None


def test_empty_password() -> None:
    assert parse_stored_password("") == (b"", b"")
    assert scramble_native(b"", new_salt()) == b""
    assert verify_native(b"", new_salt(), b"") == b""
    assert verify_native(b"x" * 20, new_salt(), b"") is None


def test_caching_sha2_matches_mysql_connector() -> None:
    salt = new_salt()
    reference = MySQLCachingSHA2PasswordAuthPlugin("app", "app_pass")._scramble(salt)
    assert scramble_caching_sha2("app_pass", salt) == reference
    assert scramble_caching_sha2("", salt) == b""
