"""What only the etcd backend has: its key layout and etcd leases, several endpoints, clear errors
when etcd cannot be reached, and a watch that outlives an etcd restart.

The behaviour both backends share is in test_store_scenarios.py, run against a real etcd too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from integration.state.etcd_harness import EtcdServer
from turnout.sandbox.ports import free_port_block
from turnout.state import ClusterState, open_store
from turnout.state.etcd import EtcdError, EtcdStateStore, EtcdUnavailable


async def raw(endpoint: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(endpoint + path, json=body) as resp:
        data: dict[str, Any] = await resp.json(content_type=None)
        return data


async def raw_keys(endpoint: str, prefix: str) -> dict[str, dict[str, Any]]:
    start = prefix.encode()
    end = start[:-1] + bytes([start[-1] + 1])
    data = await raw(endpoint, "/v3/kv/range", {"key": base64.b64encode(start).decode(),
                                                "range_end": base64.b64encode(end).decode()})
    return {base64.b64decode(kv["key"]).decode(): kv for kv in data.get("kvs", [])}


@pytest.fixture
async def store(etcd_server: EtcdServer) -> AsyncIterator[EtcdStateStore]:
    made = EtcdStateStore([etcd_server.endpoint], prefix=f"/etcd-{uuid.uuid4().hex[:10]}")
    try:
        yield made
    finally:
        await made.close()


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port_block(1)}"


async def test_one_key_per_record_under_the_prefix(etcd_server: EtcdServer, store: EtcdStateStore) -> None:
    await store.publish(ClusterState("c/1", "h:1", epoch=4, members=("h:1",)), None)
    await store.put_instance("h:1", "c/1", {"server_id": 7})
    await store.fence("h:2", "c/1", "old master")
    await store.begin_downtime("h:3", "ops", "disk", 60)
    rid = await store.start_recovery("c/1", "DeadMaster", "h:2", manual=False)
    await store.audit("c/1", "recover", "started")
    keys = await raw_keys(etcd_server.endpoint, store.prefix + "/")
    p = store.prefix
    assert sorted(keys) == sorted([
        f"{p}/clusters/c%2F1", f"{p}/instances/h%3A1", f"{p}/fences/h%3A2", f"{p}/downtimes/h%3A3",
        f"{p}/recoveries/{rid:020d}", f"{p}/audit/{1:020d}", f"{p}/counters/recoveries", f"{p}/counters/audit",
    ])
    cluster = json.loads(base64.b64decode(keys[f"{p}/clusters/c%2F1"]["value"]))
    assert (cluster["master"], cluster["epoch"], cluster["members"]) == ("h:1", 4, ["h:1"])


async def test_prefixes_keep_stores_apart(etcd_server: EtcdServer) -> None:
    a = open_store(f"etcd://127.0.0.1:{etcd_server.client_port}/team-a-{uuid.uuid4().hex[:6]}")
    b = open_store(f"etcd://127.0.0.1:{etcd_server.client_port}/team-b-{uuid.uuid4().hex[:6]}")
    try:
        assert await a.publish(ClusterState("c1", "h:1", 1), None)
        assert await b.publish(ClusterState("c1", "x:1", 1), None), "the same name in another prefix is new"
        assert await a.acquire_lease("leader", "m1", 30)
        assert await b.acquire_lease("leader", "m2", 30)
        assert [(c.name, c.master) for c in await a.clusters()] == [("c1", "h:1")]
        assert [(c.name, c.master) for c in await b.clusters()] == [("c1", "x:1")]
    finally:
        await a.close()
        await b.close()


async def test_a_lease_is_an_etcd_lease_renewed_in_place(etcd_server: EtcdServer, store: EtcdStateStore) -> None:
    key = f"{store.prefix}/leases/leader"
    assert await store.acquire_lease("leader", "m1", ttl=30)
    first = int((await raw_keys(etcd_server.endpoint, key))[key]["lease"])
    assert first != 0, "the key lives on an etcd lease, so it disappears when the owner stops renewing"
    assert await store.renew_lease("leader", "m1", ttl=30)
    assert int((await raw_keys(etcd_server.endpoint, key))[key]["lease"]) == first, "kept alive, not replaced"
    assert await store.renew_lease("leader", "m1", ttl=20)
    second = int((await raw_keys(etcd_server.endpoint, key))[key]["lease"])
    assert second != first, "another TTL needs another etcd lease"
    old = await raw(etcd_server.endpoint, "/v3/lease/timetolive", {"ID": first})
    assert int(old.get("TTL", -1)) == -1, "the replaced etcd lease is revoked"
    await store.release_lease("leader", "m1")
    assert await raw_keys(etcd_server.endpoint, key) == {}
    gone = await raw(etcd_server.endpoint, "/v3/lease/timetolive", {"ID": second})
    assert int(gone.get("TTL", -1)) == -1, "releasing revokes the etcd lease"


async def test_unreachable_etcd_names_the_endpoint_and_what_to_do() -> None:
    endpoint = dead_endpoint()
    store = EtcdStateStore(endpoint, timeout=2)
    try:
        with pytest.raises(EtcdUnavailable) as caught:
            await store.get_cluster("c1")
        message = str(caught.value)
        assert endpoint in message
        assert "start etcd" in message and "etcd://" in message
        with pytest.raises(EtcdUnavailable, match="cannot reach etcd"):
            await anext(aiter(store.watch()))
    finally:
        await store.close()


async def test_the_next_endpoint_is_tried_when_one_is_down(etcd_server: EtcdServer) -> None:
    dead = dead_endpoint().removeprefix("http://")
    store = open_store(f"etcd://{dead},127.0.0.1:{etcd_server.client_port}/multi-{uuid.uuid4().hex[:6]}")
    other = EtcdStateStore([etcd_server.endpoint, f"http://{dead}"], prefix=getattr(store, "prefix", ""))
    try:
        assert await store.publish(ClusterState("c1", "h:1", 1), None)
        assert await store.acquire_lease("leader", "m1", 30)
        got = await other.get_cluster("c1")
        assert got is not None and got.master == "h:1"
        seen = await asyncio.wait_for(anext(aiter(store.watch())), timeout=30)
        assert seen.master == "h:1"
    finally:
        await store.close()
        await other.close()


async def test_something_else_than_etcd_is_reported_as_such() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>not etcd</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port_block(1)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    store = EtcdStateStore(f"127.0.0.1:{port}")
    try:
        with pytest.raises(EtcdError, match="not etcd's v3 JSON gateway"):
            await store.clusters()
    finally:
        await store.close()
        await runner.cleanup()


async def test_watch_outlives_an_etcd_restart(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="turnout.state.etcd")
    server = EtcdServer(tmp_path / "member", free_port_block(2))
    server.start()
    watcher_store = EtcdStateStore(server.endpoint, prefix="/restart")
    writer = EtcdStateStore(server.endpoint, prefix="/restart")
    seen: list[ClusterState] = []

    async def follow() -> None:
        async for state in watcher_store.watch(interval=0.05):
            seen.append(state)
            if state.epoch == 3:
                return

    try:
        assert await writer.publish(ClusterState("c1", "h:1", epoch=1), None)
        watcher = asyncio.create_task(follow())
        while not seen:
            await asyncio.sleep(0.01)
        assert await writer.publish(ClusterState("c1", "h:2", epoch=2), 1)
        while len(seen) < 2:  # through the stream
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.stop)  # the stream breaks; the watcher keeps reading
        await asyncio.to_thread(server.start)
        assert await writer.publish(ClusterState("c1", "h:3", epoch=3), 2)
        await asyncio.wait_for(watcher, timeout=30)
        assert [(s.master, s.epoch) for s in seen] == [("h:1", 1), ("h:2", 2), ("h:3", 3)]
        messages = [r.getMessage() for r in caplog.records]
        assert sum("reading the clusters every" in m for m in messages) == 1, "warned once, not per read"
        assert any("stream back" in m for m in messages)
    finally:
        await watcher_store.close()
        await writer.close()
        server.stop()


class LosesTheFirstTxnAnswer(EtcdStateStore):
    """A transport fault: the first compare-and-set is applied by etcd, its answer lost, and the
    request sent again (to another member, as `_request` does), which then sees its own write."""

    lost = False

    async def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> bool:
        if not self.lost:
            self.lost = True
            assert await super()._txn(compare, success), "the first attempt is applied"
        return await super()._txn(compare, success)


async def test_a_publish_whose_answer_was_lost_is_not_reported_lost(etcd_server: EtcdServer) -> None:
    prefix = f"/lost-{uuid.uuid4().hex[:8]}"
    store = LosesTheFirstTxnAnswer([etcd_server.endpoint], prefix=prefix)
    try:
        assert await store.publish(ClusterState("c1", "h:1", 1), None)
        assert store.lost
        store.lost = False
        assert await store.publish(ClusterState("c1", "h:2", 2), 1), "the promotion won: it must say so"
        got = await store.get_cluster("c1")
        assert got is not None and (got.master, got.epoch) == ("h:2", 2)
        assert not await store.publish(ClusterState("c1", "h:3", 2), 1), "a real loss is still a loss"
    finally:
        await store.close()


async def test_an_audit_entry_whose_answer_was_lost_is_written_once(etcd_server: EtcdServer) -> None:
    store = LosesTheFirstTxnAnswer([etcd_server.endpoint], prefix=f"/lost-{uuid.uuid4().hex[:8]}")
    try:
        await store.audit("c1", "test", "once")
        recovery = await store.start_recovery("c1", "DeadMaster", "h:1", manual=False)
        assert [e.message for e in await store.audit_log("c1")] == ["once"]
        assert recovery == 1 and [r.id for r in await store.recoveries("c1")] == [1]
    finally:
        await store.close()


async def test_proxies_register_on_leases_of_their_own(etcd_server: EtcdServer, store: EtcdStateStore) -> None:
    other = EtcdStateStore([etcd_server.endpoint], prefix=store.prefix)
    try:
        assert store.shares_proxies
        await store.register_proxy("p1", "h1:6033", ttl=30)
        await other.register_proxy("p2", "h2:6033", ttl=2)
        seen = {p.id: p for p in await store.proxies()}
        assert set(seen) == {"p1", "p2"} and seen["p1"].address == "h1:6033" and seen["p1"].acks == {}
        assert await store.ack_proxy("p1", {"c1": (3, "promoting"), "c2": (1, "stable")})
        [p1] = [p for p in await other.proxies() if p.id == "p1"]
        assert p1.acks == {"c1": (3, "promoting"), "c2": (1, "stable")}
        assert await store.renew_proxy("p1")
        key = f"{store.prefix}/proxies/p1"
        assert int((await raw_keys(etcd_server.endpoint, key))[key]["lease"]) != 0
        # p2 stops renewing: etcd deletes its record when its lease runs out, and it learns so.
        deadline = time.monotonic() + 30
        while "p2" in {p.id for p in await store.proxies()}:
            assert time.monotonic() < deadline, "p2's lease never expired"
            await asyncio.sleep(0.2)
        assert not await other.renew_proxy("p2")
        assert not await other.ack_proxy("p2", {"c1": (3, "stable")})
        await other.register_proxy("p2", "h2:6033", ttl=30)
        assert {p.id for p in await store.proxies()} == {"p1", "p2"}
        await store.deregister_proxy("p1")
        assert [p.id for p in await other.proxies()] == ["p2"]
        assert not await store.renew_proxy("p1")
    finally:
        await other.close()
