"""Managers in HA on a real etcd, as real processes: one leader, leader-check, forwarding, a
leader killed with SIGKILL, a leader cut off from etcd but not from MySQL, and operations a
dead leader left half done, finished or rolled back by the next."""

from __future__ import annotations

import asyncio
import time

import pytest

from integration.ha.conftest import HA
from integration.ha.ha_harness import (
    TIMINGS,
    api,
    app,
    cluster,
    is_leader,
    master_of,
    start_manager,
    start_proxy,
    wait_until,
)
from turnout.manager.resume import CUT_SHORT
from turnout.sandbox.sandbox import Sandbox
from turnout.state import open_store

pytestmark = pytest.mark.sandbox


def writer_port(proxy_proc) -> int:  # type: ignore[no-untyped-def]
    with app(proxy_proc, timeout=15) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@port FROM DUAL FOR UPDATE")  # the sandbox's rules send FOR UPDATE to the writer
        return int(cur.fetchone()[0])


def test_one_leader_forwards_and_the_other_leads_after_kill_9(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    a = start_manager(ha.keep, ha.workdir, "mgr-a", ha.store, box)
    wait_until(lambda: is_leader(a), "mgr-a to lead")
    b = start_manager(ha.keep, ha.workdir, "mgr-b", ha.store, box)
    wait_until(lambda: master_of(b) == box.nodes[0].address, "the follower to answer reads")
    assert api(a.port, "leader-check")[:2] == (200, "OK")
    assert api(b.port, "leader-check")[:2] == (404, "Not leader")
    assert api(b.port, "leader-check/503")[0] == 503, "orchestrator's optional status"
    assert api(b.port, "raft-leader")[:2] == (200, f"127.0.0.1:{a.port}")
    assert api(b.port, "raft-health")[0] == 200
    status, body, _ = api(b.port, "health")
    assert status == 200 and body["Details"]["IsActiveNode"] is False and "mgr-a@" in body["Details"]["ActiveNode"]

    # An action sent to the follower is done by the leader, and the answer says so.
    replica = box.nodes[2]
    status, body, headers = api(b.port, f"begin-downtime/127.0.0.1/{replica.port}/ops/maintenance/60s")
    assert status == 200, body
    assert headers["X-Turnout-Leader"] == f"127.0.0.1:{a.port}"
    status, body, headers = api(b.port, f"end-downtime/127.0.0.1/{replica.port}")
    assert status == 200 and headers["X-Turnout-Leader"] == f"127.0.0.1:{a.port}", body
    audit = api(a.port, "audit")[1]
    assert any(e["AuditType"] == "begin-downtime" for e in audit) or any(
        "downtimed by ops" in str(e) for e in audit), audit[:5]

    p1 = start_proxy(ha.keep, ha.workdir, "proxy-1", ha.store, box)
    p2 = start_proxy(ha.keep, ha.workdir, "proxy-2", ha.store, box)
    for proxy in (p1, p2):
        wait_until(lambda proxy=proxy: writer_port(proxy) == box.nodes[0].port, f"{proxy.name} to write")

    # The leader dies: the follower leads within the lease's TTL plus one renewal interval.
    killed = time.monotonic()
    a.kill9()
    wait_until(lambda: is_leader(b), "mgr-b to lead", timeout=60)
    took = time.monotonic() - killed
    bound = TIMINGS["LeaderLeaseSeconds"] + TIMINGS["LeaderRenewSeconds"]
    print(f"leader kill -9 -> new leader after {took:.2f}s (TTL + renew = {bound:g}s)")
    assert took < bound + 5, f"took {took:.1f}s to lead (TTL + renew = {bound:g}s, +5s of slack for a loaded host)"

    # Then the master dies: the new leader recovers it and both proxies follow by themselves.
    box.kill(0)
    wait_until(lambda: master_of(b) != box.nodes[0].address and cluster(b)["Phase"] == "stable",
               "mgr-b to recover the master", timeout=90)
    new_port = int(master_of(b).rpartition(":")[2])
    assert cluster(b)["Epoch"] == 2
    for proxy in (p1, p2):
        wait_until(lambda proxy=proxy: writer_port(proxy) == new_port, f"{proxy.name} to follow")
    messages = [e.get("Message", "") for e in api(b.port, "audit")[1]]
    assert any("phase promoting" in m for m in messages), messages[:20]


def test_a_leader_cut_off_from_etcd_starts_nothing_and_the_other_leads(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    link, through_link = ha.link()
    a = start_manager(ha.keep, ha.workdir, "mgr-a", through_link, box)
    wait_until(lambda: is_leader(a), "mgr-a to lead")
    b = start_manager(ha.keep, ha.workdir, "mgr-b", ha.store, box)
    wait_until(lambda: master_of(b) == box.nodes[0].address, "the follower to answer reads")
    link.cut()
    cut = time.monotonic()
    wait_until(lambda: not is_leader(a), "mgr-a to stop claiming the lead")
    stepped_down = time.monotonic() - cut
    wait_until(lambda: is_leader(b), "mgr-b to lead")
    print(f"cut from etcd: leader stepped down after {stepped_down:.2f}s, other led after {time.monotonic() - cut:.2f}s")
    assert stepped_down < TIMINGS["LeaderLeaseSeconds"], "it must stop before its lease can expire"
    # mgr-a still reaches MySQL and sees the master die; it must not act on it.
    box.kill(0)
    wait_until(lambda: master_of(b) != box.nodes[0].address and cluster(b)["Phase"] == "stable",
               "mgr-b to recover the master", timeout=90)
    records = api(b.port, "audit-recovery")[1]
    assert len(records) == 1, records
    assert api(a.port, "leader-check")[0] == 404
    assert "is now the leader" not in a.logs().split("no longer the leader manager")[-1]
    link.heal()
    time.sleep(TIMINGS["LeaderRenewSeconds"] * 4)
    assert not is_leader(a) and is_leader(b), "healed, the old leader follows"


async def _leave(store_url: str, cluster_name: str, phase: str, recovery_of: str | None = None) -> int | None:
    """Write what a leader killed in the middle of an operation leaves in the store."""
    store = open_store(store_url)
    try:
        state = await store.get_cluster(cluster_name)
        assert state is not None
        rid = None
        if recovery_of is not None:
            rid = await store.start_recovery(cluster_name, "DeadMaster", recovery_of, False)
            await store.audit(cluster_name, "recover", f"recovery {rid} of DeadMaster on {recovery_of} started")
        assert await store.publish(state.evolve(phase=phase), state.epoch)
        return rid
    finally:
        await store.close()


async def _recovery(store_url: str, rid: int):  # type: ignore[no-untyped-def]
    store = open_store(store_url)
    try:
        return next(r for r in await store.recoveries() if r.id == rid)
    finally:
        await store.close()


def test_the_next_leader_rolls_back_or_finishes_what_a_dead_leader_left(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    first = start_manager(ha.keep, ha.workdir, "mgr-1", ha.store, box)
    wait_until(lambda: cluster(first)["Phase"] == "stable", "the cluster to be published")
    name = cluster(first)["ClusterName"]
    first.kill9()

    # A takeover cut short after the old master went read_only: nothing was promoted -> rolled back.
    box.execute(0, "SET GLOBAL read_only = ON")
    asyncio.run(_leave(ha.store, name, "switching"))
    second = start_manager(ha.keep, ha.workdir, "mgr-2", ha.store, box)
    wait_until(lambda: cluster(second)["Phase"] == "stable", "the takeover to be rolled back", timeout=60)
    assert master_of(second) == box.nodes[0].address and cluster(second)["Epoch"] == 1
    assert box.execute(0, "SELECT @@read_only AS ro")[0]["ro"] == 0
    messages = [e["Message"] for e in api(second.port, "audit")[1]]
    assert any(CUT_SHORT in m and "roll back" in m for m in messages), messages[:10]
    assert any("rolled back by mgr-2" in m for m in messages), messages[:10]
    second.kill9()

    # A recovery cut short after the candidate was detached -> finished with that candidate.
    box.kill(0)
    box.execute(1, "STOP SLAVE", "RESET SLAVE ALL")
    rid = asyncio.run(_leave(ha.store, name, "recovering", recovery_of=box.nodes[0].address))
    assert rid is not None
    third = start_manager(ha.keep, ha.workdir, "mgr-3", ha.store, box)
    wait_until(lambda: master_of(third) == box.nodes[1].address and cluster(third)["Phase"] == "stable",
               "the recovery to be finished", timeout=90)
    assert cluster(third)["Epoch"] == 2
    assert box.execute(1, "SELECT @@read_only AS ro")[0]["ro"] == 0
    status = box.replica_status(2)
    assert status is not None and int(status["Master_Port"]) == box.nodes[1].port
    record = asyncio.run(_recovery(ha.store, rid))
    assert record.success and record.successor == box.nodes[1].address and record.ended_at is not None
    assert any(CUT_SHORT in line for line in record.details) and any("finished by mgr-3" in line
                                                                     for line in record.details)
    fenced = [e["Message"] for e in api(third.port, "audit")[1] if "fenced" in e["Message"]]
    assert fenced, "the dead master is fenced"
