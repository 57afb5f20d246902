"""Stats tables of several processes merged as one process would have counted."""

from __future__ import annotations

from turnout.proxy.stats_merge import merge_stats


def test_global_variables_add_up_and_uptime_is_the_longest() -> None:
    control = [{"Variable_Name": "Questions", "Variable_Value": "10"}, {"Variable_Name": "ProxySQL_Uptime", "Variable_Value": "50"}]
    worker = [{"Variable_Name": "Questions", "Variable_Value": "5"}, {"Variable_Name": "ProxySQL_Uptime", "Variable_Value": "49"}]
    merged = {r["Variable_Name"]: r["Variable_Value"] for r in merge_stats("stats_mysql_global", [control, worker])}
    assert merged == {"Questions": "15", "ProxySQL_Uptime": "50"}


def test_connection_pools_of_the_same_server_add_up() -> None:
    def pool(used: int, queries: int, status: str, latency: int) -> dict[str, object]:
        return {"hostgroup": 20, "srv_host": "127.0.0.1", "srv_port": 3307, "status": status,
                "ConnUsed": used, "Queries": queries, "Latency_us": latency}

    other = {"hostgroup": 10, "srv_host": "127.0.0.1", "srv_port": 3306, "status": "ONLINE",
             "ConnUsed": 1, "Queries": 7, "Latency_us": 90}
    merged = merge_stats("stats_mysql_connection_pool", [[pool(2, 100, "ONLINE", 300), other], [pool(3, 50, "", 500)]])
    by_port = {r["srv_port"]: r for r in merged}
    assert by_port[3307] == pool(5, 150, "ONLINE", 500)
    assert by_port[3306] == other


def test_digests_keep_the_extremes_and_add_the_rest() -> None:
    def digest(count: int, first: int, last: int, low: int, high: int) -> dict[str, object]:
        return {"hostgroup": 20, "schemaname": "s", "username": "app", "client_address": "", "digest": "0x1",
                "digest_text": "SELECT ?", "count_star": count, "first_seen": first, "last_seen": last,
                "sum_time": count * 10, "min_time": low, "max_time": high, "sum_rows_affected": 0, "sum_rows_sent": count}

    merged = merge_stats("stats_mysql_query_digest_reset", [[digest(3, 100, 200, 5, 50)], [digest(2, 90, 150, 7, 80)]])
    assert merged == [digest(5, 90, 200, 5, 80)]


def test_commands_add_up_and_processlists_are_concatenated() -> None:
    a = [{"Command": "SELECT", "Total_cnt": 4, "Total_Time_us": 40}]
    b = [{"Command": "SELECT", "Total_cnt": 1, "Total_Time_us": 9}, {"Command": "INSERT", "Total_cnt": 2, "Total_Time_us": 5}]
    merged = {r["Command"]: r for r in merge_stats("stats_mysql_commands_counters", [a, b])}
    assert merged["SELECT"] == {"Command": "SELECT", "Total_cnt": 5, "Total_Time_us": 49}
    assert merged["INSERT"]["Total_cnt"] == 2
    sessions = merge_stats("stats_mysql_processlist", [[{"SessionID": 1}], [{"SessionID": 100_000_001}]])
    assert [s["SessionID"] for s in sessions] == [1, 100_000_001]
