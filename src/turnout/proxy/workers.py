"""`--workers N`: the data path in N processes sharing the port (SO_REUSEPORT), fed the same snapshots.

The control process keeps admin, monitor and manager, runs one data path itself, and sends every
new configuration and routing table down a pipe to each worker; a worker only relays traffic.
A worker exits when its pipe closes, so no worker outlives the control process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
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
from turnout.proxy.hostgroups import RoutingTable

log = logging.getLogger("turnout.workers")


@dataclass(frozen=True)
class Snapshot:
    """What a worker needs, in plain picklable values."""

    config: dict[str, Any]
    servers: tuple[dict[str, Any], ...]
    write_blocked: dict[int, str]
    version: int
    held: frozenset[int]


def encode(config: RuntimeConfig, table: RoutingTable) -> Snapshot:
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
    return Snapshot(plain, servers, dict(table.write_blocked), table.version, table.held)


def decode(snapshot: Snapshot) -> tuple[RuntimeConfig, RoutingTable]:
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
    table = RoutingTable.build(
        (MysqlServer(**s) for s in snapshot.servers), snapshot.write_blocked, snapshot.version, snapshot.held
    )
    return config, table


def _worker_main(
    pipe: multiprocessing.connection.Connection, host: str, port: int, first: Snapshot, datadir: Path
) -> None:
    import uvloop

    from turnout.proxy.proxy import Proxy

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the control process decides when workers stop

    async def main() -> None:
        config, table = decode(first)
        proxy = Proxy(config, datadir=datadir)
        proxy.apply_routing(table)
        await proxy.start(host, port, reuse_port=True)
        loop = asyncio.get_running_loop()
        closed = asyncio.Event()

        def on_message() -> None:
            try:
                while pipe.poll():
                    config, table = decode(pipe.recv())
                    if config.version != proxy.config.version:
                        proxy.apply_config(config)
                    proxy.apply_routing(table)
            except (EOFError, OSError):
                loop.remove_reader(pipe.fileno())
                closed.set()

        loop.add_reader(pipe.fileno(), on_message)
        loop.add_signal_handler(signal.SIGTERM, closed.set)
        await closed.wait()
        await proxy.stop()

    uvloop.run(main())


class Workers:
    """The extra data-path processes of one control process."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pipes: list[multiprocessing.connection.Connection] = []
        self._processes: list[multiprocessing.process.BaseProcess] = []

    def start(self, host: str, port: int, config: RuntimeConfig, table: RoutingTable, datadir: Path) -> None:
        context = multiprocessing.get_context("spawn")
        first = encode(config, table)
        for index in range(self.count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker_main, args=(child_end, host, port, first, datadir), name=f"turnout-worker-{index + 1}",
                daemon=True,
            )
            process.start()
            child_end.close()
            self._pipes.append(parent_end)
            self._processes.append(process)

    def publish(self, config: RuntimeConfig, table: RoutingTable) -> None:
        snapshot = encode(config, table)
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(snapshot)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.pid is not None]

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
