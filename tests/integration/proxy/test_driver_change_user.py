"""COM_CHANGE_USER, which the proxy answers itself, as the server answers it: a real client's
change_user leaves a fresh session (no user variables, temporary tables, prepared statements or
transaction) in the database it named."""

from __future__ import annotations

from typing import Any

import mariadb
import mysql.connector
import pytest

from driver_harness import Target, outcome
from proxy_harness import RunningProxy
from turnout.sandbox.config import APP

pytestmark = pytest.mark.sandbox


@pytest.fixture
def warm(single: RunningProxy) -> None:
    """A first backend login, from which the proxy learns what the server offers (session tracking)."""
    with single.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")


def _scenario(port: int) -> Any:
    conn = mysql.connector.connect(host="127.0.0.1", port=port, user=APP.user, password=APP.password,
                                   database="drv", use_pure=True, connection_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("SET @kept = 1")
        cur.execute("CREATE TEMPORARY TABLE drv.tmp_cu (id INT)")
        cur.execute("PREPARE cu_stmt FROM 'SELECT 1'")
        cur.execute("START TRANSACTION")
        cur.execute("INSERT INTO drv.t VALUES (90, 90)")
        ok = conn.cmd_change_user(username=APP.user, password=APP.password, database="drv2")
        cur = conn.cursor()
        cur.execute("SELECT @kept, DATABASE(), CURRENT_USER() = CONCAT(USER(), '') OR 1, @@in_transaction")
        after = cur.fetchall()
        temp = outcome(lambda: (cur.execute("SELECT * FROM drv.tmp_cu"), cur.fetchall())[1])
        stmt = outcome(lambda: (cur.execute("EXECUTE cu_stmt"), cur.fetchall())[1])
        cur.execute("SELECT COUNT(*) FROM drv.t WHERE id = 90")
        inserted = cur.fetchall()
        return [sorted(k for k in ok if k != "status_flag"), ok.get("status_flag"), after, temp, stmt, inserted]
    finally:
        conn.close()


def test_change_user_resets_the_session(both: list[Target], warm: None) -> None:
    """mysql-connector-python (pure, no session tracking): user variables, a temporary table, an
    SQL prepared statement and an open transaction are gone after cmd_change_user, through the
    proxy as directly, and the database is the one it named."""
    seen = {target.name: _scenario(target.port) for target in both}
    assert seen["direct"][2:] == [[(None, "drv2", 1, 0)], ("error", 1146), ("error", 1243), [(0,)]]
    assert seen["proxy"] == seen["direct"]


def _mariadb_scenario(port: int) -> Any:
    conn = mariadb.connect(host="127.0.0.1", port=port, user=APP.user, password=APP.password, database="drv",
                           autocommit=True, connect_timeout=10, read_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("SET @kept = 1, SESSION sql_mode = 'ANSI', SESSION time_zone = '+03:00'")
        conn.change_user(APP.user, APP.password, "drv2")
        seen = [conn.database, conn.character_set, conn.server_status]
        cur = conn.cursor()
        cur.execute("SELECT @kept, DATABASE(), @@sql_mode, @@time_zone, @@autocommit")
        return [*seen, cur.fetchall()]
    finally:
        conn.close()


def test_change_user_libmariadb_session(both: list[Target], warm: None) -> None:
    """Connector/Python's change_user: the session's variables are the new login's, and the
    database the one it named (libmariadb reads it from the OK)."""
    seen = {target.name: _mariadb_scenario(target.port) for target in both}
    assert seen["direct"][0] == "drv2" and seen["direct"][3][0][:2] == (None, "drv2")
    assert [seen["proxy"][i] for i in (0, 1, 3)] == [seen["direct"][i] for i in (0, 1, 3)]


def test_change_user_libmariadb_status(both: list[Target], warm: None) -> None:
    """The server's OK to a session-tracking client's change_user reports the database it named
    (SESSION_TRACK_SCHEMA, with SERVER_SESSION_STATE_CHANGED), the proxy's too."""
    seen = {target.name: _mariadb_scenario(target.port) for target in both}
    assert seen["proxy"][2] == seen["direct"][2]
