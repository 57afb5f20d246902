"""Fixtures for driver-behaviour tests: one proxy in front of the master alone (a single
hostgroup, no read/write split, so any difference from the server is the proxy's), and a way to
run the same scenario against the server directly and through the proxy."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from proxy_harness import WRITER, RunningProxy
from turnout.config.model import MysqlServer, MysqlUser, RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.client import ClientHandshake
from turnout.protocol.commands import build_query
from turnout.protocol.events import AuthDone, AuthFailed
from turnout.protocol.packets import PacketBuffer, encode_packet
from turnout.sandbox.config import APP, MONITOR
from turnout.sandbox.sandbox import Sandbox


def single_config(box: Sandbox, **variables: str) -> RuntimeConfig:
    """The master alone in one hostgroup; `app` and `monitor` may log in. Clients are greeted with
    the server's own version, as MariaDB greets them (MariaDB clients use MariaDB's extended
    capabilities only with a server whose version says MariaDB)."""
    version = box.execute(0, "SELECT VERSION() AS v")[0]["v"]
    variables = {"mysql-server_version": f"5.5.5-{version}", **variables}
    return RuntimeConfig(
        version=1,
        servers=(MysqlServer(WRITER, "127.0.0.1", box.nodes[0].port),),
        users=(
            MysqlUser(APP.user, APP.password, default_hostgroup=WRITER),
            MysqlUser(MONITOR.user, MONITOR.password, default_hostgroup=WRITER),
        ),
        variables={"mysql-connect_timeout_server_max": "5000", **variables},
    )


@dataclass(frozen=True)
class Target:
    """Where a scenario's clients connect: the server itself, or the proxy in front of it."""

    name: str
    port: int


@pytest.fixture
def no_session_crash(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No session may end in an unexpected exception (the proxy logs those as errors)."""
    caplog.set_level(logging.WARNING, logger="turnout.proxy")
    yield
    crashes = [r for r in caplog.records if r.name.startswith("turnout.proxy") and r.levelno >= logging.ERROR]
    assert not crashes, [r.getMessage() + (r.exc_text or "") for r in crashes]


@pytest.fixture
def drv_schema(sandbox: Sandbox) -> Sandbox:
    sandbox.execute(
        0,
        "CREATE DATABASE IF NOT EXISTS drv",
        "CREATE DATABASE IF NOT EXISTS drv2",
        "CREATE OR REPLACE TABLE drv.t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO drv.t VALUES (1, 10), (2, 20), (3, 30), (4, 40)",
        "CREATE OR REPLACE TABLE drv.b (id INT PRIMARY KEY, s VARCHAR(20) DEFAULT 'dflt')",
        "CREATE OR REPLACE TABLE drv.j (id INT PRIMARY KEY, doc JSON)",
        "INSERT INTO drv.j VALUES (1, '{\"a\": 1}')",
    )
    return sandbox


@pytest.fixture
def single(drv_schema: Sandbox, start_proxy: Callable[..., RunningProxy], no_session_crash: None) -> RunningProxy:
    return start_proxy(single_config(drv_schema))


@pytest.fixture
def both(drv_schema: Sandbox, single: RunningProxy) -> list[Target]:
    """The master directly, then the proxy in front of it: a scenario must see the same from both."""
    return [Target("direct", drv_schema.nodes[0].port), Target("proxy", single.port)]


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """What a client observes: the value, or ("error", code) for a driver's error."""
    try:
        return fn(*args)
    except Exception as exc:  # every driver's errors carry the code first or as errno
        code = getattr(exc, "errno", None)
        if code is None and exc.args and isinstance(exc.args[0], int):
            code = exc.args[0]
        return ("error", code)


class RawClient:
    """A logged-in MySQL client on a plain socket, which sends exactly what a test asks for and
    may leave without reading the answer."""

    def __init__(self, port: int, capabilities: int = c.DEFAULT_CLIENT_CAPABILITIES, database: str | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.unread = b""  # bytes received past the response a test read
        packets = PacketBuffer()
        handshake = ClientHandshake(APP.user, password=APP.password, capabilities=capabilities, database=database)
        while True:
            packet = packets.next_packet()
            if packet is None:
                data = self.sock.recv(65536)
                assert data, "the proxy closed the connection during login"
                packets.feed(data)
                continue
            step = handshake.receive(packet)
            if isinstance(step, AuthDone):
                return
            assert not isinstance(step, AuthFailed), step
            if step is not None:
                self.sock.sendall(step)

    def send_query(self, sql: str) -> None:
        self.sock.sendall(encode_packet(build_query(sql), 0))

    def close(self) -> None:
        self.sock.close()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
