"""`turnout sandbox ...`: local MariaDB replication sandboxes."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from turnout.output import UserError, console, print_json, print_table
from turnout.sandbox.errors import SandboxError
from turnout.sandbox.lab import Lab, prune
from turnout.sandbox.sandbox import Sandbox

HOST_COLUMNS = ("host", "address", "serves", "processes")
ETCD_COLUMNS = ("member", "host", "endpoint", "pid", "state", "healthy")
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
    up.add_argument("--hosts", action="store_true",
                    help="multi-host lab: every server on a host of its own (a network namespace; needs root)")
    up.add_argument("--etcd", type=int, default=0, metavar="N",
                    help="with --hosts: a real N-member etcd cluster on hosts etcd0.. (port 2379)")
    up.set_defaults(handler=_up)

    add_host = actions.add_parser("add-host", help="lab: add an empty host (for proxies, managers, clients)")
    add_host.add_argument("--dir", required=True, type=Path)
    add_host.add_argument("name", help="host name: a lower-case letter, then letters, digits, '-', '_'")
    add_host.set_defaults(handler=_add_host)

    run = actions.add_parser("run", help="lab: run a command on a host (sandbox run --dir D --host H -- CMD ...)")
    run.add_argument("--dir", required=True, type=Path)
    run.add_argument("--host", required=True)
    run.add_argument("--background", action="store_true",
                     help="leave it running (output appended to DIR/logs/HOST.log), print its pid; `down` stops it")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, after --")
    run.set_defaults(handler=_run)

    partition = actions.add_parser(
        "partition", help="lab: cut every path between hosts of different groups, both ways (GROUP: a,b,c)")
    partition.add_argument("--dir", required=True, type=Path)
    partition.add_argument("groups", nargs="+", metavar="GROUP", help="comma-separated host names")
    partition.set_defaults(handler=_partition)

    prune = actions.add_parser(
        "prune", help="lab: remove every lab of this machine whose directory is gone (leftovers of a crash)")
    prune.set_defaults(handler=_prune)

    heal = actions.add_parser("heal", help="lab: remove the partition")
    heal.add_argument("--dir", required=True, type=Path)
    heal.set_defaults(handler=_heal)

    status = actions.add_parser("status", help="servers, roles and replication state")
    status.add_argument("--dir", required=True, type=Path)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)

    down = actions.add_parser(
        "down", help="stop every server of the sandbox (a lab: every process on its hosts, and its network)")
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
        which = node.add_mutually_exclusive_group(required=True)
        which.add_argument("--node", type=int, help="node index (0 is the first master)")
        which.add_argument("--etcd", type=int, help="etcd member index (lab with --etcd)")
        node.set_defaults(handler=_node_action, node_action=name)


def _progress(message: str) -> None:
    console.print(f"[dim]·[/] {message}", highlight=False)


def _up(args: argparse.Namespace) -> int:
    try:
        box = Sandbox.create(args.dir, args.base_port, args.replicas, args.semi_sync, progress=_progress, tls=args.tls,
                             hosts=args.hosts, etcd=args.etcd)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    if box.meta.hosts:
        _print_lab(box)
    else:
        print_table(box.status(), STATUS_COLUMNS, title=f"sandbox {box.dir}")
    return 0


def _print_lab(box: Sandbox) -> None:
    status = box.lab_status()
    hosts = [{**h, "processes": len(h["processes"])} for h in status["hosts"]]
    print_table(hosts, HOST_COLUMNS,
                title=f"lab {box.dir}: {status['subnet']}, this machine is {status['root_address']}")
    print_table(status["servers"], ("host", *STATUS_COLUMNS), title="MariaDB servers")
    if status["etcd"]:
        print_table(status["etcd"], ETCD_COLUMNS, title=f"etcd: StateStore = \"{box.etcd.store_url()}\"")
    partition = status["partition"]
    console.print("partition: " + (" | ".join(",".join(g) for g in partition) if partition else "none"),
                  highlight=False)


def _open(directory: Path) -> Sandbox:
    try:
        return Sandbox.open(directory)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc


def _status(args: argparse.Namespace) -> int:
    box = _open(args.dir)
    if box.meta.hosts:
        if args.json:
            print_json(box.lab_status())
        else:
            _print_lab(box)
        return 0
    rows = box.status()
    if args.json:
        print_json(rows)
    else:
        print_table(rows, STATUS_COLUMNS)
    return 0


def _down(args: argparse.Namespace) -> int:
    try:
        if not (args.dir / "sandbox.json").exists() and Lab.exists(args.dir):
            # A lab whose sandbox was never completed (its maker crashed): remove the network anyway.
            _progress("removing the lab's namespaces, bridge, veths and firewall rules")
            Lab.open(args.dir).down()
            if args.destroy:
                shutil.rmtree(args.dir, ignore_errors=True)
            return 0
        _open(args.dir).down(destroy=args.destroy, progress=_progress)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    return 0


def _node_action(args: argparse.Namespace) -> int:
    box = _open(args.dir)
    try:
        if args.etcd is not None:
            getattr(box.etcd, args.node_action)(args.etcd)
        else:
            getattr(box, args.node_action)(args.node)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    return 0


def _lab_box(directory: Path) -> Sandbox:
    box = _open(directory)
    try:
        box.lab  # noqa: B018 - raises for a single-host sandbox
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    return box


def _add_host(args: argparse.Namespace) -> int:
    box = _lab_box(args.dir)
    try:
        address = box.lab.add_host(args.name)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"{args.name} {address}", highlight=False)
    return 0


def _run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    box = _lab_box(args.dir)
    try:
        if args.background:
            proc = box.lab.spawn(args.host, command)
            print(proc.pid)
            return 0
        return box.lab.run(args.host, command).returncode
    except (SandboxError, OSError, subprocess.SubprocessError) as exc:
        raise UserError(str(exc)) from exc


def _partition(args: argparse.Namespace) -> int:
    box = _lab_box(args.dir)
    try:
        groups = box.lab.partition(args.groups)
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    console.print("partition: " + " | ".join(",".join(g) for g in groups), highlight=False)
    return 0


def _prune(args: argparse.Namespace) -> int:
    try:
        removed = prune()
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    console.print(f"removed {len(removed)} orphaned labs{': ' if removed else ''}{', '.join(removed)}",
                  highlight=False)
    return 0


def _heal(args: argparse.Namespace) -> int:
    box = _lab_box(args.dir)
    try:
        box.lab.heal()
    except SandboxError as exc:
        raise UserError(str(exc)) from exc
    return 0
