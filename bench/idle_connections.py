"""10,000 idle client connections to turnout: the proxy's memory and the backend connections held.

Creates a sandbox (1 master + 2 replicas) and turnout in front of it as a separate process, opens
--connections client connections (TCP + the MySQL handshake as app/app_pass, with turnout's own
sans-IO ClientHandshake over asyncio streams) in batches, and measures:

- the proxy's RSS (VmRSS of every process in its process group, from /proc) before and after;
- the backend connections the servers see (Threads_connected on each node, minus the baseline
  taken before the proxy started) while the clients sit idle;
- the same after every client ran one `SELECT 1` (at most --in-flight at a time, half of them
  routed to the readers, half with `SELECT ... FOR UPDATE`-free writes-hostgroup statements),
  and idle again: with multiplexing, backend connections stay near the statements in flight.

    python -m bench.idle_connections [--connections 10000] [--batch 500] [--in-flight 64]

Results: a summary on stdout and bench/results/idle_connections.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    APP_PASSWORD,
    APP_USER,
    RESULTS_DIR,
    TurnoutProcess,
    connections_by_user,
    install_signal_handlers,
    log,
    machine,
    raise_nofile_limit,
    sandbox,
    tail,
    threads_connected,
    turnout_proxy,
    workdir,
    write_json,
)
from turnout.protocol.client import ClientHandshake
from turnout.protocol.commands import build_query
from turnout.protocol.constants import COM_QUERY
from turnout.protocol.events import AuthDone, AuthFailed
from turnout.protocol.packets import PacketBuffer, encode_packet
from turnout.protocol.response import ResponseFramer

TARGET_RSS_MB = 300


# ---- the proxy's memory ----------------------------------------------------------------------


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
            pids.append(int(entry))
    return pids


def proxy_memory(pgid: int) -> dict[str, Any]:
    """VmRSS and VmHWM (peak) in MB, summed over the proxy's process group."""
    rss = hwm = 0
    pids = group_pids(pgid)
    for pid in pids:
        with contextlib.suppress(OSError):
            rss += _status_kb(pid, "VmRSS")
            hwm += _status_kb(pid, "VmHWM")
    return {"rss_mb": round(rss / 1024, 1), "peak_rss_mb": round(hwm / 1024, 1), "processes": len(pids)}


# ---- clients ---------------------------------------------------------------------------------


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def query(self, sql: str) -> None:
        self.writer.write(encode_packet(build_query(sql), 0))
        framer = ResponseFramer(COM_QUERY)
        while not framer.done:
            data = await self.reader.read(65536)
            if not data:
                raise ConnectionError("the proxy closed the connection during a query")
            framer.feed(data)
        if framer.error is not None:
            raise RuntimeError(f"{sql}: {framer.error}")

    def close(self) -> None:
        self.writer.close()


async def connect(port: int, timeout: float = 60) -> Client:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    handshake = ClientHandshake(username=APP_USER, password=APP_PASSWORD)
    packets = PacketBuffer()
    deadline = time.monotonic() + timeout
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), max(0.1, deadline - time.monotonic()))
            if not data:
                raise ConnectionError("the proxy closed the connection during the handshake")
            packets.feed(data)
            while (packet := packets.next_packet()) is not None:
                outcome = handshake.receive(packet)
                if isinstance(outcome, AuthDone):
                    return Client(reader, writer)
                if isinstance(outcome, AuthFailed):
                    raise ConnectionError(f"login refused: {outcome.error}")
                if outcome is not None:
                    writer.write(outcome)
    except BaseException:
        writer.close()
        raise


async def open_clients(port: int, count: int, batch: int, clients: list[Client]) -> dict[str, Any]:
    failures: list[str] = []
    started = time.monotonic()
    for first in range(0, count, batch):
        size = min(batch, count - first)
        results = await asyncio.gather(*(connect(port) for _ in range(size)), return_exceptions=True)
        for result in results:
            if isinstance(result, Client):
                clients.append(result)
            else:
                failures.append(repr(result))
        if (first // batch) % 4 == 3 or first + size == count:
            log(f"{len(clients)} clients connected, {len(failures)} failed")
    return {
        "connected": len(clients),
        "failed": len(failures),
        "first_failures": failures[:5],
        "seconds": round(time.monotonic() - started, 1),
    }


async def one_query_each(clients: list[Client], in_flight: int) -> dict[str, Any]:
    """Every client runs one statement, at most `in_flight` at a time; even clients read
    (readers hostgroup), odd ones run a non-SELECT statement (the writer hostgroup)."""
    gate = asyncio.Semaphore(in_flight)
    failures: list[str] = []
    peak = 0
    running = 0

    async def run(index: int, client: Client) -> None:
        nonlocal peak, running
        async with gate:
            running += 1
            peak = max(peak, running)
            try:
                await client.query("SELECT 1" if index % 2 == 0 else "DO 1")
            except Exception as exc:
                failures.append(repr(exc))
            finally:
                running -= 1

    started = time.monotonic()
    await asyncio.gather(*(run(i, client) for i, client in enumerate(clients)))
    return {
        "statements": len(clients),
        "failed": len(failures),
        "first_failures": failures[:5],
        "max_in_flight": peak,
        "seconds": round(time.monotonic() - started, 1),
    }


# ---- the benchmark ---------------------------------------------------------------------------


def backend_connections(box: Any, baseline: list[int]) -> dict[str, Any]:
    """Threads_connected minus the baseline on each node, and who those sessions belong to
    (`app`: the clients' statements, `monitor`: the proxy's health checks)."""
    now = threads_connected(box)
    held = [n - b for n, b in zip(now, baseline, strict=True)]
    by_user = connections_by_user(box)
    return {
        "per_node": held,
        "total": sum(held),
        "app_total": sum(node.get(APP_USER, 0) for node in by_user),
        "monitor_total": sum(node.get("monitor", 0) for node in by_user),
        "by_user_per_node": by_user,
    }


async def snapshot(box: Any, baseline: list[int], turnout: TurnoutProcess, clients: int | None) -> dict[str, Any]:
    shot: dict[str, Any] = {} if clients is None else {"clients": clients}
    shot["memory"] = proxy_memory(turnout.proc.pid)
    shot["backend_connections"] = await asyncio.to_thread(backend_connections, box, baseline)
    shot["pool"] = await asyncio.to_thread(turnout.pool_stats)
    return shot


def brief(shot: dict[str, Any]) -> str:
    conns = shot["backend_connections"]
    used = sum(row["ConnUsed"] for row in shot["pool"]) if shot["pool"] else "?"
    free = sum(row["ConnFree"] for row in shot["pool"]) if shot["pool"] else "?"
    return (f"RSS {shot['memory']['rss_mb']} MB, backend connections {conns['total']} {conns['per_node']} "
            f"(app {conns['app_total']}, monitor {conns['monitor_total']}), pool used {used} free {free}")


async def measure(args: argparse.Namespace, box: Any, baseline: list[int], turnout: TurnoutProcess) -> dict[str, Any]:
    port = turnout.port
    result: dict[str, Any] = {}
    await asyncio.sleep(args.settle)
    result["proxy_started"] = await snapshot(box, baseline, turnout, None)
    log(f"proxy started: {brief(result['proxy_started'])}")
    clients: list[Client] = []
    try:
        result["connect"] = await open_clients(port, args.connections, args.batch, clients)
        await asyncio.sleep(args.settle)
        result["idle_after_login"] = await snapshot(box, baseline, turnout, len(clients))
        log(f"idle after login: {brief(result['idle_after_login'])}")
        result["queries"] = await one_query_each(clients, args.in_flight)
        log(f"one statement each: {result['queries']}")
        await asyncio.sleep(args.settle)
        result["idle_after_one_statement_each"] = await snapshot(box, baseline, turnout, len(clients))
        log(f"idle after one statement each: {brief(result['idle_after_one_statement_each'])}")
    finally:
        for client in clients:
            client.close()
    await asyncio.sleep(args.settle)
    result["after_disconnect"] = await snapshot(box, baseline, turnout, 0)
    log(f"all clients gone: {brief(result['after_disconnect'])}")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=10000, help="idle client connections (default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="connections opened concurrently (default 500)")
    parser.add_argument("--in-flight", type=int, default=64, help="statements in flight in the query phase (default 64)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each measurement (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="turnout's data-path processes, when supported")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "idle_connections.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    started_on = machine()  # the commit measured: HEAD when the run starts
    # Client sockets here, client + backend sockets in the proxy (inherits the limit).
    limit = raise_nofile_limit(args.connections + 2048)
    if limit < args.connections + 256:
        print(f"RLIMIT_NOFILE is {limit}: too low for {args.connections} connections", file=sys.stderr)
        return 2
    with workdir("turnout-bench-") as work, sandbox(work) as box:
        baseline = threads_connected(box)
        with turnout_proxy(box, work, workers=args.workers) as turnout:
            try:
                import uvloop
            except ImportError:
                runner = asyncio.run
            else:
                runner = uvloop.run
            result = runner(measure(args, box, baseline, turnout))
            alive = turnout.proc.poll() is None
            proxy_log = tail(turnout.log_path, 30)
            command = turnout.command
        if not alive:
            log(f"turnout exited during the benchmark; its log:\n{proxy_log}")
    idle = result["idle_after_login"]
    after = result["idle_after_one_statement_each"]
    data = {
        "benchmark": "idle_connections",
        "machine": started_on,
        "settings": {
            "connections": args.connections, "batch": args.batch, "in_flight": args.in_flight,
            "settle_seconds": args.settle, "rlimit_nofile": limit,
        },
        "turnout_command": command.how,
        "turnout_workers": command.workers,
        "target": {"rss_mb_below": TARGET_RSS_MB, "idle_backend_connections": "no more than statements in flight"},
        **result,
        "proxy_alive": alive,
        "proxy_log_tail": proxy_log,
    }
    path = write_json(args.output, data)
    print()
    print(f"clients connected:                      {result['connect']['connected']} "
          f"({result['connect']['failed']} failed, {result['connect']['seconds']} s)")
    print(f"proxy RSS, started:                     {result['proxy_started']['memory']['rss_mb']} MB")
    print(f"proxy RSS, {idle['clients']} idle clients:          {idle['memory']['rss_mb']} MB "
          f"(target < {TARGET_RSS_MB} MB)")
    print(f"backend connections, idle after login:  {idle['backend_connections']['total']} "
          f"{idle['backend_connections']['per_node']} (app {idle['backend_connections']['app_total']}, "
          f"monitor {idle['backend_connections']['monitor_total']})")
    print(f"one statement per client:               max {result['queries']['max_in_flight']} in flight, "
          f"{result['queries']['failed']} failed")
    print(f"proxy RSS after that:                   {after['memory']['rss_mb']} MB "
          f"(peak {after['memory']['peak_rss_mb']} MB)")
    print(f"backend connections, idle again:        {after['backend_connections']['total']} "
          f"{after['backend_connections']['per_node']} (app {after['backend_connections']['app_total']}, "
          f"monitor {after['backend_connections']['monitor_total']})")
    print(f"  of which used by sessions (ConnUsed):  {sum(r['ConnUsed'] for r in after['pool']) if after['pool'] else '?'}; "
          f"idle in the pool (ConnFree): {sum(r['ConnFree'] for r in after['pool']) if after['pool'] else '?'}")
    print(f"\nresults: {path}")
    return 0 if alive and not result["connect"]["failed"] and not result["queries"]["failed"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
