"""Counters behind the stats_mysql_* admin tables. Updated by sessions, read by the admin interface."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

from turnout.proxy.digest import digest_hash

_BUCKETS_US: Final[list[int]] = [100, 500, 1000, 5000, 10000, 50000, 100000, 500000, 1000000, 5000000, 10000000]
COMMAND_COLUMNS = (
    "Command", "Total_Time_us", "Total_cnt", "cnt_100us", "cnt_500us", "cnt_1ms", "cnt_5ms", "cnt_10ms",
    "cnt_50ms", "cnt_100ms", "cnt_500ms", "cnt_1s", "cnt_5s", "cnt_10s", "cnt_INFs",
)
DIGEST_COLUMNS = (
    "hostgroup", "schemaname", "username", "client_address", "digest", "digest_text", "count_star",
    "first_seen", "last_seen", "sum_time", "min_time", "max_time", "sum_rows_affected", "sum_rows_sent",
)
# stats_mysql_commands_counters' rows, in ProxySQL's order: it shows every one, counted or not.
COMMANDS = (
    "ALTER_TABLE", "ALTER_VIEW", "ANALYZE_TABLE", "BEGIN", "CALL", "CHANGE_MASTER", "COMMIT", "CREATE_DATABASE",
    "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMPORARY", "CREATE_TRIGGER", "CREATE_USER", "CREATE_VIEW",
    "DEALLOCATE", "DELETE", "DESCRIBE", "DROP_DATABASE", "DROP_INDEX", "DROP_TABLE", "DROP_TRIGGER", "DROP_USER",
    "DROP_VIEW", "EXECUTE", "EXPLAIN", "FLUSH", "GRANT", "INSERT", "KILL", "LOAD", "LOCK_TABLE", "OPTIMIZE",
    "PREPARE", "PURGE", "RELEASE_SAVEPOINT", "RENAME_TABLE", "RESET_MASTER", "RESET_SLAVE", "REPLACE", "REVOKE",
    "ROLLBACK", "ROLLBACK_SAVEPOINT", "SAVEPOINT", "SELECT", "SELECT_FOR_UPDATE", "SET", "SHOW_TABLE_STATUS",
    "SHOW", "START_TRANSACTION", "TRUNCATE_TABLE", "UNLOCK_TABLES", "UPDATE", "USE", "UNKNOWN",
)
_KNOWN_COMMANDS = frozenset(COMMANDS)


def command_name(first_word: str, is_write: bool) -> str:
    """ProxySQL's Command column for a statement's first word."""
    word = first_word.upper()
    if word == "SELECT" and is_write:
        return "SELECT_FOR_UPDATE"
    if word == "START":
        return "START_TRANSACTION"
    if word == "LOCK":
        return "LOCK_TABLE"
    if word == "UNLOCK":
        return "UNLOCK_TABLES"
    if word == "DESC":
        return "DESCRIBE"
    return word if word in _KNOWN_COMMANDS else "UNKNOWN"


@dataclass
class CommandCounter:
    total_time_us: int = 0
    total: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS_US) + 1))

    def add(self, elapsed_us: int) -> None:
        self.total += 1
        self.total_time_us += elapsed_us
        # The first limit >= elapsed, else INF; most statements stop at the first limits.
        index = 0
        for limit in _BUCKETS_US:
            if elapsed_us <= limit:
                break
            index += 1
        self.buckets[index] += 1


@dataclass
class DigestEntry:
    digest_text: str
    count: int = 0
    first_seen: int = 0
    last_seen: int = 0
    sum_time: int = 0
    min_time: int = 0
    max_time: int = 0
    rows_affected: int = 0


@dataclass
class ErrorEntry:
    """A row of stats_mysql_errors: one error code from one server for one user and schema."""

    count: int = 0
    first_seen: int = 0
    last_seen: int = 0
    last_error: str = ""


ErrorKey = tuple[int, str, int, str, str, int]  # hostgroup, hostname, port, username, schemaname, errno
ERROR_COLUMNS = (
    "hostgroup", "hostname", "port", "username", "client_address", "schemaname", "errno", "count_star",
    "first_seen", "last_seen", "last_error",
)


@dataclass
class GlobalCounters:
    client_connections_created: int = 0
    client_connections_aborted: int = 0
    client_connections_non_idle: int = 0
    questions: int = 0
    backend_errors: int = 0
    statements_held: int = 0
    statements_refused_two_writers: int = 0
    statements_retried: int = 0
    statements_timed_out: int = 0
    statements_fast_path: int = 0  # relayed by callbacks, without waking the session's task
    metadata_restored: int = 0  # results whose left-out column definitions the proxy put back in
    transactions_ended: int = 0
    # Transaction replay: replays begun, and how they ended; transactions lost that were not
    # replayed (their record said why), in all and for the two commonest reasons.
    transaction_replays: int = 0
    transaction_replays_succeeded: int = 0
    transaction_replays_mismatched: int = 0
    transaction_replays_failed: int = 0
    transaction_replays_refused: int = 0
    transaction_replays_refused_unreproducible: int = 0
    transaction_replays_refused_too_large: int = 0
    # causal reads (decisions.causal_route): on a replica known to have the writes, after a wait
    # on one that succeeded, on the writer after a wait that timed out, on the writer at once
    causal_reads_caught_up: int = 0
    causal_reads_waited: int = 0
    causal_reads_timed_out: int = 0
    causal_reads_to_writer: int = 0
    access_denied_wrong_password: int = 0  # unknown user or wrong password, as ProxySQL counts it
    access_denied_max_connections: int = 0
    access_denied_max_user_connections: int = 0


class ProxyStats:
    def __init__(self) -> None:
        self.commands: dict[str, CommandCounter] = {}
        self.digests: dict[tuple[int, str, str, str], DigestEntry] = {}
        self.counters = GlobalCounters()
        self.started_at = time.time()
        # stats_mysql_connection_pool's Queries per (hostgroup, server): turnout's pools are per
        # server, shared by its hostgroups; the statements are counted where they were routed.
        self.server_queries: dict[tuple[int, tuple[str, int]], int] = {}
        self.rule_hits: dict[int, int] = {}  # stats_mysql_query_rules
        self.errors: dict[ErrorKey, ErrorEntry] = {}  # stats_mysql_errors
        self.commands_enabled = True  # mysql-commands_stats
        self.digests_enabled = True  # mysql-query_digests

    def count_server_query(self, hostgroup: int, address: tuple[str, int]) -> None:
        key = (hostgroup, address)
        self.server_queries[key] = self.server_queries.get(key, 0) + 1

    def count_rule_hits(self, rule_ids: tuple[int, ...]) -> None:
        hits = self.rule_hits
        for rule_id in rule_ids:
            hits[rule_id] = hits.get(rule_id, 0) + 1

    def count_error(self, key: ErrorKey, message: str) -> None:
        now = int(time.time())
        entry = self.errors.get(key)
        if entry is None:
            entry = self.errors[key] = ErrorEntry(first_seen=now)
        entry.count += 1
        entry.last_seen = now
        entry.last_error = message

    def error_rows(self) -> list[dict[str, object]]:
        return [
            dict(zip(ERROR_COLUMNS, (hg, host, port, user, "", schema, errno, e.count, e.first_seen, e.last_seen,
                                     e.last_error), strict=True))
            for (hg, host, port, user, schema, errno), e in self.errors.items()
        ]

    def record(
        self,
        command: str,
        hostgroup: int,
        schema: str,
        username: str,
        digest_text: str,
        elapsed_us: int,
        rows_affected: int,
    ) -> None:
        self.counters.questions += 1
        if self.commands_enabled:
            counter = self.commands.get(command)
            if counter is None:
                counter = self.commands[command] = CommandCounter()
            counter.add(elapsed_us)
        if not self.digests_enabled:
            return
        key = (hostgroup, schema, username, digest_text)
        entry = self.digests.get(key)
        now = int(time.time())
        if entry is None:
            entry = self.digests[key] = DigestEntry(digest_text, first_seen=now, min_time=elapsed_us)
        entry.count += 1
        entry.last_seen = now
        entry.sum_time += elapsed_us
        if elapsed_us < entry.min_time:
            entry.min_time = elapsed_us
        if elapsed_us > entry.max_time:
            entry.max_time = elapsed_us
        entry.rows_affected += rows_affected

    def command_rows(self) -> list[tuple[object, ...]]:
        """Every command ProxySQL lists, zeros for those not seen (then any other name counted)."""
        empty = (0, 0, *[0] * (len(_BUCKETS_US) + 1))
        rows: list[tuple[object, ...]] = []
        for name in (*COMMANDS, *sorted(set(self.commands) - _KNOWN_COMMANDS)):
            c = self.commands.get(name)
            rows.append((name, *empty) if c is None else (name, c.total_time_us, c.total, *c.buckets))
        return rows

    def digest_rows(self) -> list[tuple[object, ...]]:
        return [
            (hg, schema, user, "", digest_hash(e.digest_text), e.digest_text, e.count, e.first_seen,
             e.last_seen, e.sum_time, e.min_time, e.max_time, e.rows_affected, 0)
            for (hg, schema, user, _), e in self.digests.items()
        ]


class PoolCounters(Protocol):
    """A server pool's counters (proxy/pool.py's ServerStats)."""

    conn_used: int
    conn_free: int
    conn_ok: int
    conn_err: int
    max_conn_used: int
    queries: int
    bytes_sent: int
    bytes_recv: int


Address = tuple[str, int]


def connection_pool_rows(
    pools: Mapping[Address, PoolCounters],
    routed: Mapping[int, Iterable[Address]],
    configured: Iterable[tuple[int, Address, str]],
    writer_hostgroups: Iterable[int],
    server_queries: Mapping[tuple[int, Address], int],
) -> list[dict[str, object]]:
    """stats_mysql_connection_pool as ProxySQL shows it: a row per (hostgroup, server), for the
    servers in force in a hostgroup, configured in it, or that took its statements. Queries are
    counted per hostgroup. turnout pools connections per server, shared by its hostgroups: the
    connection columns are on the row of the hostgroup the server is writer in (when it is one),
    else of its lowest hostgroup, and zero on its other rows, so sums over the table stay right.
    A server not in force in a hostgroup shows the status configured for it there when it is
    OFFLINE_SOFT or OFFLINE_HARD, else SHUNNED (the monitor took it out)."""
    online = {(hostgroup, address) for hostgroup, members in routed.items() for address in members}
    offline = {(hostgroup, address): status for hostgroup, address, status in configured
               if status in ("OFFLINE_SOFT", "OFFLINE_HARD")}
    rows_of: dict[Address, set[int]] = {}
    for hostgroup, address in [*online, *[(hg, a) for hg, a, _ in configured], *server_queries]:
        rows_of.setdefault(address, set()).add(hostgroup)
    for address in pools:
        rows_of.setdefault(address, set())
    writers = set(writer_hostgroups)
    rows: list[dict[str, object]] = []
    for address in sorted(rows_of):
        hostgroups = sorted(rows_of[address]) or [-1]
        home = next((hg for hg in hostgroups if hg in writers and (hg, address) in online), hostgroups[0])
        pool = pools.get(address)
        for hostgroup in hostgroups:
            counted = pool is not None and hostgroup == home
            rows.append({
                "hostgroup": hostgroup, "srv_host": address[0], "srv_port": address[1],
                "status": "ONLINE" if (hostgroup, address) in online else offline.get((hostgroup, address), "SHUNNED"),
                "ConnUsed": pool.conn_used if counted and pool else 0,
                "ConnFree": pool.conn_free if counted and pool else 0,
                "ConnOK": pool.conn_ok if counted and pool else 0,
                "ConnERR": pool.conn_err if counted and pool else 0,
                "MaxConnUsed": pool.max_conn_used if counted and pool else 0,
                "Queries": server_queries.get((hostgroup, address), 0),
                "Queries_GTID_sync": 0,
                "Bytes_data_sent": pool.bytes_sent if counted and pool else 0,
                "Bytes_data_recv": pool.bytes_recv if counted and pool else 0,
                "Latency_us": 0,  # the monitor's ping time, filled in by the node
            })
    return rows


def reset_pool(pool: PoolCounters) -> None:
    """What reading stats_mysql_connection_pool_reset zeroes (ProxySQL's list)."""
    pool.conn_ok = pool.conn_err = pool.max_conn_used = pool.queries = pool.bytes_sent = pool.bytes_recv = 0
