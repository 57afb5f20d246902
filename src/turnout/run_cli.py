"""`turnout up` and `turnout proxy`: run the long-lived process from a configuration file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvloop

from turnout.config.file import load_config
from turnout.output import UserError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, help_text in (
        ("up", "run proxy + admin + monitor + manager in one process (the default deployment)"),
        ("proxy", "run the proxy with its admin interface and monitor"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--config", required=True, type=Path, help="TOML file with proxysql.cnf's sections")
        command.add_argument(
            "--initial", action="store_true",
            help="take the configuration file even when the data directory has a saved configuration",
        )
        command.add_argument(
            "--workers", type=int, default=1,
            help="data-path processes sharing the port (SO_REUSEPORT), all fed the same configuration",
        )
        command.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
        command.set_defaults(handler=_run, with_manager=name == "up")


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = load_config(args.config)
    from turnout.node import Node

    if args.workers < 1:
        raise UserError("--workers must be 1 or more")
    node = Node(config, initial=args.initial, manage=args.with_manager, workers=args.workers)
    uvloop.run(node.run_until_signalled())
    return 0
