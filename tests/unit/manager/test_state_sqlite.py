"""The SQLite state store: compare-and-set, leases, watch across processes, records and audit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from turnout.state import ClusterState, SQLiteStateStore


@pytest.fixture
async def store(tmp_path: Path) -> SQLiteStateStore:
    return SQLiteStateStore(tmp_path / "state.db")


async def test_publish_is_compare_and_set_on_epoch(store: SQLiteStateStore) -> None:
    first = ClusterState("c1", "h:1", epoch=1, members=("h:1", "h:2"))
    assert await store.publish(first, expected_epoch=None)
    assert not await store.publish(first, expected_epoch=None), "a cluster is created once"
    promoted = first.evolve(master="h:2", epoch=2)
    assert await store.publish(promoted, expected_epoch=1)
    # A second manager that read epoch 1 loses the race.
    assert not await store.publish(first.evolve(master="h:3", epoch=2), expected_epoch=1)
    got = await store.get_cluster("c1")
    assert got is not None
    assert (got.master, got.epoch, got.phase, got.members) == ("h:2", 2, "stable", ("h:1", "h:2"))
    with pytest.raises(ValueError, match="backwards"):
        await store.publish(first.evolve(epoch=1), expected_epoch=2)
    assert [c.name for c in await store.clusters()] == ["c1"]
    assert await store.get_cluster("nope") is None


async def test_only_one_of_two_concurrent_promotions_wins(tmp_path: Path) -> None:
    a, b = SQLiteStateStore(tmp_path / "s.db"), SQLiteStateStore(tmp_path / "s.db")
    base = ClusterState("c1", "h:1", epoch=5)
    assert await a.publish(base, None)
    results = await asyncio.gather(
        a.publish(base.evolve(master="h:2", epoch=6), 5), b.publish(base.evolve(master="h:3", epoch=6), 5)
    )
    assert sorted(results) == [False, True]
    winner = "h:2" if results[0] else "h:3"
    got = await b.get_cluster("c1")
    assert got is not None and got.master == winner


def test_phase_is_validated() -> None:
    with pytest.raises(ValueError, match="phase"):
        ClusterState("c", "h:1", 1, phase="broken")  # type: ignore[arg-type]


async def test_lease(store: SQLiteStateStore) -> None:
    assert await store.acquire_lease("manager", "m1", ttl=30)
    assert not await store.acquire_lease("manager", "m2", ttl=30)
    assert await store.renew_lease("manager", "m1", ttl=30)
    assert await store.lease_owner("manager") == "m1"
    await store.release_lease("manager", "m2")  # not the owner: no effect
    assert await store.lease_owner("manager") == "m1"
    await store.release_lease("manager", "m1")
    assert await store.lease_owner("manager") is None
    assert await store.acquire_lease("manager", "m2", ttl=0)  # expires immediately
    assert await store.lease_owner("manager") is None
    assert await store.acquire_lease("manager", "m1", ttl=30), "an expired lease can be taken"


WRITER = """
import asyncio, sys
from turnout.state import ClusterState, SQLiteStateStore
async def main():
    store = SQLiteStateStore(sys.argv[1])
    current = await store.get_cluster("c1")
    await store.publish(current.evolve(master="h:2", epoch=current.epoch + 1, phase="stable"), current.epoch)
asyncio.run(main())
"""


async def test_watch_sees_changes_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    store = SQLiteStateStore(path)
    await store.publish(ClusterState("c1", "h:1", epoch=1, phase="recovering"), None)
    seen: list[ClusterState] = []

    async def follow() -> None:
        async for state in store.watch(interval=0.05):
            seen.append(state)
            if state.epoch == 2:
                return

    watcher = asyncio.create_task(follow())
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", WRITER, str(path))
    assert await proc.wait() == 0
    await asyncio.wait_for(watcher, timeout=30)
    assert [(s.master, s.epoch, s.phase) for s in seen] == [("h:1", 1, "recovering"), ("h:2", 2, "stable")]


async def test_instances_fences_downtimes(store: SQLiteStateStore) -> None:
    await store.put_instance("h:1", "c1", {"read_only": False, "server_id": 1})
    await store.put_instance("h:2", "c1", {"read_only": True})
    await store.put_instance("x:1", "c2", {})
    assert [r.key for r in await store.instances("c1")] == ["h:1", "h:2"]
    assert (await store.instances("c1"))[0].data == {"read_only": False, "server_id": 1}
    assert len(await store.instances()) == 3
    assert await store.forget_instance("x:1")
    assert not await store.forget_instance("x:1")

    await store.fence("h:1", "c1", "dead master replaced")
    assert [(f.key, f.reason) for f in await store.fenced()] == [("h:1", "dead master replaced")]
    assert await store.unfence("h:1")
    assert await store.fenced() == []

    await store.begin_downtime("h:2", "ops", "maintenance", 3600)
    await store.begin_downtime("h:3", "ops", "already over", -1)
    assert [d.key for d in await store.downtimes()] == ["h:2"]
    assert await store.end_downtime("h:2")
    assert await store.downtimes() == []


async def test_recoveries_and_acknowledgement(store: SQLiteStateStore) -> None:
    rid = await store.start_recovery("c1", "DeadMaster", "h:1", manual=False)
    await store.finish_recovery(rid, True, "h:2", ("promoted h:2",))
    other = await store.start_recovery("c2", "DeadMaster", "x:1", manual=True)
    recs = await store.recoveries("c1")
    assert len(recs) == 1
    rec = recs[0]
    assert (rec.failed, rec.successor, rec.success, rec.acknowledged, rec.details) == (
        "h:1", "h:2", True, False, ("promoted h:2",)
    )
    assert rec.ended_at is not None and rec.ended_at >= rec.started_at
    assert [r.id for r in await store.recoveries()] == [other, rid]
    assert await store.acknowledge_recoveries("c1", "ops", "looked at it") == 1
    assert await store.acknowledge_recoveries("c1", "ops", "again") == 0
    acked = (await store.recoveries("c1"))[0]
    assert (acked.acknowledged, acked.acknowledged_by) == (True, "ops")
    assert acked.acknowledge_comment == "looked at it"


async def test_audit_log(store: SQLiteStateStore) -> None:
    await store.audit("c1", "recover", "started", "h:1")
    await store.audit("c2", "discover", "found")
    await store.audit("c1", "recover", "done")
    entries = await store.audit_log("c1")
    assert [(e.action, e.message, e.instance) for e in entries] == [("recover", "done", None),
                                                                      ("recover", "started", "h:1")]
    assert entries[0].at >= entries[1].at
    assert len(await store.audit_log()) == 3
    assert len(await store.audit_log(limit=1)) == 1


def test_store_file_is_usable_from_a_fresh_process(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    asyncio.run(SQLiteStateStore(path).publish(ClusterState("c1", "h:1", 1), None))
    code = (
        "import asyncio,sys\nfrom turnout.state import SQLiteStateStore\n"
        "print(asyncio.run(SQLiteStateStore(sys.argv[1]).get_cluster('c1')).master)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "h:1"
