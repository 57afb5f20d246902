"""Finishing or rolling back an operation a leader left half done (it died, or lost its lease).

A cluster whose phase is not "stable" while no operation of this manager runs on it was left
by an earlier leader. `plan_resume` decides from the cluster state and the topology as it is
now (pure); `resume` does it, audited under the action "resume", and closes the cut-short
recovery record (if any) saying which it was:

- "promoting": the new master was published but not opened for writes -> finish (wait for the
  proxies, read_only=OFF, stable);
- "recovering" / "switching" with one replica already detached from the old master -> finish
  the promotion of that replica (re-point the others, fence the dead master or leave the old
  one replicating, stopped, as a takeover does);
- otherwise -> roll back: the old master stays (a takeover's old master is made writable
  again); for a dead master, detection then starts a new recovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from turnout.manager.analysis import Snapshot
from turnout.manager.steps import StepLog, Toolkit, no_guard, open_new_master, publish_phase
from turnout.state.base import ClusterState

# Marks a recovery record closed by `resume`; anti-flapping does not count such records.
CUT_SHORT = "cut short by the loss of the leader"


@dataclass(frozen=True)
class ResumePlan:
    action: Literal["finish", "rollback"]
    master: str  # the cluster's master once done
    reason: str


def plan_resume(state: ClusterState, snapshot: Snapshot) -> ResumePlan:
    """What to do with a cluster left in a phase other than stable. Pure."""
    if state.phase == "promoting":
        return ResumePlan("finish", state.master,
                          f"{state.master} was published as master (epoch {state.epoch}) but not yet opened for writes")
    old = state.master
    detached = sorted(
        key for key, inst in snapshot.instances.items()
        if key != old and key not in snapshot.fenced and inst.reachable and not inst.is_replica
    )
    if len(detached) == 1:
        return ResumePlan("finish", detached[0], f"{detached[0]} had already been detached from {old}")
    if detached:
        return ResumePlan("rollback", old, f"several replicas are detached ({', '.join(detached)}): "
                          f"keeping {old}; re-point them by hand")
    return ResumePlan("rollback", old, f"no replica had been promoted yet: {old} stays the master")


async def resume(toolkit: Toolkit, owner: str, state: ClusterState, snapshot: Snapshot) -> ResumePlan:
    store, actions = toolkit.store, toolkit.actions
    plan = plan_resume(state, snapshot)
    log = StepLog(store, state.name, "resume", guard=toolkit.guard)
    record = next((r for r in await store.recoveries(state.name, limit=20) if r.ended_at is None), None)
    what = f"recovery {record.id}" if record is not None else f"the {state.phase} operation"
    await log(f"{what} of {state.name} was {CUT_SHORT} (phase {state.phase}, epoch {state.epoch}); "
              f"{owner} will {'finish' if plan.action == 'finish' else 'roll back'} it: {plan.reason}", plan.master)
    published: ClusterState | None = None
    if plan.action == "finish":
        new = await actions.refresh(snapshot.instances[plan.master])
        if state.phase != "promoting":
            old = state.master
            dead = state.phase == "recovering"
            for key, inst in sorted(snapshot.instances.items()):
                if key in (new.key, *snapshot.fenced) or not inst.reachable or inst.master_key == new.key:
                    continue
                if key == old and dead:
                    continue
                try:
                    await actions.point_to(inst, new, former_master=key == old, start=key != old)
                    await log(f"{key} now replicates from {new.key}", key)
                except Exception as exc:
                    await log(f"{key} could not be re-pointed: {exc}", key)
            if dead:
                await store.fence(old, state.name, f"dead master replaced by {new.key} (finished by {owner}); "
                                  "must not rejoin without a rebuild")
                await log(f"{old} fenced: it must not rejoin without a rebuild", old)
        members = [k for k in snapshot.instances if k not in snapshot.fenced
                   and not (k == state.master and state.phase == "recovering")]
        published = await open_new_master(toolkit, log, state, new, members)
        log.guard = no_guard
        await log(f"{what} finished by {owner}: {plan.master} is the master" if published is not None
                  else f"{what}: another manager changed the cluster meanwhile", plan.master)
    else:
        if state.phase == "switching":
            former = snapshot.instances.get(state.master)
            if former is not None and former.reachable:
                try:
                    await actions.set_read_only(former, False)
                    await log(f"rollback: {former.key} read_only=OFF, master again", former.key)
                except Exception as exc:
                    await log(f"rollback: {former.key} read_only=OFF failed: {exc}", former.key)
        published = await publish_phase(store, state, "stable")
        log.guard = no_guard
        await log(f"{what} rolled back by {owner}: {plan.master} stays the master"
                  + (" (detection recovers it anew if it is dead)" if state.phase == "recovering" else ""),
                  plan.master)
    if record is not None:
        finished = plan.action == "finish" and published is not None
        await store.finish_recovery(record.id, finished, plan.master if finished else None,
                                    (*record.details, *log.lines))
    return plan
