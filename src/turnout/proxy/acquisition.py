"""Backend acquisition: which server of a hostgroup a statement's connection comes from, an idle
pooled one at once or a new login (waiting for a server while none is usable), backoff for
servers that fail, and KILL QUERY from a connection of its own.

Given who logs in (`Login`), the client's reply_capabilities and the session's previous connection — never
the session itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from turnout.config.model import MysqlServer
from turnout.protocol import constants as c
from turnout.protocol.generic import ErrPacket
from turnout.proxy.backend import BackendConnection, ServerAddress, connect_backend
from turnout.proxy.channel import Channel, open_channel
from turnout.proxy.errors import ER_NO_SUCH_THREAD, BackendError, BackendRefused, NoServer
from turnout.proxy.hostgroups import HostgroupTable, pick_server, pick_server_sticky
from turnout.proxy.pool import Pools
from turnout.proxy.settings import SessionSettings
from turnout.proxy.stats import GlobalCounters

log = logging.getLogger("turnout.proxy")

# What the proxy offers clients as the servers behind offer it (`Backends.offered_capabilities`)
# and relays as they send it: bulk statements, session tracking, deprecate-EOF framing, MariaDB's progress
# reports, extended type info and metadata caching (backend connections are pooled per client's
# choice of these: backend.REPLY_CAPABILITIES).
RELAYED_CAPABILITIES = (
    c.MARIADB_CLIENT_STMT_BULK_OPERATIONS
    | c.CLIENT_SESSION_TRACK
    | c.CLIENT_DEPRECATE_EOF
    | c.MARIADB_CLIENT_PROGRESS
    | c.MARIADB_CLIENT_EXTENDED_TYPE_INFO
    | c.MARIADB_CLIENT_CACHE_METADATA
)
_CAPABILITY_NAMES = {
    c.CLIENT_FOUND_ROWS: "CLIENT_FOUND_ROWS",
    c.CLIENT_LOCAL_FILES: "CLIENT_LOCAL_FILES",
    c.CLIENT_NO_SCHEMA: "CLIENT_NO_SCHEMA",
    c.CLIENT_SESSION_TRACK: "session tracking (CLIENT_SESSION_TRACK)",
    c.CLIENT_DEPRECATE_EOF: "CLIENT_DEPRECATE_EOF",
    c.MARIADB_CLIENT_PROGRESS: "progress reports (MARIADB_CLIENT_PROGRESS)",
    c.MARIADB_CLIENT_STMT_BULK_OPERATIONS: "bulk statements (MARIADB_CLIENT_STMT_BULK_OPERATIONS)",
    c.MARIADB_CLIENT_EXTENDED_TYPE_INFO: "extended type info (MARIADB_CLIENT_EXTENDED_TYPE_INFO)",
    c.MARIADB_CLIENT_CACHE_METADATA: "metadata caching (MARIADB_CLIENT_CACHE_METADATA)",
}


def capability_names(capabilities: int) -> list[str]:
    return [name for bit, name in _CAPABILITY_NAMES.items() if capabilities & bit]

FAILED_SERVER_BACKOFF = 1.0  # seconds a server that refused a connection gets no new ones
# How often a session's statement stays on the server (and connection, when idle) of its previous
# one instead of a fresh weighted choice: a server thread woken per statement is costly.
CONNECTION_AFFINITY = 0.9

Connector = Callable[[str, int], Awaitable[Channel]]


@dataclass(frozen=True, slots=True)
class Login:
    """Who a backend connection logs in as: the client's user, with SHA1(password) recovered
    from its login (or the configured clear password)."""

    username: str
    stage1: bytes | None
    password: str | None


class Backends:
    """The backend connections of one proxy process: pools, the routing in force, servers in
    backoff, what servers offer. Single-threaded (asyncio)."""

    def __init__(self, counters: GlobalCounters, connector: Connector = open_channel) -> None:
        self.pools = Pools()
        self.counters = counters
        self.connector = connector
        self.routing = HostgroupTable()
        self._routing_changed = asyncio.Event()
        self._failed_until: dict[ServerAddress, float] = {}
        self._servers: dict[ServerAddress, MysqlServer] = {}
        self._rng = random.Random()
        # What backend logins found in each server's greeting: which of the RELAYED_CAPABILITIES
        # it offers.
        self._offered: dict[ServerAddress, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # background KILL QUERYs
        self.on_backend_error: Callable[[ServerAddress], None] | None = None
        self.connect_timeout_server = 1.0
        self.connect_timeout_server_max = 10.0
        self.tls_context: ssl.SSLContext | None = None  # for servers with use_ssl
        # Causal reads are in use: new connections track their GTIDs (backend.connect_backend).
        self.track_gtids = False

    def configure(
        self,
        connect_timeout_server: float,
        connect_timeout_server_max: float,
        tls_context: ssl.SSLContext | None,
        configured: set[ServerAddress],
    ) -> None:
        self.connect_timeout_server = connect_timeout_server
        self.connect_timeout_server_max = connect_timeout_server_max
        self.tls_context = tls_context
        self._offered = {a: v for a, v in self._offered.items() if a in configured}

    def apply_routing(self, table: HostgroupTable) -> None:
        """Servers as in force (monitor's view); wakes statements waiting for a server."""
        self.routing = table
        self._servers = {}
        for members in table.by_hostgroup.values():
            for server in members:
                self._servers[server.address] = server
        event, self._routing_changed = self._routing_changed, asyncio.Event()
        event.set()

    def serves(self, hostgroup: int, address: ServerAddress) -> bool:
        """Whether `address` still takes the hostgroup's traffic (not paused, ONLINE there)."""
        table = self.routing
        if hostgroup in table.paused:
            return False
        return any(server.address == address for server in table.online(hostgroup))

    # ---- taking a connection ------------------------------------------------------------------
    def _usable(self, server: MysqlServer) -> bool:
        if self._failed_until:  # usually empty: no lookup
            failed_until = self._failed_until.get(server.address)
            if failed_until is not None and failed_until > time.monotonic():
                return False
        return self.pools.has_capacity(server.address, server.max_connections)

    def idle_for(
        self, hostgroup: int, username: str, reply_capabilities: int, previous: BackendConnection | None,
        only: tuple[ServerAddress, ...] = (),
    ) -> BackendConnection | None:
        """An idle pooled connection to a server of the hostgroup (of `only` those, when given),
        if one is at hand now; the previous statement's connection when it is idle and its server
        is chosen again."""
        table = self.routing
        if hostgroup in table.paused:
            return None
        server = pick_server_sticky(
            _among(table.online(hostgroup), only), self._usable, self._rng,
            previous.address if previous is not None else None, CONNECTION_AFFINITY,
        )
        if server is None:
            return None
        address = server.address
        if (
            previous is not None
            and previous.address == address
            and previous.user == username
            and previous.reply_capabilities == reply_capabilities
            and self.pools.take(previous)
        ):
            return previous
        return self.pools.take_idle(address, username, reply_capabilities)

    async def acquire(
        self, hostgroup: int, login: Login, reply_capabilities: int, only: tuple[ServerAddress, ...] = ()
    ) -> BackendConnection:
        """A logged-in connection to an ONLINE server of the hostgroup (of `only` those, when
        given), waiting for one if none is.

        Waits up to mysql-connect_timeout_server_max for a server to become available (a
        failover in progress, a server coming back), then raises NoServer.
        """
        started = time.monotonic()
        deadline = started + self.connect_timeout_server_max
        while True:
            table = self.routing
            server = (
                None if hostgroup in table.paused
                else pick_server(_among(table.online(hostgroup), only), self._usable, self._rng)
            )
            if server is not None:
                connection = self.pools.take_idle(server.address, login.username, reply_capabilities)
                if connection is not None:
                    return connection
                connection = await self._connect(server, login, reply_capabilities)
                if connection is not None:
                    return connection
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = int((time.monotonic() - started) * 1000)
                raise NoServer(hostgroup, waited, table.paused_reasons.get(hostgroup, "") if hostgroup in table.paused else "")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routing_changed.wait(), min(remaining, 0.05))

    async def _connect(self, server: MysqlServer, login: Login, reply_capabilities: int) -> BackendConnection | None:
        """A new connection to `server`; None when it failed in a way another server may not."""
        address = server.address
        self.pools.reserve(address)
        try:
            connection = await connect_backend(
                address,
                login.username,
                login.stage1,
                login.password,
                reply_capabilities,
                self.connect_timeout_server,
                self.tls_context if server.use_ssl else None,
                self.connector,
                self.track_gtids,
            )
        except BackendRefused as refused:
            self.pools.connect_failed(address)
            if refused.err.code in (c.ER_ACCESS_DENIED_ERROR, c.ER_TOO_MANY_USER_CONNECTIONS):
                raise
            log.warning("backend %s:%d refused the login: %s", address[0], address[1], refused.err.message)
            self.backend_failed(address)
            return None
        except BackendError as exc:
            log.warning("backend %s:%d: %s", address[0], address[1], exc)
            self.pools.connect_failed(address)
            self.backend_failed(address)
            return None
        self.pools.connected(address)
        self._learn_capabilities(connection)
        missing = reply_capabilities & ~connection.reply_capabilities
        if missing:
            # The session's client expects what this server cannot send (results shaped for a
            # capability it does not offer). The connection serves other sessions; new clients
            # are no longer offered it.
            self.pools.release(connection, reusable=True)
            message = (
                f"turnout: server {address[0]}:{address[1]} does not offer "
                f"{', '.join(capability_names(missing))}, which this connection agreed with the proxy; reconnect"
            )
            log.warning("%s (user %s)", message, login.username)
            raise BackendRefused(ErrPacket(c.ER_UNKNOWN_ERROR, "HY000", message))
        return connection

    def backend_failed(self, address: ServerAddress) -> None:
        """A connect or a connection failed: no new statements go there for a moment."""
        self._failed_until[address] = time.monotonic() + FAILED_SERVER_BACKOFF
        self.counters.backend_errors += 1
        self.pools.close_idle(older_than=0, address=address)
        if self.on_backend_error is not None:
            self.on_backend_error(address)

    async def writer_changed(self, hostgroup: int, refused_by: ServerAddress, deadline: float) -> None:
        """Wait until the hostgroup's writer is no longer `refused_by` (or it is paused), or the deadline."""
        while time.monotonic() < deadline:
            table = self.routing
            online = [s.address for s in table.online(hostgroup)]
            if hostgroup in table.paused or (online and refused_by not in online):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routing_changed.wait(), min(deadline - time.monotonic(), 0.05))

    # ---- what servers offer -------------------------------------------------------------------
    def _learn_capabilities(self, connection: BackendConnection) -> None:
        offered = connection.server_capabilities & RELAYED_CAPABILITIES
        if self._offered.get(connection.address) != offered:
            self._offered[connection.address] = offered
            log.info(
                "server %s:%d (%s) offers %s", connection.address[0], connection.address[1],
                connection.server_version, ", ".join(capability_names(offered)) or "none of the relayed capabilities",
            )

    def offered_capabilities(self, server_version: str) -> int:
        """Which RELAYED_CAPABILITIES new clients are offered: those every configured server the
        proxy has logged in to (at least one) offered, so any backend connection can honour them;
        MariaDB's own only when `server_version` (mysql-server_version, what clients are greeted
        with) says MariaDB (MariaDB clients use extended capabilities only with a server whose
        version says so)."""
        known = self._offered
        if not known:
            return 0
        offered = RELAYED_CAPABILITIES
        for capabilities in known.values():
            offered &= capabilities
        if "MariaDB" not in server_version:
            offered &= 0xFFFFFFFF
        return offered

    def offers_metadata_caching(self, server_version: str) -> bool:
        return bool(self.offered_capabilities(server_version) & c.MARIADB_CLIENT_CACHE_METADATA)

    # ---- KILL QUERY ---------------------------------------------------------------------------
    def reset_then_pool(self, connection: BackendConnection) -> None:
        """A connection whose session ended holding state on it: COM_RESET_CONNECTION in the
        background (bounded by mysql-connect_timeout_server), then back to the pool, closed if
        the reset fails. Its settings are unknown afterwards: the next session sets its own."""
        task = asyncio.get_running_loop().create_task(self._reset_then_pool(connection))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reset_then_pool(self, connection: BackendConnection) -> None:
        try:
            framer = await asyncio.wait_for(
                connection.exchange(bytes([c.COM_RESET_CONNECTION])), self.connect_timeout_server
            )
            reset = framer.error is None
        except (BackendError, TimeoutError):
            reset = False
        if reset:
            connection.statements.clear()  # the server closed them
            # names and schema no session has: the next one's SET NAMES and COM_INIT_DB run
            connection.settings = SessionSettings(
                names="", schema="", multi_statements=connection.settings.multi_statements
            )
        self.pools.release(connection, reusable=reset)

    def kill_query(self, connection: BackendConnection, login: Login, connection_too: bool = False) -> None:
        """KILL QUERY (KILL CONNECTION with `connection_too`) on the server from a connection of
        its own, as the same user (a user may kill its own threads), in the background, bounded
        by mysql-connect_timeout_server."""
        task = asyncio.get_running_loop().create_task(
            self._kill_query(connection.address, connection.thread_id, login, connection_too)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill_query(self, address: ServerAddress, thread_id: int, login: Login, connection_too: bool) -> None:
        where = f"{address[0]}:{address[1]}"
        try:
            server = self._servers.get(address)
            killer = await connect_backend(
                address, login.username, login.stage1, login.password, 0, self.connect_timeout_server,
                self.tls_context if server is not None and server.use_ssl else None, self.connector,
            )
        except BackendError as exc:
            log.warning("cannot kill the timed-out statement of thread %d on %s: %s", thread_id, where, exc)
            return
        try:
            what = "CONNECTION" if connection_too else "QUERY"
            framer = await asyncio.wait_for(killer.query(f"KILL {what} {thread_id}"), self.connect_timeout_server)
            if framer.error is not None and framer.error.code != ER_NO_SUCH_THREAD:
                log.warning("KILL QUERY %d on %s: %s", thread_id, where, framer.error.message)
        except (BackendError, TimeoutError) as failure:
            log.warning("KILL QUERY %d on %s: %s", thread_id, where, failure or "timed out")
        finally:
            killer.close()


def _among(servers: tuple[MysqlServer, ...], only: tuple[ServerAddress, ...]) -> tuple[MysqlServer, ...]:
    """The servers whose address is in `only`; all of them when `only` is empty."""
    if not only:
        return servers
    return tuple(server for server in servers if server.address in only)
