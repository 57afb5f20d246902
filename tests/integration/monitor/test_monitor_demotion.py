"""Graceful demotions by hand: writes follow read_only, the demoted master serves no stale reads."""

from __future__ import annotations

import asyncio

import pytest

from integration.monitor.monitor_helpers import (
    READER,
    WAIT,
    WRITER,
    Address,
    address,
    monitored,
    row,
    sandbox_config,
    serving,
    status,
)
from turnout.monitor.service import MonitoredRouting
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


async def demote_by_hand(box: Sandbox, old: int, new: int, other: int) -> None:
    """The classic manual takeover; the old master is left read_only without replication."""
    await asyncio.to_thread(box.execute, old, "SET GLOBAL read_only = 1")
    await asyncio.to_thread(box.wait_replicas_caught_up)
    await asyncio.to_thread(box.execute, new, "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0")
    await asyncio.to_thread(box.execute, other, *box.replication_sql(box.nodes[new]))


async def replicate_from(box: Sandbox, index: int, master: int) -> None:
    # The old master has applied everything it wrote: start from its own binlog position.
    await asyncio.to_thread(
        box.execute,
        index,
        "SET GLOBAL gtid_slave_pos = @@global.gtid_binlog_pos",
        *box.replication_sql(box.nodes[master]),
    )


def replicates_from(service: MonitoredRouting, replica: Address, master: Address) -> bool:
    """The monitor has seen `replica` replicating from `master`: routing no longer rests on its
    health from before it was re-pointed (it is briefly stopped while it is)."""
    health = service.health.get(replica)
    repl = None if health is None else health.replication
    return repl is not None and repl.replicating and repl.master == master


async def test_graceful_demotion_twice(fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    n0, n1, n2 = (address(box, i) for i in range(3))
    await asyncio.to_thread(
        box.execute, 0, "CREATE DATABASE mon", "CREATE TABLE mon.t (id INT PRIMARY KEY AUTO_INCREMENT, v INT)"
    )
    async with monitored(sandbox_config(box)) as service:
        snap = await service.wait_for(
            lambda s: s.writer(WRITER) == n0 and serving(s, READER) == {n0, n1, n2}, WAIT
        )
        assert snap.write_blocked == {}

        # First demotion: node0 -> node1.
        await demote_by_hand(box, old=0, new=1, other=2)
        snap = await service.wait_for(
            lambda s: (
                s.writer(WRITER) == n1 and serving(s, READER) == {n1, n2} and replicates_from(service, n2, n1)
            ),
            WAIT,
        )
        assert {s.address for s in snap.rows(WRITER)} == {n1}
        old = row(snap, READER, n0)
        assert old is not None and old.status == "SHUNNED"
        assert old.comment == "turnout: read_only=ON and not replicating (no replication configured)"
        await asyncio.to_thread(box.execute, 1, "INSERT INTO mon.t (v) VALUES (1)")

        # The old master replicates again: a reader once it has caught up.
        await replicate_from(box, 0, master=1)
        snap = await service.wait_for(lambda s: status(s, READER, n0) == "ONLINE", WAIT)
        assert snap.writer(WRITER) == n1 and serving(snap, READER) == {n0, n1, n2}
        await asyncio.to_thread(box.wait_replicas_caught_up)  # ONLINE means lag 0 s, not the INSERT applied
        rows = await asyncio.to_thread(box.execute, 0, "SELECT COUNT(*) AS n FROM mon.t")
        assert rows[0]["n"] == 1

        # Second demotion: node1 -> node2, node0 re-pointed.
        await demote_by_hand(box, old=1, new=2, other=0)
        snap = await service.wait_for(
            lambda s: (
                s.writer(WRITER) == n2 and serving(s, READER) == {n0, n2} and replicates_from(service, n0, n2)
            ),
            WAIT,
        )
        assert {s.address for s in snap.rows(WRITER)} == {n2}
        old = row(snap, READER, n1)
        assert old is not None and old.status == "SHUNNED" and "no replication configured" in old.comment

        await replicate_from(box, 1, master=2)
        snap = await service.wait_for(lambda s: status(s, READER, n1) == "ONLINE", WAIT)
        assert snap.writer(WRITER) == n2 and serving(snap, READER) == {n0, n1, n2}
        assert snap.write_blocked == {} and snap.conflicts == ()
