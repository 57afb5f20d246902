"""The cost of causal reads: sysbench through turnout with mysql-causal_reads = session and with
it at its default (no user or rule asks for causal reads), alternating round by round on one
turnout process, on a sandbox of 1 master + 2 replicas.

Workloads: oltp_read_write with --skip-trx=on (every statement in autocommit mode: each read
that follows a write of its session must see it, so it waits on a replica for it or goes to one
known to have it) and plain oltp_read_write (transactions: their reads run on the writer's
connection anyway; what remains is the tracking of GTIDs).

    python -m bench.causal_reads [--seconds 10] [--rounds 3] [--threads 8]

Results: a table on stdout and bench/results/causal_reads.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pymysql

from bench.common import (
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
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "causal_reads.json")
    return parser.parse_args(argv)


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


if __name__ == "__main__":
    sys.exit(main())
