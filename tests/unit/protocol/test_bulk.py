"""COM_STMT_BULK_EXECUTE (MariaDB's bulk statements) as the proxy rewrites it for a backend
statement: its id, and its parameter types when the client sent none."""

from __future__ import annotations

import pytest

from turnout.protocol.commands import bulk_param_types, stmt_id_of, with_bulk_param_types
from turnout.protocol.constants import COM_STMT_BULK_EXECUTE, LAST_STMT_ID, STMT_BULK_FLAG_CLIENT_SEND_TYPES
from turnout.protocol.packets import MalformedPacket
from turnout.proxy.backend import BackendStatement, bulk_payload

TYPES = b"\x03\x00\xfd\x00"  # INT, VAR_STRING
# two rows of (int, string): indicator 0 then the value; the second row's string is NULL (indicator 1)
ROWS = b"\x00\x01\x00\x00\x00\x00\x01a" + b"\x00\x02\x00\x00\x00\x01"


def bulk(stmt_id: int, types: bytes | None) -> bytes:
    flags = STMT_BULK_FLAG_CLIENT_SEND_TYPES if types is not None else 0
    return bytes((COM_STMT_BULK_EXECUTE,)) + stmt_id.to_bytes(4, "little") + flags.to_bytes(2, "little") + (types or b"") + ROWS


def test_the_types_a_client_sends_are_read() -> None:
    assert bulk_param_types(bulk(7, TYPES), 2) == TYPES
    assert bulk_param_types(bulk(7, None), 2) is None
    assert stmt_id_of(bulk(LAST_STMT_ID, TYPES)) == LAST_STMT_ID
    with pytest.raises(MalformedPacket):
        bulk_param_types(bulk(7, TYPES)[:9], 2)


def test_types_are_added_where_the_backend_statement_lacks_them() -> None:
    assert with_bulk_param_types(bulk(7, None), 9, TYPES) == bulk(9, TYPES)
    statement = BackendStatement(statement_id=9, num_params=2, num_columns=0, bound_types=TYPES)
    assert bulk_payload(bulk(LAST_STMT_ID, TYPES), statement, TYPES) == bulk(9, TYPES)
    statement.bound_types = TYPES
    assert bulk_payload(bulk(7, None), statement, TYPES) == bulk(9, None)  # bound there already
    assert statement.bound_types is None  # what a bulk run leaves bound is not guessed
    assert bulk_payload(bulk(7, None), statement, TYPES) == bulk(9, TYPES)
    with pytest.raises(ValueError, match="never bound"):
        bulk_payload(bulk(7, None), statement, None)
