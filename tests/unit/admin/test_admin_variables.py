"""global_variables: the variables turnout implements have ProxySQL 2.7's names and defaults."""

from __future__ import annotations

import pytest

from turnout.config.variables import BY_NAME, defaults
from turnout.monitor.settings import DEFAULTS as MONITOR_DEFAULTS

# ProxySQL 2.7's defaults (lib/MySQL_Thread.cpp, lib/ProxySQL_Admin.cpp), written out by hand.
PROXYSQL_DEFAULTS = {
    "mysql-threads": "4",
    "mysql-max_connections": "10000",
    "mysql-default_schema": "information_schema",
    "mysql-server_version": "8.0.11",
    "mysql-max_allowed_packet": "67108864",
    "mysql-shun_on_failures": "5",
    "mysql-shun_recovery_time_sec": "10",
    "mysql-connect_retries_on_failure": "10",
    "mysql-connect_timeout_client": "10000",
    "mysql-connect_timeout_server": "1000",
    "mysql-connect_timeout_server_max": "10000",
    "mysql-ping_interval_server_msec": "10000",
    "mysql-ping_timeout_server": "200",
    "mysql-wait_timeout": "28800000",
    "mysql-max_transaction_time": "14400000",
    "mysql-default_query_timeout": "86400000",
    "mysql-query_retries_on_failure": "1",
    "mysql-multiplexing": "true",
    "mysql-free_connections_pct": "10",
    "mysql-connection_max_age_ms": "0",
    "mysql-default_max_latency_ms": "1000",
    "mysql-auto_increment_delay_multiplex": "5",
    "mysql-commands_stats": "true",
    "mysql-query_digests": "true",
    "mysql-have_ssl": "false",
    "mysql-ssl_p2s_ca": "",
    "mysql-ssl_p2s_cert": "",
    "mysql-ssl_p2s_key": "",
    "mysql-monitor_enabled": "true",
    "mysql-monitor_username": "monitor",
    "mysql-monitor_password": "monitor",
    "mysql-monitor_history": "7200000",
    "mysql-monitor_connect_interval": "120000",
    "mysql-monitor_connect_timeout": "600",
    "mysql-monitor_ping_interval": "8000",
    "mysql-monitor_ping_timeout": "1000",
    "mysql-monitor_ping_max_failures": "3",
    "mysql-monitor_read_only_interval": "1000",
    "mysql-monitor_read_only_timeout": "800",
    "mysql-monitor_read_only_max_timeout_count": "3",
    "mysql-monitor_replication_lag_interval": "10000",
    "mysql-monitor_replication_lag_timeout": "1000",
    "mysql-monitor_slave_lag_when_null": "60",
    "mysql-monitor_writer_is_also_reader": "true",
    "admin-admin_credentials": "admin:admin",
    "admin-stats_credentials": "stats:stats",
    "admin-read_only": "false",
    "admin-hash_passwords": "true",
    "admin-refresh_interval": "2000",
    "admin-restapi_enabled": "false",
    "admin-restapi_port": "6070",
    "admin-prometheus_exporter": "false",
}


@pytest.mark.parametrize("name", sorted(PROXYSQL_DEFAULTS))
def test_defaults_are_proxysqls(name: str) -> None:
    assert defaults()[name] == PROXYSQL_DEFAULTS[name]


def test_the_monitor_falls_back_to_the_same_defaults() -> None:
    for name, value in MONITOR_DEFAULTS.items():
        assert defaults()[f"mysql-monitor_{name}"] == value, name


def test_deliberate_differences_are_few_and_known() -> None:
    # turnout listens on the loopback interface unless told otherwise (ProxySQL: 0.0.0.0)
    assert defaults()["mysql-interfaces"] == "127.0.0.1:6033"
    assert defaults()["admin-mysql_ifaces"] == "127.0.0.1:6032"
    own = {name for name in BY_NAME if name not in PROXYSQL_DEFAULTS}
    # mysql-default_charset: ProxySQL removed it in 2.0.13, turnout still accepts it (no effect)
    # mysql-transaction_replay*: turnout's transaction replay (ProxySQL has none)
    # mysql-causal_reads*: turnout's causal reads (README)
    assert own == {
        "mysql-interfaces", "admin-mysql_ifaces", "mysql-default_charset", "admin-scheduler_timeout_ms",
        "mysql-transaction_replay", "mysql-transaction_replay_max_size", "mysql-transaction_replay_attempts",
        "mysql-transaction_replay_timeout", "mysql-causal_reads", "mysql-causal_reads_timeout",
    }
