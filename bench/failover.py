"""Detection and recovery time of the manager over repeated kill -9 of the master.

Runs a real 3-server MariaDB sandbox and the manager in this process (InstancePollSeconds=1).
For each round: kill -9 the master; detection = first analysis reporting DeadMaster; recovery =
new master published in the state store. The old master is then rebuilt as a replica of the
new one, so every round starts from 1 master + 2 replicas.

    python bench/failover.py --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from turnout.manager.service import ManagerService
from turnout.manager.settings import ManagerSettings
from turnout.sandbox.config import MANAGER, REPLICATION
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox
from turnout.state import SQLiteStateStore


async def wait_for(condition, timeout: float = 60.0, step: float = 0.01) -> float:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(step)
    return time.monotonic()


async def run(rounds: int, poll: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        box = Sandbox.create(Path(tmp) / "sbx", free_port_block(3), 2)
        store = SQLiteStateStore(Path(tmp) / "state.db")
        settings = ManagerSettings.from_mapping({
            "MySQLTopologyUser": MANAGER.user, "MySQLTopologyPassword": MANAGER.password,
            "MySQLReplicaUser": REPLICATION.user, "MySQLReplicaPassword": REPLICATION.password,
            "InstancePollSeconds": poll, "MySQLConnectTimeoutSeconds": 1, "MySQLDiscoveryReadTimeoutSeconds": 1,
            "RecoveryPeriodBlockSeconds": 0, "DiscoverySeeds": [box.nodes[0].address],
        })
        service = ManagerService(settings, store)
        await service.start()
        detections, recoveries = [], []
        try:
            await service.wait_ticks(1)
            name = next(iter(service.views))
            for n in range(rounds):
                state = await store.get_cluster(name)
                assert state is not None
                master = box.index_of_port(int(state.master.rsplit(":", 1)[1]))
                assert master is not None
                await service.wait_ticks(1)
                killed = time.monotonic()
                box.kill(master)
                epoch = state.epoch

                def promoted(epoch: int = epoch) -> bool:
                    last = service.last_recovery
                    return last is not None and last.state is not None and last.state.epoch > epoch

                # The manager recovers in the same round that first sees the DeadMaster.
                detected = await wait_for(lambda: promoted() or any(
                    f.recoverable_master_failure for v in service.views.values() for f in v.findings))
                recovered = await wait_for(promoted)
                result = service.last_recovery
                assert result is not None and result.success, result
                detections.append(detected - killed)
                recoveries.append(recovered - killed)
                print(f"round {n + 1}: {state.master} killed, {result.successor} promoted; "
                      f"detected after {detected - killed:.2f}s, recovered after {recovered - killed:.2f}s", flush=True)
                # Rebuild the old master as a replica of the new one.
                box.start(master)
                await store.unfence(state.master)
                new_port = int(str(result.successor).rsplit(":", 1)[1])
                box.execute(master, "SET GLOBAL read_only = ON", "STOP SLAVE",
                            f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={new_port}, "
                            f"MASTER_USER='{REPLICATION.user}', MASTER_PASSWORD='{REPLICATION.password}', "
                            "MASTER_USE_GTID=current_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
                            "START SLAVE")
                await wait_for(lambda: all(i.reachable and (not i.is_replica or i.replicating)
                                           for i in service.instances.values()) and len(service.instances) == 3)
        finally:
            await service.stop()
            await store.close()
            box.down(destroy=True)
        print()
        print(f"InstancePollSeconds={poll:g}, {rounds} kills of the master")
        for label, values in (("detection", detections), ("recovery (kill -> new master published)", recoveries)):
            print(f"{label}: median {statistics.median(values):.2f}s, min {min(values):.2f}s, "
                  f"max {max(values):.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0, help="InstancePollSeconds")
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.poll))


if __name__ == "__main__":
    main()
