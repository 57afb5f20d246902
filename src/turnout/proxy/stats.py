"""Counters behind the stats_mysql_* admin tables. Updated by sessions, read by the admin interface."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

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
_KNOWN_COMMANDS = frozenset({
    "ALTER_TABLE", "ANALYZE_TABLE", "BEGIN", "CALL", "CHANGE_MASTER", "COMMIT", "CREATE_DATABASE",
    "CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMPORARY", "CREATE_TRIGGER", "CREATE_USER", "DEALLOCATE",
    "DELETE", "DESCRIBE", "DROP_DATABASE", "DROP_INDEX", "DROP_TABLE", "DROP_TRIGGER", "DROP_USER",
    "GRANT", "EXECUTE", "EXPLAIN", "FLUSH", "INSERT", "KILL", "LOAD", "LOCK_TABLE", "OPTIMIZE", "PREPARE",
    "PURGE", "RENAME_TABLE", "RESET_MASTER", "RESET_SLAVE", "REPLACE", "REVOKE", "ROLLBACK", "SAVEPOINT",
    "SELECT", "SELECT_FOR_UPDATE", "SET", "SHOW_TABLE_STATUS", "START_TRANSACTION", "TRUNCATE_TABLE",
    "UNLOCK_TABLES", "UPDATE", "USE", "SHOW", "UNKNOWN",
})


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


class ProxyStats:
    def __init__(self) -> None:
        self.commands: dict[str, CommandCounter] = {}
        self.digests: dict[tuple[int, str, str, str], DigestEntry] = {}
        self.counters = GlobalCounters()
        self.started_at = time.time()

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
        counter = self.commands.get(command)
        if counter is None:
            counter = self.commands[command] = CommandCounter()
        counter.add(elapsed_us)
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
        return [
            (name, c.total_time_us, c.total, *c.buckets)
            for name, c in sorted(self.commands.items())
        ]

    def digest_rows(self) -> list[tuple[object, ...]]:
        return [
            (hg, schema, user, "", digest_hash(e.digest_text), e.digest_text, e.count, e.first_seen,
             e.last_seen, e.sum_time, e.min_time, e.max_time, e.rows_affected, 0)
            for (hg, schema, user, _), e in self.digests.items()
        ]
