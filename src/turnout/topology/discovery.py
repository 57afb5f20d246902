"""Discovery: from seeds, walk up to masters and down to replicas; probe everything concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from turnout.topology.connection import Credentials
from turnout.topology.model import Instance
from turnout.topology.probe import probe


def neighbours(instance: Instance) -> set[str]:
    """Servers this one points at: its master and the replicas it reports."""
    found = set(instance.replica_hosts)
    if instance.master_key is not None:
        found.add(instance.master_key)
    return found


async def discover(
    seeds: Iterable[str],
    credentials: Credentials,
    timeout: float,
    known: Mapping[str, Instance] | None = None,
    flavor: str | None = None,
) -> dict[str, Instance]:
    """Probe every seed and every server reachable from them through replication links.

    All probes of one round run at once, each bounded by `timeout`: a hung server costs one
    timeout, never a delay for the others. `known` supplies the previous view of each server.
    """
    previous = dict(known or {})
    result: dict[str, Instance] = {}
    pending = set(seeds)
    while pending:
        keys = sorted(pending)
        probed = await asyncio.gather(
            *(probe(key, credentials, timeout, previous.get(key), flavor) for key in keys)
        )
        for instance in probed:
            result[instance.key] = instance
        # An unreachable server keeps its last known links: replicas of a dead master still
        # reveal it, and a dead master's replicas are still probed.
        pending = {n for inst in probed for n in neighbours(inst)} - result.keys()
    return result
