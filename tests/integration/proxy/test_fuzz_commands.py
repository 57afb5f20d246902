"""Random bytes as command payloads, after a real login, to a proxy in front of real servers.

Each example logs in on a plain socket, sends one random command, then COM_QUIT, and reads
until the proxy closes the connection. The proxy must answer or close — never hang, never let a
session die of an unexpected exception — and a PyMySQL client must keep working, with only its
own session, all along. Afterwards the proxy's bookkeeping must match what is connected.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy_harness import RunningProxy, split_config
from turnout.config.model import RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.client import ClientHandshake
from turnout.protocol.events import AuthDone
from turnout.protocol.packets import PacketBuffer, encode_packet
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

WAIT = 10.0  # seconds the proxy may take to answer one example, at most
COMMANDS = [*range(0x00, 0x20), 0x20, 0x7F, 0xFE, 0xFF]
payloads = st.one_of(
    st.binary(min_size=1, max_size=80),
    st.tuples(st.sampled_from(COMMANDS), st.binary(max_size=80)).map(lambda t: bytes([t[0]]) + t[1]),
)


def login(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    handshake = ClientHandshake(APP.user, password=APP.password, capabilities=c.DEFAULT_CLIENT_CAPABILITIES)
    packets = PacketBuffer()
    while True:
        packet = packets.next_packet()
        if packet is None:
            data = sock.recv(65536)
            assert data, "the proxy closed the connection during login"
            packets.feed(data)
            continue
        outcome = handshake.receive(packet)
        if isinstance(outcome, AuthDone):
            return sock
        assert isinstance(outcome, bytes), outcome
        sock.sendall(outcome)


def read_until_closed(sock: socket.socket) -> None:
    with contextlib.suppress(ConnectionResetError):
        while sock.recv(65536):
            pass


def test_random_command_payloads(
    sandbox: Sandbox, start_proxy: Callable[[RuntimeConfig], RunningProxy], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    running = start_proxy(split_config(sandbox, **{"mysql-max_allowed_packet": str(1 << 20)}))
    healthy = running.connect()
    with healthy.cursor() as cur:
        cur.execute("SET time_zone = '+02:00'")

    @settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payloads)
    def one_command(payload: bytes) -> None:
        sock = login(running.port)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed already: fine
            sock.sendall(encode_packet(payload, 0) + encode_packet(bytes([c.COM_QUIT]), 0))
        read_until_closed(sock)  # an answer or not, then the close (a timeout fails the example)
        sock.close()
        with healthy.cursor() as cur:
            cur.execute("SELECT @@session.time_zone, 6 * 7")
            assert cur.fetchone() == ("+02:00", 42)
            cur.execute("SHOW SESSION VARIABLES LIKE 'time_zone'")
            assert cur.fetchone() == ("time_zone", "+02:00")

    one_command()

    def consistent() -> bool:
        proxy = running.proxy
        held = sum(1 for s in proxy.sessions.values() if s.kept is not None)
        pools = proxy.pools.servers.values()
        return (
            len(proxy.sessions) == 1
            and {k: v for k, v in proxy.connections_by_user.items() if v} == {APP.user: 1}
            and sum(p.stats.conn_used for p in pools) == held
            and all(
                p.stats.conn_free == sum(len(q) for q in p.idle.values())
                and all(conn.idle_usable() for q in p.idle.values() for conn in q)
                for p in pools
            )
        )

    deadline = time.monotonic() + WAIT
    while not running.call(consistent):
        assert time.monotonic() < deadline, "the proxy's bookkeeping never settled"
        time.sleep(0.02)
    healthy.close()
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() + (r.exc_text or "") for r in crashes]
