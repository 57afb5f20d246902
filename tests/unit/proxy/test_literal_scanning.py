"""Quoted strings in statements are scanned as runs of plain characters: the same matches as one
alternation per character (the patterns before), without its cost on a literal of megabytes
(PyMySQL's test_largedata: a 16 MiB statement spent 20 s in the digest and the statement analysis,
the event loop blocked for every session, against 0.7 s for the server)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.proxy import digest, statement
from turnout.proxy.digest import digest_text
from turnout.proxy.statement import analyze

# The patterns before: one alternation per character.
PER_CHARACTER_STRING = re.compile(r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"")
PER_CHARACTER_TOKENS = re.compile(
    r"""
      (?P<space>(?:\s|/\*(?!\s*[!+]).*?\*/|(?:--\s|\#)[^\n]*)+)
    | (?P<string>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    | (?P<ident>`(?:[^`]|``)*`)
    | (?P<number>(?<![\w@$.])[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)(?![\w$.]))
    """,
    re.VERBOSE | re.DOTALL,
)

SQLISH = st.text(alphabet="'\"`\\ \na1.,-#/*()", max_size=40)


@settings(max_examples=1000)
@given(SQLISH)
def test_the_string_pattern_finds_what_the_per_character_one_found(sql: str) -> None:
    assert [m.span() for m in statement._STRING.finditer(sql)] == [
        m.span() for m in PER_CHARACTER_STRING.finditer(sql)
    ]


@settings(max_examples=1000)
@given(SQLISH)
def test_the_digest_tokens_are_those_of_the_per_character_pattern(sql: str) -> None:
    assert [(m.lastgroup, m.span()) for m in digest._TOKENS.finditer(sql)] == [
        (m.lastgroup, m.span()) for m in PER_CHARACTER_TOKENS.finditer(sql)
    ]


def test_a_literal_of_16_mib_is_one_string() -> None:
    literal = "a" * (16 * 1024 * 1024)
    sql = f"SELECT '{literal}', \"{literal}\", `{literal[:1000]}` FROM t WHERE id = 1 FOR UPDATE"
    assert digest_text(sql) == f"SELECT ?,..., `{literal[:1000]}` FROM t WHERE id = ? FOR UPDATE"
    info = analyze(sql)
    assert info.is_write  # FOR UPDATE, found past the literals
    assert not info.reads_diagnostics
