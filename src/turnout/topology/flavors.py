"""Server flavours behind one interface: the SQL the manager issues and how it reads the answers.

- `MariaDBGtid`: MariaDB GTID (gtid_slave_pos, MASTER_USE_GTID=slave_pos), tested live.
- `MySQLGtid`: MySQL 8 GTID (gtid_executed, SOURCE_AUTO_POSITION=1, super_read_only,
  CHANGE REPLICATION SOURCE TO, START REPLICA).
- `BinlogFilePos`: classic binlog file/position, for servers without GTID.

Everything here is pure: statements out, rows in, `Instance` values built from rows.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from turnout.topology.gtid import MariaGtidList, MysqlGtidSet
from turnout.topology.model import Instance, make_key

Rows = Sequence[Mapping[str, Any]]


def sql_string(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _on(value: Any) -> bool:
    return str(value).upper() in ("1", "ON", "YES", "TRUE")


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _variables(rows: Rows) -> dict[str, Any]:
    return {str(r["Variable_name"]).lower(): r["Value"] for r in rows}


class Flavor(abc.ABC):
    name: str

    # ---- probing ---------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def probe_sql(self) -> Mapping[str, str]:
        """Named statements a probe runs; their rows go to `build`."""

    @abc.abstractmethod
    def build(self, host: str, port: int, results: Mapping[str, Rows]) -> Instance: ...

    # ---- actions ------------------------------------------------------------------------------
    @abc.abstractmethod
    def change_master(
        self,
        master_host: str,
        master_port: int,
        user: str,
        password: str,
        *,
        former_master: bool = False,
        position: tuple[str, int] | None = None,
        connect_retry: int = 1,
        heartbeat: float = 1.0,
    ) -> list[str]:
        """Point a server at a new master (replication threads must be stopped)."""

    @abc.abstractmethod
    def start_replica(self) -> str: ...

    @abc.abstractmethod
    def stop_replica(self) -> str: ...

    @abc.abstractmethod
    def stop_io_thread(self) -> str: ...

    @abc.abstractmethod
    def reset_replica_all(self) -> str: ...

    @abc.abstractmethod
    def set_read_only(self, on: bool) -> list[str]: ...

    @abc.abstractmethod
    def semi_sync(self, master_side: bool, replica_side: bool) -> list[str]: ...

    @abc.abstractmethod
    def wait_applied(self, position: str, timeout: float) -> str:
        """A SELECT returning one value; `wait_succeeded(value)` tells if it was reached."""

    def wait_succeeded(self, value: Any) -> bool:
        """The GTID waits (MASTER_GTID_WAIT, WAIT_FOR_EXECUTED_GTID_SET) return 0 when reached."""
        return value is not None and int(value) == 0

    # ---- positions -------------------------------------------------------------------------------
    @abc.abstractmethod
    def master_position(self, master: Instance) -> str:
        """Everything a master has written, in the form `wait_applied` takes."""

    @abc.abstractmethod
    def relay_position(self, replica: Instance) -> str:
        """Everything a replica has received, in the form `wait_applied` takes."""

    @abc.abstractmethod
    def progress(self, replica: Instance, received: bool) -> tuple[int, ...]:
        """Sortable measure of how much a replica has received (or applied): higher is further."""

    @abc.abstractmethod
    def covers(self, replica: Instance, position: str) -> bool:
        """Has `replica` applied everything in `position`?"""

    @abc.abstractmethod
    def errant(self, replica: Instance, master: Instance) -> list[str]:
        """Transactions the replica executed that its master does not have."""

    @property
    def uses_gtid(self) -> bool:
        return True


# ---- MariaDB ------------------------------------------------------------------------------------
class MariaDBGtid(Flavor):
    name = "mariadb"

    @property
    def probe_sql(self) -> Mapping[str, str]:
        return {
            "variables": (
                "SELECT @@server_id AS server_id, @@version AS version, @@read_only AS read_only, "
                "@@gtid_current_pos AS gtid_current_pos, @@gtid_slave_pos AS gtid_slave_pos, "
                "@@gtid_binlog_pos AS gtid_binlog_pos, @@slave_net_timeout AS slave_net_timeout, "
                "@@binlog_format AS binlog_format, @@log_slave_updates AS log_slave_updates"
            ),
            "replica": "SHOW ALL SLAVES STATUS",
            "replica_hosts": "SHOW SLAVE HOSTS",
            "semi_sync": "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'",
            "binlog": "SHOW MASTER STATUS",
        }

    def build(self, host: str, port: int, results: Mapping[str, Rows]) -> Instance:
        fields, var, replica = _common_fields(self.name, results, "Connection_name", _mariadb_name)
        fields.update(
            gtid_current_pos=str(var.get("gtid_current_pos") or ""),
            gtid_slave_pos=str(var.get("gtid_slave_pos") or ""),
            gtid_binlog_pos=str(var.get("gtid_binlog_pos") or ""),
        )
        if replica is not None:
            fields.update(
                using_gtid=str(replica.get("Using_Gtid") or ""),
                gtid_io_pos=str(replica.get("Gtid_IO_Pos") or ""),
                heartbeat_period=_float(replica.get("Slave_heartbeat_period")),
            )
        return Instance(host=host, port=port, **fields)

    def change_master(
        self,
        master_host: str,
        master_port: int,
        user: str,
        password: str,
        *,
        former_master: bool = False,
        position: tuple[str, int] | None = None,
        connect_retry: int = 1,
        heartbeat: float = 1.0,
    ) -> list[str]:
        # A former master's own writes are in gtid_binlog_pos, not gtid_slave_pos: current_pos
        # makes it continue after them.
        use_gtid = "current_pos" if former_master else "slave_pos"
        return [
            f"CHANGE MASTER TO MASTER_HOST={sql_string(master_host)}, MASTER_PORT={int(master_port)}, "
            f"MASTER_USER={sql_string(user)}, MASTER_PASSWORD={sql_string(password)}, "
            f"MASTER_USE_GTID={use_gtid}, MASTER_CONNECT_RETRY={int(connect_retry)}, "
            f"MASTER_HEARTBEAT_PERIOD={heartbeat:g}"
        ]

    def start_replica(self) -> str:
        return "START SLAVE"

    def stop_replica(self) -> str:
        return "STOP SLAVE"

    def stop_io_thread(self) -> str:
        return "STOP SLAVE IO_THREAD"

    def reset_replica_all(self) -> str:
        return "RESET SLAVE ALL"

    def set_read_only(self, on: bool) -> list[str]:
        return [f"SET GLOBAL read_only = {'ON' if on else 'OFF'}"]

    def semi_sync(self, master_side: bool, replica_side: bool) -> list[str]:
        return [
            f"SET GLOBAL rpl_semi_sync_master_enabled = {'ON' if master_side else 'OFF'}",
            f"SET GLOBAL rpl_semi_sync_slave_enabled = {'ON' if replica_side else 'OFF'}",
        ]

    def wait_applied(self, position: str, timeout: float) -> str:
        return f"SELECT MASTER_GTID_WAIT({sql_string(position)}, {timeout:g}) AS reached"

    def master_position(self, master: Instance) -> str:
        return master.gtid_binlog_pos

    def relay_position(self, replica: Instance) -> str:
        return replica.gtid_io_pos or replica.gtid_slave_pos

    def _received(self, replica: Instance) -> MariaGtidList:
        received = MariaGtidList.parse(replica.gtid_io_pos)
        applied = MariaGtidList.parse(replica.gtid_slave_pos)
        return received if received.covers(applied) else applied

    def progress(self, replica: Instance, received: bool) -> tuple[int, ...]:
        gtids = self._received(replica) if received else MariaGtidList.parse(replica.gtid_slave_pos)
        return (gtids.transactions,)

    def covers(self, replica: Instance, position: str) -> bool:
        return MariaGtidList.parse(replica.gtid_slave_pos).covers(MariaGtidList.parse(position))

    def errant(self, replica: Instance, master: Instance) -> list[str]:
        # A replica ahead of the master's last probe with the master's own server_id has just
        # applied newer events of that master (probes are not simultaneous): not errant.
        mine = MariaGtidList.parse(replica.gtid_binlog_pos)
        ahead = mine.ahead_of(MariaGtidList.parse(master.gtid_binlog_pos))
        return [g for g in ahead if int(g.split("-")[1]) != master.server_id]


# ---- MySQL 8 ------------------------------------------------------------------------------------------
class MySQLGtid(Flavor):
    name = "mysql"

    @property
    def probe_sql(self) -> Mapping[str, str]:
        return {
            "variables": (
                "SELECT @@server_id AS server_id, @@version AS version, @@read_only AS read_only, "
                "@@super_read_only AS super_read_only, @@gtid_executed AS gtid_executed, "
                "@@replica_net_timeout AS replica_net_timeout, @@binlog_format AS binlog_format"
            ),
            "replica": "SHOW REPLICA STATUS",
            "replica_hosts": "SHOW REPLICAS",
            "semi_sync": "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%'",
            "binlog": "SHOW MASTER STATUS",
            "connection": (
                "SELECT HEARTBEAT_INTERVAL AS heartbeat "
                "FROM performance_schema.replication_connection_configuration WHERE CHANNEL_NAME = ''"
            ),
        }

    def build(self, host: str, port: int, results: Mapping[str, Rows]) -> Instance:
        fields, var, replica = _common_fields(self.name, results, "Channel_Name", _mysql_name)
        connection = results["connection"][0] if results.get("connection") else {}
        fields.update(
            super_read_only=_on(var.get("super_read_only")),
            executed_gtid_set=str(var.get("gtid_executed") or "").replace("\n", ""),
        )
        if replica is not None:
            fields.update(
                using_gtid="Auto_Position" if _on(replica.get("Auto_Position")) else "No",
                retrieved_gtid_set=str(replica.get("Retrieved_Gtid_Set") or "").replace("\n", ""),
                heartbeat_period=_float(connection.get("heartbeat")),
            )
        return Instance(host=host, port=port, **fields)

    def change_master(
        self,
        master_host: str,
        master_port: int,
        user: str,
        password: str,
        *,
        former_master: bool = False,
        position: tuple[str, int] | None = None,
        connect_retry: int = 1,
        heartbeat: float = 1.0,
    ) -> list[str]:
        return [
            f"CHANGE REPLICATION SOURCE TO SOURCE_HOST={sql_string(master_host)}, "
            f"SOURCE_PORT={int(master_port)}, "
            f"SOURCE_USER={sql_string(user)}, SOURCE_PASSWORD={sql_string(password)}, "
            f"SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY={int(connect_retry)}, "
            f"SOURCE_HEARTBEAT_PERIOD={heartbeat:g}, GET_SOURCE_PUBLIC_KEY=1"
        ]

    def start_replica(self) -> str:
        return "START REPLICA"

    def stop_replica(self) -> str:
        return "STOP REPLICA"

    def stop_io_thread(self) -> str:
        return "STOP REPLICA IO_THREAD"

    def reset_replica_all(self) -> str:
        return "RESET REPLICA ALL"

    def set_read_only(self, on: bool) -> list[str]:
        # super_read_only=ON implies read_only=ON; read_only=OFF implies super_read_only=OFF.
        if on:
            return ["SET GLOBAL read_only = ON", "SET GLOBAL super_read_only = ON"]
        return ["SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"]

    def semi_sync(self, master_side: bool, replica_side: bool) -> list[str]:
        return [
            f"SET GLOBAL rpl_semi_sync_source_enabled = {'ON' if master_side else 'OFF'}",
            f"SET GLOBAL rpl_semi_sync_replica_enabled = {'ON' if replica_side else 'OFF'}",
        ]

    def wait_applied(self, position: str, timeout: float) -> str:
        return f"SELECT WAIT_FOR_EXECUTED_GTID_SET({sql_string(position)}, {timeout:g}) AS reached"

    def master_position(self, master: Instance) -> str:
        return master.executed_gtid_set

    def relay_position(self, replica: Instance) -> str:
        received = MysqlGtidSet.parse(replica.retrieved_gtid_set)
        executed = MysqlGtidSet.parse(replica.executed_gtid_set)
        return str(MysqlGtidSet.parse(f"{executed},{received}" if received.sets else str(executed)))

    def progress(self, replica: Instance, received: bool) -> tuple[int, ...]:
        text = self.relay_position(replica) if received else replica.executed_gtid_set
        return (MysqlGtidSet.parse(text).transactions,)

    def covers(self, replica: Instance, position: str) -> bool:
        return MysqlGtidSet.parse(replica.executed_gtid_set).covers(MysqlGtidSet.parse(position))

    def errant(self, replica: Instance, master: Instance) -> list[str]:
        mine = MysqlGtidSet.parse(replica.executed_gtid_set)
        extra = mine.subtract(MysqlGtidSet.parse(master.executed_gtid_set))
        return [str(extra)] if extra.sets else []


# ---- binlog file/position ---------------------------------------------------------------------------
def _log_index(name: str) -> int:
    suffix = name.rpartition(".")[2]
    return int(suffix) if suffix.isdigit() else 0


class BinlogFilePos(MariaDBGtid):
    """Classic file/position replication, read and written with the MariaDB/MySQL 5.7 syntax.

    Positions are only comparable between replicas of the same master, and a promoted replica's
    own coordinates are only valid for replicas that had applied exactly as much: callers must
    pass `position` to `change_master`.
    """

    name = "binlog"

    @property
    def uses_gtid(self) -> bool:
        return False

    def build(self, host: str, port: int, results: Mapping[str, Rows]) -> Instance:
        return super().build(host, port, results).evolve(flavor=self.name)

    def change_master(
        self,
        master_host: str,
        master_port: int,
        user: str,
        password: str,
        *,
        former_master: bool = False,
        position: tuple[str, int] | None = None,
        connect_retry: int = 1,
        heartbeat: float = 1.0,
    ) -> list[str]:
        if position is None:
            raise ValueError("file/position replication needs the new master's binlog file and position")
        log_file, log_pos = position
        return [
            f"CHANGE MASTER TO MASTER_HOST={sql_string(master_host)}, MASTER_PORT={int(master_port)}, "
            f"MASTER_USER={sql_string(user)}, MASTER_PASSWORD={sql_string(password)}, "
            f"MASTER_LOG_FILE={sql_string(log_file)}, MASTER_LOG_POS={int(log_pos)}, "
            f"MASTER_USE_GTID=no, MASTER_CONNECT_RETRY={int(connect_retry)}, "
            f"MASTER_HEARTBEAT_PERIOD={heartbeat:g}"
        ]

    def wait_applied(self, position: str, timeout: float) -> str:
        log_file, _, log_pos = position.rpartition(":")
        return f"SELECT MASTER_POS_WAIT({sql_string(log_file)}, {int(log_pos)}, {timeout:g}) AS reached"

    def wait_succeeded(self, value: Any) -> bool:
        return value is not None and int(value) >= 0

    def master_position(self, master: Instance) -> str:
        return f"{master.binlog_file}:{master.binlog_pos}"

    def relay_position(self, replica: Instance) -> str:
        return f"{replica.master_log_file}:{replica.read_master_log_pos}"

    def progress(self, replica: Instance, received: bool) -> tuple[int, ...]:
        if received:
            return (_log_index(replica.master_log_file), replica.read_master_log_pos)
        return (_log_index(replica.relay_master_log_file), replica.exec_master_log_pos)

    def covers(self, replica: Instance, position: str) -> bool:
        log_file, _, log_pos = position.rpartition(":")
        return self.progress(replica, received=False) >= (_log_index(log_file), int(log_pos))

    def errant(self, replica: Instance, master: Instance) -> list[str]:
        return []  # not knowable without GTID


FLAVORS: dict[str, Flavor] = {f.name: f for f in (MariaDBGtid(), MySQLGtid(), BinlogFilePos())}


def flavor_for(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise ValueError(f"unknown flavour {name!r}: choose one of {', '.join(FLAVORS)}") from None


def detect_flavor(version: str, prefer: str | None = None) -> Flavor:
    """The flavour for a server's @@version, unless the configuration names one."""
    if prefer:
        return flavor_for(prefer)
    return FLAVORS["mariadb"] if "mariadb" in version.lower() else FLAVORS["mysql"]


# ---- what both flavours report, under MariaDB's names or MySQL 8's --------------------------------
def _mariadb_name(name: str) -> str:
    return name


def _mysql_name(name: str) -> str:
    """MySQL 8.0.22+ renamed master/slave columns and variables to source/replica."""
    return (
        name.replace("Master", "Source").replace("Slave", "Replica")
        .replace("master", "source").replace("slave", "replica")
    )


def _common_fields(
    flavor: str, results: Mapping[str, Rows], channel_column: str, named: Callable[[str], str]
) -> tuple[dict[str, Any], dict[str, Any], Mapping[str, Any] | None]:
    """The instance fields both flavours fill the same way: (fields, variables row, replica row)."""
    var = dict(results["variables"][0]) if results.get("variables") else {}
    replica = next((r for r in results.get("replica", ()) if not r.get(channel_column)), None)
    semi = _variables(results.get("semi_sync", ()))
    binlog = results["binlog"][0] if results.get("binlog") else {}
    fields: dict[str, Any] = {
        "flavor": flavor,
        "server_id": _int(var.get("server_id")),
        "version": str(var.get("version", "")),
        "read_only": _on(var.get("read_only")),
        "slave_net_timeout": _float(var.get(named("slave_net_timeout"))),
        "semi_sync_available": named("rpl_semi_sync_master_enabled") in semi,
        "semi_sync_master_enabled": _on(semi.get(named("rpl_semi_sync_master_enabled"))),
        "semi_sync_replica_enabled": _on(semi.get(named("rpl_semi_sync_slave_enabled"))),
        "semi_sync_timeout_ms": _float(semi.get(named("rpl_semi_sync_master_timeout"))),
        "binlog_file": str(binlog.get("File") or ""),
        "binlog_pos": _int(binlog.get("Position")),
        "binlog_format": str(var.get("binlog_format") or ""),
        "log_replica_updates": _on(var["log_slave_updates"]) if "log_slave_updates" in var else None,
        "replica_hosts": tuple(
            sorted(make_key(str(r["Host"]), _int(r["Port"])) for r in results.get("replica_hosts", ()))
        ),
    }
    if replica is None or not replica.get(named("Master_Host")):
        return fields, var, None
    fields.update(
        master_host=str(replica[named("Master_Host")]),
        master_port=_int(replica[named("Master_Port")]),
        io_running=str(replica[named("Slave_IO_Running")]),
        sql_running=str(replica[named("Slave_SQL_Running")]) == "Yes",
        last_io_errno=_int(replica.get("Last_IO_Errno")),
        last_io_error=str(replica.get("Last_IO_Error") or ""),
        last_sql_errno=_int(replica.get("Last_SQL_Errno")),
        last_sql_error=str(replica.get("Last_SQL_Error") or ""),
        seconds_behind_master=_opt_int(replica.get(named("Seconds_Behind_Master"))),
        sql_delay=_int(replica.get("SQL_Delay")),
        connect_retry=_int(replica.get("Connect_Retry"), 60),
        master_log_file=str(replica.get(named("Master_Log_File")) or ""),
        read_master_log_pos=_int(replica.get(named("Read_Master_Log_Pos"))),
        relay_master_log_file=str(replica.get(named("Relay_Master_Log_File")) or ""),
        exec_master_log_pos=_int(replica.get(named("Exec_Master_Log_Pos"))),
    )
    return fields, var, replica
