"""Immutable configuration snapshots, one row type per ProxySQL table.

The admin layer owns the tables (memory / runtime / disk); LOAD ... TO RUNTIME turns them into a
`RuntimeConfig`, which the data path, the monitor and the manager read and never change.
Field names and defaults are ProxySQL's.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SERVER_STATUSES = ("ONLINE", "SHUNNED", "OFFLINE_SOFT", "OFFLINE_HARD")


@dataclass(frozen=True)
class MysqlServer:
    hostgroup_id: int
    hostname: str
    port: int = 3306
    gtid_port: int = 0
    status: str = "ONLINE"
    weight: int = 1
    compression: int = 0
    max_connections: int = 1000
    max_replication_lag: int = 0
    use_ssl: int = 0
    max_latency_ms: int = 0
    comment: str = ""

    @functools.cached_property
    def address(self) -> tuple[str, int]:  # cached: the data path asks for it on every statement
        return (self.hostname, self.port)


@dataclass(frozen=True)
class MysqlUser:
    username: str
    password: str = ""
    active: int = 1
    use_ssl: int = 0
    default_hostgroup: int = 0
    default_schema: str | None = None
    schema_locked: int = 0
    transaction_persistent: int = 1
    fast_forward: int = 0
    backend: int = 1
    frontend: int = 1
    max_connections: int = 10000
    attributes: str = ""
    comment: str = ""
    # turnout's own (in turnout_users, beside ProxySQL's table): reads of this user's sessions
    # see the session's own writes (causal reads).
    causal_reads: int = 0


@dataclass(frozen=True)
class QueryRule:
    rule_id: int
    active: int = 0
    username: str | None = None
    schemaname: str | None = None
    flagIN: int = 0
    client_addr: str | None = None
    proxy_addr: str | None = None
    proxy_port: int | None = None
    digest: str | None = None
    match_digest: str | None = None
    match_pattern: str | None = None
    negate_match_pattern: int = 0
    re_modifiers: str = "CASELESS"
    flagOUT: int | None = None
    replace_pattern: str | None = None
    destination_hostgroup: int | None = None
    cache_ttl: int | None = None
    timeout: int | None = None
    retries: int | None = None
    delay: int | None = None
    mirror_flagOUT: int | None = None
    mirror_hostgroup: int | None = None
    error_msg: str | None = None
    OK_msg: str | None = None
    multiplex: int | None = None
    log: int | None = None
    apply: int = 0
    comment: str | None = None
    # ProxySQL 2.x columns the router may ignore, kept so LOAD/SAVE round-trips every column.
    cache_empty_result: int | None = None
    cache_timeout: int | None = None
    reconnect: int | None = None
    next_query_flagIN: int | None = None
    sticky_conn: int | None = None
    gtid_from_hostgroup: int | None = None
    attributes: str = ""


@dataclass(frozen=True)
class ReplicationHostgroup:
    writer_hostgroup: int
    reader_hostgroup: int
    check_type: str = "read_only"
    comment: str = ""
    # turnout's settings, kept in the admin's turnout_replication_hostgroups (ProxySQL's table has
    # the four columns above only); in the configuration file they sit with the pair.
    stale_read_protection: int = 1  # a read_only server that does not replicate serves no reads
    two_writer_mode: str = "refuse"  # or "keep-current"


@dataclass(frozen=True)
class SchedulerJob:
    id: int
    active: int = 1
    interval_ms: int = 10000
    filename: str = ""
    arg1: str | None = None
    arg2: str | None = None
    arg3: str | None = None
    arg4: str | None = None
    arg5: str | None = None
    comment: str = ""


@dataclass(frozen=True)
class ProxysqlServer:
    """A row of proxysql_servers (ProxySQL Cluster's peers): kept and saved, not acted on."""

    hostname: str
    port: int = 6032
    weight: int = 0
    comment: str = ""


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything in force at runtime, as one immutable value; `version` grows with every LOAD."""

    version: int = 0
    servers: tuple[MysqlServer, ...] = ()
    users: tuple[MysqlUser, ...] = ()
    query_rules: tuple[QueryRule, ...] = ()
    replication_hostgroups: tuple[ReplicationHostgroup, ...] = ()
    scheduler: tuple[SchedulerJob, ...] = ()
    proxysql_servers: tuple[ProxysqlServer, ...] = ()
    # global_variables with ProxySQL's names: "mysql-...", "monitor-..." ("mysql-monitor_..." in the
    # table), "admin-...". Values are strings, as in ProxySQL's table.
    variables: Mapping[str, str] = field(default_factory=_frozen)

    def variable(self, name: str, default: str) -> str:
        return self.variables.get(name, default)

    def int_variable(self, name: str, default: int) -> int:
        try:
            return int(self.variables.get(name, default))
        except ValueError:
            return default

    def bool_variable(self, name: str, default: bool) -> bool:
        value = self.variables.get(name)
        if value is None:
            return default
        return value.strip().lower() in ("1", "true", "on", "yes")
