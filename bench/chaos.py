"""Chaos: kill -9 failovers and graceful takeovers, alternating, under load (not run in CI).

One 3-server semi-synchronous MariaDB sandbox and one `turnout up` in front of it for the whole
run. Through the proxy, all the time: sysbench oltp_read_write (errors ignored, so it reconnects
and goes on; its per-second error and reconnect counts are kept) and an acknowledged-write
checker (`turnout.workload`: numbered inserts, every acknowledged one remembered, into a table
where a write run twice would show up as two rows). Then N kill -9 of the master and N graceful
takeovers, alternating; each killed master is restarted, rebuilt from the new master when it holds
transactions the new master never received, made a semi-sync replica again and unfenced (the
events themselves are `bench.switchover_pause`'s).

Reported: acknowledged writes lost on the final master (target 0), writes found twice (target
0), client errors per event by kind (the checker's by error code, sysbench's errors and
reconnects), the write pause distribution per kind of event, the sysbench tables' checksums on
the three servers at the end, and the proxy process's RSS and open file descriptors sampled
every second over the run.

    python -m bench.chaos --events 100            # 100 kills + 100 takeovers, about 30 minutes
    python -m bench.chaos --events 10             # a shorter run
    python -m bench.chaos --events 5 --transaction-replay off --out bench/results/chaos_replay_off.json

`--transaction-replay off` turns mysql-transaction_replay off (turnout up turns it on): client
errors per event before and after transaction replay.

Writes bench/results/chaos.json.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    child,
    log,
    machine,
    sysbench_args,
    tail,
    workdir,
    write_json,
)
from bench.switchover_pause import (
    STATE_FILE,
    BenchFailed,
    Event,
    Turnout,
    _plan,
    kill,
    node_of,
    run_bench,
    settled,
    takeover,
    wait_until,
)
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox
from turnout.workload import Workload, checker_schema, duplicated_writes, missing_writes

CHECKER_TABLE = "chaos.acks"
DATABASES = ("chaos", "sbtest")  # what a rebuilt master gets from the new one


# ---- sysbench, for the whole run ---------------------------------------------------------------

# Listed, not "all": sysbench reconnects after a lost connection only for codes listed explicitly
# (akopytov/sysbench#461). 1213: InnoDB's deadlocks between its own threads, or a transaction the
# takeover's drain ended; 1205 lock wait timeout; 2013/2006/2055 lost connection; 1927 killed.
# Any other error ends the segment (counted as a sysbench exit, the message in its log).
IGNORED = "1213,1205,2013,2006,2055,1927"

INTERVAL = re.compile(r"^\[ *(\d+)s \].*?tps: ([\d.]+).*?err/s: ([\d.]+) reconn/s: ([\d.]+)")


@dataclass
class SysbenchSecond:
    at: float  # time.time() at the end of the second
    tps: float
    errors: float
    reconnects: float


class Sysbench:
    """sysbench oltp_read_write through the proxy, run in back-to-back segments until stopped,
    with --report-interval=1 so every second's errors and reconnects can be put on a timeline."""

    def __init__(self, port: int, threads: int, tables: int, table_size: int, segment_seconds: int, log_path: Path,
                 ps_mode: str = "disable"):
        self.argv = ["sysbench", "oltp_read_write", *sysbench_args(port, tables, table_size, threads),
                     f"--time={segment_seconds}", "--report-interval=1", f"--db-ps-mode={ps_mode}",
                     f"--mysql-ignore-errors={IGNORED}", "--rand-type=uniform", "run"]
        self.log_path = log_path
        self.seconds: list[SysbenchSecond] = []
        self.exits: list[tuple[float, int]] = []  # (time.time(), exit code) of each segment
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        with open(self.log_path, "w") as out:
            while not self._stop.is_set():
                started = time.time()
                self._proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                assert self._proc.stdout is not None
                offset: float | None = None
                for line in self._proc.stdout:
                    out.write(line)
                    found = INTERVAL.match(line)
                    if found:
                        second = int(found.group(1))
                        if offset is None:
                            # sysbench's clock starts once its threads are up, not at Popen: the
                            # first report's arrival says when (its reports are written per line)
                            late = time.time() - (started + second)
                            offset = late if 0 <= late < 5 else 0.0
                        self.seconds.append(SysbenchSecond(started + offset + second, float(found.group(2)),
                                                           float(found.group(3)), float(found.group(4))))
                self.exits.append((time.time(), self._proc.wait()))

    def between(self, start: float, end: float) -> dict[str, int]:
        # a reported second goes to the event that had started by its end (the events are seconds
        # apart, and what an event breaks, it breaks at once)
        chosen = [s for s in self.seconds if start < s.at <= end]
        crashed = [code for at, code in self.exits if start < at <= end and code not in (0, -15)]
        return {"sysbench errors": round(sum(s.errors for s in chosen)),
                "sysbench reconnects": round(sum(s.reconnects for s in chosen)),
                "sysbench exits": len(crashed)}


def steady_errors(bench: Sysbench, events: list[ChaosEvent], end: float, settle: float = 3.0) -> dict[str, float]:
    """sysbench's own error rate away from the events (InnoDB's deadlocks between its threads,
    1213, happen with or without a proxy): the seconds more than `settle` s after writes resumed."""
    windows = [(e.event.resumed + settle, e.event.ended) for e in events]
    chosen = [s for s in bench.seconds if any(a < s.at <= b for a, b in windows)]
    errors = sum(s.errors for s in chosen)
    return {"seconds": len(chosen), "errors": round(errors), "errors_per_second": round(errors / len(chosen), 3)
            if chosen else 0.0}


# ---- the proxy process, sampled -------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss_kb: int
    fds: int


class ProcessSampler:
    def __init__(self, pid: int, every: float = 1.0) -> None:
        self.pid, self.every = pid, every
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def sample(self) -> Sample | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            return Sample(time.time(), rss, len(os.listdir(f"/proc/{self.pid}/fd")))
        except (OSError, StopIteration):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            sample = self.sample()
            if sample is not None:
                self.samples.append(sample)


# ---- reporting ---------------------------------------------------------------------------------------


@dataclass
class ChaosEvent:
    event: Event
    errors: dict[str, int] = field(default_factory=dict)
    rss_kb: int = 0
    fds: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pause_distribution(events: list[ChaosEvent], kind: str) -> dict[str, Any]:
    pauses = [e.event.write_pause_s for e in events if e.event.kind == kind]
    if not pauses:
        return {}
    return {"events": len(pauses), "p50_s": round(statistics.median(pauses), 3),
            "p90_s": round(percentile(pauses, 0.9), 3), "p99_s": round(percentile(pauses, 0.99), 3),
            "max_s": round(max(pauses), 3), "min_s": round(min(pauses), 3)}


def errors_by_kind(events: list[ChaosEvent], kind: str) -> dict[str, Any]:
    chosen = [e for e in events if e.event.kind == kind]
    total: collections.Counter[str] = collections.Counter()
    for e in chosen:
        total.update(e.errors)
    per_event = {name: round(n / len(chosen), 2) for name, n in sorted(total.items())} if chosen else {}
    return {"total": dict(sorted(total.items())), "per_event": per_event}


def resources(samples: list[Sample]) -> dict[str, Any]:
    if not samples:
        return {}
    tenth = max(1, len(samples) // 10)
    first, last = samples[:tenth], samples[-tenth:]
    return {
        "samples": len(samples),
        "rss_mb_first_tenth_median": round(statistics.median(s.rss_kb for s in first) / 1024, 1),
        "rss_mb_last_tenth_median": round(statistics.median(s.rss_kb for s in last) / 1024, 1),
        "rss_mb_max": round(max(s.rss_kb for s in samples) / 1024, 1),
        "fds_first_tenth_median": statistics.median(s.fds for s in first),
        "fds_last_tenth_median": statistics.median(s.fds for s in last),
        "fds_max": max(s.fds for s in samples),
    }


# ---- the run -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    events: list[ChaosEvent] = []
    result: dict[str, Any] = {}
    with workdir("turnout-chaos-") as tmp:
        base = free_port_block(3)
        log(f"starting a 3-server semi-sync sandbox on ports {base}..{base + 2}")
        box = Sandbox.create(tmp / "sandbox", base, 2, semi_sync=True)
        workload: Workload | None = None
        bench: Sysbench | None = None
        sampler: ProcessSampler | None = None
        turnout: Turnout | None = None
        failure = ""
        try:
            ports = free_port_block(3)
            datadir = tmp / "data"
            config = tmp / "turnout.toml"
            config.write_text(sandbox_config(box, datadir, ports, ports + 1, api_port=ports + 2,
                                               monitor_interval_ms=args.monitor_interval_ms))
            turnout = Turnout(ports, ports + 1, ports + 2, tmp / "turnout.log")
            with child([sys.executable, "-m", "turnout.cli", "up", "--config", str(config)], turnout.log_path) as proc:
                wait_until(lambda: proc.poll() is None and turnout.master() is not None, 30,
                           "the manager to discover the sandbox", 0.1)
                set_transaction_replay(turnout, args.transaction_replay == "on")
                box.execute(0, "CREATE DATABASE IF NOT EXISTS sbtest")
                prepare = ["sysbench", "oltp_read_write", *sysbench_args(ports, args.tables, args.table_size, 2),
                           "prepare"]
                wait_until(lambda: subprocess.run(prepare, capture_output=True, timeout=600).returncode == 0, 120,
                           "sysbench prepare through the proxy", 0.5)
                box.wait_replicas_caught_up(timeout=120)
                workload = Workload(ports, writers=args.writers, readers=args.readers, table=CHECKER_TABLE,
                                    schema=checker_schema(CHECKER_TABLE))
                workload.create_schema()
                box.wait_replicas_caught_up(timeout=60)
                sampler = ProcessSampler(proc.pid)
                sampler.start()
                workload.start()
                bench = Sysbench(ports, args.sysbench_threads, args.tables, args.table_size, 60,
                                 args.out.parent / "chaos_sysbench.log", args.sysbench_ps_mode)
                bench.start()
                log(f"load: sysbench oltp_read_write ({args.sysbench_threads} threads) + {args.writers} checked "
                    f"writers + {args.readers} readers; {args.events} kills and {args.events} takeovers")
                time.sleep(args.steady_seconds)
                mastered = {turnout.master() or "": 1}
                for kind, number in _plan(args.events, args.events):
                    if proc.poll() is not None:
                        raise BenchFailed(f"turnout exited with {proc.returncode}")
                    try:
                        if kind == "takeover":
                            event = takeover(box, turnout, workload, number, mastered)
                        else:
                            event = kill(box, turnout, workload, datadir / STATE_FILE, number, DATABASES)
                    except BenchFailed as exc:
                        failure = f"{kind} {number}: {exc}"
                        log(f"FAILED: {failure}")
                        break
                    mastered[event.new_master] = mastered.get(event.new_master, 0) + 1
                    if events:
                        events[-1].event.ended = event.started
                    sample = sampler.sample()
                    events.append(ChaosEvent(event, rss_kb=sample.rss_kb if sample else 0,
                                             fds=sample.fds if sample else 0))
                    log(f"{kind} {number}: {event.old_master} -> {event.new_master}, write pause "
                        f"{event.write_pause_s * 1000:.0f} ms; proxy RSS {events[-1].rss_kb / 1024:.1f} MB, "
                        f"{events[-1].fds} fds{'; ' + event.rejoin if event.rejoin and 're-pointed' not in event.rejoin else ''}")
                    time.sleep(args.steady_seconds)
                final_master = settled(box, turnout)
                end = time.time()
                if events:
                    events[-1].event.ended = end
                bench.stop()
                workload.stop()
                sampler.stop()
                for chaos in events:
                    counts: collections.Counter[str] = collections.Counter()
                    for error in workload.errors_between(chaos.event.started, chaos.event.ended):
                        counts[f"checker {error.kind} {error.code}"] += 1
                    counts.update({k: v for k, v in bench.between(chaos.event.started, chaos.event.ended).items() if v})
                    chaos.errors = dict(sorted(counts.items()))
                box.wait_replicas_caught_up(timeout=120)
                master = node_of(box, final_master)
                rows = [(r["writer"], r["seq"]) for r in box.execute(master.index, f"SELECT writer, seq FROM {CHECKER_TABLE}")]
                counters = workload.counters
                tables = ", ".join(f"sbtest.sbtest{i}" for i in range(1, args.tables + 1))
                checksums = [[r["Checksum"] for r in box.execute(n.index, f"CHECKSUM TABLE {tables}")] for n in box.nodes]
                result = {
                    "events_done": {k: sum(1 for e in events if e.event.kind == k) for k in ("kill", "takeover")},
                    "failure": failure,
                    "acknowledged_writes": counters.writes,
                    "acknowledged_writes_lost": len(missing_writes(counters.acknowledged, rows)),
                    "duplicated_writes": len(duplicated_writes(rows)),
                    "unacknowledged_writes_found": len(set(rows) - counters.acknowledged),
                    "reads": counters.reads,
                    "checker_errors_outside_events": len(workload.errors_between(0, events[0].event.started))
                    if events else 0,
                    "sysbench": {"transactions": round(sum(s.tps for s in bench.seconds)),
                                 "errors": round(sum(s.errors for s in bench.seconds)),
                                 "reconnects": round(sum(s.reconnects for s in bench.seconds)),
                                 "segments": len(bench.exits),
                                 "segment_exit_codes": dict(collections.Counter(code for _, code in bench.exits))},
                    "sysbench_errors_in_steady_load": steady_errors(bench, events, end),
                    "sbtest_checksums_equal_on_all_servers": all(c == checksums[0] for c in checksums),
                    "write_pause": {k: pause_distribution(events, k) for k in ("kill", "takeover")},
                    "client_errors": {k: errors_by_kind(events, k) for k in ("kill", "takeover")},
                    "proxy_process": resources(sampler.samples),
                    "final_master": final_master,
                    "transaction_replay": replay_counters(turnout),
                    "times_master": dict(sorted(mastered.items())),
                }
        except BaseException:
            if turnout is not None:
                log(f"turnout log (last lines):\n{tail(turnout.log_path, 60)}")
            raise
        finally:
            for stoppable in (bench, workload, sampler):
                if stoppable is not None:
                    stoppable.stop()
            log("stopping the sandbox")
            box.down(destroy=True)

    data = {
        "benchmark": "chaos", "machine": machine(),
        "settings": {"events_each": args.events, "steady_seconds": args.steady_seconds, "writers": args.writers,
                     "readers": args.readers, "sysbench_threads": args.sysbench_threads, "tables": args.tables,
                     "table_size": args.table_size, "semi_sync": True, "monitor_interval_ms": args.monitor_interval_ms,
                     "transaction_replay": args.transaction_replay, "sysbench_ps_mode": args.sysbench_ps_mode},
        **result,
        "events": [{"kind": e.event.kind, "number": e.event.number, "from": e.event.old_master,
                    "to": e.event.new_master, "write_pause_s": round(e.event.write_pause_s, 4),
                    "kill_to_first_write_s": None if e.event.kill_to_first_write_s is None
                    else round(e.event.kill_to_first_write_s, 4),
                    "errors": e.errors, "proxy_rss_kb": e.rss_kb, "proxy_fds": e.fds, "rejoin": e.event.rejoin}
                   for e in events],
    }
    out = write_json(args.out, data)
    print_summary(data)
    log(f"wrote {out}")
    ok = (not failure and result.get("acknowledged_writes_lost") == 0 and result.get("duplicated_writes") == 0)
    return 0 if ok else 1


def _admin(turnout: Turnout) -> Any:
    import pymysql

    return pymysql.connect(host="127.0.0.1", port=turnout.admin_port, user="admin", password="admin", autocommit=True)


def set_transaction_replay(turnout: Turnout, on: bool) -> None:
    with _admin(turnout) as conn, conn.cursor() as cur:
        cur.execute("UPDATE global_variables SET variable_value = %s WHERE variable_name = 'mysql-transaction_replay'",
                    ("true" if on else "false",))
        cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")


def replay_counters(turnout: Turnout) -> dict[str, int]:
    with _admin(turnout) as conn, conn.cursor() as cur:
        cur.execute("SELECT Variable_Name, Variable_Value FROM stats_mysql_global "
                    "WHERE Variable_Name LIKE 'Transaction_replays%'")
        return {str(name): int(value) for name, value in cur.fetchall()}


def print_summary(data: dict[str, Any]) -> None:
    print()
    for key in ("events_done", "failure", "acknowledged_writes", "acknowledged_writes_lost", "duplicated_writes",
                "unacknowledged_writes_found", "sysbench", "sysbench_errors_in_steady_load",
                "sbtest_checksums_equal_on_all_servers", "write_pause",
                "client_errors", "proxy_process", "transaction_replay"):
        print(f"{key}: {data.get(key)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100, help="kills, and as many takeovers")
    parser.add_argument("--steady-seconds", type=float, default=2.0, help="steady load between events")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--sysbench-threads", type=int, default=4)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=10000)
    parser.add_argument("--monitor-interval-ms", type=int, default=500)
    parser.add_argument("--sysbench-ps-mode", default="disable", choices=("disable", "auto"),
                        help="sysbench 1.0.20 can crash (SIGSEGV) reconnecting with server-side prepared statements")
    parser.add_argument("--transaction-replay", default="on", choices=("on", "off"),
                        help="mysql-transaction_replay for the run (turnout up's default: on)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "chaos.json")
    return run_bench(run, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
