"""The proxy: listener, the configuration in force, the stats tables, switchover drains.

What sessions share lives in `Shared` (state.py), which `Proxy` is; backend connections come
from `Backends` (acquisition.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from turnout.config.model import RuntimeConfig
from turnout.proxy.acquisition import Connector
from turnout.proxy.backend import ServerAddress
from turnout.proxy.causal import merged, monitor_position
from turnout.proxy.channel import Channel, open_channel
from turnout.proxy.decisions import CAUSAL_USER
from turnout.proxy.hostgroups import HostgroupTable
from turnout.proxy.pool import IDLE_TIMEOUT, Pools
from turnout.proxy.rules import compile_rules
from turnout.proxy.serving import serve
from turnout.proxy.session import ClientSession
from turnout.proxy.state import SessionState, Shared, user_entry
from turnout.proxy.statement import Keep
from turnout.proxy.stats import COMMAND_COLUMNS, DIGEST_COLUMNS, connection_pool_rows, reset_pool
from turnout.proxy.tls import TlsSetupError, client_context, server_context

log = logging.getLogger("turnout.proxy")

TIMEOUT_CHECK_INTERVAL = 0.25  # seconds between looks for statements past their timeout
IDLE_SWEEP_INTERVAL = 10.0  # seconds between closings of backend connections idle too long


def parse_interface(value: str, default_port: int) -> tuple[str, int]:
    """"127.0.0.1:6033" -> ("127.0.0.1", 6033); ProxySQL allows a list separated by ';' (first used)."""
    first = value.split(";")[0].strip()
    host, _, port = first.rpartition(":")
    return (host or "127.0.0.1", int(port) if port else default_port)


class Proxy(Shared):
    def __init__(
        self,
        config: RuntimeConfig,
        datadir: Path | None = None,
        first_session_id: int = 1,
        connector: Connector = open_channel,
        managed: bool = False,
    ) -> None:
        super().__init__(connector)
        # Following a manager's published masters (turnout up, or a [manager] table): the
        # settings whose default is "auto" are on.
        self.managed = managed
        # Where the TLS certificate lives (mysql-have_ssl); generated there when missing.
        self.datadir = datadir
        self._session_ids = itertools.count(first_session_id)
        # asyncio's or uvloop's servers: Any, because uvloop's `sockets` is a list where the
        # type stubs say tuple, and the compiled proxy checks declared types.
        self._listeners: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()  # sessions
        self._timeout_watch: asyncio.Task[None] | None = None
        self.idle_timeout = IDLE_TIMEOUT  # seconds a pooled connection may sit unused
        self.idle_sweep_interval = IDLE_SWEEP_INTERVAL
        self.config = config
        self.apply_config(config)
        self.apply_routing(HostgroupTable.build(config.servers, version=config.version))

    @property
    def pools(self) -> Pools:
        return self.backends.pools

    @property
    def routing(self) -> HostgroupTable:
        return self.backends.routing

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
        self.backends.configure(
            config.int_variable("mysql-connect_timeout_server", 1000) / 1000,
            config.int_variable("mysql-connect_timeout_server_max", 10000) / 1000,
            backend_tls_context,
            {server.address for server in config.servers},
        )
        self.users = {u.username: user_entry(u) for u in config.users if u.frontend}
        self.rules = compile_rules(config.query_rules)
        self.reader_hostgroups = frozenset(rh.reader_hostgroup for rh in config.replication_hostgroups)
        self.writer_of = {rh.reader_hostgroup: rh.writer_hostgroup for rh in config.replication_hostgroups}
        self.causal_mode = config.variable("mysql-causal_reads", CAUSAL_USER).strip().lower()
        self.causal_timeout_ms = config.int_variable("mysql-causal_reads_timeout", 1000)
        causal = (
            self.causal_mode != CAUSAL_USER
            or any(u.causal_reads for u in config.users if u.frontend)
            or any(r.gtid_from_hostgroup is not None for r in config.query_rules if r.active)
        )
        if causal and not self.backends.track_gtids:
            # pooled connections opened before do not report their GTIDs: new ones will
            self.pools.close_idle(older_than=0)
        self.causal = causal
        self.backends.track_gtids = causal
        self.max_allowed_packet = config.int_variable("mysql-max_allowed_packet", 64 * 1024 * 1024)
        self.max_connections = config.int_variable("mysql-max_connections", 10000)
        self.connect_timeout_client = config.int_variable("mysql-connect_timeout_client", 10000) / 1000
        self.default_query_timeout = config.int_variable("mysql-default_query_timeout", 86_400_000) / 1000
        self.wait_timeout = config.int_variable("mysql-wait_timeout", 28_800_000) / 1000
        self.auto_increment_delay_multiplex = config.int_variable("mysql-auto_increment_delay_multiplex", 5)
        replay = config.variable("mysql-transaction_replay", "auto").strip().lower()
        self.transaction_replay = self.managed if replay == "auto" else config.bool_variable(
            "mysql-transaction_replay", False
        )
        self.transaction_replay_max_size = config.int_variable("mysql-transaction_replay_max_size", 1024 * 1024)
        self.transaction_replay_attempts = config.int_variable("mysql-transaction_replay_attempts", 5)
        self.transaction_replay_timeout = config.int_variable("mysql-transaction_replay_timeout", 30000) / 1000
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

    def apply_routing(self, table: HostgroupTable) -> None:
        """Servers as in force (monitor's view); wakes statements waiting for a server. What
        replicas were known to have applied is forgotten (a server may have been rebuilt), but
        for what the monitor last saw them apply."""
        self.applied = dict(self.monitor_applied)
        self.backends.apply_routing(table)

    def apply_positions(self, gtids: Mapping[ServerAddress, str]) -> None:
        """The GTIDs the monitor last saw each server apply (`health.applied_gtids`): a causal
        read goes to a replica known past its writes without waiting there. A position the
        proxy's own waits learned since stays when it is further."""
        positions = {}
        for address, text in gtids.items():
            position = monitor_position(text)
            if position:
                positions[address] = position
        applied = dict(self.applied)
        for address, position in positions.items():
            applied[address] = merged(applied.get(address, {}), position)
        self.monitor_applied = positions
        self.applied = applied

    def offers_metadata_caching(self) -> bool:
        return self.backends.offers_metadata_caching(self.server_version)

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
                    1 for s in self.sessions.values() if s.kept is not None and Keep.TRANSACTION in s.kept.reasons
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
                "Transaction_replays": counters.transaction_replays,
                "Transaction_replays_succeeded": counters.transaction_replays_succeeded,
                "Transaction_replays_mismatched": counters.transaction_replays_mismatched,
                "Transaction_replays_failed": counters.transaction_replays_failed,
                "Transaction_replays_refused": counters.transaction_replays_refused,
                "Transaction_replays_refused_unreproducible": counters.transaction_replays_refused_unreproducible,
                "Transaction_replays_refused_too_large": counters.transaction_replays_refused_too_large,
                "Causal_reads_caught_up": counters.causal_reads_caught_up,
                "Causal_reads_waited": counters.causal_reads_waited,
                "Causal_reads_wait_timed_out": counters.causal_reads_timed_out,
                "Causal_reads_to_writer": counters.causal_reads_to_writer,
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
                session.end_kept("the master changed during a switchover; the transaction was rolled back")
                ended += 1
        self.stats.counters.transactions_ended += ended
        return ended

    def cut_writes(self, addresses: frozenset[ServerAddress], reason: str) -> int:
        """A proxy that fenced itself: statements in flight to `addresses` lose their connection
        (the client hears `reason`, never a late acknowledgement), transactions kept there end at
        their next command. Returns how many sessions it touched."""
        return sum(1 for session in list(self.sessions.values()) if session.cut(addresses, reason))

    @staticmethod
    def _pinned_to(session: SessionState, address: ServerAddress) -> bool:
        """The session has a transaction or other state on a connection to `address`.

        A session that merely delays multiplexing keeps no state and lets go of its connection
        at its next statement, so it does not delay the drain.
        """
        kept = session.kept
        return kept is not None and bool(kept.reasons) and kept.connection.address == address

    # ---- listening ----------------------------------------------------------------------------
    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Channel(self.accept), host, port, reuse_port=reuse_port or None, backlog=1024
        )
        self._listeners.append(server)
        if self._timeout_watch is None:
            self._timeout_watch = loop.create_task(self._watch_timeouts(), name="turnout-query-timeouts")

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for server in self._listeners for sock in server.sockets]

    def accept(self, client: Channel) -> None:
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
            for session in list(self.sessions.values()):
                if session.idle_too_long(now) or (session.killed and not session.current_command):
                    # As the server past wait_timeout: the connection closes; the client's next
                    # command finds it gone (2013 / 2006), its transaction rolled back.
                    session.close()
                    continue
                if session.deadline and session.deadline < now:
                    try:
                        session.time_out()
                    except Exception:  # one session's trouble must not stop the watch for all
                        log.exception("session %d: ending its timed-out statement failed", session.id)

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
            session.close()
        self.pools.close_idle(older_than=0)
