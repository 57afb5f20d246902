"""The manager's view of one server: identity, role, replication state, positions, settings.

`Instance` is an immutable value built by a probe; a failed probe keeps the last known
replication facts and marks the instance unreachable, because analysis of a dead master needs
what the master looked like before it died.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def make_key(host: str, port: int) -> str:
    return f"{host}:{port}"


def split_key(key: str) -> tuple[str, int]:
    host, sep, port = key.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {key!r}")
    return host, int(port)


@dataclass(frozen=True)
class Instance:
    host: str
    port: int
    flavor: str = "mariadb"  # mariadb | mysql | binlog
    reachable: bool = True
    server_id: int | None = None
    version: str = ""
    read_only: bool | None = None
    super_read_only: bool | None = None
    # replication: None when the server is not a replica
    master_host: str | None = None
    master_port: int | None = None
    io_running: str | None = None  # "Yes" | "No" | "Connecting"
    sql_running: bool | None = None
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    seconds_behind_master: int | None = None
    sql_delay: int = 0
    using_gtid: str = ""
    # positions
    gtid_current_pos: str = ""  # MariaDB
    gtid_slave_pos: str = ""  # MariaDB: applied
    gtid_binlog_pos: str = ""  # MariaDB: written to this server's binlog
    gtid_io_pos: str = ""  # MariaDB: received
    executed_gtid_set: str = ""  # MySQL: gtid_executed
    retrieved_gtid_set: str = ""  # MySQL: received
    binlog_file: str = ""
    binlog_format: str = ""  # ROW | STATEMENT | MIXED; "" when unknown
    log_replica_updates: bool | None = None  # log_slave_updates; None when unknown
    binlog_pos: int = 0
    master_log_file: str = ""  # what the IO thread has read from the master
    read_master_log_pos: int = 0
    relay_master_log_file: str = ""  # what the SQL thread has applied
    exec_master_log_pos: int = 0
    # replication settings
    slave_net_timeout: float | None = None
    heartbeat_period: float | None = None
    connect_retry: int | None = None
    semi_sync_master_enabled: bool = False
    semi_sync_replica_enabled: bool = False
    semi_sync_available: bool = False
    # rpl_semi_sync_master_timeout: how long a commit waits for a replica before the master
    # goes on alone (asynchronous)
    semi_sync_timeout_ms: float | None = None
    # topology as the server reports it (SHOW SLAVE HOSTS / SHOW REPLICAS)
    replica_hosts: tuple[str, ...] = ()
    # the manager's own probe
    last_checked: float = 0.0
    last_seen: float | None = None
    last_probe_error: str = ""
    probe_ms: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return make_key(self.host, self.port)

    @property
    def master_key(self) -> str | None:
        if self.master_host is None or self.master_port is None:
            return None
        return make_key(self.master_host, self.master_port)

    @property
    def is_replica(self) -> bool:
        return self.master_key is not None

    @property
    def io_ok(self) -> bool:
        return self.io_running == "Yes"

    @property
    def replicating(self) -> bool:
        """Both threads running and connected (Orchestrator's 'replicating')."""
        return self.io_running == "Yes" and bool(self.sql_running)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["replica_hosts"] = list(self.replica_hosts)
        data["extra"] = dict(self.extra)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["replica_hosts"] = tuple(values.get("replica_hosts", ()))
        return cls(**values)

    def evolve(self, **changes: Any) -> Instance:
        return dataclasses.replace(self, **changes)

    def unreachable(self, error: str, at: float) -> Instance:
        """The same instance as last seen, now failing the manager's probe."""
        return dataclasses.replace(
            self, reachable=False, last_probe_error=error, last_checked=at, probe_ms=None
        )
