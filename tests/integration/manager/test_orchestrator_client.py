"""orchestrator-client's requests, replayed against turnout's API on a real sandbox.

Each check sends the exact GET orchestrator-client sends for a command, handles the answer as
its `api` function does (an answer with "Code": "ERROR" is a failure printing Message), then
pipes it through the same jq filters (Debian's jq) and compares with what Orchestrator prints.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from turnout.api.app import serve
from turnout.manager.service import ManagerService
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

# orchestrator-client's filters, stage by stage as its shell functions pipe them.
PRINT_KEY = ("-r", '. | (.Hostname + ":" + (.Port | tostring))')
FILTER_KEY = (".Key",)
FILTER_MASTER_KEY = (".MasterKey",)
FILTER_KEYS = (".[] | .Key",)
FILTER_BROKEN = ('.[] | select((.ReplicationSQLThreadRuning == false or .ReplicationIOThreadRuning == false) '
                 'and (.LastSQLError != "" or .LastIOError != "")) | [.]',)
SUCCESSOR = (".SuccessorKey",)
RAW = ("-r", ".")


def jq(text: str, *stages: tuple[str, ...]) -> str:
    for stage in stages:
        done = subprocess.run(["jq", *stage], input=text, capture_output=True, text=True, check=True)
        text = done.stdout
    return text.strip()


class Client:
    """orchestrator-client's `api` function: GET, JSON or fail, ERROR answers exit 1."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def api(self, path: str) -> tuple[int, Any, int]:
        async with self.session.get(f"{self.url}/api/{path}") as answer:
            body = await answer.text()
            status = answer.status
        response = json.loads(body)  # the client retries, then gives up, on anything but JSON
        if isinstance(response, dict) and response.get("Code") == "ERROR":
            return 1, response, status
        return 0, response, status

    async def run(self, path: str, *stages: tuple[str, ...], details: bool = False) -> str:
        code, response, status = await self.api(path)
        assert code == 0, (path, status, response)
        source = response["Details"] if details else response
        return jq(json.dumps(source), *stages)

    async def fails(self, path: str) -> str:
        code, response, status = await self.api(path)
        assert code == 1 and status == 500, (path, status, response)
        assert set(response) == {"Code", "Message", "Details"}
        return str(response["Message"])


def hp(address: str) -> str:
    return address.replace(":", "/")


@pytest.fixture
async def client(make_sandbox: Any, make_manager: Any) -> AsyncIterator[tuple[Sandbox, ManagerService, Client]]:
    box: Sandbox = make_sandbox(replicas=3)
    service: ManagerService = await make_manager(box.nodes[0].address)
    port = free_port_block(1)
    runner = await serve(service, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            yield box, service, Client(session, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


async def replicating(box: Sandbox, node: int, timeout: float = 60) -> None:
    """Wait until both replication threads of `node` run (an IO thread connects after START SLAVE)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = box.replica_status(node)
        if status is not None and (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"node {node} is not replicating after {timeout:g}s: {box.replica_status(node)}")


def master_port(box: Sandbox, node: int) -> int | None:
    status = box.replica_status(node)
    return None if status is None else int(status["Master_Port"])


async def test_lookups_and_topology_operations(client: tuple[Sandbox, ManagerService, Client]) -> None:
    box, service, orc = client
    m, r1, r2, r3 = (n.address for n in box.nodes)
    alias = service.cluster_of[m]
    await service.wait_ticks(1)

    # ---- lookups ----------------------------------------------------------------------------------
    listed = (await orc.run("all-instances", FILTER_KEYS, PRINT_KEY)).splitlines()
    assert listed[0] == m and sorted(listed[1:]) == sorted([r1, r2, r3])
    assert await orc.run(f"cluster-info/{m}", ("-r", ".ClusterName")) == m
    assert await orc.run(f"cluster-info/{r2}", ("-r", ".ClusterAlias")) == alias
    assert await orc.run(f"master/{r3}", ("-r", ".ClusterName")) == m
    assert await orc.run(f"master/{alias}", FILTER_KEY, PRINT_KEY) == m
    assert await orc.run("masters", FILTER_KEYS, PRINT_KEY) == m
    assert (await orc.run(f"instance-replicas/{hp(m)}", FILTER_KEYS, PRINT_KEY)).splitlines() == [r1, r2, r3]
    assert await orc.run(f"instance-replicas/{hp(m)}", FILTER_BROKEN, FILTER_KEYS, PRINT_KEY) == ""
    assert await orc.run(f"instance/{hp(r1)}", FILTER_MASTER_KEY, PRINT_KEY) == m
    assert await orc.run(f"instance/{hp(r1)}", ("-r", ".GtidErrant")) == ""
    assert len((await orc.run(f"cluster/instance/{hp(r2)}", FILTER_KEYS, PRINT_KEY)).splitlines()) == 4
    search = urllib.parse.quote(r2, safe="")
    assert await orc.run(f"search?s={search}", FILTER_KEYS, PRINT_KEY) == r2
    assert await orc.run(f"cluster-osc-replicas/{alias}", FILTER_KEYS, PRINT_KEY) == f"{r1}\n{r2}"
    assert await orc.run(f"cluster-osc-slaves/{m}", FILTER_KEYS, PRINT_KEY) == f"{r1}\n{r2}"

    topology = (await orc.run(f"topology/{hp(m)}", ("-r", ".Details"))).splitlines()
    version = box.execute(0, "SELECT @@version AS v")[0]["v"]
    assert topology[0] == f"{m}   [0s,ok,{version},rw,ROW,>>,GTID]"
    assert sorted(topology[1:]) == [f"+ {k} [0s,ok,{version},ro,ROW,>>,GTID]" for k in (r1, r2, r3)]
    tabulated = (await orc.run(f"topology-tabulated/{alias}", ("-r", ".Details"))).splitlines()
    assert tabulated[0].split("|") == [f"{m}  ", "0s", "ok", version, "rw", "ROW", ">>,GTID"]
    tags = (await orc.run(f"topology-tags/{m}", ("-r", ".Details"))).splitlines()
    assert all(line.endswith(" []") for line in tags) and len(tags) == 4

    # ---- downtime, candidates -------------------------------------------------------------------------
    assert await orc.run(f"begin-downtime/{hp(r3)}/ops/patching/4w", PRINT_KEY, details=True) == r3
    assert await orc.run("downtimed/", FILTER_KEYS, PRINT_KEY) == r3  # the client's path without -i/-a
    assert await orc.run(f"downtimed/{alias}", FILTER_KEYS, PRINT_KEY) == r3
    assert "downtimed" in await orc.run(f"topology/{alias}", ("-r", ".Details"))
    assert await orc.fails(f"begin-downtime/{hp(r3)}/ops/patching/300") == "Cannot parse simple time: 300"
    assert await orc.run(f"end-downtime/{hp(r3)}", PRINT_KEY, details=True) == r3
    assert await orc.run("downtimed/", FILTER_KEYS, PRINT_KEY) == ""
    assert await orc.run(f"register-candidate/{hp(r2)}/prefer", PRINT_KEY, details=True) == r2
    assert await orc.run(f"instance/{hp(r2)}", ("-r", ".PromotionRule")) == "prefer"
    assert await orc.fails(f"register-candidate/{hp(r2)}/best") == "Invalid CandidatePromotionRule: best"

    # ---- replication threads and read_only ---------------------------------------------------------------
    assert await orc.run(f"stop-replica/{hp(r3)}", FILTER_KEY, PRINT_KEY, details=True) == r3
    status = box.replica_status(3)
    assert status is not None and (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("No", "No")
    assert await orc.run(f"instance/{hp(r3)}", ("-r", ".ReplicationIOThreadState")) == "0"
    assert await orc.run(f"start-slave/{hp(r3)}", FILTER_KEY, PRINT_KEY, details=True) == r3
    status = box.replica_status(3)
    assert status is not None and status["Slave_SQL_Running"] == "Yes"
    assert (await orc.fails(f"stop-replica/{hp(m)}")).startswith("instance is not a replica")
    assert await orc.run(f"set-writeable/{hp(r3)}", FILTER_KEY, PRINT_KEY, details=True) == r3
    assert box.execute(3, "SELECT @@read_only AS ro")[0]["ro"] == 0
    assert await orc.run(f"set-read-only/{hp(r3)}", ("-r", ".ReadOnly"), details=True) == "true"
    assert box.execute(3, "SELECT @@read_only AS ro")[0]["ro"] == 1

    # ---- moving replicas (GTID) ----------------------------------------------------------------------------
    box.execute(0, "CREATE DATABASE t", "CREATE TABLE t.x (id INT AUTO_INCREMENT PRIMARY KEY)",
                *("INSERT INTO t.x VALUES ()" for _ in range(10)))

    async def relocated(command: str, instance: str, destination: str = "") -> str:
        """general_relocate_command: one request, KEY<MASTERKEY from its Details."""
        path = f"{command}/{hp(instance)}" + (f"/{hp(destination)}" if destination else "")
        code, response, _ = await orc.api(path)
        assert code == 0, response
        details = json.dumps(response["Details"])
        return f"{jq(details, FILTER_KEY, PRINT_KEY)}<{jq(details, FILTER_MASTER_KEY, PRINT_KEY)}"

    assert await relocated("move-below", r3, r2) == f"{r3}<{r2}"
    assert master_port(box, 3) == box.nodes[2].port
    # the move restarted r3's replication: once its IO thread has connected, a round of the
    # manager's discovery that began after that shows it replicating ("+"), not "-"
    await replicating(box, 3)
    await service.wait_ticks(2)
    lines = (await orc.run(f"topology/{alias}", ("-r", ".Details"))).splitlines()
    assert any(line.startswith(f"  + {r3} ") for line in lines), lines  # two levels deep
    assert "makes a cycle" in await orc.fails(f"move-gtid/{hp(r2)}/{hp(r3)}")
    assert (await orc.fails(f"move-below/{hp(r1)}/{hp(r3)}")).startswith("instances are not siblings")
    assert await relocated("move-gtid", r3, m) == f"{r3}<{m}"
    assert master_port(box, 3) == box.nodes[0].port
    assert await relocated("relocate", r3, r1) == f"{r3}<{r1}"
    assert await relocated("move-up", r3) == f"{r3}<{m}"
    moved = await orc.run(f"relocate-replicas/{hp(m)}/{hp(r1)}", FILTER_KEYS, PRINT_KEY, details=True)
    assert moved.splitlines() == [r2, r3]
    assert (master_port(box, 2), master_port(box, 3)) == (box.nodes[1].port, box.nodes[1].port)
    moved = await orc.run(f"relocate-slaves/{hp(r1)}/{hp(m)}", FILTER_KEYS, PRINT_KEY, details=True)
    assert moved.splitlines() == [r2, r3]
    box.execute(0, "INSERT INTO t.x VALUES ()")
    box.wait_replicas_caught_up()
    for node in (1, 2, 3):
        assert box.execute(node, "SELECT COUNT(*) AS n FROM t.x")[0]["n"] == 11
    audit = {e["AuditType"] for e in json.loads(await orc.run("audit?limit=500", ("-c", ".")))}
    assert {"move-below", "move-gtid", "relocate", "move-up", "relocate-replicas", "stop-replica",
            "set-writeable", "register-candidate"} <= audit

    # An errant transaction on a replica: shown, and it may not be moved.
    box.execute(3, "SET sql_log_bin = 1", "SET gtid_domain_id = 9", "INSERT INTO t.x VALUES ()")
    await service.wait_ticks(2)  # a round that began before the insert may end after it
    assert (await orc.run(f"instance/{hp(r3)}", ("-r", ".GtidErrant"))).startswith("9-")
    assert "GTID:errant" in await orc.run(f"topology/{alias}", ("-r", ".Details"))
    assert "errant transactions" in await orc.fails(f"relocate/{hp(r3)}/{hp(r1)}")

    # ---- switches ---------------------------------------------------------------------------------------------
    assert await orc.run("disable-global-recoveries", RAW, details=True) == "disabled"
    assert await orc.run("check-global-recoveries", RAW, details=True) == "disabled"
    assert await orc.run("enable-global-recoveries", RAW, details=True) == "enabled"
    assert await orc.run("check-global-recoveries", RAW, details=True) == "enabled"
    assert await orc.run("raft-health", RAW) == "healthy"
    assert await orc.run("status", ("-r", ".Hostname"), details=True) == service.owner

    # ---- unknown paths answer JSON -------------------------------------------------------------------------
    code, body, status_code = await orc.api("no-such-command/x")
    assert (code, status_code, body["Code"]) == (1, 404, "ERROR")


async def test_takeovers_failovers_and_cluster_naming(client: tuple[Sandbox, ManagerService, Client]) -> None:
    box, service, orc = client
    m, r1, r2, r3 = (n.address for n in box.nodes)
    alias = service.cluster_of[m]
    box.execute(0, "CREATE DATABASE t", "CREATE TABLE t.x (id INT AUTO_INCREMENT PRIMARY KEY)")
    box.wait_replicas_caught_up()

    message = await orc.fails(f"graceful-master-takeover/{alias}")
    assert "target instance not indicated" in message and "has 3 replicas" in message
    path = f"graceful-master-takeover-auto/{hp(m)}/{hp(r1)}"
    assert await orc.run(path, SUCCESSOR, PRINT_KEY, details=True) == r1
    assert master_port(box, 0) == box.nodes[1].port
    box.execute(1, "INSERT INTO t.x VALUES ()")
    box.wait_replicas_caught_up()
    # Orchestrator names a cluster after its master; the alias stays.
    assert await orc.run(f"cluster-info/{r2}", ("-r", ".ClusterName")) == r1
    assert await orc.run(f"cluster-info/alias/{alias}", ("-r", ".ClusterAlias")) == alias
    assert await orc.run("clusters-info", ("-r", '.[] | (.ClusterName + "," + .ClusterAlias)')) == f"{r1},{alias}"
    assert await orc.run(f"master/{alias}", ("-r", ".ClusterName")) == r1

    # force-master-takeover: r1 is discarded (read_only, fenced), r2 promoted.
    assert "You may only promote a direct child" in await orc.fails(f"force-master-takeover/{alias}/{hp(r1)}")
    promoted = await orc.run(f"force-master-takeover/{alias}/{hp(r2)}", SUCCESSOR, PRINT_KEY, details=True)
    assert promoted == r2
    assert box.execute(2, "SELECT @@read_only AS ro")[0]["ro"] == 0
    assert box.execute(1, "SELECT @@read_only AS ro")[0]["ro"] == 1
    assert await orc.run(f"instance/{hp(r1)}", ("-r", ".IsFenced")) == "true"
    assert await orc.run(f"cluster-info/{alias}", ("-r", ".ClusterName")) == r2
    assert "is fenced" in await orc.fails(f"set-writeable/{hp(r1)}")

    # force-master-failover picks the replica itself.
    successor = await orc.run(f"force-master-failover/{hp(r2)}", SUCCESSOR, PRINT_KEY, details=True)
    assert successor in (m, r3)
    assert await orc.run(f"master/{alias}", ("-r", ".ClusterName")) == successor
    index = [n.address for n in box.nodes].index(successor)
    box.execute(index, "INSERT INTO t.x VALUES ()")
    other = 3 if successor == m else 0
    box.wait_replicas_caught_up()
    assert box.execute(other, "SELECT COUNT(*) AS n FROM t.x")[0]["n"] == 2

    # Acknowledging needs a comment, as in Orchestrator.
    assert await orc.fails(f"ack-recovery/cluster/alias/{alias}") == "No acknowledge comment given"
    acked = await orc.run(f"ack-recovery/cluster/alias/{alias}?comment=checked", RAW, details=True)
    assert acked == successor
    assert await orc.fails("ack-all-recoveries") == "No acknowledge comment given"
    assert await orc.run("ack-all-recoveries?comment=all%20good", RAW, details=True) == "all good"
    recoveries = json.loads(await orc.run("audit-recovery", ("-c", ".")))
    assert len(recoveries) == 2 and all(r["Acknowledged"] for r in recoveries)

    # forget-cluster
    code, body, _ = await orc.api(f"forget-cluster/{alias}")
    assert code == 0 and body["Message"] == f"Cluster forgotten: {successor}"
    assert await orc.run("clusters", RAW) == "[]"


async def test_failover_after_a_plain_takeover_keeps_the_stopped_former_master(
    client: tuple[Sandbox, ManagerService, Client],
) -> None:
    """A plain takeover leaves the old master replicating from the new one, stopped, its own writes
    only in its binlog; a failover then re-points it, and it must resume after them."""
    box, service, orc = client
    m, r1, r2, _ = (n.address for n in box.nodes)
    alias = service.cluster_of[m]
    box.execute(0, "CREATE DATABASE t", "CREATE TABLE t.x (id INT AUTO_INCREMENT PRIMARY KEY)",
                *("INSERT INTO t.x VALUES ()" for _ in range(5)))
    box.wait_replicas_caught_up()
    assert await orc.run(f"graceful-master-takeover/{alias}/{hp(r1)}", SUCCESSOR, PRINT_KEY, details=True) == r1
    status = box.replica_status(0)
    assert status is not None and status["Slave_SQL_Running"] == "No"
    assert await orc.run(f"force-master-takeover/{alias}/{hp(r2)}", SUCCESSOR, PRINT_KEY, details=True) == r2
    box.execute(2, "INSERT INTO t.x VALUES ()")
    box.wait_replicas_caught_up()
    status = box.replica_status(0)
    assert status is not None and int(status["Master_Port"]) == box.nodes[2].port
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"], status["Last_SQL_Error"]) == ("Yes", "Yes", "")
    assert box.execute(0, "SELECT COUNT(*) AS n FROM t.x")[0]["n"] == 6
