"""`turnout admin ...`: check a configuration file, run the admin interface alone, and list the
edits that are in memory but not in force on a running turnout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import pymysql

from turnout.admin.service import AdminService
from turnout.config.file import ConfigFile, load_config
from turnout.config.variables import defaults, parse_credentials, parse_interfaces
from turnout.output import UserError, console, print_json, print_table

PENDING_COLUMNS = ("module", "table_name", "change", "row_key", "memory", "runtime")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = commands.add_parser("admin", help="the ProxySQL-compatible admin interface")
    actions = admin.add_subparsers(dest="action", metavar="ACTION", required=True)

    check = actions.add_parser("check", help="check a configuration file; errors name their line")
    check.add_argument("--config", required=True, type=Path)
    check.set_defaults(handler=_check)

    diff = actions.add_parser("diff", help="edits in memory that are not in force (LOAD ... TO RUNTIME pending)")
    diff.add_argument("--config", type=Path, help="read the admin address and credentials from this file")
    diff.add_argument("--host", help="admin interface host (default: from the config, else 127.0.0.1)")
    diff.add_argument("--port", type=int, help="admin interface port (default: from the config, else 6032)")
    diff.add_argument("--user", help="admin user (default: the first of admin_credentials)")
    diff.add_argument("--password")
    diff.add_argument("--json", action="store_true")
    diff.set_defaults(handler=_diff)

    serve = actions.add_parser("serve", help="run the admin interface and scheduler alone (no proxy)")
    serve.add_argument("--config", type=Path)
    serve.add_argument("--datadir", type=Path, help="default: the config file's datadir, else its directory")
    serve.add_argument("--initial", action="store_true", help="start from the config file even if disk exists")
    serve.set_defaults(handler=_serve)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    console.print(
        f"{args.config}: ok ({len(config.servers)} servers, {len(config.users)} users, "
        f"{len(config.query_rules)} query rules, {len(config.replication_hostgroups)} replication hostgroups, "
        f"{len(config.scheduler)} scheduler jobs, {len(config.variables)} variables)",
        highlight=False,
    )
    return 0


def connection_settings(config: ConfigFile | None, args: argparse.Namespace) -> dict[str, Any]:
    values = config.all_variables() if config else defaults()
    host, port = parse_interfaces(values["admin-mysql_ifaces"])[0]
    user, password = next(iter(parse_credentials(values["admin-admin_credentials"]).items()))
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return {
        "host": args.host or host,
        "port": args.port or port,
        "user": args.user or user,
        "password": args.password if args.password is not None else password,
    }


def _diff(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else None
    settings = connection_settings(config, args)
    try:
        connection = pymysql.connect(**settings, connect_timeout=5)
    except pymysql.MySQLError as exc:
        raise UserError(f"cannot reach the admin interface at {settings['host']}:{settings['port']}: {exc}") from exc
    with contextlib.closing(connection), connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(PENDING_COLUMNS)} FROM turnout_pending_changes")
        rows = [dict(zip(PENDING_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    if args.json:
        print_json(rows)
    elif rows:
        print_table(rows, PENDING_COLUMNS, title="in memory, not in force")
    else:
        console.print("memory and runtime are the same: nothing pending")
    return 0


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = load_config(args.config) if args.config else None
    datadir = args.datadir or (config.data_directory if config else None)
    if datadir is None:
        raise UserError("give --datadir, or a config file")
    asyncio.run(_run(AdminService(datadir, config, initial=args.initial)))
    return 0


async def _run(service: AdminService) -> None:
    await service.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    console.print(f"admin interface on {', '.join(f'{h}:{p}' for h, p in service.addresses)}", highlight=False)
    try:
        await stopped.wait()
    finally:
        await service.stop()
