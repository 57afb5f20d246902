"""Failure analysis: from a snapshot of a cluster's instances to findings. Pure functions.

Names and meanings follow Orchestrator's: a master is judged from its replicas' point of view.
The manager failing to reach a master proves nothing by itself; the master is dead only when
the replicas cannot reach it either (their IO threads are not connected).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from turnout.state.base import ClusterState
from turnout.topology.model import Instance

NO_PROBLEM = "NoProblem"
DEAD_MASTER = "DeadMaster"
DEAD_MASTER_AND_SOME_REPLICAS = "DeadMasterAndSomeReplicas"
DEAD_MASTER_AND_REPLICAS = "DeadMasterAndReplicas"
DEAD_MASTER_WITHOUT_REPLICAS = "DeadMasterWithoutReplicas"
UNREACHABLE_MASTER = "UnreachableMaster"
ALL_MASTER_REPLICAS_NOT_REPLICATING = "AllMasterReplicasNotReplicating"
ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD = "AllMasterReplicasNotReplicatingOrDead"
DEAD_INTERMEDIATE_MASTER = "DeadIntermediateMaster"
DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS = "DeadIntermediateMasterAndSomeReplicas"
DEAD_INTERMEDIATE_MASTER_AND_REPLICAS = "DeadIntermediateMasterAndReplicas"
UNREACHABLE_INTERMEDIATE_MASTER = "UnreachableIntermediateMaster"

DESCRIPTIONS = {
    NO_PROBLEM: "no problem",
    DEAD_MASTER: "master cannot be reached by the manager and none of its replicas is replicating",
    DEAD_MASTER_AND_SOME_REPLICAS: (
        "master cannot be reached by the manager; some of its replicas are unreachable "
        "and none is replicating"
    ),
    DEAD_MASTER_AND_REPLICAS: "master and all of its replicas cannot be reached by the manager",
    DEAD_MASTER_WITHOUT_REPLICAS: "master cannot be reached by the manager and has no replicas",
    UNREACHABLE_MASTER: "master cannot be reached by the manager but its replicas still replicate from it",
    ALL_MASTER_REPLICAS_NOT_REPLICATING: "master is reachable but none of its replicas is replicating",
    ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD: (
        "master is reachable but none of its replicas is replicating, and some are unreachable"
    ),
    DEAD_INTERMEDIATE_MASTER: (
        "intermediate master cannot be reached by the manager and none of its replicas is replicating"
    ),
    DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS: (
        "intermediate master cannot be reached; some of its replicas are unreachable, none is replicating"
    ),
    DEAD_INTERMEDIATE_MASTER_AND_REPLICAS: "intermediate master and all of its replicas cannot be reached",
    UNREACHABLE_INTERMEDIATE_MASTER: (
        "intermediate master cannot be reached by the manager but its replicas still replicate from it"
    ),
}

# Findings that an automated dead-master recovery acts on.
MASTER_RECOVERABLE = frozenset({DEAD_MASTER, DEAD_MASTER_AND_SOME_REPLICAS})


@dataclass(frozen=True)
class Snapshot:
    """Everything the manager knows about one cluster at one moment."""

    cluster: str
    instances: Mapping[str, Instance]
    downtimed: frozenset[str] = frozenset()
    fenced: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        cluster: str,
        instances: Iterable[Instance],
        downtimed: Iterable[str] = (),
        fenced: Iterable[str] = (),
    ) -> Snapshot:
        return cls(cluster, {i.key: i for i in instances}, frozenset(downtimed), frozenset(fenced))

    def replicas_of(self, key: str) -> list[Instance]:
        return sorted(
            (i for i in self.instances.values() if i.master_key == key and i.key not in self.fenced),
            key=lambda i: i.key,
        )


@dataclass(frozen=True)
class Finding:
    cluster: str
    code: str
    instance: str
    is_master: bool
    replicas: tuple[str, ...] = ()
    count_replicas: int = 0
    count_valid_replicas: int = 0
    count_replicas_reaching_master: int = 0
    count_replicating_replicas: int = 0
    downtimed: bool = False
    description: str = field(default="")

    @property
    def is_problem(self) -> bool:
        return self.code != NO_PROBLEM

    @property
    def recoverable_master_failure(self) -> bool:
        return self.code in MASTER_RECOVERABLE


@dataclass(frozen=True)
class ClusterView:
    """A cluster as the manager last saw it: its published state, the snapshot, what analysis found."""

    state: ClusterState
    snapshot: Snapshot
    findings: tuple[Finding, ...]


def analyze(snapshot: Snapshot) -> list[Finding]:
    """One finding per master and intermediate master of the cluster (fenced servers are ignored)."""
    findings = []
    for key in sorted(snapshot.instances):
        if key in snapshot.fenced:
            continue
        instance = snapshot.instances[key]
        replicas = snapshot.replicas_of(key)
        if instance.is_replica and not replicas:
            continue
        findings.append(_analyze_one(snapshot, instance, replicas))
    return findings


def _analyze_one(snapshot: Snapshot, instance: Instance, replicas: list[Instance]) -> Finding:
    valid = [r for r in replicas if r.reachable]
    reaching = [r for r in valid if r.io_ok]
    replicating = [r for r in valid if r.replicating]
    is_master = not instance.is_replica
    code = _code(is_master, instance.reachable, len(replicas), len(valid), len(reaching), len(replicating))
    return Finding(
        cluster=snapshot.cluster,
        code=code,
        instance=instance.key,
        is_master=is_master,
        replicas=tuple(r.key for r in replicas),
        count_replicas=len(replicas),
        count_valid_replicas=len(valid),
        count_replicas_reaching_master=len(reaching),
        count_replicating_replicas=len(replicating),
        downtimed=instance.key in snapshot.downtimed,
        description=DESCRIPTIONS[code],
    )


def _code(is_master: bool, reachable: bool, total: int, valid: int, reaching: int, replicating: int) -> str:
    if is_master:
        if reachable:
            if total == 0 or replicating > 0:
                return NO_PROBLEM
            if valid == total:
                return ALL_MASTER_REPLICAS_NOT_REPLICATING
            return ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD
        if total == 0:
            return DEAD_MASTER_WITHOUT_REPLICAS
        if valid == 0:
            return DEAD_MASTER_AND_REPLICAS
        if reaching > 0:
            return UNREACHABLE_MASTER
        return DEAD_MASTER if valid == total else DEAD_MASTER_AND_SOME_REPLICAS
    if reachable:
        return NO_PROBLEM
    if valid == 0:
        return DEAD_INTERMEDIATE_MASTER_AND_REPLICAS
    if reaching > 0:
        return UNREACHABLE_INTERMEDIATE_MASTER
    return DEAD_INTERMEDIATE_MASTER if valid == total else DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS
