"""The manager driving ProxySQL admin interfaces (`[[manager.proxysql]]`), in place of
Orchestrator's hooks and ProxySQL scheduler scripts.

Every pass computes each ProxySQL's writer and reader hostgroups from the published cluster
state and the manager's view of the replicas, never from what was done before: the writer
hostgroup holds exactly the master (OFFLINE_SOFT while a takeover or recovery runs), the reader
hostgroup exactly the replicas that replicate. When the admin's mysql_servers differ, the two
hostgroups are rewritten, LOAD MYSQL SERVERS TO RUNTIME, SAVE MYSQL SERVERS TO DISK, and
runtime_mysql_servers is read back. A ProxySQL that cannot be reached is retried every pass and
reported as lagging. Text protocol and ProxySQL 2.x admin SQL only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from turnout.manager.settings import ManagerSettings, ProxySQLTarget
from turnout.state.base import ClusterState
from turnout.topology.connection import Credentials, ServerError, connect, query
from turnout.topology.flavors import sql_string
from turnout.topology.model import split_key

if TYPE_CHECKING:
    from turnout.manager.analysis import ClusterView
    from turnout.state.base import StateStore
    from turnout.topology.model import Instance

log = logging.getLogger("turnout.manager.proxysql")

Row = dict[str, Any]


# ---- what the hostgroups must hold: pure ---------------------------------------------------------------
def _server(row: Row) -> tuple[str, int]:
    return str(row["hostname"]), int(row["port"])


def desired_rows(
    current: Sequence[Row], writer: int, reader: int, state: ClusterState, readers: Sequence[str]
) -> list[Row]:
    """The rows of the writer and reader hostgroups as they must be. Columns other than
    hostgroup_id and status are kept from the server's existing rows (any hostgroup)."""
    columns = list(current[0]) if current else ["hostgroup_id", "hostname", "port", "status"]

    def row(key: str, hostgroup: int, status: str) -> Row:
        host, port = split_key(key)
        model = next((r for r in current if _server(r) == (host, port) and int(r["hostgroup_id"]) == hostgroup),
                     None) or next((r for r in current if _server(r) == (host, port)), None)
        made: Row = {c: (model[c] if model is not None and c in model else None) for c in columns}
        made.update(hostgroup_id=hostgroup, hostname=host, port=port, status=status)
        return made

    master_status = "ONLINE" if state.phase == "stable" else "OFFLINE_SOFT"
    wanted = [row(state.master, writer, master_status)]
    wanted += [row(key, reader, "ONLINE") for key in sorted(readers) if key != state.master]
    return wanted


def _comparable(rows: Sequence[Row]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted((k, "" if v is None else str(v)) for k, v in r.items())) for r in rows}


def needs_write(current: Sequence[Row], wanted: Sequence[Row], writer: int, reader: int) -> bool:
    mine = [r for r in current if int(r["hostgroup_id"]) in (writer, reader)]
    return _comparable(mine) != _comparable(wanted)


def runtime_matches(runtime: Sequence[Row], wanted: Sequence[Row], writer: int, reader: int) -> bool:
    """The writer hostgroup exactly as wanted (status included); every wanted reader present (ProxySQL
    may add the writer to the readers itself, writer_is_also_reader)."""
    def servers(rows: Sequence[Row], hostgroup: int, with_status: bool) -> set[tuple[str, int, str]]:
        return {(*_server(r), str(r["status"]) if with_status else "") for r in rows
                if int(r["hostgroup_id"]) == hostgroup}
    if servers(runtime, writer, True) != servers(wanted, writer, True):
        return False
    return servers(wanted, reader, False) <= servers(runtime, reader, False)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    text = str(value)
    return text if re.fullmatch(r"-?\d+", text) else sql_string(text)


def rewrite_statements(wanted: Sequence[Row], writer: int, reader: int) -> list[str]:
    statements = [f"DELETE FROM mysql_servers WHERE hostgroup_id IN ({writer}, {reader})"]
    for r in wanted:
        columns = [c for c in r if r[c] is not None]
        statements.append(f"INSERT INTO mysql_servers ({', '.join(columns)}) "
                          f"VALUES ({', '.join(_literal(r[c]) for c in columns)})")
    return [*statements, "LOAD MYSQL SERVERS TO RUNTIME", "SAVE MYSQL SERVERS TO DISK"]


# ---- the driver ----------------------------------------------------------------------------------------
@dataclass
class ProxyStatus:
    proxy: str
    cluster: str
    converged: bool = False
    epoch: int | None = None
    master: str = ""
    phase: str = ""
    error: str = ""
    checked_at: float | None = None
    converged_at: float | None = None
    writes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"Proxy": self.proxy, "ClusterAlias": self.cluster, "Converged": self.converged,
                "Lagging": not self.converged, "Epoch": self.epoch, "Master": self.master, "Phase": self.phase,
                "LastError": self.error, "CheckedAt": self.checked_at, "ConvergedAt": self.converged_at,
                "Writes": self.writes}


class Manager(Protocol):
    """What the driver reads of the manager (`ManagerService`)."""

    settings: ManagerSettings
    store: StateStore
    views: dict[str, ClusterView]
    instances: dict[str, Instance]
    cluster_of: dict[str, str]

    @property
    def is_leader(self) -> bool: ...

    def resolve_cluster(self, hint: str) -> ClusterView: ...


class ProxySQLDriver:
    def __init__(self, service: Manager, targets: Sequence[ProxySQLTarget]) -> None:
        self.service, self.targets = service, tuple(targets)
        self.status: dict[tuple[str, str], ProxyStatus] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._locks = {t.label: asyncio.Lock() for t in self.targets}

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="turnout-proxysql")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        poll = min(1.0, self.service.settings.InstancePollSeconds)
        while True:
            self._wake.clear()
            if self.service.is_leader:
                try:
                    await self.converge_all()
                except Exception:
                    log.exception("driving the ProxySQLs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll)

    # ---- one pass -----------------------------------------------------------------------------
    def _clusters_of(self, target: ProxySQLTarget) -> list[str]:
        views = self.service.views
        if target.cluster:
            with contextlib.suppress(Exception):
                return [self.service.resolve_cluster(target.cluster).state.name]
            return []
        if len(views) > 1:
            # One pair of hostgroups cannot front several clusters: the entry must name its cluster.
            for name in views:
                status = self.status.setdefault((target.label, name), ProxyStatus(target.label, name))
                status.converged = False
                status.error = (f"the manager knows {len(views)} clusters: set cluster = \"NAME\" in this "
                                "[[manager.proxysql]] entry")
            return []
        return sorted(views)

    async def converge_all(self, only: str | None = None) -> None:
        work: list[Awaitable[None]] = []
        for target in self.targets:
            for name in self._clusters_of(target):
                if only is None or name == only:
                    work.append(self.converge(target, name))
        await asyncio.gather(*work)

    def readers_of(self, name: str, state: ClusterState) -> list[str]:
        service = self.service
        fenced = set()
        view = service.views.get(name)
        if view is not None:
            fenced = set(view.snapshot.fenced)
        return [k for k, i in service.instances.items()
                if service.cluster_of.get(k) == name and k != state.master and k not in fenced
                and i.reachable and i.replicating]

    async def converge(self, target: ProxySQLTarget, name: str) -> None:
        store = self.service.store
        state = await store.get_cluster(name)
        if state is None:
            return
        status = self.status.setdefault((target.label, name), ProxyStatus(target.label, name))
        status.checked_at = time.time()
        timeout = self.service.settings.MySQLConnectTimeoutSeconds + 2
        credentials = Credentials(target.user, target.password)
        try:
            async with self._locks[target.label], connect(target.address, credentials, timeout) as conn:
                writer, reader = await self._hostgroups(conn, target, timeout)
                current = await query(conn, target.address, "SELECT * FROM mysql_servers", timeout)
                wanted = desired_rows(current, writer, reader, state, self.readers_of(name, state))
                wrote = False
                if needs_write(current, wanted, writer, reader):
                    for sql in rewrite_statements(wanted, writer, reader):
                        await query(conn, target.address, sql, timeout)
                    wrote = True
                if not await self._runtime_shows(conn, target, wanted, writer, reader, timeout):
                    await query(conn, target.address, "LOAD MYSQL SERVERS TO RUNTIME", timeout)
                    if not await self._runtime_shows(conn, target, wanted, writer, reader, timeout):
                        raise ServerError(f"{target.address}: runtime_mysql_servers does not show the change "
                                          "after LOAD MYSQL SERVERS TO RUNTIME")
                    wrote = True
        except (ServerError, OSError, ValueError) as exc:
            if status.error != str(exc) or status.converged:
                await store.audit(name, "proxysql", f"ProxySQL {target.label} lagging (master {state.master}, "
                                  f"epoch {state.epoch} not applied): {exc}; retrying")
            status.converged, status.error = False, str(exc)
            return
        lagged = not status.converged
        status.converged, status.error, status.converged_at = True, "", time.time()
        status.epoch, status.master, status.phase = state.epoch, state.master, state.phase
        if wrote:
            status.writes += 1
            readers = sorted(_server_key(r) for r in wanted if int(r["hostgroup_id"]) == reader)
            await store.audit(name, "proxysql", (
                f"ProxySQL {target.label}: hostgroup {writer} = {state.master} "
                f"({'ONLINE' if state.phase == 'stable' else 'OFFLINE_SOFT'}), hostgroup {reader} = "
                f"{', '.join(readers) or 'none'} (epoch {state.epoch}); LOAD MYSQL SERVERS TO RUNTIME, "
                f"SAVE MYSQL SERVERS TO DISK, runtime verified" + (" (caught up after lagging)" if lagged else "")))

    async def _runtime_shows(self, conn: Any, target: ProxySQLTarget, wanted: Sequence[Row], writer: int,
                             reader: int, timeout: float) -> bool:
        """Read runtime_mysql_servers back, a few times over a second: a proxy may apply a LOAD, or
        its monitor settle a change, a moment later."""
        sql = (f"SELECT hostgroup_id, hostname, port, status FROM runtime_mysql_servers "
               f"WHERE hostgroup_id IN ({writer}, {reader})")
        for _ in range(10):
            if runtime_matches(await query(conn, target.address, sql, timeout), wanted, writer, reader):
                return True
            await asyncio.sleep(0.1)
        return False

    async def _hostgroups(self, conn: Any, target: ProxySQLTarget, timeout: float) -> tuple[int, int]:
        if target.writer_hostgroup is not None and target.reader_hostgroup is not None:
            return target.writer_hostgroup, target.reader_hostgroup
        rows = await query(conn, target.address,
                           "SELECT writer_hostgroup, reader_hostgroup FROM mysql_replication_hostgroups", timeout)
        if len(rows) != 1:
            raise ValueError(f"{target.address}: {len(rows)} rows in mysql_replication_hostgroups; set "
                             "writer_hostgroup and reader_hostgroup in [[manager.proxysql]]")
        return int(rows[0]["writer_hostgroup"]), int(rows[0]["reader_hostgroup"])

    # ---- takeovers ------------------------------------------------------------------------------
    async def drain(self, state: ClusterState, old_master: str) -> None:
        """Before the old master turns read_only: OFFLINE_SOFT in every ProxySQL's writer hostgroup,
        then wait (TakeoverDrainSeconds at most) until its connections in use are returned."""
        await self.converge_all(only=state.name)
        deadline = time.monotonic() + self.service.settings.TakeoverDrainSeconds
        host, port = split_key(old_master)
        for target in self.targets:
            if state.name not in self._clusters_of(target):
                continue
            while True:
                used = await self._used(target, host, port)
                if not used or time.monotonic() >= deadline:
                    if used:
                        await self.service.store.audit(state.name, "proxysql", (
                            f"ProxySQL {target.label}: {used} connections to {old_master} still in use after "
                            f"TakeoverDrainSeconds={self.service.settings.TakeoverDrainSeconds:g}"), old_master)
                    break
                await asyncio.sleep(0.05)

    async def _used(self, target: ProxySQLTarget, host: str, port: int) -> int:
        timeout = self.service.settings.MySQLConnectTimeoutSeconds + 2
        try:
            async with connect(target.address, Credentials(target.user, target.password), timeout) as conn:
                rows = await query(conn, target.address,
                                   f"SELECT ConnUsed FROM stats_mysql_connection_pool WHERE srv_host = "
                                   f"{sql_string(host)} AND srv_port = {int(port)}", timeout)
        except (ServerError, OSError):
            return 0  # not reachable: it is reported lagging; nothing to wait for
        return sum(int(r["ConnUsed"] or 0) for r in rows)

    def report(self) -> list[dict[str, Any]]:
        return [s.to_json() for _, s in sorted(self.status.items())]


def _server_key(row: Row) -> str:
    host, port = _server(row)
    return f"{host}:{port}"


def combine(*drains: Callable[[ClusterState, str], Awaitable[None]] | None) -> Callable[
        [ClusterState, str], Awaitable[None]] | None:
    present = [d for d in drains if d is not None]
    if not present:
        return None

    async def drain(state: ClusterState, old_master: str) -> None:
        for one in present:
            await one(state, old_master)
    return drain


