"""Clients and servers that leave at awkward moments: no session may end in an exception, and
the proxy's bookkeeping settles."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from driver_harness import RawClient, outcome, single_config, wait_until
from proxy_harness import RunningProxy
from turnout.protocol import constants as c
from turnout.sandbox.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def _sessions(running: RunningProxy) -> int:
    return running.call(lambda: len(running.proxy.sessions))


def test_client_leaves_with_an_unread_multi_statement_result(single: RunningProxy) -> None:
    for i in range(30):
        raw = RawClient(single.port, c.DEFAULT_CLIENT_CAPABILITIES | c.CLIENT_MULTI_STATEMENTS)
        raw.send_query(f"DROP TABLE IF EXISTS drv.gone_a{i}; DROP TABLE IF EXISTS drv.gone_b{i}; SELECT {i}")
        raw.close()
    wait_until(lambda: _sessions(single) == 0, "every session to end")
    # the fixture no_session_crash fails the test if any session ended in an exception
    conn = single.connect()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == ((1,),)


def test_held_backend_connection_killed_by_the_server(drv_schema: Sandbox, single: RunningProxy) -> None:
    conn = single.connect()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("UPDATE drv.t SET v = v + 1 WHERE id = 1")

    def held_thread() -> int:
        session = next(iter(single.proxy.sessions.values()))
        assert session.kept is not None
        return session.kept.connection.thread_id

    drv_schema.execute(0, f"KILL {single.call(held_thread)}")

    def statement() -> object:
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM drv.t WHERE id = 1")
            return cur.fetchall()

    # the transaction is gone with its connection: the client hears it as an error, not as a
    # connection the proxy dropped
    assert outcome(statement)[0] == "error"
    assert outcome(statement) == ((10,),)
    conn.close()
    wait_until(lambda: _sessions(single) == 0, "the session to end")



def test_a_failed_session_leaves_nothing_behind_for_the_next(
    drv_schema: Sandbox, start_proxy: Callable[..., RunningProxy], caplog: pytest.LogCaptureFixture
) -> None:
    """A session that ends in an unexpected exception is logged once; the exception does not
    become the context of every later session's (compiled, it did: the chain, with every
    session's frames, grew for the life of the process)."""
    running = start_proxy(single_config(drv_schema))
    caplog.set_level(logging.ERROR, logger="turnout.proxy")
    failures = iter(range(1000))

    def injected(address: object) -> None:  # the proxy's hook for backend errors, failing
        raise RuntimeError(f"injected failure {next(failures)}")

    running.call(lambda: setattr(running.proxy.backends, "on_backend_error", injected))
    for _ in range(3):
        conn = running.connect()
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("UPDATE drv.t SET v = v WHERE id = 1")
        thread_id = running.call(lambda: next(iter(running.proxy.sessions.values())).kept.connection.thread_id)
        drv_schema.execute(0, f"KILL {thread_id}")
        outcome(conn.cursor().execute, "SELECT 1")
        wait_until(lambda: _sessions(running) == 0, "the failed session to end")
        conn.close()
    logged = [record for record in caplog.records if record.getMessage().endswith("failed")]
    assert len(logged) == 3
    for record in logged:
        assert record.exc_info is not None
        assert logging.Formatter().formatException(record.exc_info).count("RuntimeError: injected failure") == 1
