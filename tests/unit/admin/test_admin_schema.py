"""The admin tables' constraints and defaults are ProxySQL's: SQLite itself refuses bad rows."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator

import pytest

from turnout.admin import schema
from turnout.admin.modules import TABLES


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    for ddl in schema.config_ddl("main"):
        connection.execute(ddl)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO mysql_servers (hostgroup_id, hostname, status) VALUES (1, 'h', 'DOWN')",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (1, 'h', -1)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (1, 'h', 65536)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (-1, 'h')",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, weight) VALUES (1, 'h', -5)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, compression) VALUES (1, 'h', 2)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, max_replication_lag) VALUES (1, 'h', -1)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, port, gtid_port) VALUES (1, 'h', 3306, 3306)",
        "INSERT INTO mysql_servers (hostgroup_id) VALUES (1)",
        "INSERT INTO mysql_users (username, active) VALUES ('u', 2)",
        "INSERT INTO mysql_users (username, attributes) VALUES ('u', 'not json')",
        "INSERT INTO mysql_query_rules (rule_id, apply) VALUES (1, 5)",
        "INSERT INTO mysql_query_rules (rule_id, replace_pattern) VALUES (1, 'x')",
        "INSERT INTO mysql_query_rules (rule_id, multiplex) VALUES (1, 3)",
        "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (10, 10)",
        "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup, check_type) "
        "VALUES (10, 20, 'wrong')",
        "INSERT INTO turnout_replication_hostgroups (writer_hostgroup, two_writer_mode) VALUES (10, 'both')",
        "INSERT INTO turnout_replication_hostgroups (writer_hostgroup, stale_read_protection) VALUES (10, 2)",
        "INSERT INTO proxysql_servers (hostname, weight) VALUES ('p', -1)",
        "INSERT INTO mysql_galera_hostgroups (writer_hostgroup, backup_writer_hostgroup, reader_hostgroup, "
        "offline_hostgroup) VALUES (1, 1, 2, 3)",
        "INSERT INTO scheduler (interval_ms, filename) VALUES (10, '/bin/true')",
        "INSERT INTO scheduler (interval_ms) VALUES (1000)",
    ],
)
def test_checks_refuse_bad_rows(db: sqlite3.Connection, statement: str) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(statement)


def test_keys_are_proxysqls(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (1, 'h')")
    db.execute("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (2, 'h')")  # another hostgroup: fine
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (1, 'h')")
    db.execute("INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (10, 20)")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (30, 20)")
    db.execute("INSERT INTO mysql_users (username, backend, frontend) VALUES ('u', 1, 0)")
    db.execute("INSERT INTO mysql_users (username, backend, frontend) VALUES ('u', 0, 1)")
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO mysql_users (username, backend, frontend) VALUES ('u', 1, 1)")


def test_defaults_are_proxysqls(db: sqlite3.Connection) -> None:
    db.execute("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (1, 'h')")
    assert db.execute("SELECT port, status, weight, max_connections, comment FROM mysql_servers").fetchone() == (
        3306, "ONLINE", 1, 1000, ""
    )
    db.execute("INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (1, 2)")
    assert db.execute("SELECT * FROM mysql_replication_hostgroups").fetchone() == (1, 2, "read_only", "")
    db.execute("INSERT INTO turnout_replication_hostgroups (writer_hostgroup) VALUES (1)")
    assert db.execute("SELECT * FROM turnout_replication_hostgroups").fetchone() == (1, 1, "refuse")
    db.execute("INSERT INTO proxysql_servers (hostname) VALUES ('p')")
    assert db.execute("SELECT * FROM proxysql_servers").fetchone() == ("p", 6032, 0, "")
    db.execute("INSERT INTO mysql_query_rules (match_digest) VALUES ('^SELECT')")
    assert db.execute("SELECT rule_id, active, re_modifiers, apply FROM mysql_query_rules").fetchone() == (
        1, 0, "CASELESS", 0
    )


@pytest.mark.parametrize("name", list(TABLES))
def test_row_types_have_exactly_the_tables_columns(db: sqlite3.Connection, name: str) -> None:
    table = TABLES[name]
    columns = [row[1] for row in db.execute(f"PRAGMA table_info({name})")]
    if table.extension is not None:  # turnout's columns live beside ProxySQL's table
        extension = [row[1] for row in db.execute(f"PRAGMA table_info({table.extension.name})")]
        assert extension == [table.extension.join_on, *table.extension.columns]
        columns += list(table.extension.columns)
    fields = [f.name for f in dataclasses.fields(table.row_type)]
    assert sorted(columns) == sorted(fields)  # QueryRule appends ProxySQL 2.x's newer columns at its end


# ProxySQL 2.x's column lists, in order, as its admin creates them.
PROXYSQL_COLUMNS = {
    "mysql_replication_hostgroups": ["writer_hostgroup", "reader_hostgroup", "check_type", "comment"],
    "mysql_galera_hostgroups": [
        "writer_hostgroup", "backup_writer_hostgroup", "reader_hostgroup", "offline_hostgroup", "active",
        "max_writers", "writer_is_also_reader", "max_transactions_behind", "comment",
    ],
    "mysql_group_replication_hostgroups": [
        "writer_hostgroup", "backup_writer_hostgroup", "reader_hostgroup", "offline_hostgroup", "active",
        "max_writers", "writer_is_also_reader", "max_transactions_behind", "comment",
    ],
    "proxysql_servers": ["hostname", "port", "weight", "comment"],
    "mysql_hostgroup_attributes": [
        "hostgroup_id", "max_num_online_servers", "autocommit", "free_connections_pct", "init_connect", "multiplex",
        "connection_warming", "throttle_connections_per_sec", "ignore_session_variables", "hostgroup_settings",
        "servers_defaults", "comment",
    ],
    "mysql_users": [
        "username", "password", "active", "use_ssl", "default_hostgroup", "default_schema", "schema_locked",
        "transaction_persistent", "fast_forward", "backend", "frontend", "max_connections", "attributes", "comment",
    ],
}


@pytest.mark.parametrize("name", list(PROXYSQL_COLUMNS))
def test_tables_have_proxysqls_columns_in_order(db: sqlite3.Connection, name: str) -> None:
    assert [row[1] for row in db.execute(f"PRAGMA table_info({name})")] == PROXYSQL_COLUMNS[name]


def test_stats_and_monitor_tables_exist_with_proxysql_names() -> None:
    connection = sqlite3.connect(":memory:")
    connection.execute("ATTACH ':memory:' AS stats")
    connection.execute("ATTACH ':memory:' AS monitor")
    for statements in schema.all_ddl().values():
        for ddl in statements:
            connection.execute(ddl)
    stats = {row[0] for row in connection.execute("SELECT name FROM stats.sqlite_master WHERE type='table'")}
    monitor = {row[0] for row in connection.execute("SELECT name FROM monitor.sqlite_master WHERE type='table'")}
    assert {"stats_mysql_connection_pool", "stats_mysql_commands_counters", "stats_mysql_query_digest",
            "stats_mysql_global", "stats_mysql_processlist"} <= stats
    assert monitor == {"mysql_server_connect_log", "mysql_server_ping_log", "mysql_server_read_only_log",
                       "mysql_server_replication_lag_log"}
