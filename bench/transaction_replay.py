"""The cost of transaction replay's recording on sysbench oltp_read_write throughput.

One sandbox (1 master + 2 replicas) and one turnout in front of it; sysbench oltp_read_write
(prepared statements, every statement inside a transaction: all of them are recorded when
replay is on) runs in rounds, mysql-transaction_replay switched off and on between them
(LOAD MYSQL VARIABLES TO RUNTIME), interleaved so that the machine's drift hits both alike.
Reported: the median transactions and queries per second of each, and on/off; and, per sysbench
transaction (figures the machine's load does not move): the proxy process's CPU time (user and
sys, /proc/PID/stat), the statements the proxy ran on its fast path (stats_mysql_global
Statements_fast_path) and the statements and commands the servers saw (SHOW GLOBAL STATUS
Questions and Com_* deltas, every node).

    python -m bench.transaction_replay [--seconds 10] [--rounds 3] [--threads 8] [--rate 0]

Client errors per kill with and without replay: `python -m bench.chaos --transaction-replay off|on`.
Results: bench/results/transaction_replay.json.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

import pymysql

from bench.common import (
    RESULTS_DIR,
    install_signal_handlers,
    log,
    machine,
    median,
    sandbox,
    status_counters,
    sysbench_prepare,
    sysbench_run,
    turnout_proxy,
    workdir,
    write_json,
)
from turnout.compiled import data_path_compiled

TABLES = 4
TABLE_SIZE = 10000
# What the servers count per transaction (summed over every node).
SERVER_COUNTERS = (
    "Questions", "Com_begin", "Com_commit", "Com_rollback", "Com_select", "Com_update", "Com_insert",
    "Com_delete", "Com_set_option", "Com_savepoint", "Com_stmt_prepare", "Com_stmt_execute", "Com_stmt_close",
    "Com_stmt_reset", "Com_change_db", "Com_show_status",
)
PROXY_COUNTERS = ("Questions", "Statements_fast_path", "Statements_retried", "Statements_held")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def set_replay(admin_port: int, on: bool) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE global_variables SET variable_value = %s "
                        "WHERE variable_name = 'mysql-transaction_replay'", ("true" if on else "false",))
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
    finally:
        conn.close()


def proxy_cpu_seconds(pid: int) -> tuple[float, float]:
    """The process's user and system CPU time so far (every thread), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def proxy_counters(admin_port: int) -> dict[str, int]:
    conn = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM stats_mysql_global")
            values = {str(name): str(value) for name, value in cur.fetchall()}
    finally:
        conn.close()
    return {name: int(values.get(name, "0")) for name in PROXY_COUNTERS}


def server_counters(box: Any) -> dict[str, int]:
    total = dict.fromkeys(SERVER_COUNTERS, 0)
    for node in status_counters(box, SERVER_COUNTERS):
        for name, value in node.items():
            total[name] += value
    return total


def snapshot(box: Any, pid: int, admin_port: int) -> dict[str, float]:
    user, system = proxy_cpu_seconds(pid)
    values: dict[str, float] = {"cpu_s": user + system, "user_s": user, "sys_s": system}
    values.update({f"proxy_{k}": v for k, v in proxy_counters(admin_port).items()})
    values.update({f"server_{k}": v for k, v in server_counters(box).items()})
    return values


def per_transaction(before: dict[str, float], after: dict[str, float], transactions: int) -> dict[str, float]:
    """The deltas per transaction (CPU times in ms); the status queries themselves add 1 Questions per node."""
    per: dict[str, float] = {}
    for key in after:
        delta = after[key] - before[key]
        if key.endswith("_s"):  # cpu_s, user_s, sys_s
            per[f"proxy_{key[:-2]}_ms"] = round(delta * 1000 / transactions, 3)
        elif delta:
            per[key] = round(delta / transactions, 3)
    return per


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rate", type=int, default=0,
                        help="transactions per second sysbench offers (0: as many as it can): at a rate both "
                             "modes sustain, the proxy's CPU per transaction compares like with like")
    args = parser.parse_args()
    install_signal_handlers()
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    with workdir("turnout-replay-") as tmp, sandbox(tmp) as box:
        box.execute(0, "CREATE DATABASE IF NOT EXISTS sbtest")
        with turnout_proxy(box, tmp) as turnout:
            sysbench_prepare(turnout.port, TABLES, TABLE_SIZE)
            box.wait_replicas_caught_up(timeout=120)
            sysbench_run("oltp_read_write", turnout.port, TABLES, TABLE_SIZE, args.threads, 3)  # warm up
            for round_ in range(args.rounds):
                for mode in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                    set_replay(turnout.admin_port, mode == "on")
                    before = snapshot(box, turnout.proc.pid, turnout.admin_port)
                    result = sysbench_run("oltp_read_write", turnout.port, TABLES, TABLE_SIZE, args.threads,
                                          args.seconds, ["--mysql-ignore-errors=1213", f"--rate={args.rate}"])
                    after = snapshot(box, turnout.proc.pid, turnout.admin_port)
                    counted = re.search(r"transactions:\s+(\d+)", result.output)
                    transactions = max(1, int(counted.group(1)) if counted else round(result.tps * args.seconds))
                    per = per_transaction(before, after, transactions)
                    runs[mode].append({"tps": result.tps, "qps": result.qps, "p95_ms": result.p95_ms, **per})
                    log(f"round {round_ + 1} replay {mode}: {result.tps:.0f} tps, {result.qps:.0f} qps, "
                        f"p95 {result.p95_ms} ms; per transaction: {per}")
    summary: dict[str, Any] = {
        mode: {key: median([r.get(key, 0.0) for r in rows]) for key in sorted({k for r in rows for k in r})}
        for mode, rows in runs.items()
    }
    summary["on_over_off_tps"] = round(summary["on"]["tps"] / summary["off"]["tps"], 3)
    summary["on_over_off_proxy_cpu_per_transaction"] = round(
        summary["on"]["proxy_cpu_ms"] / summary["off"]["proxy_cpu_ms"], 3)
    data = {
        "benchmark": "transaction_replay", "machine": machine(), "compiled": data_path_compiled(),
        "settings": {"seconds": args.seconds, "rounds": args.rounds, "threads": args.threads, "rate": args.rate, "tables": TABLES,
                     "table_size": TABLE_SIZE, "workload": "oltp_read_write --db-ps-mode=auto"},
        "runs": runs, "median": summary,
    }
    out = write_json(RESULTS_DIR / "transaction_replay.json", data)
    print(f"replay off: {summary['off']}\nreplay on:  {summary['on']}\non/off tps: {summary['on_over_off_tps']}, "
          f"proxy CPU per transaction: {summary['on_over_off_proxy_cpu_per_transaction']}")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
