from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.constants import (
    ER_ACCESS_DENIED_ERROR,
    SERVER_STATUS_AUTOCOMMIT,
    SERVER_STATUS_IN_TRANS,
    sql_state_for,
)
from turnout.protocol.generic import (
    EofPacket,
    ErrPacket,
    OkPacket,
    build_eof,
    build_err,
    build_ok,
    is_eof,
    is_err,
    is_ok,
    parse_eof,
    parse_err,
    parse_ok,
)
from turnout.protocol.packets import MalformedPacket, ProtocolError, write_lenenc_bytes

u16 = st.integers(0, 0xFFFF)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), u16, u16, st.binary(max_size=100))
def test_ok_round_trip(affected: int, insert_id: int, status: int, warnings: int, info: bytes) -> None:
    payload = build_ok(affected, insert_id, status, warnings, info)
    assert is_ok(payload) and not is_err(payload) and not is_eof(payload)
    # the info as MariaDB sends it: a length-encoded string (when there is one)
    assert parse_ok(payload) == OkPacket(affected, insert_id, status, warnings, write_lenenc_bytes(info) if info else b"")


def test_ok_defaults() -> None:
    assert build_ok() == b"\x00\x00\x00\x02\x00\x00\x00"
    assert parse_ok(build_ok()).status_flags == SERVER_STATUS_AUTOCOMMIT


@given(st.integers(0, 0xFFFF), st.text(max_size=100))
def test_err_round_trip(code: int, message: str) -> None:
    payload = build_err(code, message, "42S02")
    assert is_err(payload)
    parsed = parse_err(payload)
    assert parsed.code == code and parsed.sql_state == "42S02"
    assert parsed.message == message.encode("utf-8", "replace").decode("utf-8", "replace")


def test_err_known_codes_and_old_style() -> None:
    payload = build_err(ER_ACCESS_DENIED_ERROR, "Access denied", sql_state_for(ER_ACCESS_DENIED_ERROR))
    assert payload == b"\xff\x15\x04#28000Access denied"
    assert parse_err(b"\xff\x10\x04Too many connections") == ErrPacket(1040, "HY000", "Too many connections")


@given(u16, u16)
def test_eof_round_trip(warnings: int, status: int) -> None:
    payload = build_eof(warnings, status)
    assert len(payload) == 5 and is_eof(payload)
    assert parse_eof(payload) == EofPacket(warnings, status)


def test_eof_detection_needs_a_short_packet() -> None:
    assert not is_eof(b"\xfe" + bytes(8))
    assert is_eof(b"\xfe")
    assert parse_eof(build_eof(1, SERVER_STATUS_IN_TRANS)).status_flags == SERVER_STATUS_IN_TRANS


@pytest.mark.parametrize("payload", [b"", b"\x00", b"\x01" * 7, b"\x00\xfc\x01"])
def test_bad_ok(payload: bytes) -> None:
    with pytest.raises(MalformedPacket):
        parse_ok(payload)


@given(st.binary(max_size=40))
def test_parsers_raise_only_protocol_errors(data: bytes) -> None:
    for parse in (parse_ok, parse_err, parse_eof):
        with contextlib.suppress(ProtocolError):
            parse(data)
