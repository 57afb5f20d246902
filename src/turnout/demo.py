"""`turnout demo`: a local sandbox behind turnout, with a failover you can watch."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from turnout.output import UserError, console, print_table
from turnout.sandbox.cli import STATUS_COLUMNS
from turnout.sandbox.sandbox import Sandbox, SandboxError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the demo on a local 3-server sandbox")
    demo.add_argument("--base-port", type=int, default=23306)
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="turnout-demo-") as tmp:
        directory = Path(tmp) / "sandbox"
        try:
            box = Sandbox.create(directory, args.base_port, 2, semi_sync=True, progress=console.print)
        except SandboxError as exc:
            raise UserError(str(exc)) from exc
        try:
            print_table(box.status(), STATUS_COLUMNS, title="demo sandbox")
        finally:
            box.down(progress=console.print)
    return 0
