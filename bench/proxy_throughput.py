"""sysbench through nothing, HAProxy and turnout: QPS and p95 latency, interleaved.

Creates a sandbox (1 master + 2 replicas), prepares sysbench's tables once on the master, then
runs each workload against (a) the master directly, (b) HAProxy in TCP mode in front of the
master, (c) HAProxy in TCP mode balancing over the two replicas, (d) turnout with the read/write
split (`^SELECT.*FOR UPDATE` -> writers 10, `^SELECT` -> readers 20), interleaved round by round,
and reports medians and ratios. (c) is the like-for-like baseline for point selects: the same
servers get the same reads, so the ratio measures the proxy and not the topology.

    python -m bench.proxy_throughput [--seconds 12] [--rounds 3] [--threads 8] [--workers 1]

Results: a table on stdout and bench/results/proxy_throughput.json.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS_DIR,
    SysbenchFailed,
    haproxy,
    install_signal_handlers,
    log,
    machine,
    median,
    status_counters,
    sysbench_prepare,
    sysbench_run,
    tail,
    turnout_proxy,
    workdir,
    write_json,
)
from turnout.compiled import data_path_compiled

# haproxy: in front of the master alone; haproxy-replicas: round robin over the two replicas,
# the servers turnout's split sends point selects to (the same load on the same servers).
TARGETS = ("direct", "haproxy", "haproxy-replicas", "turnout")
BASELINES = ("direct", "haproxy", "haproxy-replicas")
BARE = "turnout-bare"  # --bare: the data path alone (bench.proxy_runner), no admin, no monitor
WORKLOADS = ("oltp_point_select", "oltp_read_only")
COUNTERS = ("Com_select",)  # counts prepared SELECTs executed too


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=12, help="length of each sysbench run (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of direct/haproxy/turnout per workload (default 3)")
    parser.add_argument("--threads", type=int, default=8, help="sysbench threads (default 8)")
    parser.add_argument("--workers", type=int, default=1, help="turnout's data-path processes, when `turnout proxy --workers` exists (default 1)")
    parser.add_argument("--tables", type=int, default=4, help="sysbench tables (default 4)")
    parser.add_argument("--table-size", type=int, default=10000, help="rows per table (default 10000)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated sysbench workloads")
    parser.add_argument("--bare", action="store_true",
                        help="also run turnout's data path alone (no admin, no monitor) as a fourth target")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "proxy_throughput.json")
    return parser.parse_args(argv)


def summarise(runs: list[dict[str, Any]], workloads: list[str], targets: tuple[str, ...] = TARGETS) -> list[dict[str, Any]]:
    rows = []
    baselines = [b for b in BASELINES if b in targets]
    for workload in workloads:
        medians: dict[str, dict[str, float]] = {}
        for target in targets:
            mine = [r for r in runs if r["workload"] == workload and r["target"] == target and "qps" in r]
            medians[target] = {
                "qps": median([r["qps"] for r in mine]),
                "p95_ms": median([r["p95_ms"] for r in mine]),
                "runs": len(mine),
            }
        # Paired ratios: each run against the baseline's run of the same round, so load from
        # elsewhere on the machine that lasts a round cancels out; then the median over rounds.
        for target in targets:
            m = medians[target]
            row: dict[str, Any] = {
                "target": target, "workload": workload, "qps": round(m["qps"], 1), "p95_ms": m["p95_ms"], "runs": m["runs"],
            }
            for baseline in baselines:
                ratios = []
                for r in runs:
                    if r["workload"] != workload or r["target"] != target or "qps" not in r:
                        continue
                    base = [o for o in runs if o["workload"] == workload and o["round"] == r["round"]
                            and o["target"] == baseline and "qps" in o]
                    if base and base[0]["qps"]:
                        ratios.append(r["qps"] / base[0]["qps"])
                key = baseline.replace("-", "_")
                base_qps = medians[baseline]["qps"]
                row[f"ratio_to_{key}"] = round(m["qps"] / base_qps, 3) if base_qps else None
                row[f"paired_ratio_to_{key}"] = round(median(ratios), 3) if ratios else None
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    baselines = [b for b in BASELINES if any(r["target"] == b for r in rows)]
    header = f"{'target':<17} {'workload':<18} {'QPS':>10} {'p95 ms':>8}" + "".join(
        f" {'x ' + b:>20}" for b in baselines
    ) + f" {'runs':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        ratios = "".join(
            f" {r.get('paired_ratio_to_' + b.replace('-', '_')) or 0:>20.3f}" for b in baselines
        )
        print(f"{r['target']:<17} {r['workload']:<18} {r['qps']:>10.1f} {r['p95_ms']:>8.2f}{ratios} {r['runs']:>5}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    started_on = machine()  # the commit measured: HEAD when the run starts
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    if shutil.which("sysbench") is None:
        print("sysbench is not installed", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    with workdir("turnout-bench-") as work, contextlib.ExitStack() as stack:
        from bench.common import sandbox

        box = stack.enter_context(sandbox(work))
        master = box.nodes[0].port
        box.execute(0, "CREATE DATABASE IF NOT EXISTS sbtest")
        sysbench_prepare(master, args.tables, args.table_size)
        box.wait_replicas_caught_up(timeout=120)
        haproxy_port = stack.enter_context(haproxy([master], work))
        replicas_port = stack.enter_context(
            haproxy([node.port for node in box.nodes[1:]], work, name="haproxy-replicas")
        )
        turnout = stack.enter_context(turnout_proxy(box, work, workers=args.workers))
        turnout_port, turnout_proc, turnout_log, command = turnout.port, turnout.proc, turnout.log_path, turnout.command
        meta["turnout_command"] = command.how
        meta["turnout_workers"] = command.workers
        meta["turnout_data_path_compiled"] = data_path_compiled()
        ports = {"direct": master, "haproxy": haproxy_port, "haproxy-replicas": replicas_port, "turnout": turnout_port}
        targets: tuple[str, ...] = TARGETS
        if args.bare:
            ports[BARE] = stack.enter_context(turnout_proxy(box, work, bare=True)).port
            targets = (*TARGETS, BARE)
        # Warm-up: buffer pools, the proxy's pools and prepared statements; not recorded.
        for target in targets:
            for workload in workloads:
                with contextlib.suppress(SysbenchFailed):
                    sysbench_run(workload, ports[target], args.tables, args.table_size, args.threads, 3)
        for round_no in range(1, args.rounds + 1):
            for workload in workloads:
                for target in targets:
                    before = status_counters(box, COUNTERS)
                    entry: dict[str, Any] = {"round": round_no, "workload": workload, "target": target}
                    try:
                        result = sysbench_run(
                            workload, ports[target], args.tables, args.table_size, args.threads, args.seconds
                        )
                    except SysbenchFailed as exc:
                        entry["error"] = str(exc)
                        failures.append(entry)
                        log(f"round {round_no} {workload} {target}: FAILED\n{exc}")
                        if target == "turnout":
                            alive = turnout_proc.poll() is None
                            entry["proxy_alive"] = alive
                            entry["proxy_log_tail"] = tail(turnout_log, 60)
                            log(f"turnout alive: {alive}; its log:\n{entry['proxy_log_tail']}")
                            if not alive:
                                break
                        runs.append(entry)
                        continue
                    after = status_counters(box, COUNTERS)
                    entry.update(
                        qps=result.qps, tps=result.tps, p95_ms=result.p95_ms, avg_ms=result.avg_ms,
                        errors=result.errors, reconnects=result.reconnects,
                        selects_per_node=[a["Com_select"] - b["Com_select"] for a, b in zip(after, before, strict=True)],
                    )
                    runs.append(entry)
                    log(
                        f"round {round_no} {workload:<18} {target:<8} {result.qps:>10.1f} qps  "
                        f"p95 {result.p95_ms:.2f} ms  errors {result.errors}  "
                        f"SELECTs per node {entry['selects_per_node']}"
                    )
        if turnout_proc.poll() is not None:
            log(f"turnout exited with {turnout_proc.returncode}; its log:\n{tail(turnout_log, 60)}")
            meta["turnout_exit"] = turnout_proc.returncode
        meta["turnout_log_tail"] = tail(turnout_log, 30)
        meta["turnout_pool"] = turnout.pool_stats()
    rows = summarise(runs, workloads, targets)
    print()
    print("QPS and p95: medians over rounds; x <baseline>: median over rounds of the ratio to the")
    print("baseline's run in the same round (the ratios of the medians are in the JSON).")
    print_table(rows)
    data = {
        "benchmark": "proxy_throughput",
        "machine": started_on,
        "settings": {
            "seconds": args.seconds, "rounds": args.rounds, "threads": args.threads, "workers": args.workers,
            "tables": args.tables, "table_size": args.table_size, "db_ps_mode": "auto",
            "workloads": workloads,
        },
        **meta,
        "summary": rows,
        "runs": runs,
        "failures": len(failures),
    }
    path = write_json(args.output, data)
    print(f"\nresults: {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        sys.exit(130)
