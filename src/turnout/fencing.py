"""A proxy's own lease in a shared state store (etcd), and fencing itself when it cannot renew it.

Every proxy that follows a shared store registers there under a lease of its own
(`ProxyLeaseSeconds`), renews it every `ProxyRenewSeconds`, and publishes per cluster the epoch
(and phase) it applies. A new master takes no write until every registered proxy has applied
its epoch or lost its lease (`turnout.manager.steps.open_new_master`). So a proxy that cannot
renew must stop writing before its lease can expire: once the last renewal that succeeded
began more than `ProxyRenewDeadlineSeconds` ago it fences itself — writes are held, then fail
with an error that says why; statements in flight to a writer are cut off. It lifts the fence
by itself once it has renewed (or registered again) and applied every cluster state as the
store has it now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from turnout.state.base import ClusterState, StateStore

log = logging.getLogger("turnout.fencing")


@dataclass(frozen=True)
class FenceStatus:
    fenced: bool
    reason: str = ""


def fence_status(
    registered: bool, last_renewed: float | None, now: float, deadline: float, caught_up: bool
) -> FenceStatus:
    """Whether the proxy may send writes, and if not why (the text clients see). Pure."""
    if not registered or last_renewed is None:
        return FenceStatus(True, "this proxy is not registered in the state store (yet): it sends no writes until "
                                 "it is and has applied the current cluster states")
    silent = now - last_renewed
    if silent >= deadline:
        return FenceStatus(True, f"this proxy has not renewed its lease in the state store for {silent:.1f}s "
                                 f"(deadline {deadline:g}s): a new master may be chosen without it, so it sends no "
                                 "writes until it reaches the store again")
    if not caught_up:
        return FenceStatus(True, "this proxy reached the state store again and is applying the current cluster "
                                 "states before it sends writes")
    return FenceStatus(False)


def caught_up(applied: dict[str, tuple[int, str]], states: Sequence[ClusterState]) -> bool:
    """Every cluster state as the store has it is the one applied. Pure."""
    return all(applied.get(s.name) == (s.epoch, s.phase) for s in states)


Apply = Callable[[ClusterState], Awaitable[None]]


class ProxyLease:
    def __init__(
        self,
        store: StateStore,
        proxy_id: str,
        address: str,
        ttl: float,
        renew_every: float,
        deadline: float,
        apply: Apply,
        on_change: Callable[[FenceStatus], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.id = proxy_id
        self.address = address
        self.ttl = ttl
        self.renew_every = renew_every
        self.deadline = deadline
        self.apply = apply
        self.on_change = on_change
        self.clock = clock
        self.applied: dict[str, tuple[int, str]] = {}  # what this proxy applies, per cluster
        self._acked: dict[str, tuple[int, str]] | None = None  # what the store has from us
        self.registered = False
        self.last_renewed: float | None = None
        self.caught_up = False
        self.status = fence_status(False, None, clock(), deadline, False)
        self.fenced_since: float | None = time.time()
        self.fences = 0  # how many times it fenced itself after having been unfenced
        self.renewals = 0
        self.renew_failures = 0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._sync: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._ack_lock = asyncio.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="turnout-proxy-lease")

    async def stop(self) -> None:
        for task in (self._task, self._sync):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._sync = None
        if self._expiry is not None:
            self._expiry.cancel()
        if self.registered:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.deregister_proxy(self.id), self.renew_every)
            self.registered = False

    async def _loop(self) -> None:
        while True:
            await self.round()
            await asyncio.sleep(self.renew_every)

    # ---- one renewal --------------------------------------------------------------------------
    async def round(self) -> None:
        """Renew (or register); then, in the background, read every cluster state, apply what is
        new and acknowledge. Applying can take a while (a takeover's drain): it never delays the
        next renewal."""
        began = self.clock()
        try:
            await asyncio.wait_for(self._renew(), self._limit)
        except Exception as exc:
            self.renew_failures += 1
            self.last_error = str(exc) or type(exc).__name__
            log.debug("proxy lease: cannot renew: %s", self.last_error)
            self._update()
            return
        self.renewals += 1
        self.last_error = ""
        self.last_renewed = began
        self._arm_expiry(began)
        if self._sync is None or self._sync.done():
            self._sync = asyncio.create_task(self._sync_states(), name="turnout-proxy-sync")
        self._update()

    @property
    def _limit(self) -> float:
        return max(self.renew_every, 1.0) * 1.5

    async def _sync_states(self) -> None:
        try:
            states = await asyncio.wait_for(self.store.clusters(), self._limit)
        except Exception as exc:
            self.last_error = str(exc) or type(exc).__name__
            return
        for state in states:
            if self.applied.get(state.name) != (state.epoch, state.phase):
                await self.apply(state)
        self.caught_up = caught_up(self.applied, states)
        await self.acknowledge()
        self._update()

    async def _renew(self) -> None:
        if self.registered and await self.store.renew_proxy(self.id):
            return
        if self.registered:
            log.warning("proxy lease: %s's lease expired in the state store; registering again", self.id)
        self.registered = False
        self.caught_up = False
        self._acked = None
        await self.store.register_proxy(self.id, self.address, self.ttl)
        self.registered = True

    def _arm_expiry(self, began: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        loop = asyncio.get_running_loop()
        # a hair late rather than early: the loop may run a timer up to its clock resolution early
        self._expiry = loop.call_later(max(0.0, began + self.deadline - self.clock()) + 0.01, self._expired)

    def _expired(self) -> None:
        # Whatever was applied may be stale by the time the store is reached again: the fence
        # lifts only after a sync that follows a renewal.
        self.caught_up = False
        self._update()

    async def acknowledge(self) -> None:
        """Tell the store what this proxy applies now (after a state was applied)."""
        async with self._ack_lock:
            if not self.registered or self._acked == self.applied:
                return
            acks = dict(self.applied)
            try:
                ok = await asyncio.wait_for(self.store.ack_proxy(self.id, acks), self._limit)
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                return
            if ok:
                self._acked = acks
            else:
                self.registered = False  # the lease expired: the next round registers again

    def applied_state(self, state: ClusterState) -> None:
        """The node has applied `state` (routing switched, transactions on older masters ended)."""
        self.applied[state.name] = (state.epoch, state.phase)

    def _update(self) -> None:
        status = fence_status(self.registered, self.last_renewed, self.clock(), self.deadline, self.caught_up)
        if status == self.status:
            return
        previous, self.status = self.status, status
        if status.fenced and not previous.fenced:
            self.fences += 1
            self.fenced_since = time.time()
            log.warning("proxy %s fenced itself: %s", self.id, status.reason)
        elif not status.fenced:
            log.warning("proxy %s lifted its fence: registered, renewed and up to date with the state store", self.id)
            self.fenced_since = None
        self.on_change(status)

    def stats(self) -> dict[str, object]:
        """Rows for stats_mysql_global and /metrics."""
        silent = None if self.last_renewed is None else self.clock() - self.last_renewed
        return {
            "Store_proxy_fenced": int(self.status.fenced),
            "Store_proxy_registered": int(self.registered),
            "Store_proxy_lease_age_ms": -1 if silent is None else int(silent * 1000),
            "Store_proxy_self_fences": self.fences,
            "Store_proxy_renewals": self.renewals,
            "Store_proxy_renew_failures": self.renew_failures,
        }
