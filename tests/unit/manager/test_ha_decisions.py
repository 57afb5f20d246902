"""The pure decisions of managers in HA and self-fencing proxies: when a leader may act, which
proxies a new master waits for, what a new leader does with a cut-short operation, the timing
inequalities, the semi-sync check, and when a proxy fences itself."""

from __future__ import annotations

import itertools
import time

import pytest

from turnout.fencing import caught_up, fence_status
from turnout.manager.analysis import Snapshot
from turnout.manager.checks import unsafe_semi_sync
from turnout.manager.leadership import leader_address, may_act
from turnout.manager.recovery import blocking_recovery
from turnout.manager.resume import CUT_SHORT, plan_resume
from turnout.manager.settings import ManagerSettings, SettingsError, timing_problems
from turnout.manager.steps import pending_proxies
from turnout.state.base import ClusterState, ProxyRecord, RecoveryRecord
from turnout.topology.model import Instance


def test_a_leader_acts_only_within_its_renew_deadline() -> None:
    assert not may_act(None, 100.0, 7.0), "never renewed"
    assert may_act(100.0, 100.0, 7.0)
    assert may_act(100.0, 106.99, 7.0)
    assert not may_act(100.0, 107.0, 7.0), "at the deadline it stops: the lease may expire 3s later"
    assert not may_act(100.0, 250.0, 7.0)


def test_leader_address_is_the_part_after_the_last_at() -> None:
    assert leader_address("mgr1@10.0.0.5:3000") == "10.0.0.5:3000"
    assert leader_address("a@b@h:1") == "h:1"
    assert leader_address("old-style-owner") is None
    assert leader_address(None) is None
    assert leader_address("x@") is None


def test_default_timings_satisfy_the_inequalities() -> None:
    assert timing_problems(ManagerSettings()) == []


@pytest.mark.parametrize(("values", "needle"), [
    ({"LeaderLeaseSeconds": 5, "LeaderRenewDeadlineSeconds": 4.5, "LeaderRenewSeconds": 1}, "at least 1s below"),
    ({"LeaderRenewSeconds": 4, "LeaderRenewDeadlineSeconds": 7}, "at least 2 x LeaderRenewSeconds"),
    ({"ProxyLeaseSeconds": 7}, "ProxyRenewDeadlineSeconds=7 must be at least 1s below ProxyLeaseSeconds=7"),
    ({"ProxyLeaseSeconds": 1, "ProxyRenewDeadlineSeconds": 0.5, "ProxyRenewSeconds": 0.2}, "2 or more"),
    ({"InstancePollSeconds": 20}, "must not exceed LeaderLeaseSeconds"),
])
def test_timing_inequalities_are_checked_at_start(values: dict[str, float], needle: str) -> None:
    assert any(needle in p for p in timing_problems(ManagerSettings(**values))), timing_problems(
        ManagerSettings(**values))
    with pytest.raises(SettingsError, match="must"):
        ManagerSettings.from_mapping(values)


def test_every_small_timing_combination_is_judged_consistently() -> None:
    for ttl, renew, deadline in itertools.product((2, 5, 10), (0.5, 1, 2, 4), (1, 2, 4, 7, 9)):
        settings = ManagerSettings(ProxyLeaseSeconds=ttl, ProxyRenewSeconds=renew, ProxyRenewDeadlineSeconds=deadline)
        ok = not [p for p in timing_problems(settings) if p.startswith("Proxy")]
        assert ok == (deadline >= 2 * renew and deadline <= ttl - 1), (ttl, renew, deadline)


def proxy(name: str, **acks: tuple[int, str]) -> ProxyRecord:
    return ProxyRecord(name, name, acks, time.time())


def test_pending_proxies() -> None:
    proxies = [proxy("a", c=(3, "promoting")), proxy("b", c=(2, "stable")), proxy("c"), proxy("d", c=(4, "stable")),
               proxy("e", other=(9, "stable"))]
    assert pending_proxies(proxies, "c", 3) == ["b", "c", "e"]
    assert pending_proxies(proxies, "c", 2) == ["c", "e"]
    assert pending_proxies(proxies, "c", 3, "switching") == ["a", "b", "c", "e"]
    assert pending_proxies(proxies, "c", 2, "switching") == ["b", "c", "e"], "a later epoch counts"
    assert pending_proxies([], "c", 3) == []


def inst(key: str, master: str | None = None, reachable: bool = True) -> Instance:
    host, _, port = key.rpartition(":")
    mh, _, mp = (master or "").rpartition(":")
    return Instance(host, int(port), reachable=reachable, master_host=mh or None, master_port=int(mp) if mp else None)


def state(phase: str, master: str = "m:1", epoch: int = 4) -> ClusterState:
    return ClusterState("c", master, epoch, phase, ("m:1", "r:1", "s:1"))  # type: ignore[arg-type]


def test_resume_finishes_a_published_promotion() -> None:
    snap = Snapshot.of("c", [inst("m:1", reachable=False), inst("r:1"), inst("s:1", "r:1")])
    plan = plan_resume(state("promoting", master="r:1", epoch=5), snap)
    assert (plan.action, plan.master) == ("finish", "r:1")


@pytest.mark.parametrize("phase", ["recovering", "switching"])
def test_resume_finishes_with_the_one_detached_replica(phase: str) -> None:
    snap = Snapshot.of("c", [inst("m:1", reachable=phase == "switching"), inst("r:1"), inst("s:1", "m:1")])
    plan = plan_resume(state(phase), snap)
    assert (plan.action, plan.master) == ("finish", "r:1")
    assert "detached" in plan.reason


@pytest.mark.parametrize("phase", ["recovering", "switching"])
def test_resume_rolls_back_when_nothing_was_promoted(phase: str) -> None:
    snap = Snapshot.of("c", [inst("m:1"), inst("r:1", "m:1"), inst("s:1", "m:1")])
    assert plan_resume(state(phase), snap).action == "rollback"
    # an unreachable or fenced non-replica is no candidate
    snap = Snapshot.of("c", [inst("m:1"), inst("r:1", reachable=False), inst("s:1")], fenced=["s:1"])
    assert (plan_resume(state(phase), snap).action, plan_resume(state(phase), snap).master) == ("rollback", "m:1")


def test_resume_does_not_guess_between_two_detached_replicas() -> None:
    snap = Snapshot.of("c", [inst("m:1", reachable=False), inst("r:1"), inst("s:1")])
    plan = plan_resume(state("recovering"), snap)
    assert plan.action == "rollback" and "several" in plan.reason


def record(rid: int, success: bool, details: tuple[str, ...], acknowledged: bool = False) -> RecoveryRecord:
    now = time.time()
    return RecoveryRecord(rid, "c", "DeadMaster", "m:1", None, now - 5, now, success, acknowledged, None, None, None,
                          False, details)


def test_a_rolled_back_cut_short_recovery_does_not_block_the_next() -> None:
    now = time.time()
    cut = record(2, False, ("2026-01-01 started", f"2026-01-01 recovery 2 of c was {CUT_SHORT} (phase ...)"))
    assert blocking_recovery([cut], 3600, now) is None
    normal = record(1, True, ("2026-01-01 started",))
    assert blocking_recovery([cut, normal], 3600, now) == normal
    finished_after_cut = record(3, True, (f"x {CUT_SHORT}",))
    assert blocking_recovery([finished_after_cut], 3600, now) == finished_after_cut, "a finished one counts"


def master_with(timeout_ms: float | None, enabled: bool = True, reachable: bool = True) -> Instance:
    return Instance("m", 1, reachable=reachable, semi_sync_master_enabled=enabled, semi_sync_timeout_ms=timeout_ms)


def test_semi_sync_timeout_shorter_than_a_failover_is_reported() -> None:
    [finding] = unsafe_semi_sync([master_with(10000)], 25)
    assert finding.setting == "rpl_semi_sync_master_timeout" and finding.value == 10000
    assert "acknowledges writes alone after 10s" in finding.message and "=75000" in finding.message
    assert unsafe_semi_sync([master_with(30000)], 25) == []
    assert unsafe_semi_sync([master_with(1000, enabled=False)], 25) == [], "no semi-sync: nothing to tune"
    assert unsafe_semi_sync([master_with(None)], 25) == []
    assert unsafe_semi_sync([inst("r:1", "m:1")], 25) == [], "replicas are not masters"


def test_a_proxy_fences_itself_at_its_renew_deadline() -> None:
    assert fence_status(False, None, 10, 7, False).fenced
    assert not fence_status(True, 100, 106.9, 7, True).fenced
    late = fence_status(True, 100, 107, 7, True)
    assert late.fenced and "has not renewed its lease" in late.reason and "7.0s" in late.reason
    behind = fence_status(True, 100, 101, 7, False)
    assert behind.fenced and "applying the current cluster states" in behind.reason


def test_caught_up_compares_epoch_and_phase() -> None:
    states = [ClusterState("a", "m:1", 3, "stable"), ClusterState("b", "n:1", 1, "switching")]
    assert caught_up({"a": (3, "stable"), "b": (1, "switching")}, states)
    assert not caught_up({"a": (3, "stable"), "b": (1, "stable")}, states)
    assert not caught_up({"a": (3, "stable")}, states)
    assert caught_up({"a": (3, "stable"), "gone": (1, "stable")}, states[:1])
