"""The proxy in front of real servers, driven by real clients."""

from __future__ import annotations

import pymysql
import pytest

from proxy_harness import RunningProxy, server_counter
from turnout.sandbox.sandbox import Sandbox


def test_read_write_split_by_server_counters(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS p", "CREATE TABLE IF NOT EXISTS p.t (id INT PRIMARY KEY, v INT)",
                    "DELETE FROM p.t")
    sandbox.wait_replicas_caught_up()
    before = {n: (server_counter(sandbox, n, "Com_select"), server_counter(sandbox, n, "Com_insert")) for n in range(3)}
    with split_proxy.connect(database="p") as conn, conn.cursor() as cur:
        for i in range(20):
            cur.execute("INSERT INTO p.t VALUES (%s, %s)", (i, i))
        for _ in range(40):
            cur.execute("SELECT COUNT(*) FROM p.t")
        cur.execute("SELECT v FROM p.t WHERE id = 1 FOR UPDATE")
    after = {n: (server_counter(sandbox, n, "Com_select"), server_counter(sandbox, n, "Com_insert")) for n in range(3)}
    inserts = {n: after[n][1] - before[n][1] for n in range(3)}
    assert inserts[0] == 20
    reader_selects = sum(after[n][0] - before[n][0] for n in (1, 2))
    assert reader_selects >= 40
    # only the FOR UPDATE select (and nothing else of ours) reached the master as a SELECT
    assert after[0][0] - before[0][0] == 1


def test_wrong_password_and_unknown_user(split_proxy: RunningProxy) -> None:
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        split_proxy.connect(password="wrong")
    assert excinfo.value.args[0] == 1045
    with pytest.raises(pymysql.err.OperationalError) as excinfo:
        split_proxy.connect(user="nobody")
    assert excinfo.value.args[0] == 1045


def test_transaction_sticks_to_writer(sandbox: Sandbox, split_proxy: RunningProxy) -> None:
    sandbox.execute(0, "CREATE DATABASE IF NOT EXISTS p", "CREATE TABLE IF NOT EXISTS p.tx (id INT PRIMARY KEY)",
                    "DELETE FROM p.tx")
    with split_proxy.connect() as conn, conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO p.tx VALUES (1)")
        cur.execute("SELECT COUNT(*) FROM p.tx")  # would be 0 on a replica: the insert is not committed
        assert cur.fetchone() == (1,)
        cur.execute("ROLLBACK")
        cur.execute("SELECT COUNT(*) FROM p.tx FOR UPDATE")
        assert cur.fetchone() == (0,)
