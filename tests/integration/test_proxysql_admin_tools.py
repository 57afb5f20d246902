"""A real turnout proxy on a replication sandbox, driven through its admin as ProxySQL's tools
drive ProxySQL: proxysql-admin --syncusers, mysql-server_version, the stats tables and their resets."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from system_harness import stop_process
from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

# In the style of Percona's proxysql-admin --syncusers: users (with their hashes) from the
# master, inserted with UNHEX into mysql_users, loaded and saved. Run unchanged by bash.
SYNCUSERS = r"""#!/bin/bash
set -euo pipefail
SOURCE=(mariadb --socket="$1" -uroot --batch --silent --skip-column_names)
ADMIN=(mariadb -h127.0.0.1 -P"$2" -uadmin -padmin --batch --silent --skip-column_names)
WRITER_HOSTGROUP=10
"${SOURCE[@]}" -e "SELECT User, HEX(authentication_string) FROM mysql.user
                    WHERE plugin = 'mysql_native_password' AND authentication_string <> ''
                    AND User NOT IN ('root', 'mariadb.sys')" |
while read -r user password; do
  exists=$("${ADMIN[@]}" -e "SELECT COUNT(*) FROM mysql_users WHERE username = '$user'")
  if [ "$exists" = "0" ]; then
    "${ADMIN[@]}" -e "INSERT INTO mysql_users (username, password, active, default_hostgroup)
                      VALUES ('$user', UNHEX('$password'), 1, $WRITER_HOSTGROUP)"
    echo "added $user"
  fi
done
"${ADMIN[@]}" -e "LOAD MYSQL USERS TO RUNTIME; SAVE MYSQL USERS TO DISK;"
"""


class Running:
    def __init__(self, process: subprocess.Popen[bytes], proxy_port: int, admin_port: int) -> None:
        self.process = process
        self.proxy_port = proxy_port
        self.admin_port = admin_port

    def admin(self, user: str = "admin", password: str = "admin") -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(host="127.0.0.1", port=self.admin_port, user=user, password=password, autocommit=True)

    def app(self, user: str = APP.user, password: str = APP.password) -> pymysql.Connection:  # type: ignore[type-arg]
        return pymysql.connect(host="127.0.0.1", port=self.proxy_port, user=user, password=password, autocommit=True)

    def rows(self, sql: str) -> list[tuple[str, ...]]:
        connection = self.admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
                return [tuple(str(v) for v in row) for row in cursor.fetchall()]
        finally:
            connection.close()


@pytest.fixture
def turnout(sandbox: Sandbox, tmp_path: Path) -> Iterator[Running]:
    proxy_port = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(sandbox, tmp_path / "data", proxy_port, proxy_port + 1))
    process = subprocess.Popen(
        [sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )
    running = Running(process, proxy_port, proxy_port + 1)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(process.stderr.read().decode() if process.stderr else "turnout exited")
            try:
                if len(running.rows("SELECT * FROM runtime_mysql_servers WHERE status = 'ONLINE'")) == 4:
                    break  # the monitor has seen the writer (also a reader) and both replicas
            except pymysql.err.OperationalError:
                pass
            assert time.monotonic() < deadline, "turnout did not come up"
            time.sleep(0.1)
        yield running
    finally:
        stop_process(process)


def test_syncusers_script_runs_unchanged_and_the_users_log_in(
    sandbox: Sandbox, turnout: Running, tmp_path: Path
) -> None:
    sandbox.execute(
        0,
        "CREATE USER IF NOT EXISTS 'synced'@'%' IDENTIFIED BY 'synced_pw'",
        "GRANT SELECT ON *.* TO 'synced'@'%'",
    )
    sandbox.wait_replicas_caught_up()
    script = tmp_path / "syncusers.sh"
    script.write_text(SYNCUSERS)
    done = subprocess.run(
        ["bash", str(script), str(sandbox.nodes[0].paths.socket), str(turnout.admin_port)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "added synced" in done.stdout.splitlines()
    stored = turnout.rows("SELECT password FROM disk.mysql_users WHERE username = 'synced'")
    assert stored[0][0].startswith("*") and len(stored[0][0]) == 41
    connection = turnout.app("synced", "synced_pw")
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT CURRENT_USER(), @@port")
            user, port = cursor.fetchone()
        assert user == "synced@%" and port in [node.port for node in sandbox.nodes]  # a reader (rule 2)
    finally:
        connection.close()
    with pytest.raises(pymysql.err.OperationalError) as caught:
        turnout.app("synced", "wrong").close()
    assert caught.value.args[0] == 1045
    status = dict(turnout.rows("SHOW MYSQL STATUS LIKE 'Access_Denied%'"))
    assert status["Access_Denied_Wrong_Password"] == "1" and status["Access_Denied_Max_Connections"] == "0"


def test_clients_are_greeted_with_the_loaded_server_version(turnout: Running) -> None:
    admin = turnout.admin()
    try:
        with admin.cursor() as cursor:
            cursor.execute("SET mysql-server_version = '8.0.36-turnout'")
            cursor.execute("LOAD MYSQL VARIABLES TO RUNTIME")
    finally:
        admin.close()
    connection = turnout.app()
    try:
        assert connection.get_server_info() == "8.0.36-turnout"
    finally:
        connection.close()
    status = subprocess.run(
        ["mariadb", "-h127.0.0.1", f"-P{turnout.proxy_port}", f"-u{APP.user}", f"-p{APP.password}",
         "--batch", "--silent", "--skip-column_names", "-e", "status"],
        capture_output=True, text=True, timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert any(line.startswith("Server version:") and "8.0.36-turnout" in line for line in status.stdout.splitlines())


def test_connection_pool_per_hostgroup_its_reset_and_stats_users(sandbox: Sandbox, turnout: Running) -> None:
    writer, readers = sandbox.nodes[0].port, [n.port for n in sandbox.nodes[1:]]
    connection = turnout.app()
    try:
        with connection.cursor() as cursor:
            for _ in range(5):
                cursor.execute("SELECT @@port FOR UPDATE")  # the split sends it to the writers, hostgroup 10
            assert cursor.fetchone()[0] == writer
            users = turnout.rows("SELECT * FROM stats_mysql_users")
            assert (APP.user, "1", "10000") in users  # this connection, and the default max_connections
        pool = {(hg, int(port)): (status, int(queries)) for hg, port, status, queries in turnout.rows(
            "SELECT hostgroup, srv_port, status, Queries FROM stats_mysql_connection_pool")}
        assert pool[("10", writer)] == ("ONLINE", 5)  # writer traffic under the writer hostgroup's row
        assert pool[("20", writer)][0] == "ONLINE"  # also a reader (writer_is_also_reader)
        assert {port for hg, port in pool if hg == "20"} == {writer, *readers}
        reset = turnout.rows("SELECT hostgroup, srv_port, Queries, ConnOK FROM stats_mysql_connection_pool_reset "
                             f"WHERE srv_port = {writer} AND hostgroup = 10")
        assert int(reset[0][2]) == 5 and int(reset[0][3]) >= 1
        after = turnout.rows("SELECT Queries, ConnOK, MaxConnUsed, Bytes_data_sent FROM stats_mysql_connection_pool "
                             f"WHERE srv_port = {writer} AND hostgroup = 10")
        assert after == [("0", "0", "0", "0")]
        rules = dict(turnout.rows("SELECT rule_id, hits FROM stats_mysql_query_rules"))
        assert int(rules["1"]) == 5  # the FOR UPDATE rule matched each of them
        with connection.cursor() as cursor, pytest.raises(pymysql.err.ProgrammingError):
            cursor.execute("SELECT * FROM no_such_db.no_such_table FOR UPDATE")
        errors = turnout.rows("SELECT hostgroup, srv_port, username, errno, count_star, last_error FROM "
                              "(SELECT *, port AS srv_port FROM stats_mysql_errors)")
        assert [(hg, port, user, errno, count) for hg, port, user, errno, count, _ in errors] == [
            ("10", str(writer), APP.user, "1146", "1")
        ]
    finally:
        connection.close()
    deadline = time.monotonic() + 10
    while (APP.user, "0", "10000") not in turnout.rows("SELECT * FROM stats_mysql_users"):
        assert time.monotonic() < deadline, "stats_mysql_users did not see the client leave"
        time.sleep(0.05)
    stats = turnout.admin("stats", "stats")
    try:
        with stats.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM stats_mysql_connection_pool")
            assert int(cursor.fetchone()[0]) >= 4
            with pytest.raises(pymysql.err.OperationalError) as caught:
                cursor.execute("SELECT * FROM mysql_users")
            assert caught.value.args == (1045, "ProxySQL Admin Error: no such table: mysql_users")
    finally:
        stats.close()


def test_global_status_and_commands_counters_as_proxysql_shows_them(turnout: Running) -> None:
    connection = turnout.app()
    try:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FOR UPDATE")
            status = dict(turnout.rows("SHOW MYSQL STATUS"))
            assert status["Active_Transactions"] == "1" and status["Client_Connections_connected"] == "1"
            cursor.execute("COMMIT")
        assert dict(turnout.rows("SELECT * FROM stats_mysql_global"))["Active_Transactions"] == "0"
        counters = {name: int(total) for name, total in turnout.rows(
            "SELECT Command, Total_cnt FROM stats_mysql_commands_counters")}
        # every command ProxySQL lists, counted or not
        assert {"ALTER_VIEW", "CREATE_VIEW", "RELEASE_SAVEPOINT", "SHOW_TABLE_STATUS", "UNKNOWN"} <= set(counters)
        assert counters["BEGIN"] == 1 and counters["COMMIT"] == 1 and counters["DROP_VIEW"] == 0
    finally:
        connection.close()
