"""Immutable health data: what the monitor last learned about each server.

The monitor replaces values, never mutates them, so the data path can read a `HealthSnapshot`
from any thread without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

Address = tuple[str, int]


@dataclass(frozen=True)
class ReplicationStatus:
    """One server's replica side, from SHOW SLAVE STATUS; `configured=False` when it has none."""

    configured: bool
    io_running: str = ""  # "Yes", "No", "Connecting" (as the server says it)
    sql_running: str = ""
    last_io_error: str = ""
    last_sql_error: str = ""
    # None stays None: MariaDB reports NULL while replication is broken, which is not "no lag".
    seconds_behind_master: int | None = None
    master_host: str = ""
    master_port: int = 0
    gtid_io_pos: str = ""  # what the IO thread has received
    gtid_slave_pos: str = ""  # what the SQL thread has applied
    gtid_current_pos: str = ""  # the server's own position (gtid_executed on MySQL)

    @property
    def replicating(self) -> bool:
        return self.configured and self.io_running == "Yes" and self.sql_running == "Yes"

    @property
    def master(self) -> Address | None:
        return (self.master_host, self.master_port) if self.configured else None

    def not_replicating_reason(self) -> str | None:
        """Why this server does not replicate, in words for a runtime_mysql_servers comment."""
        if not self.configured:
            return "no replication configured"
        parts = []
        if self.io_running != "Yes":
            state = "connecting" if self.io_running == "Connecting" else "stopped"
            parts.append(f"IO thread {state}")
        if self.sql_running != "Yes":
            parts.append("SQL thread stopped")
        if not parts:
            return None
        error = self.last_sql_error or self.last_io_error
        if error:
            parts.append(f"error: {error[:120]}")
        return ", ".join(parts)


@dataclass(frozen=True)
class ServerHealth:
    """The latest result of every check on one server; None where a check has not run yet."""

    address: Address
    connect_ok: bool | None = None
    connect_error: str | None = None
    connect_time_us: int = 0
    ping_ok: bool | None = None
    ping_error: str | None = None
    ping_time_us: int = 0
    ping_failures: int = 0  # consecutive
    read_only: bool | None = None  # last known value; kept while checks fail (see read_only_failures)
    read_only_error: str | None = None
    read_only_failures: int = 0  # consecutive
    replication: ReplicationStatus | None = None  # last known; None until the first check succeeds
    replication_error: str | None = None
    replication_failures: int = 0  # consecutive
    checked_at: float = 0.0  # wall clock (time.time()) of the latest check of any kind

    def routing_key(self) -> tuple[object, ...]:
        """The fields routing depends on: when this changes, routing must be recomputed."""
        repl = self.replication
        return (
            self.connect_ok,
            self.ping_failures,
            self.read_only,
            self.read_only_failures,
            self.replication_failures,
            None
            if repl is None
            else (
                repl.configured,
                repl.io_running,
                repl.sql_running,
                repl.last_io_error,
                repl.last_sql_error,
                repl.seconds_behind_master,
                repl.master_host,
                repl.master_port,
            ),
        )


def _empty() -> Mapping[Address, ServerHealth]:
    return MappingProxyType({})


@dataclass(frozen=True)
class HealthSnapshot:
    """Health of every monitored server; `version` grows with every change."""

    version: int = 0
    servers: Mapping[Address, ServerHealth] = field(default_factory=_empty)

    def get(self, address: Address) -> ServerHealth | None:
        return self.servers.get(address)

    def replace(self, health: ServerHealth) -> HealthSnapshot:
        servers = dict(self.servers)
        servers[health.address] = health
        return HealthSnapshot(self.version + 1, MappingProxyType(servers))

    def without(self, addresses: frozenset[Address]) -> HealthSnapshot:
        servers = {a: h for a, h in self.servers.items() if a not in addresses}
        return HealthSnapshot(self.version + 1, MappingProxyType(servers))


def routing_changed(old: ServerHealth | None, new: ServerHealth) -> bool:
    return old is None or old.routing_key() != new.routing_key()


def applied_gtids(health: HealthSnapshot) -> dict[Address, str]:
    """The GTIDs each server was last seen to have applied, as it reported them: a replica's
    SQL-thread position (MariaDB gtid_slave_pos; MySQL gtid_executed), a server that replicates
    from none its own (gtid_current_pos). Servers whose replication was never read are absent."""
    found: dict[Address, str] = {}
    for address, server in health.servers.items():
        repl = server.replication
        if repl is None:
            continue
        text = repl.gtid_slave_pos if repl.configured else repl.gtid_current_pos
        if text:
            found[address] = text
    return found
