"""A scenario for MySQL's own client library (libmysqlclient, which mysql-connector-python's C
extension bundles), run in a process of its own: `python libmysqlclient_scenario.py PORT USER
PASSWORD` prints what the client observed as JSON.

libmysqlclient asks for CLIENT_DEPRECATE_EOF and CLIENT_SESSION_TRACK, which neither PyMySQL nor
libmariadb do. The extension must load its bundled OpenSSL before anything loads the system's
(the `ssl` module does), hence a fresh process that imports it first.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import _mysql_connector  # noqa: F401  (first: see above)
import mysql.connector


def scenario(port: int, user: str, password: str) -> dict[str, Any]:
    conn = mysql.connector.connect(host="127.0.0.1", port=port, user=user, password=password, use_pure=False,
                                   database="drv", autocommit=True, connection_timeout=10)
    seen: dict[str, Any] = {}
    try:
        cur = conn.cursor()
        cur.execute("SELECT id, v FROM t ORDER BY id")
        seen["text"] = cur.fetchall()
        cur.execute("SELECT id FROM t WHERE id < 0")
        seen["empty"] = cur.fetchall()
        cur.execute("SELECT 1; SELECT 2, 3; DO 1")
        results = [cur.fetchall()]
        while cur.nextset():
            results.append(cur.fetchall() if cur.with_rows else cur.rowcount)
        seen["multi"] = results
        cur.execute("SELECT CAST('x' AS SIGNED)")
        seen["warned"] = cur.fetchall()
        cur.execute("SHOW WARNINGS")
        seen["warnings"] = cur.fetchall()
        prepared = conn.cursor(prepared=True)
        prepared.execute("SELECT id, v FROM t WHERE id > %s ORDER BY id", (1,))
        seen["prepared"] = prepared.fetchall()
        prepared.execute("SELECT doc FROM j WHERE id = %s", (1,))
        seen["json"] = prepared.fetchall()
        prepared.execute("INSERT INTO b VALUES (%s, %s)", (41, "x"))
        seen["insert"] = prepared.rowcount
        prepared.execute("DELETE FROM b WHERE id = %s", (41,))
        seen["delete"] = prepared.rowcount
        conn.start_transaction()
        cur.execute("INSERT INTO b VALUES (42, 'in a transaction')")
        prepared.execute("SELECT COUNT(*) FROM b WHERE id = %s", (42,))  # prepared in the transaction
        seen["in_transaction"] = prepared.fetchall()
        conn.rollback()
        cur.execute("SELECT COUNT(*) FROM b WHERE id = 42")
        seen["rolled_back"] = cur.fetchall()
        cur.execute("USE drv2")
        seen["database"] = conn.database  # from the session tracking in the OK
    finally:
        conn.close()
    return seen


if __name__ == "__main__":
    print(json.dumps(scenario(int(sys.argv[1]), sys.argv[2], sys.argv[3]), default=str))
