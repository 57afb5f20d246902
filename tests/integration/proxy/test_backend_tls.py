"""TLS from the proxy to servers with `use_ssl = 1`, checked on the servers themselves
(`Ssl_cipher` of the connection a statement ran on), with a CA that verifies them, one that does
not, and a server that offers no TLS."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from proxy_harness import READER, WRITER, RunningProxy, split_config
from turnout.certificates import CA_FILE, generate_certificates
from turnout.config.model import RuntimeConfig
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

CIPHER_ON_WRITER = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher' FOR UPDATE"
CIPHER_ON_READER = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'"


def _use_ssl_config(box: Sandbox, **variables: str) -> RuntimeConfig:
    config = split_config(box, **{"mysql-connect_timeout_server_max": "1500", **variables})
    return dataclasses.replace(config, servers=tuple(dataclasses.replace(s, use_ssl=1) for s in config.servers))


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A master and a replica that offer TLS, with the certificate the sandbox made."""
    box = Sandbox.create(tmp_path_factory.mktemp("tls") / "sbx", free_port_block(2), replicas=1, tls=True)
    try:
        box.execute(0, "CREATE DATABASE IF NOT EXISTS btls", "CREATE TABLE IF NOT EXISTS btls.t (id INT PRIMARY KEY, v LONGBLOB)")
        box.wait_replicas_caught_up()
        yield box
    finally:
        box.down(destroy=True)


def test_statements_reach_use_ssl_servers_over_tls(
    tls_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy]
) -> None:
    proxy = start_proxy(_use_ssl_config(tls_sandbox, **{"mysql-ssl_p2s_ca": str(tls_sandbox.dir / "tls" / CA_FILE)}))
    with proxy.connect(ssl_disabled=True) as conn, conn.cursor() as cur:
        cur.execute(CIPHER_ON_WRITER)
        assert cur.fetchone()[0], "the writer's connection is not TLS"
        cur.execute(CIPHER_ON_READER)
        assert cur.fetchone()[0], "the reader's connection is not TLS"
        cur.execute("REPLACE INTO btls.t VALUES (1, REPEAT('y', 3000000))")
        cur.execute("SELECT LENGTH(v), v FROM btls.t WHERE id = 1 FOR UPDATE")
        length, value = cur.fetchone()
        assert length == 3_000_000 and value == b"y" * 3_000_000
    # Prepared statements (the binary protocol, relayed by the fast path) over the same TLS.
    conn2: Any = mysql.connector.connect(
        host="127.0.0.1", port=proxy.port, user=APP.user, password=APP.password, ssl_disabled=True, use_pure=True
    )
    try:
        cur2 = conn2.cursor(prepared=True)
        for n in range(50):
            cur2.execute("SELECT ? * 2", (n,))
            assert cur2.fetchall() == [(n * 2,)]
    finally:
        conn2.close()


def test_a_server_certificate_the_ca_does_not_sign_is_refused(
    tls_sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    generate_certificates(tmp_path)  # another CA
    proxy = start_proxy(_use_ssl_config(tls_sandbox, **{"mysql-ssl_p2s_ca": str(tmp_path / CA_FILE)}))
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    with proxy.connect(ssl_disabled=True) as conn, conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError) as failed:
        cur.execute("SELECT 1 FOR UPDATE")
    assert failed.value.args[0] == 9001 and f"hostgroup {WRITER}" in failed.value.args[1]
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_use_ssl_to_a_server_without_tls_is_refused_saying_why(
    sandbox: Sandbox, start_proxy: Callable[..., RunningProxy], caplog: pytest.LogCaptureFixture
) -> None:
    config = _use_ssl_config(sandbox)
    plain_reader = tuple(dataclasses.replace(s, use_ssl=0) if s.hostgroup_id == READER else s for s in config.servers)
    proxy = start_proxy(dataclasses.replace(config, servers=plain_reader))
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    with proxy.connect(ssl_disabled=True) as conn, conn.cursor() as cur:
        cur.execute(CIPHER_ON_READER)  # use_ssl = 0: plain, and working
        assert cur.fetchone()[0] == ""
        with pytest.raises(pymysql.err.MySQLError) as failed:
            cur.execute("SELECT 1 FOR UPDATE")
        assert failed.value.args[0] == 9001
    assert any("does not offer TLS" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_the_monitor_reaches_use_ssl_servers_over_tls(tls_sandbox: Sandbox, tmp_path: Path) -> None:
    """A server that accepts TLS connections only (require_secure_transport): the monitor's
    checks use TLS like the proxy's connections, so the server stays ONLINE and serves reads."""
    replica = tls_sandbox.nodes[1]
    proxy_port = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(
        sandbox_config(tls_sandbox, tmp_path / "data", proxy_port, proxy_port + 1)
        .replace("max_replication_lag = 10\n", "max_replication_lag = 10\nuse_ssl = 1\n")
    )
    tls_sandbox.execute(1, "SET GLOBAL require_secure_transport = ON")
    process = subprocess.Popen(
        [sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        pings: list[Any] = []
        while time.monotonic() < deadline:
            try:
                admin = pymysql.connect(host="127.0.0.1", port=proxy_port + 1, user="admin", password="admin")
                with admin, admin.cursor() as cur:
                    cur.execute("SELECT ping_error FROM monitor.mysql_server_ping_log WHERE port = %s "
                                "ORDER BY time_start_us DESC LIMIT 3", (replica.port,))
                    pings = [row[0] for row in cur.fetchall()]
                    if len(pings) == 3:
                        break
            except pymysql.err.OperationalError:
                pass
            time.sleep(0.2)
        assert len(pings) == 3 and pings == [None, None, None], pings
        with pymysql.connect(host="127.0.0.1", port=proxy_port, user=APP.user, password=APP.password,
                             ssl_disabled=True) as conn, conn.cursor() as cur:
            cur.execute(CIPHER_ON_READER)
            assert cur.fetchone()[0], "the read did not go over TLS"
        admin = pymysql.connect(host="127.0.0.1", port=proxy_port + 1, user="admin", password="admin")
        with admin, admin.cursor() as cur:
            cur.execute("SELECT status FROM runtime_mysql_servers WHERE port = %s", (replica.port,))
            assert {row[0] for row in cur.fetchall()} == {"ONLINE"}
    finally:
        tls_sandbox.execute(1, "SET GLOBAL require_secure_transport = OFF")
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
