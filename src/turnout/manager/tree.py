"""The ASCII topology tree, like Orchestrator's `topology` output. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from turnout.topology.model import Instance


def describe(instance: Instance, fenced: bool = False) -> str:
    if not instance.reachable:
        lag = "unknown"
        health = "unreachable"
    else:
        lag = "null" if instance.is_replica and instance.seconds_behind_master is None else (
            f"{instance.seconds_behind_master or 0}s"
        )
        health = "ok"
        if instance.is_replica and not instance.replicating:
            health = "nonreplicating"
    parts = [lag, health, instance.version or "?", "ro" if instance.read_only else "rw"]
    if instance.is_replica:
        parts.append(">>" if instance.replicating else "--")
    gtid = instance.gtid_current_pos or instance.executed_gtid_set
    parts.append(f"GTID:{gtid}" if gtid else "nogtid")
    if instance.sql_delay:
        parts.append(f"delayed:{instance.sql_delay}s")
    if fenced:
        parts.append("fenced")
    return f"[{','.join(parts)}]"


def render(instances: Mapping[str, Instance], fenced: frozenset[str] = frozenset()) -> str:
    """Roots first, each replica indented under its master, '+ ' marking a replica."""
    children: dict[str | None, list[str]] = {}
    for key, inst in instances.items():
        parent = inst.master_key if inst.master_key in instances else None
        children.setdefault(parent, []).append(key)
    lines: list[str] = []

    def walk(key: str, depth: int, seen: frozenset[str]) -> None:
        prefix = "" if depth == 0 else "  " * (depth - 1) + "+ "
        lines.append(f"{prefix}{key} {describe(instances[key], key in fenced)}")
        for child in sorted(children.get(key, [])):
            if child not in seen:
                walk(child, depth + 1, seen | {child})

    for root in sorted(children.get(None, []), key=lambda k: (k in fenced, k)):
        walk(root, 0, frozenset({root}))
    return "\n".join(lines)
