"""The rest of Orchestrator's API that orchestrator-client calls: lookups, topology operations,
forced failovers, recovery switches. Paths, JSON shapes and messages follow Orchestrator's
(go/http/api.go); refusals answer 500 with {"Code": "ERROR", ...} through app.errors.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from turnout.api import auth, shapes
from turnout.api.context import service_of
from turnout.manager import osc, switches, tree
from turnout.manager.candidates import PROMOTION_RULES, PromotionRule
from turnout.manager.relocation import OperationRefused, ancestors, move_below
from turnout.manager.service import ClusterView, ManagerError, ManagerService
from turnout.topology.model import Instance, make_key

_service = service_of


def ok(message: str, details: Any = None) -> web.Response:
    return web.json_response(shapes.response("OK", message, details))


def refuse(message: str, details: Any = None) -> web.Response:
    return web.json_response(shapes.response("ERROR", message, details), status=500)


def port_of(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"Invalid port: {text}")
    return int(text)


def instance_key(request: web.Request, host: str = "host", port: str = "port") -> str:
    return make_key(request.match_info[host], port_of(request.match_info[port]))


def cluster_hint(request: web.Request) -> str:
    """Orchestrator's getClusterHint: the hint, else host:port."""
    info = request.match_info
    if info.get("hint"):
        return info["hint"]
    if info.get("alias"):
        return info["alias"]
    return instance_key(request)


# ---- the Instance shape, with what only the store knows ------------------------------------------
class InstanceShaper:
    """Builds Orchestrator's Instance JSON for many instances from one read of the store."""

    def __init__(self, service: ManagerService, fenced: set[str], downtimes: dict[str, Any],
                 rules: dict[str, PromotionRule]) -> None:
        self.service, self.fenced, self.downtimes, self.rules = service, fenced, downtimes, rules

    @classmethod
    async def load(cls, service: ManagerService, keys: Iterable[str] | None = None) -> InstanceShaper:
        fenced = {f.key for f in await service.store.fenced()}
        downtimes = {d.key: d for d in await service.store.downtimes()}
        rules = await switches.registered_rules(service.store, service.instances if keys is None else keys)
        return cls(service, fenced, downtimes, rules)

    def view_of(self, key: str) -> ClusterView | None:
        return self.service.views.get(self.service.cluster_of.get(key, ""))

    def errant(self, inst: Instance, view: ClusterView | None) -> str:
        if view is None or not inst.reachable or inst.key == view.state.master:
            return ""
        master = self.service.instances.get(view.state.master)
        if master is None:
            return ""
        return ",".join(self.service.actions.flavor(inst).errant(inst, master))

    def shape(self, key: str) -> dict[str, Any]:
        service = self.service
        inst = service.instance(key)
        view = self.view_of(key)
        alias = service.cluster_of.get(key, key)
        cluster = view.state.master if view is not None else alias
        rule = self.rules.get(key) or service.settings.promotion_rules.get(key, "neutral")
        return shapes.instance(
            inst, cluster, key in self.fenced, self.downtimes.get(key), rule, alias=alias,
            errant=self.errant(inst, view), depth=len(ancestors(service.instances, key)),
            registered=key in self.rules,
        )


def _ordered(service: ManagerService, keys: Iterable[str]) -> list[str]:
    """Orchestrator's order: replication depth, then most replicas, then cluster, host, port."""
    def rank(key: str) -> tuple[int, int, str, str, int]:
        inst = service.instances[key]
        replicas = sum(1 for i in service.instances.values() if i.master_key == key)
        return (len(ancestors(service.instances, key)), -replicas, service.cluster_of.get(key, ""),
                inst.host, inst.port)
    return sorted(keys, key=rank)


async def _instances(service: ManagerService, keys: Iterable[str]) -> web.Response:
    ordered = _ordered(service, keys)
    shaper = await InstanceShaper.load(service, ordered)
    return web.json_response([shaper.shape(k) for k in ordered])


async def instance_json(service: ManagerService, key: str) -> dict[str, Any]:
    return (await InstanceShaper.load(service, [key])).shape(key)


# ---- lookups ------------------------------------------------------------------------------------
async def all_instances(request: web.Request) -> web.Response:
    service = _service(request)
    return await _instances(service, service.instances)


def matches(service: ManagerService, key: str, text: str) -> bool:
    """Orchestrator's SearchInstances: a substring of host, host:port, cluster, alias or version,
    or exactly the server_id or port."""
    inst = service.instances[key]
    view = service.views.get(service.cluster_of.get(key, ""))
    names = [inst.host, key, inst.version, service.cluster_of.get(key, "")]
    if view is not None:
        names.append(view.state.master)
    return any(text in n for n in names) or text in (str(inst.server_id), str(inst.port))


async def search(request: web.Request) -> web.Response:
    service = _service(request)
    text = (request.match_info.get("text") or request.query.get("s", "")).strip()
    return await _instances(service, [k for k in service.instances if matches(service, k, text)])


def _cluster_info(service: ManagerService, view: ClusterView) -> dict[str, Any]:
    from turnout.manager.service import cluster_matches

    return shapes.cluster_info(view.state, len(view.snapshot.instances),
                               cluster_matches(view.state.name, service.settings.RecoverMasterClusterFilters))


async def cluster_info(request: web.Request) -> web.Response:
    service = _service(request)
    return web.json_response(_cluster_info(service, service.resolve_cluster(cluster_hint(request))))


async def cluster_master(request: web.Request) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(cluster_hint(request))
    if view.state.master not in service.instances:
        raise ManagerError(f"No masters found for {view.state.master}")
    return web.json_response(await instance_json(service, view.state.master))


async def masters(request: web.Request) -> web.Response:
    """Writeable masters, one per cluster."""
    service = _service(request)
    keys = [v.state.master for v in service.views.values()
            if v.state.master in service.instances and service.instances[v.state.master].read_only is False]
    return await _instances(service, keys)


async def instance_replicas(request: web.Request) -> web.Response:
    service = _service(request)
    key = instance_key(request)
    service.instance(key)
    return await _instances(service, [k for k, i in service.instances.items() if i.master_key == key])


async def cluster_by_instance(request: web.Request) -> web.Response:
    service = _service(request)
    key = instance_key(request)
    service.instance(key)
    view = service.resolve_cluster(key)
    return await _instances(service, view.snapshot.instances)


async def downtimed(request: web.Request) -> web.Response:
    service = _service(request)
    hint = request.match_info.get("hint")
    keys = [d.key for d in await service.store.downtimes() if d.key in service.instances]
    if hint:
        name = service.resolve_cluster(hint).state.name
        keys = [k for k in keys if service.cluster_of.get(k) == name]
    return await _instances(service, keys)


async def cluster_osc_replicas(request: web.Request) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(cluster_hint(request))
    return await _instances(service, osc.control_replicas(view.snapshot.instances, view.state.master))


async def topology(request: web.Request) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(cluster_hint(request))
    kind = request.path.split("/")[2]
    downtimes = {d.key for d in await service.store.downtimes()}
    shaper = await InstanceShaper.load(service, view.snapshot.instances)
    errant = frozenset(k for k, i in view.snapshot.instances.items() if shaper.errant(i, view))
    marks = tree.Marks(fenced=view.snapshot.fenced, downtimed=frozenset(downtimes), errant=errant)
    text = tree.render(view.snapshot.instances, marks, tabulated=kind == "topology-tabulated",
                       tags=kind == "topology-tags", root_order=(view.state.master,))
    return ok(f"Topology for cluster {view.state.master}", text)


# ---- instance operations ---------------------------------------------------------------------------
async def _operate(request: web.Request, key: str) -> tuple[ManagerService, ClusterView]:
    service = _service(request)
    service.instance(key)
    view = service.resolve_cluster(key)
    return service, view


def _refused(exc: OperationRefused) -> ManagerError:
    return ManagerError(str(exc))


async def register_candidate(request: web.Request) -> web.Response:
    service = _service(request)
    key = instance_key(request)
    rule = request.match_info["rule"]
    if rule == "must":
        raise ManagerError(f"CandidatePromotionRule: {rule} not supported yet")
    if rule not in PROMOTION_RULES:
        raise ManagerError(f"Invalid CandidatePromotionRule: {rule}")
    service.instance(key)
    await switches.register_candidate(service.store, key, rule)
    await service.store.audit(service.cluster_of.get(key, key), "register-candidate",
                              f"{key} registered as candidate with promotion rule {rule} for "
                              f"{switches.CANDIDATE_SECONDS / 60:g} minutes", key)
    return ok("Registered candidate", shapes.key(key))


async def _replication(request: web.Request, start: bool) -> web.Response:
    key = instance_key(request)
    service, view = await _operate(request, key)
    command = "start-replica" if start else "stop-replica"
    async with service.exclusive(view.state.name) as state:
        if state.phase != "stable":
            raise ManagerError(f"cluster {state.name} is {state.phase}: wait for the running operation to finish")
        inst = await service.actions.refresh(service.instance(key))
        if not inst.reachable:
            raise ManagerError(f"{key} is unreachable: {inst.last_probe_error}")
        if not inst.is_replica:
            raise ManagerError(f"instance is not a replica: {key}")
        if start and key in view.snapshot.fenced:
            raise ManagerError(f"{key} is fenced: rebuild it and lift the fence first")
        if start:
            await service.actions.start_replication(inst)
        else:
            await service.actions.stop_replication(inst)
        await service.store.audit(state.name, command, f"{command}: {'START' if start else 'STOP'} SLAVE on {key}",
                                  key)
    details = await instance_json(service, key)
    return ok(f"Replica {'started' if start else 'stopped'}: {key}", details)


async def start_replica(request: web.Request) -> web.Response:
    return await _replication(request, True)


async def stop_replica(request: web.Request) -> web.Response:
    return await _replication(request, False)


async def _read_only(request: web.Request, on: bool) -> web.Response:
    key = instance_key(request)
    service, view = await _operate(request, key)
    command = "set-read-only" if on else "set-writeable"
    async with service.exclusive(view.state.name) as state:
        if state.phase != "stable":
            raise ManagerError(f"cluster {state.name} is {state.phase}: wait for the running operation to finish")
        if not on and key in view.snapshot.fenced:
            raise ManagerError(f"{key} is fenced: it stays read-only until it is rebuilt and the fence is lifted")
        inst = service.instance(key)
        await service.actions.set_read_only(inst, on)
        await service.store.audit(state.name, command, f"{command}: read_only={'ON' if on else 'OFF'} on {key}"
                                  + ("" if on or key == state.master else
                                     f" (not the master {state.master}: writes there are errant)"), key)
    return ok("Server set as read-only" if on else "Server set as writeable", await instance_json(service, key))


async def set_read_only(request: web.Request) -> web.Response:
    return await _read_only(request, True)


async def set_writeable(request: web.Request) -> web.Response:
    return await _read_only(request, False)


# ---- moving replicas ---------------------------------------------------------------------------------
async def _move(request: web.Request, key: str, below: str, command: str) -> dict[str, Any]:
    service = _service(request)
    service.instance(key)
    service.instance(below)
    view = service.resolve_cluster(key)
    if service.cluster_of.get(below) != view.state.name:
        raise ManagerError(f"{below} is not in cluster {view.state.name} of {key}")
    async with service.exclusive(view.state.name) as state:
        try:
            await move_below(service.toolkit, state, view.snapshot, key, below, command)
        except OperationRefused as exc:
            raise _refused(exc) from exc
    return await instance_json(service, key)


async def relocate(request: web.Request) -> web.Response:
    key, below = instance_key(request), instance_key(request, "below_host", "below_port")
    details = await _move(request, key, below, "relocate")
    return ok(f"Instance {key} relocated below {below}", details)


async def move_below_gtid(request: web.Request) -> web.Response:
    key, below = instance_key(request), instance_key(request, "below_host", "below_port")
    details = await _move(request, key, below, "move-gtid")
    return ok(f"Instance {key} moved below {below} via GTID", details)


async def move_below_sibling(request: web.Request) -> web.Response:
    service = _service(request)
    key, sibling = instance_key(request), instance_key(request, "below_host", "below_port")
    inst, other = service.instance(key), service.instance(sibling)
    if inst.master_key is None or inst.master_key != other.master_key:
        raise ManagerError(f"instances are not siblings: {key}, {sibling}")
    details = await _move(request, key, sibling, "move-below")
    return ok(f"Instance {key} moved below {sibling}", details)


async def move_up(request: web.Request) -> web.Response:
    service = _service(request)
    key = instance_key(request)
    inst = service.instance(key)
    master = service.instances.get(inst.master_key or "")
    if master is None or master.master_key is None:
        raise ManagerError(f"{key}: its master {inst.master_key or 'none'} is not a replica itself: cannot move up")
    details = await _move(request, key, master.master_key, "move-up")
    return ok(f"Instance {key} moved up", details)


async def relocate_replicas(request: web.Request) -> web.Response:
    service = _service(request)
    key, below = instance_key(request), instance_key(request, "below_host", "below_port")
    service.instance(key)
    service.instance(below)
    pattern = request.query.get("pattern", "")
    replicas = sorted(k for k, i in service.instances.items()
                      if i.master_key == key and k != below and pattern in k)
    view = service.resolve_cluster(key)
    moved: list[str] = []
    errors: list[str] = []
    async with service.exclusive(view.state.name) as state:
        for replica in replicas:
            try:
                await move_below(service.toolkit, state, view.snapshot, replica, below, "relocate-replicas")
                moved.append(replica)
            except Exception as exc:  # refusals and failures alike: reported, the others still moved
                errors.append(f"{replica}: {exc}")
    shaper = await InstanceShaper.load(service, moved)
    message = f"Relocated {len(moved)} replicas of {key} below {below}; {len(errors)} errors: {errors}"
    if replicas and not moved:
        raise ManagerError(message)
    return ok(message, [shaper.shape(k) for k in moved])


# ---- failovers ------------------------------------------------------------------------------------------
async def _force(request: web.Request, designated: str | None) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(cluster_hint(request))
    master = view.state.master
    if designated is not None:
        service.instance(designated)
        if service.instances[designated].master_key != master:
            raise ManagerError(f"You may only promote a direct child of the master {master}. The master of "
                               f"{designated} is {service.instances[designated].master_key}.")
    result = await service.force_failover(view.state.name, designated,
                                          "force-master-takeover" if designated else "force-master-failover")
    details = {**shapes.recovery_result(result), "IsActive": False}
    if not result.success or result.successor is None:
        return refuse("Master not failed over", details)
    return ok("Master failed over", details)


async def force_master_failover(request: web.Request) -> web.Response:
    return await _force(request, None)


async def force_master_takeover(request: web.Request) -> web.Response:
    return await _force(request, instance_key(request, "designated_host", "designated_port"))


async def takeover_response(request: web.Request, hint: str, designated: str | None) -> web.Response:
    auto = request.path.split("/")[2].endswith("-auto")
    result = await _service(request).takeover(hint, designated, auto)
    details = shapes.takeover_result(result)
    if not result.success:
        return refuse(f"graceful-master-takeover: {result.message}", details)
    return ok("graceful-master-takeover: successor promoted", details)


async def takeover(request: web.Request) -> web.Response:
    """graceful-master-takeover[-auto]/ + CLUSTER_HINT or HOST/PORT, then DHOST/DPORT or nothing."""
    info = request.match_info
    hint = info["hint"] if "hint" in info else instance_key(request, "cluster_host", "cluster_port")
    designated = instance_key(request, "designated_host", "designated_port") if "designated_host" in info else None
    return await takeover_response(request, hint, designated)


# ---- recoveries ------------------------------------------------------------------------------------------
def ack_comment(request: web.Request) -> str:
    comment = request.query.get("comment", "").strip()
    if not comment:
        raise ManagerError("No acknowledge comment given")
    return comment


def ack_user(request: web.Request) -> str:
    """Who acknowledges: the authenticated user (as Orchestrator's getUserId), else ?owner=."""
    identity = auth.identity_of(request)
    if identity.authenticated:
        return identity.user
    return request.query.get("owner") or request.headers.get("X-Forwarded-User") or "turnout-api"


async def ack_all_recoveries(request: web.Request) -> web.Response:
    service = _service(request)
    comment = ack_comment(request)
    by = ack_user(request)
    names = {c.name for c in await service.store.clusters()} | set(service.views)
    for name in sorted(names):
        await service.acknowledge(name, by, comment) if name in service.views else (
            await service.store.acknowledge_recoveries(name, by, comment))
    return ok("Acknowledged all recoveries", comment)


async def disable_global_recoveries(request: web.Request) -> web.Response:
    service = _service(request)
    await switches.disable_recoveries(service.store)
    await service.store.audit("", "disable-global-recoveries", "automated recoveries disabled globally")
    return ok("Globally disabled recoveries", "disabled")


async def enable_global_recoveries(request: web.Request) -> web.Response:
    service = _service(request)
    await switches.enable_recoveries(service.store)
    await service.store.audit("", "enable-global-recoveries", "automated recoveries enabled globally")
    return ok("Globally enabled recoveries", "enabled")


async def check_global_recoveries(request: web.Request) -> web.Response:
    details = "disabled" if await switches.recoveries_disabled(_service(request).store) else "enabled"
    return ok(f"Global recoveries {details}", details)


async def forget_cluster(request: web.Request) -> web.Response:
    service = _service(request)
    view = service.resolve_cluster(cluster_hint(request))
    master = view.state.master
    await service.forget_cluster(view.state.name)
    return ok(f"Cluster forgotten: {master}")


# ---- the node --------------------------------------------------------------------------------------------
def _health(service: ManagerService) -> dict[str, Any]:
    return {"Healthy": service.last_tick is not None, "Hostname": service.owner, "Token": service.owner,
            "IsActiveNode": service.is_leader, "LastDiscovery": shapes.timestamp(service.last_tick)}


async def status(request: web.Request) -> web.Response:
    service = _service(request)
    details = {**_health(service), "ActiveNode": await service.store.lease_owner("turnout-manager")}
    if service.last_tick is None:
        return refuse("Application node is unhealthy: no discovery round has completed yet", details)
    return ok("Application node is healthy", details)


async def raft_health(request: web.Request) -> web.Response:
    """turnout has no raft: the managers sharing the store are healthy when one of them leads and
    this node has discovered recently."""
    service = _service(request)
    leader = await service.store.lease_owner("turnout-manager")
    fresh = service.last_tick is not None and time.time() - service.last_tick < 3 * service.settings.InstancePollSeconds + 10
    if leader is None or not fresh:
        return refuse("unhealthy")
    return web.json_response("healthy")


async def proxysql(request: web.Request) -> web.Response:
    """turnout's own: each [[manager.proxysql]] ProxySQL per cluster, converged or lagging."""
    driver = _service(request).proxysql
    return web.json_response(driver.report() if driver is not None else [])


async def unknown(request: web.Request) -> web.Response:
    return web.json_response(
        shapes.response("ERROR", f"Unknown API path: {request.method} {request.path}"), status=404)


async def cluster_instances(service: ManagerService, view: ClusterView) -> web.Response:
    return await _instances(service, view.snapshot.instances)


HANDLERS = {
    "all_instances": all_instances, "search": search, "cluster_info": cluster_info,
    "cluster_master": cluster_master, "masters": masters, "instance_replicas": instance_replicas,
    "cluster_by_instance": cluster_by_instance, "downtimed": downtimed, "cluster_osc_replicas": cluster_osc_replicas,
    "topology": topology, "register_candidate": register_candidate, "start_replica": start_replica,
    "stop_replica": stop_replica, "set_read_only": set_read_only, "set_writeable": set_writeable,
    "relocate": relocate, "move_below_gtid": move_below_gtid, "move_below": move_below_sibling, "move_up": move_up,
    "relocate_replicas": relocate_replicas, "force_master_failover": force_master_failover,
    "force_master_takeover": force_master_takeover, "takeover": takeover, "ack_all_recoveries": ack_all_recoveries,
    "disable_global_recoveries": disable_global_recoveries, "enable_global_recoveries": enable_global_recoveries,
    "check_global_recoveries": check_global_recoveries, "forget_cluster": forget_cluster, "status": status,
    "raft_health": raft_health, "proxysql": proxysql,
}
