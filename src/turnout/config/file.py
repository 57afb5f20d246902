"""The configuration file: TOML with proxysql.cnf's sections and keys.

```toml
datadir = "/var/lib/turnout"
[admin_variables]            # admin-* without the prefix
mysql_ifaces = "127.0.0.1:6032"
[mysql_variables]            # mysql-* without the prefix (monitor_* included)
interfaces = "127.0.0.1:6033"
[[mysql_servers]]            # address (or hostname), port, hostgroup (or hostgroup_id), ...
[[mysql_users]]
[[mysql_query_rules]]
[[mysql_replication_hostgroups]]
[[scheduler]]
[manager]                    # passed through untouched
```

Unknown keys and bad values raise `ConfigError`, whose message names the file and line of each
problem (tomllib gives no positions, so `locate` finds them by scanning the text).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from turnout.config import validate, variables
from turnout.config.model import (
    MysqlServer,
    MysqlUser,
    ProxysqlServer,
    QueryRule,
    ReplicationHostgroup,
    RuntimeConfig,
    SchedulerJob,
)
from turnout.config.rows import build_row
from turnout.output import UserError


class ConfigError(UserError):
    """The file cannot be used; `problems` holds (line or None, message) for each reason."""

    def __init__(self, source: str, problems: Sequence[tuple[int | None, str]]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = [f"{source}:{line}: {text}" if line else f"{source}: {text}" for line, text in problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RowSection:
    row_type: type[Any]
    check: Callable[[Sequence[Any]], list[validate.Problem]]
    aliases: Mapping[str, str] = field(default_factory=dict)  # proxysql.cnf key -> column


ROW_SECTIONS: Mapping[str, RowSection] = {
    "mysql_servers": RowSection(
        MysqlServer, validate.server_problems, {"address": "hostname", "hostgroup": "hostgroup_id"}
    ),
    "mysql_users": RowSection(MysqlUser, validate.user_problems),
    "mysql_query_rules": RowSection(QueryRule, validate.query_rule_problems),
    "mysql_replication_hostgroups": RowSection(ReplicationHostgroup, validate.replication_hostgroup_problems),
    "scheduler": RowSection(SchedulerJob, validate.scheduler_problems),
    "proxysql_servers": RowSection(ProxysqlServer, validate.proxysql_server_problems),
}
VARIABLE_SECTIONS = {"mysql_variables": "mysql-", "admin_variables": "admin-"}
PASSTHROUGH_SECTIONS = ("manager",)
TOP_LEVEL_KEYS = ("datadir",)


@dataclass(frozen=True)
class ConfigFile:
    path: Path | None = None
    datadir: Path | None = None
    # Full ProxySQL names ("mysql-interfaces", "admin-mysql_ifaces"), only those the file sets.
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    servers: tuple[MysqlServer, ...] = ()
    users: tuple[MysqlUser, ...] = ()
    query_rules: tuple[QueryRule, ...] = ()
    replication_hostgroups: tuple[ReplicationHostgroup, ...] = ()
    scheduler: tuple[SchedulerJob, ...] = ()
    proxysql_servers: tuple[ProxysqlServer, ...] = ()
    manager: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def data_directory(self) -> Path:
        """Where every role keeps its state (admin disk layer, state store, TLS certificates):
        `datadir`, else the configuration file's directory, else the working directory."""
        if self.datadir is not None:
            return self.datadir
        return self.path.parent if self.path is not None else Path(".")

    def all_variables(self) -> dict[str, str]:
        """Every variable turnout implements: the file's values over the defaults."""
        return {**variables.defaults(), **self.variables}

    def runtime_config(self, version: int = 1) -> RuntimeConfig:
        """The file as a RuntimeConfig, for running without the admin layer."""
        return RuntimeConfig(
            version=version,
            servers=self.servers,
            users=self.users,
            query_rules=tuple(sorted(self.query_rules, key=lambda rule: rule.rule_id)),
            replication_hostgroups=self.replication_hostgroups,
            scheduler=self.scheduler,
            proxysql_servers=self.proxysql_servers,
            variables=MappingProxyType(self.all_variables()),
        )


# --- finding lines ---------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"'-]+?)\s*\]\]?\s*(?:#.*)?$")


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")


def locate(text: str, section: str | None, index: int | None = None, key: str | None = None) -> int | None:
    """The 1-based line of `key` in `section` (the `index`-th table of an array of tables), else
    the line of that table's header, else of `section = ...`; None when nothing matches."""
    counts: dict[str, int] = {}
    current: tuple[str, int | None] | None = None
    target = None if section is None else (section, index)
    header_line = None
    assignment_line = None
    key_re = _key_pattern(key) if key else None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            name = header.group(2).strip("\"'")
            if header.group(1) == "[[":
                counts[name] = counts.get(name, -1) + 1
                current = (name, counts[name])
            else:
                current = (name, None)
            if header_line is None and target is not None and current[0] == target[0]:
                header_line = number if target[1] in (None, current[1]) else None
            continue
        if current is None and section is not None and _key_pattern(section).match(line):
            assignment_line = number
        if key_re and current == target and key_re.match(line):
            return number
    return header_line or assignment_line


def parse(text: str, source: str = "<config>", path: Path | None = None) -> ConfigFile:
    """A ConfigFile from TOML text; ConfigError naming every problem's line."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        raise ConfigError(source, [(line, f"not valid TOML: {exc}")]) from None
    problems: list[tuple[int | None, str]] = []

    def report(section: str | None, index: int | None, key: str | None, message: str) -> None:
        problems.append((locate(text, section, index, key), message))

    datadir: Path | None = None
    found_vars: dict[str, str] = {}
    rows: dict[str, list[Any]] = {name: [] for name in ROW_SECTIONS}
    manager: dict[str, Any] = {}
    for name, value in document.items():
        if name == "datadir":
            if isinstance(value, str) and value:
                datadir = Path(value)
            else:
                report(None, None, name, f"datadir must be a non-empty string, not {value!r}")
        elif name in VARIABLE_SECTIONS:
            if not isinstance(value, dict):
                report(None, None, name, f"[{name}] must be a table")
                continue
            for key, raw in value.items():
                full = VARIABLE_SECTIONS[name] + key
                if isinstance(raw, dict | list):
                    report(name, None, key, f"{name}.{key} must be a string, number or boolean")
                    continue
                reason = variables.problem(full, variables.normalise(raw))
                if reason:
                    report(name, None, key, f"[{name}] {key}: {reason}")
                else:
                    found_vars[full] = variables.normalise(raw)
        elif name in ROW_SECTIONS:
            entries = value if isinstance(value, list) else [value]
            spec = ROW_SECTIONS[name]
            built: list[tuple[int, Any]] = []
            for index, table in enumerate(entries):
                if not isinstance(table, dict):
                    report(name, index, None, f"{name}: each entry must be a table, not {table!r}")
                    continue
                row, row_problems = build_row(spec.row_type, table, f"{name}[{index}]", spec.aliases)
                for key, message in row_problems:
                    report(name, index, key, message)
                if row is not None:
                    built.append((index, row))
            for position, column, message in spec.check([row for _, row in built]):
                index = built[position][0]
                given = entries[index]
                key = next((k for k, c in spec.aliases.items() if c == column and k in given), column)
                report(name, index, key, message)
            rows[name] = [row for _, row in built]
        elif name in PASSTHROUGH_SECTIONS:
            if isinstance(value, dict):
                manager = value
            else:
                report(None, None, name, f"[{name}] must be a table")
        else:
            report(name, None, None, f"unknown section or key {name!r}")
    if problems:
        problems.sort(key=lambda problem: (problem[0] or 0))
        raise ConfigError(source, problems)
    return ConfigFile(
        path=path,
        datadir=datadir,
        variables=MappingProxyType(found_vars),
        servers=tuple(rows["mysql_servers"]),
        users=tuple(rows["mysql_users"]),
        query_rules=tuple(rows["mysql_query_rules"]),
        replication_hostgroups=tuple(rows["mysql_replication_hostgroups"]),
        scheduler=tuple(rows["scheduler"]),
        proxysql_servers=tuple(rows["proxysql_servers"]),
        manager=MappingProxyType(manager),
    )


def load_config(path: str | Path) -> ConfigFile:
    """Read and check the configuration file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [(None, f"cannot read: {exc.strerror or exc}")]) from None
    config = parse(text, source=str(path), path=path.resolve())
    if config.datadir is not None and not config.datadir.is_absolute():
        config = dataclasses.replace(config, datadir=(path.parent / config.datadir).resolve())
    return config
