"""Managers in HA and self-fencing proxies on the multi-host lab: every scenario of issue 12.

3 etcd members, 2 managers, 2 proxies and 3 MariaDB servers with semi-sync, each on a lab host;
writes through both proxies, every acknowledged id checked on the new master afterwards. The
scenarios are the lab tests in tests/integration/lab/test_ha_scenarios.py (the same deployment and
checker); this runs them `--rounds` times and collects the figures each prints:

- partition-2018: {old master, proxy A} cut from {etcd, managers, replicas, proxy B}: times from
  the cut to proxy A's self-fence and to the new master's first write, proxy B's write pause,
  the errors clients saw, 0 acknowledged writes missing, 0 transactions on the old master after
  the new master's first write;
- leader-kill-then-master-kill: kill -9 of the leader manager, then of the master;
- leader-cut-from-etcd: the leader cut from etcd but not from MySQL, then the master dies;
- etcd-member-down-then-quorum-lost: one member killed, then a second one, then the master.

Lease 4 s, renewals every 0.5 s, deadlines 2.5 s (tests/integration/ha/ha_harness.py TIMINGS).
Needs root, iproute2, nftables, etcd-server and MariaDB.

    python -m bench.ha_scenarios --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_round() -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/integration/lab/test_ha_scenarios.py", "-s", "-q", "-p",
         "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, check=False)
    # pytest's progress dots may share the line
    results = [json.loads(line.split("HA-RESULT ", 1)[1]) for line in out.stdout.splitlines() if "HA-RESULT " in line]
    if out.returncode != 0:
        print(out.stdout[-3000:], file=sys.stderr)
        raise SystemExit(f"a scenario failed (pytest exit {out.returncode})")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "ha_scenarios.json")
    args = parser.parse_args()
    rounds = [run_round() for _ in range(args.rounds)]
    summary: dict[str, dict[str, object]] = {}
    for result in (r for one in rounds for r in one):
        name = str(result["scenario"])
        for key, value in result.items():
            if key != "scenario" and isinstance(value, int | float) and not isinstance(value, bool):
                summary.setdefault(name, {}).setdefault(key, []).append(value)  # type: ignore[union-attr]
    medians = {name: {k: statistics.median(v) for k, v in figures.items()}  # type: ignore[attr-defined]
               for name, figures in summary.items()}
    args.output.write_text(json.dumps({"rounds": rounds, "median": medians}, indent=2) + "\n")
    for name, figures in medians.items():
        print(name, ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
