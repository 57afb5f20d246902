"""The HTTP API: Orchestrator's paths and JSON shapes over a running `ManagerService`.

It holds no state of its own; every answer comes from the service or the state store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from turnout.api import auth, shapes
from turnout.api.console import add_console, audit_action
from turnout.api.openapi import ROUTES, openapi_document
from turnout.api.proxies import LocalProxy
from turnout.manager import tree
from turnout.manager.service import ManagerError, ManagerService, NotFound, cluster_matches
from turnout.topology.model import make_key

log = logging.getLogger("turnout.api")
SERVICE: web.AppKey[ManagerService] = web.AppKey("service", ManagerService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DURATION = re.compile(r"^(\d+)([smhd]?)$")


def parse_duration(text: str) -> float:
    """Orchestrator's downtime durations: '300', '30s', '10m', '2h', '1d'."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"duration {text!r}: use a number of seconds or e.g. 30s, 10m, 2h, 1d")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def ok(message: str, details: Any = None) -> web.Response:
    return web.json_response(shapes.response("OK", message, details))


def error(status: int, message: str) -> web.Response:
    return web.json_response(shapes.response("ERROR", message), status=status)


def _port(request: web.Request) -> int:
    try:
        return int(request.match_info["port"])
    except ValueError:
        raise web.HTTPBadRequest(text="port must be a number") from None


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotFound as exc:
        return error(404, str(exc))
    except ManagerError as exc:
        return error(409, str(exc))
    except ValueError as exc:
        return error(400, str(exc))


def _service(request: web.Request) -> ManagerService:
    return request.app[SERVICE]


async def _instance_json(service: ManagerService, key: str) -> dict[str, Any]:
    inst = service.instance(key)
    cluster = service.cluster_of.get(key, key)
    fenced = {f.key for f in await service.store.fenced()}
    downtime = next((d for d in await service.store.downtimes() if d.key == key), None)
    rule = service.settings.promotion_rules.get(key, "neutral")
    return shapes.instance(inst, cluster, key in fenced, downtime, rule)


async def health(request: web.Request) -> web.Response:
    service = _service(request)
    healthy = service.last_tick is not None
    details = {"Healthy": healthy, "Hostname": service.owner, "Token": service.owner,
               "IsActiveNode": service.is_leader, "ActiveNode": await service.store.lease_owner("turnout-manager"),
               "LastDiscovery": shapes.timestamp(service.last_tick)}
    if not healthy:
        return web.json_response(shapes.response("ERROR", "Application node is not ready yet", details), status=500)
    return ok("Application node is healthy", details)


async def discover(request: web.Request) -> web.Response:
    service = _service(request)
    inst = await service.discover_instance(request.match_info["host"], _port(request))
    return ok(f"Instance discovered: {inst.key}", await _instance_json(service, inst.key))


async def forget(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    await _service(request).forget_instance(host, port)
    return ok(f"Instance forgotten: {make_key(host, port)}", {"Hostname": host, "Port": port})


async def instance(request: web.Request) -> web.Response:
    key = make_key(request.match_info["host"], _port(request))
    return web.json_response(await _instance_json(_service(request), key))


async def clusters(request: web.Request) -> web.Response:
    return web.json_response(sorted(_service(request).views))


async def clusters_info(request: web.Request) -> web.Response:
    service = _service(request)
    return web.json_response([
        shapes.cluster_info(view.state, len(view.snapshot.instances),
                            cluster_matches(name, service.settings.RecoverMasterClusterFilters))
        for name, view in sorted(service.views.items())
    ])


async def _cluster_instances(service: ManagerService, hint: str) -> web.Response:
    view = service.resolve_cluster(hint)
    return web.json_response([await _instance_json(service, k) for k in sorted(view.snapshot.instances)])


async def cluster(request: web.Request) -> web.Response:
    return await _cluster_instances(_service(request), request.match_info["hint"])


async def cluster_by_alias(request: web.Request) -> web.Response:
    return await _cluster_instances(_service(request), request.match_info["alias"])


async def topology(request: web.Request) -> web.Response:
    view = _service(request).resolve_cluster(request.match_info["hint"])
    return ok(f"Topology of {view.state.name}", tree.render(view.snapshot.instances, view.snapshot.fenced))


async def replication_analysis(request: web.Request) -> web.Response:
    service = _service(request)
    hint = request.match_info.get("hint")
    views = [service.resolve_cluster(hint)] if hint else list(service.views.values())
    details = [
        shapes.analysis(f, v.snapshot.instances[f.instance].master_key)
        for v in views for f in v.findings if f.is_problem
    ]
    settings = [{"Instance": shapes.key(s.instance), "Setting": s.setting, "Value": s.value, "Message": s.message}
                for s in service.settings_findings]
    return ok("Analysis", details) if not request.query.get("settings") else ok("Analysis", {
        "Analysis": details, "SlowDetectionSettings": settings})


async def takeover(request: web.Request) -> web.Response:
    auto = request.path.split("/")[2].endswith("-auto")
    host = request.match_info.get("host")
    new = make_key(host, _port(request)) if host else None
    result = await _service(request).takeover(request.match_info["hint"], new, auto)
    if not result.success:
        return web.json_response(shapes.response("ERROR", result.message, shapes.takeover_result(result)), status=500)
    return ok(f"graceful-master-takeover: successor {result.new_master}, former master {result.old_master}",
              shapes.takeover_result(result))


async def recover(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    cand_host = request.match_info.get("cand_host")
    candidate = make_key(cand_host, int(request.match_info["cand_port"])) if cand_host else None
    result = await _service(request).recover(host, port, candidate)
    if not result.success:
        return web.json_response(shapes.response("ERROR", result.message, shapes.recovery_result(result)), status=500)
    return ok(f"Recovered: {result.failed} -> {result.successor}", shapes.recovery_result(result))


async def ack_recovery(request: web.Request) -> web.Response:
    identity = auth.identity_of(request)
    by = (identity.user if identity.authenticated else "") or request.query.get("owner") \
        or request.headers.get("X-Forwarded-User") or "turnout-api"
    comment = request.query.get("comment", "")
    count = await _service(request).acknowledge(request.match_info["hint"], by, comment)
    return ok(f"Acknowledged cluster recoveries: {count}", count)


async def audit_recovery(request: web.Request) -> web.Response:
    service = _service(request)
    hint = request.match_info.get("hint")
    name = service.resolve_cluster(hint).state.name if hint else None
    return web.json_response([shapes.recovery_record(r) for r in await service.store.recoveries(name)])


async def audit(request: web.Request) -> web.Response:
    service = _service(request)
    hint = request.match_info.get("hint")
    name = service.resolve_cluster(hint).state.name if hint else None
    limit = int(request.query.get("limit", "200"))
    return web.json_response([shapes.audit_entry(e) for e in await service.store.audit_log(name, limit)])


async def begin_downtime(request: web.Request) -> web.Response:
    info = request.match_info
    seconds = parse_duration(info["duration"])
    await _service(request).begin_downtime(info["host"], _port(request), info["owner"], info["reason"], seconds)
    return ok(f"Downtime begun: {make_key(info['host'], _port(request))}")


async def end_downtime(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    ended = await _service(request).end_downtime(host, port)
    return ok(f"Downtime ended: {make_key(host, port)}" if ended else f"{make_key(host, port)} was not downtimed")


async def unfence(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    lifted = await _service(request).unfence(host, port)
    return ok(f"Fence lifted: {make_key(host, port)}" if lifted else f"{make_key(host, port)} was not fenced")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


HANDLERS: dict[str, Handler] = {
    "health": health, "discover": discover, "forget": forget, "instance": instance, "clusters": clusters,
    "clusters_info": clusters_info, "cluster": cluster, "cluster_by_alias": cluster_by_alias, "topology": topology,
    "replication_analysis": replication_analysis, "takeover": takeover, "recover": recover,
    "ack_recovery": ack_recovery, "audit_recovery": audit_recovery, "audit": audit,
    "begin_downtime": begin_downtime, "end_downtime": end_downtime, "unfence": unfence, "openapi": openapi,
}


def make_app(service: ManagerService, local_proxy: LocalProxy | None = None) -> web.Application:
    """The API under /api/ and the console under / (`local_proxy`: the proxy in this process)."""
    app = web.Application(middlewares=[auth.middleware(service.settings, audit_action), errors])
    app[SERVICE] = service
    for route in ROUTES:
        app.router.add_route(route.method, route.path, HANDLERS[route.handler])
    add_console(app, service, local_proxy)
    return app


async def serve(
    service: ManagerService, host: str, port: int, local_proxy: LocalProxy | None = None
) -> web.AppRunner:
    """Start the API and the console; stop them with `await runner.cleanup()`."""
    warning = auth.listener_warning(host, service.settings)
    if warning:
        log.warning(warning)
    runner = web.AppRunner(make_app(service, local_proxy), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
