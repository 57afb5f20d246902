"""The ASCII topology tree, in Orchestrator's `topology` / `topology-tabulated` formats. Pure.

One line per instance: `KEY [lag,status,version,ro|rw,binlog format,>>,GTID,...]`, replicas
indented under their master, `+ ` for a replica that replicates and `- ` for one that does not,
the `[` of every line aligned. turnout adds one token of its own: `fenced`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from turnout.topology.model import Instance

# Orchestrator's ReasonableMaintenanceReplicationLagSeconds default: above it a replica is "lag".
MAINTENANCE_LAG_SECONDS = 20


@dataclass(frozen=True)
class Marks:
    """What the tree shows about an instance beyond its own probe."""

    fenced: frozenset[str] = frozenset()
    downtimed: frozenset[str] = frozenset()
    errant: frozenset[str] = frozenset()


def lag_token(instance: Instance) -> str:
    if not instance.reachable:
        return "unknown"
    if instance.is_replica and (not instance.replicating or instance.seconds_behind_master is None):
        return "null"
    return f"{instance.seconds_behind_master or 0}s"


def status_token(instance: Instance, max_lag: int = MAINTENANCE_LAG_SECONDS) -> str:
    if not instance.reachable:
        return "invalid"
    if instance.is_replica and not instance.replicating:
        return "nonreplicating"
    if instance.is_replica and (instance.seconds_behind_master or 0) > max_lag:
        return "lag"
    return "ok"


def uses_gtid(instance: Instance) -> bool:
    return bool(instance.executed_gtid_set or instance.gtid_binlog_pos or instance.gtid_current_pos
                or instance.using_gtid.lower() in ("slave_pos", "current_pos", "auto_position"))


def tokens(instance: Instance, key: str, marks: Marks = Marks()) -> list[str]:
    """Orchestrator's descriptionTokens: lag, status, version, ro/rw, binlog format, extras."""
    log_bin = bool(instance.binlog_file)
    extras = []
    if log_bin and instance.log_replica_updates:
        extras.append(">>")
    if uses_gtid(instance) or instance.flavor == "mysql":
        extras.append("GTID:errant" if key in marks.errant else "GTID")
    if instance.semi_sync_master_enabled:
        extras.append("semi:master")
    if instance.semi_sync_replica_enabled and instance.is_replica:
        extras.append("semi:replica")
    if key in marks.downtimed:
        extras.append("downtimed")
    if key in marks.fenced:
        extras.append("fenced")
    return [
        lag_token(instance),
        status_token(instance),
        instance.version,
        "ro" if instance.read_only else "rw",
        (instance.binlog_format or "?") if log_bin else "nobinlog",
        ",".join(extras),
    ]


def _walk(instances: Mapping[str, Instance]) -> list[tuple[int, str]]:
    """(depth, key) in tree order: roots first (fenced ones last), replicas under their master."""
    children: dict[str | None, list[str]] = {}
    for key, inst in instances.items():
        parent = inst.master_key if inst.master_key in instances and inst.master_key != key else None
        children.setdefault(parent, []).append(key)
    order: list[tuple[int, str]] = []

    def walk(key: str, depth: int, seen: frozenset[str]) -> None:
        order.append((depth, key))
        for child in sorted(children.get(key, [])):
            if child not in seen:
                walk(child, depth + 1, seen | {child})

    for root in sorted(children.get(None, [])):
        walk(root, 0, frozenset({root}))
    # A replication cycle (co-masters) has no root: each member starts a branch of its own.
    for key in sorted(instances):
        if key not in {k for _, k in order}:
            walk(key, 0, frozenset({key}))
    return order


def _prefix(instance: Instance, depth: int) -> str:
    if depth == 0:
        return ""
    mark = "+ " if instance.replicating and instance.reachable else "- "
    return "  " * (depth - 1) + mark


def render(
    instances: Mapping[str, Instance],
    marks: Marks = Marks(),
    tabulated: bool = False,
    tags: bool = False,
    root_order: tuple[str, ...] = (),
) -> str:
    """The whole tree. `root_order` puts those roots first (the cluster's master)."""
    order = _walk(instances)
    if root_order:
        order = _reorder(order, root_order)
    entries = []
    for depth, key in order:
        inst = instances[key]
        head = f"{_prefix(inst, depth)}{key}"
        parts = tokens(inst, key, marks)
        if tabulated:
            entry = head + "|" + "|".join(parts)
        else:
            entry = head + " [" + ",".join(p for p in parts if p) + "]"
        if tags:
            entry += " []"
        entries.append(entry)
    if tabulated:
        return "\n".join(tabulate(entries))
    return "\n".join(_align(entries))


def _reorder(order: list[tuple[int, str]], first: tuple[str, ...]) -> list[tuple[int, str]]:
    trees: list[list[tuple[int, str]]] = []
    for item in order:
        if item[0] == 0:
            trees.append([])
        trees[-1].append(item)
    trees.sort(key=lambda t: (t[0][1] not in first, first.index(t[0][1]) if t[0][1] in first else 0))
    return [item for tree in trees for item in tree]


def _align(entries: list[str]) -> list[str]:
    """Pad before each line's first '[' so that they all line up, as Orchestrator does."""
    indent = max((e.find("[") for e in entries), default=0)
    aligned = []
    for entry in entries:
        at = entry.find("[")
        aligned.append(entry if at < 0 or at >= indent else entry[:at] + " " * (indent - at) + entry[at:])
    return aligned


def tabulate(lines: list[str], separator: str = "|") -> list[str]:
    """Orchestrator's util.Tabulate(lines, "|", "|", left, right): columns padded to their widest
    cell, the first left-aligned, the second right-aligned, the rest left-aligned."""
    rows = [line.split(separator) for line in lines]
    count = max((len(r) for r in rows), default=0)
    widths = [max((len(r[c]) for r in rows if c < len(r)), default=0) for c in range(count)]
    out = []
    for row in rows:
        cells = []
        for col in range(count):
            cell = row[col] if col < len(row) else ""
            cells.append(cell.rjust(widths[col]) if col == 1 else cell.ljust(widths[col]))
        out.append(separator.join(cells))
    return out
