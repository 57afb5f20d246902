"""Changes to servers, issued through a flavour: read_only, replication, semi-sync, waits.

Each method is one bounded step; deciding which steps to take is the manager's job.
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.topology.connection import Credentials, ServerError, execute
from turnout.topology.flavors import Flavor, flavor_for
from turnout.topology.model import Instance
from turnout.topology.probe import probe


@dataclass(frozen=True)
class Actions:
    topology: Credentials
    replication: Credentials
    timeout: float
    flavor_override: str | None = None
    connect_retry: int = 1
    heartbeat: float = 1.0

    def flavor(self, instance: Instance) -> Flavor:
        return flavor_for(self.flavor_override or instance.flavor)

    async def run(self, instance: Instance | str, statements: list[str], timeout: float | None = None) -> None:
        key = instance if isinstance(instance, str) else instance.key
        await execute(key, self.topology, statements, timeout or self.timeout)

    async def refresh(self, instance: Instance) -> Instance:
        return await probe(instance.key, self.topology, self.timeout, instance, self.flavor_override)

    async def set_read_only(self, instance: Instance, on: bool, timeout: float | None = None) -> None:
        await self.run(instance, self.flavor(instance).set_read_only(on), timeout)

    async def stop_replication(self, instance: Instance) -> None:
        await self.run(instance, [self.flavor(instance).stop_replica()])

    async def start_replication(self, instance: Instance) -> None:
        await self.run(instance, [self.flavor(instance).start_replica()])

    def _stop_timeout(self, instance: Instance) -> float:
        """A bound for statements that stop replication: STOP waits for an IO thread that may be
        stuck connecting to a master it cannot reach (dropped packets, not refusals) for up to
        slave_net_timeout."""
        return max(self.timeout, (instance.slave_net_timeout or 0) + 2)

    async def detach(self, instance: Instance) -> None:
        """Stop replicating for good: the instance is about to become a master."""
        flavor = self.flavor(instance)
        await self.run(instance, [flavor.stop_replica(), flavor.reset_replica_all()], self._stop_timeout(instance))

    async def wait_applied(self, instance: Instance, position: str, timeout: float) -> bool:
        """Wait (bounded) until `instance` has applied `position`."""
        flavor = self.flavor(instance)
        rows = await execute(instance.key, self.topology, [flavor.wait_applied(position, timeout)], timeout + self.timeout)
        return bool(rows) and flavor.wait_succeeded(rows[0]["reached"])

    async def point_to(
        self,
        instance: Instance,
        master: Instance,
        *,
        former_master: bool = False,
        start: bool = True,
        position: tuple[str, int] | None = None,
        semi_sync_replica: bool | None = None,
    ) -> None:
        """Replicate from `master` (semi-sync replica side set first, as it is read at connect time)."""
        flavor = self.flavor(instance)
        statements = [flavor.stop_replica()]
        if semi_sync_replica is not None:
            statements += flavor.semi_sync(master_side=False, replica_side=semi_sync_replica)
        statements += flavor.change_master(
            master.host, master.port, self.replication.user, self.replication.password,
            former_master=former_master, position=position,
            connect_retry=self.connect_retry, heartbeat=self.heartbeat,
        )
        if start:
            statements.append(flavor.start_replica())
        await self.run(instance, statements, self._stop_timeout(instance))

    async def semi_sync(self, instance: Instance, master_side: bool, replica_side: bool) -> None:
        await self.run(instance, self.flavor(instance).semi_sync(master_side, replica_side))


__all__ = ["Actions", "Credentials", "ServerError"]
