"""The leader lease of managers in HA: one leader on a store acts, the others answer reads.

Patroni's rule: the leader renews its lease every `LeaderRenewSeconds` and starts no new step
once the last renewal that succeeded began more than `LeaderRenewDeadlineSeconds` ago, which is
well before the lease (`LeaderLeaseSeconds`, counted by the store from a moment after that
renewal began) can expire and let another manager lead. Followers try to take the lease at the
same pace, so one leads within the lease's TTL plus one renewal interval of the leader's death.

The lease's owner is "<id>@<host:port>": the second part is where the leader's API answers, so
that a follower can forward actions to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from turnout.manager.settings import ManagerSettings
from turnout.state.base import StateStore

log = logging.getLogger("turnout.manager.leadership")

LEASE = "turnout-manager"


class LeadershipLost(Exception):
    """This manager can no longer be sure it leads: it starts no new step."""


def may_act(last_renewed: float | None, now: float, deadline: float) -> bool:
    """Whether a leader whose last successful renewal began at `last_renewed` may start a step. Pure."""
    return last_renewed is not None and now - last_renewed < deadline


def leader_address(owner: str | None) -> str | None:
    """The API address ("host:port") in a lease owner "<id>@<host:port>", if any. Pure."""
    if not owner or "@" not in owner:
        return None
    address = owner.rpartition("@")[2]
    return address or None


class LeaderLease:
    def __init__(
        self,
        store: StateStore,
        owner: str,
        settings: ManagerSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.owner = owner
        self.ttl = settings.LeaderLeaseSeconds
        self.renew_every = settings.LeaderRenewSeconds
        self.deadline = settings.LeaderRenewDeadlineSeconds
        self.clock = clock
        self.last_renewed: float | None = None  # monotonic start of the last renewal that succeeded
        self.leader_owner: str | None = None  # as last read from the store
        self.became_leader = asyncio.Event()
        self.terms = 0  # how many times this manager has become leader
        self.store_reachable = False  # the last attempt reached the store
        self._task: asyncio.Task[None] | None = None
        self._was_leader = False

    @property
    def is_leader(self) -> bool:
        return may_act(self.last_renewed, self.clock(), self.deadline)

    def check(self, what: str = "the next step") -> None:
        """Raise LeadershipLost unless this manager may still act."""
        if not self.is_leader:
            since = "never renewed" if self.last_renewed is None else (
                f"last renewal began {self.clock() - self.last_renewed:.1f}s ago")
            raise LeadershipLost(
                f"{self.owner} is no longer sure to hold the leader lease ({since}; RenewDeadline "
                f"{self.deadline:g}s): not starting {what}")

    async def start(self) -> None:
        await self.attempt()
        self._task = asyncio.create_task(self._loop(), name="turnout-leader-lease")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.is_leader:
            with contextlib.suppress(Exception):
                await self.store.release_lease(LEASE, self.owner)
        self.last_renewed = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            await self.attempt()

    async def attempt(self) -> None:
        """One renewal (as leader) or one try to take the lease (as follower)."""
        began = self.clock()
        try:
            ours = await asyncio.wait_for(self.store.acquire_lease(LEASE, self.owner, self.ttl), self.deadline)
        except Exception as exc:  # the store is unreachable: the deadline decides, not this failure
            log.warning("leader lease: cannot reach the state store: %s", exc or type(exc).__name__)
            ours = None
        self.store_reachable = ours is not None
        if ours:
            self.last_renewed = began
            self.leader_owner = self.owner
        elif ours is False:
            self.last_renewed = None
            with contextlib.suppress(Exception):
                self.leader_owner = await self.store.lease_owner(LEASE)
        leading = self.is_leader
        if leading and not self._was_leader:
            self.terms += 1
            log.warning("%s is now the leader manager", self.owner)
            self.became_leader.set()
        elif self._was_leader and not leading:
            log.warning("%s is no longer the leader manager (leader: %s)", self.owner, self.leader_owner)
            self.became_leader.clear()
        self._was_leader = leading
