"""Proxies that fence themselves, on a real etcd and real servers: a proxy cut off from the store
stops writing before its lease can expire (held, then an error that says why), keeps serving
reads, and resumes by itself; a new master takes no write until every registered proxy has
applied its epoch or lost its lease."""

from __future__ import annotations

import asyncio
import datetime
import time
from typing import Any

import pymysql
import pytest

from integration.ha.conftest import HA
from integration.ha.ha_harness import (
    TIMINGS,
    api,
    app,
    cluster,
    global_status,
    is_leader,
    master_of,
    metric,
    start_manager,
    start_proxy,
    wait_until,
)
from turnout.proxy.workers import SESSION_ID_SPAN
from turnout.sandbox.sandbox import Sandbox
from turnout.state import open_store

pytestmark = pytest.mark.sandbox


def test_a_proxy_cut_off_from_the_store_fences_itself_and_resumes(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    manager = start_manager(ha.keep, ha.workdir, "mgr", ha.store, box)
    wait_until(lambda: is_leader(manager), "the manager to lead")
    link, through_link = ha.link()
    proxy = start_proxy(ha.keep, ha.workdir, "proxy-a", through_link, box, metrics=True)
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "0", "the proxy to lift its start-up fence")
    assert metric(proxy, "turnout_store_proxy_fenced") == 0
    with app(proxy) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS f")
        cur.execute("CREATE TABLE IF NOT EXISTS f.t (id INT PRIMARY KEY, v INT)")
        cur.execute("INSERT INTO f.t VALUES (1, 1)")
    box.wait_replicas_caught_up()
    # A transaction open when the proxy loses the store is ended, not committed later.
    open_txn = app(proxy)
    with open_txn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO f.t VALUES (2, 2)")

    link.cut()
    cut = time.monotonic()
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "1", "the proxy to fence itself")
    fenced_after = time.monotonic() - cut
    print(f"cut -> self-fenced after {fenced_after:.2f}s (deadline {TIMINGS['ProxyRenewDeadlineSeconds']}s, "
          f"lease {TIMINGS['ProxyLeaseSeconds']}s)")
    assert fenced_after < TIMINGS["ProxyLeaseSeconds"], "it must stop writing before its lease can expire"
    assert metric(proxy, "turnout_store_proxy_fenced") == 1

    with pytest.raises(pymysql.err.MySQLError) as ended, open_txn.cursor() as cur:
        cur.execute("COMMIT")
    assert "has not renewed its lease" in str(ended.value), ended.value
    open_txn.close()
    with app(proxy) as conn, conn.cursor() as cur:
        # reads go on from the replicas
        cur.execute("SELECT COUNT(*) FROM f.t")
        assert cur.fetchone()[0] == 1, "the open transaction's row was never committed"
        held = time.monotonic()
        with pytest.raises(pymysql.err.MySQLError) as refused:
            cur.execute("INSERT INTO f.t VALUES (3, 3)")
        assert time.monotonic() - held >= 3, "the write was held before it failed"
        assert "has not renewed its lease in the state store" in str(refused.value), refused.value
        assert "sends no writes until it reaches the store again" in str(refused.value)
    assert box.execute(0, "SELECT COUNT(*) AS n FROM f.t")[0]["n"] == 1

    link.heal()
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "0", "the proxy to lift its fence")
    with app(proxy) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO f.t VALUES (4, 4)")
    assert box.execute(0, "SELECT COUNT(*) AS n FROM f.t")[0]["n"] == 2
    assert int(global_status(proxy, "Store_proxy_self_fences") or 0) >= 1


def test_every_worker_process_cuts_its_transactions_when_the_proxy_fences_itself(
    ha: HA, fresh_sandbox: Sandbox
) -> None:
    """With --workers, sessions live in several processes: each ends its own open transactions
    when the proxy fences itself, so none of them commits on a master this proxy may no longer
    write to."""
    box = fresh_sandbox
    manager = start_manager(ha.keep, ha.workdir, "mgr", ha.store, box)
    wait_until(lambda: is_leader(manager), "the manager to lead")
    link, through_link = ha.link()
    proxy = start_proxy(ha.keep, ha.workdir, "proxy-w", through_link, box, workers=2)
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "0", "the proxy to lift its start-up fence")
    with app(proxy) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS w")
        cur.execute("CREATE TABLE IF NOT EXISTS w.t (id INT PRIMARY KEY)")
    # The kernel spreads connections over the processes listening (the workers start listening a
    # moment after the control process); a session's id says which process serves it.
    transactions: dict[int, pymysql.connections.Connection[Any]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        conn = app(proxy)
        process = conn.thread_id() // SESSION_ID_SPAN
        if process in transactions:
            conn.close()
            continue
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("INSERT INTO w.t VALUES (%s)", (conn.thread_id(),))
        transactions[process] = conn
        if len(transactions) == 2:
            break
    # --workers 2: the control process and one worker
    assert len(transactions) == 2, f"sessions only in processes {sorted(transactions)}"

    link.cut()
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "1", "the proxy to fence itself")
    for process, conn in sorted(transactions.items()):
        with pytest.raises(pymysql.err.MySQLError) as ended, conn.cursor() as cur:
            cur.execute("COMMIT")
        assert "has not renewed its lease" in str(ended.value), (process, ended.value)
        conn.close()
    assert box.execute(0, "SELECT COUNT(*) AS n FROM w.t")[0]["n"] == 0
    link.heal()


def test_a_proxy_can_refuse_reads_while_fenced(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    manager = start_manager(ha.keep, ha.workdir, "mgr", ha.store, box)
    wait_until(lambda: is_leader(manager), "the manager to lead")
    link, through_link = ha.link()
    proxy = start_proxy(ha.keep, ha.workdir, "proxy-r", through_link, box, ProxyFencedReads="refuse")
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "0", "the proxy to lift its start-up fence")
    with app(proxy) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
    link.cut()
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "1", "the proxy to fence itself")
    with app(proxy) as conn, conn.cursor() as cur, pytest.raises(pymysql.err.MySQLError, match="renewed its lease"):
        cur.execute("SELECT COUNT(*) FROM mysql.user")
    link.heal()
    wait_until(lambda: global_status(proxy, "Store_proxy_fenced") == "0", "the proxy to lift its fence")


async def _register_silent_proxy(store_url: str, ttl: float) -> float:
    """A proxy that registers and then says nothing (it died, or is cut off): real etcd lease."""
    store = open_store(store_url)
    try:
        await store.register_proxy("silent-proxy", "gone:6033", ttl)
        return time.time()
    finally:
        await store.close()


def test_a_new_master_waits_for_every_registered_proxy(ha: HA, fresh_sandbox: Sandbox) -> None:
    box = fresh_sandbox
    manager = start_manager(ha.keep, ha.workdir, "mgr", ha.store, box)
    wait_until(lambda: is_leader(manager) and cluster(manager)["Phase"] == "stable", "the manager to lead")
    live = start_proxy(ha.keep, ha.workdir, "proxy-live", ha.store, box)
    wait_until(lambda: global_status(live, "Store_proxy_fenced") == "0", "the live proxy to be up to date")
    ttl = 8.0
    registered = asyncio.run(_register_silent_proxy(ha.store, ttl))
    box.kill(0)
    wait_until(lambda: master_of(manager) != box.nodes[0].address and cluster(manager)["Phase"] == "stable",
               "the recovery", timeout=90)
    entries = list(reversed(api(manager.port, "audit", timeout=10)[1]))

    def at(entry: dict[str, str]) -> float:
        return datetime.datetime.fromisoformat(entry["AuditTimestamp"]).timestamp()

    new = master_of(manager)
    waiting = [e for e in entries if "waiting until proxies" in e["Message"]]
    assert waiting and "silent-proxy" in waiting[0]["Message"], [e["Message"] for e in entries]
    assert "proxy-live" not in waiting[-1]["Message"], "the live proxy acknowledged at once"
    [opened] = [e for e in entries if e["Message"] == f"{new}: read_only=OFF"]
    assert at(opened) >= registered + ttl - 1.0, (
        f"the new master was opened {at(opened) - registered:.2f}s after the silent proxy registered "
        f"(lease {ttl:g}s)")
    print(f"new master opened {at(opened) - registered:.2f}s after the silent proxy's last word (lease {ttl:g}s)")
