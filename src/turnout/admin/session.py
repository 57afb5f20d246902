"""One admin session: runs classified statements against the store and says what to answer.

No sockets here: `AdminSession.execute(sql)` returns a `ResultSet` or an `Ok`, or raises
`AdminError` (the listener turns each into packets).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from turnout.admin import schema, sql
from turnout.admin.modules import TABLE_OF, Direction, module_of_variable
from turnout.admin.store import AdminError, AdminStore
from turnout.config import variables

log = logging.getLogger(__name__)

WARNING_CODE = 1105  # ER_UNKNOWN_ERROR: MySQL's code for warnings without a specific one
VERSION_COMMENT = "(turnout Admin Module)"


@dataclass(frozen=True)
class ResultSet:
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]


@dataclass(frozen=True)
class Ok:
    affected_rows: int = 0
    last_insert_id: int = 0
    warnings: tuple[str, ...] = ()


Answer = ResultSet | Ok

_READ_ONLY_KINDS = (sql.ShowTables, sql.ShowDatabases, sql.ShowCreateTable, sql.ShowVariables, sql.ShowWarnings,
                    sql.Rewritten, sql.Probe, sql.Ignored, sql.Sql)
_STATS_REFUSED = ("PRAGMA", "ATTACH")  # ProxySQL: "Command not allowed" from the stats interface


@dataclass
class AdminSession:
    store: AdminStore
    user: str = "admin"
    connection_id: int = 0
    # The stats user: its statements run on the stats database (stats tables, monitor attached),
    # read only, as ProxySQL's stats sessions do; the configuration is not visible to it.
    read_only: bool = False
    last_warnings: list[str] = field(default_factory=list)

    @property
    def db(self) -> sqlite3.Connection:
        return self.store.stats_db if self.read_only else self.store.db

    def execute(self, text: str) -> Answer:
        statement = sql.classify(text)
        if self.read_only and not self._harmless(statement):
            raise AdminError("the stats user can only read: connect as an admin user to change anything")
        if self.read_only and isinstance(statement, sql.Sql) and statement.sql.upper().startswith(_STATS_REFUSED):
            raise AdminError("Command not allowed")
        if isinstance(statement, sql.ShowWarnings):
            return ResultSet(("Level", "Code", "Message"), [("Warning", WARNING_CODE, w) for w in self.last_warnings])
        self.last_warnings = []
        answer = self._dispatch(statement)
        if isinstance(answer, Ok) and self._changes_memory(statement):
            self.last_warnings = self.store.pending_warnings()
            return Ok(answer.affected_rows, answer.last_insert_id, tuple(self.last_warnings))
        return answer

    @staticmethod
    def _harmless(statement: sql.Statement) -> bool:
        """What the stats user may send (its database is read only: SQLite refuses writes)."""
        return isinstance(statement, _READ_ONLY_KINDS)

    @staticmethod
    def _changes_memory(statement: sql.Statement) -> bool:
        if isinstance(statement, sql.LoadSave):
            return statement.direction.changes_memory
        if isinstance(statement, sql.SetVariable):
            return True
        return isinstance(statement, sql.Sql) and (statement.writes in TABLE_OF or statement.writes == "global_variables")

    def _dispatch(self, statement: sql.Statement) -> Answer:
        match statement:
            case sql.LoadSave(module, direction):
                return self._load_save(module, direction)
            case sql.ShowTables(schema_name, like):
                return self._show_tables(schema_name, like)
            case sql.ShowDatabases():
                return self._query("PRAGMA database_list")
            case sql.ShowCreateTable(table):
                return self._show_create(table)
            case sql.ShowVariables(prefix, like):
                return self._show_variables(prefix, like)
            case sql.Rewritten(query):
                return self._query(query)
            case sql.Probe(items):
                return ResultSet(tuple(label for _, label in items), [tuple(self._probe(expr) for expr, _ in items)])
            case sql.SetVariable(name, value):
                return self._set_variable(name, value)
            case sql.Ignored():
                return Ok()
            case sql.AdminReadOnly(on):
                self.store.set_read_only(on)
                log.info("%s: admin-read_only %s", self.user, "on" if on else "off")
                return Ok()
            case sql.Refused(message):
                raise AdminError(message)
            case sql.Sql(query, writes):
                if writes in schema.STATS_TABLES and f"{writes}_reset" in schema.STATS_TABLES:
                    self.store.refresh(f"{writes}_reset")  # the proxy zeroes what it was asked for
                return self._query(query)
        raise AdminError(f"cannot run {statement!r}")

    def _query(self, query: str, args: Sequence[object] = ()) -> Answer:
        self.store.refresh(query)
        query_only = not self.read_only and self.store.read_only  # admin-read_only, as ProxySQL: SQLite refuses
        try:
            if query_only:
                self.db.execute("PRAGMA query_only = ON")
            try:
                cursor = self.db.execute(query, args)
                rows = cursor.fetchall()
            finally:
                if query_only:
                    self.db.execute("PRAGMA query_only = OFF")
        except sqlite3.Error as exc:
            raise AdminError(str(exc)) from exc
        except (ValueError, OverflowError) as exc:  # e.g. several statements in one query, huge ints
            raise AdminError(str(exc)) from exc
        if cursor.description is None:
            inserted = query.lstrip().upper().startswith(("INSERT", "REPLACE"))
            return Ok(affected_rows=max(cursor.rowcount, 0), last_insert_id=(cursor.lastrowid or 0) if inserted else 0)
        return ResultSet(tuple(d[0] for d in cursor.description), rows)

    def _load_save(self, module: str, direction: Direction) -> Answer:
        self.store.apply(module, direction)
        log.info("%s: %s %s", self.user, module, direction.value)
        return Ok()

    def _schemas(self) -> tuple[str, ...]:
        return ("main", "monitor") if self.read_only else ("main", "disk", "stats", "monitor")

    def _show_tables(self, schema_name: str | None, like: str | None) -> Answer:
        name = (schema_name or "main").lower()
        if name not in self._schemas():
            raise AdminError(f"unknown database {schema_name!r}")
        master = "sqlite_master" if name == "main" else f"{name}.sqlite_master"
        where = f" AND name LIKE {sql.quote(sql.string_literal(like))}" if like else ""
        return self._query(
            f"SELECT name AS tables FROM {master} WHERE type='table' AND name NOT LIKE 'sqlite_%'{where} ORDER BY name"
        )

    def _show_create(self, table: str) -> Answer:
        schema_name, _, name = table.rpartition(".")
        master = f"{schema_name}.sqlite_master" if schema_name else "sqlite_master"
        if schema_name and schema_name.lower() not in self._schemas():
            raise AdminError(f"unknown database {schema_name!r}")
        result = self._query(f"SELECT name, sql FROM {master} WHERE type='table' AND name = ?", (name,))
        if not isinstance(result, ResultSet) or not result.rows:
            raise AdminError(f"table {table!r} does not exist")
        return ResultSet(("table", "Create Table"), result.rows)

    def _show_variables(self, prefix: str, like: str | None) -> Answer:
        if not prefix and like is not None and sql.string_literal(like).lower() == "read_only":
            # ProxySQL's answer (what another ProxySQL asks its peers): admin-read_only as ON/OFF
            return ResultSet(("Variable_name", "Value"), [("read_only", "ON" if self.store.read_only else "OFF")])
        where = [f"variable_name LIKE {sql.quote(prefix + '%')}"] if prefix else []
        if like:
            where.append(f"variable_name LIKE {sql.quote(sql.string_literal(like))}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self._query(
            "SELECT variable_name AS Variable_name, variable_value AS Value FROM global_variables"
            f"{clause} ORDER BY variable_name"
        )

    def _set_variable(self, name: str, value: str) -> Answer:
        if module_of_variable(name) is None or name not in variables.BY_NAME:
            raise AdminError(f"unknown variable {name!r}")
        return self._query("UPDATE global_variables SET variable_value = ? WHERE variable_name = ?", (value, name))

    def _probe(self, expr: str) -> object:
        name = expr.lower()
        if name.startswith("@@"):
            name = name[2:].removeprefix("global.").removeprefix("session.").removeprefix("local.")
            return self._session_variable(name)
        function = name.split("(")[0].strip()
        if function in ("database", "schema"):
            return "stats" if self.read_only else "admin"  # ProxySQL's answers
        if function in ("user", "current_user", "session_user", "system_user"):
            return f"{self.user}@localhost"
        if function == "connection_id":
            return self.connection_id
        if function == "version":
            return self._session_variable("version")
        return None

    def _session_variable(self, name: str) -> object:
        runtime = self.store.runtime
        values: dict[str, object] = {
            "version": runtime.variable("mysql-server_version", "8.0.11"),
            "version_comment": VERSION_COMMENT,
            "max_allowed_packet": runtime.int_variable("mysql-max_allowed_packet", 67108864),
            "autocommit": 1,
            "auto_increment_increment": 1,
            "character_set_client": "utf8mb4",
            "character_set_connection": "utf8mb4",
            "character_set_results": "utf8mb4",
            "character_set_server": "utf8mb4",
            "collation_connection": "utf8mb4_general_ci",
            "collation_server": "utf8mb4_general_ci",
            "sql_mode": "",
            "time_zone": "SYSTEM",
            "system_time_zone": "UTC",
            "tx_isolation": "REPEATABLE-READ",
            "transaction_isolation": "REPEATABLE-READ",
            "tx_read_only": 0,
            "transaction_read_only": 0,
            "lower_case_table_names": 0,
            "wait_timeout": 28800,
            "interactive_timeout": 28800,
            "net_write_timeout": 60,
            "net_buffer_length": 16384,
            "license": "Apache-2.0",
            "init_connect": "",
            "performance_schema": 0,
            "query_cache_size": 0,
            "query_cache_type": "OFF",
            "warning_count": len(self.last_warnings),
            "read_only": int(self.store.read_only),  # ProxySQL answers @@global.read_only with admin-read_only
        }
        return values.get(name)
