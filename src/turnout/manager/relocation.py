"""Moving replicas within a cluster (relocate, move-below, move-gtid, move-up, relocate-replicas)
on GTID replication, and the checks that refuse unsafe moves.

The checks are pure functions. A move of replica R below B:
refusals -> (B is not an ancestor of R) R's replication stopped, B applies everything R has
applied (bounded wait; on timeout R resumes from its old master, nothing changed) ->
R replicates from B (GTID) -> R re-probed. Every step is audited.
"""

from __future__ import annotations

from collections.abc import Mapping

from turnout.manager.analysis import Snapshot
from turnout.manager.steps import StepLog, Toolkit
from turnout.state.base import ClusterState
from turnout.topology.model import Instance

_FORMAT_RANK = {"STATEMENT": 0, "MIXED": 1, "ROW": 2}


class OperationRefused(Exception):
    """The operation is unsafe or impossible; nothing was changed."""


def ancestors(instances: Mapping[str, Instance], key: str) -> list[str]:
    """The masters above `key`, nearest first (stops at a cycle or an unknown master)."""
    chain: list[str] = []
    current = instances[key].master_key
    while current is not None and current in instances and current not in chain and current != key:
        chain.append(current)
        current = instances[current].master_key
    return chain


def descendants(instances: Mapping[str, Instance], key: str) -> set[str]:
    """Every instance replicating from `key`, directly or through others."""
    return {k for k in instances if k != key and key in ancestors(instances, k)}


def _major_minor(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split("-")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def can_replicate_from(instance: Instance, other: Instance) -> str | None:
    """Why `instance` cannot replicate from `other`, or None. Orchestrator's CanReplicateFrom."""
    if instance.key == other.key:
        return f"{instance.key} cannot replicate from itself"
    if not other.reachable:
        return f"{other.key} is unreachable ({other.last_probe_error or 'probe failed'})"
    if not other.binlog_file:
        return f"{other.key} has no binary log (log_bin is OFF): nothing to replicate from"
    if other.is_replica and other.log_replica_updates is False:
        return f"{other.key} is a replica without log_slave_updates: it does not log what it replicates"
    if instance.server_id is not None and instance.server_id == other.server_id:
        return f"{instance.key} and {other.key} have the same server_id {instance.server_id}"
    if instance.version and other.version and _major_minor(instance.version) < _major_minor(other.version):
        return f"{instance.key} runs {instance.version}, older than {other.key}'s {other.version}"
    if instance.binlog_file and instance.log_replica_updates:
        mine, theirs = _FORMAT_RANK.get(instance.binlog_format), _FORMAT_RANK.get(other.binlog_format)
        if mine is not None and theirs is not None and mine < theirs:
            return (f"{instance.key} logs {instance.binlog_format} and cannot replicate "
                    f"{other.binlog_format} events from {other.key}")
    return None


def check_move(
    state: ClusterState, snapshot: Snapshot, key: str, below_key: str, uses_gtid: bool
) -> tuple[Instance, Instance]:
    """The replica and its new master, or OperationRefused saying why. Pure."""
    if state.phase != "stable":
        raise OperationRefused(f"cluster {state.name} is {state.phase}: wait for the running operation to finish")
    instances = snapshot.instances
    if key not in instances:
        raise OperationRefused(f"{key} is not a known instance of {state.name}")
    if below_key not in instances:
        raise OperationRefused(f"{below_key} is not a known instance of {state.name}")
    instance, below = instances[key], instances[below_key]
    if key in snapshot.fenced:
        raise OperationRefused(f"{key} is fenced: rebuild it and lift the fence first")
    if below_key in snapshot.fenced:
        raise OperationRefused(f"{below_key} is fenced: nothing may replicate from it")
    if not instance.reachable:
        raise OperationRefused(f"{key} is unreachable ({instance.last_probe_error or 'probe failed'})")
    if not instance.is_replica or key == state.master:
        raise OperationRefused(f"{key} is not a replica: it is the master of {state.name}"
                               if key == state.master else f"{key} is not a replica")
    if below_key in descendants(instances, key):
        raise OperationRefused(f"{below_key} replicates from {key}: moving {key} below it makes a cycle")
    if not uses_gtid:
        raise OperationRefused(f"{key} does not replicate with GTID: turnout moves replicas with GTID only")
    reason = can_replicate_from(instance, below)
    if reason is not None:
        raise OperationRefused(reason)
    return instance, below


def check_errant(snapshot: Snapshot, state: ClusterState, instance: Instance, toolkit: Toolkit) -> None:
    master = snapshot.instances.get(state.master)
    if master is None:
        return
    errant = toolkit.actions.flavor(instance).errant(instance, master)
    if errant:
        raise OperationRefused(f"{instance.key} has errant transactions the master {master.key} does not have: "
                               f"{', '.join(errant)}")


async def move_below(
    toolkit: Toolkit, state: ClusterState, snapshot: Snapshot, key: str, below_key: str, command: str
) -> Instance:
    """Make `key` replicate from `below_key` via GTID. Refusals raise before anything changes."""
    actions = toolkit.actions
    instance = await actions.refresh(snapshot.instances[key])
    below = await actions.refresh(snapshot.instances[below_key])
    fresh = Snapshot(snapshot.cluster, {**snapshot.instances, key: instance, below_key: below},
                     snapshot.downtimed, snapshot.fenced)
    flavor = actions.flavor(instance)
    instance, below = check_move(state, fresh, key, below_key, flavor.uses_gtid)
    check_errant(fresh, state, instance, toolkit)
    if instance.master_key == below_key:
        return instance
    log = StepLog(toolkit.store, state.name, command)
    await log(f"{command}: {key} to replicate from {below_key} (was {instance.master_key})", key)
    old_master = snapshot.instances.get(instance.master_key or "")
    if below_key not in ancestors(fresh.instances, key):
        await actions.stop_replication(instance)
        stopped = await actions.refresh(instance)
        position = stopped.gtid_slave_pos if flavor.name == "mariadb" else stopped.executed_gtid_set
        await log(f"{key}: replication stopped at {position or 'the beginning'}", key)
        wait = toolkit.settings.GracefulTakeoverWaitSeconds
        if position and not await actions.wait_applied(below, position, wait):
            await actions.start_replication(stopped)
            await log(f"{below_key} did not apply {position} within {wait:g}s; {key} replicates from "
                      f"{instance.master_key} again", key)
            raise OperationRefused(f"{below_key} did not catch up with {key} ({position}) within {wait:g}s "
                                   f"(GracefulTakeoverWaitSeconds); nothing changed")
        await log(f"{below_key} has applied everything {key} has", below_key)
        instance = stopped
    try:
        await actions.point_to(instance, below)
    except Exception as exc:
        await log(f"{key}: replicating from {below_key} failed: {exc}", key)
        if old_master is not None:
            try:
                await actions.point_to(instance, old_master)
                await log(f"{key} replicates from {old_master.key} again", key)
            except Exception as again:
                await log(f"{key}: pointing back at {old_master.key} failed too: {again}", key)
        raise
    moved = await actions.refresh(instance)
    await log(f"{key} now replicates from {below_key}", key)
    return moved
