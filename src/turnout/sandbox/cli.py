"""`turnout sandbox ...`: local MariaDB replication sandboxes."""

from __future__ import annotations

import argparse
from pathlib import Path

from turnout.output import UserError, console, print_json, print_table
from turnout.sandbox.sandbox import Sandbox, SandboxError

STATUS_COLUMNS = (
    "node", "port", "pid", "state", "role", "read_only", "replicating_from",
    "io_thread", "sql_thread", "gtid_position", "lag", "last_error",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sandbox = commands.add_parser("sandbox", help="local MariaDB replication sandboxes")
    actions = sandbox.add_subparsers(dest="action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="create (or restart) a sandbox: 1 master + N replicas")
    up.add_argument("--dir", required=True, type=Path)
    up.add_argument("--base-port", type=int, default=23306)
    up.add_argument("--replicas", type=int, default=2)
    up.add_argument("--semi-sync", action="store_true", help="MariaDB semi-synchronous replication")
    up.add_argument("--tls", action="store_true", help="servers offer TLS (certificate made in DIR/tls; CA: DIR/tls/proxysql-ca.pem)")
    up.set_defaults(handler=_up)

    status = actions.add_parser("status", help="servers, roles and replication state")
    status.add_argument("--dir", required=True, type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    down = actions.add_parser("down", help="stop every server of the sandbox")
    down.add_argument("--dir", required=True, type=Path)
    down.add_argument("--destroy", action="store_true", help="also remove the sandbox directory")
    down.set_defaults(handler=_down)

    for name, help_text in (
        ("kill", "SIGKILL one server (a crash)"),
        ("stop", "orderly shutdown of one server"),
        ("start", "start one stopped server"),
        ("pause", "SIGSTOP one server (a hung server)"),
        ("resume", "SIGCONT a paused server"),
    ):
        node = actions.add_parser(name, help=help_text)
        node.add_argument("--dir", required=True, type=Path)
        node.add_argument("--node", required=True, type=int, help="node index (0 is the first master)")
        node.set_defaults(handler=_node_action, node_action=name)


def _progress(message: str) -> None:
    console.print(f"[dim]·[/] {message}", highlight=False)


def _up(args: argparse.Namespace) -> int:
    try:
        box = Sandbox.create(args.dir, args.base_port, args.replicas, args.semi_sync, progress=_progress, tls=args.tls)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    print_table(box.status(), STATUS_COLUMNS, title=f"sandbox {box.dir}")
    return 0


def _open(directory: Path) -> Sandbox:
    try:
        return Sandbox.open(directory)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc


def _status(args: argparse.Namespace) -> int:
    rows = _open(args.dir).status()
    if args.json:
        print_json(rows)
    else:
        print_table(rows, STATUS_COLUMNS)
    return 0


def _down(args: argparse.Namespace) -> int:
    _open(args.dir).down(destroy=args.destroy, progress=_progress)
    return 0


def _node_action(args: argparse.Namespace) -> int:
    box = _open(args.dir)
    try:
        getattr(box, args.node_action)(args.node)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    return 0
