"""The etcd store on a real 3-member cluster, each member on a lab host of its own.

A member down changes nothing; reads are linearizable (a member cut off from the others answers
nothing rather than something stale); with quorum lost every call is an error, never an empty
answer; a watch follows the cluster through another member when its own member is cut off.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from turnout.sandbox.etcd_members import EtcdMembers
from turnout.sandbox.lab import Lab, missing_tools
from turnout.state import ClusterState, open_store
from turnout.state.etcd import EtcdStateStore, EtcdUnavailable

pytestmark = pytest.mark.netns

TIMEOUT = 5.0  # each store call answers or fails within this (an election on a loaded machine fits)


class Cluster:
    def __init__(self, lab: Lab, members: EtcdMembers) -> None:
        self.lab = lab
        self.members = members
        self.prefix = ""
        self.stores: list[EtcdStateStore] = []

    def store(self, *indexes: int, check_every: float = 2.0, timeout: float = TIMEOUT) -> EtcdStateStore:
        """A store on the members `indexes`, in that order (all three by default)."""
        chosen = indexes or tuple(range(3))
        made = EtcdStateStore([self.members.endpoint(i) for i in chosen], prefix=self.prefix, timeout=timeout,
                              check_every=check_every)
        self.stores.append(made)
        return made

    def leader(self) -> int:
        """The member that leads now (asked of every running member until they agree)."""
        while True:
            leaders = set()
            ids = {}
            for index in range(3):
                if self.members.pid(index) is None:
                    continue
                try:
                    request = urllib.request.Request(self.members.endpoint(index) + "/v3/maintenance/status",
                                                     data=b"{}", method="POST")
                    with urllib.request.urlopen(request, timeout=2) as resp:
                        status = json.load(resp)
                except OSError:
                    continue
                ids[status["header"]["member_id"]] = index
                leaders.add(status.get("leader"))
            if len(leaders) == 1 and (leader := leaders.pop()) in ids:
                return ids[leader]


@pytest.fixture(scope="module")
def etcd_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = missing_tools()
    if missing:
        pytest.fail("the lab tests need " + "; ".join(missing))
    directory = tmp_path_factory.mktemp("etcd-lab")
    lab = Lab.create(directory, ["etcd0", "etcd1", "etcd2", "client"])
    members = EtcdMembers(lab, directory, 3)
    try:
        members.start_all()
        yield Cluster(lab, members)
    finally:
        try:
            for index in range(3):
                members.kill(index)  # throwaway data: no need to wait for a leader to hand over
        finally:
            lab.down()


@pytest.fixture
async def cluster(etcd_lab: Cluster) -> AsyncIterator[Cluster]:
    """The module's cluster, every member up, no partition, a fresh key prefix."""
    etcd_lab.lab.heal()
    for index in range(3):
        etcd_lab.members.resume(index)
        etcd_lab.members.start(index, wait=False)
    etcd_lab.members.wait_healthy(range(3))
    etcd_lab.prefix = f"/test-{uuid.uuid4().hex[:12]}"
    try:
        yield etcd_lab
    finally:
        for store in etcd_lab.stores:
            await store.close()
        etcd_lab.stores.clear()


async def test_the_store_url_opens_every_member(cluster: Cluster) -> None:
    url = cluster.members.store_url(cluster.prefix)
    assert url.count(":2379") == 3 and url.startswith("etcd://")
    store = open_store(url)
    assert isinstance(store, EtcdStateStore)
    cluster.stores.append(store)
    assert store.endpoints == cluster.members.endpoints
    assert await store.publish(ClusterState("c1", "10.0.0.1:3306", epoch=1), None)
    for index in range(3):  # what one member was told, every member answers
        assert (await cluster.store(index).get_cluster("c1")) == (await store.get_cluster("c1"))


@pytest.mark.parametrize("victim", ["leader", "follower"])
async def test_a_member_down_changes_nothing(cluster: Cluster, victim: str) -> None:
    leader = cluster.leader()
    index = leader if victim == "leader" else (leader + 1) % 3
    store = cluster.store(index, (index + 1) % 3, (index + 2) % 3)  # the victim is tried first
    assert await store.publish(ClusterState("c1", "m:1", epoch=1), None)
    assert await store.acquire_lease("turnout-manager", "mgr-1", 5)
    events = store.watch()
    assert (await anext(events)).epoch == 1

    cluster.members.kill(index)

    got = await store.get_cluster("c1")
    assert got is not None and (got.master, got.epoch) == ("m:1", 1)
    promoted = ClusterState("c1", "m:2", epoch=2)
    assert await store.publish(promoted, 1)
    assert not await store.publish(ClusterState("c1", "m:3", epoch=2), 1), "compare-and-set still holds"
    assert (await anext(events)) == promoted
    assert await store.acquire_lease("turnout-manager", "mgr-1", 5), "the lease is renewed"
    assert not await store.acquire_lease("turnout-manager", "mgr-2", 5)
    assert await store.lease_owner("turnout-manager") == "mgr-1"
    await store.audit("c1", "test", "written with a member down")
    assert [e.message for e in await store.audit_log("c1")] == ["written with a member down"]
    assert [c.name for c in await store.clusters()] == ["c1"]
    await events.aclose()


async def test_quorum_lost_is_an_error_never_an_empty_answer(cluster: Cluster) -> None:
    store = cluster.store(timeout=0.5)
    assert await store.publish(ClusterState("c1", "m:1", epoch=1), None)
    await store.put_instance("m:1", "c1", {"read_only": False})
    await store.fence("m:9", "c1", "test")
    assert await store.acquire_lease("turnout-manager", "mgr-1", 30)

    cluster.members.kill(1)
    cluster.members.kill(2)

    calls = {
        "get_cluster (existing)": store.get_cluster("c1"),
        "get_cluster (absent)": store.get_cluster("nope"),
        "clusters": store.clusters(),
        "instances": store.instances(),
        "fenced": store.fenced(),
        "downtimes": store.downtimes(),
        "lease_owner": store.lease_owner("turnout-manager"),
        "acquire_lease (renew)": store.acquire_lease("turnout-manager", "mgr-1", 30),
        "acquire_lease (other)": store.acquire_lease("turnout-manager", "mgr-2", 30),
        "publish": store.publish(ClusterState("c1", "m:2", epoch=2), 1),
        "audit": store.audit("c1", "test", "lost"),
        "recoveries": store.recoveries(),
    }
    for name, call in calls.items():
        try:
            answer = await call
        except EtcdUnavailable as exc:
            assert "cannot reach etcd" in str(exc)
            continue
        pytest.fail(f"{name} answered {answer!r} with quorum lost")

    events = store.watch()
    with pytest.raises(EtcdUnavailable):
        await anext(events)  # a watch that cannot read even once says so

    cluster.members.start(1)  # quorum again: the state is all there
    got = await store.get_cluster("c1")
    assert got is not None and (got.master, got.epoch) == ("m:1", 1)
    assert await store.lease_owner("turnout-manager") == "mgr-1"


async def test_a_member_cut_off_from_the_others_serves_no_stale_read(cluster: Cluster) -> None:
    writer = cluster.store()
    assert await writer.publish(ClusterState("c1", "m:1", epoch=1), None)
    isolated = cluster.store(0, timeout=1.0)
    assert (await isolated.get_cluster("c1")).epoch == 1  # type: ignore[union-attr]

    cluster.lab.partition(["etcd0", "etcd1,etcd2"])  # this process (the root namespace) reaches all three
    assert await cluster.store(1, 2).publish(ClusterState("c1", "m:2", epoch=2), 1)

    # etcd0 runs and answers HTTP, but holds epoch 1: it must not hand it out.
    with pytest.raises(EtcdUnavailable):
        await isolated.get_cluster("c1")
    with pytest.raises(EtcdUnavailable):
        await isolated.clusters()
    with pytest.raises(EtcdUnavailable):
        await isolated.get_cluster("absent")  # nor answer "no such cluster"
    while True:  # once it notices it lost its leader, it refuses at once (the hasleader metadata)
        try:
            await isolated.get_cluster("c1")
        except EtcdUnavailable as exc:
            if "no leader" in str(exc):
                break
    # A store that knows every member reads the truth, even when it tries etcd0 first.
    failing_over = cluster.store(0, 1, 2)
    got = await failing_over.get_cluster("c1")
    assert got is not None and (got.master, got.epoch) == ("m:2", 2)

    cluster.lab.heal()
    while True:  # etcd0 catches up once it hears from the leader again
        try:
            got = await isolated.get_cluster("c1")
            break
        except EtcdUnavailable:
            continue
    assert got is not None and got.epoch == 2


async def test_a_watch_moves_to_another_member_when_its_member_loses_the_cluster(cluster: Cluster) -> None:
    watcher = cluster.store(0, 1, 2, check_every=1.0)
    writer = cluster.store(1, 2)
    assert await writer.publish(ClusterState("c1", "m:1", epoch=1), None)
    events = watcher.watch()
    assert (await anext(events)).epoch == 1  # the stream is on etcd0, tried first

    cluster.lab.partition(["etcd0", "etcd1,etcd2"])
    promoted = ClusterState("c1", "m:2", epoch=2)
    assert await writer.publish(promoted, 1)

    assert await asyncio.wait_for(anext(events), 60) == promoted
    await events.aclose()


WATCH_FROM_HOST = """
import asyncio, json, sys
from turnout.state.etcd import EtcdStateStore

async def main():
    store = EtcdStateStore(sys.argv[1].split(","), prefix=sys.argv[2], timeout=3, check_every=1)
    events = store.watch()
    print(json.dumps({"watched": (await anext(events)).epoch}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    state = await anext(events)
    print(json.dumps({"watched": state.epoch}), flush=True)
    got = await store.get_cluster("c1")
    print(json.dumps({"read": got.epoch, "published": await store.publish(got.evolve(epoch=3), 2)}), flush=True)
    await events.aclose()
    await store.close()

asyncio.run(main())
"""


def test_a_client_cut_off_from_one_member_fails_over(cluster: Cluster) -> None:
    """On a host whose path to etcd0 is cut (packets dropped: no error, ever), the store carries on."""

    async def publish(state: ClusterState, expected: int | None) -> bool:
        store = EtcdStateStore(cluster.members.endpoints[1:], prefix=cluster.prefix, timeout=TIMEOUT)
        try:
            return await store.publish(state, expected)
        finally:
            await store.close()

    assert asyncio.run(publish(ClusterState("c1", "m:1", epoch=1), None))
    client = subprocess.Popen(
        cluster.lab.command("client", [sys.executable, "-c", WATCH_FROM_HOST, ",".join(cluster.members.endpoints),
                                       cluster.prefix]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdin is not None
        assert json.loads(client.stdout.readline()) == {"watched": 1}  # its stream is on etcd0
        cluster.lab.partition(["client", "etcd0"])  # etcd0 stays in the cluster: only this path is cut
        assert asyncio.run(publish(ClusterState("c1", "m:2", epoch=2), 1))
        out, err = client.communicate("go\n", timeout=120)
    finally:
        client.kill()
        client.wait()
    assert [json.loads(line) for line in out.splitlines()] == [
        {"watched": 2}, {"read": 2, "published": True}], err
