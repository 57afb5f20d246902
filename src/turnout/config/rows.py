"""Building configuration rows (the frozen dataclasses of `model`) from loosely typed values:
TOML tables and SQLite rows. Each problem names the key it is about."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from functools import cache
from types import UnionType
from typing import Any, TypeVar

Row = TypeVar("Row")
KeyProblem = tuple[str | None, str]  # (key or None, message)


@cache
def column_types(row_type: type[Any]) -> dict[str, tuple[type, ...]]:
    """Column name -> the Python types it accepts (NoneType included when optional)."""
    hints = typing.get_type_hints(row_type)
    return {f.name: _accepts(hints[f.name]) for f in dataclasses.fields(row_type)}


def columns(row_type: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(row_type)]


def _accepts(annotation: Any) -> tuple[type, ...]:
    if typing.get_origin(annotation) is typing.Union or isinstance(annotation, UnionType):
        return tuple(t for arg in typing.get_args(annotation) for t in _accepts(arg))
    return (annotation,)


def convert(value: Any, types: tuple[type, ...]) -> tuple[Any, str | None]:
    """`value` as a column of these types, or a problem."""
    if value is None and type(None) in types:
        return None, None
    if int in types:
        if isinstance(value, bool):
            return int(value), None
        if isinstance(value, int):
            return value, None
    if str in types and isinstance(value, str):
        return value, None
    wanted = " or ".join("an integer" if t is int else "a string" for t in types if t in (int, str))
    return value, f"must be {wanted}, not {value!r}"


def build_row(
    row_type: type[Row],
    values: Mapping[str, Any],
    what: str,
    aliases: Mapping[str, str] | None = None,
    null_is_default: bool = False,
) -> tuple[Row | None, list[KeyProblem]]:
    """A `row_type` from `values` (keys may be aliases of columns); problems name the key.

    `null_is_default`: a NULL in a column that cannot hold one takes the column's default
    (SQLite rows: ProxySQL's password column may be NULL, meaning no password)."""
    aliases = aliases or {}
    types = column_types(typing.cast(type, row_type))
    fields = {f.name: f for f in dataclasses.fields(typing.cast(type, row_type))}
    built: dict[str, Any] = {}
    problems: list[KeyProblem] = []
    for key, raw in values.items():
        column = aliases.get(key, key)
        if column not in types:
            problems.append((key, f"{what}: unknown key {key!r}"))
            continue
        if column in built:
            problems.append((key, f"{what}: {column} given twice (as {key!r} and its alias)"))
            continue
        if raw is None and null_is_default and type(None) not in types[column]:
            continue
        value, problem = convert(raw, types[column])
        if problem:
            problems.append((key, f"{what}: {key} {problem}"))
        else:
            built[column] = value
    for name, f in fields.items():
        if name in built or f.default is not dataclasses.MISSING:
            continue
        if f.default_factory is not dataclasses.MISSING:
            continue
        if any(problem[0] in (name, *[k for k, c in aliases.items() if c == name]) for problem in problems):
            continue
        names = [*[key for key, column in aliases.items() if column == name], name]
        problems.append((None, f"{what}: missing {' or '.join(names)}"))
    if problems:
        return None, problems
    return row_type(**built), []
