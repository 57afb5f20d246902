"""What an admin statement is: LOAD/SAVE (with all of ProxySQL's aliases), SHOW ..., the probes
clients send on connect, SET, harmless no-ops, or plain SQL for SQLite. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

from turnout.admin.modules import MODULES, Direction
from turnout.admin.schema import UNMANAGED_TABLES


@dataclass(frozen=True)
class LoadSave:
    module: str  # a key of MODULES
    direction: Direction


@dataclass(frozen=True)
class ShowTables:
    schema: str | None
    like: str | None


@dataclass(frozen=True)
class ShowDatabases:
    pass


@dataclass(frozen=True)
class ShowCreateTable:
    table: str  # as written, maybe schema-qualified


@dataclass(frozen=True)
class ShowVariables:
    prefix: str  # "" for all, "mysql-" or "admin-"
    like: str | None


@dataclass(frozen=True)
class ShowWarnings:
    pass


@dataclass(frozen=True)
class Rewritten:
    """A MySQL statement answered by a SQLite query on the admin tables."""

    sql: str


@dataclass(frozen=True)
class Probe:
    """`SELECT @@var [AS alias], FUNC() ...`: session probes clients send; items are (expr, label)."""

    items: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SetVariable:
    """`SET mysql-xxx = value` / `SET admin-xxx = value`: an edit of global_variables in memory."""

    name: str
    value: str


@dataclass(frozen=True)
class Ignored:
    """Accepted and answered with OK: session settings, transactions, ProxySQL housekeeping."""

    reason: str


@dataclass(frozen=True)
class AdminReadOnly:
    """`PROXYSQL READONLY` / `PROXYSQL READWRITE`: admin-read_only in force, at once."""

    on: bool


@dataclass(frozen=True)
class Refused:
    message: str


@dataclass(frozen=True)
class Sql:
    """Anything else: executed by SQLite. `writes` names the table it modifies, if any."""

    sql: str
    writes: str | None = None


Statement = (
    LoadSave | ShowTables | ShowDatabases | ShowCreateTable | ShowVariables | ShowWarnings | Rewritten | Probe
    | SetVariable | Ignored | AdminReadOnly | Refused | Sql
)

_MODULE = r"(?P<module>MYSQL\s+SERVERS|MYSQL\s+USERS|MYSQL\s+QUERY\s+RULES|MYSQL\s+VARIABLES|ADMIN\s+VARIABLES|SCHEDULER|PROXYSQL\s+SERVERS)"
_LOAD_SAVE = re.compile(
    rf"^(?P<verb>LOAD|SAVE)\s+{_MODULE}\s+(?P<prep>TO|FROM)\s+(?P<place>RUNTIME|RUN|MEMORY|MEM|DISK|CONFIG)$",
    re.IGNORECASE,
)
_LOAD_SAVE_ANY = re.compile(r"^(LOAD|SAVE)\s", re.IGNORECASE)

# (verb, preposition, place) -> direction; ProxySQL's aliases, all of them.
DIRECTIONS: dict[tuple[str, str, str], Direction] = {
    ("LOAD", "TO", "RUNTIME"): Direction.MEMORY_TO_RUNTIME,
    ("LOAD", "TO", "RUN"): Direction.MEMORY_TO_RUNTIME,
    ("LOAD", "FROM", "MEMORY"): Direction.MEMORY_TO_RUNTIME,
    ("LOAD", "FROM", "MEM"): Direction.MEMORY_TO_RUNTIME,
    ("SAVE", "TO", "MEMORY"): Direction.RUNTIME_TO_MEMORY,
    ("SAVE", "TO", "MEM"): Direction.RUNTIME_TO_MEMORY,
    ("SAVE", "FROM", "RUNTIME"): Direction.RUNTIME_TO_MEMORY,
    ("SAVE", "FROM", "RUN"): Direction.RUNTIME_TO_MEMORY,
    ("LOAD", "TO", "MEMORY"): Direction.DISK_TO_MEMORY,
    ("LOAD", "TO", "MEM"): Direction.DISK_TO_MEMORY,
    ("LOAD", "FROM", "DISK"): Direction.DISK_TO_MEMORY,
    ("SAVE", "TO", "DISK"): Direction.MEMORY_TO_DISK,
    ("SAVE", "FROM", "MEMORY"): Direction.MEMORY_TO_DISK,
    ("SAVE", "FROM", "MEM"): Direction.MEMORY_TO_DISK,
    ("LOAD", "FROM", "CONFIG"): Direction.CONFIG_TO_MEMORY,
}

_LEADING_COMMENT = re.compile(r"^\s*(?:/\*(?!!).*?\*/\s*|--[^\n]*\n\s*|#[^\n]*\n\s*)*", re.DOTALL)
_NAME = r"(?:`[^`]+`|\"[^\"]+\"|[\w$]+)"
_QUALIFIED = rf"(?:{_NAME}\.)?{_NAME}"
_STRING = r"(?:'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.)*\")"

_SHOW_TABLES = re.compile(rf"^SHOW\s+(?:FULL\s+)?TABLES(?:\s+(?:FROM|IN)\s+(?P<schema>{_NAME}))?"
                          rf"(?:\s+LIKE\s+(?P<like>{_STRING}))?$", re.IGNORECASE)
_SHOW_DATABASES = re.compile(r"^SHOW\s+(?:DATABASES|SCHEMAS)$", re.IGNORECASE)
_SHOW_CREATE = re.compile(rf"^SHOW\s+CREATE\s+TABLE\s+(?P<table>{_QUALIFIED})$", re.IGNORECASE)
_SHOW_VARIABLES = re.compile(
    rf"^SHOW\s+(?:(?P<which>MYSQL|ADMIN)\s+|(?:GLOBAL|SESSION)\s+)?VARIABLES(?:\s+LIKE\s+(?P<like>{_STRING}))?$",
    re.IGNORECASE,
)
_SHOW_WARNINGS = re.compile(r"^SHOW\s+(?:WARNINGS|ERRORS)(?:\s+LIMIT\s+\d+(?:\s*,\s*\d+)?)?$", re.IGNORECASE)
_SHOW_COUNT_WARNINGS = re.compile(r"^SHOW\s+COUNT\(\*\)\s+WARNINGS$", re.IGNORECASE)
_SHOW_PROCESSLIST = re.compile(r"^SHOW\s+(?P<full>FULL\s+)?PROCESSLIST$", re.IGNORECASE)
_SHOW_STATUS = re.compile(rf"^SHOW\s+(?:MYSQL\s+|GLOBAL\s+)?STATUS(?:\s+LIKE\s+(?P<like>{_STRING}))?$", re.IGNORECASE)
_SET_VARIABLE = re.compile(
    rf"^SET\s+(?:GLOBAL\s+)?[`'\"]?(?P<name>(?:mysql|admin)-[\w-]+)[`'\"]?\s*=\s*(?P<value>{_STRING}|[^\s;]+)$",
    re.IGNORECASE,
)
_SET_ANY = re.compile(r"^SET\s", re.IGNORECASE)
_TRANSACTION = re.compile(
    r"^(?:BEGIN(?:\s+WORK)?|START\s+TRANSACTION.*|COMMIT(?:\s+WORK)?|ROLLBACK(?:\s+WORK)?)$", re.IGNORECASE
)
_USE = re.compile(rf"^USE\s+{_NAME}$", re.IGNORECASE)
_PROXYSQL = re.compile(r"^PROXYSQL\s+(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_PROXYSQL_NOOPS = re.compile(r"^(?:FLUSH\s+(?:LOGS|QUERY\s+CACHE|MYSQL\s+CLIENT\s+HOSTS|CONFIGDB)|PAUSE|RESUME)$",
                             re.IGNORECASE)
_TRUNCATE = re.compile(rf"^TRUNCATE\s+(?:TABLE\s+)?(?P<table>{_QUALIFIED})$", re.IGNORECASE)
_WRITE = re.compile(
    rf"^(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+(?P<table>{_QUALIFIED})",
    re.IGNORECASE,
)
_SCHEMA_CHANGE = re.compile(r"^(?P<verb>DROP|ALTER|CREATE|ATTACH|DETACH|VACUUM|REINDEX)\b", re.IGNORECASE)
_PRAGMA_WRITE = re.compile(r"^PRAGMA\s+[^=]+=", re.IGNORECASE)

_PROBE_ITEM = re.compile(
    rf"^(?P<expr>@@(?:(?:global|session|local)\.)?\w+|\w+\(\s*\))(?:\s+(?:AS\s+)?(?P<alias>{_NAME}|{_STRING}))?$",
    re.IGNORECASE,
)
_PROBE_SELECT = re.compile(r"^SELECT\s+(?P<items>.*?)(?:\s+LIMIT\s+\d+)?$", re.IGNORECASE | re.DOTALL)


def unquote(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "`\"'":
        return name[1:-1]
    return name


def string_literal(text: str) -> str:
    """The value of a quoted SQL string as written in a statement."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        body = text[1:-1]
        return re.sub(r"\\(.)", r"\1", body.replace(text[0] * 2, text[0]))
    return text


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def strip(sql: str) -> str:
    """The statement without leading comments, surrounding blanks and trailing semicolons."""
    return _LEADING_COMMENT.sub("", sql).strip().rstrip(";").rstrip()


def _probe(text: str) -> Probe | None:
    match = _PROBE_SELECT.match(text)
    if not match:
        return None
    items = []
    for part in match.group("items").split(","):
        item = _PROBE_ITEM.match(part.strip())
        if not item:
            return None
        expr = item.group("expr")
        if not expr.startswith("@@") and expr.split("(")[0].upper() not in PROBE_FUNCTIONS:
            return None
        alias = item.group("alias")
        items.append((expr, unquote(alias) if alias else part.strip()))
    return Probe(tuple(items))


PROBE_FUNCTIONS = ("DATABASE", "SCHEMA", "USER", "CURRENT_USER", "SESSION_USER", "SYSTEM_USER",
                   "CONNECTION_ID", "VERSION")


def _like_clause(column: str, like: str | None) -> str:
    return f" WHERE {column} LIKE {quote(string_literal(like))}" if like else ""


def classify(sql: str) -> Statement:
    text = strip(sql)
    flat = " ".join(text.split())
    if _LOAD_SAVE_ANY.match(flat):
        match = _LOAD_SAVE.match(flat)
        if match is None:
            return Refused(f"unknown command {flat!r}: write LOAD|SAVE <{' | '.join(MODULES)}> TO|FROM <place>")
        module = " ".join(match.group("module").upper().split())
        key = (match.group("verb").upper(), match.group("prep").upper(), match.group("place").upper())
        direction = DIRECTIONS.get(key)
        if direction is None:
            forms = sorted(" ".join(k) for k in DIRECTIONS)
            return Refused(f"{key[0]} {module} {key[1]} {key[2]} is not a valid form; use one of: {', '.join(forms)}")
        return LoadSave(module, direction)
    if match := _SHOW_TABLES.match(flat):
        schema = match.group("schema")
        return ShowTables(unquote(schema) if schema else None, match.group("like"))
    if _SHOW_DATABASES.match(flat):
        return ShowDatabases()
    if match := _SHOW_CREATE.match(flat):
        return ShowCreateTable(".".join(unquote(part) for part in match.group("table").split(".")))
    if match := _SHOW_VARIABLES.match(flat):
        which = (match.group("which") or "").lower()
        return ShowVariables(f"{which}-" if which else "", match.group("like"))
    if _SHOW_WARNINGS.match(flat):
        return ShowWarnings()
    if _SHOW_COUNT_WARNINGS.match(flat):
        return Rewritten("SELECT 0 AS '@@session.warning_count'")
    if match := _SHOW_PROCESSLIST.match(flat):  # ProxySQL's two rewrites
        if match.group("full"):
            return Rewritten("SELECT * FROM stats_mysql_processlist")
        return Rewritten("SELECT SessionID, user, db, hostgroup, command, time_ms, SUBSTR(info,0,100) info "
                         "FROM stats_mysql_processlist")
    if match := _SHOW_STATUS.match(flat):
        like = _like_clause("Variable_Name", match.group("like"))
        return Rewritten(f"SELECT Variable_Name, Variable_Value FROM stats_mysql_global{like}")
    if match := _SET_VARIABLE.match(text):
        return SetVariable(match.group("name").lower(), string_literal(match.group("value")))
    if _SET_ANY.match(flat):
        return Ignored("session setting")
    if _TRANSACTION.match(flat) or _USE.match(flat):
        return Ignored("no transactions or schemas on the admin interface")
    if match := _PROXYSQL.match(flat):
        rest = " ".join(match.group("rest").upper().split())
        if rest in ("READONLY", "READWRITE"):
            return AdminReadOnly(rest == "READONLY")
        if _PROXYSQL_NOOPS.match(match.group("rest").strip()):
            return Ignored("nothing to flush")
        return Refused(f"PROXYSQL {match.group('rest')} is not supported by turnout")
    if match := _TRUNCATE.match(flat):
        return Sql(f"DELETE FROM {match.group('table')}", writes=_bare(match.group("table")))
    if probe := _probe(text):
        return probe
    if match := _SCHEMA_CHANGE.match(flat):
        return Refused(f"{match.group('verb').upper()} is not allowed: the admin tables are ProxySQL's and fixed")
    if _PRAGMA_WRITE.match(flat):
        return Refused("PRAGMA assignments are not allowed on the admin interface")
    if match := _WRITE.match(flat):
        table = _bare(match.group("table"))
        if table.startswith("runtime_") or table == "turnout_pending_changes":
            source = table.removeprefix("runtime_")
            return Refused(f"{table} shows what is in force and cannot be edited: edit {source} and LOAD it TO RUNTIME")
        if table == "mysql_hostgroup_attributes":
            return Refused(f"{table} stays empty in turnout: per-hostgroup attributes are not implemented")
        if table in UNMANAGED_TABLES:
            return Refused(f"{table} stays empty in turnout: it manages asynchronous replication "
                           "(mysql_replication_hostgroups), not Galera or group replication clusters")
        return Sql(text, writes=table)
    return Sql(text)


def _bare(qualified: str) -> str:
    """`main.mysql_servers` -> `mysql_servers`, lower case."""
    return unquote(qualified.split(".")[-1]).lower()
