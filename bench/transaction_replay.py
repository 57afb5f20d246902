"""The cost of transaction replay's recording on sysbench oltp_read_write throughput.

One sandbox (1 master + 2 replicas) and one turnout in front of it; sysbench oltp_read_write
(prepared statements, every statement inside a transaction: all of them are recorded when
replay is on) runs in rounds, mysql-transaction_replay switched off and on between them
(LOAD MYSQL VARIABLES TO RUNTIME), interleaved so that the machine's drift hits both alike.
Reported: the median transactions and queries per second of each, and on/off.

    python -m bench.transaction_replay [--seconds 10] [--rounds 3] [--threads 8]

Client errors per kill with and without replay: `python -m bench.chaos --transaction-replay off|on`.
Results: bench/results/transaction_replay.json.
"""

from __future__ import annotations

import argparse
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
    sysbench_prepare,
    sysbench_run,
    turnout_proxy,
    workdir,
    write_json,
)
from turnout.compiled import data_path_compiled

TABLES = 4
TABLE_SIZE = 10000


def set_replay(admin_port: int, on: bool) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("UPDATE global_variables SET variable_value = %s "
                        "WHERE variable_name = 'mysql-transaction_replay'", ("true" if on else "false",))
            cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=8)
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
                    result = sysbench_run("oltp_read_write", turnout.port, TABLES, TABLE_SIZE, args.threads,
                                          args.seconds, ["--mysql-ignore-errors=1213"])
                    runs[mode].append({"tps": result.tps, "qps": result.qps, "p95_ms": result.p95_ms})
                    log(f"round {round_ + 1} replay {mode}: {result.tps:.0f} tps, {result.qps:.0f} qps, "
                        f"p95 {result.p95_ms} ms")
    summary: dict[str, Any] = {
        mode: {key: median([r[key] for r in rows]) for key in ("tps", "qps", "p95_ms")} for mode, rows in runs.items()
    }
    summary["on_over_off_tps"] = round(summary["on"]["tps"] / summary["off"]["tps"], 3)
    data = {
        "benchmark": "transaction_replay", "machine": machine(), "compiled": data_path_compiled(),
        "settings": {"seconds": args.seconds, "rounds": args.rounds, "threads": args.threads, "tables": TABLES,
                     "table_size": TABLE_SIZE, "workload": "oltp_read_write --db-ps-mode=auto"},
        "runs": runs, "median": summary,
    }
    out = write_json(RESULTS_DIR / "transaction_replay.json", data)
    print(f"replay off: {summary['off']}\nreplay on:  {summary['on']}\non/off tps: {summary['on_over_off_tps']}")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
