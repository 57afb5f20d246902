"""One turnout process: the proxy, its admin interface, the monitor and (optionally) the manager.

Control plane -> data path is one way: every change (LOAD ... TO RUNTIME, a health change, a
published master) produces a new immutable routing table that the proxy swaps in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from turnout.api.proxies import ProxyReport
from turnout.compiled import data_path_compiled
from turnout.config.file import ConfigFile
from turnout.config.model import RuntimeConfig
from turnout.fencing import FenceStatus, ProxyLease
from turnout.metrics import MetricsServer
from turnout.monitor.health import HealthSnapshot, applied_gtids
from turnout.monitor.logs import LOG_COLUMNS
from turnout.monitor.monitor import Monitor
from turnout.monitor.routing import RoutingSnapshot
from turnout.monitor.service import MonitoredRouting
from turnout.output import UserError
from turnout.proxy.hostgroups import HostgroupTable
from turnout.proxy.proxy import Proxy, parse_interface
from turnout.proxy.stats_merge import merge_stats
from turnout.proxy.tls import TlsSetupError
from turnout.proxy.workers import Workers
from turnout.state.base import ClusterState

if TYPE_CHECKING:
    from aiohttp import web

    from turnout.manager.service import ManagerService
    from turnout.manager.settings import ManagerSettings
    from turnout.state.base import StateStore

log = logging.getLogger("turnout")

FENCE_POLL_SECONDS = 0.5


class Node:
    def __init__(
        self,
        config_file: ConfigFile,
        *,
        admin: bool = True,
        initial: bool = False,
        manage: bool = False,
        workers: int = 1,
    ) -> None:
        self.config_file = config_file
        self.runtime: RuntimeConfig = config_file.runtime_config()
        self.datadir = config_file.data_directory
        # the proxy follows a manager: its own (turnout up) or one publishing in the state store
        self.follows_manager = manage or bool(config_file.manager)
        if config_file.manager:  # a stray state file or bad [manager] key stops the start here
            self._state_target(self._manager_settings())
        try:
            self.proxy = Proxy(self.runtime, datadir=self.datadir, managed=self.follows_manager)
        except TlsSetupError as exc:
            raise UserError(str(exc)) from exc
        # the monitor and the routing it yields; every change that matters reaches the proxy
        self.monitored = MonitoredRouting(
            self.runtime, lambda _routing: self._apply_routing(), on_positions=self._apply_positions
        )
        self.published_masters: dict[int, tuple[str, int]] = {}
        self.held_hostgroups: frozenset[int] = frozenset()
        self.followed: dict[str, ClusterState] = {}  # each cluster's state as this proxy applies it
        # the manager's fences (state store): out of all traffic until `turnout unfence`
        self.fences: dict[tuple[str, int], str] = {}
        self.state_store: StateStore | None = None
        self._apply_lock = asyncio.Lock()
        # A proxy following a shared store (etcd) holds a lease there and fences itself when it
        # cannot renew it (turnout.fencing); None with the one-host SQLite store.
        self.proxy_lease: ProxyLease | None = None
        self.fence = FenceStatus(False)
        self.fenced_reads = "serve"
        self.admin_enabled = admin
        self.manage = manage
        self.workers = Workers(workers - 1) if workers > 1 else None
        self.initial = initial
        self.admin: Any = None
        self._stopped = asyncio.Event()
        self.manager: ManagerService | None = None
        self.api_runner: web.AppRunner | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._fence_task: asyncio.Task[None] | None = None
        self.metrics = MetricsServer(self.stats_table)
        self._metrics_lock = asyncio.Lock()
        self._metrics_started = False
        self._background: set[asyncio.Task[None]] = set()

    # ---- control plane -> data path ------------------------------------------------------------
    def _on_runtime(self, config: RuntimeConfig) -> None:
        """LOAD ... TO RUNTIME: the new configuration, in force for the next statement."""
        self.runtime = config
        self.proxy.apply_config(config)
        self.monitored.update_config(config)
        self._apply_routing()  # also sends the new configuration to the workers
        if self._metrics_started:  # follow admin-restapi_* and admin-prometheus_exporter
            task = asyncio.get_running_loop().create_task(self._apply_metrics(config))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _apply_metrics(self, config: RuntimeConfig) -> None:
        async with self._metrics_lock:  # one LOAD after another, in order
            await self.metrics.apply(config)

    def stats_table(self, table: str) -> list[dict[str, object]] | None:
        """The admin's stats tables: this process's rows, with the workers' merged in, and the
        monitor's ping time as each server's latency."""
        if table == "stats_mysql_gtid_executed":
            return [
                {"hostname": host, "port": port, "gtid_executed": gtids, "events": 0}
                for (host, port), gtids in sorted(applied_gtids(self.monitor.snapshot).items())
            ]
        rows = self.proxy.stats_table(table)
        if rows is None:
            return None
        if self.workers is not None:
            rows = merge_stats(table, [rows, *self.workers.stats(table)])
        if table == "stats_mysql_global" and self.proxy_lease is not None:
            rows = rows + [{"Variable_Name": k, "Variable_Value": str(v)} for k, v in self.proxy_lease.stats().items()]
        if table.startswith("stats_mysql_connection_pool"):
            health = self.monitor.snapshot
            for row in rows:
                server = health.get((str(row["srv_host"]), int(str(row["srv_port"]))))
                if server is not None:
                    row["Latency_us"] = server.ping_time_us
        return rows

    def set_cluster_view(self, masters: Mapping[int, tuple[str, int]], held: frozenset[int]) -> None:
        """The manager's truth: the published master of each writer hostgroup, and holds."""
        self.published_masters = dict(masters)
        self.held_hostgroups = held
        self.monitored.update_published_masters(self.published_masters or None)
        self._apply_routing()  # the holds may have changed alone

    def _fenced_hostgroups(self) -> frozenset[int]:
        """The hostgroups a proxy that fenced itself holds: every writer hostgroup, and the
        readers too when ProxyFencedReads = "refuse"."""
        if not self.fence.fenced:
            return frozenset()
        pairs = self.runtime.replication_hostgroups
        held = {p.writer_hostgroup for p in pairs} | set(self.published_masters)
        if self.fenced_reads == "refuse":
            held |= {p.reader_hostgroup for p in pairs}
        return frozenset(held)

    @property
    def monitor(self) -> Monitor:
        return self.monitored.monitor

    @property
    def routing(self) -> RoutingSnapshot:
        return self.monitored.routing

    def _apply_routing(self) -> None:
        """The routing in force, with the holds and this proxy's own fence, to the data path."""
        snapshot = self.monitored.routing
        fenced = self._fenced_hostgroups()
        self.proxy.apply_routing(
            HostgroupTable.build(
                snapshot.servers,
                snapshot.write_blocked,
                version=snapshot.health_version,
                paused=self.held_hostgroups | fenced,
                paused_reasons=dict.fromkeys(fenced, self.fence.reason),
            )
        )
        if self.workers is not None:
            self.workers.publish(self.runtime, self.proxy.routing, applied_gtids(self.monitor.snapshot))

    def _apply_positions(self, health: HealthSnapshot) -> None:
        """The GTIDs the monitor saw the servers apply, to the data path's causal reads."""
        gtids = applied_gtids(health)
        self.proxy.apply_positions(gtids)
        if self.workers is not None:
            self.workers.publish_positions(gtids)

    def _monitor_table(self, table: str) -> list[dict[str, object]] | None:
        columns = LOG_COLUMNS.get(table)
        if columns is None:
            return None
        return [dict(zip(columns, row, strict=False)) for row in self.monitor.log_rows(table)]

    def runtime_servers(self) -> tuple[Any, ...]:
        return self.routing.servers

    # ---- the manager, in the same process ---------------------------------------------------
    def _manager_settings(self) -> ManagerSettings:
        from turnout.manager.settings import ManagerSettings, SettingsError

        try:
            return ManagerSettings.from_mapping(dict(self.config_file.manager))
        except SettingsError as exc:
            where = f" of {self.config_file.path}" if self.config_file.path is not None else ""
            raise UserError(f"{exc}; fix the [manager] table{where}") from None

    def _state_target(self, settings: ManagerSettings) -> str:
        """The store every role started from this file opens (`turnout.state.location`)."""
        from turnout.state.location import StrayStateFile, check_no_stray_state

        try:
            return check_no_stray_state(
                self.config_file.path, self.datadir, settings.StateStore, settings.SQLite3DataFile
            )
        except StrayStateFile as exc:
            raise UserError(str(exc)) from None

    def _open_store(self, settings: ManagerSettings) -> StateStore:
        from turnout.state import open_store

        return open_store(self._state_target(settings))

    async def _follow_store(self) -> None:
        """A proxy without a manager of its own follows the manager that publishes in the store."""
        self._watch_task = asyncio.create_task(self._follow_clusters(), name="turnout-follow-clusters")

    async def _refresh_fences(self) -> None:
        """Read the fences from the store; a change reroutes at once. On a store error the fences
        last read stay in force (a fence is never lifted by a failed read)."""
        assert self.state_store is not None
        fences = {_address(f.key): f.reason for f in await self.state_store.fenced()}
        if fences != self.fences:
            for address in fences.keys() - self.fences.keys():
                log.warning("%s:%d is fenced by the manager: no statement goes there until `turnout unfence`",
                            *address)
            for address in self.fences.keys() - fences.keys():
                log.info("%s:%d: fence lifted", *address)
            self.fences = fences
            self.monitored.update_fences(fences)

    async def _follow_fences(self) -> None:
        """Fences change without a cluster state changing (`turnout unfence`): poll them."""
        while True:
            await asyncio.sleep(FENCE_POLL_SECONDS)
            try:
                await self._refresh_fences()
            except Exception as exc:  # the store is unreachable: keep the fences in force
                log.warning("reading the fences from the state store failed: %s", exc)

    async def _start_proxy_lease(self, settings: ManagerSettings) -> None:
        """On a shared store: register, renew, fence itself when it cannot (turnout.fencing)."""
        assert self.state_store is not None
        if not self.state_store.shares_proxies:
            return
        import socket

        host, port = parse_interface(self.runtime.variable("mysql-interfaces", "127.0.0.1:6033"), 6033)
        if host in ("", "0.0.0.0", "::"):
            host = socket.gethostname()
        self.fenced_reads = settings.ProxyFencedReads
        # the pid: several proxies may share a host name (containers, namespaces); a clean stop
        # deregisters, so a restart under a new pid leaves nothing behind
        proxy_id = settings.ProxyId or f"{host}:{port}:{os.getpid()}"
        self.proxy_lease = ProxyLease(
            self.state_store, proxy_id, f"{host}:{port}", settings.ProxyLeaseSeconds,
            settings.ProxyRenewSeconds, settings.ProxyRenewDeadlineSeconds, self._apply_state, self._on_fence,
        )
        self._on_fence(self.proxy_lease.status)  # fenced until registered and up to date
        await self.proxy_lease.start()

    def _on_fence(self, status: FenceStatus) -> None:
        self.fence = status
        self._apply_routing()
        if status.fenced:
            writers = {_address(c.master) for c in self.followed.values()}
            writers |= {s.address for s in self.runtime.servers
                        if s.hostgroup_id in {p.writer_hostgroup for p in self.runtime.replication_hostgroups}}
            cut = self.proxy.cut_writes(frozenset(writers), status.reason)
            if self.workers is not None:  # a worker's sessions are its own: it cuts them
                self.workers.cut_writes(frozenset(writers), status.reason)
            if cut:
                log.warning("self-fencing cut off %d sessions writing to %s", cut,
                            ", ".join(f"{h}:{p}" for h, p in sorted(writers)))

    async def _start_manager(self) -> None:
        from dataclasses import replace

        from turnout.api.app import serve
        from turnout.manager.service import ManagerService

        settings = self._manager_settings()
        if not settings.MySQLTopologyUser:
            raise UserError(
                "set MySQLTopologyUser and MySQLTopologyPassword in the [manager] table of the configuration "
                "file, or run `turnout proxy` for the proxy role alone"
            )
        seeds = tuple(dict.fromkeys(f"{s.hostname}:{s.port}" for s in self.runtime.servers))
        settings = replace(settings, DiscoverySeeds=tuple(dict.fromkeys(settings.DiscoverySeeds + seeds)))
        assert self.state_store is not None
        self.manager = ManagerService(settings, self.state_store, drain=self._drain)
        await self.manager.start()
        host, _, port = settings.ListenAddress.rpartition(":")

        host = host or "127.0.0.1"
        self.api_runner = await serve(self.manager, host, int(port), NodeProxy(self))
        log.info("manager API on http://%s:%s/api/, web console on http://%s:%s/", host, port, host, port)
        self._watch_task = asyncio.create_task(self._follow_clusters(), name="turnout-follow-clusters")

    async def _follow_clusters(self) -> None:
        """The proxy follows the manager: published masters become the only writers, and a
        cluster that is switching or recovering has its writes held, not failed."""
        assert self.state_store is not None
        async for state in self.state_store.watch():
            # a recovery fences the failed master before it publishes the new one
            with contextlib.suppress(Exception):  # unreachable store: _follow_fences says so
                await self._refresh_fences()
            await self._apply_state(state)

    async def _apply_state(self, state: ClusterState) -> None:
        """Route by one cluster state (from the watch, or read by the proxy lease's round); on
        a shared store, end what ran on an earlier master and acknowledge the epoch."""
        async with self._apply_lock:
            states = self.followed
            previous = states.get(state.name)
            if previous != state:
                states[state.name] = state
                if previous is None or (previous.master, previous.phase) != (state.master, state.phase):
                    # the servers' read_only just changed or is about to: look now, not at the next check
                    self.monitor.check_now(_address(key) for key in {state.master, *state.members})
                masters: dict[int, tuple[str, int]] = {}
                held: set[int] = set()
                for cluster in states.values():
                    writer = self._writer_hostgroup_of(cluster)
                    if writer is None:
                        continue
                    masters[writer] = _address(cluster.master)
                    if cluster.phase != "stable":
                        held.add(writer)
                self.set_cluster_view(masters, frozenset(held))
            lease = self.proxy_lease
            if lease is None:
                return
            if previous is not None and previous.master != state.master:
                self.proxy.cut_writes(frozenset({_address(previous.master)}),
                                      f"the master of cluster {state.name} changed to {state.master} "
                                      f"(epoch {state.epoch})")
            elif state.phase == "switching" and (previous is None or previous.phase != "switching"):
                # a takeover: transactions in flight on the master finish or end (new writes are held)
                ended = await self.proxy.drain(_address(state.master),
                                               self._manager_settings().TakeoverDrainSeconds)
                if ended:
                    log.warning("ended %d transactions still running on %s after the drain period", ended,
                                state.master)
            lease.applied_state(state)
        await lease.acknowledge()

    async def _drain(self, switching: ClusterState, old_master: str) -> None:
        """The manager is about to make `old_master` read_only: hold new writes now (without
        waiting for the store's watch), let transactions in flight finish, end the rest."""
        writer = self._writer_hostgroup_of(switching)
        if writer is not None:
            self.set_cluster_view(self.published_masters, self.held_hostgroups | {writer})
        host, _, port = old_master.rpartition(":")
        assert self.manager is not None
        ended = await self.proxy.drain((host, int(port)), self.manager.settings.TakeoverDrainSeconds)
        if ended:
            log.warning("ended %d transactions still running on %s after the drain period", ended, old_master)

    def _writer_hostgroup_of(self, cluster: ClusterState) -> int | None:
        members = set(cluster.members) | {cluster.master}
        for pair in self.runtime.replication_hostgroups:
            addresses = {
                f"{s.hostname}:{s.port}"
                for s in self.runtime.servers
                if s.hostgroup_id in (pair.writer_hostgroup, pair.reader_hostgroup)
            }
            if addresses & members:
                return pair.writer_hostgroup
        return None

    async def _stop_manager(self) -> None:
        for task in (self._watch_task, self._fence_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.proxy_lease is not None:
            await self.proxy_lease.stop()
        if self.api_runner is not None:
            await self.api_runner.cleanup()
        if self.manager is not None:
            await self.manager.stop()

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.admin_enabled:
            from turnout.admin.service import AdminService
            from turnout.admin.store import Providers

            self.admin = AdminService(
                datadir=self.datadir,
                config_file=self.config_file,
                initial=self.initial,
                on_runtime=self._on_runtime,
                providers=Providers(
                    runtime_servers=self.runtime_servers,
                    stats=self.stats_table,
                    monitor=self._monitor_table,
                ),
            )
            await self.admin.start()
        if self.manage or self.config_file.manager:
            # the fences are in force before the first statement, and followed from then on
            self.state_store = self._open_store(self._manager_settings())
            try:
                await self._refresh_fences()
            except Exception as exc:  # _follow_fences retries; the manager's own start says more
                log.warning("reading the fences from the state store failed: %s", exc)
            self._fence_task = asyncio.create_task(self._follow_fences(), name="turnout-follow-fences")
            await self._start_proxy_lease(self._manager_settings())
        self._apply_routing()
        await self.monitored.start()
        await self._apply_metrics(self.runtime)
        self._metrics_started = True
        host, port = parse_interface(self.runtime.variable("mysql-interfaces", "127.0.0.1:6033"), 6033)
        await self.proxy.start(host, port, reuse_port=self.workers is not None)
        if self.workers is not None:
            self.workers.start(
                host, port, self.runtime, self.proxy.routing, self.datadir, self.follows_manager,
                applied_gtids(self.monitor.snapshot),
            )
            log.info("%d worker processes share the port", self.workers.count)
        log.info(
            "proxy listening on %s:%d (data path %s)", host, port,
            "compiled" if data_path_compiled() else "in plain Python: reinstall with a C compiler for the compiled one",
        )
        if self.manage:
            await self._start_manager()
        elif self.config_file.manager:
            await self._follow_store()

    async def stop(self) -> None:
        await self._stop_manager()
        self._metrics_started = False
        async with self._metrics_lock:
            await self.metrics.stop()
        await self.proxy.stop()
        if self.workers is not None:
            self.workers.stop_reading()
            await asyncio.get_running_loop().run_in_executor(None, self.workers.stop)
        await self.monitored.stop()
        if self.admin is not None:
            await self.admin.stop()

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stopped.set)
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()


def _address(key: str) -> tuple[str, int]:
    host, _, port = key.rpartition(":")
    return (host, int(port))


def local_report(node: Node) -> ProxyReport:
    """The proxy in this process: servers in force, pools, counters, holds and epochs applied."""
    servers = [
        {"hostgroup": s.hostgroup_id, "address": f"{s.hostname}:{s.port}", "status": s.status,
         "weight": s.weight, "max_replication_lag": s.max_replication_lag, "comment": s.comment}
        for s in node.runtime_servers()
    ]
    pools = [
        {"hostgroup": row["hostgroup"], "address": f"{row['srv_host']}:{row['srv_port']}", "status": row["status"],
         "used": row["ConnUsed"], "free": row["ConnFree"], "ok": row["ConnOK"], "errors": row["ConnERR"],
         "queries": row["Queries"], "latency_us": row["Latency_us"]}
        for row in node.stats_table("stats_mysql_connection_pool") or []
    ]
    counters = {str(r["Variable_Name"]): str(r["Variable_Value"]) for r in node.stats_table("stats_mysql_global") or []}
    routing = node.routing
    return {
        "name": "local",
        "where": "in the manager's process",
        "listen": node.runtime.variable("mysql-interfaces", "127.0.0.1:6033"),
        "at": time.time(),
        "servers": servers,
        "pools": pools,
        "questions": int(counters.get("Questions", "0")),
        "client_connections": int(counters.get("Client_Connections_connected", "0")),
        "statements_held": int(counters.get("Statements_held", "0")),
        "held_hostgroups": sorted(node.held_hostgroups),
        "write_blocked": {str(k): v for k, v in routing.write_blocked.items()},
        "writers": {str(hg): f"{host}:{port}" for hg, (host, port) in sorted(node.published_masters.items())},
        "epochs": {name: {"master": s.master, "epoch": s.epoch, "phase": s.phase}
                   for name, s in sorted(node.followed.items())},
        "registered_as": node.proxy_lease.id if node.proxy_lease is not None else None,
        "fenced": node.fence.reason if node.fence.fenced else None,
    }


class NodeProxy:
    """The proxy of a `turnout up` process."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def report(self) -> ProxyReport:
        return local_report(self.node)

    def version(self) -> object:
        routing = self.node.routing
        return (routing.servers, routing.write_blocked,
                self.node.held_hostgroups, tuple(sorted(self.node.published_masters.items())))
