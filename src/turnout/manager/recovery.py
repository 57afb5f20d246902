"""Automated recovery of a dead master, as a sequence of audited steps.

anti-flapping check -> phase "recovering" -> pre-failover hooks (a failure aborts) -> candidate
(fresh probe) -> candidate applies its relay log -> candidate detached (still read_only) ->
semi-sync restored -> other replicas re-pointed -> old master fenced -> new master published
with epoch + 1, phase "promoting" -> every registered proxy applied it (or lost its lease) ->
read_only=OFF -> published "stable" -> post-failover hooks.

A manager that loses its leader lease stops between two steps (LeadershipLost, not caught
here): the next leader finishes or rolls back what it left (`turnout.manager.resume`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from turnout.manager import candidates, hooks
from turnout.manager.analysis import Finding, Snapshot
from turnout.manager.leadership import LeadershipLost
from turnout.manager.resume import CUT_SHORT
from turnout.manager.steps import (
    StepLog,
    Toolkit,
    no_guard,
    open_new_master,
    publish_phase,
    semi_sync_master_side,
)
from turnout.state.base import ClusterState, RecoveryRecord
from turnout.topology.model import Instance


@dataclass
class RecoveryResult:
    cluster: str
    failed: str
    failure_type: str
    success: bool
    successor: str | None = None
    recovery_id: int | None = None
    blocked_by: RecoveryRecord | None = None
    message: str = ""
    lost_replicas: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    state: ClusterState | None = None


class RecoveryAborted(Exception):
    pass


def blocking_recovery(
    records: list[RecoveryRecord], block_seconds: float, now: float
) -> RecoveryRecord | None:
    """The recent unacknowledged recovery that forbids another one on the same cluster, if any.

    A recovery the leader's loss cut short and its successor rolled back does not count: the
    failure it was started for has not been recovered yet."""
    return next((r for r in records if not r.acknowledged and r.started_at > now - block_seconds
                 and not (not r.success and any(CUT_SHORT in line for line in r.details))), None)


async def recover_dead_master(
    toolkit: Toolkit,
    state: ClusterState,
    snapshot: Snapshot,
    finding: Finding,
    manual: bool,
    candidate: str | None = None,
) -> RecoveryResult:
    settings, store = toolkit.settings, toolkit.store
    result = RecoveryResult(state.name, finding.instance, finding.code, success=False)
    if not manual:
        blocker = blocking_recovery(await store.recoveries(state.name), settings.RecoveryPeriodBlockSeconds, time.time())
        if blocker is not None:
            result.blocked_by = blocker
            result.message = (
                f"blocked by anti-flapping: recovery {blocker.id} of cluster {state.name} ran "
                f"{time.time() - blocker.started_at:.0f}s ago (RecoveryPeriodBlockSeconds="
                f"{settings.RecoveryPeriodBlockSeconds:g}); acknowledge it with ack-recovery to allow another"
            )
            return result

    rid = await store.start_recovery(state.name, finding.code, finding.instance, manual)
    result.recovery_id = rid
    log = StepLog(store, state.name, "recover", guard=toolkit.guard)
    failed = snapshot.instances[finding.instance]
    base_context = {"failure_type": finding.code, "failed": (failed.host, failed.port), "cluster": state.name,
                    "description": finding.description, "command": "recover" if manual else "auto",
                    "replicas": finding.replicas, "recovery_id": rid, "auto": not manual,
                    "downtimed": finding.downtimed}
    await log(f"recovery {rid} of {finding.code} on {finding.instance} started "
              f"({'manual' if manual else 'automated'})", finding.instance)
    current = await publish_phase(store, state, "recovering")
    if current is None:
        result.message = "another manager changed the cluster state; not recovering"
        await log(result.message)
        await store.finish_recovery(rid, False, None, tuple(log.lines))
        return result
    try:
        successor = await _recover(toolkit, log, current, snapshot, finding, failed, candidate, base_context, result)
    except RecoveryAborted as exc:
        result.message = str(exc)
        log.guard = no_guard  # putting the cluster back as it was is always allowed
        await log(f"recovery aborted: {exc}", finding.instance)
        restored = await publish_phase(store, current, "stable")
        result.state = restored
        await store.finish_recovery(rid, False, None, tuple(log.lines))
        await _hooks(toolkit, log, settings.PostUnsuccessfulFailoverProcesses, base_context, None, result, False)
        result.steps = log.lines
        return result

    log.guard = no_guard  # done: only bookkeeping and hooks remain
    result.success = True
    result.successor = successor.key
    result.message = f"promoted {successor.key} in place of {finding.instance}"
    await log(f"recovery {rid} succeeded: {result.message}", successor.key)
    await store.finish_recovery(rid, True, successor.key, tuple(log.lines))
    await _hooks(toolkit, log, settings.PostMasterFailoverProcesses, base_context, successor, result, False)
    await _hooks(toolkit, log, settings.PostFailoverProcesses, base_context, successor, result, False)
    result.steps = log.lines
    return result


async def _hooks(
    toolkit: Toolkit,
    log: StepLog,
    commands: tuple[str, ...],
    base: dict[str, object],
    successor: Instance | None,
    result: RecoveryResult,
    stop_on_failure: bool,
) -> bool:
    if not commands:
        return True
    values = hooks.context(
        str(base["failure_type"]), base["failed"], str(base["cluster"]),  # type: ignore[arg-type]
        successor=None if successor is None else (successor.host, successor.port),
        description=str(base["description"]), command=str(base["command"]),
        replicas=base["replicas"], lost_replicas=result.lost_replicas,  # type: ignore[arg-type]
        recovery_id=result.recovery_id, successful=result.success if successor is not None else None,
        auto=bool(base["auto"]), downtimed=bool(base["downtimed"]),
    )
    ran = await hooks.run_hooks(commands, values, toolkit.settings.HookTimeoutSeconds, stop_on_failure)
    for hook in ran:
        status = "ok" if hook.ok else f"failed ({'timeout' if hook.returncode is None else hook.returncode})"
        await log(f"hook {hook.command!r}: {status} {hook.output}".rstrip())
    return all(h.ok for h in ran)


async def _recover(
    toolkit: Toolkit,
    log: StepLog,
    state: ClusterState,
    snapshot: Snapshot,
    finding: Finding,
    failed: Instance,
    requested: str | None,
    base_context: dict[str, object],
    result: RecoveryResult,
) -> Instance:
    settings, actions = toolkit.settings, toolkit.actions
    if not await _hooks(toolkit, log, settings.PreFailoverProcesses, base_context, None, result, True):
        raise RecoveryAborted("a pre-failover hook failed")

    replicas = [snapshot.instances[k] for k in finding.replicas]
    fresh = list(await asyncio.gather(*(actions.refresh(r) for r in replicas)))
    flavor = actions.flavor(fresh[0] if fresh else failed)
    choice = candidates.choose(
        failed.key, fresh, flavor, settings.promotion_rules,
        candidates.Limits(settings.ReasonableReplicationLagSeconds), master_dead=True, required=requested,
    )
    for assessment in choice.assessments:
        await log(f"candidate {assessment.key}: received {assessment.received}, applied {assessment.applied}, "
                  f"rule {assessment.rule}: {'; '.join(assessment.reasons)}", assessment.key)
    if choice.chosen is None:
        raise RecoveryAborted(choice.reason)
    await log(f"chose {choice.chosen}: {choice.reason}", choice.chosen)
    chosen = next(r for r in fresh if r.key == choice.chosen)
    others = [r for r in fresh if r.key != chosen.key and r.reachable]

    # The candidate's relay log holds transactions of the old master it has not applied yet.
    relay = flavor.relay_position(chosen)
    if relay:
        await log(f"waiting up to {settings.RelayLogApplyTimeoutSeconds:g}s for {chosen.key} to apply its relay log "
                  f"up to {relay}", chosen.key)
        if not await actions.wait_applied(chosen, relay, settings.RelayLogApplyTimeoutSeconds):
            raise RecoveryAborted(f"{chosen.key} did not apply its relay log ({relay}) in time")
        await log(f"{chosen.key} applied its relay log", chosen.key)
    semi_sync = failed.semi_sync_master_enabled
    try:
        await actions.detach(chosen)
    except Exception as exc:
        raise RecoveryAborted(f"cannot promote {chosen.key}: {exc}") from exc
    await log(f"{chosen.key}: replication stopped and reset (read_only stays ON until the proxies have "
              "applied the new epoch)", chosen.key)
    if semi_sync:
        try:
            await semi_sync_master_side(toolkit, log, chosen)
        except LeadershipLost:
            raise
        except Exception as exc:  # the cluster needs a master more than it needs semi-sync
            await log(f"semi-sync master side on {chosen.key} failed: {exc}; replication goes on asynchronous",
                      chosen.key)
    promoted = await actions.refresh(chosen)

    position = None if flavor.uses_gtid else (promoted.binlog_file, promoted.binlog_pos)
    repointed = []
    for replica in others:
        if not flavor.uses_gtid and flavor.progress(replica, False) != flavor.progress(chosen, False):
            result.lost_replicas.append(replica.key)
            await log(f"{replica.key} cannot follow {chosen.key} without GTID: it applied a different position; "
                      "it needs a rebuild", replica.key)
            continue
        try:
            await actions.point_to(replica, promoted, position=position, semi_sync_replica=True if semi_sync else None)
            repointed.append(replica)
            await log(f"{replica.key} now replicates from {chosen.key}"
                      + (" (semi-sync replica side ON)" if semi_sync else ""), replica.key)
        except LeadershipLost:
            raise
        except Exception as exc:
            result.lost_replicas.append(replica.key)
            await log(f"{replica.key} could not be re-pointed: {exc}", replica.key)

    await toolkit.store.fence(failed.key, state.name, f"dead master replaced by {chosen.key} in recovery "
                              f"{result.recovery_id}; must not rejoin without a rebuild")
    await log(f"{failed.key} fenced: it must not rejoin without a rebuild", failed.key)
    try:
        await actions.set_read_only(failed, True, timeout=1.0)
        ro_set = True
    except Exception:
        ro_set = False
    if ro_set:
        await log(f"{failed.key}: read_only=ON", failed.key)
    else:
        await log(f"{failed.key} is unreachable: read_only=ON will be set when it comes back", failed.key)

    members = [k for k in snapshot.instances if k != failed.key and k not in snapshot.fenced]
    try:
        published = await open_new_master(toolkit, log, state, promoted, members)
    except LeadershipLost:
        raise
    except Exception as exc:
        raise RecoveryAborted(f"cannot open {chosen.key} for writes: {exc}; the next leader round finishes the "
                              "promotion") from exc
    result.state = published
    return promoted
