"""The checks of one server: four independent asyncio tasks (connect, ping, read_only, replication).

One task per check per server, each bounded by its own timeout, so a hung server only ever
delays its own checks. Results go to the log tables and, as a health update, to the Monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
from collections.abc import Awaitable, Callable

from turnout.monitor import probes
from turnout.monitor.health import Address, ServerHealth
from turnout.monitor.logs import CONNECT_LOG, PING_LOG, READ_ONLY_LOG, REPLICATION_LAG_LOG, MonitorLog
from turnout.monitor.probes import ConnectAttempt, MonitorConnection, ProbeError
from turnout.monitor.settings import MonitorSettings

Update = Callable[[ServerHealth], ServerHealth]
Apply = Callable[[Address, Update], None]

log = logging.getLogger(__name__)


class ServerChecks:
    def __init__(
        self, address: Address, settings: MonitorSettings, apply: Apply, logs: MonitorLog,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self._settings = settings
        self._apply = apply
        self._logs = logs
        self.tls = tls  # the server's use_ssl: the monitor connects as the proxy does
        self._conn = MonitorConnection(address, settings.username, settings.password, self._connected, tls)
        self._replication_now = asyncio.Event()
        self._read_only_now = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        s = self._settings
        host, port = self.address
        self._tasks = [
            asyncio.create_task(
                self._every(s.connect_interval_ms, self._check_connect), name=f"connect {host}:{port}"
            ),
            asyncio.create_task(
                self._every(s.ping_interval_ms, self._check_ping), name=f"ping {host}:{port}"
            ),
            asyncio.create_task(
                self._every(s.read_only_interval_ms, self._check_read_only, self._read_only_now),
                name=f"read_only {host}:{port}",
            ),
            asyncio.create_task(
                self._every(s.replication_lag_interval_ms, self._check_replication, self._replication_now),
                name=f"replication {host}:{port}",
            ),
        ]

    def check_read_only_now(self) -> None:
        """Run the read_only check at once (the manager published a change of master)."""
        self._read_only_now.set()

    def check_replication_now(self) -> None:
        """Run the replication check at once (read_only changed: routing needs both together)."""
        self._replication_now.set()

    def cancel(self) -> list[asyncio.Task[None]]:
        for task in self._tasks:
            task.cancel()
        self._conn.close()
        tasks, self._tasks = self._tasks, []
        return tasks

    async def _every(
        self, interval_ms: int, check: Callable[[], Awaitable[None]], wake: asyncio.Event | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            if wake is not None:
                wake.clear()
            try:
                await check()
            except Exception:  # a bug in a check must not stop monitoring
                log.exception("monitor check of %s:%d failed", *self.address)
            delay = max(0.0, interval_ms / 1000 - (loop.time() - started))
            if wake is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()

    # ---- connect -------------------------------------------------------------------------------
    async def _check_connect(self) -> None:
        s = self._settings
        attempt = await probes.probe_connect(
            self.address, s.username, s.password, s.connect_timeout_ms / 1000, self.tls
        )
        self._connected(attempt)

    def _connected(self, attempt: ConnectAttempt) -> None:
        host, port = self.address
        self._logs.add(CONNECT_LOG, (host, port, attempt.started_us, attempt.duration_us, attempt.error))
        self._apply(
            self.address,
            lambda h: dataclasses.replace(
                h,
                connect_ok=attempt.error is None,
                connect_error=attempt.error,
                connect_time_us=attempt.duration_us,
            ),
        )

    # ---- ping ------------------------------------------------------------------------------------
    async def _check_ping(self) -> None:
        started, clock = probes.now_us(), time.monotonic()
        host, port = self.address
        try:
            await self._conn.call(probes.ping, self._settings.ping_timeout_ms / 1000)
        except ProbeError as exc:
            error = str(exc)
            self._logs.add(PING_LOG, (host, port, started, 0, error))
            self._apply(
                self.address,
                lambda h: dataclasses.replace(
                    h, ping_ok=False, ping_error=error, ping_failures=h.ping_failures + 1
                ),
            )
            return
        took = _us_since(clock)
        self._logs.add(PING_LOG, (host, port, started, took, None))
        self._apply(
            self.address,
            lambda h: dataclasses.replace(
                h, ping_ok=True, ping_error=None, ping_time_us=took, ping_failures=0
            ),
        )

    # ---- read_only -------------------------------------------------------------------------------
    async def _check_read_only(self) -> None:
        started, clock = probes.now_us(), time.monotonic()
        host, port = self.address
        try:
            value = await self._conn.call(probes.read_only, self._settings.read_only_timeout_ms / 1000)
        except ProbeError as exc:
            error = str(exc)
            self._logs.add(READ_ONLY_LOG, (host, port, started, 0, None, error))
            self._apply(
                self.address,
                lambda h: dataclasses.replace(
                    h, read_only_error=error, read_only_failures=h.read_only_failures + 1
                ),
            )
            return
        self._logs.add(READ_ONLY_LOG, (host, port, started, _us_since(clock), int(value), None))
        self._apply(
            self.address,
            lambda h: dataclasses.replace(h, read_only=value, read_only_error=None, read_only_failures=0),
        )

    # ---- replication -----------------------------------------------------------------------------
    async def _check_replication(self) -> None:
        started, clock = probes.now_us(), time.monotonic()
        host, port = self.address
        try:
            status = await self._conn.call(
                probes.replication, self._settings.replication_lag_timeout_ms / 1000
            )
        except ProbeError as exc:
            error = str(exc)
            self._logs.add(REPLICATION_LAG_LOG, (host, port, started, 0, None, error))
            self._apply(
                self.address,
                lambda h: dataclasses.replace(
                    h, replication_error=error, replication_failures=h.replication_failures + 1
                ),
            )
            return
        lag = status.seconds_behind_master
        self._logs.add(REPLICATION_LAG_LOG, (host, port, started, _us_since(clock), lag, None))
        self._apply(
            self.address,
            lambda h: dataclasses.replace(
                h, replication=status, replication_error=None, replication_failures=0
            ),
        )


def _us_since(clock: float) -> int:
    return int((time.monotonic() - clock) * 1e6)
