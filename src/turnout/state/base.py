"""The state store: the single source of truth shared by managers and proxies.

It knows clusters, leases, instances, fences, recoveries and an audit log as plain data; it
knows nothing about MySQL and nothing about SQL. Backends (SQLite, later etcd) implement
`StateStore`.
"""

from __future__ import annotations

import abc
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# "promoting": a new master is published (epoch + 1) but takes no write yet: the manager waits
# until every registered proxy has applied the new epoch (or lost its lease), then opens it.
Phase = Literal["stable", "switching", "recovering", "promoting"]
PHASES: tuple[Phase, ...] = ("stable", "switching", "recovering", "promoting")


@dataclass(frozen=True)
class ClusterState:
    """Who is the master of a cluster, since which epoch, and whether it is changing."""

    name: str
    master: str  # "host:port"
    epoch: int
    phase: Phase = "stable"
    members: tuple[str, ...] = ()
    updated_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, not {self.phase!r}")
        if self.epoch < 0:
            raise ValueError("epoch must be 0 or more")

    def evolve(self, **changes: Any) -> ClusterState:
        changes.setdefault("updated_at", time.time())
        return replace(self, **changes)


@dataclass(frozen=True)
class InstanceRecord:
    """A discovered instance: its cluster and the manager's last view of it (opaque to the store)."""

    key: str
    cluster: str
    data: Mapping[str, Any]
    updated_at: float


@dataclass(frozen=True)
class Fence:
    key: str
    cluster: str
    reason: str
    fenced_at: float


@dataclass(frozen=True)
class Downtime:
    key: str
    owner: str
    reason: str
    ends_at: float


@dataclass(frozen=True)
class RecoveryRecord:
    id: int
    cluster: str
    failure_type: str
    failed: str
    successor: str | None
    started_at: float
    ended_at: float | None
    success: bool
    acknowledged: bool
    acknowledged_by: str | None
    acknowledged_at: float | None
    acknowledge_comment: str | None
    manual: bool
    details: tuple[str, ...]


@dataclass(frozen=True)
class ProxyRecord:
    """A proxy registered in the store under a lease of its own, and what it has applied.

    `acks` maps a cluster to the (epoch, phase) the proxy applies: it routes writes to that
    epoch's master only, and has ended what ran on earlier masters.
    """

    id: str
    address: str
    acks: Mapping[str, tuple[int, str]]
    updated_at: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    cluster: str
    action: str
    message: str
    instance: str | None


class StateStore(abc.ABC):
    """Abstract state store. All methods are safe to call from several processes at once."""

    # ---- clusters -------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, state: ClusterState, expected_epoch: int | None) -> bool:
        """Store `state` if the stored epoch equals `expected_epoch` (None: the cluster must be new).

        Compare-and-set, so two managers cannot both promote: the loser gets False.
        """

    @abc.abstractmethod
    async def get_cluster(self, name: str) -> ClusterState | None: ...

    @abc.abstractmethod
    async def clusters(self) -> list[ClusterState]: ...

    @abc.abstractmethod
    async def delete_cluster(self, name: str) -> None: ...

    @abc.abstractmethod
    def watch(self, interval: float = 0.2) -> AsyncIterator[ClusterState]:
        """Every cluster state as it is now, then each change as it happens (any process)."""

    # ---- leader lease -----------------------------------------------------------------------
    @abc.abstractmethod
    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lease if free, expired or already ours (which renews it)."""

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        return await self.acquire_lease(name, owner, ttl)

    @abc.abstractmethod
    async def release_lease(self, name: str, owner: str) -> None: ...

    @abc.abstractmethod
    async def lease_owner(self, name: str) -> str | None: ...

    # ---- instances ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def put_instance(self, key: str, cluster: str, data: Mapping[str, Any]) -> None: ...

    @abc.abstractmethod
    async def instances(self, cluster: str | None = None) -> list[InstanceRecord]: ...

    @abc.abstractmethod
    async def forget_instance(self, key: str) -> bool: ...

    # ---- fences and downtime -------------------------------------------------------------------
    @abc.abstractmethod
    async def fence(self, key: str, cluster: str, reason: str) -> None: ...

    @abc.abstractmethod
    async def unfence(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def fenced(self) -> list[Fence]: ...

    @abc.abstractmethod
    async def begin_downtime(self, key: str, owner: str, reason: str, seconds: float) -> None: ...

    @abc.abstractmethod
    async def end_downtime(self, key: str) -> bool: ...

    @abc.abstractmethod
    async def downtimes(self) -> list[Downtime]:
        """Downtimes still in force."""

    # ---- recoveries ------------------------------------------------------------------------------
    @abc.abstractmethod
    async def start_recovery(self, cluster: str, failure_type: str, failed: str, manual: bool) -> int: ...

    @abc.abstractmethod
    async def finish_recovery(
        self, recovery_id: int, success: bool, successor: str | None, details: tuple[str, ...]
    ) -> None: ...

    @abc.abstractmethod
    async def recoveries(self, cluster: str | None = None, limit: int = 100) -> list[RecoveryRecord]:
        """Most recent first."""

    @abc.abstractmethod
    async def acknowledge_recoveries(self, cluster: str, by: str, comment: str) -> int:
        """Acknowledge every unacknowledged recovery of `cluster`; returns how many."""

    # ---- audit -------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def audit(self, cluster: str, action: str, message: str, instance: str | None = None) -> None: ...

    @abc.abstractmethod
    async def audit_log(self, cluster: str | None = None, limit: int = 200) -> list[AuditEntry]:
        """Most recent first."""

    # ---- proxies (shared stores only) -------------------------------------------------------------
    # A store shared by several hosts (etcd) keeps a registry of the proxies that follow it, each
    # on a lease of its own, so that a new master waits until every proxy has applied the new
    # epoch or lost its lease. The one-host SQLite store has none: the manager's own drain covers
    # the proxy running beside it, as before.
    shares_proxies: bool = False

    async def register_proxy(self, proxy_id: str, address: str, ttl: float) -> None:
        """(Re-)register `proxy_id` on a new lease of `ttl` seconds, with no epoch acknowledged."""
        raise NotImplementedError(f"{type(self).__name__} keeps no proxy registry")

    async def renew_proxy(self, proxy_id: str) -> bool:
        """Renew the proxy's lease; False if it has expired (register again)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no proxy registry")

    async def ack_proxy(self, proxy_id: str, acks: Mapping[str, tuple[int, str]]) -> bool:
        """Publish what the proxy applies; False if its lease has expired (register again)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no proxy registry")

    async def deregister_proxy(self, proxy_id: str) -> None:  # noqa: B027 - nothing to do without a registry
        """Leave the registry now rather than when the lease expires."""

    async def proxies(self) -> list[ProxyRecord]:
        """The registered proxies whose lease is alive."""
        return []

    async def close(self) -> None:  # noqa: B027 - optional for backends without resources
        """Release resources."""
