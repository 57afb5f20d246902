"""Monitor and routing together: a RoutingSnapshot kept current, for the proxy and the admin.

Every health change, config load, published-masters change and fence change recomputes
`effective_servers` (with the previous snapshot, for hysteresis and keep-current) on the loop, at
once; `on_routing` is called only when the result differs in something the data path uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from turnout.config.model import RuntimeConfig
from turnout.monitor.health import Address, HealthSnapshot
from turnout.monitor.monitor import Monitor
from turnout.monitor.routing import RoutingSnapshot, RoutingTable


def same_routing(a: RoutingSnapshot | None, b: RoutingSnapshot) -> bool:
    return (
        a is not None
        and a.servers == b.servers
        and dict(a.write_blocked) == dict(b.write_blocked)
        and a.conflicts == b.conflicts
    )


class MonitoredRouting:
    """Owns a Monitor; keeps `routing` current. Call everything from the monitor's loop."""

    def __init__(
        self,
        config: RuntimeConfig,
        on_routing: Callable[[RoutingSnapshot], None] | None = None,
        published_masters: Mapping[int, Address] | None = None,
        fences: Mapping[Address, str] | None = None,
        on_positions: Callable[[HealthSnapshot], None] | None = None,
    ) -> None:
        self._config = config
        self._masters = published_masters
        self._fences = fences
        self._on_routing = on_routing
        self._table = RoutingTable()
        self._changed = asyncio.Event()
        self.monitor = Monitor(config, self._health_changed, on_positions)
        self._routing = self._table.update(config, self.monitor.snapshot, published_masters, fences)

    @property
    def routing(self) -> RoutingSnapshot:
        return self._routing

    @property
    def health(self) -> HealthSnapshot:
        return self.monitor.snapshot

    async def start(self) -> None:
        await self.monitor.start()

    async def stop(self) -> None:
        await self.monitor.stop()

    def update_config(self, config: RuntimeConfig) -> None:
        self._config = config
        self.monitor.update_config(config)
        self._recompute()

    def update_published_masters(self, published_masters: Mapping[int, Address] | None) -> None:
        self._masters = published_masters
        self._recompute()

    def update_fences(self, fences: Mapping[Address, str] | None) -> None:
        """The manager's fences: each address out of all traffic, with its reason."""
        self._fences = fences
        self._recompute()

    async def wait_for(self, predicate: Callable[[RoutingSnapshot], bool], timeout: float) -> RoutingSnapshot:
        """The first routing snapshot (the current one included) for which `predicate` holds;
        re-evaluated after every health change, so it may also look at `health`."""
        async with asyncio.timeout(timeout):
            while not predicate(self._routing):
                await self._changed.wait()
        return self._routing

    def _health_changed(self, health: HealthSnapshot) -> None:
        self._recompute()

    def _recompute(self) -> None:
        previous = self._routing
        routing = self._table.update(self._config, self.monitor.snapshot, self._masters, self._fences)
        self._routing = routing
        # Wake every waiter, and give later ones a fresh event.
        self._changed.set()
        self._changed = asyncio.Event()
        if same_routing(previous, routing):
            return
        if self._on_routing is not None:
            self._on_routing(routing)
