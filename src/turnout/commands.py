"""The list of modules that contribute subcommands to `turnout`.

Each module has `register(commands)`, adding its subparsers with `handler=` set.
"""

from __future__ import annotations

import importlib
from typing import Any

COMMAND_MODULES = (
    "turnout.manager_cli",
    "turnout.sandbox.cli",
    "turnout.admin.cli",
    "turnout.demo",
    "turnout.run_cli",
)


def modules() -> list[Any]:
    return [importlib.import_module(name) for name in COMMAND_MODULES]
