"""Semi-synchronous replication across a kill -9 and a takeover: every acknowledged write
survives, and semi-sync is in force again afterwards with each side where it belongs."""

from __future__ import annotations

import json
import time

from system_harness import RunningTurnout, wait_for
from turnout.workload import TABLE, Workload, missing_writes


def _semisync_sides(running: RunningTurnout, node: int) -> tuple[bool, bool]:
    row = running.box.execute(node, "SELECT @@rpl_semi_sync_master_enabled AS m, @@rpl_semi_sync_slave_enabled AS s")[0]
    return bool(row["m"]), bool(row["s"])


def _check_sides(running: RunningTurnout) -> None:
    master_port = int(running.master().split(":")[1])
    for node in running.box.nodes:
        if running.box.pid(node.index) is None:
            continue
        expected = (True, False) if node.port == master_port else (False, True)
        assert _semisync_sides(running, node.index) == expected, f"node {node.index}"
    master = running.box.index_of_port(master_port)
    assert master is not None
    try:
        wait_for(lambda: int(running.box.execute(master, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")[0]["Value"]) >= 1,
                 30, "a semi-sync replica to connect to the new master")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_diagnostics(running)}") from exc


def _diagnostics(running: RunningTurnout) -> str:
    """What a failure report needs: the manager's recoveries and each server's replication."""
    lines = ["recoveries: " + json.dumps(running.api("audit-recovery"), default=str)[:6000]]
    for node in running.box.nodes:
        if running.box.pid(node.index) is None:
            lines.append(f"node {node.index}: not running")
            continue
        status = running.box.execute(node.index, "SHOW SLAVE STATUS")
        semi = running.box.execute(node.index, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'")
        lines.append(f"node {node.index} (port {node.port}): sides {_semisync_sides(running, node.index)}, "
                     f"semi-sync status {semi}, replication {status}")
    return "\n".join(lines)


def test_kill_and_takeover_keep_every_acknowledged_write(turnout_up_semisync: RunningTurnout) -> None:
    running = turnout_up_semisync
    box = running.box
    workload = Workload(running.proxy_port, writers=3, readers=1)
    wait_for(lambda: workload.create_schema() is None, 20, "the proxy to accept writes")
    workload.start()
    try:
        wait_for(lambda: workload.counters.writes >= 100, 60, "the workload to write through the proxy")
        victim = running.master()
        box.kill(box.index_of_port(int(victim.split(":")[1])) or 0)
        wait_for(lambda: running.master() != victim, 60, "the manager to promote a replica")
        since = time.time()
        wait_for(lambda: any(t > since for t in workload.counters.write_times[-20:]), 30, "writes to resume")
        _check_sides(running)
        survivor = next(n for n in box.nodes if box.pid(n.index) is not None and f"127.0.0.1:{n.port}" != running.master())
        cluster = running.cluster()["ClusterName"]
        result = running.api(f"graceful-master-takeover-auto/{cluster}/127.0.0.1/{survivor.port}")
        assert result["Code"] == "OK", result
        wait_for(lambda: running.master() == f"127.0.0.1:{survivor.port}", 30, "the takeover to be published")
        since = time.time()
        wait_for(lambda: any(t > since for t in workload.counters.write_times[-20:]), 30,
                 "writes to go on after the takeover")
    finally:
        workload.stop()
    _check_sides(running)
    master = box.index_of_port(int(running.master().split(":")[1]))
    assert master is not None
    rows = box.execute(master, f"SELECT writer, seq FROM {TABLE}")
    assert not missing_writes(workload.counters.acknowledged, [(r["writer"], r["seq"]) for r in rows])
    assert workload.counters.writes > 0
