"""The web console: static pages under `/`, its read-only JSON and live events under `/console/`.

The console's actions are the API's own routes (`/api/graceful-master-takeover/...` and so on),
called by the page with the operator's credentials: the same handlers, the same refusals, the
same audit.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from turnout.api import auth, console_model
from turnout.api.events import Hub, stream
from turnout.api.proxies import LocalProxy, list_proxies, with_rates
from turnout.manager import switches
from turnout.manager.candidates import Limits
from turnout.manager.service import ManagerService, cluster_matches
from turnout.manager.takeover import TakeoverRefused, check_takeover
from turnout.topology.model import make_key, split_key

HUB: web.AppKey[Hub] = web.AppKey("console_hub", Hub)
STATIC = Path(str(resources.files("turnout.api") / "static"))
CONSOLE_HEADER = "X-Turnout-Console"


class Console:
    """Builds the console's sections from the manager service and the proxies."""

    def __init__(self, service: ManagerService, local_proxy: LocalProxy | None) -> None:
        self.service = service
        self.local_proxy = local_proxy
        self._rates: dict[str, tuple[float, int]] = {}

    async def proxies(self) -> list[dict[str, Any]]:
        driver = self.service.proxysql
        driven = driver.report() if driver is not None else []
        return with_rates(await list_proxies(self.service.store, self.local_proxy, driven), self._rates)

    async def sections(self) -> dict[str, Any]:
        service, store = self.service, self.service.store
        proxies = await self.proxies()
        rows = [console_model.ServerRow(str(p["name"]), int(s["hostgroup"]), str(s["address"]), str(s["status"]),
                                        str(s["comment"]))
                for p in proxies for s in p["servers"]]
        fences = {f.key: f for f in await store.fenced()}
        downtimes = {d.key: d for d in await store.downtimes()}
        clusters = [
            console_model.cluster_tree(view.state, view.snapshot, view.findings, fences, downtimes, rows,
                                       cluster_matches(name, service.settings.RecoverMasterClusterFilters))
            for name, view in sorted(service.views.items())
        ]
        recoveries = console_model.recoveries_view(await store.recoveries(None, 50))
        audit = console_model.audit_groups(await store.audit_log(None, 300))
        manager = {"owner": service.owner, "leader": service.is_leader, "last_tick": service.last_tick,
                   "recoveries_disabled": await switches.recoveries_disabled(store),
                   "poll_seconds": service.settings.InstancePollSeconds,
                   "settings_findings": [{"instance": f.instance, "setting": f.setting, "message": f.message}
                                         for f in service.settings_findings]}
        return {"manager": manager, "clusters": clusters, "proxies": proxies, "recoveries": recoveries,
                "audit": audit}

    def takeover_check(self, hint: str, designated: str | None) -> dict[str, Any]:
        service = self.service
        view = service.resolve_cluster(hint)
        state, snapshot = view.state, view.snapshot
        busy = state.name in service._busy
        old = snapshot.instances.get(state.master)
        flavor = service.actions.flavor(old) if old is not None and old.reachable else None
        limits = Limits(service.settings.ReasonableReplicationLagSeconds)
        verdict: dict[str, Any] = {"ok": False, "message": f"{state.master} is not in the manager's view"}
        if old is not None:
            try:
                new, why = check_takeover(state, snapshot, old, designated, service.toolkit, busy)
                verdict = {"ok": True, "message": why, "successor": new.key}
            except TakeoverRefused as exc:
                verdict = {"ok": False, "message": str(exc)}
        # With no designated replica, the checks are those of the one the manager would choose.
        checked = designated or verdict.get("successor")
        checks = console_model.takeover_checks(state, snapshot, checked, flavor, service.settings.promotion_rules,
                                               limits, busy)
        replicas = [r.key for r in snapshot.replicas_of(state.master)]
        return {"cluster": state.name, "master": state.master, "epoch": state.epoch, "designated": designated,
                "replicas": replicas, "checks": [c.as_dict() for c in checks], "verdict": verdict}


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)


def whoami(request: web.Request) -> dict[str, Any]:
    identity = auth.identity_of(request)
    settings = request.app[CONSOLE].service.settings
    return {"user": auth.display_user(identity, request), "can_act": identity.can_act,
            "authentication": settings.AuthenticationMethod or "none"}


# The page loads only its own files; no other site may frame it (clickjacking).
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


async def index(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def model(request: web.Request) -> web.Response:
    return web.json_response({"me": whoami(request), **await request.app[CONSOLE].sections()}, dumps=_dumps)


async def events(request: web.Request) -> web.StreamResponse:
    return await stream(request, request.app[HUB], whoami(request))


async def takeover_check(request: web.Request) -> web.Response:
    designated = request.query.get("designated") or None
    if designated is not None:
        host, port = split_key(designated)
        designated = make_key(host, port)
    return web.json_response(request.app[CONSOLE].takeover_check(request.match_info["hint"], designated))


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


async def audit_action(request: web.Request, identity: auth.Identity, response: web.StreamResponse) -> None:
    """Audit an action with who took it and what came of it (the operation audits its own steps)."""
    console = request.app.get(CONSOLE)
    if console is None or response.headers.get("X-Turnout-Leader"):
        return  # forwarded to the leader, which audited it
    service = console.service
    info = request.match_info
    endpoint = request.path.removeprefix("/api/").split("/", 1)[0] or request.path
    instance = None
    if "host" in info and "port" in info and info["port"].isdigit():
        instance = make_key(info["host"], int(info["port"]))
    cluster = service.cluster_of.get(instance, "") if instance else ""
    hint = info.get("hint")
    if hint:
        try:
            cluster = service.resolve_cluster(hint).state.name
        except Exception:
            cluster = hint
    outcome = f"HTTP {response.status}"
    body = getattr(response, "body", None)
    if isinstance(body, bytes | bytearray):
        try:
            answer = json.loads(body)
            if isinstance(answer, dict) and "Code" in answer:
                outcome = f"{answer['Code']}: {answer.get('Message', '')}"
        except ValueError:
            pass
    where = "the console" if request.headers.get(CONSOLE_HEADER) else "the API"
    user = auth.display_user(identity, request)
    await service.store.audit(cluster, endpoint, f"{endpoint} by {user} from {where} → {outcome}", instance)
    hub = request.app.get(HUB)
    if hub is not None:
        hub.poke()


def add_console(app: web.Application, service: ManagerService, local_proxy: LocalProxy | None) -> None:
    console = Console(service, local_proxy)
    hub = Hub(console.sections, service.store.watch,
              lambda: (service.ticks, local_proxy.version() if local_proxy is not None else None))
    app[CONSOLE] = console
    app[HUB] = hub

    async def start(_: web.Application) -> None:
        await hub.start()

    async def stop(_: web.Application) -> None:
        await hub.stop()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_get("/", index)
    app.router.add_get("/console/api/model", model)
    app.router.add_get("/console/api/events", events)
    app.router.add_get("/console/api/takeover-check/{hint}", takeover_check)
    app.router.add_static("/console/static/", STATIC, append_version=False)
