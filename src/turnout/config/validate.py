"""What may be put in force: checks on configuration rows, shared by the config file reader and
LOAD ... TO RUNTIME.

Each check returns problems as `(index, column, message)`: `index` is the row's position in the
sequence given and `column` the offending column when there is one (so the config file can name
its line); messages name the row and say what is wrong.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from turnout.config.model import (
    SERVER_STATUSES,
    MysqlServer,
    MysqlUser,
    ProxysqlServer,
    QueryRule,
    ReplicationHostgroup,
    SchedulerJob,
)

Problem = tuple[int, str | None, str]
Finding = tuple[str | None, str | None]  # (column, reason or None when fine)

INT_MAX = 2**31 - 1
CHECK_TYPES = (
    "read_only",
    "innodb_read_only",
    "super_read_only",
    "read_only|innodb_read_only",
    "read_only&innodb_read_only",
)
TWO_WRITER_MODES = ("refuse", "keep-current")
RE_MODIFIERS = ("CASELESS", "GLOBAL")


def _range(row: object, column: str, low: int, high: int = INT_MAX) -> Finding:
    value = getattr(row, column)
    if value is None or low <= value <= high:
        return (column, None)
    return (column, f"{column} {value} is outside {low}..{high}")


def _flag(row: object, column: str, allowed: tuple[int, ...] = (0, 1)) -> Finding:
    value = getattr(row, column)
    if value is None or value in allowed:
        return (column, None)
    return (column, f"{column} must be one of {', '.join(map(str, allowed))}, not {value}")


def _one_of(row: object, column: str, allowed: tuple[str, ...], fold: bool = False) -> Finding:
    value = getattr(row, column)
    if (value.lower() if fold else value) in allowed:
        return (column, None)
    return (column, f"{column} {value!r} is not one of {', '.join(allowed)}")


def regex_problem(pattern: str | None) -> str | None:
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"{pattern!r} is not a valid regular expression: {exc}"
    return None


def _regex(row: object, column: str) -> Finding:
    reason = regex_problem(getattr(row, column))
    return (column, None if reason is None else f"{column} {reason}")


def _report(index: int, name: str, findings: Iterable[Finding]) -> list[Problem]:
    return [(index, column, f"{name}: {reason}") for column, reason in findings if reason is not None]


def _twice(keys: Sequence[object], index: int, what: str) -> Finding:
    return (None, f"{what} listed twice" if keys.count(keys[index]) > 1 else None)


def server_problems(servers: Sequence[MysqlServer]) -> list[Problem]:
    keys = [(s.hostgroup_id, s.hostname, s.port) for s in servers]
    problems: list[Problem] = []
    for index, server in enumerate(servers):
        name = f"mysql_servers {server.hostname}:{server.port} in hostgroup {server.hostgroup_id}"
        problems += _report(
            index,
            name,
            (
                _range(server, "hostgroup_id", 0),
                ("hostname", None if server.hostname.strip() else "hostname must not be empty"),
                _range(server, "port", 0, 65535),
                _range(server, "gtid_port", 0, 65535),
                ("status", None if server.status.upper() in SERVER_STATUSES else
                 f"status {server.status!r} is not one of {', '.join(SERVER_STATUSES)}"),
                _range(server, "weight", 0, 10_000_000),
                _flag(server, "compression"),
                _range(server, "max_connections", 0),
                _range(server, "max_replication_lag", 0, 126_144_000),
                _flag(server, "use_ssl"),
                _range(server, "max_latency_ms", 0),
                _twice(keys, index, "(hostgroup_id, hostname, port)"),
            ),
        )
    return problems


def user_problems(users: Sequence[MysqlUser]) -> list[Problem]:
    backends = [(u.username, u.backend) for u in users]
    frontends = [(u.username, u.frontend) for u in users]
    problems: list[Problem] = []
    for index, user in enumerate(users):
        problems += _report(
            index,
            f"mysql_users {user.username!r}",
            (
                ("username", None if user.username else "username must not be empty"),
                _flag(user, "active"),
                _flag(user, "use_ssl"),
                _range(user, "default_hostgroup", 0),
                _flag(user, "schema_locked"),
                _flag(user, "transaction_persistent"),
                _flag(user, "fast_forward"),
                _flag(user, "backend"),
                _flag(user, "frontend"),
                _range(user, "max_connections", 0),
                _flag(user, "causal_reads"),
                _twice(backends, index, "(username, backend)"),
                _twice(frontends, index, "(username, frontend)"),
            ),
        )
    return problems


def query_rule_problems(rules: Sequence[QueryRule]) -> list[Problem]:
    ids = [rule.rule_id for rule in rules]
    problems: list[Problem] = []
    for index, rule in enumerate(rules):
        modifiers = [m.strip().upper() for m in (rule.re_modifiers or "").split(",") if m.strip()]
        unknown = [m for m in modifiers if m not in RE_MODIFIERS]
        problems += _report(
            index,
            f"mysql_query_rules rule_id {rule.rule_id}",
            (
                _range(rule, "rule_id", 1),
                _flag(rule, "active"),
                _range(rule, "flagIN", 0),
                _range(rule, "flagOUT", 0),
                _range(rule, "proxy_port", 0, 65535),
                _regex(rule, "match_digest"),
                _regex(rule, "match_pattern"),
                _flag(rule, "negate_match_pattern"),
                ("re_modifiers", f"re_modifiers {', '.join(unknown)} unknown (use CASELESS, GLOBAL)"
                 if unknown else None),
                ("replace_pattern", "replace_pattern needs a match_pattern"
                 if rule.replace_pattern is not None and rule.match_pattern is None else None),
                _range(rule, "destination_hostgroup", 0),
                _range(rule, "cache_ttl", 1),
                _flag(rule, "cache_empty_result"),
                _range(rule, "cache_timeout", 0),
                _flag(rule, "reconnect"),
                _range(rule, "timeout", 0),
                _range(rule, "retries", 0, 1000),
                _range(rule, "delay", 0),
                _flag(rule, "sticky_conn"),
                _flag(rule, "multiplex", (0, 1, 2)),
                _flag(rule, "log"),
                _flag(rule, "apply"),
                _twice(ids, index, "rule_id"),
            ),
        )
    return problems


def replication_hostgroup_problems(pairs: Sequence[ReplicationHostgroup]) -> list[Problem]:
    writers = [pair.writer_hostgroup for pair in pairs]
    readers = [pair.reader_hostgroup for pair in pairs]
    problems: list[Problem] = []
    for index, pair in enumerate(pairs):
        writer, reader = pair.writer_hostgroup, pair.reader_hostgroup
        problems += _report(
            index,
            f"mysql_replication_hostgroups writer {writer} / reader {reader}",
            (
                _range(pair, "writer_hostgroup", 0),
                _range(pair, "reader_hostgroup", 0),
                ("reader_hostgroup", "reader_hostgroup must differ from writer_hostgroup"
                 if writer == reader else None),
                ("writer_hostgroup", f"hostgroup {writer} is also a reader_hostgroup in another row"
                 if writer != reader and writer in readers else None),
                ("reader_hostgroup", f"hostgroup {reader} is also a writer_hostgroup in another row"
                 if writer != reader and reader in writers else None),
                _one_of(pair, "check_type", CHECK_TYPES, fold=True),
                _flag(pair, "stale_read_protection"),
                _one_of(pair, "two_writer_mode", TWO_WRITER_MODES),
                _twice(writers, index, "writer_hostgroup"),
                _twice(readers, index, "reader_hostgroup"),
            ),
        )
    return problems


def scheduler_problems(jobs: Sequence[SchedulerJob]) -> list[Problem]:
    ids = Counter(job.id for job in jobs)
    problems: list[Problem] = []
    for index, job in enumerate(jobs):
        problems += _report(
            index,
            f"scheduler id {job.id}",
            (
                _range(job, "id", 1),
                _flag(job, "active"),
                _range(job, "interval_ms", 100, 100_000_000),
                ("filename", None if job.filename.strip() else "filename must not be empty"),
                ("id", "id listed twice" if ids[job.id] > 1 else None),
            ),
        )
    return problems


def proxysql_server_problems(peers: Sequence[ProxysqlServer]) -> list[Problem]:
    keys = [(peer.hostname, peer.port) for peer in peers]
    problems: list[Problem] = []
    for index, peer in enumerate(peers):
        problems += _report(
            index,
            f"proxysql_servers {peer.hostname}:{peer.port}",
            (
                ("hostname", None if peer.hostname.strip() else "hostname must not be empty"),
                _range(peer, "port", 0, 65535),
                _range(peer, "weight", 0),
                _twice(keys, index, "hostname and port"),
            ),
        )
    return problems
