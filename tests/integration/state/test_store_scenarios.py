"""What every state store must do, run against each backend (SQLite file, real etcd).

Each scenario takes `backend` and opens as many store objects on the same shared state as it
needs (two managers racing, a proxy watching what a manager publishes). Add a scenario here and
both backends must pass it, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import sys

import pytest

from integration.state.etcd_harness import Backend
from turnout.state import ClusterState, StateStore


async def eventually_free(store: StateStore, lease: str) -> None:
    """Wait until `lease` has expired (etcd expires it on its own clock; SQLite by time)."""

    async def poll() -> None:
        while await store.lease_owner(lease) is not None:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout=30)


# ---- clusters: compare-and-set on the epoch ---------------------------------------------------------
async def test_publish_is_compare_and_set_on_epoch(backend: Backend) -> None:
    store = backend.open()
    first = ClusterState("c1", "h:1", epoch=1, members=("h:1", "h:2"))
    assert await store.publish(first, expected_epoch=None)
    assert not await store.publish(first, expected_epoch=None), "a cluster is created once"
    promoted = first.evolve(master="h:2", epoch=2)
    assert await store.publish(promoted, expected_epoch=1)
    # A second manager that read epoch 1 loses.
    assert not await store.publish(first.evolve(master="h:3", epoch=2), expected_epoch=1)
    got = await store.get_cluster("c1")
    assert got is not None
    assert (got.master, got.epoch, got.phase, got.members) == ("h:2", 2, "stable", ("h:1", "h:2"))
    assert got == promoted, "a state reads back exactly as published"
    with pytest.raises(ValueError, match="backwards"):
        await store.publish(first.evolve(epoch=1), expected_epoch=2)
    # The phase may change within an epoch.
    assert await store.publish(promoted.evolve(phase="switching"), expected_epoch=2)
    assert (await store.get_cluster("c1")) == (await backend.open().get_cluster("c1"))
    assert [c.name for c in await store.clusters()] == ["c1"]
    assert await store.get_cluster("nope") is None
    await store.delete_cluster("c1")
    assert await store.get_cluster("c1") is None
    assert await store.publish(first, expected_epoch=None), "a deleted cluster can be created again"


async def test_only_one_of_concurrent_promotions_wins(backend: Backend) -> None:
    managers = [backend.open() for _ in range(4)]
    base = ClusterState("c1", "h:0", epoch=1)
    assert await managers[0].publish(base, None)
    for epoch in range(1, 11):
        results = await asyncio.gather(*(
            m.publish(base.evolve(master=f"h:{i}", epoch=epoch + 1), epoch) for i, m in enumerate(managers)
        ))
        assert results.count(True) == 1, f"round {epoch}: {results}"
        got = await managers[-1].get_cluster("c1")
        assert got is not None and (got.master, got.epoch) == (f"h:{results.index(True)}", epoch + 1)


async def test_only_one_of_concurrent_creations_wins(backend: Backend) -> None:
    managers = [backend.open() for _ in range(4)]
    results = await asyncio.gather(*(
        m.publish(ClusterState("new", f"h:{i}", epoch=1), None) for i, m in enumerate(managers)
    ))
    assert results.count(True) == 1
    got = await managers[0].get_cluster("new")
    assert got is not None and got.master == f"h:{results.index(True)}"


async def test_names_are_opaque(backend: Backend) -> None:
    store = backend.open()
    odd = ["a/b", "a", "a b%2F", "ü:1", "a/"]
    for name in odd:
        assert await store.publish(ClusterState(name, f"{name}:1", epoch=1), None)
    assert sorted(c.name for c in await store.clusters()) == sorted(odd)
    for name in odd:
        got = await store.get_cluster(name)
        assert got is not None and got.master == f"{name}:1"
    await store.put_instance("h:1/x", "a/b", {})
    assert [(r.key, r.cluster) for r in await store.instances("a/b")] == [("h:1/x", "a/b")]
    assert await store.instances("a") == []


def test_phase_is_validated() -> None:
    with pytest.raises(ValueError, match="phase"):
        ClusterState("c", "h:1", 1, phase="broken")  # type: ignore[arg-type]


# ---- leases -----------------------------------------------------------------------------------------
async def test_lease(backend: Backend) -> None:
    store = backend.open()
    assert await store.acquire_lease("manager", "m1", ttl=30)
    assert not await store.acquire_lease("manager", "m2", ttl=30)
    assert await store.renew_lease("manager", "m1", ttl=30)
    assert await store.acquire_lease("manager", "m1", ttl=20), "the owner may change its TTL"
    assert await store.lease_owner("manager") == "m1"
    await store.release_lease("manager", "m2")  # not the owner: no effect
    assert await store.lease_owner("manager") == "m1"
    await store.release_lease("manager", "m1")
    assert await store.lease_owner("manager") is None
    assert await store.acquire_lease("manager", "m2", ttl=0)  # expires immediately
    assert await store.lease_owner("manager") is None
    assert await store.acquire_lease("manager", "m1", ttl=30), "an expired lease can be taken"
    assert await store.lease_owner("other") is None


async def test_only_one_of_concurrent_acquirers_gets_the_lease(backend: Backend) -> None:
    managers = [backend.open() for _ in range(5)]
    results = await asyncio.gather(*(m.acquire_lease("leader", f"m{i}", 30) for i, m in enumerate(managers)))
    assert results.count(True) == 1
    winner = f"m{results.index(True)}"
    for m in managers:
        assert await m.lease_owner("leader") == winner


async def test_an_expired_lease_is_taken_over_by_another_manager(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    assert await first.acquire_lease("leader", "m1", ttl=1)
    assert not await second.acquire_lease("leader", "m2", ttl=30), "not while it is held"
    # m1 stops renewing (it died): the lease runs out and m2 takes it.
    await eventually_free(second, "leader")
    assert await second.acquire_lease("leader", "m2", ttl=30)
    assert await first.lease_owner("leader") == "m2"
    assert not await first.renew_lease("leader", "m1", ttl=30), "a late renewal does not steal it back"
    await first.release_lease("leader", "m1")
    assert await second.lease_owner("leader") == "m2"


async def test_renewing_keeps_the_lease(backend: Backend) -> None:
    owner, rival = backend.open(), backend.open()
    assert await owner.acquire_lease("leader", "m1", ttl=30)
    for _ in range(5):
        assert await owner.renew_lease("leader", "m1", ttl=30)
        assert not await rival.acquire_lease("leader", "m2", ttl=30)
    assert await rival.lease_owner("leader") == "m1"


# ---- watch ------------------------------------------------------------------------------------------
async def _follow(store: StateStore, seen: list[ClusterState], until: ClusterState) -> None:
    async for state in store.watch(interval=0.05):
        seen.append(state)
        if (state.name, state.epoch, state.phase) == (until.name, until.epoch, until.phase):
            return


async def test_watch_starts_with_every_cluster_then_follows_another_store(backend: Backend) -> None:
    manager, proxy = backend.open(), backend.open()
    c1 = ClusterState("c1", "h:1", epoch=1, phase="recovering")
    c2 = ClusterState("c2", "x:1", epoch=3)
    assert await manager.publish(c1, None)
    assert await manager.publish(c2, None)
    seen: list[ClusterState] = []
    last = c1.evolve(master="h:2", epoch=2, phase="stable")
    watcher = asyncio.create_task(_follow(proxy, seen, last))

    async def started() -> None:
        while len(seen) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(started(), timeout=30)
    assert [(s.name, s.master, s.epoch) for s in seen] == [("c1", "h:1", 1), ("c2", "x:1", 3)]
    switching = c1.evolve(phase="switching")
    assert await manager.publish(switching, expected_epoch=1)
    assert await manager.publish(last, expected_epoch=1)
    await asyncio.wait_for(watcher, timeout=30)
    assert seen[0] == c1 and seen[1] == c2
    # A fast follower sees the switching phase; a slow (polling) one may only see where it ended.
    assert seen[-1] == last
    assert all(s in (switching, last) for s in seen[2:])


async def test_watch_sees_a_cluster_deleted_and_created_again(backend: Backend) -> None:
    manager, proxy = backend.open(), backend.open()
    c1 = ClusterState("c1", "h:1", epoch=1)
    assert await manager.publish(c1, None)
    seen: list[ClusterState] = []
    again = ClusterState("c1", "h:1", epoch=1, phase="recovering")
    watcher = asyncio.create_task(_follow(proxy, seen, again))
    while not seen:
        await asyncio.sleep(0.01)
    await manager.delete_cluster("c1")
    assert await manager.publish(again, None)
    await asyncio.wait_for(watcher, timeout=30)
    assert seen[0] == c1 and seen[-1] == again


WRITER = """
import asyncio, sys
from turnout.state import open_store
async def main():
    store = open_store(sys.argv[1])
    current = await store.get_cluster("c1")
    ok = await store.publish(current.evolve(master="h:2", epoch=current.epoch + 1, phase="stable"), current.epoch)
    await store.close()
    sys.exit(0 if ok else 3)
asyncio.run(main())
"""


async def test_watch_sees_changes_made_by_another_process(backend: Backend) -> None:
    store = backend.open()
    await store.publish(ClusterState("c1", "h:1", epoch=1, phase="recovering"), None)
    seen: list[ClusterState] = []
    watcher = asyncio.create_task(_follow(store, seen, ClusterState("c1", "h:2", epoch=2)))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, backend.target)
    assert await proc.wait() == 0
    await asyncio.wait_for(watcher, timeout=30)
    assert [(s.master, s.epoch, s.phase) for s in seen] == [("h:1", 1, "recovering"), ("h:2", 2, "stable")]


# ---- records ------------------------------------------------------------------------------------------
async def test_instances_fences_downtimes(backend: Backend) -> None:
    store, other = backend.open(), backend.open()
    await store.put_instance("h:1", "c1", {"read_only": False, "server_id": 1})
    await store.put_instance("h:2", "c1", {"read_only": True})
    await store.put_instance("x:1", "c2", {})
    assert [r.key for r in await other.instances("c1")] == ["h:1", "h:2"]
    assert (await other.instances("c1"))[0].data == {"read_only": False, "server_id": 1}
    assert len(await other.instances()) == 3
    await other.put_instance("h:2", "c1", {"read_only": False})
    assert (await store.instances("c1"))[1].data == {"read_only": False}, "a put replaces the record"
    assert await other.forget_instance("x:1")
    assert not await store.forget_instance("x:1")

    await store.fence("h:1", "c1", "dead master replaced")
    assert [(f.key, f.cluster, f.reason) for f in await other.fenced()] == [("h:1", "c1", "dead master replaced")]
    assert await other.unfence("h:1")
    assert not await other.unfence("h:1")
    assert await store.fenced() == []

    await store.begin_downtime("h:2", "ops", "maintenance", 3600)
    await store.begin_downtime("h:3", "ops", "already over", -1)
    assert [(d.key, d.owner, d.reason) for d in await other.downtimes()] == [("h:2", "ops", "maintenance")]
    assert await other.end_downtime("h:2")
    assert not await other.end_downtime("h:2")
    assert await store.downtimes() == []


async def test_recoveries_and_acknowledgement(backend: Backend) -> None:
    store = backend.open()
    rid = await store.start_recovery("c1", "DeadMaster", "h:1", manual=False)
    await store.finish_recovery(rid, True, "h:2", ("promoted h:2",))
    other = await store.start_recovery("c2", "DeadMaster", "x:1", manual=True)
    recs = await store.recoveries("c1")
    assert len(recs) == 1
    rec = recs[0]
    assert (rec.failed, rec.successor, rec.success, rec.acknowledged, rec.details, rec.manual) == (
        "h:1", "h:2", True, False, ("promoted h:2",), False
    )
    assert rec.ended_at is not None and rec.ended_at >= rec.started_at
    open_one = (await store.recoveries("c2"))[0]
    assert (open_one.ended_at, open_one.success, open_one.manual, open_one.details) == (None, False, True, ())
    assert [r.id for r in await store.recoveries()] == [other, rid]
    assert [r.id for r in await store.recoveries(limit=1)] == [other]
    assert await store.acknowledge_recoveries("c1", "ops", "looked at it") == 1
    assert await store.acknowledge_recoveries("c1", "ops", "again") == 0
    acked = (await store.recoveries("c1"))[0]
    assert (acked.acknowledged, acked.acknowledged_by) == (True, "ops")
    assert acked.acknowledge_comment == "looked at it"
    assert acked.acknowledged_at is not None


async def test_recoveries_from_two_managers_get_distinct_ordered_ids(backend: Backend) -> None:
    a, b = backend.open(), backend.open()
    ids = await asyncio.gather(*(
        (a if i % 2 else b).start_recovery(f"c{i % 3}", "DeadMaster", f"h:{i}", manual=False) for i in range(12)
    ))
    assert len(set(ids)) == 12
    listed = await a.recoveries()
    assert [r.id for r in listed] == sorted(ids, reverse=True)
    # Both acknowledge cluster c0 at once: each recovery is acknowledged once, by one of them.
    counts = await asyncio.gather(a.acknowledge_recoveries("c0", "a", ""), b.acknowledge_recoveries("c0", "b", ""))
    assert sum(counts) == 4
    assert all(r.acknowledged for r in await b.recoveries("c0"))
    assert not any(r.acknowledged for r in await b.recoveries("c1"))


# ---- audit ------------------------------------------------------------------------------------------------
async def test_audit_log(backend: Backend) -> None:
    store = backend.open()
    await store.audit("c1", "recover", "started", "h:1")
    await store.audit("c2", "discover", "found")
    await store.audit("c1", "recover", "done")
    entries = await store.audit_log("c1")
    assert [(e.action, e.message, e.instance) for e in entries] == [("recover", "done", None),
                                                                      ("recover", "started", "h:1")]
    assert entries[0].at >= entries[1].at
    assert entries[0].id > entries[1].id
    assert len(await store.audit_log()) == 3
    assert len(await store.audit_log(limit=1)) == 1
    assert [e.message for e in await store.audit_log("c1", limit=1)] == ["done"]


async def test_audit_from_two_writers_keeps_each_writers_order(backend: Backend) -> None:
    a, b = backend.open(), backend.open()

    async def write(store: StateStore, who: str) -> None:
        for i in range(15):
            await store.audit("c1", "step", f"{who}{i}")

    await asyncio.gather(write(a, "a"), write(b, "b"))
    entries = await a.audit_log("c1")
    assert len(entries) == 30
    ids = [e.id for e in entries]
    assert ids == sorted(set(ids), reverse=True), "newest first, no id twice"
    for who in "ab":
        mine = [e.message for e in reversed(entries) if e.message.startswith(who)]
        assert mine == [f"{who}{i}" for i in range(15)]
    # The newest first, across pages and a filter that skips most entries.
    await b.audit("c2", "other", "only one")
    assert [e.message for e in await a.audit_log("c2")] == ["only one"]
    assert [e.message for e in await a.audit_log(limit=2)] == ["only one", entries[0].message]


# ---- another process ------------------------------------------------------------------------------------------
READER = """
import asyncio, sys
from turnout.state import open_store
async def main():
    store = open_store(sys.argv[1])
    print((await store.get_cluster("c1")).master)
    await store.close()
asyncio.run(main())
"""


async def test_state_is_readable_from_a_fresh_process(backend: Backend) -> None:
    store = backend.open()
    await store.publish(ClusterState("c1", "h:1", 1), None)
    await store.close()
    backend.opened.remove(store)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", READER, backend.target, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    assert out.decode().strip() == "h:1"
