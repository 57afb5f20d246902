"""What drivers negotiate with the server, through the proxy exactly as directly: LOAD DATA LOCAL
from a client that did not enable it, the compressed protocol, and MariaDB's capabilities that
libmariadb clients use (session tracking, bulk statements, extended type info)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import mariadb
import mysql.connector
import pymysql
import pytest

from driver_harness import RawClient, Target, outcome, single_config
from proxy_harness import WRITER, RunningProxy
from turnout.config.model import MysqlUser
from turnout.protocol import constants as c
from turnout.protocol.packets import encode_packet
from turnout.protocol.response import ResponseFramer
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


# ---- LOAD DATA LOCAL from a client that did not enable it ------------------------------------
def _infile(tmp_path: Path) -> Path:
    path = tmp_path / "rows.tsv"
    path.write_text("7\t70\n8\t80\n")
    return path


def _load_refused_then_works(cursor: Any, path: Path) -> list[Any]:
    def load() -> Any:
        cursor.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE drv.t")
        return "loaded"

    def select() -> Any:
        cursor.execute("SELECT COUNT(*) FROM drv.t")
        return cursor.fetchall()[0][0]

    return [outcome(load), outcome(select), outcome(select)]


def test_local_infile_not_enabled_pymysql(both: list[Target], tmp_path: Path) -> None:
    path = _infile(tmp_path)
    seen = {}
    for target in both:
        conn = pymysql.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                               autocommit=True, read_timeout=10)
        with conn, conn.cursor() as cur:
            seen[target.name] = _load_refused_then_works(cur, path)
    assert seen["direct"] == [("error", 4166), 4, 4]
    assert seen["proxy"] == seen["direct"]


def test_local_infile_not_enabled_connector(both: list[Target], tmp_path: Path) -> None:
    path = _infile(tmp_path)
    seen = {}
    for target in both:
        conn = mysql.connector.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                                       autocommit=True, use_pure=True, allow_local_infile=False,
                                       connection_timeout=10)
        try:
            seen[target.name] = _load_refused_then_works(conn.cursor(), path)
        finally:
            conn.close()
    assert seen["direct"][0] == ("error", 4166) and seen["direct"][1:] == [4, 4]
    assert seen["proxy"] == seen["direct"]


def test_local_infile_enabled_still_loads(both: list[Target], tmp_path: Path) -> None:
    path = _infile(tmp_path)
    for target in both:
        conn = pymysql.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                               autocommit=True, local_infile=True, read_timeout=10)
        with conn, conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE drv.t")
            assert cur.rowcount == 2, target
            cur.execute("DELETE FROM drv.t WHERE id IN (7, 8)")


# ---- the compressed protocol ------------------------------------------------------------------
COMPRESSED_CHECKS = [
    "SELECT 1 + 1",
    "SELECT REPEAT('z', 100000)",  # compresses well, larger than a compressed packet's payload
    "SELECT id, v FROM drv.t ORDER BY id",
    "SELECT SHA2(seq, 512) FROM seq_1_to_2000",  # does not compress: sent as is
]


def _compressed_run(cursor: Any) -> list[Any]:
    results = []
    for sql in COMPRESSED_CHECKS:
        cursor.execute(sql)
        results.append([tuple(row) for row in cursor.fetchall()])
    cursor.execute("INSERT INTO drv.b VALUES (%s, %s)", (99, "x" * 20))
    results.append(cursor.rowcount)
    cursor.execute("DELETE FROM drv.b WHERE id = 99")
    return results


def test_compression_connector(both: list[Target]) -> None:
    seen = {}
    for target in both:
        conn = mysql.connector.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                                       autocommit=True, use_pure=True, compress=True, connection_timeout=10,
                                       database="drv")
        try:
            seen[target.name] = _compressed_run(conn.cursor())
            cur = conn.cursor(prepared=True)
            cur.execute("SELECT ? + 1, REPEAT(?, 50000)", (41, "ab"))
            seen[target.name].append([tuple(row) for row in cur.fetchall()])
        finally:
            conn.close()
    assert seen["proxy"] == seen["direct"]


def test_compression_mariadb_cli(both: list[Target]) -> None:
    seen = {}
    for target in both:
        run = subprocess.run(
            ["mariadb", "--compress", "-h127.0.0.1", f"-P{target.port}", f"-u{APP.user}", f"-p{APP.password}",
             "-N", "-B", "--connect-timeout=10", "-Ddrv", "-e",
             "SELECT LENGTH(REPEAT('q', 300000)); SELECT COUNT(*), SUM(LENGTH(SHA2(seq, 256))) FROM seq_1_to_5000; "
             "SELECT REPEAT('w', 70000)"],
            capture_output=True, text=True, timeout=60,
        )
        seen[target.name] = (run.returncode, run.stdout, run.stderr)
    assert seen["direct"][0] == 0
    assert seen["proxy"] == seen["direct"]


# ---- MariaDB's capabilities for libmariadb clients ----------------------------------------------


@pytest.fixture
def warm(single: RunningProxy) -> None:
    """A first backend login, from which the proxy learns what the server offers."""
    with single.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def _mariadb(target: Target, **kwargs: Any) -> mariadb.Connection:
    return mariadb.connect(host="127.0.0.1", port=target.port, user=APP.user, password=APP.password,
                           autocommit=True, connect_timeout=10, read_timeout=10, **kwargs)


def test_session_tracking_reports_the_database_after_use(both: list[Target], warm: None) -> None:
    seen = {}
    for target in both:
        conn = _mariadb(target, database="drv")
        try:
            cur = conn.cursor()
            cur.execute("USE drv2")
            after_use = conn.database
            conn.database = "drv"  # the connector's own COM_INIT_DB
            cur.execute("SELECT DATABASE()")
            seen[target.name] = (after_use, conn.database, cur.fetchall())
        finally:
            conn.close()
    assert seen["direct"] == ("drv2", "drv", [("drv",)])
    assert seen["proxy"] == seen["direct"]


def test_bulk_executemany_and_indicators(both: list[Target], warm: None) -> None:
    seen = {}
    for target in both:
        conn = _mariadb(target)
        try:
            cur = conn.cursor()
            cur.execute("DELETE FROM drv.b")
            cur.executemany("INSERT INTO drv.b VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c"), (4, "d")])
            inserted = cur.rowcount
            cur.executemany(
                "INSERT INTO drv.b VALUES (?, ?)",
                [(5, mariadb.constants.INDICATOR.DEFAULT), (6, mariadb.constants.INDICATOR.NULL)],
            )
            with_indicators = cur.rowcount
            cur.execute("SELECT id, s FROM drv.b ORDER BY id")
            seen[target.name] = (inserted, with_indicators, cur.fetchall())
        finally:
            conn.close()
    assert seen["direct"][:2] == (4, 2)
    assert seen["proxy"] == seen["direct"]


def test_extended_type_info_reports_json(both: list[Target], warm: None) -> None:
    seen = {}
    for target in both:
        conn = _mariadb(target)
        try:
            cur = conn.cursor()
            cur.execute("SELECT doc FROM drv.j")
            seen[target.name] = (cur.description[0][1], cur.fetchall())
        finally:
            conn.close()
    assert seen["direct"][0] == 245  # MYSQL_TYPE_JSON, from MariaDB's extended type info
    assert seen["proxy"] == seen["direct"]


LIBMARIADB_CAPABILITIES = (
    c.CLIENT_SESSION_TRACK | c.CLIENT_DEPRECATE_EOF | c.MARIADB_CLIENT_PROGRESS
    | c.MARIADB_CLIENT_STMT_BULK_OPERATIONS | c.MARIADB_CLIENT_EXTENDED_TYPE_INFO
)


def test_capabilities_offered_as_the_server_offers_them(both: list[Target], warm: None) -> None:
    seen = {}
    for target in both:
        conn = _mariadb(target)
        try:
            offered = conn.server_capabilities | conn.extended_server_capabilities << 32
            seen[target.name] = offered & LIBMARIADB_CAPABILITIES
        finally:
            conn.close()
    assert seen["direct"] == LIBMARIADB_CAPABILITIES
    assert seen["proxy"] == seen["direct"]


# ---- CLIENT_DEPRECATE_EOF: results framed with OK packets, beside clients that did not ask ------
SCENARIO = Path(__file__).parents[2] / "libmysqlclient_scenario.py"


def _libmysqlclient(target: Target) -> Any:
    run = subprocess.run([sys.executable, str(SCENARIO), str(target.port), APP.user, APP.password],
                         capture_output=True, text=True, timeout=60)
    if "C Extension not available" in run.stderr or "No module named '_mysql_connector'" in run.stderr:
        pytest.skip("mysql-connector-python's C extension (libmysqlclient) cannot load here")
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout)


def _idle_flavours(proxy: RunningProxy) -> set[int]:
    """The reply capabilities of the pool's idle connections (backend.REPLY_CAPABILITIES)."""
    def read() -> set[int]:
        return {caps for pool in proxy.proxy.pools.servers.values() for (_, caps), idle in pool.idle.items() if idle}
    return proxy.call(read)


def test_deprecate_eof_libmysqlclient_beside_pymysql(both: list[Target], single: RunningProxy, warm: None) -> None:
    """libmysqlclient asks for CLIENT_DEPRECATE_EOF: text and binary results, multi-results, a
    statement prepared in a transaction, warnings and session tracking read as directly, while
    PyMySQL (classic EOFs) uses the same proxy and server before and after it."""
    def pymysql_run(port: int) -> Any:
        conn = pymysql.connect(host="127.0.0.1", port=port, user=APP.user, password=APP.password,
                               autocommit=True, database="drv", client_flag=c.CLIENT_MULTI_STATEMENTS)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, v FROM t ORDER BY id")
            rows = cur.fetchall()
            cur.execute("SELECT 1; SELECT 2")
            first = cur.fetchall()
            cur.nextset()
            return rows, first, cur.fetchall()

    seen = {}
    for target in both:
        before = pymysql_run(target.port)
        seen[target.name] = (before, _libmysqlclient(target), pymysql_run(target.port))
    direct = seen["direct"][1]
    assert direct["multi"] == [[[1]], [[2, 3]], 0] and direct["database"] == "drv2"
    assert direct["in_transaction"] == [[1]] and direct["rolled_back"] == [[0]]
    assert seen["proxy"] == seen["direct"]
    flavours = _idle_flavours(single)
    assert any(caps & c.CLIENT_DEPRECATE_EOF for caps in flavours), flavours
    assert any(not caps & c.CLIENT_DEPRECATE_EOF for caps in flavours), flavours


def _raw_exchange(client: RawClient, payload: bytes, deprecate_eof: bool, sent: bool = False,
                  command: int = 0) -> bytes:
    """One command (`sent` already: a `command` sent earlier) and its whole response, as bytes;
    the bytes of a response after it stay in `client.unread`."""
    if not sent:
        client.sock.sendall(encode_packet(payload, 0))
        command = payload[0]
    framer = ResponseFramer(command, deprecate_eof=deprecate_eof)
    response = b""
    data, client.unread = client.unread, b""
    while True:
        if data:
            used = framer.feed(data)
            response += data[:used]
            client.unread = data[used:]
            if framer.done:
                return response
        data = client.sock.recv(65536)
        assert data, "connection closed"


RAW_COMMANDS = [
    b"\x03SELECT id, v FROM drv.t ORDER BY id",
    b"\x03SELECT id FROM drv.t WHERE id < 0",
    b"\x03SELECT 1; SELECT 2, 'two'; DO 1",
    b"\x03SELECT CAST('x' AS SIGNED)",
    b"\x04t\x00",  # COM_FIELD_LIST (the session's database is drv)
    b"\x1b\x01\x00",  # COM_SET_OPTION: multi-statements off
    b"\x1b\x00\x00",
    b"\x03USE drv2",
    b"\x03SET NAMES utf8mb4",
    b"\x03SET autocommit = 0",
    b"\x03SET autocommit = 1",
]


@pytest.mark.parametrize("tracking", [False, True], ids=["deprecate-EOF", "deprecate-EOF and session tracking"])
def test_deprecate_eof_responses_are_the_servers_byte_for_byte(both: list[Target], warm: None, tracking: bool) -> None:
    caps = (c.DEFAULT_SERVER_CAPABILITIES | c.CLIENT_MULTI_STATEMENTS | c.CLIENT_MULTI_RESULTS
            | c.CLIENT_PS_MULTI_RESULTS | c.CLIENT_DEPRECATE_EOF | (c.CLIENT_SESSION_TRACK if tracking else 0)
            ) & ~c.CLIENT_NO_SCHEMA
    seen = {}
    for target in both:
        client = RawClient(target.port, caps, database="drv")
        try:
            responses = [_raw_exchange(client, command, True) for command in RAW_COMMANDS]
            prepare = _raw_exchange(client, b"\x16SELECT id, v FROM drv.t WHERE id > ?", True)
            statement = prepare[5:9]
            execute = b"\x17" + statement + b"\x00\x01\x00\x00\x00\x00\x01\x03\x00" + (2).to_bytes(4, "little")
            cursor = b"\x17" + statement + b"\x01\x01\x00\x00\x00\x00\x01\x03\x00" + (2).to_bytes(4, "little")
            fetch = b"\x1c" + statement + (5).to_bytes(4, "little")
            responses += [
                prepare[:5] + prepare[9:],  # the statement ids are each side's own
                _raw_exchange(client, execute, True),
                _raw_exchange(client, cursor, True),
                _raw_exchange(client, fetch, True),
            ]
            seen[target.name] = responses
        finally:
            client.close()
    for index, (direct, proxied) in enumerate(zip(seen["direct"], seen["proxy"], strict=True)):
        assert proxied == direct, (index, direct, proxied)


BULK_ERRORS = """
import json, sys
import mariadb
conn = mariadb.connect(host="127.0.0.1", port=int(sys.argv[1]), user=sys.argv[2], password=sys.argv[3],
                       autocommit=True, connect_timeout=10, read_timeout=10)
cur = conn.cursor()
cur.execute("DELETE FROM drv.b")
cur.executemany("INSERT INTO drv.b VALUES (?, ?)", [(10, "a"), (11, "b")])
try:
    cur.executemany("INSERT INTO drv.b VALUES (?, ?)", [(12, "c"), (10, "again")])
    duplicate = None
except mariadb.Error as exc:
    duplicate = exc.errno
conn.begin()
cur.executemany("INSERT INTO drv.b (id) VALUES (?)", [(20,), (21,), (22,)])
in_transaction = cur.rowcount
conn.rollback()
cur.executemany("UPDATE drv.b SET s = ? WHERE id = ?", [("x", 10), ("y", 11), ("z", 99)])
updated = cur.rowcount
cur.execute("SELECT id, s FROM drv.b ORDER BY id")
print(json.dumps([duplicate, in_transaction, updated, [list(row) for row in cur.fetchall()]]))
conn.close()
"""


def test_bulk_errors_and_transactions(both: list[Target], warm: None) -> None:
    """executemany (COM_STMT_BULK_EXECUTE) that fails on a duplicate key, and one inside a
    transaction rolled back, as directly. In a process of its own: Connector/Python holds the
    interpreter while it reads after such an error, which would stall the proxy's thread here."""
    seen = {}
    for target in both:
        run = subprocess.run([sys.executable, "-c", BULK_ERRORS, str(target.port), APP.user, APP.password],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-2000:]
        seen[target.name] = json.loads(run.stdout)
    assert seen["direct"][:3] == [1062, 3, 2]
    assert seen["proxy"] == seen["direct"]


def test_a_command_for_the_statement_just_prepared(both: list[Target], warm: None) -> None:
    """A prepare and a command naming the statement it makes (id 0xFFFFFFFF) sent at once, as
    libmariadb's mariadb_stmt_execute_direct does; after a failed prepare the id names none."""
    caps = (c.DEFAULT_SERVER_CAPABILITIES | c.CLIENT_MULTI_RESULTS | c.CLIENT_PS_MULTI_RESULTS) & ~c.CLIENT_NO_SCHEMA
    last = c.LAST_STMT_ID.to_bytes(4, "little")
    execute = b"\x17" + last + b"\x00\x01\x00\x00\x00\x00\x01\x03\x00" + (2).to_bytes(4, "little")
    seen = {}
    for target in both:
        client = RawClient(target.port, caps)
        try:
            client.sock.sendall(encode_packet(b"\x16SELECT id FROM drv.t WHERE id > ? ORDER BY id", 0)
                                + encode_packet(execute, 0))
            prepared = _raw_exchange(client, b"", False, sent=True, command=c.COM_STMT_PREPARE)
            rows = _raw_exchange(client, b"", False, sent=True, command=c.COM_STMT_EXECUTE)
            client.sock.sendall(encode_packet(b"\x16SELECT nonsense FROM", 0) + encode_packet(execute, 0))
            failed = _raw_exchange(client, b"", False, sent=True, command=c.COM_STMT_PREPARE)
            unknown = _raw_exchange(client, b"", False, sent=True, command=c.COM_STMT_EXECUTE)
            seen[target.name] = (prepared[:5] + prepared[9:], rows, failed, unknown[:7])  # (ERR: code, then text)
        finally:
            client.close()
    assert seen["direct"][3][4] == 0xFF
    assert seen["proxy"] == seen["direct"]


# ---- MariaDB's progress reports (MARIADB_CLIENT_PROGRESS) ----------------------------------------
PROGRESS_CLIENT = Path(__file__).parents[2] / "libmariadb_progress.py"
PROGRESS_ROWS = 150  # each row's insert sleeps 10 ms (a trigger): the load lasts 1.5 s at least


def test_progress_reports_reach_a_libmariadb_client(
    drv_schema: Sandbox, start_proxy: Callable[..., RunningProxy], tmp_path: Path
) -> None:
    """libmariadb with a progress callback (what the mariadb CLI's --progress-reports sets) gets the
    server's progress reports of a LOAD DATA INFILE through the proxy, as directly, and then its
    answer; Connector/Python (which asks for progress reports without a callback) gets the right
    answer. The load outlasts progress_report_time (1 s) by construction: a trigger sleeps per row."""
    config = single_config(drv_schema)
    proxy = start_proxy(replace(config, users=(*config.users, MysqlUser("root", "", default_hostgroup=WRITER))))
    with proxy.connect("root", "") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")  # a first backend login: the proxy learns what the server offers
    rows = tmp_path / "ids.txt"
    rows.write_text("".join(f"{i}\n" for i in range(1, PROGRESS_ROWS + 1)))
    drv_schema.execute(
        0,
        "CREATE OR REPLACE TABLE drv.slow (id INT PRIMARY KEY)",
        "CREATE TRIGGER drv.slow_row BEFORE INSERT ON drv.slow FOR EACH ROW DO SLEEP(0.01)",
    )
    load = f"LOAD DATA INFILE '{rows}' INTO TABLE drv.slow (id)"
    statements = ["SET progress_report_time = 1", load, "SELECT COUNT(*) FROM drv.slow"]
    seen = {}
    for name, port in (("direct", drv_schema.nodes[0].port), ("proxy", proxy.port)):
        drv_schema.execute(0, "DELETE FROM drv.slow")
        run = subprocess.run([sys.executable, str(PROGRESS_CLIENT), str(port), "root", "", *statements],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        seen[name] = json.loads(run.stdout)
        connector = subprocess.run([sys.executable, "-c", CONNECTOR_LOAD, str(port), load],
                                   capture_output=True, text=True, timeout=120)
        assert connector.returncode == 0, connector.stderr[-2000:]
        seen[name]["connector"] = json.loads(connector.stdout)
    assert seen["direct"]["reports"], "the server sent no progress report"
    assert seen["direct"]["outcomes"][1:] == [PROGRESS_ROWS, 1]
    assert seen["direct"]["connector"] == [PROGRESS_ROWS, PROGRESS_ROWS]
    assert seen["proxy"] == seen["direct"]
    drv_schema.execute(0, "DROP TABLE drv.slow")


CONNECTOR_LOAD = """
import json, sys
import mariadb
conn = mariadb.connect(host="127.0.0.1", port=int(sys.argv[1]), user="root", password="", autocommit=True)
cur = conn.cursor()
cur.execute("SET progress_report_time = 1")
cur.execute("DELETE FROM drv.slow")
cur.execute(sys.argv[2])
loaded = cur.rowcount
cur.execute("SELECT COUNT(*) FROM drv.slow")
print(json.dumps([loaded, cur.fetchall()[0][0]]))
conn.close()
"""


@pytest.mark.parametrize("no_schema", [False, True], ids=["db.table.column", "CLIENT_NO_SCHEMA"])
def test_no_schema_as_the_server_reads_it(both: list[Target], warm: None, no_schema: bool) -> None:
    """MariaDB 10.11 honours CLIENT_NO_SCHEMA: the database part of `db.table.column` is ignored
    (the column is looked for in `table` of the current database, here drv)."""
    caps = (c.DEFAULT_SERVER_CAPABILITIES & ~c.CLIENT_NO_SCHEMA) | (c.CLIENT_NO_SCHEMA if no_schema else 0)
    seen = {}
    for target in both:
        client = RawClient(target.port, caps, database="drv")
        try:
            seen[target.name] = _raw_exchange(client, b"\x03SELECT nosuch.t.id FROM drv.t WHERE id = 1", False)
        finally:
            client.close()
    assert (b"Unknown column" in seen["direct"]) != no_schema, seen["direct"]
    assert seen["proxy"] == seen["direct"]
