"""The proxies the console shows, and what each is doing.

Today the manager sees one proxy: the one in its own process (`turnout up`). `list_proxies` is
the one place that gathers them, so proxies that register in the state store can be listed
beside it without touching the console.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

from turnout.state.base import ClusterState, ProxyRecord, StateStore

# A proxy's report: plain JSON-able data (see `local_report` for the keys).
ProxyReport = dict[str, Any]


class LocalProxy(Protocol):
    """The proxy in the manager's process, as the console sees it (`turnout.node.NodeProxy`)."""

    def report(self) -> ProxyReport: ...

    def version(self) -> object:
        """A value that changes when what the proxy has in force changes (cheap: read often)."""


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


def registered_reports(records: Sequence[ProxyRecord], clusters: Sequence[ClusterState], at: float,
                       skip: str | None = None) -> list[ProxyReport]:
    """Proxies registered in a shared state store (each on a lease of its own): the epoch and
    phase each has acknowledged per cluster, against the cluster's current one. Pure."""
    current = {c.name: c for c in clusters}
    reports = []
    for record in sorted(records, key=lambda r: r.id):
        if record.id == skip:
            continue
        epochs = {}
        behind = []
        for name, (epoch, phase) in sorted(record.acks.items()):
            state = current.get(name)
            up_to_date = state is not None and state.epoch == epoch
            epochs[name] = {"master": state.master if up_to_date and state else "", "epoch": epoch, "phase": phase}
            if state is not None and epoch < state.epoch:
                behind.append(name)
        reports.append({
            "name": record.id, "kind": "registered", "where": "registered in the state store", "listen": record.address,
            "at": at, "servers": [], "pools": [], "questions": None, "client_connections": None,
            "statements_held": None, "held_hostgroups": [], "write_blocked": {}, "writers": {}, "epochs": epochs,
            "behind": behind, "lease_age": max(0.0, at - record.updated_at),
        })
    return reports


async def list_proxies(store: StateStore, local: LocalProxy | None,
                       driven: list[dict[str, Any]] | None = None) -> list[ProxyReport]:
    """Every proxy the console shows: the local one, the ProxySQLs the manager drives, and the
    proxies registered in a shared store (etcd)."""
    now = time.time()
    reports = [local.report()] if local is not None else []
    registered: list[ProxyReport] = []
    if store.shares_proxies:
        skip = reports[0].get("registered_as") if reports else None
        registered = registered_reports(await store.proxies(), await store.clusters(), now, skip)
    return reports + driven_reports(driven or [], now) + registered


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
