"""Printing for people (tables) and for scripts (--json); errors that say what to do next."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


class UserError(Exception):
    """An error the user can act on; printed as one line, exit code 1."""


console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return str(value)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Iterable[str] | None = None, title: str | None = None) -> None:
    cols = list(columns) if columns is not None else (list(rows[0].keys()) if rows else [])
    table = Table(title=title, show_lines=False, header_style="bold")
    for col in cols:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_cell(row.get(col)) for col in cols))
    console.print(table)
