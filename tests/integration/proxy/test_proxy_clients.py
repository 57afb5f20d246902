"""Real clients through the proxy: the mariadb CLI, mysql-connector-python (binary protocol,
caching_sha2 auth switch, change user, reset connection), PyMySQL (LOCAL INFILE, big packets),
multiple result sets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mysql.connector
import pymysql

from proxy_harness import RunningProxy
from turnout.sandbox.config import APP, MONITOR
from turnout.sandbox.sandbox import Sandbox


def _setup_schema(box: Sandbox) -> None:
    box.execute(
        0,
        "CREATE DATABASE IF NOT EXISTS c",
        "CREATE DATABASE IF NOT EXISTS test",
        "CREATE TABLE IF NOT EXISTS c.t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50), b LONGBLOB)",
        "DELETE FROM c.t",
        "DROP PROCEDURE IF EXISTS c.two",
        "CREATE PROCEDURE c.two() BEGIN SELECT 1 AS a; SELECT 2 AS b, 3 AS c; END",
    )
    box.wait_replicas_caught_up()


def test_mariadb_cli(split_proxy: RunningProxy) -> None:
    result = subprocess.run(
        ["mariadb", "-h127.0.0.1", f"-P{split_proxy.port}", f"-u{APP.user}", f"-p{APP.password}", "-N", "-B",
         "-e", "SELECT 1+1; SELECT @@read_only"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "1"]  # the second SELECT went to a replica


def test_connector_prepared_statements_and_auth_switch(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    _setup_schema(sandbox)
    conn = mysql.connector.connect(
        host="127.0.0.1", port=split_proxy.port, user=APP.user, password=APP.password,
        auth_plugin="caching_sha2_password", autocommit=True, use_pure=True,
    )
    try:
        cur = conn.cursor(prepared=True)
        for i in range(5):
            cur.execute("INSERT INTO c.t (v) VALUES (?)", (f"row{i}",))
        cur.execute("SELECT v FROM c.t WHERE v = ? FOR UPDATE", ("row3",))
        assert cur.fetchall() == [("row3",)]
        sandbox.wait_replicas_caught_up()  # wherever the next read runs, it has the five rows
        cur.execute("SELECT COUNT(*) FROM c.t WHERE id > ?", (0,))
        assert cur.fetchall() == [(5,)]
        conn.cmd_reset_connection()
        cur = conn.cursor(prepared=True)
        cur.execute("SELECT ? + ?", (40, 2))
        assert cur.fetchall() == [(42,)]
        conn.cmd_change_user(username=MONITOR.user, password=MONITOR.password)
    except mysql.connector.Error as exc:
        # the monitor account is not a proxy user: change user must be refused cleanly
        assert exc.errno == 1045
    finally:
        conn.close()


def test_multiple_result_sets_and_multi_statements(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    _setup_schema(sandbox)
    conn = split_proxy.connect(client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
    with conn, conn.cursor() as cur:
        cur.execute("CALL c.two()")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, 3),)
        cur.execute("SELECT 1; SELECT 2")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2,),)
        while cur.nextset():
            pass
        cur.execute("SELECT 7")
        assert cur.fetchall() == ((7,),)


def test_local_infile_and_large_packets(sandbox: Sandbox, split_proxy: RunningProxy, tmp_path: Path) -> None:
    _setup_schema(sandbox)
    data = tmp_path / "rows.tsv"
    data.write_text("".join(f"{i}\tloaded{i}\n" for i in range(1, 101)))
    conn = split_proxy.connect(local_infile=True, max_allowed_packet=64 * 1024 * 1024)
    with conn, conn.cursor() as cur:
        cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE c.t (id, v)")
        cur.execute("SELECT COUNT(*) FROM c.t WHERE v LIKE 'loaded%' FOR UPDATE")
        assert cur.fetchone() == (100,)
        blob = bytes(range(256)) * (16 * 4096 + 3)  # just over 16 MiB: split packets both ways
        cur.execute("INSERT INTO c.t (id, v, b) VALUES (1000, 'big', %s)", (blob,))
        cur.execute("SELECT b FROM c.t WHERE id = 1000 FOR UPDATE")
        (back,) = cur.fetchone()
        assert back == blob
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
