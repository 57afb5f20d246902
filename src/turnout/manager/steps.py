"""What recoveries and takeovers share: their tools, an audited step log, semi-sync, publishing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from turnout.manager.settings import ManagerSettings
from turnout.state.base import ClusterState, Phase, StateStore
from turnout.topology.actions import Actions
from turnout.topology.model import Instance

# Called with the cluster in phase "switching" and the old master's key, before it turns
# read_only: the proxies let transactions in flight finish, then end the rest.
Drain = Callable[[ClusterState, str], Awaitable[None]]


@dataclass(frozen=True)
class Toolkit:
    settings: ManagerSettings
    store: StateStore
    actions: Actions
    drain: Drain | None = None


@dataclass
class StepLog:
    """Every step of one operation, each audited in the store as it happens."""

    store: StateStore
    cluster: str
    action: str
    lines: list[str] = field(default_factory=list)

    async def __call__(self, message: str, instance: str | None = None) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
        self.lines.append(f"{stamp} {message}")
        await self.store.audit(self.cluster, self.action, message, instance)


async def publish_phase(store: StateStore, state: ClusterState, phase: Phase) -> ClusterState | None:
    """Same master and epoch, new phase; None if another manager changed the cluster meanwhile."""
    new = state.evolve(phase=phase)
    return new if await store.publish(new, state.epoch) else None


async def publish_master(
    store: StateStore, state: ClusterState, master: str, members: Iterable[str]
) -> ClusterState | None:
    """A new master: epoch + 1, phase stable; None if another manager got there first."""
    new = state.evolve(master=master, epoch=state.epoch + 1, phase="stable", members=tuple(sorted(members)))
    return new if await store.publish(new, state.epoch) else None


async def semi_sync_master_side(toolkit: Toolkit, log: StepLog, master: Instance) -> None:
    """Semi-sync master side on the new master (replica side off), before any replica is pointed
    at it: a replica negotiates semi-sync when its IO thread connects, and `point_to` sets the
    replica side before it starts replicating. Turning the master side on afterwards would need
    every IO thread restarted, which raced with the connection it replaced (a replica then sat
    connected and received nothing)."""
    await toolkit.actions.semi_sync(master, master_side=True, replica_side=False)
    await log(f"semi-sync: master side ON, replica side OFF on {master.key}", master.key)
