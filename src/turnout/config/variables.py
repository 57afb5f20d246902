"""The global variables turnout implements: ProxySQL's names, defaults and value checks.

Values are strings, as in ProxySQL's global_variables table. `mysql-*` variables (including
`mysql-monitor_*`) belong to LOAD/SAVE MYSQL VARIABLES, `admin-*` ones to ADMIN VARIABLES.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

Check = Callable[[str], str | None]  # a problem with the value, or None

TRUE_WORDS = ("true", "1", "on", "yes")
FALSE_WORDS = ("false", "0", "off", "no")


def integer(low: int, high: int) -> Check:
    def check(value: str) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            return f"{value!r} is not an integer"
        if not low <= number <= high:
            return f"{number} is outside {low}..{high}"
        return None

    return check


def boolean(value: str) -> str | None:
    if value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return None
    return f"{value!r} is not a boolean (true or false)"


def auto_or_boolean(value: str) -> str | None:
    if value.strip().lower() in ("auto", *TRUE_WORDS, *FALSE_WORDS):
        return None
    return f"{value!r} is not auto, true or false"


def one_of(*allowed: str) -> Check:
    def check(value: str) -> str | None:
        if value.strip().lower() in allowed:
            return None
        return f"{value!r} is not one of {', '.join(allowed)}"

    return check


def text(value: str) -> str | None:
    return None


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


_IFACE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.:-]+?):(\d{1,5})$")


def interfaces(value: str) -> str | None:
    """`host:port[;host:port...]`, ProxySQL's form for listeners."""
    parts = [part.strip() for part in value.split(";") if part.strip()]
    if not parts:
        return "must list at least one host:port"
    for part in parts:
        match = _IFACE.match(part)
        if match is None or not 0 < int(match.group(1)) <= 65535:
            return f"{part!r} is not host:port"
    return None


def credentials(value: str) -> str | None:
    """`user:password[;user:password...]`."""
    parts = [part for part in value.split(";") if part]
    if not parts:
        return "must list at least one user:password"
    for part in parts:
        user, sep, _password = part.partition(":")
        if not sep or not user:
            return f"{part!r} is not user:password"
    return None


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    check: Check
    doc: str = ""


_MAX_INT = 2**31 - 1

VARIABLES: tuple[Variable, ...] = (
    # --- the proxy ---
    Variable("mysql-interfaces", "127.0.0.1:6033", interfaces, "where applications connect"),
    Variable("mysql-threads", "4", integer(1, 256), "worker threads (turnout: data-path processes)"),
    Variable("mysql-max_connections", "10000", integer(1, 1_000_000)),
    Variable("mysql-ssl_p2s_ca", "", text, "CA file to verify servers with use_ssl = 1 (empty: not verified)"),
    Variable("mysql-ssl_p2s_cert", "", text, "client certificate for servers with use_ssl = 1"),
    Variable("mysql-ssl_p2s_key", "", text, "its key"),
    Variable(
        "mysql-have_ssl", "false", boolean,
        "offer TLS to clients (certificate: proxysql-cert.pem / proxysql-key.pem in the datadir, generated when missing)",
    ),
    Variable("mysql-default_schema", "information_schema", text),
    Variable("mysql-server_version", "8.0.11", non_empty),
    Variable("mysql-default_charset", "utf8mb4", non_empty),
    Variable("mysql-max_allowed_packet", "67108864", integer(8192, 1073741824)),
    Variable("mysql-shun_on_failures", "5", integer(0, 10_000_000)),
    Variable("mysql-shun_recovery_time_sec", "10", integer(0, 31_536_000)),
    Variable("mysql-connect_retries_on_failure", "10", integer(0, 1000)),
    Variable("mysql-connect_timeout_server", "1000", integer(10, 120_000)),
    Variable("mysql-connect_timeout_server_max", "10000", integer(10, 3_600_000)),
    Variable("mysql-ping_interval_server_msec", "10000", integer(1000, 7_200_000)),
    Variable("mysql-ping_timeout_server", "200", integer(10, 600_000)),
    Variable("mysql-connect_timeout_client", "10000", integer(500, 3_600_000), "a client must finish its login within"),
    Variable("mysql-auto_increment_delay_multiplex", "5", integer(0, 1_000_000),
             "statements a connection stays with a session after an INSERT that generated an id"),
    Variable("mysql-wait_timeout", "28800000", integer(0, 20 * 24 * 3600 * 1000)),
    Variable("mysql-max_transaction_time", "14400000", integer(1000, 20 * 24 * 3600 * 1000)),
    Variable("mysql-default_query_timeout", "86400000", integer(1000, 20 * 24 * 3600 * 1000)),
    Variable("mysql-causal_reads", "user", one_of("user", "session", "global"),
             "which reads see earlier writes: user (as each user's turnout_users.causal_reads and each query "
             "rule's gtid_from_hostgroup say), session (every session its own), global (every write the proxy "
             "acknowledged before)"),
    Variable("mysql-causal_reads_timeout", "1000", integer(0, 3_600_000),
             "ms a causal read waits on a replica for the writes it must see, then runs on the writer; "
             "0: to the writer at once unless a replica is known to have them"),
    Variable("mysql-query_retries_on_failure", "1", integer(0, 1000)),
    Variable("mysql-transaction_replay", "auto", auto_or_boolean,
             "record open transactions and replay them on the new master when their server is lost; "
             "auto: on in managed mode (turnout up, or a proxy following a manager's state store)"),
    Variable("mysql-transaction_replay_max_size", "1048576", integer(0, 1024 * 1024 * 1024),
             "bytes of statements recorded per transaction; a larger one is not replayed"),
    Variable("mysql-transaction_replay_attempts", "5", integer(0, 1000),
             "times a replay is tried when its new connection fails in turn"),
    Variable("mysql-transaction_replay_timeout", "30000", integer(100, 3_600_000),
             "milliseconds a replay may take in all, waiting for the new master included"),
    Variable("mysql-multiplexing", "true", boolean),
    Variable("mysql-free_connections_pct", "10", integer(0, 100)),
    Variable("mysql-connection_max_age_ms", "0", integer(0, _MAX_INT)),
    Variable("mysql-default_max_latency_ms", "1000", integer(0, 20 * 24 * 3600 * 1000)),
    Variable("mysql-commands_stats", "true", boolean),
    Variable("mysql-query_digests", "true", boolean),
    # --- the monitor ---
    Variable("mysql-monitor_enabled", "true", boolean),
    Variable("mysql-monitor_username", "monitor", non_empty),
    Variable("mysql-monitor_password", "monitor", text),
    Variable("mysql-monitor_history", "7200000", integer(1000, 7 * 24 * 3600 * 1000)),
    Variable("mysql-monitor_connect_interval", "120000", integer(100, 7 * 24 * 3600 * 1000)),
    Variable("mysql-monitor_connect_timeout", "600", integer(100, 600_000)),
    Variable("mysql-monitor_ping_interval", "8000", integer(100, 7 * 24 * 3600 * 1000)),
    Variable("mysql-monitor_ping_timeout", "1000", integer(100, 600_000)),
    Variable("mysql-monitor_ping_max_failures", "3", integer(1, 1_000_000)),
    Variable("mysql-monitor_read_only_interval", "1000", integer(100, 7 * 24 * 3600 * 1000)),
    Variable("mysql-monitor_read_only_timeout", "800", integer(100, 600_000)),
    Variable("mysql-monitor_read_only_max_timeout_count", "3", integer(1, 1_000_000)),
    Variable("mysql-monitor_replication_lag_interval", "10000", integer(100, 7 * 24 * 3600 * 1000)),
    Variable("mysql-monitor_replication_lag_timeout", "1000", integer(100, 600_000)),
    Variable("mysql-monitor_writer_is_also_reader", "true", boolean),
    Variable("mysql-monitor_slave_lag_when_null", "60", integer(0, 604800),
             "the lag a replica that reports none (replication stopped) counts as, for max_replication_lag"),
    # --- the admin interface ---
    Variable("admin-admin_credentials", "admin:admin", credentials),
    Variable("admin-stats_credentials", "stats:stats", credentials),
    Variable("admin-mysql_ifaces", "127.0.0.1:6032", interfaces),
    Variable("admin-read_only", "false", boolean),
    Variable(
        "admin-hash_passwords", "true", boolean,
        "LOAD MYSQL USERS TO RUNTIME stores clear-text passwords as mysql_native_password hashes",
    ),
    Variable("admin-restapi_enabled", "false", boolean, "the HTTP listener on admin-restapi_port (turnout serves /metrics there)"),
    Variable("admin-restapi_port", "6070", integer(1, 65535)),
    Variable("admin-prometheus_exporter", "false", boolean, "Prometheus metrics at /metrics on admin-restapi_port"),
    Variable("admin-refresh_interval", "2000", integer(100, 100_000)),
    # turnout's own: a scheduler job running longer than this is killed; 0 means 5 x interval_ms.
    Variable("admin-scheduler_timeout_ms", "0", integer(0, 100_000_000)),
)

BY_NAME: Mapping[str, Variable] = {variable.name: variable for variable in VARIABLES}

MODULE_PREFIXES = {"MYSQL VARIABLES": "mysql-", "ADMIN VARIABLES": "admin-"}


def defaults() -> dict[str, str]:
    return {variable.name: variable.default for variable in VARIABLES}


def problem(name: str, value: str | None) -> str | None:
    """Why `name = value` cannot be in force, or None when it can."""
    variable = BY_NAME.get(name)
    if variable is None:
        return f"unknown variable {name!r}"
    if value is None:
        return f"{name}: value must not be NULL"
    reason = variable.check(value)
    return None if reason is None else f"{name}: {reason}"


def normalise(value: object) -> str:
    """A value from TOML or SQL as ProxySQL stores it: booleans as true/false, numbers as digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_interfaces(value: str) -> list[tuple[str, int]]:
    """`"127.0.0.1:6033;[::1]:6033"` -> [("127.0.0.1", 6033), ("::1", 6033)]."""
    result = []
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        host, _, port = part.rpartition(":")
        result.append((host.strip("[]") or "0.0.0.0", int(port)))
    return result


def parse_credentials(value: str) -> dict[str, str]:
    """`"admin:admin;radmin:secret"` -> {"admin": "admin", "radmin": "secret"}."""
    result = {}
    for part in value.split(";"):
        user, sep, password = part.partition(":")
        if sep and user:
            result[user] = password
    return result


def is_true(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS
