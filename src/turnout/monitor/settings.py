"""The monitor's settings, read from ProxySQL's mysql-monitor_* global variables.

Defaults are ProxySQL 2.7's (those of config/variables.py). Values are read as "mysql-monitor_<name>" (the global_variables
table) or, failing that, "monitor-<name>".
"""

from __future__ import annotations

from dataclasses import dataclass

from turnout.config.model import RuntimeConfig

DEFAULTS: dict[str, str] = {
    "enabled": "true",
    "username": "monitor",
    "password": "monitor",
    "connect_interval": "120000",
    "connect_timeout": "600",
    "ping_interval": "8000",
    "ping_timeout": "1000",
    "ping_max_failures": "3",
    "read_only_interval": "1000",
    "read_only_timeout": "800",
    "read_only_max_timeout_count": "3",
    "replication_lag_interval": "10000",
    "replication_lag_timeout": "1000",
    "slave_lag_when_null": "60",
    "writer_is_also_reader": "true",
    "history": "7200000",
}


def monitor_variable(config: RuntimeConfig, name: str) -> str:
    for key in (f"mysql-monitor_{name}", f"monitor-{name}"):
        value = config.variables.get(key)
        if value is not None:
            return value
    return DEFAULTS[name]


def _int(config: RuntimeConfig, name: str) -> int:
    try:
        return int(monitor_variable(config, name).strip())
    except ValueError:
        return int(DEFAULTS[name])


def _bool(config: RuntimeConfig, name: str) -> bool:
    return monitor_variable(config, name).strip().lower() in ("1", "true", "on", "yes")


@dataclass(frozen=True)
class MonitorSettings:
    enabled: bool
    username: str
    password: str
    connect_interval_ms: int
    connect_timeout_ms: int
    ping_interval_ms: int
    ping_timeout_ms: int
    ping_max_failures: int
    read_only_interval_ms: int
    read_only_timeout_ms: int
    read_only_max_timeout_count: int
    replication_lag_interval_ms: int
    replication_lag_timeout_ms: int
    slave_lag_when_null: int
    writer_is_also_reader: bool
    history_ms: int
    # TLS to servers with use_ssl = 1, as the proxy's own connections (mysql-ssl_p2s_*).
    ssl_ca: str = ""
    ssl_cert: str = ""
    ssl_key: str = ""

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> MonitorSettings:
        return cls(
            enabled=_bool(config, "enabled"),
            username=monitor_variable(config, "username"),
            password=monitor_variable(config, "password"),
            connect_interval_ms=max(1, _int(config, "connect_interval")),
            connect_timeout_ms=max(1, _int(config, "connect_timeout")),
            ping_interval_ms=max(1, _int(config, "ping_interval")),
            ping_timeout_ms=max(1, _int(config, "ping_timeout")),
            ping_max_failures=max(1, _int(config, "ping_max_failures")),
            read_only_interval_ms=max(1, _int(config, "read_only_interval")),
            read_only_timeout_ms=max(1, _int(config, "read_only_timeout")),
            read_only_max_timeout_count=max(1, _int(config, "read_only_max_timeout_count")),
            replication_lag_interval_ms=max(1, _int(config, "replication_lag_interval")),
            replication_lag_timeout_ms=max(1, _int(config, "replication_lag_timeout")),
            slave_lag_when_null=_int(config, "slave_lag_when_null"),
            writer_is_also_reader=_bool(config, "writer_is_also_reader"),
            history_ms=max(0, _int(config, "history")),
            ssl_ca=config.variable("mysql-ssl_p2s_ca", ""),
            ssl_cert=config.variable("mysql-ssl_p2s_cert", ""),
            ssl_key=config.variable("mysql-ssl_p2s_key", ""),
        )
