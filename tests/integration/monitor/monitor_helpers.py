"""Helpers for monitor tests on real sandboxes: a config over a sandbox, a running MonitoredRouting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import MappingProxyType

from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.monitor.health import Address
from turnout.monitor.routing import RoutingSnapshot
from turnout.monitor.service import MonitoredRouting
from turnout.sandbox.config import MONITOR
from turnout.sandbox.sandbox import Sandbox

WRITER, READER = 10, 20
WAIT = 30.0  # a safety net against hanging, not a measurement

FAST = {
    "mysql-monitor_username": MONITOR.user,
    "mysql-monitor_password": MONITOR.password,
    "mysql-monitor_connect_interval": "200",
    "mysql-monitor_ping_interval": "200",
    "mysql-monitor_read_only_interval": "200",
    "mysql-monitor_replication_lag_interval": "200",
}


def address(box: Sandbox, index: int) -> Address:
    return ("127.0.0.1", box.nodes[index].port)


def sandbox_config(
    box: Sandbox,
    pair: ReplicationHostgroup | None = None,
    max_replication_lag: int = 0,
    **variables: str,
) -> RuntimeConfig:
    servers = tuple(
        MysqlServer(
            hostgroup_id=WRITER if node.index == 0 else READER,
            hostname="127.0.0.1",
            port=node.port,
            max_replication_lag=max_replication_lag,
        )
        for node in box.nodes
    )
    merged = dict(FAST)
    merged.update({f"mysql-monitor_{k}": v for k, v in variables.items()})
    return RuntimeConfig(
        version=1,
        servers=servers,
        replication_hostgroups=(pair or ReplicationHostgroup(WRITER, READER),),
        variables=MappingProxyType(merged),
    )


@asynccontextmanager
async def monitored(
    config: RuntimeConfig,
    published_masters: dict[int, Address] | None = None,
    on_routing: Callable[[RoutingSnapshot], None] | None = None,
) -> AsyncIterator[MonitoredRouting]:
    service = MonitoredRouting(config, on_routing, published_masters)
    await service.start()
    try:
        # Until every server's read_only and replication are known, rows stay as configured.
        await service.wait_for(lambda _: checked(service), WAIT)
        yield service
    finally:
        await service.stop()


def checked(service: MonitoredRouting) -> bool:
    servers = service.health.servers
    wanted = {s.address for s in service.monitor.config.servers}
    return set(servers) == wanted and all(
        h.read_only is not None and h.replication is not None for h in servers.values()
    )


def row(snap: RoutingSnapshot, hostgroup: int, server: Address) -> MysqlServer | None:
    return next((s for s in snap.rows(hostgroup) if s.address == server), None)


def status(snap: RoutingSnapshot, hostgroup: int, server: Address) -> str | None:
    found = row(snap, hostgroup, server)
    return None if found is None else found.status


def comment(snap: RoutingSnapshot, hostgroup: int, server: Address) -> str:
    found = row(snap, hostgroup, server)
    return "" if found is None else found.comment


def serving(snap: RoutingSnapshot, hostgroup: int) -> set[Address]:
    return {s.address for s in snap.online(hostgroup)}


Predicate = Callable[[RoutingSnapshot], bool]
