"""Candidate selection: data first, then promotion rules; every refusal has a reason."""

from __future__ import annotations

from turnout.manager.candidates import Limits, choose
from turnout.topology.flavors import MariaDBGtid
from turnout.topology.model import Instance

F = MariaDBGtid()
M = "m:1"


def rep(name: str, received: int, applied: int | None = None, **fields: object) -> Instance:
    applied = received if applied is None else applied
    values: dict[str, object] = {
        "master_host": "m", "master_port": 1, "io_running": "Connecting", "sql_running": True,
        "last_io_errno": 2003, "gtid_io_pos": f"0-1-{received}", "gtid_slave_pos": f"0-1-{applied}",
        "seconds_behind_master": None,
    }
    values.update(fields)
    return Instance(name, 1, **values)  # type: ignore[arg-type]


def test_most_received_wins_even_over_preferred() -> None:
    choice = choose(M, [rep("a", 10), rep("b", 12, applied=9), rep("c", 11)], F, {"a:1": "prefer"})
    assert choice.chosen == "b:1"
    assert "most transactions" in choice.reason
    assert [x.eligible for x in choice.assessments] == [True, True, True]


def test_rules_break_ties() -> None:
    replicas = [rep("a", 10), rep("b", 10), rep("c", 10)]
    assert choose(M, replicas, F).chosen == "a:1"  # stable: by key
    assert choose(M, replicas, F, {"a:1": "prefer_not"}).chosen == "b:1"
    choice = choose(M, replicas, F, {"c:1": "prefer"})
    assert choice.chosen == "c:1" and "promotion rule prefer" in choice.reason
    # equally received: the one that applied more is ahead
    assert choose(M, [rep("a", 10, applied=8), rep("b", 10, applied=9)], F).chosen == "b:1"


def test_must_not_delayed_broken_stopped_lagging_unreachable_are_skipped() -> None:
    bad = {
        "a": (rep("a", 50), {"a:1": "must_not"}, "must_not"),
        "b": (rep("b", 50, sql_delay=3600), {}, "delayed"),
        "c": (rep("c", 50, sql_running=False, last_sql_error="Duplicate entry"), {}, "Duplicate entry"),
        "d": (rep("d", 50, io_running="No", last_io_errno=0), {}, "IO thread stopped"),
        "e": (rep("e", 50, seconds_behind_master=3600), {}, "lagging 3600s"),
        "f": (rep("f", 50, reachable=False, last_probe_error="timeout"), {}, "unreachable: timeout"),
        "g": (rep("g", 50, master_host="other"), {}, "replicates from other:1"),
    }
    for name, (bad_one, rules, reason) in bad.items():
        choice = choose(M, [bad_one, rep("ok", 1)], F, rules)  # type: ignore[arg-type]
        assert choice.chosen == "ok:1", name
        assessment = choice.assessment(f"{name}:1")
        assert assessment is not None and not assessment.eligible
        assert any(reason in r for r in assessment.reasons), (name, assessment.reasons)


def test_io_thread_given_up_on_a_dead_master_is_still_eligible() -> None:
    gave_up = rep("a", 10, io_running="No", last_io_errno=2003)
    assert choose(M, [gave_up], F).chosen == "a:1"


def test_no_candidate_says_why() -> None:
    choice = choose(M, [rep("a", 5, sql_delay=10)], F)
    assert choice.chosen is None
    assert "no replica of m:1 can be promoted" in choice.reason and "delayed" in choice.reason
    assert "has no replicas" in choose(M, [], F).reason


def test_lag_limit_is_configurable() -> None:
    lagging = rep("a", 10, seconds_behind_master=30)
    assert choose(M, [lagging], F).chosen is None
    assert choose(M, [lagging], F, limits=Limits(max_lag_seconds=60)).chosen == "a:1"


def test_required_candidate_for_a_takeover_with_a_live_master() -> None:
    live = dict(io_running="Yes", last_io_errno=0, seconds_behind_master=0)
    a, b = rep("a", 10, **live), rep("b", 10, **live)
    assert choose(M, [a, b], F, master_dead=False, required="b:1").chosen == "b:1"
    choice = choose(M, [a, b.evolve(io_running="Connecting")], F, master_dead=False, required="b:1")
    assert choice.chosen is None and "IO thread not connected" in choice.reason
    assert "is not a replica of m:1" in choose(M, [a], F, master_dead=False, required="z:1").reason
