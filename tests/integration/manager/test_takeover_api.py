"""Graceful takeovers through the CLI and the HTTP API, the way orchestrator-client is used."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pymysql
import pytest

from turnout.api.app import serve
from turnout.manager.service import ManagerService
from turnout.sandbox.config import APP
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture
async def api(fresh_sandbox: Sandbox, make_manager: Any) -> AsyncIterator[tuple[ManagerService, str]]:
    service: ManagerService = await make_manager(fresh_sandbox.nodes[0].address)
    port = free_port_block(1)
    runner = await serve(service, "127.0.0.1", port)
    try:
        yield service, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def cli(api_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout.cli", *args, env={**os.environ, "TURNOUT_API": api_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def get(session: aiohttp.ClientSession, url: str, status: int = 200) -> Any:
    async with session.get(url) as answer:
        body = await answer.json()
        assert answer.status == status, body
        return body


class Writer(threading.Thread):
    """Inserts through the app account (no read_only bypass) until stopped; counts acknowledged rows."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.acked, self.failed = port, 0, 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user=APP.user, password=APP.password,
                               autocommit=True, connect_timeout=2, read_timeout=10)
        with conn:
            while not self.stop_event.is_set():
                try:
                    conn.cursor().execute("INSERT INTO t.x (v) VALUES (1)")
                    self.acked += 1
                except pymysql.err.MySQLError:
                    self.failed += 1
                    self.stop_event.wait(0.01)


def gtid(box: Sandbox, node: int, var: str = "gtid_binlog_pos") -> str:
    return str(box.execute(node, f"SELECT @@{var} AS p")[0]["p"])


async def test_takeovers_and_orchestrator_client_calls(fresh_sandbox: Sandbox, api: tuple[ManagerService, str]) -> None:
    box = fresh_sandbox
    service, url = api
    m, r1, r2 = (n.address for n in box.nodes)
    box.execute(0, "CREATE DATABASE t", "CREATE TABLE t.x (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    box.wait_replicas_caught_up()
    name = service.cluster_of[m]

    # ---- plain graceful takeover through the CLI while an application writes --------------------
    writer = Writer(box.nodes[0].port)
    writer.start()
    while writer.acked < 50:
        await asyncio.sleep(0.05)
    code, out, err = await cli(url, "graceful-master-takeover", "-i", m, "-d", r1)
    writer.stop_event.set()
    writer.join()
    assert code == 0, err
    assert f"{r1} is the new master" in out
    assert writer.failed > 0, "writes after read_only=ON are refused, never silently lost"
    rows = int(box.execute(1, "SELECT COUNT(*) AS n FROM t.x")[0]["n"])
    assert rows == writer.acked
    assert box.execute(1, "SELECT @@read_only AS ro")[0]["ro"] == 0
    assert box.replica_status(1) is None
    old = box.replica_status(0)
    assert old is not None and int(old["Master_Port"]) == box.nodes[1].port
    assert (old["Slave_IO_Running"], old["Slave_SQL_Running"]) == ("No", "No"), "plain takeover leaves it stopped"
    r2_status = box.replica_status(2)
    assert r2_status is not None and int(r2_status["Master_Port"]) == box.nodes[1].port
    # Everything the old master wrote is in the new master's binlog.
    old_pos = gtid(box, 0)
    new_pos = gtid(box, 1)
    assert int(new_pos.split("-")[-1]) >= int(old_pos.split("-")[-1])
    state = await service.store.get_cluster(name)
    assert state is not None and (state.master, state.epoch, state.phase) == (r1, 2, "stable")

    async with aiohttp.ClientSession() as session:
        # ---- auto takeover through the API: r1 -> r2, r1 keeps replicating ------------------------
        box.execute(1, *(f"INSERT INTO t.x (v) VALUES ({i})" for i in range(20)))
        body = await get(session, f"{url}/api/graceful-master-takeover-auto/{name}/127.0.0.1/{box.nodes[2].port}")
        assert body["Code"] == "OK" and body["Details"]["SuccessorKey"]["Port"] == box.nodes[2].port
        assert body["Details"]["Epoch"] == 3
        status = box.replica_status(1)
        assert status is not None and int(status["Master_Port"]) == box.nodes[2].port
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
        expected = writer.acked + 20
        assert int(box.execute(2, "SELECT COUNT(*) AS n FROM t.x")[0]["n"]) == expected
        box.execute(2, "INSERT INTO t.x (v) VALUES (-1)")
        box.wait_replicas_caught_up()
        for node in (0, 1):
            assert int(box.execute(node, "SELECT COUNT(*) AS n FROM t.x")[0]["n"]) == expected + 1
        await service.wait_ticks(1)

        # ---- refusals --------------------------------------------------------------------------------
        body = await get(session, f"{url}/api/graceful-master-takeover/{name}/127.0.0.1/1", status=500)
        assert body["Code"] == "ERROR" and "not a known instance" in body["Message"]
        # An errant transaction on r1 (a replica of r2 now) makes it unsafe to promote.
        box.execute(1, "SET gtid_domain_id = 7", "INSERT INTO t.x (v) VALUES (-7)")
        await service.wait_ticks(1)
        code, out, err = await cli(url, "graceful-master-takeover", "-i", r2, "-d", r1)
        assert code == 1 and "errant transactions" in err and "7-2-1" in err
        assert (await service.store.get_cluster(name)).epoch == 3  # type: ignore[union-attr]

        # ---- what orchestrator-client asks most ------------------------------------------------------
        assert await get(session, f"{url}/api/clusters") == [r2]
        [info] = await get(session, f"{url}/api/clusters-info")
        assert (info["ClusterName"], info["ClusterAlias"], info["Master"]["Port"], info["Epoch"], info["Phase"]) == (
            r2, name, box.nodes[2].port, 3, "stable")
        inst = await get(session, f"{url}/api/instance/127.0.0.1/{box.nodes[1].port}")
        assert inst["MasterKey"] == {"Hostname": "127.0.0.1", "Port": box.nodes[2].port}
        assert inst["ReadOnly"] is True and inst["ReplicationIOThreadRuning"] is True and inst["ClusterName"] == r2
        assert inst["SuggestedClusterAlias"] == name
        members = await get(session, f"{url}/api/cluster/alias/{name}")
        assert sorted(i["Key"]["Port"] for i in members) == sorted(n.port for n in box.nodes)
        assert len(await get(session, f"{url}/api/cluster/{r1}")) == 3
        topo = await get(session, f"{url}/api/topology/{r1}")
        lines = topo["Details"].splitlines()
        assert lines[0].startswith(f"{r2}   [0s,ok,") and ",rw,ROW,>>,GTID" in lines[0]
        assert sorted(line.split()[1] for line in lines[1:]) == sorted([m, r1])
        assert all(line.startswith("+ ") and ",ro,ROW,>>,GTID" in line for line in lines[1:])
        assert (await get(session, f"{url}/api/replication-analysis"))["Details"] == []
        audit = await get(session, f"{url}/api/audit")
        assert {"graceful-master-takeover", "graceful-master-takeover-auto"} <= {e["AuditType"] for e in audit}
        assert await get(session, f"{url}/api/audit-recovery") == []
        body = await get(session, f"{url}/api/begin-downtime/127.0.0.1/{box.nodes[0].port}/ops/maintenance/10m")
        assert body["Code"] == "OK"
        inst = await get(session, f"{url}/api/instance/127.0.0.1/{box.nodes[0].port}")
        assert inst["IsDowntimed"] and inst["DowntimeOwner"] == "ops"
        body = await get(session, f"{url}/api/end-downtime/127.0.0.1/{box.nodes[0].port}")
        assert body["Message"].startswith("Downtime ended")
        body = await get(session, f"{url}/api/begin-downtime/127.0.0.1/{box.nodes[0].port}/ops/x/soon", status=500)
        assert body["Message"] == "Cannot parse simple time: soon"
        health = await get(session, f"{url}/api/health")
        assert health["Code"] == "OK" and health["Details"]["IsActiveNode"] is True
        spec = await get(session, f"{url}/api/openapi.json")
        assert "/api/graceful-master-takeover-auto/{hint}/{designated_host}/{designated_port}" in spec["paths"]
        body = await get(session, f"{url}/api/topology/nope", status=500)
        assert "no cluster matches 'nope'" in body["Message"]
        body = await get(session, f"{url}/api/recover/127.0.0.1/{box.nodes[2].port}", status=500)
        assert "NoProblem" in body["Message"]
        body = await get(session, f"{url}/api/forget/127.0.0.1/{box.nodes[0].port}")
        assert body["Code"] == "OK"
        body = await get(session, f"{url}/api/discover/127.0.0.1/{box.nodes[0].port}")
        assert (body["Details"]["ClusterName"], body["Details"]["SuggestedClusterAlias"]) == (r2, name)

    # ---- the CLI's other commands, with --json --------------------------------------------------------
    code, out, _ = await cli(url, "clusters", "--json")
    assert code == 0 and json.loads(out)[0]["Epoch"] == 3
    code, out, _ = await cli(url, "topology", "-i", m)
    assert code == 0 and r2 in out.splitlines()[0]
    code, out, _ = await cli(url, "audit", "--json")
    assert code == 0 and json.loads(out)["audit"]
    code, out, err = await cli("http://127.0.0.1:1", "clusters")
    assert code == 1 and "cannot reach the manager" in err and "turnout manager --config" in err
