"""Graceful master takeover: a planned switch to a replica with no transaction lost.

refusals -> phase "switching" -> proxies drained (this process's, and every proxy registered in
a shared store) -> OLD read_only=ON -> NEW applies every transaction of OLD (bounded wait) ->
NEW detached (still read_only) -> semi-sync restored -> other replicas re-pointed -> OLD
replicates from NEW (started with `auto`, left stopped otherwise, as Orchestrator does) -> NEW
published with epoch + 1, phase "promoting" -> every registered proxy applied it (or lost its
lease) -> NEW read_only=OFF -> published "stable". A failure before NEW is published rolls back
to OLD as master; a manager that loses its leader lease stops between two steps and the next
leader finishes or rolls back (`turnout.manager.resume`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from turnout.manager import candidates, hooks
from turnout.manager.analysis import Snapshot
from turnout.manager.leadership import LeadershipLost
from turnout.manager.steps import (
    StepLog,
    Toolkit,
    no_guard,
    open_new_master,
    publish_phase,
    semi_sync_master_side,
    wait_for_proxies,
)
from turnout.state.base import ClusterState
from turnout.topology.model import Instance


class TakeoverRefused(Exception):
    """The takeover is unsafe or impossible; nothing was changed."""


@dataclass
class TakeoverResult:
    cluster: str
    old_master: str
    new_master: str
    success: bool
    message: str
    rolled_back: bool = False
    steps: list[str] = field(default_factory=list)
    state: ClusterState | None = None


def check_takeover(
    state: ClusterState,
    snapshot: Snapshot,
    old: Instance,
    new_key: str | None,
    toolkit: Toolkit,
    recovering: bool,
    auto: bool = True,
) -> tuple[Instance, str]:
    """The replica to promote and why, or TakeoverRefused with the reason. Pure apart from settings."""
    if recovering or state.phase != "stable":
        raise TakeoverRefused(f"cluster {state.name} is {state.phase if state.phase != 'stable' else 'recovering'}: "
                              "wait for the running operation to finish")
    if old.key != state.master:
        raise TakeoverRefused(f"{old.key} is not the master of {state.name} (the master is {state.master})")
    if old.is_replica:
        raise TakeoverRefused(f"{old.key} replicates from {old.master_key}: it is not a master")
    if not old.reachable:
        raise TakeoverRefused(f"{old.key} is unreachable ({old.last_probe_error}): use recover for a dead master")
    replicas = snapshot.replicas_of(old.key)
    if not replicas:
        raise TakeoverRefused(f"master {old.key} doesn't seem to have replicas")
    if new_key is None and not auto and len(replicas) > 1:
        raise TakeoverRefused(
            f"target instance not indicated, auto=false, and master {old.key} has {len(replicas)} replicas: "
            "name the replica to promote (-d HOST:PORT), or use graceful-master-takeover-auto")
    if new_key is not None and new_key not in snapshot.instances:
        raise TakeoverRefused(f"{new_key} is not a known instance of {state.name}")
    if new_key is not None and snapshot.instances[new_key].master_key != old.key:
        raise TakeoverRefused(f"{new_key} is not a direct replica of {old.key} "
                              f"(it replicates from {snapshot.instances[new_key].master_key or 'nothing'})")
    flavor = toolkit.actions.flavor(old)
    choice = candidates.choose(
        old.key, replicas, flavor, toolkit.settings.promotion_rules,
        candidates.Limits(toolkit.settings.ReasonableReplicationLagSeconds), master_dead=False, required=new_key,
    )
    if choice.chosen is None:
        raise TakeoverRefused(choice.reason)
    new = snapshot.instances[choice.chosen]
    errant = flavor.errant(new, old)
    if errant:
        raise TakeoverRefused(f"{new.key} has errant transactions its master does not have: {', '.join(errant)}")
    return new, choice.reason


async def graceful_takeover(
    toolkit: Toolkit,
    state: ClusterState,
    snapshot: Snapshot,
    old_key: str,
    new_key: str | None,
    auto: bool,
    recovering: bool = False,
) -> TakeoverResult:
    actions, settings, store = toolkit.actions, toolkit.settings, toolkit.store
    if old_key not in snapshot.instances:
        raise TakeoverRefused(f"{old_key} is not a known instance of {state.name}")
    # Replicas first, the master last: errant-transaction checks compare against a master
    # position at least as recent as the replicas'.
    fresh = {k: (await actions.refresh(i)) if i.reachable else i
             for k, i in snapshot.instances.items() if k != old_key}
    old = await actions.refresh(snapshot.instances[old_key])
    fresh[old.key] = old
    snapshot = Snapshot(snapshot.cluster, fresh, snapshot.downtimed, snapshot.fenced)
    new, why = check_takeover(state, snapshot, old, new_key, toolkit, recovering, auto)
    others = [r for r in snapshot.replicas_of(old.key) if r.key != new.key and r.reachable]
    command = "graceful-master-takeover-auto" if auto else "graceful-master-takeover"
    log = StepLog(store, state.name, command, guard=toolkit.guard)
    await log(f"{command}: {old.key} -> {new.key} ({why})", new.key)
    current = await publish_phase(store, state, "switching")
    if current is None:
        raise TakeoverRefused("another manager changed the cluster state; try again")
    hook_values = hooks.context("graceful-master-takeover", (old.host, old.port), state.name,
                                successor=(new.host, new.port), command=command,
                                replicas=[r.key for r in snapshot.replicas_of(old.key)], auto=False)
    for hook in await hooks.run_hooks(settings.PreGracefulTakeoverProcesses, hook_values,
                                      settings.HookTimeoutSeconds, stop_on_failure=True):
        await log(f"hook {hook.command!r}: {'ok' if hook.ok else 'failed'} {hook.output}".rstrip())
        if not hook.ok:
            await publish_phase(store, current, "stable")
            return TakeoverResult(state.name, old.key, new.key, False, "a pre-takeover hook failed; nothing changed",
                                  steps=log.lines, state=current)

    if toolkit.drain is not None:
        await toolkit.drain(current, old.key)
        await log(f"{old.key}: proxies drained (new writes held, transactions in flight finished or ended)", old.key)
    await wait_for_proxies(toolkit, log, state.name, current.epoch, "switching",
                           "drained their transactions on " + old.key)
    flavor = actions.flavor(old)
    promoted = False
    try:
        await actions.set_read_only(old, True)
        await log(f"{old.key}: read_only=ON", old.key)
        old = await actions.refresh(old)
        if not old.reachable:
            raise RuntimeError(f"{old.key} stopped answering: {old.last_probe_error}")
        target = flavor.master_position(old)
        await log(f"waiting up to {settings.GracefulTakeoverWaitSeconds:g}s for {new.key} to apply {target}", new.key)
        if not await actions.wait_applied(new, target, settings.GracefulTakeoverWaitSeconds):
            raise RuntimeError(f"{new.key} did not apply {target} within {settings.GracefulTakeoverWaitSeconds:g}s")
        await log(f"{new.key} has applied every transaction of {old.key}", new.key)
        await actions.detach(new)
        promoted = True
        await log(f"{new.key}: replication reset (read_only stays ON until the proxies have applied the new "
                  "epoch)", new.key)
        semi_sync = old.semi_sync_master_enabled
        if semi_sync:
            await semi_sync_master_side(toolkit, log, new)
        new = await actions.refresh(new)
        position = None if flavor.uses_gtid else (new.binlog_file, new.binlog_pos)
        for replica in others:
            await actions.point_to(replica, new, position=position, semi_sync_replica=True if semi_sync else None)
            await log(f"{replica.key} now replicates from {new.key}"
                      + (" (semi-sync replica side ON)" if semi_sync else ""), replica.key)
        await actions.point_to(old, new, former_master=True, start=auto, position=position,
                               semi_sync_replica=True if semi_sync else None)
        await log(f"{old.key} now replicates from {new.key}" + ("" if auto else " (replication left stopped)"),
                  old.key)
    except LeadershipLost:
        raise
    except Exception as exc:
        log.guard = no_guard  # putting the cluster back as it was is always allowed
        await log(f"takeover failed: {exc}; rolling back to {old.key} as master", old.key)
        await _rollback(toolkit, log, old, new, others, promoted)
        restored = await publish_phase(store, current, "stable")
        return TakeoverResult(state.name, old.key, new.key, False, f"takeover failed and was rolled back: {exc}",
                              rolled_back=True, steps=log.lines, state=restored)

    members = [k for k in snapshot.instances if k not in snapshot.fenced]
    try:
        published = await open_new_master(toolkit, log, current, new, members)
    except LeadershipLost:
        raise
    except Exception as exc:
        log.guard = no_guard
        await log(f"cannot open {new.key} for writes: {exc}; the leader's next round finishes the promotion", new.key)
        return TakeoverResult(state.name, old.key, new.key, False, f"{new.key} is published but not yet writable: "
                              f"{exc}", steps=log.lines, state=await store.get_cluster(state.name))
    log.guard = no_guard  # done: only hooks remain
    for hook in await hooks.run_hooks(settings.PostGracefulTakeoverProcesses, hook_values,
                                      settings.HookTimeoutSeconds, stop_on_failure=False):
        await log(f"hook {hook.command!r}: {'ok' if hook.ok else 'failed'} {hook.output}".rstrip())
    return TakeoverResult(state.name, old.key, new.key, True, f"{new.key} is the new master; {old.key} replicates "
                          f"from it{'' if auto else ' (replication stopped: start it when ready)'}",
                          steps=log.lines, state=published)


async def _rollback(
    toolkit: Toolkit, log: StepLog, old: Instance, new: Instance, others: list[Instance], promoted: bool
) -> None:
    actions = toolkit.actions
    steps: list[tuple[str, Instance, object]] = []
    if promoted:
        steps.append(("read_only=ON", new, actions.set_read_only(new, True)))
        steps.append((f"replicates from {old.key} again", new, actions.point_to(new, old)))
        steps += [(f"replicates from {old.key} again", r, actions.point_to(r, old)) for r in others]
    for what, instance, step in steps:
        try:
            await step  # type: ignore[misc]
            await log(f"rollback: {instance.key} {what}", instance.key)
        except Exception as exc:
            await log(f"rollback: {instance.key} {what} failed: {exc}", instance.key)
    try:
        await actions.set_read_only(old, False)
        await log(f"rollback: {old.key} read_only=OFF, master again", old.key)
    except Exception as exc:
        await log(f"rollback: {old.key} read_only=OFF failed: {exc}", old.key)
