"""Property tests on the pure pieces of the session: statement analysis, query rules, session
settings replay and digests."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import example, given, settings
from hypothesis import strategies as st

from turnout.config.model import QueryRule
from turnout.proxy.digest import digest_text
from turnout.proxy.rules import RuleOutcome, compile_rules, evaluate
from turnout.proxy.settings import SessionSettings, restore_statements
from turnout.proxy.statement import analyze

# ---- statement analysis -------------------------------------------------------------------------
SQL_WORDS = ["SELECT", "select", "INSERT", "SET", "set", "USE", "LOCK", "UNLOCK", "CREATE", "TEMPORARY", "TABLE",
             "NAMES", "SESSION", "GLOBAL", "TRANSACTION", "@a", "@@x", "'s'", "\"q\"", "`i`", "=", ":=", ",", ";",
             "(", ")", "FOR UPDATE", "GET_LOCK(", "LAST_INSERT_ID()", "SQL_CALC_FOUND_ROWS", "/*", "*/", "/*!",
             "--", "#", "\n", " ", "1", "-2", "x", "COLLATE", "utf8mb4", "DEFAULT", "XA", "PREPARE", "HANDLER"]
sqlish = st.lists(st.sampled_from(SQL_WORDS), max_size=12).map(" ".join)
any_sql = st.one_of(st.text(max_size=200), sqlish)


@given(any_sql)
def test_analyze_never_raises_and_is_stable(sql: str) -> None:
    info = analyze(sql)
    assert analyze.__wrapped__(sql) == info  # the same without the cache
    assert analyze(sql) == info


leading_noise = st.lists(
    st.sampled_from([" ", "\n", "\t", "/* note */", "/*x*/", "-- comment\n", "# comment\n"]), min_size=1, max_size=4
).map("".join)


@given(leading_noise, sqlish)
def test_leading_whitespace_and_comments_change_nothing(noise: str, sql: str) -> None:
    assert analyze(noise + sql) == analyze(sql)


# ---- query rules against a reference model of ProxySQL's walk -------------------------------------
PATTERNS = ["^SELECT", "FOR UPDATE", "^INSERT", "t1", "\\?", ".", "^select.*from t2", "^UPDATE"]
QUERIES = ["SELECT * FROM t1", "SELECT a FROM t1 WHERE id = 5 FOR UPDATE", "select b from t2 where x = 'y'",
           "INSERT INTO t1 VALUES (1)", "UPDATE t2 SET a = 3", "SHOW TABLES", "DELETE FROM t1"]
USERS = ["app", "reporting"]
SCHEMAS = ["shop", "stats", None]


@st.composite
def query_rules(draw: st.DrawFn) -> list[QueryRule]:
    count = draw(st.integers(0, 7))
    ids = draw(st.lists(st.integers(1, 100), min_size=count, max_size=count, unique=True))
    flags = st.sampled_from([0, 0, 1, 2])
    rules = []
    for rule_id in ids:
        rules.append(QueryRule(
            rule_id=rule_id,
            active=draw(st.sampled_from([1, 1, 1, 0])),
            username=draw(st.sampled_from([None, None, "", *USERS])),
            schemaname=draw(st.sampled_from([None, None, "", "shop", "stats"])),
            flagIN=draw(flags),
            flagOUT=draw(st.one_of(st.none(), flags)),
            match_digest=draw(st.one_of(st.none(), st.sampled_from(PATTERNS))),
            match_pattern=draw(st.one_of(st.none(), st.sampled_from(PATTERNS))),
            negate_match_pattern=draw(st.sampled_from([0, 0, 1])),
            re_modifiers=draw(st.sampled_from(["CASELESS", "", "CASELESS,GLOBAL"])),
            destination_hostgroup=draw(st.one_of(st.none(), st.sampled_from([10, 20, 30]))),
            error_msg=draw(st.one_of(st.none(), st.just(f"refused by {rule_id}"))),
            OK_msg=draw(st.one_of(st.none(), st.just(f"ok by {rule_id}"))),
            multiplex=draw(st.one_of(st.none(), st.sampled_from([0, 1, 2]))),
            timeout=draw(st.one_of(st.none(), st.integers(0, 5000))),
            gtid_from_hostgroup=draw(st.one_of(st.none(), st.sampled_from([10, 30]))),
            apply=draw(st.sampled_from([0, 1])),
        ))
    return rules


@dataclass
class ModelOutcome:
    hostgroup: int | None = None
    rule_id: int | None = None
    error_msg: str | None = None
    ok_msg: str | None = None
    multiplex: int | None = None
    timeout_ms: int | None = None
    gtid_from_hostgroup: int | None = None
    matched: list[int] = field(default_factory=list)  # each one's hits count goes up


def proxysql_walk(rules: list[QueryRule], query: str, digest: str, user: str, schema: str | None) -> RuleOutcome:
    """ProxySQL's Query_Processor walk (mysql-query_processor_iterations = 0, its default):
    active rules in rule_id order; a rule is considered only while its flagIN is the current
    flag; an empty username/schemaname matches anyone; negate_match_pattern inverts both
    match_digest and match_pattern; every matching rule overrides the actions it sets, its
    flagOUT becomes the flag for the rules after it, and apply=1 ends the walk."""
    flag = 0
    out = ModelOutcome()
    for rule in sorted((r for r in rules if r.active), key=lambda r: r.rule_id):
        if rule.flagIN != flag:
            continue
        if rule.username and rule.username != user:
            continue
        if rule.schemaname and rule.schemaname != schema:
            continue
        flags = re.IGNORECASE if "CASELESS" in rule.re_modifiers else 0
        negate = bool(rule.negate_match_pattern)
        if rule.match_digest is not None and (re.search(rule.match_digest, digest, flags) is not None) == negate:
            continue
        if rule.match_pattern is not None and (re.search(rule.match_pattern, query, flags) is not None) == negate:
            continue
        out.rule_id = rule.rule_id
        out.matched.append(rule.rule_id)
        if rule.flagOUT is not None:
            flag = rule.flagOUT
        for source, target in (("destination_hostgroup", "hostgroup"), ("error_msg", "error_msg"),
                               ("OK_msg", "ok_msg"), ("multiplex", "multiplex"), ("timeout", "timeout_ms"),
                               ("gtid_from_hostgroup", "gtid_from_hostgroup")):
            value = getattr(rule, source)
            if value is not None:
                setattr(out, target, value)
        if rule.apply:
            break
    return RuleOutcome(out.hostgroup, out.rule_id, out.error_msg, out.ok_msg, out.multiplex, out.timeout_ms,
                       out.gtid_from_hostgroup, tuple(out.matched))


@settings(max_examples=400)
@given(query_rules(), st.sampled_from(QUERIES), st.sampled_from(USERS), st.sampled_from(SCHEMAS))
def test_rules_walk_as_proxysql_does(rules: list[QueryRule], query: str, user: str, schema: str | None) -> None:
    digest = digest_text(query)
    assert evaluate(compile_rules(rules), query, digest, user, schema) == proxysql_walk(rules, query, digest, user, schema)


def test_negate_match_pattern_applies_to_match_digest() -> None:
    """ProxySQL's documentation: negate_match_pattern "acts as a NOT operator in front of the
    regular expression matching against match_pattern or match_digest"."""
    rules = compile_rules([QueryRule(rule_id=1, active=1, match_digest="^SELECT", negate_match_pattern=1,
                                     destination_hostgroup=10, apply=1)])
    assert evaluate(rules, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (?)", "app", None).hostgroup == 10
    assert evaluate(rules, "SELECT 1", "SELECT ?", "app", None).hostgroup is None


# ---- session settings replay ----------------------------------------------------------------------
CHARSETS = ["utf8mb4", "latin1", "utf8mb3", "binary"]
VARIABLES = ["sql_mode", "time_zone", "wait_timeout", "autocommit", "character_set_client",
             "character_set_results", "character_set_connection", "collation_connection"]
VALUES = ["'TRADITIONAL'", "'+01:00'", "100", "0", "1", "latin1", "utf8mb4", "'ANSI'"]
CHARSET_VARIABLES = ("character_set_client", "character_set_results", "character_set_connection")


@st.composite
def session_settings(draw: st.DrawFn) -> SessionSettings:
    current = SessionSettings(names=draw(st.sampled_from(CHARSETS)))
    # built the way the session builds them: SET NAMES and SET statements in some order
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.booleans()):
            current = current.with_names(draw(st.sampled_from(CHARSETS)))
        else:
            name = draw(st.sampled_from(VARIABLES))
            current = current.with_variables(((name, draw(st.sampled_from([*VALUES, "DEFAULT"]))),))
    return current


def server_state(s: SessionSettings) -> dict[str, str]:
    """What the server's session looks like for these settings; absent = the server's default."""
    state = {name: value for name, value in s.variables.items() if name not in CHARSET_VARIABLES}
    for name in CHARSET_VARIABLES:
        state[name] = s.variables.get(name, s.names)
    return {name: value for name, value in state.items() if value.upper() != "DEFAULT"}


_ASSIGNMENT = re.compile(r"\s*(\w+)\s*=\s*('[^']*'|[\w+-]+)\s*(?:,|$)")


def run_on_server(state: dict[str, str], statements: list[str]) -> dict[str, str]:
    """The statements' effect on a server session, as MySQL defines it."""
    state = dict(state)
    for sql in statements:
        if sql.startswith("SET NAMES "):
            charset = sql.removeprefix("SET NAMES ").split()[0]
            for name in CHARSET_VARIABLES:
                state[name] = charset
            state.pop("collation_connection", None)
            continue
        assert sql.startswith("SET SESSION "), sql
        body = sql.removeprefix("SET SESSION ")
        pos = 0
        while pos < len(body):
            match = _ASSIGNMENT.match(body, pos)
            assert match is not None, sql
            name, value = match.groups()
            if value.upper() == "DEFAULT":
                state.pop(name, None)  # the server's default, never the session's SET NAMES
            else:
                state[name] = value
            pos = match.end()
    return state


@settings(max_examples=400)
@given(session_settings(), session_settings())
def test_restore_statements_turn_current_into_wanted(current: SessionSettings, wanted: SessionSettings) -> None:
    statements = restore_statements(current, wanted)
    assert run_on_server(server_state(current), statements) == server_state(wanted)
    assert restore_statements(wanted, wanted) == []


# ---- digests ----------------------------------------------------------------------------------------
@given(any_sql)
@example("0..0")  # a number's text right after another's: digesting the digest used to differ
def test_digest_is_idempotent(sql: str) -> None:
    once = digest_text(sql)
    assert digest_text(once) == once


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


literal = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6).map(repr),
    st.text(max_size=20).map(sql_string),
    st.integers(0, 2**32).map(hex),
)
TEMPLATES = [
    "SELECT * FROM t WHERE id = {} AND name = {}",
    "INSERT INTO t (a, b) VALUES ({}, {})",
    "UPDATE t SET v = {} WHERE k IN ({}, 7, 'x')",
    "select c from t where a={} or b>{} -- trailing",
    "DELETE FROM t WHERE a BETWEEN {} AND {} /* c */",
]


@given(st.sampled_from(TEMPLATES), literal, literal, literal, literal)
def test_digest_ignores_literal_values(template: str, a: str, b: str, c: str, d: str) -> None:
    assert digest_text(template.format(a, b)) == digest_text(template.format(c, d))
