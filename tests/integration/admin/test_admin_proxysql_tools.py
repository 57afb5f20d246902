"""What operators' tools send to ProxySQL's admin, answered as ProxySQL answers it: the mariadb
client in proxysql-admin's batch mode (--batch --silent --skip-column_names) and PyMySQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pymysql
import pytest

from turnout.protocol.auth import native_password_hash

Starter = Callable[..., Awaitable[Any]]  # the start_admin fixture (conftest.py): -> Admin

HASH = native_password_hash("synced_pw")


async def batch(admin: Any, sql: str, user: str = "admin", password: str = "admin") -> tuple[int, str, str]:
    """The mariadb client as Percona's proxysql-admin runs it."""
    process = await asyncio.create_subprocess_exec(
        "mariadb", "-h127.0.0.1", f"-P{admin.port}", f"-u{user}", f"-p{password}",
        "--batch", "--silent", "--skip-column_names", "-e", sql,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_users_inserted_with_unhex_and_hashed_at_load(start_admin: Starter) -> None:
    admin = await start_admin()
    hexed = HASH.encode().hex().upper()
    code, out, err = await batch(admin, (
        f"INSERT INTO mysql_users (username, password, active, default_hostgroup) VALUES ('u', UNHEX('{hexed}'), 1, 10);"
        "INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('clear', 'clear_pw', 10);"
        "SELECT username, HEX(password) FROM mysql_users ORDER BY username;"
        "LOAD MYSQL USERS TO RUNTIME;"
        "SELECT username, backend, frontend, HEX(password) FROM runtime_mysql_users ORDER BY username, backend;"
        "SELECT variable_value FROM global_variables WHERE variable_name = 'admin-hash_passwords';"
    ))
    assert code == 0, err
    clear_hash = native_password_hash("clear_pw").encode().hex().upper()
    assert out.splitlines() == [
        f"clear\t{b'clear_pw'.hex().upper()}",  # memory keeps what was inserted
        f"u\t{hexed}",
        f"clear\t0\t1\t{clear_hash}", f"clear\t1\t0\t{clear_hash}",  # a frontend row and a backend row
        f"u\t0\t1\t{hexed}", f"u\t1\t0\t{hexed}",
        "true",
    ]


async def test_replication_hostgroups_take_proxysqls_four_values(start_admin: Starter) -> None:
    admin = await start_admin()
    code, out, err = await batch(admin, (
        "INSERT INTO mysql_replication_hostgroups VALUES (10, 20, 'read_only', 'c');"
        "LOAD MYSQL SERVERS TO RUNTIME; SAVE MYSQL SERVERS TO DISK;"
        "SELECT * FROM runtime_mysql_replication_hostgroups;"
        "SELECT * FROM disk.mysql_replication_hostgroups;"
    ))
    assert code == 0, err
    assert out.splitlines() == ["10\t20\tread_only\tc", "10\t20\tread_only\tc"]


# ProxySQL 2.x's columns of the tables tools query, in order.
COLUMNS = {
    "stats_mysql_query_rules": ["rule_id", "hits"],
    "stats_mysql_errors": ["hostgroup", "hostname", "port", "username", "client_address", "schemaname", "errno",
                           "count_star", "first_seen", "last_seen", "last_error"],
    "runtime_checksums_values": ["name", "version", "epoch", "checksum"],
    "proxysql_servers": ["hostname", "port", "weight", "comment"],
    "runtime_proxysql_servers": ["hostname", "port", "weight", "comment"],
    "mysql_galera_hostgroups": ["writer_hostgroup", "backup_writer_hostgroup", "reader_hostgroup",
                                "offline_hostgroup", "active", "max_writers", "writer_is_also_reader",
                                "max_transactions_behind", "comment"],
    "mysql_group_replication_hostgroups": ["writer_hostgroup", "backup_writer_hostgroup", "reader_hostgroup",
                                           "offline_hostgroup", "active", "max_writers", "writer_is_also_reader",
                                           "max_transactions_behind", "comment"],
    "stats_mysql_users": ["username", "frontend_connections", "frontend_max_connections"],
}


def _describe(port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    connection = pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin")
    with connection.cursor() as cursor:
        for table in COLUMNS:
            cursor.execute(f"SELECT * FROM {table}")
            seen[table] = [d[0] for d in cursor.description]
        cursor.execute("SELECT name, version FROM runtime_checksums_values ORDER BY name")
        seen["checksums"] = cursor.fetchall()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cursor.execute("SELECT * FROM no_such_table")
        seen["error"] = caught.value.args
        # a prepared statement: ProxySQL's admin answers 1045 "Command not supported"
        connection._execute_command(0x16, "SELECT 1")  # COM_STMT_PREPARE
        with pytest.raises(pymysql.err.OperationalError) as caught:
            connection._read_packet()
        seen["prepare"] = caught.value.args
        cursor.execute("SELECT 1")  # the session goes on
        seen["after"] = cursor.fetchall()
    connection.close()
    return seen


async def test_tables_tools_query_exist_with_proxysqls_columns(start_admin: Starter) -> None:
    admin = await start_admin()
    seen = await asyncio.to_thread(_describe, admin.port)
    for table, columns in COLUMNS.items():
        assert seen[table] == columns, table
    assert [name for name, _ in seen["checksums"]] == [
        "admin_variables", "mysql_query_rules", "mysql_servers", "mysql_servers_v2", "mysql_users",
        "mysql_variables", "proxysql_servers",
    ]
    assert all(version == "1" for _, version in seen["checksums"])  # loaded once, at start
    assert seen["error"] == (1045, "ProxySQL Admin Error: no such table: no_such_table")
    assert seen["prepare"] == (1045, "Command not supported")
    assert seen["after"] == (("1",),)


async def test_errors_are_prefixed_in_the_batch_client(start_admin: Starter) -> None:
    admin = await start_admin()
    code, _, err = await batch(admin, "SELECT * FROM no_such_table")
    assert code == 1
    assert err.strip().endswith("ERROR 1045 (28000) at line 1: ProxySQL Admin Error: no such table: no_such_table")
    code, _, err = await batch(admin, "INSERT INTO mysql_galera_hostgroups (writer_hostgroup, backup_writer_hostgroup, "
                                      "reader_hostgroup, offline_hostgroup) VALUES (1, 2, 3, 4)")
    assert code == 1 and "ProxySQL Admin Error: mysql_galera_hostgroups stays empty" in err


async def test_the_stats_user_reads_the_stats_schema_only(start_admin: Starter) -> None:
    admin = await start_admin()
    await batch(admin, "INSERT INTO mysql_users (username, password) VALUES ('app', 'secret');"
                       "LOAD MYSQL USERS TO RUNTIME")
    code, _, err = await batch(admin, "SELECT username, password FROM mysql_users", user="stats", password="stats")
    assert code == 1 and "ProxySQL Admin Error: no such table: mysql_users" in err
    code, out, err = await batch(admin, "SELECT * FROM global_variables WHERE variable_name LIKE 'admin-%'",
                                 user="stats", password="stats")
    assert code == 0 and out == "", err  # no admin-admin_credentials for it
    code, out, err = await batch(admin, "SHOW TABLES", user="stats", password="stats")
    assert code == 0, err
    tables = out.split()
    assert "stats_mysql_connection_pool" in tables and "stats_mysql_users" in tables
    assert not [t for t in tables if t.startswith(("mysql_", "runtime_"))]
    code, out, err = await batch(admin, "SHOW DATABASES", user="stats", password="stats")
    assert code == 0 and "disk" not in out and "monitor" in out, err
    code, _, err = await batch(admin, "DELETE FROM stats_mysql_users", user="stats", password="stats")
    assert code == 1 and "readonly" in err


def _pymysql_statements(port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    hexed = HASH.encode().hex().upper()
    connection = pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin", autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO mysql_users (username, password, active, default_hostgroup) "
                       "VALUES (%s, UNHEX(%s), 1, 10)", ("u", hexed))
        cursor.execute("INSERT INTO mysql_users (username, password) VALUES ('clear', 'clear_pw')")
        cursor.execute("INSERT INTO mysql_replication_hostgroups VALUES (10, 20, 'read_only', 'c')")
        cursor.execute("LOAD MYSQL USERS TO RUNTIME")
        cursor.execute("LOAD MYSQL SERVERS TO RUNTIME")
        cursor.execute("SELECT username, HEX(password), COUNT(*) FROM runtime_mysql_users GROUP BY username, password")
        seen["users"] = cursor.fetchall()
        cursor.execute("SELECT * FROM runtime_mysql_replication_hostgroups")
        seen["pairs"] = cursor.fetchall()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cursor.execute("INSERT INTO mysql_group_replication_hostgroups (writer_hostgroup, backup_writer_hostgroup, "
                           "reader_hostgroup, offline_hostgroup) VALUES (1, 2, 3, 4)")
        seen["refused"] = caught.value.args
    connection.close()
    return seen


async def test_the_same_statements_through_pymysql(start_admin: Starter) -> None:
    admin = await start_admin()
    seen = await asyncio.to_thread(_pymysql_statements, admin.port)
    clear_hash = native_password_hash("clear_pw").encode().hex().upper()
    assert sorted(seen["users"]) == [("clear", clear_hash, "2"), ("u", HASH.encode().hex().upper(), "2")]  # text
    assert seen["pairs"] == (("10", "20", "read_only", "c"),)
    assert seen["refused"][0] == 1045 and seen["refused"][1].startswith(
        "ProxySQL Admin Error: mysql_group_replication_hostgroups stays empty"
    )
