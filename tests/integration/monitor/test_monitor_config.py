"""Loading a new config into a running Monitor: servers added and removed, intervals changed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from types import MappingProxyType

import pytest

from integration.monitor.monitor_helpers import WAIT, address, sandbox_config
from turnout.monitor.health import HealthSnapshot
from turnout.monitor.logs import PING_LOG
from turnout.monitor.monitor import Monitor
from turnout.monitor.probes import now_us
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


async def test_update_config_adds_and_removes_servers(sandbox: Sandbox) -> None:
    box = sandbox
    full = sandbox_config(box)
    first_two = dataclasses.replace(full, version=2, servers=full.servers[:2])
    changes: asyncio.Queue[HealthSnapshot] = asyncio.Queue()
    monitor = Monitor(first_two, changes.put_nowait)

    async def until(predicate: Callable[[HealthSnapshot], bool]) -> HealthSnapshot:
        async with asyncio.timeout(WAIT):
            while True:
                snap = await changes.get()
                if predicate(snap):
                    return snap

    await monitor.start()
    try:
        snap = await until(
            lambda s: all(h.read_only is not None for h in s.servers.values()) and len(s.servers) == 2
        )
        assert set(snap.servers) == {address(box, 0), address(box, 1)}

        monitor.update_config(full)
        snap = await until(lambda s: address(box, 2) in s.servers)
        assert monitor.config is full

        monitor.update_config(dataclasses.replace(full, version=3, servers=full.servers[1:]))
        snap = await until(lambda s: address(box, 0) not in s.servers)
        assert set(snap.servers) <= {address(box, 1), address(box, 2)}

        # A longer ping interval restarts the checks with the new settings: no ping for a while.
        slow = dict(full.variables)
        slow["mysql-monitor_ping_interval"] = "600000"
        restarted = now_us()
        monitor.update_config(dataclasses.replace(full, version=4, variables=MappingProxyType(slow)))
        async with asyncio.timeout(WAIT):  # the restarted checks ping once at once, then wait
            while {r[:2] for r in monitor.log_rows(PING_LOG) if r[2] >= restarted} != set(
                monitor.snapshot.servers
            ):
                await asyncio.sleep(0.05)
        before = len(monitor.log_rows(PING_LOG))
        await asyncio.sleep(0.6)
        assert len(monitor.log_rows(PING_LOG)) == before
    finally:
        await monitor.stop()
    assert monitor.snapshot.version > 0


async def test_monitor_disabled_checks_nothing(sandbox: Sandbox) -> None:
    config = sandbox_config(sandbox, enabled="false")
    monitor = Monitor(config, lambda _: None)
    await monitor.start()
    await asyncio.sleep(0.5)
    await monitor.stop()
    assert monitor.snapshot.servers == {} and monitor.log_rows(PING_LOG) == []
