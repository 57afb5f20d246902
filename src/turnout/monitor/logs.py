"""The rows of ProxySQL's monitor.* log tables, kept in memory and bounded."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence

CONNECT_LOG = "mysql_server_connect_log"
PING_LOG = "mysql_server_ping_log"
READ_ONLY_LOG = "mysql_server_read_only_log"
REPLICATION_LAG_LOG = "mysql_server_replication_lag_log"

# ProxySQL's columns, in its order.
LOG_COLUMNS: dict[str, tuple[str, ...]] = {
    CONNECT_LOG: ("hostname", "port", "time_start_us", "connect_success_time_us", "connect_error"),
    PING_LOG: ("hostname", "port", "time_start_us", "ping_success_time_us", "ping_error"),
    READ_ONLY_LOG: ("hostname", "port", "time_start_us", "success_time_us", "read_only", "error"),
    REPLICATION_LAG_LOG: ("hostname", "port", "time_start_us", "success_time_us", "repl_lag", "error"),
}

LogRow = tuple[object, ...]

DEFAULT_MAX_ROWS = 10_000  # per table


class MonitorLog:
    """Append-only tables capped at `max_rows` each; rows older than the history are dropped."""

    def __init__(self, max_rows: int = DEFAULT_MAX_ROWS, history_ms: int = 600_000) -> None:
        self.history_ms = history_ms
        self._tables: dict[str, deque[LogRow]] = {name: deque(maxlen=max_rows) for name in LOG_COLUMNS}

    def add(self, table: str, row: Sequence[object]) -> None:
        if len(row) != len(LOG_COLUMNS[table]):
            raise ValueError(f"{table} has {len(LOG_COLUMNS[table])} columns, got {len(row)}")
        rows = self._tables[table]
        rows.append(tuple(row))
        self._expire(rows)

    def rows(self, table: str) -> list[LogRow]:
        if table not in self._tables:
            raise KeyError(f"no monitor table {table!r}; known: {', '.join(LOG_COLUMNS)}")
        rows = self._tables[table]
        self._expire(rows)
        return list(rows)

    def _expire(self, rows: deque[LogRow]) -> None:
        if self.history_ms <= 0:
            return
        oldest = time.time_ns() // 1000 - self.history_ms * 1000
        while rows:
            started = rows[0][2]
            if not isinstance(started, int) or started >= oldest:
                return
            rows.popleft()
