"""TLS between clients and the proxy (`mysql-have_ssl`), with real clients verifying the
certificate turnout generates, and the cases a TLS front end gets wrong: the client's hello in
the same segment as its SSLRequest, a broken handshake, a user that must use TLS."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from proxy_harness import READER, WRITER, RunningProxy, server_counter, split_config
from turnout.config.model import MysqlUser, RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.auth import scramble_native, stage1
from turnout.protocol.commands import build_query
from turnout.protocol.handshake import (
    HandshakeResponse,
    build_handshake_response,
    build_ssl_request,
    parse_greeting,
)
from turnout.protocol.packets import PacketBuffer, encode_packet
from turnout.protocol.response import ResponseFramer
from turnout.proxy.tls import CA_FILE, CERT_FILE, KEY_FILE, TlsLayer, generate_certificates, server_context
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

StartProxy = Callable[..., RunningProxy]


def _tls_config(box: Sandbox, *users: MysqlUser) -> RuntimeConfig:
    config = split_config(box, **{"mysql-have_ssl": "true", "mysql-connect_timeout_client": "2000"})
    return dataclasses.replace(config, users=config.users + users)


@pytest.fixture
def tls_proxy(sandbox: Sandbox, start_proxy: StartProxy, tmp_path: Path) -> RunningProxy:
    sandbox.execute(
        0,
        "CREATE DATABASE IF NOT EXISTS tls",
        "CREATE TABLE IF NOT EXISTS tls.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))",
        "DELETE FROM tls.t",
        f"CREATE USER IF NOT EXISTS 'secure'@'%' IDENTIFIED BY '{APP.password}'",
        "GRANT ALL ON *.* TO 'secure'@'%'",
    )
    sandbox.wait_replicas_caught_up()
    return start_proxy(_tls_config(sandbox, MysqlUser("secure", APP.password, default_hostgroup=WRITER, use_ssl=1)), datadir=tmp_path)


def _pymysql_tls(proxy: RunningProxy, ca: Path, **kwargs: Any) -> pymysql.Connection[Any]:
    return proxy.connect(ssl_ca=str(ca), ssl_verify_cert=True, ssl_verify_identity=True, **kwargs)


def test_generated_certificate_files(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    for name in (CA_FILE, CERT_FILE, KEY_FILE):
        assert (tmp_path / name).read_text().startswith("-----BEGIN ")
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert ssl.create_default_context(cafile=str(tmp_path / CA_FILE)).cert_store_stats()["x509_ca"] == 1
    # The next start uses the same files instead of making new ones.
    before = (tmp_path / CERT_FILE).read_bytes()
    server_context(tmp_path)
    assert (tmp_path / CERT_FILE).read_bytes() == before


def test_pymysql_verifies_the_certificate_and_routes_as_usual(
    sandbox: Sandbox, tls_proxy: RunningProxy, tmp_path: Path
) -> None:
    reads_before = [server_counter(sandbox, n, "Com_select") for n in range(3)]
    with _pymysql_tls(tls_proxy, tmp_path / CA_FILE) as conn, conn.cursor() as cur:
        sock = conn._sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        cur.execute("INSERT INTO tls.t (v) VALUES ('over tls')")
        cur.execute("BEGIN")
        cur.execute("SELECT v FROM tls.t FOR UPDATE")
        assert cur.fetchall() == (("over tls",),)
        cur.execute("COMMIT")
        sandbox.wait_replicas_caught_up()
        for _ in range(20):
            cur.execute("SELECT COUNT(*) FROM tls.t")
            assert cur.fetchone() == (1,)
        # A result far larger than one TLS record comes back whole.
        cur.execute("SELECT REPEAT('x', 1000000) FROM tls.t")
        assert len(cur.fetchone()[0]) == 1_000_000
    reads_after = [server_counter(sandbox, n, "Com_select") for n in range(3)]
    replica_reads = sum(reads_after[1:]) - sum(reads_before[1:])
    assert replica_reads >= 20, (reads_before, reads_after, READER)


def test_mariadb_cli_over_tls(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    out = subprocess.run(
        ["mariadb", "-h127.0.0.1", f"-P{tls_proxy.port}", f"-u{APP.user}", f"-p{APP.password}",
         "--ssl", f"--ssl-ca={tmp_path / CA_FILE}", "--ssl-verify-server-cert", "-e", "status; SELECT 40 + 2"],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "Cipher in use is" in out.stdout
    assert "42" in out.stdout


def test_mysql_connector_verifies_against_the_right_ca_only(
    tls_proxy: RunningProxy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    def connect(ca: Path) -> Any:
        return mysql.connector.connect(
            host="127.0.0.1", port=tls_proxy.port, user=APP.user, password=APP.password,
            ssl_ca=str(ca), ssl_verify_cert=True, use_pure=True, connection_timeout=10,
        )

    conn = connect(tmp_path / CA_FILE)
    try:
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ? + 1", (41,))
        assert cur.fetchall() == [(42,)]
    finally:
        conn.close()

    other = tmp_path_factory.mktemp("other-ca")
    generate_certificates(other)
    with pytest.raises(mysql.connector.Error):
        connect(other / CA_FILE).close()


def test_a_use_ssl_user_must_come_over_tls(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    # Clients prefer TLS when the proxy offers it (PyMySQL, mysql-connector): ask for plain.
    with pytest.raises(pymysql.err.OperationalError) as refused:
        tls_proxy.connect(user="secure", ssl_disabled=True)
    assert refused.value.args[0] == c.ER_ACCESS_DENIED_ERROR
    assert "SSL is required" in refused.value.args[1]
    with _pymysql_tls(tls_proxy, tmp_path / CA_FILE, user="secure") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    # Changing to that user without TLS is refused too; over TLS it is allowed.
    plain = mysql.connector.connect(
        host="127.0.0.1", port=tls_proxy.port, user=APP.user, password=APP.password, ssl_disabled=True, use_pure=True
    )
    with pytest.raises(mysql.connector.Error) as changed:
        plain.cmd_change_user(username="secure", password=APP.password)
    assert changed.value.errno == c.ER_ACCESS_DENIED_ERROR and "SSL is required" in str(changed.value)
    secure = mysql.connector.connect(
        host="127.0.0.1", port=tls_proxy.port, user=APP.user, password=APP.password,
        ssl_ca=str(tmp_path / CA_FILE), ssl_verify_cert=True, use_pure=True,
    )
    try:
        secure.cmd_change_user(username="secure", password=APP.password)
        cur = secure.cursor()
        cur.execute("SELECT CURRENT_USER() IS NOT NULL")
        assert cur.fetchall() == [(1,)]
    finally:
        secure.close()


def test_tls_off_leaves_plain_clients_as_they_were(sandbox: Sandbox, start_proxy: StartProxy, tmp_path: Path) -> None:
    proxy = start_proxy(split_config(sandbox), datadir=tmp_path)
    with socket.create_connection(("127.0.0.1", proxy.port)) as raw:
        greeting = parse_greeting(_read_packet(raw, PacketBuffer()).payload)
    assert not greeting.capabilities & c.CLIENT_SSL
    assert not (tmp_path / CERT_FILE).exists()


def _read_packet(sock: socket.socket | ssl.SSLSocket, buffer: PacketBuffer) -> Any:
    while (packet := buffer.next_packet()) is None:
        data = sock.recv(65536)
        assert data, "the proxy closed the connection"
        buffer.feed(data)
    return packet


class RawTlsClient:
    """A MySQL client written out by hand over TLS in memory buffers, for what real client
    libraries never do: the hello in the SSLRequest's segment, pipelined statements."""

    def __init__(self, port: int, ca: Path) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.greeting = parse_greeting(_read_packet(self.sock, PacketBuffer()).payload)
        self.capabilities = (c.DEFAULT_CLIENT_CAPABILITIES | c.CLIENT_SSL) & self.greeting.capabilities
        self.tls = TlsLayer(ssl.create_default_context(cafile=str(ca)), server_side=False, server_hostname="127.0.0.1")
        self.packets = PacketBuffer()

    def start_tls_in_one_segment(self) -> None:
        self.sock.sendall(encode_packet(build_ssl_request(self.capabilities, 1 << 24, 45), 1) + self.tls.start())
        while not self.tls.handshake_done:
            data = self.sock.recv(65536)
            assert data, "the proxy closed the connection during the TLS handshake"
            _, reply = self.tls.receive(data)
            if reply:
                self.sock.sendall(reply)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(self.tls.send(payload))

    def packet(self) -> Any:
        while (packet := self.packets.next_packet()) is None:
            data = self.sock.recv(65536)
            assert data, "the proxy closed the connection"
            plain, reply = self.tls.receive(data)
            if reply:
                self.sock.sendall(reply)
            self.packets.feed(plain)
        return packet

    def result_payloads(self) -> list[bytes]:
        """The payloads of one whole answer."""
        framer = ResponseFramer(c.COM_QUERY)
        payloads = []
        while not framer.done:
            packet = self.packet()
            framer.feed(encode_packet(packet.payload, packet.seq))
            payloads.append(packet.payload)
        return payloads

    def login(self) -> None:
        response = HandshakeResponse(
            capabilities=self.capabilities, max_packet_size=1 << 24, charset=45, username=APP.user,
            auth_response=scramble_native(stage1(APP.password), self.greeting.salt), auth_plugin=c.NATIVE_PASSWORD,
        )
        self.send(encode_packet(build_handshake_response(response), 2))
        ok = self.packet()
        assert ok.payload[0] == 0x00, f"expected OK after login over TLS, got {ok.payload!r}"


def test_client_hello_in_the_same_segment_as_the_ssl_request(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    """Clients send their TLS hello without waiting: it may be read together with the
    SSLRequest. Here both go in one write, and the login goes on over TLS."""
    client = RawTlsClient(tls_proxy.port, tmp_path / CA_FILE)
    with client.sock:
        client.start_tls_in_one_segment()
        client.login()


def test_pipelined_statements_over_tls_are_answered_in_order(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    client = RawTlsClient(tls_proxy.port, tmp_path / CA_FILE)
    with client.sock:
        client.start_tls_in_one_segment()
        client.login()
        # Three statements in one TLS record: the fast path takes one at a time, in order.
        client.send(b"".join(encode_packet(build_query(f"SELECT {n}"), 0) for n in (11, 22, 33)))
        for n in (11, 22, 33):
            assert _text_row(n) in client.result_payloads()


def _text_row(n: int) -> bytes:
    text = str(n).encode()
    return bytes([len(text)]) + text


def test_a_client_leaving_mid_handshake_costs_nothing(
    tls_proxy: RunningProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    for cut in ("after the SSLRequest", "after the hello"):
        client = RawTlsClient(tls_proxy.port, tmp_path / CA_FILE)
        request = encode_packet(build_ssl_request(client.capabilities, 1 << 24, 45), 1)
        client.sock.sendall(request if cut == "after the SSLRequest" else request + client.tls.start())
        client.sock.close()
    deadline = time.monotonic() + 5
    while tls_proxy.call(lambda: len(tls_proxy.proxy.sessions)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tls_proxy.call(lambda: len(tls_proxy.proxy.sessions)) == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
    with _pymysql_tls(tls_proxy, tmp_path / CA_FILE) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_a_broken_handshake_closes_only_that_client(tls_proxy: RunningProxy, tmp_path: Path) -> None:
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=10) as raw:
        greeting = parse_greeting(_read_packet(raw, PacketBuffer()).payload)
        capabilities = (c.DEFAULT_CLIENT_CAPABILITIES | c.CLIENT_SSL) & greeting.capabilities
        raw.sendall(encode_packet(build_ssl_request(capabilities, 1 << 24, 45), 1) + b"\x16\x03\x01 not TLS at all" * 4)
        # The proxy may send a TLS alert; then it closes (or resets) this connection.
        with contextlib.suppress(ConnectionResetError):
            while raw.recv(65536):
                pass
    with _pymysql_tls(tls_proxy, tmp_path / CA_FILE) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)


def test_sysbench_over_tls_takes_the_fast_path(
    sandbox: Sandbox, tls_proxy: RunningProxy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # sysbench's --mysql-ssl=on reads cacert.pem, client-cert.pem and client-key.pem from its
    # working directory; the proxy asks for no client certificate, so any valid pair does.
    workdir = tmp_path_factory.mktemp("sysbench-tls")
    (workdir / "cacert.pem").write_bytes((tmp_path / CA_FILE).read_bytes())
    (workdir / "client-cert.pem").write_bytes((tmp_path / CERT_FILE).read_bytes())
    (workdir / "client-key.pem").write_bytes((tmp_path / KEY_FILE).read_bytes())
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS sbtls")
    common = ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={tls_proxy.port}",
              f"--mysql-user={APP.user}", f"--mysql-password={APP.password}", "--mysql-db=sbtls",
              "--mysql-ssl=on", "--tables=1", "--table-size=500"]
    subprocess.run([*common, "oltp_read_write", "cleanup"], capture_output=True, text=True, timeout=60, cwd=workdir)
    prepared = subprocess.run(
        [*common, "oltp_read_write", "prepare"], capture_output=True, text=True, timeout=120, cwd=workdir
    )
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    sandbox.wait_replicas_caught_up()
    fast_before = tls_proxy.call(lambda: tls_proxy.proxy.stats.counters.statements_fast_path)
    run = subprocess.run([*common, "--threads=4", "--time=3", "oltp_read_write", "run"],
                         capture_output=True, text=True, timeout=120, cwd=workdir)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "FATAL" not in run.stdout + run.stderr
    fast_after = tls_proxy.call(lambda: tls_proxy.proxy.stats.counters.statements_fast_path)
    assert fast_after - fast_before > 100
