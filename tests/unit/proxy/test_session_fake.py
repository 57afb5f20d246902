"""Session behaviour against scripted in-memory servers (tests/fake_server.py): multiplexing,
transactions, settings replay, prepared statements across backends, errors mid-result, and the
fast path making the coroutine's choices. No mariadbd: these run in `make unit`."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_server import (
    READER,
    WRITER,
    Answer,
    FakeSetup,
    ServerConnection,
    default_script,
    fake_config,
    fake_proxy,
)
from turnout.config.model import MysqlServer
from turnout.protocol import constants as c
from turnout.proxy.errors import ER_LOST_BACKEND, LOST_ROLLED_BACK, LOST_UNKNOWN_OUTCOME
from turnout.proxy.hostgroups import HostgroupTable
from turnout.proxy.statement import Keep


def kept_reasons(setup: FakeSetup) -> set[str] | None:
    (state,) = setup.proxy.sessions.values()
    return set(state.kept.reasons) if state.kept is not None else None


async def test_reads_multiplex_and_take_the_fast_path() -> None:
    async with fake_proxy(fake_config(readers=1)) as setup:
        client = await setup.client()
        for _ in range(20):
            reply = await client.query("SELECT 1")
            assert reply.rows() == [(b"1",)]
        assert kept_reasons(setup) is None
        assert not setup.writer.queries()
        (reader,) = setup.readers
        assert reader.queries().count("SELECT 1") == 20
        assert len(reader.connections) == 1
        # the first statement logs a connection in (the coroutine); the others take the fast path
        assert setup.proxy.stats.counters.statements_fast_path == 19
        assert sum(p.stats.conn_used for p in setup.proxy.pools.servers.values()) == 0


async def test_a_transaction_keeps_its_connection_and_its_reads_stay_on_the_writer() -> None:
    async with fake_proxy() as setup:
        client = await setup.client()
        assert (await client.query("BEGIN")).status_flags & c.SERVER_STATUS_IN_TRANS
        assert kept_reasons(setup) == {Keep.TRANSACTION}
        await client.query("UPDATE t SET c = 2")
        assert (await client.query("SELECT CONNECTION_ID()")).value() == str(setup.writer.connections[0].thread_id).encode()
        reply = await client.query("COMMIT")
        assert not reply.status_flags & c.SERVER_STATUS_IN_TRANS
        assert kept_reasons(setup) == set()  # held for the next statement's diagnostics only
        assert [len(s.connections) for s in setup.readers] == [0, 0]
        await client.query("SELECT 1")  # reads none: follows the routing, the writer's goes back
        assert kept_reasons(setup) is None
        assert sum(len(s.connections) for s in setup.readers) == 1


async def test_the_next_statement_reads_the_diagnostics_where_they_are() -> None:
    """A: UPDATE (an OK: ROW_COUNT()), B: UPDATE, A: SELECT ROW_COUNT() — A's runs on A's
    connection, held for it, even though its rule sends SELECTs to the readers."""
    async with fake_proxy() as setup:
        a, b = await setup.client(), await setup.client()
        await a.query("UPDATE t SET c = 1")
        await b.query("UPDATE t SET c = 2")
        assert len(setup.writer.connections) == 2  # A's is held: B's needed another
        await a.query("SELECT ROW_COUNT()")
        first, second = setup.writer.connections
        assert first.queries[-2:] == ["UPDATE t SET c = 1", "SELECT ROW_COUNT()"]
        assert second.queries[-1] == "UPDATE t SET c = 2"
        assert not any(r.queries() for r in setup.readers)
        await a.query("SELECT 1")  # a result set without warnings: nothing held after it
        states = {s.id: s for s in setup.proxy.sessions.values()}
        assert states[min(states)].kept is None


async def test_a_user_variable_pins_the_connection() -> None:
    async with fake_proxy() as setup:
        client = await setup.client()
        await client.query("SET @x = 5")
        assert kept_reasons(setup) == {Keep.USER_VARIABLE}
        for _ in range(5):
            assert (await client.query("SELECT @x")).value() == b"5"
        assert not any(r.queries() for r in setup.readers)


async def test_settings_are_replayed_on_each_new_backend_connection() -> None:
    async with fake_proxy(fake_config(readers=1)) as setup:
        first, second = await setup.client(), await setup.client()
        assert (await first.query("SET NAMES latin1")).error is None  # answered by the proxy itself
        assert not any(s.connections for s in setup.all_servers())
        await first.query("SET sql_mode = 'ANSI'")
        await second.query("SELECT 1")  # the reader's connection, set up like `second`
        await first.query("SELECT 1")
        (reader,) = setup.readers
        assert len(reader.connections) == 1  # `second` gave it back; `first` took it, restored
        connection = reader.connections[0]
        assert connection.variables == {"names": "latin1", "sql_mode": "'ANSI'"}
        assert connection.queries[-1] == "SELECT 1"


async def test_a_prepared_statement_is_prepared_again_on_another_backend() -> None:
    async with fake_proxy() as setup:
        client = await setup.client()
        statement = await client.prepare("SELECT c FROM t WHERE id = 1")
        prepared_on = [r for r in setup.readers if any(c.COM_STMT_PREPARE in x.commands for x in r.connections)]
        assert len(prepared_on) == 1
        assert (await client.execute(statement)).rows() == [(b"1",)]
        other = next(r for r in setup.readers if r is not prepared_on[0])
        routing = setup.proxy.routing
        setup.proxy.apply_routing(HostgroupTable.build(
            [s for members in routing.by_hostgroup.values() for s in members if s.address != prepared_on[0].address]
        ))
        assert (await client.execute(statement)).rows() == [(b"1",)]
        assert [x.commands.count(c.COM_STMT_PREPARE) for x in other.connections] == [1]
        assert [x.commands.count(c.COM_STMT_EXECUTE) for x in other.connections] == [1]


async def test_a_backend_lost_before_its_answer_is_an_error_and_the_session_goes_on() -> None:
    """A write lost before its answer: it may have been applied, so it is not run again; the
    client hears ER_LOST_BACKEND (1927) saying so."""
    async with fake_proxy(fake_config(readers=1)) as setup:
        writer = setup.writer
        writer.script = lambda connection, sql: None if sql == "UPDATE t SET c = 'boom'" else default_script(connection, sql)
        client = await setup.client()
        reply = await client.query("UPDATE t SET c = 'boom'")
        assert reply.error is not None and reply.error.code == ER_LOST_BACKEND
        assert reply.error.message == LOST_UNKNOWN_OUTCOME
        setup.proxy.backends._failed_until.clear()  # the backoff after a failure: not what this tests
        assert (await client.query("SELECT 1")).rows() == [(b"1",)]
        assert setup.proxy.stats.counters.statements_retried == 0


@pytest.mark.parametrize("fast_path", [True, False])
async def test_a_read_lost_before_its_answer_runs_again(fast_path: bool) -> None:
    async with fake_proxy(fake_config(readers=2)) as setup:
        setup.proxy.fast_path = fast_path
        failed: list[ServerConnection] = []

        def fail_once(connection: ServerConnection, sql: str) -> Answer:
            if sql == "SELECT 'boom'" and not failed:
                failed.append(connection)
                return None
            return default_script(connection, sql)

        for reader in setup.readers:
            reader.script = fail_once
        client = await setup.client()
        assert (await client.query("SELECT 1")).rows() == [(b"1",)]  # a pooled connection for the fast path
        retried = (await client.query("SELECT 'boom'")).rows()
        assert len(failed) == 1
        assert retried == (await client.query("SELECT 'boom'")).rows()  # what a server answers
        assert setup.proxy.stats.counters.statements_retried == 1


async def test_a_read_lost_in_a_transaction_is_not_run_again() -> None:
    async with fake_proxy(fake_config(readers=1, rules=False)) as setup:
        for server in setup.all_servers():
            server.script = lambda connection, sql: None if sql == "SELECT 'boom'" else default_script(connection, sql)
        client = await setup.client()
        assert (await client.query("BEGIN")).error is None
        reply = await client.query("SELECT 'boom'")
        assert reply.error is not None and reply.error.code == ER_LOST_BACKEND
        assert reply.error.message == LOST_ROLLED_BACK
        assert setup.proxy.stats.counters.statements_retried == 0


async def test_a_backend_lost_mid_result_closes_the_client() -> None:
    async with fake_proxy(fake_config(readers=1)) as setup:
        (reader,) = setup.readers

        def half_a_result(connection: ServerConnection, sql: str) -> bytes | None:
            if sql != "SELECT 1":
                return default_script(connection, sql)
            whole = connection.rows(["c"], [[1], [2]])
            connection.channel.write(whole[: len(whole) // 2])
            return None

        reader.script = half_a_result
        client = await setup.client()
        client.channel.write(b"\x09\x00\x00\x00\x03SELECT 1")
        data = b""
        while chunk := await client.channel.read():
            data += chunk
        assert data and client.closed()
        await asyncio.sleep(0)
        assert not setup.proxy.sessions
        assert sum(p.stats.conn_used for p in setup.proxy.pools.servers.values()) == 0


async def test_a_connection_ending_error_is_never_reused() -> None:
    async with fake_proxy(fake_config(readers=1)) as setup:
        (reader,) = setup.readers
        reader.script = lambda connection, sql: (
            connection.error(1927, "Connection was killed") if sql == "SELECT 'killed'" else connection.rows(["c"], [[1]])
        )
        client = await setup.client()
        await client.query("SELECT 1")
        assert (await client.query("SELECT 'killed'")).error.code == 1927  # type: ignore[union-attr]
        await client.query("SELECT 1")
        assert len(reader.connections) == 2


async def test_writes_to_a_hostgroup_with_two_writers_are_refused_on_both_paths() -> None:
    async with fake_proxy() as setup:
        client = await setup.client()
        servers = [s for members in setup.proxy.routing.by_hostgroup.values() for s in members]
        setup.proxy.apply_routing(HostgroupTable.build(servers, {WRITER: "two writers"}))
        reply = await client.query("INSERT INTO t VALUES (1)")
        assert reply.error is not None and reply.error.code == c.ER_OPTION_PREVENTS_STATEMENT
        assert (await client.query("SELECT 1")).error is None
        assert setup.proxy.stats.counters.statements_refused_two_writers == 1


# ---- the fast path makes the coroutine's choices ------------------------------------------------------
STATEMENTS = [
    "SELECT 1", "SELECT CONNECTION_ID()", "SELECT c FROM t FOR UPDATE", "INSERT INTO t VALUES (1)",
    "BEGIN", "COMMIT", "ROLLBACK", "SET @x = 1", "SELECT @x", "SET NAMES latin1", "SET sql_mode = 'ANSI'",
    "UPDATE t SET c = 2", "SELECT LAST_INSERT_ID()",
]


async def _run(statements: list[str], fast_path: bool) -> list[tuple[object, ...]]:
    config = fake_config(readers=1, **{"mysql-auto_increment_delay_multiplex": "2"})
    async with fake_proxy(config) as setup:
        setup.proxy.fast_path = fast_path
        client = await setup.client()
        seen: list[tuple[object, ...]] = []
        for sql in statements:
            reply = await client.query(sql)
            where = [(s.address, x.thread_id) for s in setup.all_servers() for x in s.connections if x.queries and x.queries[-1] == sql]
            (state,) = setup.proxy.sessions.values()
            seen.append((
                sql, reply.error.code if reply.error else None, reply.status_flags, reply.data,
                where[-1] if where else None,
                tuple(sorted(state.kept.reasons)) if state.kept else None,
                state.delay_multiplex,
            ))
            for server in setup.all_servers():
                for connection in server.connections:
                    connection.queries.clear()
        return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(STATEMENTS), min_size=1, max_size=12))
def test_the_fast_path_makes_the_coroutines_choices(statements: list[str]) -> None:
    """The same statements, with the fast path and without: the same server and connection for
    each, the same answers, the same connection kept for the same reasons."""
    with_fast_path = asyncio.run(_run(statements, True))
    coroutine_only = asyncio.run(_run(statements, False))
    assert with_fast_path == coroutine_only


async def test_a_statement_waits_for_a_writer_and_runs_when_one_comes() -> None:
    async with fake_proxy(fake_config(**{"mysql-connect_timeout_server_max": "5000"})) as setup:
        client = await setup.client()
        readers = [s for s in setup.proxy.routing.online(READER)]
        setup.proxy.apply_routing(HostgroupTable.build(readers))
        pending = asyncio.ensure_future(client.query("INSERT INTO t VALUES (1)"))
        await asyncio.sleep(0.1)
        assert not pending.done()
        setup.proxy.apply_routing(HostgroupTable.build([*readers, MysqlServer(WRITER, "10.0.0.1", 3306)]))
        assert (await pending).error is None
        assert setup.writer.queries()[-1] == "INSERT INTO t VALUES (1)"


async def test_an_idle_session_is_past_its_own_wait_timeout_and_a_busy_one_never() -> None:
    async with fake_proxy(fake_config(**{"mysql-wait_timeout": "600000"})) as setup:
        client = await setup.client()
        await client.query("SELECT 1")
        (state,) = setup.proxy.sessions.values()
        now = state.idle_since
        assert not state.idle_too_long(now + 599) and state.idle_too_long(now + 601)  # mysql-wait_timeout
        await client.query("SET SESSION wait_timeout = 2")
        now = state.idle_since
        assert not state.idle_too_long(now + 1.5) and state.idle_too_long(now + 2.5)
        state.current_command = "Query"  # a command in progress
        assert not state.idle_too_long(now + 1000)


async def test_a_session_that_ends_holding_state_gives_its_connection_back_reset() -> None:
    """A user variable pins the writer's connection; when the session ends the connection is
    reset (COM_RESET_CONNECTION) and pooled: the next session reuses it, without the variable."""
    async with fake_proxy() as setup:
        first = await setup.client()
        await first.query("SET @x = 5")
        await first.query("BEGIN")
        first.close()
        pool = setup.proxy.pools.servers[setup.writer.address]
        for _ in range(200):  # the reset runs in the background
            if pool.stats.conn_free:
                break
            await asyncio.sleep(0.01)
        (connection,) = setup.writer.connections
        assert connection.commands[-1] == c.COM_RESET_CONNECTION and pool.stats.conn_free == 1
        second = await setup.client()
        await second.query("UPDATE t SET c = 1")
        assert len(setup.writer.connections) == 1  # reused, not opened again
        assert connection.queries[-1] == "UPDATE t SET c = 1" and not connection.user_variables
        assert not connection.in_transaction
