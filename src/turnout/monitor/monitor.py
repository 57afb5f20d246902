"""The Monitor: checks every configured server and publishes immutable health snapshots.

Runs on one asyncio loop; `update_config`, `start` and `stop` must be called from that loop.
`on_change` is called on the loop as soon as a result changes something routing depends on
(read_only, ping or connect failures, replication state or lag) — not at the next interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
import time
from collections.abc import Callable, Iterable

from turnout.config.model import RuntimeConfig
from turnout.monitor.checks import ServerChecks, Update
from turnout.monitor.health import Address, HealthSnapshot, ServerHealth, routing_changed
from turnout.monitor.logs import LogRow, MonitorLog
from turnout.monitor.settings import MonitorSettings
from turnout.proxy.tls import TlsSetupError, client_context

log = logging.getLogger(__name__)


class Monitor:
    def __init__(
        self, config: RuntimeConfig, on_change: Callable[[HealthSnapshot], None],
        on_positions: Callable[[HealthSnapshot], None] | None = None,
    ) -> None:
        self._config = config
        self._settings = MonitorSettings.from_config(config)
        self._on_change = on_change
        # called when a server's applied GTIDs (health.applied_gtids) changed: causal reads use them
        self._on_positions = on_positions
        self._health = HealthSnapshot()
        self._logs = MonitorLog(history_ms=self._settings.history_ms)
        self._checks: dict[Address, ServerChecks] = {}
        self._stopping: list[asyncio.Task[None]] = []
        self._running = False

    @property
    def snapshot(self) -> HealthSnapshot:
        return self._health

    @property
    def config(self) -> RuntimeConfig:
        return self._config

    def log_rows(self, table: str) -> list[LogRow]:
        """Rows of monitor.<table> (mysql_server_connect_log, ..._ping_log, ..._read_only_log,
        ..._replication_lag_log) with ProxySQL's columns, see `logs.LOG_COLUMNS`."""
        return self._logs.rows(table)

    async def start(self) -> None:
        self._running = True
        self._sync()

    async def stop(self) -> None:
        self._running = False
        for checks in self._checks.values():
            self._stopping += checks.cancel()
        self._checks.clear()
        await self._drain()

    def check_now(self, addresses: Iterable[Address]) -> None:
        """Check read_only (and then replication) of these servers now, not at their next interval."""
        for address in addresses:
            checks = self._checks.get(address)
            if checks is not None:
                checks.check_read_only_now()

    def update_config(self, config: RuntimeConfig) -> None:
        settings = MonitorSettings.from_config(config)
        self._config = config
        if settings != self._settings:
            # Intervals, timeouts or credentials changed: restart every server's checks.
            self._settings = settings
            self._logs.history_ms = settings.history_ms
            for checks in self._checks.values():
                self._stopping += checks.cancel()
            self._checks.clear()
        if self._running:
            self._sync()

    def _sync(self) -> None:
        wanted = set() if not self._settings.enabled else {s.address for s in self._config.servers}
        use_ssl = {s.address for s in self._config.servers if s.use_ssl}
        for address, checks in list(self._checks.items()):
            if address not in wanted or (checks.tls is not None) != (address in use_ssl):  # gone, or use_ssl changed
                self._stopping += self._checks.pop(address).cancel()
        for server in self._config.servers:
            address = server.address
            if address in wanted and address not in self._checks:
                tls = self._tls_context() if address in use_ssl else None
                checks = ServerChecks(address, self._settings, self._apply, self._logs, tls)
                self._checks[address] = checks
                checks.start()
        gone = frozenset(a for a in self._health.servers if a not in wanted)
        if gone:
            self._publish(self._health.without(gone), changed=True)
        if self._stopping:
            asyncio.get_running_loop().create_task(self._drain())

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self._settings
        try:
            return client_context(s.ssl_ca, s.ssl_cert, s.ssl_key)
        except TlsSetupError as exc:  # the proxy refuses such a configuration before it gets here
            log.error("monitor: %s", exc)
            return None

    async def _drain(self) -> None:
        tasks, self._stopping = self._stopping, []
        await asyncio.gather(*tasks, return_exceptions=True)

    def _apply(self, address: Address, update: Update) -> None:
        if address not in self._checks:
            return  # a late result from a server no longer monitored
        old = self._health.get(address)
        new = dataclasses.replace(update(old or ServerHealth(address)), checked_at=time.time())
        if old is not None and old.read_only != new.read_only:
            self._checks[address].check_replication_now()
        self._publish(self._health.replace(new), changed=routing_changed(old, new))
        if self._on_positions is not None and _applied_key(old) != _applied_key(new):
            try:
                self._on_positions(self._health)
            except Exception:
                log.exception("monitor on_positions callback failed")

    def _publish(self, health: HealthSnapshot, changed: bool) -> None:
        self._health = health
        if not changed:
            return
        try:
            self._on_change(health)
        except Exception:
            log.exception("monitor on_change callback failed")


def _applied_key(server: ServerHealth | None) -> tuple[bool, str, str] | None:
    """What `health.applied_gtids` reads of one server."""
    repl = None if server is None else server.replication
    return None if repl is None else (repl.configured, repl.gtid_slave_pos, repl.gtid_current_pos)
