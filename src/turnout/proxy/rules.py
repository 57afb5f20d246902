"""ProxySQL's mysql_query_rules: which hostgroup a statement goes to. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from turnout.config.model import QueryRule


class InvalidRule(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: QueryRule
    match_digest: re.Pattern[str] | None
    match_pattern: re.Pattern[str] | None


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    """What the rules decided; `hostgroup` None means the user's default hostgroup."""

    hostgroup: int | None = None
    rule_id: int | None = None
    error_msg: str | None = None
    ok_msg: str | None = None
    multiplex: int | None = None
    timeout_ms: int | None = None
    # ProxySQL's gtid_from_hostgroup: the read must see its session's writes (causal reads)
    gtid_from_hostgroup: int | None = None
    matched: tuple[int, ...] = ()  # every rule that matched on the walk (stats_mysql_query_rules' hits)


NO_MATCH = RuleOutcome()


def _flags(modifiers: str) -> int:
    flags = 0
    for modifier in (m.strip().upper() for m in (modifiers or "").split(",")):
        if modifier == "CASELESS":
            flags |= re.IGNORECASE
        elif modifier == "GLOBAL" or not modifier:
            continue
        else:
            raise InvalidRule(f"unknown re_modifiers value {modifier!r} (use CASELESS and/or GLOBAL)")
    return flags


def compile_rule(rule: QueryRule) -> CompiledRule:
    flags = _flags(rule.re_modifiers)
    try:
        digest = re.compile(rule.match_digest, flags) if rule.match_digest else None
        pattern = re.compile(rule.match_pattern, flags) if rule.match_pattern else None
    except re.error as exc:
        raise InvalidRule(f"rule {rule.rule_id}: invalid regular expression: {exc}") from exc
    return CompiledRule(rule, digest, pattern)


def compile_rules(rules: Iterable[QueryRule]) -> tuple[CompiledRule, ...]:
    """Active rules in rule_id order, regexes compiled once."""
    return tuple(compile_rule(r) for r in sorted(rules, key=lambda r: r.rule_id) if r.active)


def _matches(rule: CompiledRule, query: str, digest: str, username: str, schema: str | None) -> bool:
    r = rule.rule
    # As ProxySQL: an empty username or schemaname matches anyone, like NULL.
    if r.username and r.username != username:
        return False
    if r.schemaname and r.schemaname != schema:
        return False
    # negate_match_pattern is a NOT in front of both regular expressions, match_digest included.
    negate = bool(r.negate_match_pattern)
    if rule.match_digest is not None and (rule.match_digest.search(digest) is not None) == negate:
        return False
    return rule.match_pattern is None or (rule.match_pattern.search(query) is not None) != negate


def evaluate(
    rules: tuple[CompiledRule, ...], query: str, digest: str, username: str, schema: str | None
) -> RuleOutcome:
    """Walk the rules as ProxySQL does: flagIN chains via flagOUT, `apply` stops the walk."""
    flag = 0
    hostgroup: int | None = None
    rule_id: int | None = None
    error_msg = ok_msg = None
    multiplex = timeout = gtid_from = None
    matched: list[int] = []
    for compiled in rules:
        r = compiled.rule
        if r.flagIN != flag or not _matches(compiled, query, digest, username, schema):
            continue
        rule_id = r.rule_id
        matched.append(rule_id)
        if r.destination_hostgroup is not None:
            hostgroup = r.destination_hostgroup
        if r.error_msg is not None:
            error_msg = r.error_msg
        if r.OK_msg is not None:
            ok_msg = r.OK_msg
        if r.multiplex is not None:
            multiplex = r.multiplex
        if r.timeout is not None:
            timeout = r.timeout
        if r.gtid_from_hostgroup is not None:
            gtid_from = r.gtid_from_hostgroup
        if r.flagOUT is not None:
            flag = r.flagOUT
        if r.apply:
            break
    if rule_id is None:
        return NO_MATCH
    return RuleOutcome(hostgroup, rule_id, error_msg, ok_msg, multiplex, timeout, gtid_from, tuple(matched))
