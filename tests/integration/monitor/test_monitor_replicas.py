"""Replicas that stop, lag, die or hang, on the shared sandbox (its topology is left as found)."""

from __future__ import annotations

import asyncio

import pytest

from integration.monitor.monitor_helpers import (
    READER,
    WAIT,
    WRITER,
    address,
    comment,
    monitored,
    row,
    sandbox_config,
    serving,
    status,
)
from turnout.monitor.logs import LOG_COLUMNS, READ_ONLY_LOG
from turnout.monitor.probes import now_us
from turnout.monitor.routing import RoutingSnapshot
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


async def write_for(box: Sandbox, count: int) -> None:
    await asyncio.to_thread(
        box.execute,
        0,
        "CREATE DATABASE IF NOT EXISTS mon",
        "CREATE TABLE IF NOT EXISTS mon.w (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
    )
    for i in range(count):
        await asyncio.to_thread(box.execute, 0, f"INSERT INTO mon.w (v) VALUES ({i})")
        await asyncio.sleep(0.1)


async def test_stopped_sql_thread_is_shunned_and_returns_after_catching_up(sandbox: Sandbox) -> None:
    box = sandbox
    n1 = address(box, 1)
    seen: list[tuple[str | None, int | None]] = []  # n1's status, and the lag it was decided on

    def record(snap: RoutingSnapshot) -> None:
        health = service.health.get(n1)
        repl = None if health is None else health.replication
        seen.append((status(snap, READER, n1), None if repl is None else repl.seconds_behind_master))

    async with monitored(sandbox_config(box), on_routing=record) as service:
        await service.wait_for(lambda s: status(s, READER, n1) == "ONLINE", WAIT)
        await asyncio.to_thread(box.execute, 1, "STOP SLAVE SQL_THREAD")
        await write_for(box, 5)
        snap = await service.wait_for(lambda s: status(s, READER, n1) == "SHUNNED", WAIT)
        shunned = row(snap, READER, n1)
        assert shunned is not None
        assert shunned.comment == "turnout: read_only=ON and not replicating (SQL thread stopped)"
        assert serving(snap, READER) == {address(box, 0), address(box, 2)}

        await asyncio.to_thread(box.execute, 1, "START SLAVE SQL_THREAD")
        await service.wait_for(lambda s: status(s, READER, n1) == "ONLINE", WAIT)
        # With max_replication_lag=0 it came back only once caught up: lag 0, not NULL, not 1.
        first_shunned = seen.index(next(e for e in seen if e[0] == "SHUNNED"))
        back = next(e for e in seen[first_shunned:] if e[0] == "ONLINE")
        assert back == ("ONLINE", 0)
        await asyncio.to_thread(box.wait_replicas_caught_up)
        applied = await asyncio.to_thread(box.execute, 1, "SELECT COUNT(*) AS n FROM mon.w")
        written = await asyncio.to_thread(box.execute, 0, "SELECT COUNT(*) AS n FROM mon.w")
        assert applied == written


async def test_lag_past_max_replication_lag_shuns_until_caught_up(sandbox: Sandbox) -> None:
    """Real lag from delayed replication (MASTER_DELAY), with stale-read protection satisfied."""
    box = sandbox
    n2 = address(box, 2)
    delayed = ["STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 4", "START SLAVE"]
    undelayed = ["STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY = 0", "START SLAVE"]
    async with monitored(sandbox_config(box, max_replication_lag=1)) as service:
        await service.wait_for(lambda s: status(s, READER, n2) == "ONLINE", WAIT)
        await asyncio.to_thread(box.execute, 2, *delayed)
        try:
            writes = asyncio.create_task(write_for(box, 10))
            # (restarting replication may first shun it for a moment as not replicating: wait for the lag)
            snap = await service.wait_for(lambda s: status(s, READER, n2) == "SHUNNED" and "> max_replication_lag 1s"
                                          in getattr(row(s, READER, n2), "comment", ""), WAIT)
            shunned = row(snap, READER, n2)
            assert shunned is not None and "> max_replication_lag 1s" in shunned.comment
            await writes
            # Writes stopped: the delayed replica applies the rest and comes back.
            snap = await service.wait_for(lambda s: status(s, READER, n2) == "ONLINE", WAIT)
            health = service.health.get(n2)
            assert health is not None and health.replication is not None
            lag = health.replication.seconds_behind_master
            assert lag is not None and lag <= 1
            assert status(snap, READER, address(box, 1)) == "ONLINE"
        finally:
            await asyncio.to_thread(box.execute, 2, *undelayed)


async def test_killed_replica_is_shunned_and_back_once_replicating(sandbox: Sandbox) -> None:
    box = sandbox
    n2 = address(box, 2)
    async with monitored(sandbox_config(box)) as service:
        await service.wait_for(lambda s: status(s, READER, n2) == "ONLINE", WAIT)
        await asyncio.to_thread(box.kill, 2)
        snap = await service.wait_for(lambda s: status(s, READER, n2) == "SHUNNED", WAIT)
        dead = row(snap, READER, n2)
        assert dead is not None and dead.comment.startswith("turnout: connect failed")
        assert snap.writer(WRITER) == address(box, 0)

        # Restarted, it does not replicate yet (skip_slave_start): still no reads.
        await asyncio.to_thread(box.start, 2)
        snap = await service.wait_for(lambda s: "not replicating" in comment(s, READER, n2), WAIT)
        assert status(snap, READER, n2) == "SHUNNED"
        await asyncio.to_thread(box.execute, 2, "START SLAVE")
        await service.wait_for(lambda s: status(s, READER, n2) == "ONLINE", WAIT)
        log = service.monitor.log_rows("mysql_server_connect_log")
        assert any(r[:2] == n2 and r[4] is not None for r in log)


async def test_hung_replica_does_not_delay_the_checks_of_the_others(sandbox: Sandbox) -> None:
    box = sandbox
    n0, n1, n2 = (address(box, i) for i in range(3))
    config = sandbox_config(
        box,
        ping_timeout="1000",
        read_only_timeout="1000",
        replication_lag_timeout="1000",
        ping_max_failures="2",
    )
    async with monitored(config) as service:
        await service.wait_for(lambda s: serving(s, READER) == {n0, n1, n2}, WAIT)
        await asyncio.to_thread(box.pause, 2)
        paused_at = now_us()
        try:
            snap = await service.wait_for(lambda s: status(s, READER, n2) == "SHUNNED", WAIT)
            assert snap.writer(WRITER) == n0 and serving(snap, READER) == {n0, n1}, [
                (s.hostgroup_id, s.port, s.status, s.comment) for s in snap.servers
            ]
            # Several of the hung server's checks time out while the others keep their pace.
            async with asyncio.timeout(WAIT):
                while sum(1 for r in service.monitor.log_rows(READ_ONLY_LOG)
                          if r[:2] == n2 and r[2] >= paused_at and r[5] == "timeout") < 2:
                    await asyncio.sleep(0.1)
        finally:
            resumed_at = now_us()
            await asyncio.to_thread(box.resume, 2)
        rows = [r for r in service.monitor.log_rows(READ_ONLY_LOG) if paused_at <= r[2] <= resumed_at]
        hung = [r for r in rows if r[:2] == n2]
        assert hung and all(r[5] == "timeout" for r in hung)
        for other in (n0, n1):
            ok = [r for r in rows if r[:2] == other and r[5] is None]
            assert len(ok) == len([r for r in rows if r[:2] == other])
            # Serialised behind the hung server they would get one check per timeout; concurrently
            # they get one per interval (200 ms against a 1000 ms timeout).
            assert len(ok) >= 3 * len(hung), (len(ok), len(hung))
            print(f"{other}: {len(ok)} checks while the hung server had {len(hung)}")
        await service.wait_for(lambda s: status(s, READER, n2) == "ONLINE", WAIT)


async def test_log_tables_have_proxysql_columns(sandbox: Sandbox) -> None:
    box = sandbox
    async with monitored(sandbox_config(box)) as service:
        await service.wait_for(lambda s: len(s.online(READER)) == 3, WAIT)
        async with asyncio.timeout(WAIT):  # every check has logged every server
            while any({r[:2] for r in service.monitor.log_rows(t)} != {address(box, i) for i in range(3)}
                      for t in LOG_COLUMNS):
                await asyncio.sleep(0.05)
        for table, columns in LOG_COLUMNS.items():
            rows = service.monitor.log_rows(table)
            assert {r[:2] for r in rows} == {address(box, i) for i in range(3)}, table
            assert all(len(r) == len(columns) for r in rows)
            assert all(r[-1] is None and isinstance(r[3], int) and r[3] > 0 for r in rows), table
        read_only = {r[:2]: r[4] for r in service.monitor.log_rows(READ_ONLY_LOG)}
        assert read_only == {address(box, 0): 0, address(box, 1): 1, address(box, 2): 1}
        lag = {r[:2]: r[4] for r in service.monitor.log_rows("mysql_server_replication_lag_log")}
        assert lag == {address(box, 0): None, address(box, 1): 0, address(box, 2): 0}
