"""What LOAD and SAVE move: the modules (MYSQL SERVERS, ...), their tables, and the five directions."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from turnout.config.model import (
    MysqlServer,
    MysqlUser,
    ProxysqlServer,
    QueryRule,
    ReplicationHostgroup,
    SchedulerJob,
)


class Direction(enum.Enum):
    MEMORY_TO_RUNTIME = "memory to runtime"
    RUNTIME_TO_MEMORY = "runtime to memory"
    DISK_TO_MEMORY = "disk to memory"
    MEMORY_TO_DISK = "memory to disk"
    CONFIG_TO_MEMORY = "config file to memory"

    @property
    def changes_memory(self) -> bool:
        return self in (Direction.RUNTIME_TO_MEMORY, Direction.DISK_TO_MEMORY, Direction.CONFIG_TO_MEMORY)


@dataclass(frozen=True)
class Extension:
    """turnout's columns of a row type, kept in a table of their own beside ProxySQL's (whose
    shape stays ProxySQL's); joined on `join_on`. Rows at their defaults are not written."""

    name: str
    join_on: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A configuration table, the row type it holds, its key and its RuntimeConfig field."""

    name: str
    row_type: type[Any]
    key: Callable[[Any], tuple[Any, ...]]
    order_by: str
    runtime_field: str
    extension: Extension | None = None

    @property
    def table_names(self) -> tuple[str, ...]:
        return (self.name,) if self.extension is None else (self.name, self.extension.name)


@dataclass(frozen=True)
class Module:
    name: str  # as written in LOAD/SAVE statements
    tables: tuple[Table, ...] = ()
    variable_prefix: str | None = None  # MYSQL VARIABLES / ADMIN VARIABLES: rows of global_variables

    @property
    def table_names(self) -> tuple[str, ...]:
        return ("global_variables",) if self.variable_prefix else tuple(n for t in self.tables for n in t.table_names)


SERVERS = Table(
    "mysql_servers", MysqlServer, lambda s: (s.hostgroup_id, s.hostname, s.port),
    "hostgroup_id, hostname, port", "servers",
)
REPLICATION_HOSTGROUPS = Table(
    "mysql_replication_hostgroups", ReplicationHostgroup, lambda r: (r.writer_hostgroup,),
    "writer_hostgroup", "replication_hostgroups",
    Extension("turnout_replication_hostgroups", "writer_hostgroup", ("stale_read_protection", "two_writer_mode")),
)
USERS = Table(
    "mysql_users", MysqlUser, lambda u: (u.username, u.backend), "username, backend", "users",
    Extension("turnout_users", "username", ("causal_reads",)),
)
QUERY_RULES = Table("mysql_query_rules", QueryRule, lambda r: (r.rule_id,), "rule_id", "query_rules")
SCHEDULER = Table("scheduler", SchedulerJob, lambda j: (j.id,), "id", "scheduler")
PROXYSQL_SERVERS = Table(
    "proxysql_servers", ProxysqlServer, lambda p: (p.hostname, p.port), "hostname, port", "proxysql_servers"
)

MODULES: Mapping[str, Module] = {
    module.name: module
    for module in (
        Module("MYSQL SERVERS", (SERVERS, REPLICATION_HOSTGROUPS)),
        Module("MYSQL USERS", (USERS,)),
        Module("MYSQL QUERY RULES", (QUERY_RULES,)),
        Module("MYSQL VARIABLES", variable_prefix="mysql-"),
        Module("ADMIN VARIABLES", variable_prefix="admin-"),
        Module("SCHEDULER", (SCHEDULER,)),
        Module("PROXYSQL SERVERS", (PROXYSQL_SERVERS,)),
    )
}
TABLES: Mapping[str, Table] = {table.name: table for module in MODULES.values() for table in module.tables}
# Every table LOAD/SAVE moves (extensions included) -> the Table whose rows it holds.
TABLE_OF: Mapping[str, Table] = {name: table for table in TABLES.values() for name in table.table_names}


def module_of_variable(name: str) -> Module | None:
    for module in MODULES.values():
        if module.variable_prefix and name.startswith(module.variable_prefix):
            return module
    return None
