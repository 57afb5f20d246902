"""What recoveries and takeovers share: their tools, an audited step log, semi-sync, publishing."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
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


async def restore_semi_sync(
    toolkit: Toolkit, log: StepLog, master: Instance, replicas: Sequence[Instance]
) -> None:
    """Semi-sync master side on the master only, replica side on the replicas only.

    A replica left with the master side on would make its own applier wait for acknowledgements
    nobody sends; a master left with the replica side on is harmless but confusing.
    """
    await toolkit.actions.semi_sync(master, master_side=True, replica_side=False)
    await log(f"semi-sync: master side ON, replica side OFF on {master.key}", master.key)
    for replica in replicas:
        try:
            await toolkit.actions.semi_sync(replica, master_side=False, replica_side=True)
            # The replica side is negotiated when the IO thread connects.
            await toolkit.actions.run(replica, [toolkit.actions.flavor(replica).stop_io_thread(),
                                                toolkit.actions.flavor(replica).start_replica()])
            await log(f"semi-sync: replica side ON, master side OFF on {replica.key}", replica.key)
        except Exception as exc:
            await log(f"semi-sync on {replica.key} failed: {exc}", replica.key)
