"""One stats table from several data-path processes (`--workers`): the rows each process keeps
for itself, combined as one ProxySQL process would have counted them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

Row = dict[str, object]

# Per table: the columns that name a row, and how other columns combine (default: sum).
_KEYS: dict[str, tuple[str, ...]] = {
    "stats_mysql_connection_pool": ("hostgroup", "srv_host", "srv_port"),
    "stats_mysql_commands_counters": ("Command",),
    "stats_mysql_query_digest": ("hostgroup", "schemaname", "username", "client_address", "digest"),
    "stats_mysql_global": ("Variable_Name",),
    "stats_mysql_users": ("username",),
    "stats_mysql_query_rules": ("rule_id",),
    "stats_mysql_errors": ("hostgroup", "hostname", "port", "username", "schemaname", "errno"),
}
_FIRST = {"status", "digest_text", "frontend_max_connections", "last_error", "client_address"}
_MIN = {"first_seen", "min_time"}
_MAX = {"last_seen", "max_time", "Latency_us"}
_MAX_VARIABLES = {"ProxySQL_Uptime"}


def merge_stats(table: str, row_sets: Sequence[list[Row]]) -> list[Row]:
    """`table`'s rows from every process as one set; `_reset` tables merge like their base."""
    base = table.removesuffix("_reset")
    if base == "stats_mysql_processlist":  # sessions are per process, with ids unique across them
        return [row for rows in row_sets for row in rows]
    keys = _KEYS.get(base)
    if keys is None:
        return list(row_sets[0]) if row_sets else []
    merged: dict[tuple[object, ...], Row] = {}
    for rows in row_sets:
        for row in rows:
            key = tuple(row.get(column) for column in keys)
            into = merged.get(key)
            if into is None:
                merged[key] = dict(row)
            elif base == "stats_mysql_global":
                name = str(row["Variable_Name"])
                into["Variable_Value"] = _combine_text(
                    into["Variable_Value"], row["Variable_Value"], max if name in _MAX_VARIABLES else _add
                )
            else:
                for column, value in row.items():
                    if column not in keys:
                        into[column] = _combine(column, into.get(column), value)
    return list(merged.values())


def _add(a: int, b: int) -> int:
    return a + b


def _combine(column: str, a: object, b: object) -> object:
    if column in _FIRST or not isinstance(a, int) or not isinstance(b, int):
        return a if a not in (None, "") else b
    if column in _MIN:
        return min(a, b) if a and b else a or b  # 0 means never
    if column in _MAX:
        return max(a, b)
    return a + b


def _combine_text(a: object, b: object, how: Callable[[int, int], int]) -> str:
    try:
        return str(how(int(str(a)), int(str(b))))
    except ValueError:
        return str(a)
