"""Dead masters on real servers: kill -9, SIGSTOP, unreachable only from the manager, anti-flapping."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from turnout.manager.analysis import DEAD_MASTER, UNREACHABLE_MASTER
from turnout.manager.service import ManagerService
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox
MakeManager = Any


async def wait_for(condition, what: str, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def write_rows(box: Sandbox, node: int, count: int) -> None:
    box.execute(node, "CREATE DATABASE IF NOT EXISTS t", "CREATE TABLE IF NOT EXISTS t.x (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    box.execute(node, *(f"INSERT INTO t.x (v) VALUES ({i})" for i in range(count)))


def count_rows(box: Sandbox, node: int) -> int:
    return int(box.execute(node, "SELECT COUNT(*) AS n FROM t.x")[0]["n"])


async def test_kill_master_promotes_most_advanced_replica(fresh_sandbox: Sandbox, make_manager: MakeManager) -> None:
    box = fresh_sandbox
    m, r1, r2 = (n.address for n in box.nodes)
    write_rows(box, 0, 20)
    box.wait_replicas_caught_up()
    service: ManagerService = await make_manager(m)
    name = service.cluster_of[m]
    state = await service.store.get_cluster(name)
    assert state is not None and (state.master, state.epoch, state.phase) == (m, 1, "stable")
    assert set(service.instances) == {m, r1, r2}
    box.wait_replicas_caught_up()
    # r2 misses the last transactions: r1 is the most advanced replica when the master dies.
    box.execute(2, "STOP SLAVE IO_THREAD")
    write_rows(box, 0, 3)
    expected = count_rows(box, 0)
    box.wait_replicas_caught_up(only=[1])  # replication is asynchronous: r1 must have the rows before the master dies
    box.kill(0)
    box.execute(2, "START SLAVE IO_THREAD")
    await wait_for(lambda: service.last_recovery is not None, "a recovery")
    result = service.last_recovery
    assert result is not None and result.success, result.steps if result else None
    assert result.failure_type == DEAD_MASTER
    new_master = result.successor
    assert new_master == r1
    state = await service.store.get_cluster(name)
    assert state is not None and (state.master, state.epoch, state.phase) == (new_master, 2, "stable")
    assert m not in state.members
    assert [f.key for f in await service.store.fenced()] == [m]
    new_index = 1 if new_master == r1 else 2
    other_index = 3 - new_index
    assert box.replica_status(new_index) is None
    assert box.execute(new_index, "SELECT @@read_only AS ro")[0]["ro"] == 0
    status = box.replica_status(other_index)
    assert status is not None and int(status["Master_Port"]) == box.nodes[new_index].port
    assert count_rows(box, new_index) == expected
    box.execute(new_index, "INSERT INTO t.x (v) VALUES (-1)")
    await wait_for(lambda: count_rows(box, other_index) == expected + 1, "the re-pointed replica to replicate")
    audit = [e.message for e in await service.store.audit_log(name)]
    assert any("fenced" in msg for msg in audit)
    assert any("applied its relay log" in msg for msg in audit)

    # The old master comes back writable: the manager sets it read_only=ON and keeps it out.
    box.start(0)
    box.execute(0, "SET GLOBAL read_only = OFF")
    await wait_for(lambda: box.execute(0, "SELECT @@read_only AS ro")[0]["ro"] == 1, "fenced master read_only=ON")
    await service.wait_ticks(1)
    assert (await service.store.get_cluster(name)).master == new_master  # type: ignore[union-attr]
    assert not any(f.is_problem for f in service.views[name].findings if f.instance != m)

    # A second dead master right after the first: anti-flapping blocks the automated recovery...
    box.kill(1)
    await wait_for(lambda: any(f.recoverable_master_failure for f in service.views[name].findings), "DeadMaster")
    await service.wait_ticks(2)
    assert len(await service.store.recoveries(name)) == 1
    assert (await service.store.get_cluster(name)).master == r1  # type: ignore[union-attr]
    assert any("blocked by anti-flapping" in e.message for e in await service.store.audit_log(name))
    # ...until the first recovery is acknowledged.
    assert await service.acknowledge(r2, "test", "first failover checked") == 1
    await wait_for(lambda: service.last_recovery is not None and service.last_recovery.successor == r2,
                   "the second recovery")
    assert service.last_recovery is not None and service.last_recovery.success
    state = await service.store.get_cluster(name)
    assert state is not None and (state.master, state.epoch) == (r2, 3)
    assert box.execute(2, "SELECT @@read_only AS ro")[0]["ro"] == 0
    assert count_rows(box, 2) == expected + 1
    assert sorted(f.key for f in await service.store.fenced()) == [m, r1]


async def test_hung_master_is_detected_through_timeouts(fresh_sandbox: Sandbox, make_manager: MakeManager) -> None:
    box = fresh_sandbox
    m, r1, r2 = (n.address for n in box.nodes)
    write_rows(box, 0, 10)
    box.wait_replicas_caught_up()
    service: ManagerService = await make_manager(m, PreFailoverProcesses=["echo {failureType} {failedPort}"])
    name = service.cluster_of[m]
    codes_seen: set[str] = set()

    box.pause(0)
    try:
        def recovered() -> bool:
            codes_seen.update(f.code for f in service.views[name].findings if f.instance == m)
            return service.last_recovery is not None

        await wait_for(recovered, "recovery of a hung master")
    finally:
        box.resume(0)
    result = service.last_recovery
    assert result is not None and result.success, result.steps
    # The manager lost the master first; the replicas only after slave_net_timeout.
    assert UNREACHABLE_MASTER in codes_seen
    assert result.failure_type == DEAD_MASTER
    assert any(f"hook 'echo DeadMaster {box.nodes[0].port}': ok" in step for step in result.steps)
    assert result.successor in (r1, r2)
    # The resumed old master is fenced: read_only=ON, and nobody replicates from it.
    await wait_for(lambda: box.execute(0, "SELECT @@read_only AS ro")[0]["ro"] == 1, "fenced master read_only=ON")
    other = r2 if result.successor == r1 else r1
    other_index = 1 if other == r1 else 2
    status = box.replica_status(other_index)
    assert status is not None and f"127.0.0.1:{status['Master_Port']}" == result.successor


async def test_master_unreachable_only_from_the_manager(sandbox: Sandbox, make_manager: MakeManager) -> None:
    box = sandbox
    m = box.nodes[0].address
    service: ManagerService = await make_manager(m)
    name = service.cluster_of[m]
    # Lock the manager's account on the master only (not replicated), and drop its sessions.
    box.execute(0, "SET sql_log_bin = 0", "ALTER USER 'turnout'@'%' ACCOUNT LOCK")
    try:
        for row in box.execute(0, "SELECT id FROM information_schema.PROCESSLIST WHERE USER = 'turnout'"):
            box.execute(0, f"KILL {row['id']}")
        await wait_for(lambda: not service.instances[m].reachable, "the manager to lose the master")
        await service.wait_ticks(3)
        [finding] = [f for f in service.views[name].findings if f.instance == m]
        assert finding.code == UNREACHABLE_MASTER
        assert finding.count_replicas_reaching_master == 2
        assert "locked" in service.instances[m].last_probe_error.lower()
    finally:
        box.execute(0, "SET sql_log_bin = 0", "ALTER USER 'turnout'@'%' ACCOUNT UNLOCK")
    assert await service.store.recoveries() == []
    state = await service.store.get_cluster(name)
    assert state is not None and (state.master, state.epoch, state.phase) == (m, 1, "stable")
    await wait_for(lambda: service.instances[m].reachable, "the master to be reachable again")
