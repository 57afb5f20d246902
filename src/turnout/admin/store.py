"""The three layers, as ProxySQL keeps them: memory (main.*, what the operator edits), runtime (what
is in force, one immutable RuntimeConfig) and disk (proxysql.db in the datadir, attached as `disk`).

LOAD ... TO RUNTIME checks memory, builds RuntimeConfig version+1 and hands it to `on_runtime`;
any problem, or an exception from the callback, leaves runtime exactly as it was. Everything runs
on one SQLite connection, from one thread (the admin event loop).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from turnout.admin import pending, schema, users
from turnout.admin.modules import MODULES, SERVERS, TABLE_OF, USERS, Direction, Module, Table
from turnout.config import validate, variables
from turnout.config.file import ConfigFile
from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.config.rows import build_row, columns

log = logging.getLogger(__name__)

DISK_FILE = "proxysql.db"

StatsRows = Sequence[Mapping[str, object]]


@dataclass
class Providers:
    """What the data path and the monitor expose to the admin tables; each is optional.

    - `runtime_servers()`: the servers as actually in force (statuses and hostgroups changed by the
      monitor); fills runtime_mysql_servers. Without it, runtime_mysql_servers shows the last LOAD.
    - `stats(table)`: rows of a stats table ("stats_mysql_connection_pool", ...) as mappings from
      column name to value; columns not given are NULL. Reading a "*_reset" table should zero the
      counters it returns.
    - `monitor(table)`: same for the monitor log tables ("mysql_server_ping_log", ...).
    A provider returning None leaves the table as it is.
    """

    runtime_servers: Callable[[], Sequence[MysqlServer]] | None = None
    stats: Callable[[str], StatsRows | None] | None = None
    monitor: Callable[[str], StatsRows | None] | None = None


class AdminError(Exception):
    """A statement the admin interface refuses; the message is for the operator."""


def _mentions(names: Sequence[str]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b", re.IGNORECASE)


_RUNTIME_TABLES = _mentions([f"runtime_{name}" for name in schema.CONFIG_TABLES])
_STATS_TABLES = _mentions([name for name in schema.STATS_TABLES if name != "global_variables"])
_CHECKSUMS_TABLE = _mentions(["runtime_checksums_values"])

# runtime_checksums_values: the names ProxySQL gives what each module puts in force.
CHECKSUM_NAMES: Mapping[str, tuple[str, ...]] = {
    "ADMIN VARIABLES": ("admin_variables",),
    "MYSQL QUERY RULES": ("mysql_query_rules",),
    "MYSQL SERVERS": ("mysql_servers", "mysql_servers_v2"),
    "MYSQL USERS": ("mysql_users",),
    "MYSQL VARIABLES": ("mysql_variables",),
    "PROXYSQL SERVERS": ("proxysql_servers",),
}


def unhex(value: object) -> str | bytes | None:
    """MySQL's UNHEX() for the admin's SQLite: the text a hex string encodes (NULL when it is not
    hex), so `UNHEX('2A...')` stores the `*HASH` text proxysql-admin --syncusers means."""
    if value is None:
        return None
    try:
        raw = bytes.fromhex(str(value))
    except ValueError:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def checksum(value: object) -> str:
    """A 64-bit checksum of what a module put in force, in ProxySQL's 0x%016X form."""
    return "0x" + hashlib.blake2b(repr(value).encode(), digest_size=8).hexdigest().upper()
_MONITOR_TABLES = _mentions(list(schema.MONITOR_TABLES))
_PENDING_TABLE = _mentions(["turnout_pending_changes"])


def normalise(row: Any) -> Any:
    """A row as it is put in force: statuses upper case, check types lower case."""
    if isinstance(row, MysqlServer):
        return dataclasses.replace(row, status=row.status.upper())
    if isinstance(row, ReplicationHostgroup):
        return dataclasses.replace(row, check_type=row.check_type.lower())
    return row


_CHECKS: Mapping[str, Callable[[Sequence[Any]], list[validate.Problem]]] = {
    "mysql_servers": validate.server_problems,
    "mysql_replication_hostgroups": validate.replication_hostgroup_problems,
    "mysql_users": validate.user_problems,
    "mysql_query_rules": validate.query_rule_problems,
    "scheduler": validate.scheduler_problems,
    "proxysql_servers": validate.proxysql_server_problems,
}


class AdminStore:
    def __init__(
        self,
        datadir: Path | None,
        on_runtime: Callable[[RuntimeConfig], None] | None = None,
        config: Callable[[], ConfigFile | None] | None = None,
        providers: Providers | None = None,
    ) -> None:
        """`datadir` None keeps the disk layer in memory (nothing persists). `config` returns the
        configuration file for LOAD ... FROM CONFIG (re-read each time)."""
        self.on_runtime = on_runtime
        self.config = config
        self.providers = providers or Providers()
        self.disk_path = None if datadir is None else datadir / DISK_FILE
        self.disk_existed = self.disk_path is not None and self.disk_path.exists()
        if self.disk_path is not None:
            self.disk_path.parent.mkdir(parents=True, exist_ok=True)
        # stats and monitor are shared in-memory databases: the stats user's connection opens
        # stats as its main database, as ProxySQL's stats sessions run on its stats database.
        tag = uuid.uuid4().hex
        self._stats_uri = f"file:turnout-stats-{tag}?mode=memory&cache=shared"
        self._monitor_uri = f"file:turnout-monitor-{tag}?mode=memory&cache=shared"
        self.db = sqlite3.connect("file::memory:", uri=True, isolation_level=None, check_same_thread=False)
        self.db.create_function("UNHEX", 1, unhex, deterministic=True)
        disk = str(self.disk_path) if self.disk_path else ":memory:"
        if disk.startswith("file:"):
            disk = "./" + disk
        self.db.execute("ATTACH DATABASE ? AS disk", (disk,))
        self.db.execute("ATTACH DATABASE ? AS stats", (self._stats_uri,))
        self.db.execute("ATTACH DATABASE ? AS monitor", (self._monitor_uri,))
        for statements in schema.all_ddl().values():
            for ddl in statements:
                self.db.execute(ddl)
        self._migrate_disk()
        for ddl in schema.config_ddl("disk"):
            self.db.execute(ddl.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
        self._insert_default_variables("main")
        self.stats_db = sqlite3.connect(self._stats_uri, uri=True, isolation_level=None, check_same_thread=False)
        self.stats_db.create_function("UNHEX", 1, unhex, deterministic=True)
        self.stats_db.execute("ATTACH DATABASE ? AS monitor", (self._monitor_uri,))
        self.stats_db.execute("PRAGMA query_only = ON")
        self._runtime = RuntimeConfig(version=0, variables=MappingProxyType(variables.defaults()))
        self._fill_stats_variables()
        # runtime_checksums_values: name -> (version, epoch, checksum)
        self.checksums: dict[str, tuple[int, int, str]] = {
            name: (0, 0, "0x0000000000000000") for names in CHECKSUM_NAMES.values() for name in names
        }

    def close(self) -> None:
        self.stats_db.close()
        self.db.close()

    def _migrate_disk(self) -> None:
        """A proxysql.db written by an older turnout kept turnout's two settings in
        mysql_replication_hostgroups: move them to turnout_replication_hostgroups."""
        if "stale_read_protection" not in self._columns("disk", "mysql_replication_hostgroups"):
            return
        with self.transaction():
            self.db.execute(schema.TURNOUT_REPLICATION_HOSTGROUPS.format(name="disk.turnout_replication_hostgroups")
                            .replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
            self.db.execute(
                "INSERT OR REPLACE INTO disk.turnout_replication_hostgroups "
                "SELECT writer_hostgroup, stale_read_protection, two_writer_mode FROM disk.mysql_replication_hostgroups "
                "WHERE stale_read_protection <> 1 OR two_writer_mode <> 'refuse'"
            )
            self.db.execute("ALTER TABLE disk.mysql_replication_hostgroups RENAME TO turnout_old_replication_hostgroups")
            self.db.execute(schema.MYSQL_REPLICATION_HOSTGROUPS.format(name="disk.mysql_replication_hostgroups"))
            self.db.execute(
                "INSERT INTO disk.mysql_replication_hostgroups SELECT writer_hostgroup, reader_hostgroup, check_type, "
                "comment FROM disk.turnout_old_replication_hostgroups"
            )
            self.db.execute("DROP TABLE disk.turnout_old_replication_hostgroups")
        log.info("moved turnout's replication hostgroup settings to turnout_replication_hostgroups in %s",
                 self.disk_path)

    def _fill_stats_variables(self) -> None:
        """stats.global_variables: the few values ProxySQL's stats database keeps for its sessions."""
        with self.transaction():
            self.db.execute("DELETE FROM stats.global_variables")
            self.db.execute(
                "INSERT INTO stats.global_variables VALUES ('mysql-max_allowed_packet', ?)",
                (self._runtime.variable("mysql-max_allowed_packet", "67108864"),),
            )

    @property
    def runtime(self) -> RuntimeConfig:
        return self._runtime

    @property
    def read_only(self) -> bool:
        """admin-read_only in force: plain SQL on the admin tables may not write (LOAD/SAVE may)."""
        return self._runtime.bool_variable("admin-read_only", False)

    def set_read_only(self, on: bool) -> None:
        """PROXYSQL READONLY / READWRITE: admin-read_only in force at once (memory unchanged)."""
        values = dict(self._runtime.variables)
        values["admin-read_only"] = "true" if on else "false"
        self._runtime = dataclasses.replace(self._runtime, variables=MappingProxyType(values))

    # --- helpers -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _columns(self, schema_name: str, table: str) -> list[str]:
        return [row[1] for row in self.db.execute(f"PRAGMA {schema_name}.table_info({table})")]

    def _insert_default_variables(self, schema_name: str, prefix: str = "") -> None:
        self.db.executemany(
            f"INSERT OR IGNORE INTO {schema_name}.global_variables VALUES (?, ?)",
            [(name, value) for name, value in variables.defaults().items() if name.startswith(prefix)],
        )

    def _write_rows(self, schema_name: str, table: Table, rows: Sequence[Any], replace_all: bool = True,
                    prefix: str = "") -> None:
        """Write rows of `table` into `schema_name` (`prefix` "runtime_" for the runtime tables):
        ProxySQL's columns into its table, turnout's extension columns beside it."""
        if not rows and not replace_all:
            return
        ext = table.extension
        target = f"{schema_name}.{prefix}{table.name}"
        if replace_all:
            self.db.execute(f"DELETE FROM {target}")
            if ext is not None:
                self.db.execute(f"DELETE FROM {schema_name}.{prefix}{ext.name}")
        if not rows:
            return
        known = set(self._columns(schema_name, f"{prefix}{table.name}"))
        names = [name for name in columns(type(rows[0])) if name in known]
        marks = ", ".join("?" for _ in names)
        self.db.executemany(
            f"INSERT OR REPLACE INTO {target} ({', '.join(names)}) VALUES ({marks})",
            [tuple(getattr(row, name) for name in names) for row in rows],
        )
        if ext is not None:
            defaults = {f.name: f.default for f in dataclasses.fields(table.row_type)}
            ext_names = [ext.join_on, *ext.columns]
            self.db.executemany(
                f"INSERT OR REPLACE INTO {schema_name}.{prefix}{ext.name} ({', '.join(ext_names)}) "
                f"VALUES ({', '.join('?' for _ in ext_names)})",
                [
                    tuple(getattr(row, name) for name in ext_names)
                    for row in rows
                    if any(getattr(row, name) != defaults[name] for name in ext.columns)
                ],
            )

    def _variables(self, schema_name: str, prefix: str) -> dict[str, str]:
        cursor = self.db.execute(
            f"SELECT variable_name, variable_value FROM {schema_name}.global_variables "
            "WHERE substr(variable_name, 1, ?) = ? ORDER BY variable_name",
            (len(prefix), prefix),
        )
        return {str(name): str(value) for name, value in cursor}

    def read_rows(self, table: Table, schema_name: str = "main") -> tuple[list[Any], list[str]]:
        """The rows of a memory (or disk) table as row objects, and the problems of those that
        cannot be (values of the wrong type)."""
        ext = table.extension
        if ext is None:
            cursor = self.db.execute(f"SELECT * FROM {schema_name}.{table.name} ORDER BY {table.order_by}")
        else:
            extra = ", ".join(f"e.{column}" for column in ext.columns)
            cursor = self.db.execute(
                f"SELECT t.*, {extra} FROM {schema_name}.{table.name} AS t LEFT JOIN {schema_name}.{ext.name} AS e "
                f"USING ({ext.join_on}) ORDER BY {', '.join('t.' + c.strip() for c in table.order_by.split(','))}"
            )
        names = [d[0] for d in cursor.description]
        rows: list[Any] = []
        problems: list[str] = []
        for values in cursor:
            row, row_problems = build_row(table.row_type, dict(zip(names, values, strict=True)), table.name,
                                          null_is_default=True)
            if row is None:
                problems.extend(message for _, message in row_problems)
            else:
                rows.append(normalise(row))
        return rows, problems

    # --- the five directions -----------------------------------------------------------------

    def apply(self, module_name: str, direction: Direction) -> RuntimeConfig | None:
        """Run `LOAD/SAVE <module>` in `direction`; the new RuntimeConfig for MEMORY_TO_RUNTIME."""
        module = MODULES[module_name]
        if direction is Direction.MEMORY_TO_RUNTIME:
            return self.load_to_runtime([module_name])
        if direction is Direction.MEMORY_TO_DISK:
            self._copy(module, "main", "disk")
        elif direction is Direction.DISK_TO_MEMORY:
            self._copy(module, "disk", "main")
        elif direction is Direction.RUNTIME_TO_MEMORY:
            self._runtime_to_memory(module)
        elif direction is Direction.CONFIG_TO_MEMORY:
            self._config_to_memory(module)
        return None

    def _copy(self, module: Module, source: str, target: str) -> None:
        with self.transaction():
            for table in module.table_names:
                names = [c for c in self._columns(source, table) if c in self._columns(target, table)]
                cols = ", ".join(names)
                if module.variable_prefix:
                    where = f" WHERE substr(variable_name, 1, {len(module.variable_prefix)}) = ?"
                    args: tuple[str, ...] = (module.variable_prefix,)
                else:
                    where, args = "", ()
                self.db.execute(f"DELETE FROM {target}.{table}{where}", args)
                self.db.execute(f"INSERT INTO {target}.{table} ({cols}) SELECT {cols} FROM {source}.{table}{where}",
                                args)
            if module.variable_prefix and target == "main":
                self._insert_default_variables("main", module.variable_prefix)

    def _runtime_to_memory(self, module: Module) -> None:
        with self.transaction():
            if module.variable_prefix:
                self._replace_variables(module.variable_prefix, self._runtime_variables(module.variable_prefix))
                return
            for table in module.tables:
                rows = self._runtime_rows(table)
                self._write_rows("main", table, users.runtime_rows(rows) if table is USERS else rows)

    def _config_to_memory(self, module: Module) -> None:
        config = self.config() if self.config else None
        if config is None:
            raise AdminError("no configuration file: start turnout with --config FILE to LOAD ... FROM CONFIG")
        with self.transaction():
            # ProxySQL merges the file into memory (INSERT OR REPLACE): rows only in memory stay.
            if module.variable_prefix:
                self.db.executemany(
                    "INSERT OR REPLACE INTO main.global_variables VALUES (?, ?)",
                    [(k, v) for k, v in config.variables.items() if k.startswith(module.variable_prefix)],
                )
                return
            for table in module.tables:
                self._write_rows("main", table, getattr(config, table.runtime_field), replace_all=False)

    def _replace_variables(self, prefix: str, values: Mapping[str, str]) -> None:
        self.db.execute("DELETE FROM main.global_variables WHERE substr(variable_name, 1, ?) = ?", (len(prefix), prefix))
        self.db.executemany("INSERT INTO main.global_variables VALUES (?, ?)", list(values.items()))

    def _runtime_variables(self, prefix: str) -> dict[str, str]:
        return {k: v for k, v in sorted(self._runtime.variables.items()) if k.startswith(prefix)}

    def _runtime_rows(self, table: Table) -> Sequence[Any]:
        """What is in force for `table`; for servers, what the monitor made of them."""
        if table is SERVERS and self.providers.runtime_servers is not None:
            return tuple(self.providers.runtime_servers())
        rows: Sequence[Any] = getattr(self._runtime, table.runtime_field)
        return rows

    # --- memory to runtime -------------------------------------------------------------------

    def _memory_for(self, module: Module) -> tuple[dict[str, Any], list[str]]:
        """The RuntimeConfig fields `module` would put in force, and every problem with them."""
        fields: dict[str, Any] = {}
        problems: list[str] = []
        if module.variable_prefix:
            memory = self._variables("main", module.variable_prefix)
            problems += [p for name, value in memory.items() if (p := variables.problem(name, value))]
            merged = {k: v for k, v in self._runtime.variables.items() if not k.startswith(module.variable_prefix)}
            defaults = {k: v for k, v in variables.defaults().items() if k.startswith(module.variable_prefix)}
            merged.update({**defaults, **memory})
            fields["variables"] = MappingProxyType(dict(sorted(merged.items())))
            return fields, problems
        for table in module.tables:
            rows, row_problems = self.read_rows(table)
            problems += row_problems
            problems += [message for _, _, message in _CHECKS[table.name](rows)]
            fields[table.runtime_field] = tuple(rows)
        return fields, problems

    def _in_force(self, table: Table, rows: Sequence[Any], hash_passwords: bool | None = None) -> tuple[Any, ...]:
        """Memory rows as LOAD ... TO RUNTIME puts them in force: passwords hashed when
        admin-hash_passwords is true (ProxySQL's default)."""
        if hash_passwords is None:
            hash_passwords = self._runtime.bool_variable("admin-hash_passwords", True)
        if table is USERS and hash_passwords:
            return users.hashed(rows)
        return tuple(rows)

    def load_to_runtime(self, module_names: Sequence[str]) -> RuntimeConfig:
        """Check memory for these modules and put it in force as one new RuntimeConfig."""
        fields: dict[str, Any] = {}
        problems: list[str] = []
        for name in module_names:
            module_fields, module_problems = self._memory_for(MODULES[name])
            if "variables" in fields and "variables" in module_fields:
                prefix = MODULES[name].variable_prefix or ""
                merged = {k: v for k, v in fields["variables"].items() if not k.startswith(prefix)}
                merged.update({k: v for k, v in module_fields["variables"].items() if k.startswith(prefix)})
                module_fields["variables"] = MappingProxyType(dict(sorted(merged.items())))
            fields.update(module_fields)
            problems += module_problems
        if problems:
            shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
            raise AdminError(f"{', '.join(module_names)} not loaded to runtime, nothing changed: {shown}")
        if "users" in fields:
            in_force = fields.get("variables", self._runtime.variables)
            hash_passwords = variables.is_true(in_force.get("admin-hash_passwords", "true"))
            fields["users"] = self._in_force(USERS, fields["users"], hash_passwords)
        new = dataclasses.replace(self._runtime, version=self._runtime.version + 1, **fields)
        if self.on_runtime is not None:
            try:
                self.on_runtime(new)
            except Exception as exc:
                log.exception("the runtime configuration v%d was refused", new.version)
                raise AdminError(f"{', '.join(module_names)} not loaded to runtime: {exc}") from exc
        self._runtime = new
        now = int(time.time())
        for name in module_names:
            module = MODULES[name]
            value = (
                sorted((k, v) for k, v in new.variables.items() if k.startswith(module.variable_prefix))
                if module.variable_prefix else [getattr(new, t.runtime_field) for t in module.tables]
            )
            for checksum_name in CHECKSUM_NAMES.get(name, ()):
                version = self.checksums[checksum_name][0] + 1
                self.checksums[checksum_name] = (version, now, checksum(value))
        if "MYSQL VARIABLES" in module_names:
            self._fill_stats_variables()
        log.info("runtime configuration v%d in force (%s)", new.version, ", ".join(module_names))
        return new

    def load_all_to_runtime(self) -> RuntimeConfig:
        return self.load_to_runtime(list(MODULES))

    def save_all_to_disk(self) -> None:
        for module in MODULES.values():
            self._copy(module, "main", "disk")

    def load_all(self, direction: Direction) -> None:
        for name in MODULES:
            self.apply(name, direction)

    # --- pending changes ---------------------------------------------------------------------

    def pending_changes(self, module_names: Sequence[str] | None = None) -> list[pending.PendingChange]:
        changes: list[pending.PendingChange] = []
        for name in module_names or list(MODULES):
            module = MODULES[name]
            if module.variable_prefix:
                changes += pending.diff_variables(
                    name, self._variables("main", module.variable_prefix), self._runtime_variables(module.variable_prefix)
                )
                continue
            for table in module.tables:
                rows, problems = self.read_rows(table)
                if problems:
                    changes.append(pending.PendingChange(name, table.name, "changed", "*", problems[0], None))
                    continue
                in_force = getattr(self._runtime, table.runtime_field)
                if table is USERS:  # compared as they would be in force: hashed, a row per role
                    rows, in_force = users.runtime_rows(self._in_force(table, rows)), users.runtime_rows(in_force)
                changes += pending.diff_rows(name, table.name, rows, in_force, table.key)
        return changes

    def pending_warnings(self) -> list[str]:
        return pending.warnings(self.pending_changes())

    # --- tables filled on read ---------------------------------------------------------------

    def refresh(self, sql: str) -> None:
        """Fill the runtime_, stats, monitor and pending tables `sql` mentions."""
        for name in {m.lower() for m in _RUNTIME_TABLES.findall(sql)}:
            self._refresh_runtime(name.removeprefix("runtime_"))
        if _CHECKSUMS_TABLE.search(sql):
            self._refresh_checksums()
        for name in {m.lower() for m in _STATS_TABLES.findall(sql)}:
            self._refresh_provided("stats", name, self.providers.stats)
        for name in {m.lower() for m in _MONITOR_TABLES.findall(sql)}:
            self._refresh_provided("monitor", name, self.providers.monitor)
        if _PENDING_TABLE.search(sql):
            self._refresh_pending()

    def _refresh_runtime(self, table_name: str) -> None:
        with self.transaction():
            if table_name == "global_variables":
                self.db.execute("DELETE FROM main.runtime_global_variables")
                self.db.executemany(
                    "INSERT INTO main.runtime_global_variables VALUES (?, ?)", sorted(self._runtime.variables.items())
                )
            elif table_name in TABLE_OF:
                table = TABLE_OF[table_name]
                rows = self._runtime_rows(table)
                self._write_rows("main", table, users.runtime_rows(rows) if table is USERS else rows, prefix="runtime_")

    def _refresh_checksums(self) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM main.runtime_checksums_values")
            self.db.executemany(
                "INSERT INTO main.runtime_checksums_values VALUES (?, ?, ?, ?)",
                [(name, *values) for name, values in sorted(self.checksums.items())],
            )

    def _refresh_provided(
        self, schema_name: str, table: str, provider: Callable[[str], StatsRows | None] | None
    ) -> None:
        if provider is None:
            return
        try:
            rows = provider(table)
        except Exception as exc:
            log.exception("filling %s.%s failed", schema_name, table)
            raise AdminError(f"{schema_name}.{table} is unavailable: {exc}") from exc
        if rows is None:
            return
        known = self._columns(schema_name, table)
        with self.transaction():
            self.db.execute(f"DELETE FROM {schema_name}.{table}")
            for row in rows:
                names = [name for name in row if name in known]
                self.db.execute(
                    f"INSERT OR REPLACE INTO {schema_name}.{table} ({', '.join(names)}) "
                    f"VALUES ({', '.join('?' for _ in names)})",
                    [row[name] for name in names],
                )

    def _refresh_pending(self) -> None:
        changes = self.pending_changes()
        with self.transaction():
            self.db.execute("DELETE FROM main.turnout_pending_changes")
            self.db.executemany(
                "INSERT INTO main.turnout_pending_changes VALUES (?, ?, ?, ?, ?, ?)",
                [dataclasses.astuple(change) for change in changes],
            )
