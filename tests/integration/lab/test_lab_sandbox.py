"""A sandbox on lab hosts: MariaDB servers and etcd members each on a host, and the CLI around it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest

from conftest import SandboxFactory
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.lab import Lab
from turnout.sandbox.sandbox import Sandbox
from turnout.state import ClusterState, open_store

pytestmark = [pytest.mark.netns, pytest.mark.sandbox]

TURNOUT = [sys.executable, "-m", "turnout.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TURNOUT, *args], capture_output=True, text=True, timeout=300)


def test_servers_listen_on_their_hosts_and_replicate_across_them(make_lab_sandbox: SandboxFactory) -> None:
    box = make_lab_sandbox(replicas=2)
    lab = box.lab
    assert [n.host for n in box.nodes] == [lab.address(f"node{i}") for i in range(3)]
    assert {n.port for n in box.nodes} == {3306}
    for node in box.nodes[1:]:
        status = box.replica_status(node.index)
        assert status is not None
        assert (status["Master_Host"], int(status["Master_Port"])) == (box.nodes[0].host, 3306)
    assert box.index_of(box.nodes[2].address) == 2
    # The sandbox's accounts over TCP, from a host of the lab and from the root namespace.
    lab.add_host("client")
    query = ["mariadb", "-h", box.nodes[0].host, "-u", APP.user, f"-p{APP.password}", "-N", "-e",
             "SELECT @@report_host"]
    out = lab.run("client", query, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == box.nodes[0].host
    with box.connect(1, user=APP.user, password=APP.password) as conn, conn.cursor() as cur:
        cur.execute("SELECT @@read_only")
        assert cur.fetchone() == (1,)
    # A server on one host is cut off from another by a partition, and only from it.
    lab.partition(["node0", "client"])
    cut = lab.run("client", ["mariadb", "--connect-timeout=1", "-h", box.nodes[0].host, "-u", APP.user,
                             f"-p{APP.password}", "-e", "SELECT 1"], capture_output=True, text=True)
    assert cut.returncode != 0 and "(110)" in cut.stderr  # ETIMEDOUT: dropped, not refused
    with box.connect(0, user=APP.user, password=APP.password):
        pass  # the root namespace is in no group


def test_a_server_restarts_on_its_host(make_lab_sandbox: SandboxFactory) -> None:
    box = make_lab_sandbox(replicas=1)
    box.kill(1)
    assert box.pid(1) is None
    box.start(1)
    box.execute(1, "START SLAVE")
    box.execute(0, "CREATE DATABASE t", "CREATE TABLE t.x (id INT PRIMARY KEY)", "INSERT INTO t.x VALUES (1)")
    box.wait_replicas_caught_up()
    assert box.execute(1, "SELECT id FROM t.x") == [{"id": 1}]
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(host="127.0.0.1", port=3306, user=APP.user, password=APP.password, connect_timeout=1)


def test_cli_lab_up_run_partition_status_heal_down(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    up = run_cli("sandbox", "up", "--dir", str(directory), "--hosts", "--replicas", "1", "--etcd", "3")
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        lab_id = Lab.open(directory).id
        add = run_cli("sandbox", "add-host", "--dir", str(directory), "proxy-a")
        assert add.returncode == 0, add.stderr
        name, address = add.stdout.split()
        assert name == "proxy-a"

        ran = run_cli("sandbox", "run", "--dir", str(directory), "--host", "proxy-a", "--", "ip", "-4", "-o", "addr",
                      "show", "eth0")
        assert ran.returncode == 0 and f"{address}/24" in ran.stdout
        failed = run_cli("sandbox", "run", "--dir", str(directory), "--host", "proxy-a", "--", "false")
        assert failed.returncode == 1
        background = run_cli("sandbox", "run", "--dir", str(directory), "--host", "proxy-a", "--background", "--",
                             "sleep", "300")
        assert background.returncode == 0, background.stderr
        pid = int(background.stdout.strip())

        cut = run_cli("sandbox", "partition", "--dir", str(directory), "node0,proxy-a", "node1,etcd0,etcd1,etcd2")
        assert cut.returncode == 0, cut.stderr
        status = json.loads(run_cli("sandbox", "status", "--dir", str(directory), "--json").stdout)
        assert status["partition"] == [["node0", "proxy-a"], ["node1", "etcd0", "etcd1", "etcd2"]]
        hosts = {h["host"]: h for h in status["hosts"]}
        assert set(hosts) == {"node0", "node1", "etcd0", "etcd1", "etcd2", "proxy-a"}
        assert hosts["proxy-a"]["address"] == address
        assert [p["pid"] for p in hosts["proxy-a"]["processes"]] == [pid]
        assert hosts["node0"]["serves"].startswith("mariadb node 0")
        assert hosts["etcd1"]["serves"].startswith("etcd member 1")
        assert [m["state"] for m in status["etcd"]] == ["running"] * 3
        assert [s["role"] for s in status["servers"]] == ["master", "replica"]

        bad = run_cli("sandbox", "partition", "--dir", str(directory), "node0", "ghost")
        assert bad.returncode != 0 and "no host 'ghost'" in bad.stderr + bad.stdout
        healed = run_cli("sandbox", "heal", "--dir", str(directory))
        assert healed.returncode == 0
        assert json.loads(run_cli("sandbox", "status", "--dir", str(directory), "--json").stdout)["partition"] is None

        killed = run_cli("sandbox", "kill", "--dir", str(directory), "--etcd", "2")
        assert killed.returncode == 0, killed.stderr
        status = json.loads(run_cli("sandbox", "status", "--dir", str(directory), "--json").stdout)
        assert [m["state"] for m in status["etcd"]] == ["running", "running", "down"]
    finally:
        down = run_cli("sandbox", "down", "--dir", str(directory), "--destroy")
    assert down.returncode == 0, down.stderr
    assert not directory.exists()
    assert lab_id not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab_id not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert not Path(f"/proc/{pid}/cmdline").exists() or Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"


def test_single_host_sandbox_refuses_lab_commands(make_sandbox: SandboxFactory) -> None:
    box: Sandbox = make_sandbox(replicas=0)
    out = run_cli("sandbox", "partition", "--dir", str(box.dir), "node0", "node1")
    assert out.returncode != 0 and "--hosts" in out.stderr + out.stdout


def test_turnout_up_on_a_lab_host_with_three_etcd_members(make_lab_sandbox: SandboxFactory, tmp_path: Path) -> None:
    """A configuration that reads like a real one: servers, etcd and turnout each on a host of their own."""
    box = make_lab_sandbox(replicas=1, etcd=3)
    address = box.lab.add_host("proxy-a")
    url = box.etcd.store_url("/lab-smoke")
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(box, tmp_path / "data", 6033, 6032, api_port=3000, state_store=url,
                                     bind="0.0.0.0"))
    proc = box.lab.spawn("proxy-a", [sys.executable, "-m", "turnout.cli", "up", "--config", str(config)],
                         log=tmp_path / "turnout.log")
    try:
        while True:  # the proxy, from this machine, through the lab's bridge
            assert proc.poll() is None, (tmp_path / "turnout.log").read_text()[-3000:]
            try:
                app = pymysql.connect(host=address, port=6033, user=APP.user, password=APP.password,
                                      connect_timeout=2, autocommit=True)
                break
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        with app, app.cursor() as cur:
            cur.execute("CREATE DATABASE IF NOT EXISTS smoke")
            cur.execute("CREATE TABLE smoke.t (id INT PRIMARY KEY)")
            cur.execute("INSERT INTO smoke.t VALUES (1)")
        assert box.execute(0, "SELECT id FROM smoke.t") == [{"id": 1}]

        async def published() -> ClusterState:
            store = open_store(url)
            try:
                while not (clusters := await store.clusters()):
                    await asyncio.sleep(0.2)
                return clusters[0]
            finally:
                await store.close()

        state = asyncio.run(published())
        assert state.master == box.nodes[0].address
        assert set(state.members) == {n.address for n in box.nodes}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
