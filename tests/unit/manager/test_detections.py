"""Detections: problems appearing and clearing between two analyses."""

from __future__ import annotations

from turnout.manager.analysis import Finding
from turnout.manager.detections import changes


def finding(cluster: str, instance: str, code: str) -> Finding:
    return Finding(cluster, code, instance, is_master=True, description=f"{code} description")


def test_appeared_cleared_and_unchanged() -> None:
    before = {"c": [finding("c", "m:1", "UnreachableMaster"), finding("c", "i:1", "NoProblem")],
              "d": [finding("d", "x:1", "DeadIntermediateMaster")]}
    after = {"c": [finding("c", "m:1", "DeadMaster"), finding("c", "i:1", "NoProblem")],
             "d": [finding("d", "x:1", "DeadIntermediateMaster")]}
    found = [(d.cluster, d.instance, d.code, d.appeared, d.message) for d in changes(before, after)]
    assert found == [
        ("c", "m:1", "UnreachableMaster", False, "UnreachableMaster on m:1 cleared"),
        ("c", "m:1", "DeadMaster", True, "DeadMaster detected on m:1: DeadMaster description"),
    ]


def test_first_analysis_and_vanished_cluster() -> None:
    now = {"c": [finding("c", "m:1", "DeadMaster")]}
    assert [d.appeared for d in changes({}, now)] == [True]
    assert [d.appeared for d in changes(now, {})] == [False]
    assert changes(now, now) == []
    assert changes({"c": [finding("c", "m:1", "NoProblem")]}, {}) == []
