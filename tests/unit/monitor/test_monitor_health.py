"""Health data, change detection, settings, log tables and parsing of SHOW SLAVE STATUS."""

from __future__ import annotations

import dataclasses
import time
from types import MappingProxyType

import pytest

from turnout.config.model import RuntimeConfig
from turnout.monitor.health import (
    HealthSnapshot,
    ReplicationStatus,
    ServerHealth,
    applied_gtids,
    routing_changed,
)
from turnout.monitor.logs import LOG_COLUMNS, PING_LOG, READ_ONLY_LOG, MonitorLog
from turnout.monitor.probes import replication_status
from turnout.monitor.settings import MonitorSettings

A = ("127.0.0.1", 3306)
RUNNING = ReplicationStatus(configured=True, io_running="Yes", sql_running="Yes", seconds_behind_master=0)


@pytest.mark.parametrize(
    ("status", "replicating", "reason"),
    [
        (ReplicationStatus(configured=False), False, "no replication configured"),
        (RUNNING, True, None),
        (dataclasses.replace(RUNNING, sql_running="No"), False, "SQL thread stopped"),
        (dataclasses.replace(RUNNING, io_running="No"), False, "IO thread stopped"),
        (dataclasses.replace(RUNNING, io_running="Connecting"), False, "IO thread connecting"),
        (
            dataclasses.replace(RUNNING, io_running="No", sql_running="No"),
            False,
            "IO thread stopped, SQL thread stopped",
        ),
        (
            dataclasses.replace(RUNNING, sql_running="No", last_sql_error="boom"),
            False,
            "SQL thread stopped, error: boom",
        ),
        (dataclasses.replace(RUNNING, last_io_error="old error"), True, None),
    ],
)
def test_replication_status(status: ReplicationStatus, replicating: bool, reason: str | None) -> None:
    assert status.replicating is replicating
    assert status.not_replicating_reason() == reason


BASE = ServerHealth(A, connect_ok=True, ping_ok=True, read_only=True, replication=RUNNING)


@pytest.mark.parametrize(
    ("change", "relevant"),
    [
        ({"read_only": False}, True),
        ({"connect_ok": False}, True),
        ({"ping_failures": 1}, True),
        ({"read_only_failures": 1}, True),
        ({"replication_failures": 1}, True),
        ({"replication": dataclasses.replace(RUNNING, seconds_behind_master=3)}, True),
        ({"replication": dataclasses.replace(RUNNING, seconds_behind_master=None)}, True),
        ({"replication": dataclasses.replace(RUNNING, sql_running="No")}, True),
        ({"replication": dataclasses.replace(RUNNING, master_port=3307)}, True),
        ({"replication": None}, True),
        ({"replication": dataclasses.replace(RUNNING, gtid_slave_pos="0-1-99")}, False),
        ({"ping_time_us": 999, "connect_time_us": 5}, False),
        ({"checked_at": 123.0}, False),
        ({"ping_error": "x", "read_only_error": "y"}, False),
    ],
)
def test_routing_changed(change: dict[str, object], relevant: bool) -> None:
    assert routing_changed(BASE, dataclasses.replace(BASE, **change)) is relevant  # type: ignore[arg-type]


def test_routing_changed_for_a_new_server() -> None:
    assert routing_changed(None, BASE)


def test_snapshot_replace_and_without_are_new_values() -> None:
    first = HealthSnapshot()
    second = first.replace(BASE)
    assert first.servers == {} and second.get(A) == BASE and second.version == 1
    third = second.without(frozenset({A}))
    assert third.get(A) is None and third.version == 2 and second.get(A) == BASE
    with pytest.raises(TypeError):
        second.servers[A] = BASE  # type: ignore[index]


def test_settings_defaults_are_proxysqls() -> None:
    s = MonitorSettings.from_config(RuntimeConfig())
    assert (s.username, s.password) == ("monitor", "monitor")
    assert (s.connect_interval_ms, s.connect_timeout_ms) == (120000, 600)  # ProxySQL 2.7's
    assert (s.ping_interval_ms, s.ping_timeout_ms, s.ping_max_failures) == (8000, 1000, 3)
    assert (s.read_only_interval_ms, s.read_only_timeout_ms, s.read_only_max_timeout_count) == (1000, 800, 3)
    assert (s.replication_lag_interval_ms, s.replication_lag_timeout_ms) == (10000, 1000)
    assert s.writer_is_also_reader is True and s.enabled is True
    assert s.slave_lag_when_null == 60 and s.history_ms == 7200000


@pytest.mark.parametrize(
    ("variables", "attribute", "value"),
    [
        ({"mysql-monitor_read_only_interval": "200"}, "read_only_interval_ms", 200),
        ({"monitor-read_only_interval": "300"}, "read_only_interval_ms", 300),
        (
            {"mysql-monitor_read_only_interval": "200", "monitor-read_only_interval": "300"},
            "read_only_interval_ms",
            200,
        ),
        ({"mysql-monitor_ping_interval": "abc"}, "ping_interval_ms", 8000),
        ({"mysql-monitor_ping_interval": "0"}, "ping_interval_ms", 1),
        ({"mysql-monitor_username": "mon"}, "username", "mon"),
        ({"mysql-monitor_writer_is_also_reader": "false"}, "writer_is_also_reader", False),
        ({"mysql-monitor_writer_is_also_reader": "1"}, "writer_is_also_reader", True),
        ({"mysql-monitor_enabled": "false"}, "enabled", False),
    ],
)
def test_settings_from_variables(variables: dict[str, str], attribute: str, value: object) -> None:
    config = RuntimeConfig(variables=MappingProxyType(variables))
    assert getattr(MonitorSettings.from_config(config), attribute) == value


def now_us() -> int:
    return time.time_ns() // 1000


def test_log_is_bounded_and_keeps_the_newest() -> None:
    log = MonitorLog(max_rows=3)
    for i in range(5):
        log.add(PING_LOG, ("h", i, now_us(), 10, None))
    assert [r[1] for r in log.rows(PING_LOG)] == [2, 3, 4]
    assert log.rows(READ_ONLY_LOG) == []


def test_log_drops_rows_older_than_the_history() -> None:
    log = MonitorLog(history_ms=1000)
    log.add(PING_LOG, ("h", 1, now_us() - 5_000_000, 10, None))
    log.add(PING_LOG, ("h", 2, now_us(), 10, None))
    assert [r[1] for r in log.rows(PING_LOG)] == [2]


def test_log_rejects_unknown_tables_and_wrong_rows() -> None:
    log = MonitorLog()
    with pytest.raises(KeyError):
        log.rows("mysql_server_nothing_log")
    with pytest.raises(ValueError):
        log.add(READ_ONLY_LOG, ("h", 1, now_us(), 10, None))
    assert set(LOG_COLUMNS) == {
        "mysql_server_connect_log",
        "mysql_server_ping_log",
        "mysql_server_read_only_log",
        "mysql_server_replication_lag_log",
    }


MARIADB_ROW = {
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "No",
    "Last_IO_Error": "",
    "Last_SQL_Error": "Error 'Duplicate entry'",
    "Seconds_Behind_Master": None,
    "Master_Host": "127.0.0.1",
    "Master_Port": 3306,
    "Gtid_IO_Pos": "0-1-12",
}
MYSQL_ROW = {
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Seconds_Behind_Master": 4,
    "Master_Host": "db1",
    "Master_Port": 3307,
    "Retrieved_Gtid_Set": "uuid:1-12",
    "Executed_Gtid_Set": "uuid:1-10",
}


def test_replication_status_from_mariadb() -> None:
    status = replication_status(MARIADB_ROW, {"gtid_current_pos": "0-1-11", "gtid_slave_pos": "0-1-11"})
    assert status == ReplicationStatus(
        configured=True,
        io_running="Yes",
        sql_running="No",
        last_sql_error="Error 'Duplicate entry'",
        seconds_behind_master=None,
        master_host="127.0.0.1",
        master_port=3306,
        gtid_io_pos="0-1-12",
        gtid_slave_pos="0-1-11",
        gtid_current_pos="0-1-11",
    )
    assert status.master == ("127.0.0.1", 3306)


def test_replication_status_from_mysql() -> None:
    status = replication_status(MYSQL_ROW, {"gtid_executed": "uuid:1-10"})
    assert (status.seconds_behind_master, status.master, status.gtid_io_pos) == (
        4,
        ("db1", 3307),
        "uuid:1-12",
    )
    assert (status.gtid_slave_pos, status.gtid_current_pos) == ("uuid:1-10", "uuid:1-10")


def test_replication_status_of_a_server_that_is_no_replica() -> None:
    status = replication_status(None, {"gtid_current_pos": "0-1-5"})
    assert not status.configured and status.master is None and status.gtid_current_pos == "0-1-5"


def test_applied_gtids_are_a_replicas_sql_thread_position_or_a_masters_own() -> None:
    replica = ServerHealth(A, replication=dataclasses.replace(
        RUNNING, gtid_io_pos="0-1-20", gtid_slave_pos="0-1-12", gtid_current_pos="0-1-12,1-2-3"
    ))
    master = ServerHealth(("127.0.0.1", 3307), replication=ReplicationStatus(configured=False, gtid_current_pos="0-1-20"))
    unread = ServerHealth(("127.0.0.1", 3308))
    empty = ServerHealth(("127.0.0.1", 3309), replication=dataclasses.replace(RUNNING, gtid_current_pos="0-1-4"))
    health = HealthSnapshot(1, MappingProxyType({h.address: h for h in (replica, master, unread, empty)}))
    # what the IO thread received is not applied; a replica's own writes are not its master's
    assert applied_gtids(health) == {A: "0-1-12", ("127.0.0.1", 3307): "0-1-20"}
