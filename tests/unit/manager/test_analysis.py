"""Failure analysis: named scenarios, and every combination of master and replica states."""

from __future__ import annotations

import itertools

import pytest

from turnout.manager import analysis as a
from turnout.manager.analysis import Snapshot, analyze
from turnout.topology.model import Instance

M = "m:1"

STATES = {
    "replicating": {"io_running": "Yes", "sql_running": True},
    "connecting": {"io_running": "Connecting", "sql_running": True, "last_io_errno": 2003},
    "sql_stopped": {"io_running": "Yes", "sql_running": False},
    "io_stopped": {"io_running": "No", "sql_running": True},
    "unreachable": {"io_running": "Yes", "sql_running": True, "reachable": False},
}


def master(reachable: bool = True, key: str = M) -> Instance:
    host, port = key.split(":")
    return Instance(host, int(port), reachable=reachable, read_only=False)


def replica(n: int, state: str, of: str = M) -> Instance:
    host, port = of.split(":")
    fields = dict(STATES[state])
    return Instance(f"r{n}", 1, master_host=host, master_port=int(port), **fields)  # type: ignore[arg-type]


def codes(snapshot: Snapshot) -> dict[str, str]:
    return {f.instance: f.code for f in analyze(snapshot)}


@pytest.mark.parametrize(
    ("master_up", "states", "expected"),
    [
        (True, [], a.NO_PROBLEM),
        (True, ["replicating", "replicating"], a.NO_PROBLEM),
        (True, ["replicating", "connecting"], a.NO_PROBLEM),
        (True, ["sql_stopped", "io_stopped"], a.ALL_MASTER_REPLICAS_NOT_REPLICATING),
        (True, ["connecting", "unreachable"], a.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD),
        (False, [], a.DEAD_MASTER_WITHOUT_REPLICAS),
        (False, ["connecting", "connecting"], a.DEAD_MASTER),
        (False, ["connecting", "io_stopped"], a.DEAD_MASTER),
        (False, ["connecting", "unreachable"], a.DEAD_MASTER_AND_SOME_REPLICAS),
        (False, ["unreachable", "unreachable"], a.DEAD_MASTER_AND_REPLICAS),
        (False, ["replicating", "connecting"], a.UNREACHABLE_MASTER),
        (False, ["sql_stopped"], a.UNREACHABLE_MASTER),  # IO connected: the master is alive
    ],
)
def test_master_scenarios(master_up: bool, states: list[str], expected: str) -> None:
    snap = Snapshot.of("c", [master(master_up), *(replica(i, s) for i, s in enumerate(states))])
    findings = analyze(snap)
    assert [f.instance for f in findings] == [M]
    finding = findings[0]
    assert finding.code == expected
    assert finding.is_master
    assert finding.description == a.DESCRIPTIONS[expected]
    assert finding.count_replicas == len(states)
    assert finding.recoverable_master_failure == (expected in (a.DEAD_MASTER, a.DEAD_MASTER_AND_SOME_REPLICAS))
    assert finding.is_problem == (expected != a.NO_PROBLEM)


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_every_combination_of_states(count: int) -> None:
    for master_up in (True, False):
        for states in itertools.product(STATES, repeat=count):
            snap = Snapshot.of("c", [master(master_up), *(replica(i, s) for i, s in enumerate(states))])
            (finding,) = analyze(snap)
            valid = [s for s in states if s != "unreachable"]
            reaching = [s for s in valid if s in ("replicating", "sql_stopped")]
            assert finding.count_valid_replicas == len(valid)
            assert finding.count_replicas_reaching_master == len(reaching)
            assert finding.count_replicating_replicas == valid.count("replicating")
            # A failover needs the manager AND every reachable replica to lose the master,
            # and at least one reachable replica to promote.
            dead = not master_up and valid and not reaching
            assert finding.recoverable_master_failure == bool(dead), (master_up, states)
            assert (finding.code == a.UNREACHABLE_MASTER) == (not master_up and bool(reaching))
            if master_up:
                assert finding.code in (a.NO_PROBLEM, a.ALL_MASTER_REPLICAS_NOT_REPLICATING,
                                        a.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD)
                assert (finding.code == a.NO_PROBLEM) == (count == 0 or "replicating" in states)


def test_intermediate_master() -> None:
    im = replica(1, "replicating")
    leaf_connecting = replica(2, "connecting", of=im.key)
    leaf_replicating = replica(3, "replicating", of=im.key)
    base = [master(), im.evolve(reachable=False)]
    # The master's only replica is the dead intermediate master: the master sees it as gone.
    assert codes(Snapshot.of("c", [*base, leaf_connecting])) == {
        M: a.ALL_MASTER_REPLICAS_NOT_REPLICATING_OR_DEAD, im.key: a.DEAD_INTERMEDIATE_MASTER
    }
    assert codes(Snapshot.of("c", [*base, leaf_connecting, leaf_replicating]))[im.key] == (
        a.UNREACHABLE_INTERMEDIATE_MASTER
    )
    assert codes(Snapshot.of("c", [*base, leaf_connecting, leaf_replicating.evolve(reachable=False)]))[im.key] == (
        a.DEAD_INTERMEDIATE_MASTER_AND_SOME_REPLICAS
    )
    assert codes(Snapshot.of("c", [*base, leaf_connecting.evolve(reachable=False)]))[im.key] == (
        a.DEAD_INTERMEDIATE_MASTER_AND_REPLICAS
    )
    assert codes(Snapshot.of("c", [master(), im, leaf_replicating])) == {M: a.NO_PROBLEM, im.key: a.NO_PROBLEM}
    # A plain replica gets no finding of its own.
    assert im.key not in codes(Snapshot.of("c", [master(), im]))


def test_fenced_servers_are_ignored_and_downtime_is_reported() -> None:
    old = master(reachable=False)
    new = master(key="r1:1")
    other = replica(2, "replicating", of=new.key)
    snap = Snapshot.of("c", [old, new, other], fenced=[old.key], downtimed=[new.key])
    findings = analyze(snap)
    assert [(f.instance, f.code, f.downtimed) for f in findings] == [("r1:1", a.NO_PROBLEM, True)]
    # A fenced replica does not count as evidence either way.
    snap = Snapshot.of("c", [master(False), replica(1, "connecting"), replica(2, "replicating")], fenced=["r2:1"])
    assert codes(snap) == {M: a.DEAD_MASTER}
    assert analyze(snap)[0].replicas == ("r1:1",)
