"""The cost of causal reads: sysbench through turnout with mysql-causal_reads = session and with
it at its default (no user or rule asks for causal reads), alternating round by round on one
turnout process, on a sandbox of 1 master + 2 replicas.

Workloads: oltp_read_write with --skip-trx=on (every statement in autocommit mode: each read
that follows a write of its session must see it, so it waits on a replica for it or goes to one
known to have it) and plain oltp_read_write (transactions: their reads run on the writer's
connection anyway; what remains is the tracking of GTIDs).

    python -m bench.causal_reads [--seconds 10] [--rounds 3] [--threads 8]

Results: a table on stdout and bench/results/causal_reads.json.

The latency of one read that waits (--waited-latency --baseline REF): one client writes a row
then reads it back, again and again, with mysql-causal_reads = session, through two turnout
processes side by side, one of the commit REF and one of HEAD (both run interpreted, from their
sources), alternating round by round; each read after its session's write waits on a replica
(unless the monitor saw the replica pass the write first: the counters say how many did).

    python -m bench.causal_reads --waited-latency --baseline REF [--reads 1000] [--rounds 5]

Results: bench/results/causal_reads_waited.json.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pymysql

from bench.common import (
    APP_PASSWORD,
    APP_USER,
    RESULTS_DIR,
    SysbenchFailed,
    install_signal_handlers,
    log,
    machine,
    median,
    sandbox,
    sysbench_prepare,
    sysbench_run,
    turnout_proxy,
    workdir,
    write_json,
)
from turnout.compiled import data_path_compiled

WORKLOADS = {
    # without transactions two threads may delete and insert the same id: a duplicate key is no failure
    "oltp_read_write autocommit": ("oltp_read_write", ("--skip-trx=on", "--mysql-ignore-errors=1062")),
    "oltp_read_write": ("oltp_read_write", ()),
}
MODES = ("user", "session")  # user: the default, nobody asks; session: every session reads its writes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tables", type=int, default=4)
    parser.add_argument("--table-size", type=int, default=10000)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--waited-latency", action="store_true", help="time reads that wait, REF against HEAD")
    parser.add_argument("--baseline", default="", help="the commit to compare HEAD with (--waited-latency)")
    parser.add_argument("--reads", type=int, default=1000, help="reads per turnout per round (--waited-latency)")
    args = parser.parse_args(argv)
    if args.waited_latency and not args.baseline:
        parser.error("--waited-latency needs --baseline REF")
    if args.output is None:
        args.output = RESULTS_DIR / ("causal_reads_waited.json" if args.waited_latency else "causal_reads.json")
    return args


def admin(port: int, *statements: str) -> list[dict[str, Any]]:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin", autocommit=True)
    try:
        rows: list[dict[str, Any]] = []
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            for statement in statements:
                cur.execute(statement)
                rows = list(cur.fetchall())
        return rows
    finally:
        conn.close()


def set_mode(port: int, mode: str) -> None:
    admin(
        port,
        f"UPDATE global_variables SET variable_value = '{mode}' WHERE variable_name = 'mysql-causal_reads'",
        "LOAD MYSQL VARIABLES TO RUNTIME",
    )


def causal_counters(port: int) -> dict[str, int]:
    rows = admin(port, "SELECT * FROM stats_mysql_global WHERE Variable_Name LIKE 'Causal_reads%'")
    return {str(r["Variable_Name"]): int(r["Variable_Value"]) for r in rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    install_signal_handlers()
    if args.waited_latency:
        return waited_latency(args)
    runs: list[dict[str, Any]] = []
    with workdir("causal-reads") as work, sandbox(work) as box:
        box.execute(0, "CREATE DATABASE IF NOT EXISTS sbtest")
        sysbench_prepare(box.nodes[0].port, args.tables, args.table_size)
        with turnout_proxy(box, work) as proxy:
            for round_number in range(args.rounds):
                for label, (workload, extra) in WORKLOADS.items():
                    for mode in MODES:
                        set_mode(proxy.admin_port, mode)
                        before = causal_counters(proxy.admin_port)
                        try:
                            result = sysbench_run(workload, proxy.port, args.tables, args.table_size, args.threads,
                                                  args.seconds, extra)
                        except SysbenchFailed as failed:
                            log(str(failed))
                            return 1
                        after = causal_counters(proxy.admin_port)
                        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                        log(f"round {round_number + 1} {label} causal_reads={mode}: {result.qps:.0f} qps "
                            f"p95 {result.p95_ms} ms errors {result.errors} {delta}")
                        runs.append({"round": round_number, "workload": label, "mode": mode, "qps": result.qps,
                                     "tps": result.tps, "p95_ms": result.p95_ms, "errors": result.errors,
                                     "causal": delta})
    summary = []
    for label in WORKLOADS:
        off = [r for r in runs if r["workload"] == label and r["mode"] == "user"]
        on = [r for r in runs if r["workload"] == label and r["mode"] == "session"]
        ratios = [b["qps"] / a["qps"] for a, b in zip(off, on, strict=True) if a["qps"]]
        summary.append({
            "workload": label, "qps_off": median([r["qps"] for r in off]), "qps_on": median([r["qps"] for r in on]),
            "p95_off_ms": median([r["p95_ms"] for r in off]), "p95_on_ms": median([r["p95_ms"] for r in on]),
            "ratio_on_off": median(ratios),
        })
    print(f"{'workload':30} {'qps off':>10} {'qps on':>10} {'on/off':>7} {'p95 off':>8} {'p95 on':>8}")
    for row in summary:
        print(f"{row['workload']:30} {row['qps_off']:10.0f} {row['qps_on']:10.0f} {row['ratio_on_off']:7.3f} "
              f"{row['p95_off_ms']:8.2f} {row['p95_on_ms']:8.2f}")
    path = write_json(args.output, {
        "machine": machine(), "compiled": data_path_compiled(), "args": vars(args) | {"output": args.output.name},
        "runs": runs, "summary": summary,
    })
    log(f"results in {path}")
    return 0


# ---- the latency of a read that waits ------------------------------------------------------------
def commit_of(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
    ).stdout.strip()


def extract_source(ref: str, into: Path) -> Path:
    """The `src` directory of commit `ref`, written under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src"], capture_output=True, check=True, cwd=Path(__file__).parent.parent
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


CASES = {
    # the wait lasts until the replica has applied the write (replication's own delay included)
    "read right after its write": False,
    # the replica has applied the write already, the proxy does not know it: the wait ends at once,
    # what remains is the proxy's and the round trips' share
    "read once the replicas have the write": True,
}


def write_then_read(port: int, first_id: int, reads: int, replicas: list[Any] | None = None) -> list[float]:
    """`reads` times: insert a row, then read it back (a read that must see the write); with
    `replicas` (connections to them), the read waits until they have the row. The reads'
    latencies, in microseconds."""
    conn = pymysql.connect(host="127.0.0.1", port=port, user=APP_USER, password=APP_PASSWORD, autocommit=True)
    latencies: list[float] = []
    try:
        with conn.cursor() as cur:
            for key in range(first_id, first_id + reads):
                cur.execute("INSERT INTO causal.t VALUES (%s, %s)", (key, key))
                for replica in replicas or ():
                    with replica.cursor() as direct:
                        while not direct.execute("SELECT 1 FROM causal.t WHERE id = %s", (key,)):
                            time.sleep(0.0005)
                started = time.perf_counter()
                cur.execute("SELECT v FROM causal.t WHERE id = %s", (key,))
                rows = cur.fetchall()
                latencies.append((time.perf_counter() - started) * 1e6)
                if rows != ((key,),):
                    raise RuntimeError(f"read {key} missed its write: {rows}")
    finally:
        conn.close()
    return latencies


def waited_latency(args: argparse.Namespace) -> int:
    variants = {"baseline": args.baseline, "head": "HEAD"}
    commits = {label: commit_of(ref) for label, ref in variants.items()}
    runs: list[dict[str, Any]] = []
    with workdir("causal-waited") as work, sandbox(work) as box, contextlib.ExitStack() as stack:
        box.execute(0, "CREATE DATABASE IF NOT EXISTS causal", "CREATE TABLE causal.t (id INT PRIMARY KEY, v INT)")
        box.wait_replicas_caught_up()
        proxies = {}
        for label, ref in variants.items():
            source = extract_source(ref, work / f"source-{label}")
            proxies[label] = stack.enter_context(turnout_proxy(box, work, source=source, name=f"turnout-{label}"))
            set_mode(proxies[label].admin_port, "session")
            admin(proxies[label].admin_port,
                  "UPDATE global_variables SET variable_value = '10000' "
                  "WHERE variable_name = 'mysql-causal_reads_timeout'",
                  "LOAD MYSQL VARIABLES TO RUNTIME")
        for number, label in enumerate(variants, start=1):  # warm-up: pools, the replicas' first waits
            write_then_read(proxies[label].port, 10_000_000 * number, 20)
        replicas = [
            pymysql.connect(host="127.0.0.1", port=node.port, user=APP_USER, password=APP_PASSWORD, autocommit=True)
            for node in box.nodes[1:]
        ]
        for replica in replicas:
            stack.callback(replica.close)
        first_id = 1
        for round_number in range(args.rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for case, applied_first in CASES.items():
                for label in order:
                    port = proxies[label].admin_port
                    before = causal_counters(port)
                    latencies = write_then_read(
                        proxies[label].port, first_id, args.reads, replicas if applied_first else None
                    )
                    first_id += args.reads
                    after = causal_counters(port)
                    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                    run = {"round": round_number, "case": case, "variant": label, "commit": commits[label],
                           "median_us": median(latencies), "p95_us": percentile(latencies, 0.95), "causal": delta}
                    log(f"round {round_number + 1} {case}, {label} ({commits[label]}): median "
                        f"{run['median_us']:.0f} us p95 {run['p95_us']:.0f} us {delta}")
                    runs.append(run)
    summary = []
    for case in CASES:
        ratios = []
        for round_number in range(args.rounds):
            by = {r["variant"]: r for r in runs if r["round"] == round_number and r["case"] == case}
            ratios.append(by["head"]["median_us"] / by["baseline"]["median_us"])
        of_case = [r for r in runs if r["case"] == case]
        summary.append({"case": case} | {
            f"{key}_{label}": median([r[key] for r in of_case if r["variant"] == label])
            for label in variants for key in ("median_us", "p95_us")
        } | {"ratio_head_baseline": median(ratios)})
    print(f"{'case':40} {'baseline ' + commits['baseline']:>17} {'head ' + commits['head']:>13} {'head/baseline':>14}")
    for row in summary:
        print(f"{row['case']:40} {row['median_us_baseline']:14.0f} us {row['median_us_head']:10.0f} us "
              f"{row['ratio_head_baseline']:14.3f}")
    path = write_json(args.output, {
        "machine": machine(), "compiled": False, "commits": commits,
        "args": vars(args) | {"output": args.output.name}, "runs": runs, "summary": summary,
    })
    log(f"results in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
