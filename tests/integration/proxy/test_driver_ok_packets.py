"""OK packets the proxy builds itself (a query rule's OK_msg) carry their info field encoded as
the server encodes it, with and without session tracking, so drivers read the same message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import mysql.connector
import pytest

from driver_harness import RawClient, Target, single_config
from proxy_harness import RunningProxy
from turnout.config.model import QueryRule
from turnout.protocol import constants as c
from turnout.protocol.packets import encode_packet, read_lenenc_uint
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

INFO = "Rows matched: 1  Changed: 1  Warnings: 0"
UPDATE = "UPDATE drv.okmsg SET v = v + 1 WHERE id = 1"


@pytest.fixture
def ok_msg_proxy(drv_schema: Sandbox, start_proxy: Callable[..., RunningProxy], no_session_crash: None) -> list[Target]:
    """The server, where the UPDATE runs and reports what it matched, and the proxy, where a
    rule answers the same UPDATE with an OK carrying the same message."""
    drv_schema.execute(0, "CREATE OR REPLACE TABLE drv.okmsg (id INT PRIMARY KEY, v INT)", "INSERT INTO drv.okmsg VALUES (1, 0)")
    config = single_config(drv_schema)
    rule = QueryRule(rule_id=1, active=1, match_pattern="drv.okmsg", OK_msg=INFO, apply=1)
    proxy = start_proxy(replace(config, query_rules=(rule, *config.query_rules)))
    return [Target("direct", drv_schema.nodes[0].port), Target("proxy", proxy.port)]


def test_ok_msg_info_read_by_connector(ok_msg_proxy: list[Target]) -> None:
    seen = {}
    for target in ok_msg_proxy:
        conn = mysql.connector.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                                       autocommit=True, use_pure=True, connection_timeout=10)
        try:
            seen[target.name] = conn.cmd_query(UPDATE).get("info_msg")
        finally:
            conn.close()
    assert seen == {"direct": INFO, "proxy": INFO}


def _info_field(port: int, caps: int) -> bytes:
    """The bytes of the UPDATE's OK after its status flags and warning count."""
    client = RawClient(port, caps)
    try:
        client.sock.sendall(encode_packet(b"\x03" + UPDATE.encode(), 0))
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:3], "little"):
            chunk = client.sock.recv(65536)
            assert chunk
            data += chunk
        payload = data[4:4 + int.from_bytes(data[:3], "little")]
        assert payload[0] == 0, payload
        pos = 1
        for _ in range(2):  # affected rows, last insert id
            _, pos = read_lenenc_uint(payload, pos)
        return payload[pos + 4:]
    finally:
        client.close()


@pytest.mark.parametrize("tracking", [False, True], ids=["plain", "session tracking"])
def test_ok_msg_info_bytes_are_the_servers(ok_msg_proxy: list[Target], tracking: bool) -> None:
    caps = (c.DEFAULT_SERVER_CAPABILITIES | (c.CLIENT_SESSION_TRACK if tracking else 0)) & ~c.CLIENT_NO_SCHEMA
    direct, proxied = (_info_field(target.port, caps) for target in ok_msg_proxy)
    assert direct == bytes((len(INFO),)) + INFO.encode()
    assert proxied == direct
