"""The stats tables' rows as ProxySQL shows them: pure functions over the proxy's counters."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from turnout.proxy.stats import COMMANDS, ProxyStats, connection_pool_rows, reset_pool

MASTER = ("10.0.0.1", 3306)
REPLICA = ("10.0.0.2", 3306)


@dataclass
class Counters:
    conn_used: int = 0
    conn_free: int = 0
    conn_ok: int = 0
    conn_err: int = 0
    max_conn_used: int = 0
    queries: int = 0
    bytes_sent: int = 0
    bytes_recv: int = 0


def test_a_row_per_hostgroup_and_server_with_queries_where_routed() -> None:
    pools = {MASTER: Counters(2, 3, 5, 1, 4, 9, 100, 200), REPLICA: Counters(1, 1, 2, 0, 2, 7, 10, 20)}
    rows = connection_pool_rows(
        pools,
        routed={10: [MASTER], 20: [MASTER, REPLICA]},
        configured=[(10, MASTER, "ONLINE"), (20, REPLICA, "ONLINE")],
        writer_hostgroups=[10],
        server_queries={(10, MASTER): 6, (20, MASTER): 3, (20, REPLICA): 7},
    )
    by_key = {(r["hostgroup"], (r["srv_host"], r["srv_port"])): r for r in rows}
    assert set(by_key) == {(10, MASTER), (20, MASTER), (20, REPLICA)}
    assert by_key[(10, MASTER)]["Queries"] == 6 and by_key[(20, MASTER)]["Queries"] == 3
    # the master's connections are on its writer hostgroup's row, zero on its reader row
    assert (by_key[(10, MASTER)]["ConnUsed"], by_key[(10, MASTER)]["ConnOK"], by_key[(10, MASTER)]["Bytes_data_recv"]) \
        == (2, 5, 200)
    assert (by_key[(20, MASTER)]["ConnUsed"], by_key[(20, MASTER)]["ConnOK"]) == (0, 0)
    assert by_key[(20, REPLICA)]["ConnFree"] == 1
    assert all(r["status"] == "ONLINE" for r in rows)


def test_a_server_out_of_its_hostgroup_shows_shunned_or_its_offline_status_there() -> None:
    third = ("10.0.0.3", 3306)
    rows = connection_pool_rows(
        {}, routed={20: [REPLICA]},
        configured=[(10, MASTER, "ONLINE"), (20, REPLICA, "ONLINE"), (20, third, "OFFLINE_SOFT")],
        writer_hostgroups=[10], server_queries={},
    )
    assert {(r["hostgroup"], r["srv_host"], r["status"]) for r in rows} == {
        (10, MASTER[0], "SHUNNED"), (20, REPLICA[0], "ONLINE"), (20, third[0], "OFFLINE_SOFT")
    }


counters = st.builds(Counters, *[st.integers(0, 1000)] * 8)
addresses = st.sampled_from([MASTER, REPLICA, ("10.0.0.3", 3306)])
hostgroups = st.sampled_from([10, 20, 30])


@given(
    st.dictionaries(addresses, counters),
    st.dictionaries(hostgroups, st.lists(addresses, unique=True)),
    st.lists(st.tuples(hostgroups, addresses, st.sampled_from(["ONLINE", "OFFLINE_SOFT"]))),
    st.dictionaries(st.tuples(hostgroups, addresses), st.integers(0, 1000)),
)
def test_sums_over_the_table_are_the_pools_and_the_queries(
    pools: dict[tuple[str, int], Counters],
    routed: dict[int, list[tuple[str, int]]],
    configured: list[tuple[int, tuple[str, int], str]],
    queries: dict[tuple[int, tuple[str, int]], int],
) -> None:
    rows = connection_pool_rows(pools, routed, configured, [10], queries)
    keys = [(r["hostgroup"], r["srv_host"], r["srv_port"]) for r in rows]
    assert len(keys) == len(set(keys))  # one row per (hostgroup, server)
    for column, attribute in (("ConnUsed", "conn_used"), ("ConnOK", "conn_ok"), ("Bytes_data_sent", "bytes_sent")):
        assert sum(int(str(r[column])) for r in rows) == sum(getattr(c, attribute) for c in pools.values())
    assert sum(int(str(r["Queries"])) for r in rows) == sum(queries.values())
    assert {(r["srv_host"], r["srv_port"]) for r in rows} >= set(pools)


def test_reset_zeroes_what_proxysql_zeroes() -> None:
    pool = Counters(2, 3, 5, 1, 4, 9, 100, 200)
    reset_pool(pool)
    assert pool == Counters(conn_used=2, conn_free=3)  # connections in use or idle stay


def test_commands_counters_list_every_command() -> None:
    stats = ProxyStats()
    stats.record("SELECT", 10, "s", "u", "SELECT ?", 250, 0)
    rows = {row[0]: row for row in stats.command_rows()}
    assert list(rows) == list(COMMANDS)
    assert rows["SELECT"][1:4] == (250, 1, 0) and rows["SELECT"][4] == 1  # 250 us: the 500us bucket
    assert rows["DROP_VIEW"][1:] == (0,) * 14


def test_errors_count_per_server_user_schema_and_code() -> None:
    stats = ProxyStats()
    key = (10, "10.0.0.1", 3306, "app", "shop", 1146)
    stats.count_error(key, "Table 'shop.x' doesn't exist")
    stats.count_error(key, "Table 'shop.y' doesn't exist")
    (row,) = stats.error_rows()
    assert (row["hostgroup"], row["errno"], row["count_star"], row["last_error"]) == (
        10, 1146, 2, "Table 'shop.y' doesn't exist"
    )
    stats.count_rule_hits((1, 2))
    stats.count_rule_hits((1,))
    assert stats.rule_hits == {1: 2, 2: 1}


def test_commands_stats_and_query_digests_can_be_switched_off() -> None:
    stats = ProxyStats()
    stats.commands_enabled = stats.digests_enabled = False
    stats.record("SELECT", 10, "s", "u", "SELECT ?", 250, 0)
    assert stats.counters.questions == 1 and not stats.commands and not stats.digests
    stats.commands_enabled = True
    stats.record("SELECT", 10, "s", "u", "SELECT ?", 250, 0)
    assert stats.commands["SELECT"].total == 1 and not stats.digests
