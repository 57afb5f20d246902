"""The state store: clusters (master, epoch, phase), leases, instances, fences, recoveries, audit."""

from turnout.state.base import (
    AuditEntry,
    ClusterState,
    Downtime,
    Fence,
    InstanceRecord,
    Phase,
    RecoveryRecord,
    StateStore,
)
from turnout.state.sqlite import SQLiteStateStore

__all__ = [
    "AuditEntry",
    "ClusterState",
    "Downtime",
    "Fence",
    "InstanceRecord",
    "Phase",
    "RecoveryRecord",
    "SQLiteStateStore",
    "StateStore",
]
