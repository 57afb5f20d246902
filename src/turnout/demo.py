"""`turnout demo`: a 3-server semi-sync sandbox behind turnout, a workload, a graceful takeover
and a kill -9 of the master, with a timeline of what the application saw."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
from rich.live import Live
from rich.table import Table

from turnout.api.client import call, master_of
from turnout.output import UserError, console
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.sandbox import Sandbox, SandboxError, port_in_use
from turnout.workload import TABLE, Workload, missing_writes


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the demo on a local 3-server sandbox")
    demo.add_argument("--base-port", type=int, default=23306, help="sandbox ports; turnout uses base+10..12")
    demo.add_argument("--steady-seconds", type=float, default=5.0, help="workload time between events")
    demo.add_argument("--console-seconds", type=float, default=15.0,
                      help="time to open the web console before the first event")
    demo.set_defaults(handler=_demo)


@dataclass
class Event:
    name: str
    started: float
    finished: float = 0.0
    write_pause: float = 0.0
    errors: int = 0
    detail: str = ""


@dataclass
class DemoResult:
    events: list[Event] = field(default_factory=list)
    writes: int = 0
    reads: int = 0
    errors: int = 0
    missing: int = 0
    final_master: str = ""
    error_messages: list[str] = field(default_factory=list)


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, timeout: float = 60) -> Any:
        return call(self.base, path, timeout)

    def cluster(self) -> dict[str, Any] | None:
        try:
            clusters = self.get("clusters-info", timeout=5)
        except UserError:  # not up yet
            return None
        return clusters[0] if clusters else None

    def master(self) -> str | None:
        cluster = self.cluster()
        return master_of(cluster) if cluster else None


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise UserError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_demo(
    base_port: int,
    workdir: Path,
    steady_seconds: float = 5.0,
    show: Callable[[Table], None] | None = None,
    say: Callable[[str], None] = lambda _: None,
    console_seconds: float = 0.0,
) -> DemoResult:
    ports = [base_port + 10, base_port + 11, base_port + 12]
    busy = [p for p in ports if port_in_use(p)]
    if busy:
        raise UserError(f"port {busy[0]} is in use; choose another --base-port")
    say("starting a 3-server MariaDB sandbox with semi-synchronous replication")
    box = Sandbox.create(workdir / "sandbox", base_port, 2, semi_sync=True, progress=say)
    process: subprocess.Popen[bytes] | None = None
    result = DemoResult()
    try:
        config = workdir / "turnout.toml"
        config.write_text(sandbox_config(box, workdir / "data", ports[0], ports[1], api_port=ports[2]))
        say(f"starting turnout (proxy on 127.0.0.1:{ports[0]}, admin on {ports[1]}, API on {ports[2]})")
        log = open(workdir / "turnout.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "turnout.cli", "up", "--config", str(config)], stdout=log, stderr=log
        )
        api = Api(ports[2])
        _wait(lambda: api.master() is not None, 30, "the manager to discover the sandbox")
        workload = Workload(ports[0])
        _wait(lambda: _try(workload.create_schema), 20, "the proxy to accept writes")
        workload.start()
        say("workload running: 2 writers and 2 readers through the proxy")
        say(f"web console: http://127.0.0.1:{ports[2]}/ (open it to watch the takeover and the failover live)")
        _steady(workload, api, max(steady_seconds, console_seconds), show)

        old = api.master() or ""
        new = f"127.0.0.1:{box.nodes[1].port}" if not old.endswith(str(box.nodes[1].port)) else f"127.0.0.1:{box.nodes[2].port}"
        cluster = api.cluster() or {}
        event = Event("graceful master takeover", time.time(), detail=f"{old} -> {new}")
        say(f"graceful master takeover: {old} -> {new}")
        host, port = new.split(":")
        try:
            api.get(f"graceful-master-takeover-auto/{cluster.get('ClusterName')}/{host}/{port}")
        except UserError as exc:
            event.detail += f" (API answered: {exc})"
        _wait(lambda: api.master() == new, 30, "the takeover to be published")
        _wait(lambda: _writes_after(workload, time.time() - 0.01), 30, "writes to resume after the takeover")
        event.finished = time.time()
        result.events.append(event)
        _steady(workload, api, steady_seconds, show)

        victim = api.master() or ""
        victim_index = box.index_of_port(int(victim.split(":")[1]))
        assert victim_index is not None
        event = Event("kill -9 of the master", time.time(), detail=victim)
        say(f"kill -9 of the master {victim}")
        box.kill(victim_index)
        _wait(lambda: api.master() not in (None, victim), 60, "the manager to promote a replica")
        _wait(lambda: _writes_after(workload, time.time() - 0.01), 30, "writes to resume after the failover")
        event.finished = time.time()
        event.detail += f" -> {api.master()}"
        result.events.append(event)
        _steady(workload, api, steady_seconds, show)
        workload.stop()

        for ev in result.events:
            ev.write_pause = workload.write_pause(ev.started, ev.finished)
            ev.errors = len([e for e in workload.errors_between(ev.started, ev.finished) if e.kind == "write"])
        result.final_master = api.master() or ""
        master_index = box.index_of_port(int(result.final_master.split(":")[1]))
        assert master_index is not None
        rows = box.execute(master_index, f"SELECT writer, seq FROM {TABLE}")
        counters = workload.counters
        result.writes, result.reads, result.errors = counters.writes, counters.reads, len(counters.errors)
        result.missing = len(missing_writes(counters.acknowledged, [(r["writer"], r["seq"]) for r in rows]))
        result.error_messages = sorted({f"{e.kind}: {e.code} {e.message}" for e in counters.errors})[:10]
        return result
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        box.down(destroy=True)


def _try(fn: Callable[[], None]) -> bool:
    try:
        fn()
    except pymysql.err.MySQLError:
        return False
    return True


def _writes_after(workload: Workload, since: float) -> bool:
    return any(t > since for t in workload.counters.write_times[-50:])


def _status_table(workload: Workload, api: Api, window: float = 1.0) -> Table:
    now = time.time()
    counters = workload.counters
    recent_writes = len([t for t in counters.write_times[-5000:] if t > now - window])
    table = Table(show_header=True, header_style="bold")
    for col in ("writes/s", "reads total", "errors", "master"):
        table.add_column(col)
    table.add_row(str(recent_writes), str(counters.reads), str(len(counters.errors)), api.master() or "?")
    return table


def _steady(workload: Workload, api: Api, seconds: float, show: Callable[[Table], None] | None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if show is not None:
            show(_status_table(workload, api))
        time.sleep(0.5)


def _demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="turnout-demo-") as tmp:
        try:
            with Live(console=console, refresh_per_second=4) as live:
                result = run_demo(
                    args.base_port, Path(tmp), args.steady_seconds, show=live.update,
                    say=lambda text: console.print(f"[dim]·[/] {text}", highlight=False),
                    console_seconds=args.console_seconds,
                )
        except SandboxError as exc:
            raise UserError(str(exc)) from exc
    console.print()
    timeline = Table(title="timeline", header_style="bold")
    for col in ("event", "detail", "write pause", "write errors"):
        timeline.add_column(col)
    for event in result.events:
        timeline.add_row(event.name, event.detail, f"{event.write_pause * 1000:.0f} ms", str(event.errors))
    console.print(timeline)
    summary = Table(title="summary", header_style="bold")
    for col in ("writes acknowledged", "reads", "client errors", "acknowledged writes missing", "master now"):
        summary.add_column(col)
    summary.add_row(str(result.writes), str(result.reads), str(result.errors), str(result.missing), result.final_master)
    console.print(summary)
    if result.error_messages:
        console.print("errors the application saw (a statement in flight on a killed master is never retried:")
        console.print("it may have executed there):")
    for message in result.error_messages:
        console.print(f"  [yellow]{message}[/]", highlight=False)
    return 0 if result.missing == 0 else 1
