"""The proxy: listener, the configuration in force, and backend connections handed to sessions."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnout.config.model import MysqlServer, MysqlUser, RuntimeConfig
from turnout.protocol import constants as c
from turnout.protocol.auth import parse_stored_password
from turnout.protocol.generic import ErrPacket
from turnout.protocol.metadata import Metadata
from turnout.proxy.backend import (
    BackendConnection,
    BackendError,
    BackendRefused,
    ServerAddress,
    connect_backend,
)
from turnout.proxy.channel import Channel
from turnout.proxy.hostgroups import RoutingTable, pick_server, pick_server_sticky
from turnout.proxy.pool import IDLE_TIMEOUT, Pools
from turnout.proxy.rules import CompiledRule, compile_rules
from turnout.proxy.serving import serve
from turnout.proxy.session import ClientSession, NoServer
from turnout.proxy.stats import COMMAND_COLUMNS, DIGEST_COLUMNS, ProxyStats, connection_pool_rows, reset_pool
from turnout.proxy.tls import TlsSetupError, client_context, server_context

log = logging.getLogger("turnout.proxy")

FAILED_SERVER_BACKOFF = 1.0  # seconds a server that refused a connection gets no new ones
# How often a session's statement stays on the server (and connection, when idle) of its previous
# one instead of a fresh weighted choice: a server thread woken per statement is costly.
CONNECTION_AFFINITY = 0.9
ER_NO_SUCH_THREAD = 1094  # the statement ended meanwhile: nothing to kill
TIMEOUT_CHECK_INTERVAL = 0.25  # seconds between looks for statements past their timeout
IDLE_SWEEP_INTERVAL = 10.0  # seconds between closings of backend connections idle too long


@dataclass(frozen=True, slots=True)
class UserEntry:
    user: MysqlUser
    double_sha1: bytes
    stage1: bytes | None
    password: str | None


def _user_entry(user: MysqlUser) -> UserEntry:
    double_sha1, stage1 = parse_stored_password(user.password)
    clear = user.password if user.password and not user.password.startswith("*") else None
    return UserEntry(user, double_sha1, stage1, clear if user.password else "")


def parse_interface(value: str, default_port: int) -> tuple[str, int]:
    """"127.0.0.1:6033" -> ("127.0.0.1", 6033); ProxySQL allows a list separated by ';' (first used)."""
    first = value.split(";")[0].strip()
    host, _, port = first.rpartition(":")
    return (host or "127.0.0.1", int(port) if port else default_port)


class Proxy:
    def __init__(self, config: RuntimeConfig, datadir: Path | None = None, first_session_id: int = 1) -> None:
        # Where the TLS certificate lives (mysql-have_ssl); generated there when missing.
        self.datadir = datadir
        self.tls_context: ssl.SSLContext | None = None
        self.pools = Pools()
        self.stats = ProxyStats()
        self.sessions: dict[int, ClientSession] = {}
        self.connections_by_user: dict[str, int] = {}
        # PrepareOk responses by (schema, SQL): the whole response, params, columns, definitions.
        self.prepared_responses: dict[tuple[str | None, str], tuple[bytes, int, int, Metadata]] = {}
        # What backend logins found in each server's greeting: its version when it offered
        # metadata caching, None when it did not.
        self._metadata_caching: dict[ServerAddress, str | None] = {}
        self.routing = RoutingTable()
        self._routing_changed = asyncio.Event()
        self._failed_until: dict[ServerAddress, float] = {}
        self._servers: dict[ServerAddress, MysqlServer] = {}
        self._session_ids = itertools.count(first_session_id)
        # asyncio's or uvloop's servers: Any, because uvloop's `sockets` is a list where the
        # type stubs say tuple, and the compiled proxy checks declared types.
        self._listeners: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()  # sessions, and background KILL QUERYs
        self._timeout_watch: asyncio.Task[None] | None = None
        self.idle_timeout = IDLE_TIMEOUT  # seconds a pooled connection may sit unused
        self.idle_sweep_interval = IDLE_SWEEP_INTERVAL
        self._rng = random.Random()
        self.on_backend_error: Callable[[ServerAddress], None] | None = None
        self.config = config
        self.users: dict[str, UserEntry] = {}
        self.rules: tuple[CompiledRule, ...] = ()
        self.reader_hostgroups: frozenset[int] = frozenset()
        self.apply_config(config)
        self.apply_routing(RoutingTable.build(config.servers, version=config.version))

    # ---- configuration ------------------------------------------------------------------------
    def apply_config(self, config: RuntimeConfig) -> None:
        """Put a new runtime configuration in force; sessions pick it up at their next statement.
        Raises TlsSetupError, with nothing changed, when TLS is asked for but cannot be set up."""
        tls_context = self._tls_context_for(config)
        backend_tls_context = client_context(
            config.variable("mysql-ssl_p2s_ca", ""), config.variable("mysql-ssl_p2s_cert", ""),
            config.variable("mysql-ssl_p2s_key", ""),
        )
        self.config = config
        self.tls_context = tls_context
        self.backend_tls_context = backend_tls_context
        configured = {server.address for server in config.servers}
        self._metadata_caching = {a: v for a, v in self._metadata_caching.items() if a in configured}
        self.users = {u.username: _user_entry(u) for u in config.users if u.frontend}
        self.rules = compile_rules(config.query_rules)
        self.reader_hostgroups = frozenset(rh.reader_hostgroup for rh in config.replication_hostgroups)
        self.max_allowed_packet = config.int_variable("mysql-max_allowed_packet", 64 * 1024 * 1024)
        self.max_connections = config.int_variable("mysql-max_connections", 10000)
        self.connect_timeout_server = config.int_variable("mysql-connect_timeout_server", 1000) / 1000
        self.connect_timeout_server_max = config.int_variable("mysql-connect_timeout_server_max", 10000) / 1000
        self.connect_timeout_client = config.int_variable("mysql-connect_timeout_client", 10000) / 1000
        self.default_query_timeout = config.int_variable("mysql-default_query_timeout", 86_400_000) / 1000
        self.auto_increment_delay_multiplex = config.int_variable("mysql-auto_increment_delay_multiplex", 5)
        self.server_version = config.variable("mysql-server_version", "5.5.30")
        self.stats.commands_enabled = config.bool_variable("mysql-commands_stats", True)
        self.stats.digests_enabled = config.bool_variable("mysql-query_digests", True)
        # As ProxySQL: a session that names no schema uses this one, so that a pooled connection
        # never carries another client's current database into it.
        self.default_schema = config.variable("mysql-default_schema", "information_schema")
        self.prepared_responses.clear()

    def _tls_context_for(self, config: RuntimeConfig) -> ssl.SSLContext | None:
        if not config.bool_variable("mysql-have_ssl", False):
            return None
        if self.tls_context is not None:
            return self.tls_context
        if self.datadir is None:
            raise TlsSetupError("mysql-have_ssl is true but there is no datadir for the TLS certificate")
        return server_context(self.datadir)

    def apply_routing(self, table: RoutingTable) -> None:
        """Servers as in force (monitor's view); wakes statements waiting for a server."""
        self.routing = table
        self._servers = {}
        for members in table.by_hostgroup.values():
            for server in members:
                self._servers[server.address] = server
        event, self._routing_changed = self._routing_changed, asyncio.Event()
        event.set()

    def is_reader_hostgroup(self, hostgroup: int) -> bool:
        return hostgroup in self.reader_hostgroups

    # ---- sessions -----------------------------------------------------------------------------
    def admit(self, session: ClientSession, entry: UserEntry) -> tuple[int, str] | None:
        """None when the session may start, else the error code and message to refuse it with."""
        if len(self.sessions) >= self.max_connections:
            self.stats.counters.access_denied_max_connections += 1
            return (c.ER_CON_COUNT_ERROR, "Too many connections")
        name = entry.user.username
        if self.connections_by_user.get(name, 0) >= entry.user.max_connections:
            self.stats.counters.access_denied_max_user_connections += 1
            return (c.ER_TOO_MANY_USER_CONNECTIONS, f"User '{name}' has exceeded the 'max_user_connections' resource")
        self.sessions[session.id] = session
        self.connections_by_user[name] = self.connections_by_user.get(name, 0) + 1
        self.stats.counters.client_connections_created += 1
        return None

    def user_changed(self, session: ClientSession, old: UserEntry, new: UserEntry) -> None:
        self.connections_by_user[old.user.username] -= 1
        self.connections_by_user[new.user.username] = self.connections_by_user.get(new.user.username, 0) + 1

    def session_ended(self, session: ClientSession) -> None:
        if self.sessions.pop(session.id, None) is not None and session.user is not None:
            self.connections_by_user[session.user.user.username] -= 1

    def record(
        self,
        command: str,
        hostgroup: int,
        schema: str,
        username: str,
        digest_text: str,
        elapsed_us: int,
        rows_affected: int,
        address: ServerAddress,
        error: ErrPacket | None = None,
    ) -> None:
        stats = self.stats
        stats.record(command, hostgroup, schema, username, digest_text, elapsed_us, rows_affected)
        stats.count_server_query(hostgroup, address)
        self.pools.server(address).stats.queries += 1
        if error is not None:
            stats.count_error((hostgroup, address[0], address[1], username, schema, error.code), error.message)

    def stats_table(self, table: str) -> list[dict[str, object]] | None:
        """Rows for the admin's stats tables, as column -> value."""
        if table.startswith("stats_mysql_connection_pool"):
            rows = connection_pool_rows(
                {address: pool.stats for address, pool in self.pools.servers.items()},
                {hg: [s.address for s in members] for hg, members in self.routing.by_hostgroup.items()},
                [(s.hostgroup_id, s.address, s.status) for s in self.config.servers],
                [pair.writer_hostgroup for pair in self.config.replication_hostgroups],
                self.stats.server_queries,
            )
            if table.endswith("_reset"):
                self.reset_stats(table)
            return rows
        if table == "stats_mysql_users":
            return [
                {"username": name, "frontend_connections": self.connections_by_user.get(name, 0),
                 "frontend_max_connections": entry.user.max_connections}
                for name, entry in sorted(self.users.items())
            ]
        if table == "stats_mysql_query_rules":
            return [{"rule_id": r.rule.rule_id, "hits": self.stats.rule_hits.get(r.rule.rule_id, 0)} for r in self.rules]
        if table.startswith("stats_mysql_errors"):
            rows = self.stats.error_rows()
            if table.endswith("_reset"):
                self.reset_stats(table)
            return rows
        if table.startswith("stats_mysql_commands_counters"):
            return [dict(zip(COMMAND_COLUMNS, row, strict=True)) for row in self.stats.command_rows()]
        if table.startswith("stats_mysql_query_digest"):
            rows = [dict(zip(DIGEST_COLUMNS, row, strict=True)) for row in self.stats.digest_rows()]
            if table.endswith("_reset"):  # ProxySQL: reading the _reset table zeroes the counters
                self.reset_stats(table)
            return rows
        if table == "stats_mysql_global":
            counters = self.stats.counters
            values = {
                "Access_Denied_Max_Connections": counters.access_denied_max_connections,
                "Access_Denied_Max_User_Connections": counters.access_denied_max_user_connections,
                "Access_Denied_Wrong_Password": counters.access_denied_wrong_password,
                "Active_Transactions": sum(
                    1 for s in self.sessions.values() if s.held is not None and "transaction" in s.held.reasons
                ),
                "Client_Connections_connected": len(self.sessions),
                "Client_Connections_non_idle": sum(1 for s in self.sessions.values() if s.current_command),
                "Client_Connections_created": counters.client_connections_created,
                "Client_Connections_aborted": counters.client_connections_aborted,
                "Questions": counters.questions,
                "Server_Connections_connected": sum(p.total for p in self.pools.servers.values()),
                "Backend_errors": counters.backend_errors,
                "Statements_refused_two_writers": counters.statements_refused_two_writers,
                "Statements_held": counters.statements_held,
                "Statements_retried": counters.statements_retried,
                "Statements_fast_path": counters.statements_fast_path,
                "Statements_timed_out": counters.statements_timed_out,
                "Metadata_restored": counters.metadata_restored,
                "Transactions_ended_by_switchover": counters.transactions_ended,
                "ProxySQL_Uptime": int(time.time() - self.stats.started_at),
            }
            return [{"Variable_Name": k, "Variable_Value": str(v)} for k, v in values.items()]
        if table == "stats_mysql_processlist":
            return [session.processlist_row() for session in self.sessions.values()]
        return None

    def reset_stats(self, table: str) -> None:
        """Zero what reading `table` (a stats_*_reset table) zeroes in ProxySQL."""
        base = table.removesuffix("_reset")
        if base == "stats_mysql_query_digest":
            self.stats.digests.clear()
        elif base == "stats_mysql_connection_pool":
            self.stats.server_queries.clear()
            for pool in self.pools.servers.values():
                reset_pool(pool.stats)
        elif base == "stats_mysql_errors":
            self.stats.errors.clear()

    # ---- backend connections ------------------------------------------------------------------
    def _usable(self, server: MysqlServer) -> bool:
        if self._failed_until:  # usually empty: no lookup
            failed_until = self._failed_until.get(server.address)
            if failed_until is not None and failed_until > time.monotonic():
                return False
        return self.pools.has_capacity(server.address, server.max_connections)

    def take_idle(self, hostgroup: int, session: ClientSession) -> BackendConnection | None:
        """An idle pooled connection to a server of the hostgroup, if one is at hand now."""
        table = self.routing
        user = session.user
        if hostgroup in table.held or user is None:
            return None
        previous = session.previous_connection
        server = pick_server_sticky(
            table.online(hostgroup), self._usable, self._rng,
            previous.address if previous is not None else None, CONNECTION_AFFINITY,
        )
        if server is None:
            return None
        address = server.address
        if (
            previous is not None
            and previous.address == address
            and previous.user == user.user.username
            and previous.flavour == session.flavour
            and self.pools.take(previous)
        ):
            return previous
        connection = self.pools.take_idle(address, user.user.username, session.flavour)
        if connection is not None:
            session.previous_connection = connection
        return connection

    async def acquire(self, hostgroup: int, session: ClientSession) -> BackendConnection:
        """A logged-in connection to an ONLINE server of the hostgroup, waiting for one if none is.

        Waits up to mysql-connect_timeout_server_max for a server to become available (a
        failover in progress, a server coming back), then raises NoServer.
        """
        assert session.user is not None
        user = session.user
        started = time.monotonic()
        deadline = started + self.connect_timeout_server_max
        while True:
            table = self.routing
            server = None if hostgroup in table.held else pick_server(table.online(hostgroup), self._usable, self._rng)
            if server is not None:
                connection = self.pools.take_idle(server.address, user.user.username, session.flavour)
                if connection is not None:
                    session.previous_connection = connection
                    return connection
                self.pools.reserve(server.address)
                try:
                    connection = await connect_backend(
                        server.address,
                        user.user.username,
                        session.stage1 or None,
                        user.password,
                        session.flavour,
                        self.connect_timeout_server,
                        self.backend_tls_context if server.use_ssl else None,
                    )
                except BackendRefused as refused:
                    self.pools.connect_failed(server.address)
                    if refused.err.code in (c.ER_ACCESS_DENIED_ERROR, c.ER_TOO_MANY_USER_CONNECTIONS):
                        raise
                    log.warning(
                        "backend %s:%d refused the login: %s", server.address[0], server.address[1], refused.err.message
                    )
                    self.backend_failed(server.address)
                    continue
                except BackendError as exc:
                    log.warning("backend %s:%d: %s", server.address[0], server.address[1], exc)
                    self.pools.connect_failed(server.address)
                    self.backend_failed(server.address)
                    continue
                self.pools.connected(server.address)
                self._learn_metadata_caching(connection)
                if connection.flavour != session.flavour:
                    # Only metadata caching can be missing: the session's client expects result
                    # sets shaped for it, which this server cannot send. The connection serves
                    # other sessions; new clients are no longer offered it.
                    self.pools.release(connection, reusable=True)
                    message = (
                        f"turnout: server {server.address[0]}:{server.address[1]} does not offer metadata "
                        "caching (MARIADB_CLIENT_CACHE_METADATA), which this connection agreed with the "
                        "proxy; reconnect"
                    )
                    log.warning("%s (session %d)", message, session.id)
                    raise BackendRefused(ErrPacket(c.ER_UNKNOWN_ERROR, "HY000", message))
                session.previous_connection = connection
                return connection
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = int((time.monotonic() - started) * 1000)
                raise NoServer(hostgroup, waited, table.held_reasons.get(hostgroup, "") if hostgroup in table.held else "")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routing_changed.wait(), min(remaining, 0.05))

    def _learn_metadata_caching(self, connection: BackendConnection) -> None:
        offered = bool(connection.server_capabilities & c.MARIADB_CLIENT_CACHE_METADATA)
        found = connection.server_version if offered else None
        if connection.address not in self._metadata_caching or self._metadata_caching[connection.address] != found:
            self._metadata_caching[connection.address] = found
            log.info(
                "server %s:%d (%s) %s metadata caching", connection.address[0], connection.address[1],
                connection.server_version, "offers" if offered else "does not offer",
            )

    def offers_metadata_caching(self) -> bool:
        """Whether new clients are offered MariaDB's metadata caching: once every configured server
        the proxy has logged in to offered it (at least one), so any backend connection can honour
        it, and only when mysql-server_version says MariaDB (MariaDB clients use extended
        capabilities only with a server whose version says so)."""
        known = self._metadata_caching
        return "MariaDB" in self.server_version and bool(known) and all(v is not None for v in known.values())

    def greeting_version(self, metadata_caching: bool) -> str:
        """The server version clients are greeted with: mysql-server_version, as ProxySQL."""
        return self.server_version

    async def writer_changed(self, hostgroup: int, refused_by: ServerAddress, deadline: float) -> None:
        """Wait until the hostgroup's writer is no longer `refused_by` (or it is held), or the deadline."""
        while time.monotonic() < deadline:
            table = self.routing
            online = [s.address for s in table.online(hostgroup)]
            if hostgroup in table.held or (online and refused_by not in online):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routing_changed.wait(), min(deadline - time.monotonic(), 0.05))

    async def drain(self, address: ServerAddress, grace: float) -> int:
        """Before `address` stops taking writes: wait up to `grace` seconds for the sessions whose
        transactions run there to finish, then end what remains; returns how many were ended.

        New writes are held meanwhile (the hostgroup is held), so the set only shrinks.
        """
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not any(self._pinned_to(session, address) for session in self.sessions.values()):
                return 0
            await asyncio.sleep(0.01)
        ended = 0
        for session in list(self.sessions.values()):
            if self._pinned_to(session, address):
                session.end_held("the master changed during a switchover; the transaction was rolled back")
                ended += 1
        self.stats.counters.transactions_ended += ended
        return ended

    def cut_writes(self, addresses: frozenset[ServerAddress], reason: str) -> int:
        """A proxy that fenced itself: statements in flight to `addresses` lose their connection
        (the client hears `reason`, never a late acknowledgement), transactions held there end at
        their next command. Returns how many sessions it touched."""
        return sum(1 for session in list(self.sessions.values()) if session.cut(addresses, reason))

    @staticmethod
    def _pinned_to(session: ClientSession, address: ServerAddress) -> bool:
        """The session has a transaction or other state on a connection to `address`.

        A session that merely delays multiplexing holds no state and lets go of its connection
        at its next statement, so it does not delay the drain.
        """
        held = session.held
        return held is not None and bool(held.reasons) and held.connection.address == address

    def backend_failed(self, address: ServerAddress) -> None:
        """A connect or a connection failed: no new statements go there for a moment."""
        self._failed_until[address] = time.monotonic() + FAILED_SERVER_BACKOFF
        self.stats.counters.backend_errors += 1
        self.pools.close_idle(older_than=0, address=address)
        if self.on_backend_error is not None:
            self.on_backend_error(address)

    # ---- listening ----------------------------------------------------------------------------
    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Channel(self._accept), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        self._listeners.append(server)
        if self._timeout_watch is None:
            self._timeout_watch = loop.create_task(self._watch_timeouts(), name="turnout-query-timeouts")

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for server in self._listeners for sock in server.sockets]

    def _accept(self, client: Channel) -> None:
        sock = client.get_extra_info("socket")
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        session = ClientSession(self, client, next(self._session_ids))
        task = asyncio.get_running_loop().create_task(serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_timeouts(self) -> None:
        """Statements past their timeout (mysql-default_query_timeout, a rule's timeout) are killed;
        pooled connections unused for `idle_timeout` are closed; the pools' clock is kept current."""
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(min(TIMEOUT_CHECK_INTERVAL, self.idle_sweep_interval))
            now = time.monotonic()
            self.pools.clock = now
            if now - last_sweep >= self.idle_sweep_interval:
                last_sweep = now
                closed = self.pools.close_idle(self.idle_timeout)
                if closed:
                    log.info("closed %d backend connections idle for %.0f s or more", closed, self.idle_timeout)
            for session in self.sessions.values():
                if session.deadline and session.deadline < now:
                    try:
                        session.time_out()
                    except Exception:  # one session's trouble must not stop the watch for all
                        log.exception("session %d: ending its timed-out statement failed", session.id)

    def kill_query(self, connection: BackendConnection, session: ClientSession) -> None:
        """KILL QUERY on the server from a connection of its own, as the same user (a user may
        kill its own threads), in the background, bounded by mysql-connect_timeout_server."""
        if session.user is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._kill_query(connection.address, connection.thread_id, session.user, session.stage1)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _kill_query(self, address: ServerAddress, thread_id: int, user: UserEntry, stage1: bytes | None) -> None:
        where = f"{address[0]}:{address[1]}"
        try:
            server = self._servers.get(address)
            killer = await connect_backend(
                address, user.user.username, stage1 or None, user.password, False, self.connect_timeout_server,
                self.backend_tls_context if server is not None and server.use_ssl else None,
            )
        except BackendError as exc:
            log.warning("cannot kill the timed-out statement of thread %d on %s: %s", thread_id, where, exc)
            return
        try:
            framer = await asyncio.wait_for(killer.query(f"KILL QUERY {thread_id}"), self.connect_timeout_server)
            if framer.error is not None and framer.error.code != ER_NO_SUCH_THREAD:
                log.warning("KILL QUERY %d on %s: %s", thread_id, where, framer.error.message)
        except (BackendError, TimeoutError) as failure:
            log.warning("KILL QUERY %d on %s: %s", thread_id, where, failure or "timed out")
        finally:
            killer.close()

    async def stop(self) -> None:
        if self._timeout_watch is not None:
            self._timeout_watch.cancel()
            self._timeout_watch = None
        for server in self._listeners:
            server.close()
        for server in self._listeners:
            await server.wait_closed()
        self._listeners.clear()
        for session in list(self.sessions.values()):
            await session.close()
        self.pools.close_idle(older_than=0)
