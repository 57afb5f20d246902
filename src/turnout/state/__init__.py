"""The state store: clusters (master, epoch, phase), leases, instances, fences, recoveries, audit.

`open_store("etcd://host:port/prefix")` opens the etcd backend (`turnout.state.etcd`), any other
string or path the SQLite one.
"""

from turnout.state.base import (
    AuditEntry,
    ClusterState,
    Downtime,
    Fence,
    InstanceRecord,
    Phase,
    ProxyRecord,
    RecoveryRecord,
    StateStore,
)
from turnout.state.factory import open_store
from turnout.state.sqlite import SQLiteStateStore

__all__ = [
    "AuditEntry",
    "ClusterState",
    "Downtime",
    "Fence",
    "InstanceRecord",
    "Phase",
    "ProxyRecord",
    "RecoveryRecord",
    "SQLiteStateStore",
    "StateStore",
    "open_store",
]
