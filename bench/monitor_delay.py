"""How long a health change takes to reach routing.

Measures, on a real 1 master + 1 replica sandbox, the delay from
  - a read_only flip on the replica (OFF: a second writer, writes refused; ON: writes resume)
  - a kill -9 of the replica (its reader row SHUNNED)
to the RoutingSnapshot change (the `on_routing` callback), over several repetitions.

    .venv/bin/python -m bench.monitor_delay [--reps 10] [--kills 5] [--read-only-interval 1500]

Expected: a read_only flip within one read_only interval plus a few ms; a kill within one
read_only (or ping) interval, as the first check after the kill finds the connection closed and
the reconnect refused.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.monitor.logs import READ_ONLY_LOG
from turnout.monitor.routing import RoutingSnapshot
from turnout.monitor.service import MonitoredRouting
from turnout.sandbox.config import MONITOR
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

WRITER, READER = 10, 20


class Stamps:
    """The time of every routing change, to find the first one that satisfies a condition."""

    def __init__(self) -> None:
        self.events: list[tuple[float, RoutingSnapshot]] = []

    def __call__(self, snap: RoutingSnapshot) -> None:
        self.events.append((time.perf_counter(), snap))

    def first_after(self, start: float, predicate: Callable[[RoutingSnapshot], bool]) -> float | None:
        for at, snap in self.events:
            if at >= start and predicate(snap):
                return at - start
        return None


async def measure(
    service: MonitoredRouting,
    stamps: Stamps,
    action: Callable[[], object],
    predicate: Callable[[RoutingSnapshot], bool],
    phase_s: float,
) -> float:
    # A random phase against the check schedule, so the delays spread over the whole interval
    # instead of all landing just after a check.
    await asyncio.sleep(random.uniform(0, phase_s))
    start = time.perf_counter()
    await asyncio.to_thread(action)
    await service.wait_for(predicate, 60)
    delay = stamps.first_after(start, predicate)
    assert delay is not None
    return delay


def report(name: str, delays: list[float]) -> None:
    ms = sorted(d * 1000 for d in delays)
    if not ms:
        return
    print(f"{name:<36} n={len(ms):<3} p50={statistics.median(ms):7.1f} ms  max={ms[-1]:7.1f} ms")


async def run(box: Sandbox, reps: int, kills: int, interval_ms: int) -> None:
    master, replica = (("127.0.0.1", node.port) for node in box.nodes)
    variables = {
        "mysql-monitor_username": MONITOR.user,
        "mysql-monitor_password": MONITOR.password,
        "mysql-monitor_read_only_interval": str(interval_ms),
    }
    config = RuntimeConfig(
        version=1,
        servers=(MysqlServer(WRITER, *master), MysqlServer(READER, *replica)),
        replication_hostgroups=(ReplicationHostgroup(WRITER, READER),),
        variables=MappingProxyType(variables),
    )
    stamps = Stamps()
    service = MonitoredRouting(config, stamps)
    await service.start()
    try:

        def reader_status(snap: RoutingSnapshot) -> str | None:
            return next((s.status for s in snap.rows(READER) if s.address == replica), None)

        await service.wait_for(lambda s: s.writer(WRITER) == master and reader_status(s) == "ONLINE", 60)
        to_off, to_on, killed = [], [], []
        for _ in range(reps):
            to_off.append(
                await measure(
                    service,
                    stamps,
                    lambda: box.execute(1, "SET GLOBAL read_only = 0"),
                    lambda s: WRITER in s.write_blocked,
                    interval_ms / 1000,
                )
            )
            to_on.append(
                await measure(
                    service,
                    stamps,
                    lambda: box.execute(1, "SET GLOBAL read_only = 1"),
                    lambda s: s.write_blocked == {} and s.writer(WRITER) == master,
                    interval_ms / 1000,
                )
            )
        failed = [r for r in service.monitor.log_rows(READ_ONLY_LOG) if r[5] is not None]
        for _ in range(kills):
            killed.append(
                await measure(
                    service,
                    stamps,
                    lambda: box.kill(1),
                    lambda s: reader_status(s) == "SHUNNED",
                    interval_ms / 1000,
                )
            )
            await asyncio.to_thread(box.start, 1)
            await asyncio.to_thread(box.execute, 1, "START SLAVE")
            await service.wait_for(lambda s: reader_status(s) == "ONLINE", 60)
    finally:
        await service.stop()
    print(
        f"mysql-monitor_read_only_interval={interval_ms} ms, ping_interval=10000 ms (ProxySQL defaults otherwise)"
    )
    report("read_only OFF -> writes refused", to_off)
    report("read_only ON -> writes resume", to_on)
    report("kill -9 -> reader SHUNNED", killed)
    print(
        f"read_only checks that failed during the flips: {len(failed)} {sorted({str(r[5]) for r in failed})}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--read-only-interval", type=int, default=1500, help="ms; ProxySQL's default is 1500")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="turnout-bench-") as tmp:
        box = Sandbox.create(Path(tmp) / "sbx", free_port_block(2), replicas=1)
        try:
            asyncio.run(run(box, args.reps, args.kills, args.read_only_interval))
        finally:
            box.down(destroy=True)


if __name__ == "__main__":
    main()
