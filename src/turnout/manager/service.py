"""The long-running manager: discovery loop, analysis, automated recovery, and the operations
the HTTP API exposes. An asyncio object with start()/stop(), so it can run in any process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterable

from turnout.manager import analysis, detections, switches
from turnout.manager.analysis import ClusterView, Finding, Snapshot
from turnout.manager.checks import SettingsFinding, slow_detection, unsafe_semi_sync
from turnout.manager.leadership import LEASE, LeaderLease, LeadershipLost, leader_address
from turnout.manager.proxysql import ProxySQLDriver, combine
from turnout.manager.recovery import RecoveryResult, recover_dead_master
from turnout.manager.resume import resume
from turnout.manager.settings import ManagerSettings
from turnout.manager.steps import Drain, Toolkit
from turnout.manager.takeover import TakeoverRefused, TakeoverResult, graceful_takeover
from turnout.state.base import ClusterState, StateStore
from turnout.topology.actions import Actions
from turnout.topology.connection import Credentials
from turnout.topology.discovery import discover
from turnout.topology.model import Instance, make_key, split_key

log = logging.getLogger("turnout.manager")

__all__ = ["LEASE", "ClusterView", "ManagerError", "ManagerService", "NotFound", "NotLeader"]


class ManagerError(Exception):
    """An operation cannot be done; the message says why and what to do."""


class NotFound(ManagerError):
    pass


class NotLeader(ManagerError):
    """This manager does not lead: actions belong to the leader (`leader`: its API address)."""

    def __init__(self, message: str, leader: str | None) -> None:
        super().__init__(message)
        self.leader = leader


def assign_clusters(
    instances: dict[str, Instance], recorded: dict[str, str], fenced: dict[str, str]
) -> dict[str, str]:
    """Cluster name of every instance: the cluster its replication tree was recorded in, else the
    key of the tree's root. Fenced instances keep theirs. Pure."""
    def root(key: str) -> str:
        seen = {key}
        while True:
            master = instances[key].master_key
            if master is None or master not in instances or master in seen:
                return key
            seen.add(master)
            key = master

    trees: dict[str, list[str]] = {}
    for key in instances:
        trees.setdefault(root(key), []).append(key)
    result: dict[str, str] = {}
    for top, members in trees.items():
        live = [k for k in members if k not in fenced]
        names = [recorded[k] for k in [top, *sorted(live)] if k in recorded and k not in fenced]
        name = names[0] if names else top
        for key in members:
            result[key] = fenced.get(key, name)
    return result


def cluster_matches(name: str, filters: Iterable[str]) -> bool:
    """RecoverMasterClusterFilters: '*' matches all, anything else is a regular expression."""
    return any(f == "*" or re.search(f, name) for f in filters)


class ManagerService:
    def __init__(self, settings: ManagerSettings, store: StateStore, drain: Drain | None = None) -> None:
        self.settings = settings
        self.store = store
        topology = Credentials(settings.MySQLTopologyUser, settings.MySQLTopologyPassword)
        self.actions = Actions(
            topology,
            Credentials(settings.MySQLReplicaUser, settings.MySQLReplicaPassword),
            timeout=settings.MySQLDiscoveryReadTimeoutSeconds,
            flavor_override=settings.ReplicationFlavor or None,
        )
        self.proxysql = ProxySQLDriver(self, settings.ProxySQL) if settings.ProxySQL else None
        self.owner = (settings.ManagerId or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}") \
            + "@" + settings.advertise
        self.leadership = LeaderLease(store, self.owner, settings)
        self.toolkit = Toolkit(settings, store, self.actions,
                               combine(drain, self.proxysql.drain if self.proxysql is not None else None),
                               guard=self.leadership.check)
        self.instances: dict[str, Instance] = {}
        self.cluster_of: dict[str, str] = {}
        self.views: dict[str, ClusterView] = {}
        self.settings_findings: list[SettingsFinding] = []
        self.last_tick: float | None = None
        self.ticks = 0
        self.last_recovery: RecoveryResult | None = None
        self._busy: set[str] = set()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._blocked_reported: dict[str, int] = {}

    # ---- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        for record in await self.store.instances():
            self.instances[record.key] = Instance.from_dict(record.data)
            self.cluster_of[record.key] = record.cluster
        for seed in self.settings.DiscoverySeeds:
            split_key(seed)
            self.instances.setdefault(seed, Instance(*split_key(seed), reachable=False))
        await self.leadership.start()
        self._task = asyncio.create_task(self._loop(), name="turnout-manager")
        if self.proxysql is not None:
            self.proxysql.start()

    async def stop(self) -> None:
        if self.proxysql is not None:
            await self.proxysql.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.leadership.stop()

    @property
    def is_leader(self) -> bool:
        return self.leadership.is_leader

    def leader(self) -> str | None:
        """The leader's API address (host:port) as last read from the store; None if unknown."""
        return leader_address(self.leadership.leader_owner)

    def require_leader(self, what: str) -> None:
        """Raise NotLeader unless this manager leads (API actions and operations)."""
        if self.is_leader:
            return
        leader = self.leader()
        raise NotLeader(f"this manager ({self.owner}) is not the leader: {what} belongs to the leader "
                        + (f"at {leader}" if leader else "(none known right now: retry shortly)"), leader)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:
                log.exception("manager tick failed")
            self._wake.clear()
            delay = max(0.0, self.settings.InstancePollSeconds - (time.monotonic() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    # ---- one round --------------------------------------------------------------------------
    async def tick(self) -> None:
        async with self._lock:
            await self._refresh()
        for view in list(self.views.values()):
            if view.state.phase != "stable":
                await self._maybe_resume(view)
            else:
                await self._maybe_recover(view)
        self._wake_proxies()

    def _wake_proxies(self) -> None:
        if self.proxysql is not None:
            self.proxysql.wake()

    async def _maybe_resume(self, view: ClusterView) -> None:
        """An operation left half done by an earlier leader (or an earlier term of this one)."""
        name = view.state.name
        if not self.is_leader or name in self._busy:
            return
        self._busy.add(name)
        try:
            async with self._lock:
                state = await self.store.get_cluster(name)
                if state is None or state.phase == "stable":
                    return
                await resume(self.toolkit, self.owner, state, view.snapshot)
                await self._refresh()
        except LeadershipLost as exc:
            log.warning("resuming %s stopped: %s", name, exc)
        finally:
            self._busy.discard(name)

    async def _refresh(self, extra: Iterable[str] = ()) -> None:
        seeds = set(self.instances) | set(extra)
        if not seeds:
            self.last_tick = time.time()
            return
        self.instances = await discover(
            seeds, self.actions.topology, self.settings.MySQLDiscoveryReadTimeoutSeconds,
            known=self.instances, flavor=self.settings.ReplicationFlavor or None,
        )
        fences = {f.key: f.cluster for f in await self.store.fenced()}
        self.cluster_of = assign_clusters(self.instances, self.cluster_of, fences)
        for key, inst in self.instances.items():
            await self.store.put_instance(key, self.cluster_of[key], inst.to_dict())
        if self.is_leader:
            await self._enforce_fences(fences)
        downtimed = {d.key for d in await self.store.downtimes()}
        views = {}
        for name in sorted(set(self.cluster_of.values())):
            members = [i for k, i in self.instances.items() if self.cluster_of[k] == name]
            snapshot = Snapshot.of(name, members, downtimed, [k for k in fences if self.cluster_of.get(k) == name])
            state = await self._cluster_state(name, snapshot)
            if state is None:
                continue
            views[name] = ClusterView(state, snapshot, tuple(analysis.analyze(snapshot)))
        if self.is_leader:
            for change in detections.changes({n: v.findings for n, v in self.views.items()},
                                             {n: v.findings for n, v in views.items()}):
                await self.store.audit(change.cluster, "detection", change.message, change.instance)
        self.views = views
        self.settings_findings = [
            *slow_detection(self.instances.values(), self.settings.DetectionDelayBoundSeconds),
            *unsafe_semi_sync(self.instances.values(), self.settings.DetectionDelayBoundSeconds
                              + self.settings.InstancePollSeconds + self.settings.ProxyLeaseSeconds),
        ]
        self.last_tick = time.time()
        self.ticks += 1

    async def _cluster_state(self, name: str, snapshot: Snapshot) -> ClusterState | None:
        state = await self.store.get_cluster(name)
        live = sorted(k for k in snapshot.instances if k not in snapshot.fenced)
        if state is None:
            roots = [i for k, i in snapshot.instances.items() if not i.is_replica and k not in snapshot.fenced]
            if len(roots) != 1 or not self.is_leader:
                return None
            state = ClusterState(name, roots[0].key, epoch=1, members=tuple(live))
            if await self.store.publish(state, None):
                await self.store.audit(name, "discover", f"cluster {name} discovered, master {state.master}",
                                       state.master)
            return await self.store.get_cluster(name)
        if state.phase == "stable" and tuple(live) != state.members and self.is_leader:
            updated = state.evolve(members=tuple(live))
            if await self.store.publish(updated, state.epoch):
                return updated
            return await self.store.get_cluster(name)
        return state

    async def _enforce_fences(self, fences: dict[str, str]) -> None:
        for key in fences:
            inst = self.instances.get(key)
            if inst is None or not inst.reachable or inst.read_only is not False:
                continue
            try:
                await self.actions.set_read_only(inst, True)
                self.instances[key] = inst.evolve(read_only=True)
                await self.store.audit(fences[key], "fence", f"{key} is fenced and came back writable: read_only=ON",
                                       key)
            except Exception as exc:
                await self.store.audit(fences[key], "fence", f"{key}: setting read_only=ON failed: {exc}", key)

    async def _maybe_recover(self, view: ClusterView) -> None:
        if not self.is_leader or view.state.name in self._busy:
            return
        for finding in view.findings:
            if not finding.recoverable_master_failure or finding.instance != view.state.master:
                continue
            if finding.downtimed:
                continue
            if not cluster_matches(view.state.name, self.settings.RecoverMasterClusterFilters):
                continue
            if await switches.recoveries_disabled(self.store):
                return
            result = await self._run_recovery(view, finding, manual=False)
            blocker = result.blocked_by
            if blocker is not None and self._blocked_reported.get(view.state.name) != blocker.id:
                self._blocked_reported[view.state.name] = blocker.id
                await self.store.audit(view.state.name, "recover", result.message, finding.instance)
            return

    async def _run_recovery(
        self, view: ClusterView, finding: Finding, manual: bool, candidate: str | None = None
    ) -> RecoveryResult:
        self._busy.add(view.state.name)
        try:
            async with self._lock:
                toolkit = await self.operation_toolkit(view.snapshot.instances)
                try:
                    result = await recover_dead_master(toolkit, view.state, view.snapshot, finding, manual, candidate)
                except LeadershipLost as exc:
                    log.warning("recovery of %s stopped: %s", view.state.name, exc)
                    return RecoveryResult(view.state.name, finding.instance, finding.code, success=False,
                                          message=f"stopped: {exc}; the next leader finishes or rolls it back")
                if result.recovery_id is not None:
                    self.last_recovery = result
                    self._blocked_reported.pop(view.state.name, None)
                    self._wake_proxies()  # the published master, at once: not after a discovery round
                    await self._refresh()
            return result
        finally:
            self._busy.discard(view.state.name)

    async def operation_toolkit(self, keys: Iterable[str]) -> Toolkit:
        """The toolkit with the promotion rules registered by register-candidate over the configured ones."""
        registered = await switches.registered_rules(self.store, keys)
        if not registered:
            return self.toolkit
        rules = {**self.settings.PromotionRules, **registered}
        return dataclasses.replace(self.toolkit, settings=dataclasses.replace(self.settings, PromotionRules=rules))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[ClusterState]:
        """Run one operator operation on a cluster: none other, no recovery meanwhile; re-discovered after."""
        self.require_leader("changing the topology")
        if name in self._busy:
            raise ManagerError(f"a recovery or takeover of {name} is running: wait for it to finish")
        self._busy.add(name)
        try:
            async with self._lock:
                state = await self.store.get_cluster(name)
                if state is None:
                    raise NotFound(f"cluster {name} has no published state yet")
                try:
                    yield state
                finally:
                    await self._refresh()
        finally:
            self._busy.discard(name)

    # ---- lookups ------------------------------------------------------------------------------
    def resolve_cluster(self, hint: str) -> ClusterView:
        """A cluster by name, alias or the key of one of its instances."""
        if hint in self.views:
            return self.views[hint]
        cluster = self.cluster_of.get(hint)
        if cluster is None and ":" not in hint:
            matches = {c for k, c in self.cluster_of.items() if k.startswith(hint + ":")}
            cluster = matches.pop() if len(matches) == 1 else None
        if cluster is None or cluster not in self.views:
            known = ", ".join(sorted(self.views)) or "none yet: discover an instance first"
            raise NotFound(f"no cluster matches {hint!r}; known clusters: {known}")
        return self.views[cluster]

    def instance(self, key: str) -> Instance:
        try:
            return self.instances[key]
        except KeyError:
            raise NotFound(f"{key} is not a known instance; discover it first") from None

    # ---- operations ------------------------------------------------------------------------------
    async def discover_instance(self, host: str, port: int) -> Instance:
        key = make_key(host, port)
        async with self._lock:
            await self._refresh(extra=[key])
        inst = self.instances[key]
        if not inst.reachable:
            raise ManagerError(f"{key} cannot be reached: {inst.last_probe_error}")
        await self.store.audit(self.cluster_of.get(key, key), "discover", f"discovered {key}", key)
        return inst

    async def forget_instance(self, host: str, port: int) -> None:
        key = make_key(host, port)
        async with self._lock:
            if key not in self.instances:
                raise NotFound(f"{key} is not a known instance")
            cluster = self.cluster_of.pop(key, key)
            del self.instances[key]
            await self.store.forget_instance(key)
            await self.store.audit(cluster, "forget", f"forgot {key}", key)

    async def recover(self, host: str, port: int, candidate: str | None = None) -> RecoveryResult:
        self.require_leader("recover")
        key = make_key(host, port)
        self.instance(key)
        view = self.resolve_cluster(key)
        if view.state.name in self._busy:
            raise ManagerError(f"a recovery of {view.state.name} is already running")
        finding = next((f for f in view.findings if f.instance == key), None)
        if finding is None or not finding.recoverable_master_failure:
            code = finding.code if finding else "no analysis"
            raise ManagerError(f"{key}: {code}; recover acts on DeadMaster / DeadMasterAndSomeReplicas only")
        return await self._run_recovery(view, finding, manual=True, candidate=candidate)

    async def takeover(self, cluster_hint: str, new: str | None, auto: bool) -> TakeoverResult:
        self.require_leader("graceful-master-takeover")
        view = self.resolve_cluster(cluster_hint)
        name = view.state.name
        busy = name in self._busy
        self._busy.add(name)
        try:
            async with self._lock:
                state = await self.store.get_cluster(name) or view.state
                toolkit = await self.operation_toolkit(view.snapshot.instances)
                result = await graceful_takeover(toolkit, state, view.snapshot, state.master, new, auto,
                                                 recovering=busy)
                self._wake_proxies()
                await self._refresh()
            return result
        except TakeoverRefused as exc:
            raise ManagerError(str(exc)) from exc
        except LeadershipLost as exc:
            raise ManagerError(f"takeover stopped: {exc}; the next leader finishes or rolls it back") from exc
        finally:
            if not busy:
                self._busy.discard(name)

    async def force_failover(self, name: str, candidate: str | None, command: str) -> RecoveryResult:
        """force-master-failover / -takeover: recover as if the master were dead. A master that still
        answers is set read_only first, so the promoted replica is the only writable server."""
        self.require_leader(command)
        view = self.views.get(name)
        if view is None:
            raise NotFound(f"no cluster {name}")
        if name in self._busy or view.state.phase != "stable":
            raise ManagerError(f"a recovery or takeover of {name} is running: wait for it to finish")
        master_key = view.state.master
        replicas = view.snapshot.replicas_of(master_key)
        if not replicas:
            raise ManagerError(f"master {master_key} has no replicas: nothing to fail over to")
        master = self.instances.get(master_key)
        if master is not None and master.reachable:
            try:
                await self.actions.set_read_only(master, True, timeout=2.0)
                await self.store.audit(name, command, f"{command}: {master_key} read_only=ON before failing over",
                                       master_key)
            except Exception as exc:
                await self.store.audit(name, command, f"{command}: read_only=ON on {master_key} failed ({exc}); "
                                       "failing over anyway", master_key)
        finding = Finding(
            cluster=name, code=analysis.DEAD_MASTER, instance=master_key, is_master=True,
            replicas=tuple(r.key for r in replicas), count_replicas=len(replicas),
            count_valid_replicas=sum(1 for r in replicas if r.reachable),
            count_replicas_reaching_master=sum(1 for r in replicas if r.io_ok),
            count_replicating_replicas=sum(1 for r in replicas if r.replicating),
            downtimed=master_key in view.snapshot.downtimed, description=f"{command} requested by the operator",
        )
        return await self._run_recovery(view, finding, manual=True, candidate=candidate)

    async def forget_cluster(self, name: str) -> None:
        """Forget every instance of a cluster and its published state (discover brings it back)."""
        if name in self._busy:
            raise ManagerError(f"a recovery or takeover of {name} is running: wait for it to finish")
        async with self._lock:
            keys = sorted(k for k, c in self.cluster_of.items() if c == name)
            for key in keys:
                self.instances.pop(key, None)
                self.cluster_of.pop(key, None)
                await self.store.forget_instance(key)
            await self.store.delete_cluster(name)
            self.views.pop(name, None)
            await self.store.audit(name, "forget-cluster", f"cluster {name} forgotten: {', '.join(keys)}")

    async def acknowledge(self, cluster_hint: str, by: str, comment: str) -> int:
        name = self.resolve_cluster(cluster_hint).state.name
        count = await self.store.acknowledge_recoveries(name, by, comment)
        await self.store.audit(name, "ack-recovery", f"{count} recoveries acknowledged by {by}: {comment}")
        self._wake.set()
        return count

    async def begin_downtime(self, host: str, port: int, owner: str, reason: str, seconds: float) -> None:
        key = make_key(host, port)
        self.instance(key)
        await self.store.begin_downtime(key, owner, reason, seconds)
        await self.store.audit(self.cluster_of.get(key, key), "begin-downtime",
                               f"{key} downtimed by {owner} for {seconds:g}s: {reason}", key)

    async def end_downtime(self, host: str, port: int) -> bool:
        key = make_key(host, port)
        ended = await self.store.end_downtime(key)
        await self.store.audit(self.cluster_of.get(key, key), "end-downtime", f"{key} downtime ended", key)
        return ended

    async def unfence(self, host: str, port: int) -> bool:
        """Lift a fence once the operator has rebuilt the instance (or decided it is safe)."""
        key = make_key(host, port)
        lifted = await self.store.unfence(key)
        await self.store.audit(self.cluster_of.get(key, key), "unfence",
                               f"{key} fence lifted" if lifted else f"{key} was not fenced", key)
        return lifted

    async def wait_ticks(self, count: int = 1, timeout: float = 60) -> None:
        """Wait until `count` more discovery rounds have completed (for tests and tools)."""
        target = self.ticks + count
        deadline = time.monotonic() + timeout
        while self.ticks < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the manager did not complete {count} rounds within {timeout:g}s")
            await asyncio.sleep(0.05)
