"""What recoveries and takeovers share: their tools, an audited step log, semi-sync, publishing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from turnout.manager.settings import ManagerSettings
from turnout.state.base import ClusterState, Phase, ProxyRecord, StateStore
from turnout.topology.actions import Actions
from turnout.topology.model import Instance

# Called with the cluster in phase "switching" and the old master's key, before it turns
# read_only: the proxies let transactions in flight finish, then end the rest.
Drain = Callable[[ClusterState, str], Awaitable[None]]
# Raises (LeadershipLost) when this manager may no longer start a step; the argument says which.
Guard = Callable[[str], None]


def no_guard(what: str) -> None:
    return None


@dataclass(frozen=True)
class Toolkit:
    settings: ManagerSettings
    store: StateStore
    actions: Actions
    drain: Drain | None = None
    guard: Guard = no_guard


@dataclass
class StepLog:
    """Every step of one operation, each audited in the store as it happens.

    After each step is logged, `guard` is asked whether the next one may start: a manager that
    has lost its leader lease stops between two steps, never in the middle of one.
    """

    store: StateStore
    cluster: str
    action: str
    lines: list[str] = field(default_factory=list)
    guard: Guard = no_guard

    async def __call__(self, message: str, instance: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        self.lines.append(f"{stamp} {message}")
        await self.store.audit(self.cluster, self.action, message, instance)
        self.guard("the step after: " + message)


def pending_proxies(
    proxies: Sequence[ProxyRecord], cluster: str, epoch: int, phase: Phase | None = None
) -> list[str]:
    """The registered proxies that have not applied `epoch` (in `phase`, if given) of `cluster`
    nor a later epoch. Pure."""
    waiting = []
    for proxy in proxies:
        acked = proxy.acks.get(cluster)
        if acked is not None and (acked[0] > epoch or (acked[0] == epoch and phase in (None, acked[1]))):
            continue
        waiting.append(proxy.id)
    return waiting


async def wait_for_proxies(
    toolkit: Toolkit, log: StepLog, cluster: str, epoch: int, phase: Phase | None, what: str
) -> None:
    """Until every proxy registered in the store has applied `epoch` (`phase`) or lost its lease.

    No bound but the proxies' leases: a proxy that cannot reach the store stops renewing and
    drops out after ProxyLeaseSeconds; one that can reach it applies the state and says so.
    """
    if not toolkit.store.shares_proxies:
        return
    started = time.monotonic()
    reported: list[str] | None = None
    while True:
        toolkit.guard(f"to wait for the proxies ({what})")
        waiting = pending_proxies(await toolkit.store.proxies(), cluster, epoch, phase)
        if not waiting:
            if reported:
                await log(f"every registered proxy has {what} or lost its lease "
                          f"(waited {time.monotonic() - started:.2f}s)")
            return
        if waiting != reported:
            await log(f"waiting until proxies {', '.join(waiting)} have {what} or their leases expire")
            reported = waiting
        await asyncio.sleep(0.05)


async def open_new_master(
    toolkit: Toolkit, log: StepLog, state: ClusterState, master: Instance, members: Iterable[str]
) -> ClusterState | None:
    """Publish `master` with epoch + 1 in phase "promoting" (writes held), wait until every
    registered proxy has applied that epoch or lost its lease, then set read_only=OFF on it and
    publish it stable. None if another manager changed the cluster state first.

    So no proxy still writing to an earlier master can overlap the new master's first write.
    """
    if state.phase == "promoting" and state.master == master.key:
        staged = state  # resuming: already published
    else:
        staged = state.evolve(master=master.key, epoch=state.epoch + 1, phase="promoting",
                              members=tuple(sorted(members)))
        if not await toolkit.store.publish(staged, state.epoch):
            await log("another manager changed the cluster state meanwhile: not publishing")
            return None
        await log(f"published master {master.key}, epoch {staged.epoch}, phase promoting: writes held until "
                  "every proxy has applied it", master.key)
    await wait_for_proxies(toolkit, log, state.name, staged.epoch, None, f"applied epoch {staged.epoch}")
    await toolkit.actions.set_read_only(master, False)
    await log(f"{master.key}: read_only=OFF", master.key)
    stable = await publish_phase(toolkit.store, staged, "stable")
    if stable is None:
        await log("another manager changed the cluster state meanwhile: not publishing")
        return None
    await log(f"published master {master.key}, epoch {stable.epoch}", master.key)
    return stable


async def publish_phase(store: StateStore, state: ClusterState, phase: Phase) -> ClusterState | None:
    """Same master and epoch, new phase; None if another manager changed the cluster meanwhile."""
    new = state.evolve(phase=phase)
    return new if await store.publish(new, state.epoch) else None


async def semi_sync_master_side(toolkit: Toolkit, log: StepLog, master: Instance) -> None:
    """Semi-sync master side on the new master (replica side off), before any replica is pointed
    at it: a replica negotiates semi-sync when its IO thread connects, and `point_to` sets the
    replica side before it starts replicating. Turning the master side on afterwards would need
    every IO thread restarted, which raced with the connection it replaced (a replica then sat
    connected and received nothing)."""
    await toolkit.actions.semi_sync(master, master_side=True, replica_side=False)
    await log(f"semi-sync: master side ON, replica side OFF on {master.key}", master.key)
