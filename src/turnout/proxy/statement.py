"""What a statement does to the session: the facts that decide multiplexing. Pure functions.

A backend connection can go back to the pool between statements only when nothing about the
session lives on that connection alone. Session settings that can be replayed (SET NAMES,
SET SESSION x = literal, USE db) are tracked and restored on the next connection instead; state
that cannot be replayed (user variables, temporary tables, named locks, LOCK TABLES, SQL-level
prepared statements, a pending LAST_INSERT_ID / FOUND_ROWS) keeps the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache


class Keep(StrEnum):
    """Why a session keeps its backend connection; the text is what stats_mysql_processlist shows."""

    TRANSACTION = "transaction"
    OPEN_CURSOR = "open cursor"
    LONG_DATA = "long data"  # COM_STMT_SEND_LONG_DATA sent parameters that live on the connection
    RULE_NO_MULTIPLEX = "query rule multiplex=0"
    USER_VARIABLE = "user variable"
    TEMPORARY_TABLE = "temporary table"
    NAMED_LOCK = "named lock"
    TABLE_LOCK = "LOCK TABLES"
    SQL_PREPARE = "SQL PREPARE"
    UNTRACKED_SET = "SET that cannot be replayed"
    NEXT_TRANSACTION = "SET TRANSACTION for the next transaction"
    XA_TRANSACTION = "XA transaction"
    HANDLER = "HANDLER"


@dataclass(frozen=True, slots=True)
class StatementInfo:
    is_write: bool
    # Session variables to replay on any backend connection: name -> SQL value text.
    sets: tuple[tuple[str, str], ...] = ()
    names: str | None = None  # SET NAMES charset [COLLATE x]
    use_schema: str | None = None
    # Why the backend connection must stay with the session after this statement.
    keeps_backend: Keep | None = None
    unlock_tables: bool = False
    reads_last_insert_id: bool = False
    calc_found_rows: bool = False
    reads_found_rows: bool = False
    # Reads the previous statement's diagnostics: SHOW WARNINGS / ERRORS, @@warning_count,
    # @@error_count, ROW_COUNT(), FOUND_ROWS(), GET DIAGNOSTICS.
    reads_diagnostics: bool = False
    releases: frozenset[str] = field(default_factory=frozenset)


_LEADING_NOISE = re.compile(r"^(?:\s+|/\*(?![!+]).*?\*/|(?:--\s|#)[^\n]*\n?)+", re.DOTALL)
_FIRST_WORD = re.compile(r"[A-Za-z]+")
_READ_WORDS = frozenset({"SELECT", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "HELP", "WITH", "VALUES", "TABLE"})
_USER_VAR = re.compile(r"(?<![@\w])@(?!@)[\w$.]+|(?<![@\w])@[`'\"]")
_TEMP_TABLE = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\s+TABLE", re.IGNORECASE)
_LOCK_FUNCS = re.compile(r"\b(?:GET_LOCK|IS_USED_LOCK)\s*\(", re.IGNORECASE)
_SET_ASSIGN = re.compile(
    r"""\s*(?:(?:SESSION|LOCAL)\s+|@@(?:SESSION\.|LOCAL\.)?)?
        (?P<name>[A-Za-z_][\w]*)\s*(?::=|=)\s*
        (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[-+]?\d+(?:\.\d+)?|[A-Za-z_][\w]*|\([^()]*\))\s*""",
    re.VERBOSE | re.IGNORECASE,
)
_SET_NAMES = re.compile(
    r"^\s*SET\s+(?:NAMES|CHARACTER\s+SET|CHARSET)\s+('?)(?P<charset>[\w]+)\1(?:\s+COLLATE\s+('?)(?P<collate>[\w]+)\3)?\s*;?\s*$",
    re.IGNORECASE,
)
_USE = re.compile(r"^\s*USE\s+`?(?P<schema>[^`;\s]+)`?\s*;?\s*$", re.IGNORECASE)
_DIAGNOSTICS = re.compile(
    r"^SHOW\s+(?:WARNINGS|ERRORS|COUNT\s*\(\s*\*\s*\)\s+(?:WARNINGS|ERRORS))\b|^GET\s+(?:CURRENT\s+)?DIAGNOSTICS\b"
    r"|@@(?:SESSION\.)?(?:WARNING|ERROR)_COUNT\b|\bROW_COUNT\s*\(",
    re.IGNORECASE,
)
# A quoted string: runs of plain characters taken whole (`[^'\\]*`), escapes and doubled quotes
# between them. One alternation per character instead would cost seconds for a literal of
# megabytes, on the event loop.
_STRING = re.compile(r"'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|\"[^\"\\]*(?:(?:\\.|\"\")[^\"\\]*)*\"")

# Variables whose SET starts or shapes a transaction rather than the session.
_TRANSACTION_SETS = frozenset({"transaction_isolation", "tx_isolation", "transaction_read_only", "tx_read_only"})


def strip_leading_comments(sql: str) -> str:
    return _LEADING_NOISE.sub("", sql, count=1)


def first_word(sql: str) -> str:
    match = _FIRST_WORD.match(strip_leading_comments(sql))
    return match.group().upper() if match else ""


def _without_strings(sql: str) -> str:
    return _STRING.sub("''", sql)


def _parse_set(body: str) -> tuple[tuple[str, str], ...] | None:
    """`a = 1, SESSION b = 'x'` -> ((a, 1), (b, 'x')); None when it is not a plain list of assignments."""
    assignments: list[tuple[str, str]] = []
    pos = 0
    body = body.rstrip().rstrip(";")
    while pos < len(body):
        match = _SET_ASSIGN.match(body, pos)
        if match is None:
            return None
        assignments.append((match.group("name").lower(), match.group("value")))
        pos = match.end()
        if pos < len(body):
            if body[pos] != ",":
                return None
            pos += 1
    return tuple(assignments) if assignments else None


@lru_cache(maxsize=8192)
def analyze(sql: str) -> StatementInfo:
    text = strip_leading_comments(sql)
    word_match = _FIRST_WORD.match(text)
    word = word_match.group().upper() if word_match else ""
    bare = _without_strings(text)
    upper = bare.upper()
    is_write = word not in _READ_WORDS or " FOR UPDATE" in upper or "LOCK IN SHARE MODE" in upper
    keeps: Keep | None = None
    if "@" in bare and _USER_VAR.search(bare):
        keeps = Keep.USER_VARIABLE
    if "LOCK" in upper and _LOCK_FUNCS.search(bare):
        keeps = Keep.NAMED_LOCK
    reads_last_id = "LAST_INSERT_ID" in upper
    reads_found = "FOUND_ROWS" in upper
    calc_found = "SQL_CALC_FOUND_ROWS" in upper
    diagnostics = reads_found or (
        ("COUNT" in upper or "WARNINGS" in upper or "ERRORS" in upper or "DIAGNOSTICS" in upper)
        and _DIAGNOSTICS.search(bare) is not None
    )
    if word == "SET":
        names = _SET_NAMES.match(text)
        if names:
            charset = names.group("charset")
            collate = names.group("collate")
            value = f"{charset} COLLATE {collate}" if collate else charset
            return StatementInfo(is_write=False, names=value)
        rest = text[3:]
        if re.match(r"\s+(?:GLOBAL\b|@@GLOBAL\.)", rest, re.IGNORECASE):
            return StatementInfo(is_write=True)
        if re.match(r"\s+(?:SESSION\s+|LOCAL\s+)?TRANSACTION\b", rest, re.IGNORECASE):
            return StatementInfo(is_write=False, keeps_backend=Keep.NEXT_TRANSACTION)
        assignments = _parse_set(rest)
        if assignments is None or keeps == Keep.USER_VARIABLE:
            return StatementInfo(is_write=False, keeps_backend=keeps or Keep.UNTRACKED_SET)
        if any(name in _TRANSACTION_SETS for name, _ in assignments):
            return StatementInfo(is_write=False, keeps_backend=Keep.NEXT_TRANSACTION)
        return StatementInfo(is_write=False, sets=assignments)
    if word == "USE":
        use = _USE.match(text)
        if use:
            return StatementInfo(is_write=False, use_schema=use.group("schema"))
    if word == "CREATE" and _TEMP_TABLE.match(text):
        keeps = Keep.TEMPORARY_TABLE
    elif word == "LOCK":
        keeps = Keep.TABLE_LOCK
    elif word == "UNLOCK":
        return StatementInfo(is_write=False, unlock_tables=True)
    elif word == "PREPARE":
        keeps = Keep.SQL_PREPARE
    elif word == "XA":
        keeps = Keep.XA_TRANSACTION
    elif word == "HANDLER":
        keeps = Keep.HANDLER
    return StatementInfo(
        is_write=is_write,
        keeps_backend=keeps,
        reads_last_insert_id=reads_last_id,
        calc_found_rows=calc_found,
        reads_found_rows=reads_found,
        reads_diagnostics=diagnostics,
    )


# Character sets MariaDB knows; SET NAMES with one of these cannot fail.
KNOWN_CHARSETS = frozenset({
    "armscii8", "ascii", "big5", "binary", "cp1250", "cp1251", "cp1256", "cp1257", "cp850", "cp852",
    "cp866", "cp932", "dec8", "eucjpms", "euckr", "gb2312", "gbk", "geostd8", "greek", "hebrew", "hp8",
    "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7", "macce", "macroman", "sjis",
    "swe7", "tis620", "ucs2", "ujis", "utf16", "utf16le", "utf32", "utf8", "utf8mb3", "utf8mb4",
})
_BOOLEAN_VALUES = frozenset({"0", "1", "on", "off", "true", "false"})


def settles_locally(info: StatementInfo) -> bool:
    """A settings change that cannot fail on any server, so the proxy may answer it itself and
    replay it on the next backend connection: what connectors send right after connecting
    (SET NAMES with a known charset, SET autocommit). Answering these without a backend lets a
    client connect and read while its default hostgroup has no usable server."""
    if info.names is not None:
        charset, _, collation = info.names.partition(" COLLATE ")
        return charset.lower() in KNOWN_CHARSETS and (
            not collation or collation.lower().startswith(charset.lower() + "_") or collation.lower() == "binary"
        )
    return bool(info.sets) and all(
        name == "autocommit" and value.strip("'\"").lower() in _BOOLEAN_VALUES for name, value in info.sets
    )


_KILL = re.compile(
    r"^\s*KILL(?:\s+(?:HARD|SOFT))?(?:\s+(?P<what>CONNECTION|QUERY))?\s+(?P<id>\d+)\s*;?\s*$", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class KillRequest:
    """`KILL [HARD|SOFT] [CONNECTION|QUERY] id`, or COM_PROCESS_KILL (a KILL CONNECTION)."""

    thread_id: int
    query_only: bool


def parse_kill(sql: str) -> KillRequest | None:
    """The KILL a statement asks for; None when it is not a KILL by thread id (KILL USER and
    KILL QUERY ID, which name the server's threads and queries, are among those)."""
    match = _KILL.match(strip_leading_comments(sql))
    if match is None:
        return None
    return KillRequest(int(match.group("id")), (match.group("what") or "").upper() == "QUERY")
