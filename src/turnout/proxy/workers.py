"""`--workers N`: the data path in N processes sharing the port (SO_REUSEPORT), fed the same snapshots.

The control process keeps admin, monitor and manager, runs one data path itself, and sends every
new configuration and routing table down a pipe to each worker; a worker only relays traffic.
A worker exits when its pipe closes, so no worker outlives the control process.

Up the same pipe, each worker sends its stats tables every STATS_INTERVAL seconds; the admin
interface shows them merged with the control process's own (`stats_merge`), at most that old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from turnout.config.model import (
    MysqlServer,
    MysqlUser,
    QueryRule,
    ReplicationHostgroup,
    RuntimeConfig,
    SchedulerJob,
)
from turnout.proxy.hostgroups import HostgroupTable

log = logging.getLogger("turnout.workers")

STATS_INTERVAL = 1.0
STATS_TABLES = (
    "stats_mysql_connection_pool", "stats_mysql_commands_counters", "stats_mysql_query_digest",
    "stats_mysql_global", "stats_mysql_processlist", "stats_mysql_users", "stats_mysql_query_rules",
    "stats_mysql_errors",
)
RESET = "reset:"  # control -> worker: "reset:<table>_reset" was read, zero what it zeroes
# Session ids of worker N start at N * SESSION_ID_SPAN + 1, unique across processes (and within
# the 32 bits of a connection id).
SESSION_ID_SPAN = 100_000_000


@dataclass(frozen=True)
class Snapshot:
    """What a worker needs, in plain picklable values."""

    config: dict[str, Any]
    servers: tuple[dict[str, Any], ...]
    write_blocked: dict[int, str]
    version: int
    paused: frozenset[int]
    paused_reasons: dict[int, str]
    # the GTIDs the monitor last saw each server apply (Proxy.apply_positions)
    positions: dict[tuple[str, int], str]


@dataclass(frozen=True)
class Positions:
    """control -> worker: the monitor saw a server's applied GTIDs change (`Proxy.apply_positions`)."""

    gtids: dict[tuple[str, int], str]


@dataclass(frozen=True)
class CutWrites:
    """control -> worker: this proxy fenced itself; cut what runs on `addresses` (`Proxy.cut_writes`)."""

    addresses: frozenset[tuple[str, int]]
    reason: str


def encode(
    config: RuntimeConfig, table: HostgroupTable, positions: Mapping[tuple[str, int], str] | None = None
) -> Snapshot:
    plain = {
        "version": config.version,
        "servers": [asdict(s) for s in config.servers],
        "users": [asdict(u) for u in config.users],
        "query_rules": [asdict(r) for r in config.query_rules],
        "replication_hostgroups": [asdict(r) for r in config.replication_hostgroups],
        "scheduler": [asdict(j) for j in config.scheduler],
        "variables": dict(config.variables),
    }
    servers = tuple(asdict(s) for members in table.by_hostgroup.values() for s in members)
    return Snapshot(
        plain, servers, dict(table.write_blocked), table.version, table.paused, dict(table.paused_reasons),
        dict(positions or {}),
    )


def decode(snapshot: Snapshot) -> tuple[RuntimeConfig, HostgroupTable]:
    raw = snapshot.config
    config = RuntimeConfig(
        version=raw["version"],
        servers=tuple(MysqlServer(**s) for s in raw["servers"]),
        users=tuple(MysqlUser(**u) for u in raw["users"]),
        query_rules=tuple(QueryRule(**r) for r in raw["query_rules"]),
        replication_hostgroups=tuple(ReplicationHostgroup(**r) for r in raw["replication_hostgroups"]),
        scheduler=tuple(SchedulerJob(**j) for j in raw["scheduler"]),
        variables=MappingProxyType(raw["variables"]),
    )
    table = HostgroupTable.build(
        (MysqlServer(**s) for s in snapshot.servers), snapshot.write_blocked, snapshot.version, snapshot.paused,
        snapshot.paused_reasons,
    )
    return config, table


def _worker_main(
    pipe: multiprocessing.connection.Connection,
    host: str,
    port: int,
    first: Snapshot,
    datadir: Path,
    index: int,
    managed: bool,
) -> None:
    import uvloop

    from turnout.proxy.proxy import Proxy

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the control process decides when workers stop

    async def main() -> None:
        config, table = decode(first)
        proxy = Proxy(config, datadir=datadir, first_session_id=index * SESSION_ID_SPAN + 1, managed=managed)
        proxy.apply_positions(first.positions)
        proxy.apply_routing(table)
        await proxy.start(host, port, reuse_port=True)
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()

        def on_message() -> None:
            try:
                while pipe.poll():
                    message = pipe.recv()
                    if isinstance(message, str) and message.startswith(RESET):
                        proxy.reset_stats(message.removeprefix(RESET))
                        continue
                    if isinstance(message, CutWrites):
                        cut = proxy.cut_writes(message.addresses, message.reason)
                        if cut:
                            log.warning("worker %d: self-fencing cut off %d sessions", index, cut)
                        continue
                    if isinstance(message, Positions):
                        proxy.apply_positions(message.gtids)
                        continue
                    config, table = decode(message)
                    if config.version != proxy.config.version:
                        proxy.apply_config(config)
                    proxy.apply_positions(message.positions)
                    proxy.apply_routing(table)
            except (EOFError, OSError):
                loop.remove_reader(pipe.fileno())
                closed.set()

        async def send_stats() -> None:
            while True:
                await asyncio.sleep(STATS_INTERVAL)
                tables = {name: proxy.stats_table(name) or [] for name in STATS_TABLES}
                try:
                    pipe.send(("stats", tables))
                except OSError:
                    closed.set()
                    return

        loop.add_reader(pipe.fileno(), on_message)
        loop.add_signal_handler(signal.SIGTERM, closed.set)
        reporter = loop.create_task(send_stats())
        await closed.wait()
        reporter.cancel()
        await proxy.stop()

    uvloop.run(main())


class Workers:
    """The extra data-path processes of one control process."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._stats: list[dict[str, list[dict[str, object]]]] = []  # each worker's latest tables

    def start(
        self, host: str, port: int, config: RuntimeConfig, table: HostgroupTable, datadir: Path, managed: bool,
        positions: Mapping[tuple[str, int], str] | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        first = encode(config, table, positions)
        loop = asyncio.get_running_loop()
        for index in range(self.count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(child_end, host, port, first, datadir, index + 1, managed),
                name=f"turnout-worker-{index + 1}", daemon=True,
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)
            self._stats.append({})
            loop.add_reader(parent_end.fileno(), self._receive, index)

    def _receive(self, index: int) -> None:
        pipe = self._pipes[index]
        try:
            while pipe.poll():
                kind, tables = pipe.recv()
                if kind == "stats":
                    self._stats[index] = tables
        except (EOFError, OSError):
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(pipe.fileno())

    def stats(self, table: str) -> list[list[dict[str, object]]]:
        """Each worker's latest rows of `table` (reading a `_reset` table also zeroes the
        workers' counters of that table)."""
        base = table.removesuffix("_reset")
        rows = [tables.get(base, []) for tables in self._stats]
        if table.endswith("_reset"):
            for index, pipe in enumerate(self._pipes):
                self._stats[index] = {**self._stats[index], base: []}
                with contextlib.suppress(OSError):
                    pipe.send(RESET + table)
        return rows

    def publish(
        self, config: RuntimeConfig, table: HostgroupTable, positions: Mapping[tuple[str, int], str] | None = None
    ) -> None:
        snapshot = encode(config, table, positions)
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(snapshot)

    def publish_positions(self, gtids: Mapping[tuple[str, int], str]) -> None:
        """The monitor saw servers' applied GTIDs change: every worker's causal reads use them."""
        message = Positions(dict(gtids))
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(message)

    def cut_writes(self, addresses: frozenset[tuple[str, int]], reason: str) -> None:
        """Every worker cuts its sessions' statements and transactions on `addresses`."""
        message = CutWrites(addresses, reason)
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(message)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

    def stop_reading(self) -> None:
        """Stop watching the workers' pipes (on the event loop's thread, before `stop`)."""
        loop = asyncio.get_running_loop()
        for pipe in self._pipes:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(pipe.fileno())

    def stop(self, timeout: float = 10) -> None:
        for pipe in self._pipes:
            pipe.close()
        for process in self._processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(1)
        self._pipes.clear()
        self._processes.clear()
        self._stats.clear()
