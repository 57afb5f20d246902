"""The `turnout` command: parses arguments and hands over to each role's command module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Protocol


class CommandModule(Protocol):
    def register(self, commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def _command_modules() -> list[CommandModule]:
    from turnout import commands

    return commands.modules()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="turnout",
        description="High availability for MySQL/MariaDB replication: proxy + topology manager.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from turnout.output import UserError, print_error

    try:
        return handler(args)
    except UserError as exc:
        print_error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
