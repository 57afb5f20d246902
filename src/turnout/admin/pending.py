"""Edits not in force yet: the differences between memory and runtime, as rows and as warnings.

Pure functions over configuration rows; the store feeds them what memory and runtime hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PendingChange:
    module: str
    table_name: str
    change: str  # added | removed | changed
    row_key: str
    memory: str | None
    runtime: str | None


def _render(row: Any, only: Sequence[str] | None = None) -> str:
    """`col=value` for the given columns, or for every column that is not at its default."""
    parts = []
    for f in dataclasses.fields(row):
        value = getattr(row, f.name)
        if only is not None:
            if f.name in only:
                parts.append(f"{f.name}={value!r}")
        elif f.default is dataclasses.MISSING or value != f.default:
            parts.append(f"{f.name}={value!r}")
    return ", ".join(parts)


def _key_text(key: tuple[Any, ...]) -> str:
    return "/".join(str(part) for part in key)


def diff_rows(
    module: str,
    table: str,
    memory: Sequence[Any],
    runtime: Sequence[Any],
    key: Callable[[Any], tuple[Any, ...]],
) -> list[PendingChange]:
    mem = {key(row): row for row in memory}
    run = {key(row): row for row in runtime}
    changes = []
    for row_key in sorted(mem.keys() | run.keys(), key=repr):
        text = _key_text(row_key)
        if row_key not in run:
            changes.append(PendingChange(module, table, "added", text, _render(mem[row_key]), None))
        elif row_key not in mem:
            changes.append(PendingChange(module, table, "removed", text, None, _render(run[row_key])))
        elif mem[row_key] != run[row_key]:
            differing = [
                f.name
                for f in dataclasses.fields(mem[row_key])
                if getattr(mem[row_key], f.name) != getattr(run[row_key], f.name)
            ]
            changes.append(
                PendingChange(
                    module,
                    table,
                    "changed",
                    text,
                    _render(mem[row_key], differing),
                    _render(run[row_key], differing),
                )
            )
    return changes


def diff_variables(module: str, memory: Mapping[str, str], runtime: Mapping[str, str]) -> list[PendingChange]:
    changes = []
    for name in sorted(memory.keys() | runtime.keys()):
        mem, run = memory.get(name), runtime.get(name)
        if mem == run:
            continue
        change = "added" if run is None else "removed" if mem is None else "changed"
        changes.append(PendingChange(module, "global_variables", change, name, mem, run))
    return changes


def warnings(changes: Sequence[PendingChange]) -> list[str]:
    """One line per module with edits not in force, saying how to apply or discard them."""
    by_module: dict[str, dict[str, dict[str, int]]] = {}
    for change in changes:
        counts = by_module.setdefault(change.module, {}).setdefault(change.table_name, {})
        counts[change.change] = counts.get(change.change, 0) + 1
    lines = []
    for module, tables in by_module.items():
        for table, counts in tables.items():
            summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
            lines.append(
                f"{table} differs from runtime ({summary}): run LOAD {module} TO RUNTIME to apply "
                f"(SAVE {module} TO MEMORY discards the edits)"
            )
    return lines
