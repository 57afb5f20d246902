"""Query digests: the query with its literals replaced by `?`, as ProxySQL's stats and match_digest see it."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

_TOKENS = re.compile(
    r"""
      (?P<space>(?:\s|/\*(?!\s*[!+]).*?\*/|(?:--\s|\#)[^\n]*)+)
    | (?P<string>'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")
    | (?P<ident>`[^`]*(?:``[^`]*)*`)
    | (?P<number>(?<![\w@$.])[-+]?(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)(?![\w$.]))
    """,
    re.VERBOSE | re.DOTALL,
)
# Strings and identifiers are matched as runs of plain characters between escapes (not one
# alternation per character, which took seconds for a literal of megabytes).
_LISTS = re.compile(r"\?(?:\s*,\s*\?)+")


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind in ("string", "number"):
        return "?"
    if kind == "space":
        return " "
    return match.group()


@lru_cache(maxsize=4096)
def digest_text(query: str) -> str:
    """Normalised query text: comments dropped, literals as `?`, lists of literals as `?,...`."""
    text = _TOKENS.sub(_replace, query).strip()
    text = _LISTS.sub("?,...", text)
    return text.rstrip("; ")


def digest_hash(text: str) -> str:
    """A 64-bit hex digest id, shaped like ProxySQL's `0x...` digest column."""
    return "0x" + hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest().upper()
