"""The HTTP API: Orchestrator's paths and JSON shapes over a running `ManagerService`.

It holds no state of its own; every answer comes from the service or the state store.

Managers in HA: every manager answers reads (READS); an action sent to a follower is
forwarded to the leader (the answer is the leader's), or refused with 503 and the leader's
address when it cannot be reached. With no other leader known, the action is done here, and
recover and takeover refuse unless this manager leads. `/api/leader-check` answers 200 on the leader and 404 (or the
status in its path) elsewhere, as Orchestrator's, so orchestrator-client finds the leader among
several API URLs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from turnout.api import auth, orchestrator, shapes
from turnout.api.console import add_console, audit_action
from turnout.api.context import SERVICE
from turnout.api.openapi import ROUTES, openapi_document
from turnout.api.proxies import LocalProxy
from turnout.manager.leadership import LEASE
from turnout.manager.service import ManagerError, ManagerService, NotLeader, cluster_matches
from turnout.topology.model import make_key

log = logging.getLogger("turnout.api")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_DURATION = re.compile(r"^(\d+)([smhdw])$")


def parse_duration(text: str) -> float:
    """Orchestrator's SimpleTimeToSeconds: '30s', '10m', '2h', '1d', '4w' (a bare number is refused)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"Cannot parse simple time: {text}")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]


def ok(message: str, details: Any = None) -> web.Response:
    return web.json_response(shapes.response("OK", message, details))


def error(status: int, message: str) -> web.Response:
    return web.json_response(shapes.response("ERROR", message), status=status)


def _port(request: web.Request) -> int:
    return orchestrator.port_of(request.match_info["port"])


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals answer as Orchestrator's do: HTTP 500 with {"Code": "ERROR", "Message": ...}."""
    try:
        return await handler(request)
    except NotLeader as exc:
        return error(503, str(exc))
    except (ManagerError, ValueError) as exc:
        return error(500, str(exc))


def _service(request: web.Request) -> ManagerService:
    return request.app[SERVICE]


async def _instance_json(service: ManagerService, key: str) -> dict[str, Any]:
    return await orchestrator.instance_json(service, key)


async def health(request: web.Request) -> web.Response:
    service = _service(request)
    healthy = service.last_tick is not None
    details = {"Healthy": healthy, "Hostname": service.owner, "Token": service.owner,
               "IsActiveNode": service.is_leader, "ActiveNode": await service.store.lease_owner(LEASE),
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


async def clusters(request: web.Request) -> web.Response:
    """Cluster names, Orchestrator's: each cluster's current master."""
    return web.json_response(sorted(v.state.master for v in _service(request).views.values()))


async def instance(request: web.Request) -> web.Response:
    key = make_key(request.match_info["host"], _port(request))
    return web.json_response(await _instance_json(_service(request), key))


async def clusters_info(request: web.Request) -> web.Response:
    service = _service(request)
    return web.json_response([
        shapes.cluster_info(view.state, len(view.snapshot.instances),
                            cluster_matches(name, service.settings.RecoverMasterClusterFilters))
        for name, view in sorted(service.views.items())
    ])


async def _cluster_instances(service: ManagerService, hint: str) -> web.Response:
    return await orchestrator.cluster_instances(service, service.resolve_cluster(hint))


async def cluster(request: web.Request) -> web.Response:
    return await _cluster_instances(_service(request), request.match_info["hint"])


async def cluster_by_alias(request: web.Request) -> web.Response:
    return await _cluster_instances(_service(request), request.match_info["alias"])


async def replication_analysis(request: web.Request) -> web.Response:
    service = _service(request)
    hint = request.match_info.get("hint")
    views = [service.resolve_cluster(hint)] if hint else list(service.views.values())
    details = [
        shapes.analysis(f, v.snapshot.instances[f.instance].master_key, v.state.master)
        for v in views for f in v.findings if f.is_problem
    ]
    settings = [{"Instance": shapes.key(s.instance), "Setting": s.setting, "Value": s.value, "Message": s.message}
                for s in service.settings_findings]
    return ok("Analysis", details) if not request.query.get("settings") else ok("Analysis", {
        "Analysis": details, "SlowDetectionSettings": settings})


async def recover(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    cand_host = request.match_info.get("cand_host")
    candidate = make_key(cand_host, int(request.match_info["cand_port"])) if cand_host else None
    result = await _service(request).recover(host, port, candidate)
    if not result.success:
        return web.json_response(shapes.response("ERROR", result.message, shapes.recovery_result(result)), status=500)
    # Orchestrator's Details is the promoted instance's key; turnout's account of it rides along.
    return ok(f"Recovery executed on {result.failed}", {**shapes.key(result.successor),
                                                          **shapes.recovery_result(result)})


async def ack_recovery(request: web.Request) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(orchestrator.cluster_hint(request))
    comment = orchestrator.ack_comment(request)
    by = orchestrator.ack_user(request)
    await service.acknowledge(view.state.name, by, comment)
    return ok("Acknowledged cluster recoveries", view.state.master)


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
    key = make_key(info["host"], _port(request))
    return ok(f"Downtime begun: {key}", shapes.key(key))


async def end_downtime(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    await _service(request).end_downtime(host, port)
    return ok(f"Downtime ended: {make_key(host, port)}", shapes.key(make_key(host, port)))


async def unfence(request: web.Request) -> web.Response:
    host, port = request.match_info["host"], _port(request)
    lifted = await _service(request).unfence(host, port)
    return ok(f"Fence lifted: {make_key(host, port)}" if lifted else f"{make_key(host, port)} was not fenced")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def leader_check(request: web.Request) -> web.Response:
    status = request.match_info.get("status", "404")
    code = int(status) if status.isdigit() and 100 <= int(status) <= 599 else 404
    if _service(request).is_leader:
        return web.json_response("OK")
    return web.json_response("Not leader", status=code)


async def raft_leader(request: web.Request) -> web.Response:
    leader = _service(request).leader()
    if leader is None:
        return web.json_response("no leader known", status=404)
    return web.json_response(leader)


FORWARDED = "X-Turnout-Forwarded-By"


@web.middleware
async def forward_actions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An action sent to a follower goes to the leader; reads are answered here."""
    service = _service(request)
    if service.is_leader or handler in READS or not request.path.startswith("/api/"):
        return await handler(request)
    leader = service.leader()
    if leader is None or leader == service.settings.advertise:
        # No other leader known: done here; recover and takeover refuse by themselves.
        return await handler(request)
    if request.headers.get(FORWARDED):
        service.require_leader(request.path)  # a loop: raises NotLeader, 503 with the leader's address
    import aiohttp

    headers = {k: v for k, v in request.headers.items()
               if k.lower() in ("authorization", "x-forwarded-user", "content-type", "accept", "cookie",
                                 "x-turnout-console")}
    headers[FORWARDED] = service.owner
    try:
        async with aiohttp.ClientSession() as client, client.request(
            request.method, f"http://{leader}{request.path_qs}", headers=headers, data=await request.read(),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
        ) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, headers={
                "Content-Type": answer.headers.get("Content-Type", "application/json"), "X-Turnout-Leader": str(leader)})
    except (aiohttp.ClientError, TimeoutError) as exc:
        return error(503, f"this manager ({service.owner}) is not the leader, and the leader at {leader} cannot be "
                     f"reached: {exc or type(exc).__name__}; retry, or send the action there")


HANDLERS: dict[str, Handler] = {
    "health": health, "discover": discover, "forget": forget, "instance": instance, "clusters": clusters,
    "clusters_info": clusters_info, "cluster": cluster, "cluster_by_alias": cluster_by_alias,
    "replication_analysis": replication_analysis, "recover": recover,
    "ack_recovery": ack_recovery, "audit_recovery": audit_recovery, "audit": audit,
    "begin_downtime": begin_downtime, "end_downtime": end_downtime, "unfence": unfence, "openapi": openapi,
    **orchestrator.HANDLERS,
    "leader_check": leader_check, "raft_leader": raft_leader,
}
# Handlers that only read: every manager answers them. Any other /api/ route acts, and a follower
# forwards it to the leader (a new route is forwarded unless listed here: slower, never wrong).
READS: frozenset[Handler] = frozenset({
    health, instance, clusters, clusters_info, cluster, cluster_by_alias, replication_analysis,
    audit_recovery, audit, openapi, leader_check, raft_leader, orchestrator.unknown,
    *(orchestrator.HANDLERS[name] for name in (
        "all_instances", "search", "cluster_info", "cluster_master", "masters", "instance_replicas",
        "cluster_by_instance", "downtimed", "cluster_osc_replicas", "topology", "check_global_recoveries",
        "status", "raft_health")),
})


def make_app(service: ManagerService, local_proxy: LocalProxy | None = None) -> web.Application:
    """The API under /api/ and the console under / (`local_proxy`: the proxy in this process)."""
    app = web.Application(middlewares=[auth.middleware(service.settings, audit_action), errors, forward_actions])
    app[SERVICE] = service
    for route in ROUTES:
        app.router.add_route(route.method, route.path, HANDLERS[route.handler])
    add_console(app, service, local_proxy)
    app.router.add_route("*", "/api/{tail:.*}", orchestrator.unknown)
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
