"""Orchestrator's heuristic choice of control replicas for an online schema change
(which-cluster-osc-replicas). Pure."""

from __future__ import annotations

from collections.abc import Mapping

from turnout.topology.model import Instance


def control_replicas(instances: Mapping[str, Instance], master: str) -> list[str]:
    """Up to two busiest intermediate masters, replicas of them, two third-tier replicas and two
    leaf replicas of the master; unreachable instances are never picked."""
    def depth(key: str) -> int:
        seen: list[str] = []
        current = key
        while current != master:
            parent = instances[current].master_key
            if parent is None or parent not in instances or parent in seen:
                return -1
            seen.append(current)
            current = parent
        return len(seen)

    def replicas(key: str) -> list[str]:
        return [k for k, i in instances.items() if i.master_key == key and k != key]

    def busiest(keys: list[str]) -> list[str]:
        return sorted((k for k in keys if instances[k].reachable), key=lambda k: (-len(replicas(k)), k))

    depths = {k: depth(k) for k in instances}
    result: list[str] = []
    intermediate = busiest([k for k, d in depths.items() if d == 1 and replicas(k)])[:2]
    result += intermediate
    if len(intermediate) == 1:
        result += busiest(replicas(intermediate[0]))[:2]
    elif len(intermediate) == 2:
        for im in intermediate:
            result += busiest(replicas(im))[:1]
    result += busiest([k for k, d in depths.items() if d == 3])[:2]
    result += [k for k in sorted(k for k, d in depths.items() if d == 1 and not replicas(k))
               if instances[k].reachable][:2]
    return result
