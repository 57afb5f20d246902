"""What a state store client sees when an etcd member fails: a real 3-member etcd in the lab.

The client runs on a lab host of its own, with the failing member first in its endpoint list (the
worst case: every call tries it first). For each scenario and round: the client is ready (its
store has answered once through the member), the member fails, then the client is told to go and
measures the time until its first successful call (or, with quorum lost, until the error).

- follower-killed / leader-killed: kill -9 of a follower / of the leader (an election follows);
- cut-from-client: packets between the client's host and the member dropped (the member stays
  in the cluster): the store must notice without any error from the network;
- cut-from-cluster: the member alone on its side of a partition, still reachable by the client:
  it must not serve a stale read;
- quorum-lost: two members killed: the time until the error (the store's timeout, 5 s);
- watch-cut-from-client: a watch whose stream is on the member; the member is cut from the
  client, then the cluster changes: the time until the watch delivers the change.

Needs root, iproute2, nftables and etcd-server.

    python -m bench.etcd_failover --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from turnout.sandbox.etcd_members import EtcdMembers
from turnout.sandbox.lab import Lab
from turnout.state import ClusterState
from turnout.state.etcd import EtcdStateStore, EtcdUnavailable

SCENARIOS = ("follower-killed", "leader-killed", "cut-from-client", "cut-from-cluster", "quorum-lost",
             "watch-cut-from-client")


# ---- the client, on its lab host ---------------------------------------------------------------------
async def client(endpoints: list[str], prefix: str, scenario: str) -> None:
    store = EtcdStateStore(endpoints, prefix=prefix)
    loop = asyncio.get_running_loop()
    events = store.watch() if scenario == "watch-cut-from-client" else None
    if events is not None:
        await anext(events)
    else:
        await store.get_cluster("c1")
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    started = time.monotonic()
    result: dict[str, object] = {}
    try:
        if events is not None:
            state = await anext(events)
            result = {"seconds": time.monotonic() - started, "epoch": state.epoch}
        elif scenario == "quorum-lost":
            try:
                await store.get_cluster("c1")
                result = {"seconds": time.monotonic() - started, "error": None}
            except EtcdUnavailable as exc:
                result = {"seconds": time.monotonic() - started, "error": str(exc)[:200]}
        else:
            got = await store.get_cluster("c1")
            read = time.monotonic() - started
            assert got is not None
            won = await store.publish(got.evolve(epoch=got.epoch + 1), got.epoch)
            result = {"seconds": read, "write_seconds": time.monotonic() - started, "published": won}
    finally:
        if events is not None:
            await events.aclose()
        await store.close()
    print(json.dumps(result), flush=True)


# ---- the orchestrator ------------------------------------------------------------------------------------
def leader(members: EtcdMembers) -> int:
    while True:
        ids, leaders = {}, set()
        for index in range(members.count):
            try:
                request = urllib.request.Request(members.endpoint(index) + "/v3/maintenance/status", data=b"{}")
                with urllib.request.urlopen(request, timeout=2) as resp:
                    status = json.load(resp)
            except OSError:
                continue
            ids[status["header"]["member_id"]] = index
            leaders.add(status.get("leader"))
        if len(leaders) == 1 and (found := leaders.pop()) in ids:
            return ids[found]
        time.sleep(0.05)


async def publish(members: EtcdMembers, prefix: str, indexes: list[int], bump: bool) -> None:
    store = EtcdStateStore([members.endpoint(i) for i in indexes], prefix=prefix)
    try:
        current = await store.get_cluster("c1")
        if current is None:
            await store.publish(ClusterState("c1", "m:1", epoch=1), None)
        elif bump:
            await store.publish(current.evolve(epoch=current.epoch + 1), current.epoch)
    finally:
        await store.close()


def one_round(lab: Lab, members: EtcdMembers, scenario: str, prefix: str) -> dict[str, object]:
    lead = leader(members)
    victim = lead if scenario == "leader-killed" else (lead + 1) % 3
    others = [i for i in range(3) if i != victim]
    asyncio.run(publish(members, prefix, others, bump=False))
    order = [victim, *others]
    proc = subprocess.Popen(
        lab.command("client", [sys.executable, "-m", "bench.etcd_failover", "--client", scenario, "--prefix", prefix,
                               "--endpoints", ",".join(members.endpoint(i) for i in order)]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        if scenario in ("follower-killed", "leader-killed"):
            members.kill(victim)
        elif scenario in ("cut-from-client", "watch-cut-from-client"):
            lab.partition(["client", members.host(victim)])
        elif scenario == "cut-from-cluster":
            lab.partition([members.host(victim), ",".join(members.host(i) for i in others)])
        elif scenario == "quorum-lost":
            members.kill(others[0])
            members.kill(others[1])
        if scenario == "watch-cut-from-client":
            asyncio.run(publish(members, prefix, others, bump=True))
        out, _ = proc.communicate("go\n", timeout=120)
        return dict(json.loads(out.strip().splitlines()[-1]))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lab.heal()
        for index in range(3):
            members.start(index, wait=False)
        members.wait_healthy(range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--client", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="/bench", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client(args.endpoints.split(","), args.prefix, args.client))
        return
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab.create(Path(tmp) / "lab", ["etcd0", "etcd1", "etcd2", "client"])
        members = EtcdMembers(lab, Path(tmp) / "lab", 3)
        try:
            members.start_all()
            print(f"{'scenario':<24} {'median s':>9} {'max s':>7}  first call after the failure (rounds: {args.rounds})")
            for scenario in args.scenario or SCENARIOS:
                results = [one_round(lab, members, scenario, f"/bench-{scenario}-{n}") for n in range(args.rounds)]
                times = [float(str(r["seconds"])) for r in results]
                note = ""
                if scenario == "quorum-lost":
                    note = "error: " + ("yes" if all(r["error"] for r in results) else "NO")
                elif "published" in results[0]:
                    writes = [float(str(r["write_seconds"])) for r in results]
                    note = (f"read then write: median {statistics.median(writes):.3f} s, "
                            f"all published: {all(r['published'] for r in results)}")
                print(f"{scenario:<24} {statistics.median(times):>9.3f} {max(times):>7.3f}  {note}", flush=True)
        finally:
            for index in range(3):
                members.kill(index)
            lab.down()


if __name__ == "__main__":
    main()
