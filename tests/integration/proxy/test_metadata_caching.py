"""MariaDB's metadata caching (MARIADB_CLIENT_CACHE_METADATA) through the proxy, with MariaDB
Connector/Python (libmariadb, which asks for it) beside clients that do not ask for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mariadb
import mysql.connector
import pytest

from proxy_harness import RunningProxy, split_config
from turnout.protocol.constants import MARIADB_CLIENT_CACHE_METADATA
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

SELECT = "SELECT * FROM c.m WHERE id = ?"
MARIADB_VERSION = "5.5.5-10.11.0-MariaDB"  # as MariaDB greets: MySQL clients read 5.5.5


def _setup(box: Sandbox) -> None:
    box.execute(
        0,
        "CREATE DATABASE IF NOT EXISTS c",
        "DROP TABLE IF EXISTS c.m",
        "CREATE TABLE c.m (id INT PRIMARY KEY, v INT)",
        "INSERT INTO c.m VALUES (1, 10), (2, 20)",
    )
    box.wait_replicas_caught_up()


def _connect(proxy: RunningProxy) -> Any:
    return mariadb.connect(host="127.0.0.1", port=proxy.port, user=APP.user, password=APP.password, autocommit=True)


def _learn_servers(proxy: RunningProxy, offered: bool = True) -> None:
    """Backend logins to the readers, so the proxy knows they offer metadata caching."""
    with proxy.connect() as conn, conn.cursor() as cur:
        for _ in range(20):
            cur.execute("SELECT 1")
    assert proxy.call(proxy.proxy.offers_metadata_caching) is offered


def _bytes_sent_by_readers(box: Sandbox) -> int:
    total = 0
    for node in (1, 2):
        rows = box.execute(node, "SHOW GLOBAL STATUS LIKE 'Bytes_sent'")
        total += int(rows[0]["Value"])
    return total


def _caching_sessions(proxy: RunningProxy) -> list[bool]:
    sessions = proxy.call(lambda: list(proxy.proxy.sessions.values()))
    return [bool(s.reply_capabilities & MARIADB_CLIENT_CACHE_METADATA) for s in sessions]


@pytest.fixture
def split_proxy(sandbox: Sandbox, start_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    """MariaDB clients use extended capabilities only with a server whose version says MariaDB:
    the proxy offers metadata caching when mysql-server_version says it."""
    return start_proxy(split_config(sandbox, **{"mysql-server_version": MARIADB_VERSION}))


def test_clients_are_greeted_with_mysql_server_version(sandbox: Sandbox,
                                                       start_proxy: Callable[..., RunningProxy]) -> None:
    _setup(sandbox)
    proxy = start_proxy(split_config(sandbox, **{"mysql-server_version": "8.0.34"}))
    _learn_servers(proxy, offered=False)  # the servers offer it, the configured version does not say MariaDB
    connection = _connect(proxy)
    try:
        assert connection.server_info == "8.0.34" and _caching_sessions(proxy) == [False]
    finally:
        connection.close()


def test_offered_once_the_servers_offer_it(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    _setup(sandbox)
    assert not split_proxy.call(split_proxy.proxy.offers_metadata_caching)  # no server known yet
    first = _connect(split_proxy)
    try:
        assert _caching_sessions(split_proxy) == [False]  # greeted before the proxy knew
        _learn_servers(split_proxy)
        second = _connect(split_proxy)
        try:
            assert sorted(_caching_sessions(split_proxy)) == [False, True]
            # mysql-server_version (libmariadb drops the 5.5.5- prefix, as with MariaDB itself)
            assert first.server_info == second.server_info == MARIADB_VERSION.removeprefix("5.5.5-")
            for conn in (first, second):
                cur = conn.cursor(prepared=True, binary=True)
                cur.execute(SELECT, (2,))
                assert cur.fetchall() == [(2, 20)]
        finally:
            second.close()
    finally:
        first.close()


def test_servers_leave_definitions_out_and_rows_stay_right(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    _setup(sandbox)
    _learn_servers(split_proxy)
    executes = 60

    caching = _connect(split_proxy)
    try:
        assert _caching_sessions(split_proxy) == [True]
        cur = caching.cursor(prepared=True, binary=True)
        cur.execute(SELECT, (1,))  # prepared everywhere it lands before counting
        cur.fetchall()
        before = _bytes_sent_by_readers(sandbox)
        for i in range(executes):
            cur.execute(SELECT, (1 + i % 2,))
            assert cur.fetchall() == [(1 + i % 2, 10 * (1 + i % 2))]
            assert [d[0] for d in cur.description] == ["id", "v"]
        with_caching = _bytes_sent_by_readers(sandbox) - before
    finally:
        caching.close()

    plain = mysql.connector.connect(
        host="127.0.0.1", port=split_proxy.port, user=APP.user, password=APP.password, autocommit=True, use_pure=True
    )
    try:
        pcur = plain.cursor(prepared=True)
        pcur.execute(SELECT, (1,))
        pcur.fetchall()
        before = _bytes_sent_by_readers(sandbox)
        for i in range(executes):
            pcur.execute(SELECT, (1 + i % 2,))
            assert pcur.fetchall() == [(1 + i % 2, 10 * (1 + i % 2))]
        without_caching = _bytes_sent_by_readers(sandbox) - before
    finally:
        plain.close()
    # Two column definitions (about 35 bytes each) fewer per result: the servers left them out
    # (less one PrepareOk and one full result where the session first lands on the other reader).
    assert without_caching - with_caching >= executes * 2 * 25


def test_definitions_the_client_lacks_are_put_back(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    """The client's cached definitions are the proxy's cached PrepareOk, from before a schema
    change that reached the readers only; the readers' statements, prepared after it, leave theirs
    out. The proxy puts them back in, so the client decodes the rows with the right ones."""
    _setup(sandbox)
    _learn_servers(split_proxy)
    first = _connect(split_proxy)
    try:
        cur = first.cursor(prepared=True, binary=True)
        cur.execute(SELECT, (1,))
        assert cur.fetchall() == [(1, 10)]  # the proxy's cached PrepareOk has 2 columns now
    finally:
        first.close()
    for node in (1, 2):
        sandbox.execute(node, "SET SESSION sql_log_bin = 0", "ALTER TABLE c.m MODIFY v VARCHAR(20)")
    try:
        # Statements prepared before the change are gone with their connections.
        split_proxy.call(lambda: split_proxy.proxy.pools.close_idle(older_than=0))
        second = _connect(split_proxy)
        try:
            cur = second.cursor(prepared=True, binary=True)
            for i in range(6):
                cur.execute(SELECT, (1 + i % 2,))
                # Decoded with the client's cached INT definition, the string would be garbage.
                assert cur.fetchall() == [(1 + i % 2, str(10 * (1 + i % 2)))]
        finally:
            second.close()
        assert split_proxy.call(lambda: split_proxy.proxy.stats.counters.metadata_restored) >= 1
    finally:
        for node in (1, 2):
            sandbox.execute(node, "SET SESSION sql_log_bin = 0", "ALTER TABLE c.m MODIFY v INT")
