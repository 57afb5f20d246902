"""The admin interface driven by real MySQL clients: the mariadb CLI, PyMySQL,
mysql-connector-python and Perl DBI with DBD::MariaDB."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mysql.connector
import pymysql
import pytest

from turnout.config.model import MysqlServer, MysqlUser
from turnout.protocol.auth import native_password_hash

Starter = Callable[..., Awaitable[Any]]  # the start_admin fixture (conftest.py): -> Admin

# ProxySQL's documented steps for a replication setup, as an operator types them.
PROXYSQL_DOC_STEPS = """
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (1,'127.0.0.1',23306);
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (2,'127.0.0.1',23307);
INSERT INTO mysql_servers(hostgroup_id,hostname,port) VALUES (2,'127.0.0.1',23308);
INSERT INTO mysql_replication_hostgroups (writer_hostgroup,reader_hostgroup,comment) VALUES (1,2,'cluster1');
SELECT * FROM mysql_servers;
UPDATE global_variables SET variable_value='monitor' WHERE variable_name='mysql-monitor_username';
UPDATE global_variables SET variable_value='monitor_pass' WHERE variable_name='mysql-monitor_password';
UPDATE global_variables SET variable_value='2000'
  WHERE variable_name IN ('mysql-monitor_connect_interval','mysql-monitor_ping_interval','mysql-monitor_read_only_interval');
LOAD MYSQL VARIABLES TO RUNTIME;
SAVE MYSQL VARIABLES TO DISK;
INSERT INTO mysql_users(username,password,default_hostgroup) VALUES ('app','app_pass',1);
LOAD MYSQL USERS TO RUNTIME;
SAVE MYSQL USERS TO DISK;
INSERT INTO mysql_query_rules (rule_id,active,match_digest,destination_hostgroup,apply)
  VALUES (1,1,'^SELECT.*FOR UPDATE$',1,1),(2,1,'^SELECT',2,1);
LOAD MYSQL QUERY RULES TO RUNTIME;
SAVE MYSQL QUERY RULES TO DISK;
LOAD MYSQL SERVERS TO RUNTIME;
SAVE MYSQL SERVERS TO DISK;
SELECT hostgroup_id,hostname,port,status FROM runtime_mysql_servers ORDER BY hostgroup_id, port;
"""


async def test_proxysql_documentation_steps_in_the_mariadb_client(start_admin: Starter) -> None:
    admin = await start_admin()
    code, out, err = await admin.mariadb(PROXYSQL_DOC_STEPS)
    assert code == 0, err
    assert out.strip().splitlines()[-4:] == [
        "hostgroup_id\thostname\tport\tstatus",
        "1\t127.0.0.1\t23306\tONLINE",
        "2\t127.0.0.1\t23307\tONLINE",
        "2\t127.0.0.1\t23308\tONLINE",
    ]
    config = admin.delivered[-1]
    assert config is admin.service.runtime
    assert config.servers == (
        MysqlServer(1, "127.0.0.1", 23306), MysqlServer(2, "127.0.0.1", 23307), MysqlServer(2, "127.0.0.1", 23308)
    )
    assert [(r.writer_hostgroup, r.reader_hostgroup, r.comment) for r in config.replication_hostgroups] == [
        (1, 2, "cluster1")
    ]
    # admin-hash_passwords (true, ProxySQL's default): LOAD put the password in force hashed
    assert config.users == (MysqlUser("app", native_password_hash("app_pass"), default_hostgroup=1),)
    assert [(r.rule_id, r.match_digest, r.destination_hostgroup) for r in config.query_rules] == [
        (1, "^SELECT.*FOR UPDATE$", 1), (2, "^SELECT", 2)
    ]
    assert config.variables["mysql-monitor_ping_interval"] == "2000"
    assert config.variables["mysql-monitor_password"] == "monitor_pass"
    # first load at start, then one per LOAD statement
    assert [c.version for c in admin.delivered] == [1, 2, 3, 4, 5]
    code, out, _ = await admin.mariadb("SELECT COUNT(*) FROM turnout_pending_changes;")
    assert out.split() == ["COUNT(*)", "0"]


async def test_mariadb_client_sees_warnings_and_errors(start_admin: Starter) -> None:
    admin = await start_admin()
    code, out, err = await admin.mariadb("UPDATE mysql_servers SET status='OFFLINE_SOFT';"
                                         "INSERT INTO mysql_servers(hostgroup_id,hostname) VALUES (5,'db5');")
    assert code == 0, err
    assert "Warning (Code 1105): mysql_servers differs from runtime (1 added): run LOAD MYSQL SERVERS TO RUNTIME" in out
    code, out, err = await admin.mariadb("INSERT INTO mysql_servers(hostgroup_id,hostname,status) VALUES (5,'x','UP');")
    assert code == 1 and "ERROR 1045 (28000)" in err and "CHECK constraint failed" in err
    code, _, err = await admin.mariadb("LOAD MYSQL SERVERS TO DISK;")
    assert code == 1 and "not a valid form" in err
    code, out, err = await admin.mariadb("select @@version_comment limit 1; SHOW DATABASES; SHOW TABLES FROM monitor;")
    assert code == 0, err
    assert "(turnout Admin Module)" in out and "mysql_server_ping_log" in out and "disk" in out


async def test_wrong_password_and_unknown_user_are_refused(start_admin: Starter) -> None:
    admin = await start_admin()
    code, _, err = await admin.mariadb("SELECT 1;", password="nope")
    assert code == 1 and "ERROR 1045 (28000)" in err and "Access denied for user 'admin'" in err
    code, _, err = await admin.mariadb("SELECT 1;", user="root", password="admin")
    assert code == 1 and "Access denied for user 'root'@'127.0.0.1' (using password: YES)" in err


def _pymysql_session(port: int) -> dict[str, object]:
    seen: dict[str, object] = {}
    connection = pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin")
    with connection.cursor() as cursor:
        connection.ping()
        connection.select_db("main")
        cursor.execute("INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (%s, %s, %s)",
                       (10, "db1", 3306))
        seen["warning_count"] = connection._result.warning_count  # type: ignore[union-attr]
        cursor.execute("SHOW WARNINGS")
        seen["warnings"] = cursor.fetchall()
        cursor.execute("LOAD MYSQL SERVERS TO RUNTIME")
        connection.commit()
        cursor.execute("SELECT hostgroup_id, hostname, port, status FROM runtime_mysql_servers")
        seen["runtime"] = cursor.fetchall()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cursor.execute("SELECT * FROM nowhere")
        seen["error"] = caught.value.args
        cursor.execute("SELECT 1")  # the session survives an error
        seen["after_error"] = cursor.fetchall()
    connection.close()
    return seen


async def test_pymysql(start_admin: Starter) -> None:
    admin = await start_admin()
    seen = await asyncio.to_thread(_pymysql_session, admin.port)
    assert seen["warning_count"] == 1
    assert seen["warnings"] == (
        ("Warning", "1105", "mysql_servers differs from runtime (1 added): run LOAD MYSQL SERVERS TO RUNTIME to "
         "apply (SAVE MYSQL SERVERS TO MEMORY discards the edits)"),
    )
    assert seen["runtime"] == (("10", "db1", "3306", "ONLINE"),)  # the admin answers in text, as ProxySQL
    assert seen["error"] == (1045, "ProxySQL Admin Error: no such table: nowhere")
    assert seen["after_error"] == (("1",),)
    assert admin.service.runtime.servers == (MysqlServer(10, "db1", 3306),)


def _stats_user(port: int) -> tuple[object, object]:
    connection = pymysql.connect(host="127.0.0.1", port=port, user="stats", password="stats")
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM stats_mysql_connection_pool")
        counted = cursor.fetchall()
        with pytest.raises(pymysql.err.OperationalError) as caught:
            cursor.execute("LOAD MYSQL SERVERS TO RUNTIME")
    connection.close()
    return counted, caught.value.args[1]


async def test_stats_user_reads_only(start_admin: Starter) -> None:
    admin = await start_admin()
    counted, refusal = await asyncio.to_thread(_stats_user, admin.port)
    assert counted == (("0",),)
    assert "stats user can only read" in str(refusal)


def _connector(port: int, use_pure: bool) -> list[tuple[object, ...]]:
    connection = mysql.connector.connect(host="127.0.0.1", port=port, user="admin", password="admin",
                                         use_pure=use_pure)
    cursor = connection.cursor()
    cursor.execute("INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('app', 'pw', 10)")
    cursor.execute("LOAD MYSQL USERS TO RUNTIME")
    cursor.execute("SAVE MYSQL USERS TO DISK")
    cursor.execute("SELECT username, default_hostgroup FROM runtime_mysql_users")
    rows = cursor.fetchall()
    connection.commit()
    cursor.close()
    connection.close()
    return rows


async def test_mysql_connector(start_admin: Starter) -> None:
    admin = await start_admin()
    rows = await asyncio.to_thread(_connector, admin.port, True)  # the C extension is not installed
    assert [tuple(str(v) for v in row) for row in rows] == [("app", "10"), ("app", "10")]  # frontend, backend
    assert admin.service.runtime.users == (MysqlUser("app", native_password_hash("pw"), default_hostgroup=10),)


PERL = """\
use strict;
use warnings;
use DBI;
my $port = shift;
my $dbh = DBI->connect("DBI:MariaDB:host=127.0.0.1;port=$port", "admin", "admin",
                       { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
$dbh->do("INSERT INTO mysql_servers (hostgroup_id, hostname, port, comment) VALUES (?, ?, ?, ?)",
         undef, 20, "127.0.0.1", 3307, "from perl");
$dbh->do("LOAD MYSQL SERVERS TO RUNTIME");
my $rows = $dbh->selectall_arrayref("SELECT hostgroup_id, port, comment FROM runtime_mysql_servers");
print join(",", @$_), "\\n" for @$rows;
eval { $dbh->do("UPDATE runtime_mysql_servers SET status = 'SHUNNED'") };
print "refused: ", ($dbh->err // "none"), "\\n";
$dbh->disconnect;
"""


async def test_perl_dbi_dbd_mariadb(start_admin: Starter, tmp_path: Path) -> None:
    admin = await start_admin()
    script = tmp_path / "admin.pl"
    script.write_text(PERL)
    process = await asyncio.create_subprocess_exec(
        "perl", str(script), str(admin.port), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["20,3307,from perl", "refused: 1045"]
    assert admin.service.runtime.servers == (MysqlServer(20, "127.0.0.1", 3307, comment="from perl"),)


async def test_save_to_disk_survives_a_restart(start_admin: Starter, tmp_path: Path) -> None:
    file_rows = '[[mysql_servers]]\naddress = "from-file"\nhostgroup = 1\n'
    first = await start_admin(file_rows)
    assert [s.hostname for s in first.service.runtime.servers] == ["from-file"]  # first start: the file
    code, _, err = await first.mariadb(textwrap.dedent("""
        DELETE FROM mysql_servers;
        INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (2, 'saved');
        INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (3, 'not-saved-yet');
        SAVE MYSQL SERVERS TO DISK;
        DELETE FROM mysql_servers WHERE hostname = 'saved';
        UPDATE global_variables SET variable_value = '1234' WHERE variable_name = 'mysql-monitor_ping_interval';
        SAVE MYSQL VARIABLES TO DISK;
    """))
    assert code == 0, err
    await first.service.stop()

    second = await start_admin(file_rows, port=first.port)  # disk exists: the file is ignored
    assert [s.hostname for s in second.service.runtime.servers] == ["saved", "not-saved-yet"]
    assert second.service.runtime.variables["mysql-monitor_ping_interval"] == "1234"
    await second.service.stop()

    third = await start_admin(file_rows, initial=True)  # --initial: the file again, and disk overwritten
    assert [s.hostname for s in third.service.runtime.servers] == ["from-file"]
    assert third.service.runtime.variables["mysql-monitor_ping_interval"] == "8000"  # the default
    code, out, _ = await third.mariadb("SELECT hostname FROM disk.mysql_servers;")
    assert out.split() == ["hostname", "from-file"]


async def test_unknown_commands_get_an_error_and_the_session_goes_on(start_admin: Starter) -> None:
    admin = await start_admin()

    def talk() -> tuple[object, object]:
        connection = pymysql.connect(host="127.0.0.1", port=admin.port, user="admin", password="admin")
        connection._execute_command(0x0D, b"")  # COM_DEBUG
        with pytest.raises(pymysql.err.OperationalError) as caught:
            connection._read_packet()
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM global_variables")
            count = cursor.fetchone()
        connection.close()
        return caught.value.args[0], count

    code, count = await asyncio.to_thread(talk)
    assert code == 1047
    assert count is not None and int(str(count[0])) > 30  # type: ignore[index]


async def test_turnout_admin_diff_lists_pending_edits(start_admin: Starter, tmp_path: Path) -> None:
    admin = await start_admin()
    await admin.mariadb("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (1, 'db1');"
                        "SET mysql-monitor_ping_interval = 3000;")
    config = tmp_path / "turnout.toml"
    config.write_text(f'[admin_variables]\nmysql_ifaces = "127.0.0.1:{admin.port}"\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "turnout.cli", "admin", "diff", "--config", str(config), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    rows = json.loads(out)
    assert [(r["module"], r["change"], r["row_key"]) for r in rows] == [
        ("MYSQL SERVERS", "added", "1/db1/3306"),
        ("MYSQL VARIABLES", "changed", "mysql-monitor_ping_interval"),
    ]
