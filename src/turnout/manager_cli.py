"""`turnout manager` and the orchestrator-client-like commands that talk to a running manager.

A top-level command module, like run_cli.py: it sits above both the manager and the HTTP API it
serves or calls, so neither package depends on the other through it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import urllib.parse
from pathlib import Path
from typing import Any

from turnout.api.client import call
from turnout.output import UserError, console, print_json, print_table

DEFAULT_API = "http://127.0.0.1:3000"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser("manager", help="run the topology manager (discovery, analysis, recovery, HTTP API)")
    run.add_argument("--config", required=True, type=Path, help="TOML file with a [manager] table")
    run.set_defaults(handler=_run_manager)

    def client(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument("--api", default=os.environ.get("TURNOUT_API", DEFAULT_API),
                            help=f"the manager's HTTP API (default: $TURNOUT_API or {DEFAULT_API})")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        return parser

    client("clusters", "list clusters with master, epoch and phase").set_defaults(handler=_clusters)
    p = client("topology", "ASCII tree of a cluster")
    p.add_argument("-i", "--instance", required=True, metavar="HOST:PORT", help="any instance of the cluster")
    p.set_defaults(handler=_topology)
    p = client("discover", "discover an instance and its topology")
    p.add_argument("-i", "--instance", required=True, metavar="HOST:PORT")
    p.set_defaults(handler=_discover)
    p = client("forget", "forget an instance")
    p.add_argument("-i", "--instance", required=True, metavar="HOST:PORT")
    p.set_defaults(handler=_forget)
    p = client("replication-analysis", "problems the manager sees")
    p.set_defaults(handler=_analysis)
    p = client("graceful-master-takeover", "planned switch of the master to a replica")
    p.add_argument("-i", "--instance", required=True, metavar="OLD_HOST:PORT", help="the current master")
    p.add_argument("-d", "--destination", metavar="NEW_HOST:PORT", help="the replica to promote (default: best)")
    p.add_argument("--auto", action="store_true", help="start replication on the old master afterwards")
    p.set_defaults(handler=_takeover)
    p = client("recover", "recover a dead master now")
    p.add_argument("-i", "--instance", required=True, metavar="HOST:PORT", help="the dead master")
    p.add_argument("-d", "--destination", metavar="HOST:PORT", help="the replica to promote (default: best)")
    p.set_defaults(handler=_recover)
    p = client("ack-recovery", "acknowledge a cluster's recoveries (allows the next automated one)")
    p.add_argument("-c", "--cluster", required=True, help="cluster name, alias or a member's HOST:PORT")
    p.add_argument("--comment", default="acknowledged from the command line")
    p.set_defaults(handler=_ack)
    p = client("unfence", "lift the fence of a failed master once it has been rebuilt")
    p.add_argument("-i", "--instance", required=True, metavar="HOST:PORT")
    p.set_defaults(handler=_unfence)
    client("proxies", "the ProxySQLs the manager drives: converged or lagging").set_defaults(handler=_proxies)
    p = client("audit", "recent recoveries and audit log")
    p.add_argument("-c", "--cluster", help="only this cluster")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(handler=_audit)


# ---- the manager process ------------------------------------------------------------------------
def _run_manager(args: argparse.Namespace) -> int:
    from turnout.config.file import load_config
    from turnout.manager.settings import ManagerSettings, SettingsError
    from turnout.state.location import StrayStateFile, check_no_stray_state

    config = load_config(args.config)  # its errors are UserErrors, with line numbers
    try:
        settings = ManagerSettings.from_mapping(dict(config.manager))
    except SettingsError as exc:
        raise UserError(f"{exc}; fix {args.config}") from exc
    if not settings.MySQLTopologyUser:
        raise UserError(f"set MySQLTopologyUser and MySQLTopologyPassword in the [manager] table of {args.config}")
    try:  # the same rule as `turnout up` and `turnout proxy`: the state lives in the datadir
        target = check_no_stray_state(config.path, config.data_directory, settings.StateStore,
                                      settings.SQLite3DataFile)
    except StrayStateFile as exc:
        raise UserError(str(exc)) from None
    # as `turnout up` does: the file's mysql_servers are discovery seeds too
    seeds = tuple(dict.fromkeys((*settings.DiscoverySeeds, *(f"{s.hostname}:{s.port}" for s in config.servers))))
    settings = dataclasses.replace(settings, DiscoverySeeds=seeds)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(_serve(settings, target))
    return 0


async def _serve(settings: Any, target: str) -> None:
    from turnout.api.app import serve
    from turnout.manager.service import ManagerService
    from turnout.state import open_store

    store = open_store(target)
    service = ManagerService(settings, store)
    host, port = settings.listen
    try:
        runner = await serve(service, host, port)
    except OSError as exc:
        raise UserError(f"cannot listen on {settings.ListenAddress}: {exc.strerror}; change ListenAddress") from exc
    await service.start()
    console.print(f"turnout manager: API on http://{host}:{port}/api/, web console on http://{host}:{port}/, "
                  f"state in {target}", highlight=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()
        await runner.cleanup()
        await store.close()


# ---- the client -------------------------------------------------------------------------------------
def _instance_path(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"expected HOST:PORT, got {text!r}")
    return f"{urllib.parse.quote(host, safe='')}/{port}"


def _key(data: dict[str, Any] | None) -> str:
    return f"{data['Hostname']}:{data['Port']}" if data and data.get("Hostname") else "-"


def _clusters(args: argparse.Namespace) -> int:
    info = call(args.api, "clusters-info")
    if args.json:
        print_json(info)
        return 0
    if not info:
        console.print("no clusters yet: `turnout discover -i HOST:PORT` adds one")
        return 0
    print_table([{"cluster": c["ClusterAlias"], "master": _key(c["Master"]), "epoch": c["Epoch"],
                  "phase": c["Phase"], "instances": c["CountInstances"],
                  "auto_recovery": c["HasAutomatedMasterRecovery"]} for c in info])
    return 0


def _topology(args: argparse.Namespace) -> int:
    data = call(args.api, f"topology/{urllib.parse.quote(args.instance, safe='')}")
    if args.json:
        print_json(data)
    else:
        console.print(data["Details"], highlight=False, markup=False)
    return 0


def _discover(args: argparse.Namespace) -> int:
    data = call(args.api, f"discover/{_instance_path(args.instance)}")
    if args.json:
        print_json(data)
    else:
        console.print(f"{_key(data['Details']['Key'])} (cluster {data['Details']['SuggestedClusterAlias']})",
                      highlight=False)
    return 0


def _forget(args: argparse.Namespace) -> int:
    data = call(args.api, f"forget/{_instance_path(args.instance)}")
    print_json(data) if args.json else console.print(data["Message"], highlight=False)
    return 0


def _analysis(args: argparse.Namespace) -> int:
    data = call(args.api, "replication-analysis")
    if args.json:
        print_json(data)
        return 0
    rows = [{"cluster": d["ClusterDetails"]["ClusterAlias"], "instance": _key(d["AnalyzedInstanceKey"]),
             "analysis": d["Analysis"], "replicas": d["CountReplicas"], "downtimed": d["IsDowntimed"],
             "description": d["Description"]} for d in data["Details"]]
    if rows:
        print_table(rows)
    else:
        console.print("no problems")
    return 0


def _steps(details: dict[str, Any]) -> None:
    for step in details.get("Steps", []):
        console.print(f"  {step}", highlight=False, markup=False)


def _operation(args: argparse.Namespace, path: str) -> int:
    """Run a takeover or a recovery through the API and show its audited steps."""
    if args.destination:
        path += "/" + _instance_path(args.destination)
    data = call(args.api, path)
    if args.json:
        print_json(data)
    else:
        console.print(data["Details"]["Message"], highlight=False)
        _steps(data["Details"])
    return 0


def _takeover(args: argparse.Namespace) -> int:
    command = "graceful-master-takeover-auto" if args.auto else "graceful-master-takeover"
    return _operation(args, f"{command}/{urllib.parse.quote(args.instance, safe='')}")


def _recover(args: argparse.Namespace) -> int:
    return _operation(args, f"recover/{_instance_path(args.instance)}")


def _ack(args: argparse.Namespace) -> int:
    query = urllib.parse.urlencode({"comment": args.comment, "owner": os.environ.get("USER", "cli")})
    data = call(args.api, f"ack-recovery/cluster/{urllib.parse.quote(args.cluster, safe='')}?{query}")
    print_json(data) if args.json else console.print(data["Message"], highlight=False)
    return 0


def _unfence(args: argparse.Namespace) -> int:
    data = call(args.api, f"unfence/{_instance_path(args.instance)}")
    print_json(data) if args.json else console.print(data["Message"], highlight=False)
    return 0


def _proxies(args: argparse.Namespace) -> int:
    rows = call(args.api, "proxysql")
    if args.json:
        print_json(rows)
    elif not rows:
        console.print("no ProxySQL driven: add [[manager.proxysql]] entries to the [manager] table")
    else:
        print_table([{"proxysql": r["Proxy"], "cluster": r["ClusterAlias"], "state": "lagging" if r["Lagging"] else "ok",
                      "master": r["Master"], "epoch": r["Epoch"], "phase": r["Phase"], "error": r["LastError"]}
                     for r in rows])
    return 0


def _audit(args: argparse.Namespace) -> int:
    suffix = f"/{urllib.parse.quote(args.cluster, safe='')}" if args.cluster else ""
    recoveries = call(args.api, "audit-recovery" + suffix)
    entries = call(args.api, f"audit{suffix}?limit={args.limit}")
    if args.json:
        print_json({"recoveries": recoveries, "audit": entries})
        return 0
    if recoveries:
        print_table([{"id": r["Id"], "cluster": r["AnalysisEntry"]["ClusterDetails"]["ClusterAlias"],
                      "failure": r["AnalysisEntry"]["Analysis"], "failed": _key(r["AnalysisEntry"]["AnalyzedInstanceKey"]),
                      "successor": _key(r["SuccessorKey"]), "ok": r["IsSuccessful"], "started": r["RecoveryStartTimestamp"],
                      "acknowledged": r["Acknowledged"]} for r in recoveries], title="recoveries")
    with contextlib.suppress(KeyError):
        print_table([{"at": e["AuditTimestamp"], "cluster": e["ClusterName"], "action": e["AuditType"],
                      "instance": _key(e["AuditInstanceKey"]), "message": e["Message"]} for e in entries],
                    title="audit log")
    return 0
