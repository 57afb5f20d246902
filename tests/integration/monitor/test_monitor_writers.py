"""Two servers with read_only=OFF: the guard, keep-current, and managed mode's fencing."""

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
    sandbox_config,
    serving,
    status,
)
from turnout.config.model import ReplicationHostgroup
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


async def set_read_only(box: Sandbox, index: int, on: bool) -> None:
    await asyncio.to_thread(box.execute, index, f"SET GLOBAL read_only = {1 if on else 0}")


async def test_two_writers_refuse_writes_until_one_is_read_only_again(sandbox: Sandbox) -> None:
    box = sandbox
    n0, n1, n2 = (address(box, i) for i in range(3))
    async with monitored(sandbox_config(box)) as service:
        await service.wait_for(lambda s: s.writer(WRITER) == n0 and len(s.online(READER)) == 3, WAIT)
        await set_read_only(box, 2, on=False)
        try:
            snap = await service.wait_for(lambda s: WRITER in s.write_blocked, WAIT)
            first, second = sorted([n0, n2])
            assert snap.write_blocked[WRITER] == (
                f"turnout: writes refused, 2 servers report read_only=OFF in writer hostgroup {WRITER}: "
                f"{first[0]}:{first[1]}, {second[0]}:{second[1]}"
            )
            assert snap.online(WRITER) == ()
            assert serving(snap, READER) == {n0, n1, n2}  # reads continue
            assert [(c.action, c.servers) for c in snap.conflicts] == [("refuse", (first, second))]
        finally:
            await set_read_only(box, 2, on=True)
        snap = await service.wait_for(lambda s: s.write_blocked == {}, WAIT)
        assert snap.writer(WRITER) == n0 and snap.conflicts == ()


async def test_two_writers_keep_current(sandbox: Sandbox) -> None:
    box = sandbox
    n0, n1 = address(box, 0), address(box, 1)
    pair = ReplicationHostgroup(WRITER, READER, two_writer_mode="keep-current")
    async with monitored(sandbox_config(box, pair=pair)) as service:
        await service.wait_for(lambda s: s.writer(WRITER) == n0 and len(s.online(READER)) == 3, WAIT)
        await set_read_only(box, 1, on=False)
        try:
            snap = await service.wait_for(lambda s: s.conflicts != (), WAIT)
            assert snap.write_blocked == {} and snap.writer(WRITER) == n0
            assert status(snap, WRITER, n1) == "OFFLINE_HARD" and status(snap, READER, n1) == "OFFLINE_HARD"
            assert "writes stay on" in comment(snap, WRITER, n1)
        finally:
            await set_read_only(box, 1, on=True)
        await service.wait_for(lambda s: s.conflicts == () and len(s.online(READER)) == 3, WAIT)


async def test_managed_mode_fences_a_writer_that_is_not_the_published_master(sandbox: Sandbox) -> None:
    box = sandbox
    n0, n1, n2 = (address(box, i) for i in range(3))
    async with monitored(sandbox_config(box), published_masters={WRITER: n0}) as service:
        await service.wait_for(lambda s: s.writer(WRITER) == n0 and len(s.online(READER)) == 3, WAIT)
        await set_read_only(box, 2, on=False)
        try:
            snap = await service.wait_for(lambda s: status(s, READER, n2) == "OFFLINE_HARD", WAIT)
            assert snap.writer(WRITER) == n0 and snap.write_blocked == {}
            assert status(snap, WRITER, n2) == "OFFLINE_HARD"
            assert comment(snap, WRITER, n2) == "turnout: fenced, read_only=OFF but not the published master"
            assert serving(snap, READER) == {n0, n1}

            # The manager publishes node2 as master: node0 (still read_only=OFF) is fenced instead.
            service.update_published_masters({WRITER: n2})
            snap = service.routing
            assert snap.writer(WRITER) == n2 and status(snap, WRITER, n0) == "OFFLINE_HARD"
        finally:
            await set_read_only(box, 2, on=True)
