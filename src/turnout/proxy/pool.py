"""Backend connection pools: idle connections per (server, user), counted per server."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

from turnout.proxy.backend import BackendConnection, ServerAddress

PoolKey = tuple[ServerAddress, str, int]
IDLE_TIMEOUT = 600.0  # seconds an idle connection is kept (servers' wait_timeout is far longer)


@dataclass
class ServerStats:
    """The numbers stats_mysql_connection_pool shows for one server."""

    conn_used: int = 0
    conn_free: int = 0
    conn_ok: int = 0
    conn_err: int = 0
    max_conn_used: int = 0
    queries: int = 0
    bytes_sent: int = 0
    bytes_recv: int = 0


@dataclass
class ServerPool:
    address: ServerAddress
    # Idle connections per (user, reply_capabilities), oldest first: taken last-in first-out, or by name.
    idle: dict[tuple[str, int], dict[BackendConnection, None]] = field(default_factory=dict)
    stats: ServerStats = field(default_factory=ServerStats)

    @property
    def total(self) -> int:
        return self.stats.conn_used + self.stats.conn_free


class Pools:
    """All pools of one proxy process. Single-threaded (asyncio): no locks needed."""

    def __init__(self) -> None:
        self.servers: dict[ServerAddress, ServerPool] = {}
        # time.monotonic(), kept current by the proxy (every few tenths of a second): when a
        # connection was last used needs no clock call per statement.
        self.clock = time.monotonic()

    def server(self, address: ServerAddress) -> ServerPool:
        pool = self.servers.get(address)
        if pool is None:
            pool = self.servers[address] = ServerPool(address)
        return pool

    def pool_of(self, connection: BackendConnection) -> ServerPool:
        pool = connection.server_pool
        if pool is None:
            pool = connection.server_pool = self.server(connection.address)
        return cast(ServerPool, pool)

    def take_idle(self, address: ServerAddress, user: str, reply_capabilities: int) -> BackendConnection | None:
        pool = self.server(address)
        idle = pool.idle.get((user, reply_capabilities))
        while idle:
            connection, _ = idle.popitem()
            if self._hand_out(pool, connection):
                return connection
        return None

    def take(self, connection: BackendConnection) -> bool:
        """Take this very connection if it is idle in its pool and still usable."""
        pool = self.pool_of(connection)
        idle = pool.idle.get((connection.user, connection.reply_capabilities))
        if idle is None or connection not in idle:
            return False
        del idle[connection]
        return self._hand_out(pool, connection)

    def _hand_out(self, pool: ServerPool, connection: BackendConnection) -> bool:
        """A connection just taken off the idle list: counted as used, or closed if the server
        ended it meanwhile."""
        pool.stats.conn_free -= 1
        if not connection.idle_usable():
            connection.close()
            return False
        self._mark_used(pool)
        return True

    def has_capacity(self, address: ServerAddress, max_connections: int) -> bool:
        stats = self.server(address).stats
        return stats.conn_used < max_connections or stats.conn_free > 0  # an idle one can be replaced

    def reserve(self, address: ServerAddress) -> None:
        """Count a connection being opened as used, so max_connections holds while it connects."""
        self._mark_used(self.server(address))

    def connect_failed(self, address: ServerAddress) -> None:
        pool = self.server(address)
        pool.stats.conn_used -= 1
        pool.stats.conn_err += 1

    def connected(self, address: ServerAddress) -> None:
        self.server(address).stats.conn_ok += 1

    def release(self, connection: BackendConnection, reusable: bool) -> None:
        """Give a connection back; one in an unknown state is closed, never pooled."""
        pool = self.pool_of(connection)
        stats = pool.stats
        stats.conn_used -= 1
        channel = connection.channel
        stats.bytes_sent += channel.bytes_sent - connection.counted_sent
        stats.bytes_recv += channel.bytes_received - connection.counted_received
        connection.counted_sent, connection.counted_received = channel.bytes_sent, channel.bytes_received
        if not reusable or connection.broken or channel.is_closing():
            connection.close()
            return
        connection.last_used = self.clock
        pool.idle.setdefault((connection.user, connection.reply_capabilities), {})[connection] = None
        pool.stats.conn_free += 1

    def _mark_used(self, pool: ServerPool) -> None:
        stats = pool.stats
        stats.conn_used += 1
        if stats.conn_used > stats.max_conn_used:
            stats.max_conn_used = stats.conn_used

    def close_idle(self, older_than: float = IDLE_TIMEOUT, address: ServerAddress | None = None) -> int:
        """Close idle connections unused for `older_than` seconds (all of them for one server)."""
        now = time.monotonic()
        closed = 0
        for pool in self.servers.values():
            if address is not None and pool.address != address:
                continue
            for idle in pool.idle.values():
                for connection in list(idle):
                    if now - connection.last_used >= older_than or connection.broken:
                        del idle[connection]
                        connection.close()
                        closed += 1
            pool.stats.conn_free = sum(len(q) for q in pool.idle.values())
        return closed
