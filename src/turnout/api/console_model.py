"""What the console shows, as plain JSON-able data built from the manager's and the proxies'
views. Pure functions: the console's HTTP side only gathers the inputs and sends the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from turnout.manager.analysis import Finding, Snapshot
from turnout.manager.candidates import Limits, PromotionRule, assess
from turnout.state.base import AuditEntry, ClusterState, Downtime, Fence, RecoveryRecord
from turnout.topology.flavors import Flavor
from turnout.topology.model import Instance


@dataclass(frozen=True)
class ServerRow:
    """One runtime_mysql_servers row of a proxy, as far as the cluster view needs it."""

    proxy: str
    hostgroup: int
    address: str
    status: str
    comment: str


def gtid_position(inst: Instance) -> str:
    return inst.gtid_current_pos or inst.executed_gtid_set or (
        f"{inst.binlog_file}:{inst.binlog_pos}" if inst.binlog_file else "")


def semi_sync_side(inst: Instance) -> str:
    sides = [name for name, on in (("master", inst.semi_sync_master_enabled),
                                    ("replica", inst.semi_sync_replica_enabled)) if on]
    return "+".join(sides)


def server_node(
    inst: Instance,
    role: str,
    fence: Fence | None,
    downtime: Downtime | None,
    rows: Sequence[ServerRow],
    problem: Finding | None,
) -> dict[str, Any]:
    return {
        "key": inst.key,
        "role": role,
        "reachable": inst.reachable,
        "last_seen": inst.last_seen,
        "version": inst.version,
        "read_only": inst.read_only,
        "io_running": inst.io_running,
        "sql_running": inst.sql_running,
        "replica": inst.is_replica,
        "master": inst.master_key,
        "lag": inst.seconds_behind_master,
        "sql_delay": inst.sql_delay,
        "gtid": gtid_position(inst),
        "semi_sync": semi_sync_side(inst),
        "last_error": inst.last_probe_error if not inst.reachable else (inst.last_io_error or inst.last_sql_error),
        "fenced": None if fence is None else {"reason": fence.reason, "at": fence.fenced_at},
        "downtime": None if downtime is None else {
            "owner": downtime.owner, "reason": downtime.reason, "ends_at": downtime.ends_at},
        "proxy_rows": [{"proxy": r.proxy, "hostgroup": r.hostgroup, "status": r.status, "comment": r.comment}
                       for r in rows],
        "problem": None if problem is None else {"code": problem.code, "description": problem.description},
        "children": [],
    }


def cluster_tree(
    state: ClusterState,
    snapshot: Snapshot,
    findings: Iterable[Finding],
    fences: Mapping[str, Fence],
    downtimes: Mapping[str, Downtime],
    rows: Sequence[ServerRow],
    auto_recovery: bool,
) -> dict[str, Any]:
    """One cluster: published state, problems and the replication tree (roots first: the
    published master, then any other root such as a fenced former master)."""
    problems = {f.instance: f for f in findings if f.is_problem}
    by_address: dict[str, list[ServerRow]] = {}
    for row in rows:
        by_address.setdefault(row.address, []).append(row)
    instances = snapshot.instances
    children: dict[str, list[str]] = {}
    roots = []
    for key in sorted(instances):
        master = instances[key].master_key
        if master is not None and master in instances and master != key:
            children.setdefault(master, []).append(key)
        else:
            roots.append(key)

    def node(key: str, depth: int, seen: frozenset[str]) -> dict[str, Any]:
        inst = instances[key]
        kids = [k for k in children.get(key, []) if k not in seen]
        role = "master" if depth == 0 and not inst.is_replica else ("intermediate" if kids else "replica")
        if depth == 0 and inst.is_replica:
            role = "detached replica"
        if key in fences:
            role = "fenced replica" if inst.is_replica else "fenced former master"
        built = server_node(inst, role, fences.get(key), downtimes.get(key), by_address.get(key, []),
                            problems.get(key))
        built["published_master"] = key == state.master
        built["children"] = [node(k, depth + 1, seen | {k}) for k in kids]
        return built

    roots.sort(key=lambda k: (k != state.master, k))
    return {
        "name": state.name,
        "master": state.master,
        "epoch": state.epoch,
        "phase": state.phase,
        "updated_at": state.updated_at,
        "members": list(state.members),
        "auto_recovery": auto_recovery,
        "problems": [{"instance": f.instance, "code": f.code, "description": f.description,
                      "downtimed": f.downtimed} for f in problems.values()],
        "tree": [node(k, 0, frozenset({k})) for k in roots],
    }


def recoveries_view(recoveries: Iterable[RecoveryRecord]) -> list[dict[str, Any]]:
    """Recoveries, most recent first, with their steps, duration and acknowledgement."""
    return [
        {
            "id": rec.id, "cluster": rec.cluster, "failure": rec.failure_type, "failed": rec.failed,
            "successor": rec.successor, "started_at": rec.started_at, "ended_at": rec.ended_at,
            "duration": None if rec.ended_at is None else rec.ended_at - rec.started_at,
            "active": rec.ended_at is None, "success": rec.success, "manual": rec.manual,
            "acknowledged": rec.acknowledged, "acknowledged_by": rec.acknowledged_by,
            "acknowledged_at": rec.acknowledged_at, "acknowledge_comment": rec.acknowledge_comment,
            "steps": list(rec.details),
        }
        for rec in sorted(recoveries, key=lambda r: (r.started_at, r.id), reverse=True)
    ]


def audit_groups(entries: Iterable[AuditEntry], gap: float = 30.0) -> list[dict[str, Any]]:
    """The audit log as operations, most recent first: consecutive entries of one cluster and
    action less than `gap` seconds apart are the steps of one operation (a takeover, a
    recovery), each with its time since the operation began."""
    groups: list[dict[str, Any]] = []
    open_groups: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (e.at, e.id)):
        key = (entry.cluster, entry.action)
        group = open_groups.get(key)
        if group is None or entry.at - group["ended_at"] > gap:
            group = {"id": entry.id, "cluster": entry.cluster, "action": entry.action, "started_at": entry.at,
                     "ended_at": entry.at, "steps": []}
            groups.append(group)
            open_groups[key] = group
        group["ended_at"] = entry.at
        group["steps"].append({"id": entry.id, "at": entry.at, "offset": entry.at - group["started_at"],
                               "message": entry.message, "instance": entry.instance})
    for group in groups:
        group["duration"] = group["ended_at"] - group["started_at"]
    return sorted(groups, key=lambda g: (g["ended_at"], g["id"]), reverse=True)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def takeover_checks(
    state: ClusterState,
    snapshot: Snapshot,
    designated: str | None,
    flavor: Flavor | None,
    rules: Mapping[str, PromotionRule],
    limits: Limits,
    busy: bool,
) -> list[Check]:
    """The conditions a graceful takeover to `designated` depends on, each with its verdict, from
    the manager's last view (the takeover itself re-reads every server and decides again)."""
    checks = [Check("cluster is stable", state.phase == "stable" and not busy,
                    "no operation running" if state.phase == "stable" and not busy
                    else f"phase {state.phase}{' (a recovery is running)' if busy else ''}: wait for it to finish")]
    old = snapshot.instances.get(state.master)
    if old is None:
        return [*checks, Check("master is known", False, f"{state.master} is not in the manager's view")]
    checks.append(Check("master answers", old.reachable,
                        "reachable" if old.reachable else f"unreachable ({old.last_probe_error}): use recover"))
    checks.append(Check("master is a master", not old.is_replica,
                        "replicates from nothing" if not old.is_replica else f"replicates from {old.master_key}"))
    if designated is None:
        return checks
    new = snapshot.instances.get(designated)
    if new is None:
        return [*checks, Check("designated replica is known", False, f"{designated} is not in {state.name}")]
    if flavor is not None:
        verdict = assess(new, old.key, flavor, rules.get(new.key, "neutral"), limits, master_dead=False)
        for reason in verdict.reasons:
            checks.append(Check("designated replica is eligible", verdict.eligible, reason))
        errant = flavor.errant(new, old)
        checks.append(Check("no errant transactions", not errant,
                            "none" if not errant else f"{new.key} has {', '.join(errant)} its master lacks"))
    return checks
