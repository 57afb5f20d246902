"""The proxies the console shows, and what each is doing.

Today the manager sees one proxy: the one in its own process (`turnout up`). `list_proxies` is
the one place that gathers them, so proxies that register in the state store can be listed
beside it without touching the console.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from turnout.state.base import StateStore

if TYPE_CHECKING:
    from turnout.node import Node

# A proxy's report: plain JSON-able data (see `local_report` for the keys).
ProxyReport = dict[str, Any]


class LocalProxy(Protocol):
    """The proxy in the manager's process, as the console sees it."""

    def report(self) -> ProxyReport: ...

    def version(self) -> object:
        """A value that changes when what the proxy has in force changes (cheap: read often)."""


def local_report(node: Node) -> ProxyReport:
    """The proxy in this process: servers in force, pools, counters, holds and epochs applied."""
    servers = [
        {"hostgroup": s.hostgroup_id, "address": f"{s.hostname}:{s.port}", "status": s.status,
         "weight": s.weight, "max_replication_lag": s.max_replication_lag, "comment": s.comment}
        for s in node.runtime_servers()
    ]
    pools = [
        {"hostgroup": row["hostgroup"], "address": f"{row['srv_host']}:{row['srv_port']}", "status": row["status"],
         "used": row["ConnUsed"], "free": row["ConnFree"], "ok": row["ConnOK"], "errors": row["ConnERR"],
         "queries": row["Queries"], "latency_us": row["Latency_us"]}
        for row in node.stats_table("stats_mysql_connection_pool") or []
    ]
    counters = {str(r["Variable_Name"]): str(r["Variable_Value"]) for r in node.stats_table("stats_mysql_global") or []}
    routing = node.routing
    return {
        "name": "local",
        "where": "in the manager's process",
        "listen": node.runtime.variable("mysql-interfaces", "127.0.0.1:6033"),
        "at": time.time(),
        "servers": servers,
        "pools": pools,
        "questions": int(counters.get("Questions", "0")),
        "client_connections": int(counters.get("Client_Connections_connected", "0")),
        "statements_held": int(counters.get("Statements_held", "0")),
        "held_hostgroups": sorted(node.held_hostgroups),
        "write_blocked": {str(k): v for k, v in (routing.write_blocked.items() if routing else ())},
        "writers": {str(hg): f"{host}:{port}" for hg, (host, port) in sorted(node.published_masters.items())},
        "epochs": {name: {"master": s.master, "epoch": s.epoch, "phase": s.phase}
                   for name, s in sorted(node.followed.items())},
    }


class NodeProxy:
    """The proxy of a `turnout up` process."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def report(self) -> ProxyReport:
        return local_report(self.node)

    def version(self) -> object:
        routing = self.node.routing
        return (routing.servers if routing else None, routing.write_blocked if routing else None,
                self.node.held_hostgroups, tuple(sorted(self.node.published_masters.items())))


def driven_reports(statuses: list[dict[str, Any]], at: float) -> list[ProxyReport]:
    """The ProxySQLs the manager drives ([[manager.proxysql]]; the driver's report, one entry per
    proxy and cluster) as proxy reports: the master and epoch each was last brought to, and
    whether it is converged or lagging (with the last error). Pure."""
    by_proxy: dict[str, list[dict[str, Any]]] = {}
    for status in statuses:
        by_proxy.setdefault(str(status["Proxy"]), []).append(status)
    reports = []
    for name, entries in sorted(by_proxy.items()):
        lagging = sorted(str(e["ClusterAlias"]) for e in entries if e.get("Lagging"))
        reports.append({
            "name": name, "kind": "proxysql", "where": "a ProxySQL the manager drives", "listen": name, "at": at,
            "servers": [], "pools": [], "questions": None, "client_connections": None, "statements_held": None,
            "held_hostgroups": [], "write_blocked": {}, "writers": {},
            "epochs": {str(e["ClusterAlias"]): {"master": e.get("Master") or "", "epoch": e.get("Epoch"),
                                                "phase": e.get("Phase") or ""} for e in entries},
            "converged": not lagging, "lagging": lagging,
            "errors": sorted({str(e["LastError"]) for e in entries if e.get("LastError")}),
        })
    return reports


async def list_proxies(store: StateStore, local: LocalProxy | None,
                       driven: list[dict[str, Any]] | None = None) -> list[ProxyReport]:
    """Every proxy the console shows: the local one, the ProxySQLs the manager drives, then (once
    proxies register in the store) the registered ones."""
    del store  # the registrations will be read from here
    reports = [local.report()] if local is not None else []
    return reports + driven_reports(driven or [], time.time())


def with_rates(reports: list[ProxyReport], previous: dict[str, tuple[float, int]]) -> list[ProxyReport]:
    """Add questions per second since the previous report of each proxy; updates `previous`."""
    result = []
    for report in reports:
        if report.get("questions") is None:
            result.append({**report, "qps": None})
            continue
        name, at, questions = str(report["name"]), float(report["at"]), int(report["questions"])
        before = previous.get(name)
        qps = None
        if before is not None and at > before[0]:
            qps = max(0.0, (questions - before[1]) / (at - before[0]))
        previous[name] = (at, questions)
        result.append({**report, "qps": qps})
    return result
