"""Session settings a client made, replayed on whichever backend connection it uses next. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

# Collation ids MySQL clients send in the handshake, by the charset they stand for.
_CHARSET_BY_COLLATION = {
    8: "latin1",
    33: "utf8mb3",
    45: "utf8mb4",
    46: "utf8mb4",
    63: "binary",
    83: "utf8mb3",
    192: "utf8mb3",
    224: "utf8mb4",
    255: "utf8mb4",
}


def charset_for_collation(collation_id: int) -> str:
    if collation_id in _CHARSET_BY_COLLATION:
        return _CHARSET_BY_COLLATION[collation_id]
    if 224 <= collation_id <= 247 or 245 <= collation_id <= 323:
        return "utf8mb4"
    return "utf8mb4"


# What SET NAMES sets (MySQL: character_set_client, _results, _connection, and the connection
# collation with them).
NAMES_VARIABLES = frozenset(
    {"character_set_client", "character_set_results", "character_set_connection", "collation_connection"}
)


_NO_VARIABLES: Mapping[str, str] = MappingProxyType({})


def _empty() -> Mapping[str, str]:
    return _NO_VARIABLES


@dataclass(frozen=True, slots=True)
class SessionSettings:
    names: str = "utf8mb4"
    schema: str | None = None
    variables: Mapping[str, str] = field(default_factory=_empty)
    multi_statements: bool = True

    def with_variables(self, assignments: tuple[tuple[str, str], ...]) -> SessionSettings:
        merged = dict(self.variables)
        for name, value in assignments:
            if name in ("names", "character_set_client", "character_set_results", "character_set_connection"):
                merged[name] = value
            elif value.upper() == "DEFAULT":
                merged.pop(name, None)
            else:
                merged[name] = value
        return replace(self, variables=MappingProxyType(merged))

    def with_names(self, names: str) -> SessionSettings:
        merged = {k: v for k, v in self.variables.items() if k not in NAMES_VARIABLES}
        return replace(self, names=names, variables=MappingProxyType(merged))

    def with_schema(self, schema: str | None) -> SessionSettings:
        return replace(self, schema=schema)


def same_settings(a: SessionSettings, b: SessionSettings) -> bool:
    """`a == b`, asked for every pooled statement: the dataclass's own __eq__ is interpreted
    Python even when this module is compiled, this is not."""
    return a is b or (
        a.names == b.names
        and a.schema == b.schema
        and a.multi_statements == b.multi_statements
        and (a.variables is b.variables or a.variables == b.variables)
    )


def restore_statements(current: SessionSettings, wanted: SessionSettings) -> list[str]:
    """SQL that turns a backend connection's `current` settings into the session's `wanted` ones.

    Variables the connection has but the session never set go back to DEFAULT, so nothing one
    client set leaks into another client's session. The schema is restored with COM_INIT_DB by
    the caller, not here.
    """
    statements: list[str] = []
    have = dict(current.variables)
    # A character set variable the connection has and the session does not must go back to the
    # session's SET NAMES, not to the server's default: SET NAMES resets them all.
    stray_names = any(name in NAMES_VARIABLES and wanted.variables.get(name) != value for name, value in have.items())
    if current.names != wanted.names or stray_names:
        statements.append(f"SET NAMES {wanted.names}")
        have = {name: value for name, value in have.items() if name not in NAMES_VARIABLES}
    assignments = [f"{name} = {value}" for name, value in wanted.variables.items() if have.get(name) != value]
    assignments += [f"{name} = DEFAULT" for name in have if name not in wanted.variables]
    if assignments:
        statements.append("SET SESSION " + ", ".join(assignments))
    return statements
