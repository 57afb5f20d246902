"""Flavours: the exact SQL each one issues, parsing of status rows, and GTID arithmetic."""

from __future__ import annotations

import pytest

from turnout.topology.flavors import (
    BinlogFilePos,
    MariaDBGtid,
    MySQLGtid,
    detect_flavor,
    flavor_for,
    sql_string,
)
from turnout.topology.gtid import MariaGtidList, MysqlGtidSet
from turnout.topology.model import Instance, make_key, split_key

UUID_A = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
UUID_B = "4f22fa47-71ca-11e1-9e33-c80aa9429562"


def test_mariadb_gtid_lists() -> None:
    pos = MariaGtidList.parse("0-1-10, 1-2-5")
    assert str(pos) == "0-1-10,1-2-5"
    assert pos.transactions == 15
    assert pos.covers(MariaGtidList.parse("0-1-9"))
    assert not pos.covers(MariaGtidList.parse("0-1-11"))
    assert not pos.covers(MariaGtidList.parse("2-1-1"))
    assert pos.covers(MariaGtidList.parse(""))
    assert pos.ahead_of(MariaGtidList.parse("0-1-10")) == ["1-2-5"]
    assert MariaGtidList.parse(None).transactions == 0
    with pytest.raises(ValueError, match="not a MariaDB GTID"):
        MariaGtidList.parse("0-1")


def test_mysql_gtid_sets() -> None:
    executed = MysqlGtidSet.parse(f"{UUID_A}:1-5:7-9,\n{UUID_B}:1-3")
    assert executed.transactions == 11
    assert str(executed) == f"{UUID_A}:1-5:7-9,{UUID_B}:1-3"
    assert MysqlGtidSet.parse(f"{UUID_A}:1-3:4-5").sets == ((UUID_A, ((1, 5),)),)
    master = MysqlGtidSet.parse(f"{UUID_A}:1-9")
    assert str(executed.subtract(master)) == f"{UUID_B}:1-3"
    assert str(master.subtract(executed)) == f"{UUID_A}:6"
    assert not executed.covers(master)
    assert executed.covers(MysqlGtidSet.parse(f"{UUID_A}:2-4"))
    assert MysqlGtidSet.parse("").transactions == 0
    with pytest.raises(ValueError):
        MysqlGtidSet.parse(UUID_A)


def test_keys() -> None:
    assert make_key("db1", 3306) == "db1:3306"
    assert split_key("db1:3306") == ("db1", 3306)
    for bad in ("db1", "db1:", ":3306", "db1:x"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            split_key(bad)


def test_sql_string_escapes() -> None:
    assert sql_string("it's") == "'it\\'s'"
    assert sql_string("a\\b") == "'a\\\\b'"


def test_mariadb_sql() -> None:
    f = MariaDBGtid()
    assert f.change_master("10.0.0.2", 3306, "repl", "p'w") == [
        "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', "
        "MASTER_PASSWORD='p\\'w', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"
    ]
    assert "MASTER_USE_GTID=current_pos" in f.change_master("h", 1, "u", "p", former_master=True)[0]
    assert (f.start_replica(), f.stop_replica(), f.stop_io_thread(), f.reset_replica_all()) == (
        "START SLAVE", "STOP SLAVE", "STOP SLAVE IO_THREAD", "RESET SLAVE ALL"
    )
    assert f.set_read_only(True) == ["SET GLOBAL read_only = ON"]
    assert f.semi_sync(True, False) == [
        "SET GLOBAL rpl_semi_sync_master_enabled = ON", "SET GLOBAL rpl_semi_sync_slave_enabled = OFF"
    ]
    assert f.wait_applied("0-1-10", 2.5) == "SELECT MASTER_GTID_WAIT('0-1-10', 2.5) AS reached"
    assert f.wait_succeeded(0) and not f.wait_succeeded(-1) and not f.wait_succeeded(None)


def test_mysql_sql() -> None:
    f = MySQLGtid()
    assert f.change_master("10.0.0.2", 3306, "repl", "pw", heartbeat=0.5) == [
        "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, SOURCE_USER='repl', "
        "SOURCE_PASSWORD='pw', SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=0.5, "
        "GET_SOURCE_PUBLIC_KEY=1"
    ]
    assert (f.start_replica(), f.stop_replica(), f.stop_io_thread(), f.reset_replica_all()) == (
        "START REPLICA", "STOP REPLICA", "STOP REPLICA IO_THREAD", "RESET REPLICA ALL"
    )
    assert f.set_read_only(True) == ["SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = ON"]
    assert f.set_read_only(False) == ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]
    assert f.semi_sync(False, True) == [
        "SET GLOBAL rpl_semi_sync_source_enabled = OFF", "SET GLOBAL rpl_semi_sync_replica_enabled = ON"
    ]
    assert f.wait_applied(f"{UUID_A}:1-5", 3) == f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{UUID_A}:1-5', 3) AS reached"
    assert f.wait_succeeded(0) and not f.wait_succeeded(1)


def test_binlog_sql() -> None:
    f = BinlogFilePos()
    with pytest.raises(ValueError, match="file and position"):
        f.change_master("h", 1, "u", "p")
    assert f.change_master("h", 1, "u", "p", position=("bin.000003", 1234)) == [
        "CHANGE MASTER TO MASTER_HOST='h', MASTER_PORT=1, MASTER_USER='u', MASTER_PASSWORD='p', "
        "MASTER_LOG_FILE='bin.000003', MASTER_LOG_POS=1234, MASTER_USE_GTID=no, MASTER_CONNECT_RETRY=1, "
        "MASTER_HEARTBEAT_PERIOD=1"
    ]
    assert f.wait_applied("bin.000003:1234", 5) == "SELECT MASTER_POS_WAIT('bin.000003', 1234, 5) AS reached"
    assert f.wait_succeeded(0) and f.wait_succeeded(3) and not f.wait_succeeded(-1)
    replica = Instance("r", 1, master_host="m", master_port=1, master_log_file="bin.000003", read_master_log_pos=900,
                       relay_master_log_file="bin.000002", exec_master_log_pos=5000)
    assert f.progress(replica, received=True) == (3, 900)
    assert f.progress(replica, received=False) == (2, 5000)
    assert f.covers(replica, "bin.000002:4000") and not f.covers(replica, "bin.000003:1")
    assert f.relay_position(replica) == "bin.000003:900"
    assert not f.uses_gtid


MYSQL_ROWS = {
    "variables": [{"server_id": 2, "version": "8.0.36", "read_only": 1, "super_read_only": 1,
                   "gtid_executed": f"{UUID_A}:1-100,\n{UUID_B}:1-2", "replica_net_timeout": 4}],
    "replica": [{"Channel_Name": "", "Source_Host": "db1", "Source_Port": 3306, "Replica_IO_Running": "Connecting",
                 "Replica_SQL_Running": "Yes", "Last_IO_Errno": 2003, "Last_IO_Error": "can't connect",
                 "Last_SQL_Errno": 0, "Last_SQL_Error": "", "Seconds_Behind_Source": None, "SQL_Delay": 0,
                 "Auto_Position": 1, "Retrieved_Gtid_Set": f"{UUID_A}:50-110", "Connect_Retry": 1,
                 "Source_Log_File": "b.000002", "Read_Source_Log_Pos": 10, "Relay_Source_Log_File": "b.000002",
                 "Exec_Source_Log_Pos": 5}],
    "replica_hosts": [{"Server_Id": 3, "Host": "db3", "Port": 3306, "Source_Id": 2}],
    "semi_sync": [{"Variable_name": "rpl_semi_sync_source_enabled", "Value": "OFF"},
                  {"Variable_name": "rpl_semi_sync_replica_enabled", "Value": "ON"}],
    "binlog": [{"File": "b.000009", "Position": 157}],
    "connection": [{"heartbeat": 2.0}],
}


def test_mysql_build_and_positions() -> None:
    f = MySQLGtid()
    inst = f.build("db2", 3306, MYSQL_ROWS)
    assert (inst.key, inst.master_key, inst.io_running, inst.sql_running) == ("db2:3306", "db1:3306", "Connecting", True)
    assert (inst.read_only, inst.super_read_only, inst.seconds_behind_master) == (True, True, None)
    assert inst.executed_gtid_set == f"{UUID_A}:1-100,{UUID_B}:1-2"
    assert (inst.heartbeat_period, inst.connect_retry, inst.slave_net_timeout) == (2.0, 1, 4.0)
    assert (inst.semi_sync_master_enabled, inst.semi_sync_replica_enabled, inst.semi_sync_available) == (
        False, True, True
    )
    assert inst.replica_hosts == ("db3:3306",)
    assert (inst.binlog_file, inst.binlog_pos, inst.last_io_errno) == ("b.000009", 157, 2003)
    assert f.progress(inst, received=True) == (112,)  # 1-110 of A received/applied, plus 2 of B
    assert f.progress(inst, received=False) == (102,)
    master = Instance("db1", 3306, flavor="mysql", executed_gtid_set=f"{UUID_A}:1-120")
    assert f.errant(inst, master) == [f"{UUID_B}:1-2"]
    assert f.covers(inst, f"{UUID_A}:1-100") and not f.covers(inst, f"{UUID_A}:1-101")
    assert f.master_position(master) == f"{UUID_A}:1-120"
    assert set(f.probe_sql) == set(MYSQL_ROWS)


def test_mariadb_build_of_a_master_and_positions() -> None:
    f = MariaDBGtid()
    rows = {
        "variables": [{"server_id": 1, "version": "10.11.6-MariaDB", "read_only": 0, "gtid_current_pos": "0-1-10",
                       "gtid_slave_pos": "", "gtid_binlog_pos": "0-1-10", "slave_net_timeout": 60}],
        "replica": [],
        "replica_hosts": [{"Host": "r2", "Port": 2}, {"Host": "r1", "Port": 1}],
        "semi_sync": [],
        "binlog": [{"File": "mariadb-bin.000001", "Position": 400}],
    }
    inst = f.build("m", 1, rows)
    assert (inst.is_replica, inst.read_only, inst.replica_hosts) == (False, False, ("r1:1", "r2:2"))
    assert not inst.semi_sync_available
    replica = Instance("r1", 1, master_host="m", master_port=1, gtid_slave_pos="0-1-8", gtid_io_pos="0-1-9",
                       gtid_binlog_pos="0-1-8")
    assert f.progress(replica, received=True) == (9,)
    assert f.progress(replica, received=False) == (8,)
    assert f.relay_position(replica) == "0-1-9"
    assert f.errant(replica, inst) == []
    assert f.errant(replica.evolve(gtid_binlog_pos="0-1-8,1-2-1"), inst) == ["1-2-1"]
    # ahead of the master's last probe with the master's own events: just newer, not errant
    assert f.errant(replica.evolve(gtid_binlog_pos="0-1-12"), inst) == []
    assert f.errant(replica.evolve(gtid_binlog_pos="0-3-12"), inst) == ["0-3-12"]


def test_flavor_lookup() -> None:
    assert detect_flavor("10.11.6-MariaDB-log").name == "mariadb"
    assert detect_flavor("8.0.36").name == "mysql"
    assert detect_flavor("8.0.36", prefer="binlog").name == "binlog"
    assert flavor_for("mysql").name == "mysql"
    with pytest.raises(ValueError, match="unknown flavour"):
        flavor_for("oracle")


def test_instance_round_trips_through_a_dict() -> None:
    inst = MariaDBGtid().build("db2", 3306, {"variables": [{"server_id": 2}], "replica_hosts": [{"Host": "a", "Port": 1}]})
    again = Instance.from_dict({**inst.to_dict(), "unknown_field": 1})
    assert again == inst
    down = inst.unreachable("gone", 5.0)
    assert (down.reachable, down.last_probe_error, down.last_checked, down.server_id) == (False, "gone", 5.0, 2)
