"""The routes the API implements, and the OpenAPI document generated from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: str
    summary: str


_I = "/{host}/{port}"
_C = "/{cluster_host}/{cluster_port}"  # a cluster named by one of its instances
_D = "/{designated_host}/{designated_port}"
_B = "/{below_host}/{below_port}"
ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/health", "health", "Is this manager node healthy and is it the active (leader) node"),
    Route("GET", "/api/discover" + _I, "discover", "Discover an instance and the topology around it"),
    Route("GET", "/api/forget" + _I, "forget", "Forget an instance"),
    Route("GET", "/api/instance" + _I, "instance", "One instance"),
    Route("GET", "/api/clusters", "clusters", "Names of the known clusters"),
    Route("GET", "/api/clusters-info", "clusters_info", "The clusters with master, epoch and phase"),
    Route("GET", "/api/cluster/alias/{alias}", "cluster_by_alias", "Instances of the cluster with this alias"),
    Route("GET", "/api/cluster/{hint}", "cluster", "Instances of a cluster (name, alias or member host:port)"),
    Route("GET", "/api/replication-analysis", "replication_analysis", "Problems found in every cluster"),
    Route("GET", "/api/replication-analysis/{hint}", "replication_analysis", "Problems found in one cluster"),
    Route("GET", "/api/graceful-master-takeover/{hint}", "takeover",
          "Planned switch to the master's only replica; the old master replicates from it, stopped"),
    Route("GET", "/api/graceful-master-takeover/{hint}" + _D, "takeover",
          "Planned switch to the designated replica; the old master replicates from it, stopped"),
    Route("GET", "/api/graceful-master-takeover" + _C, "takeover",
          "Planned switch (cluster named by a member) to the master's only replica"),
    Route("GET", "/api/graceful-master-takeover" + _C + _D, "takeover",
          "Planned switch (cluster named by a member) to the designated replica"),
    Route("GET", "/api/graceful-master-takeover-auto/{hint}", "takeover",
          "Planned switch to the best replica; the old master replicates from it"),
    Route("GET", "/api/graceful-master-takeover-auto/{hint}" + _D, "takeover",
          "Planned switch to the designated replica; the old master replicates from it"),
    Route("GET", "/api/graceful-master-takeover-auto" + _C, "takeover",
          "Planned switch (cluster named by a member) to the best replica"),
    Route("GET", "/api/graceful-master-takeover-auto" + _C + _D, "takeover",
          "Planned switch (cluster named by a member) to the designated replica"),
    Route("GET", "/api/recover" + _I, "recover", "Recover a dead master now (not subject to anti-flapping)"),
    Route("GET", "/api/recover" + _I + "/{cand_host}/{cand_port}", "recover",
          "Recover a dead master, promoting the given candidate"),
    Route("GET", "/api/ack-recovery/cluster/{hint}", "ack_recovery",
          "Acknowledge a cluster's recoveries (lifts anti-flapping); ?comment= (required)"),
    Route("GET", "/api/ack-recovery/cluster/alias/{alias}", "ack_recovery",
          "Acknowledge the recoveries of the cluster with this alias; ?comment= (required)"),
    Route("GET", "/api/audit-recovery", "audit_recovery", "Recoveries, most recent first"),
    Route("GET", "/api/audit-recovery/{hint}", "audit_recovery", "Recoveries of one cluster"),
    Route("GET", "/api/audit", "audit", "Audit log, most recent first"),
    Route("GET", "/api/audit/{hint}", "audit", "Audit log of one cluster"),
    Route("GET", "/api/begin-downtime" + _I + "/{owner}/{reason}/{duration}", "begin_downtime",
          "Downtime an instance: no automated recovery acts on it (duration: 30s, 10m, 2h, 1d, 4w)"),
    Route("GET", "/api/end-downtime" + _I, "end_downtime", "End an instance's downtime"),
    Route("GET", "/api/unfence" + _I, "unfence",
          "Lift the fence of a failed master (turnout's own: after it was rebuilt as a replica)"),
    Route("GET", "/api/leader-check", "leader_check", "200 on the leader manager, 404 on the others"),
    Route("GET", "/api/leader-check/{status}", "leader_check", "200 on the leader, the given status elsewhere"),
    Route("GET", "/api/raft-leader", "raft_leader", "The leader manager's API address (host:port)"),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
)

# The rest of what orchestrator-client calls (turnout.api.orchestrator).
_SLAVE_SYNONYMS = {"relocate-replicas": "relocate-slaves", "move-replicas-gtid": "move-slaves-gtid",
                   "start-replica": "start-slave", "stop-replica": "stop-slave",
                   "cluster-osc-replicas": "cluster-osc-slaves"}
_ORCHESTRATOR: tuple[Route, ...] = (
    Route("GET", "/api/all-instances", "all_instances", "Every known instance"),
    Route("GET", "/api/search", "search", "Instances matching ?s= (host, host:port, cluster, version, port)"),
    Route("GET", "/api/search/{text}", "search", "Instances matching the text"),
    Route("GET", "/api/cluster/instance" + _I, "cluster_by_instance", "Instances of this instance's cluster"),
    Route("GET", "/api/cluster-info/alias/{alias}", "cluster_info", "The cluster with this alias"),
    Route("GET", "/api/cluster-info/{hint}", "cluster_info", "One cluster: name (its master), alias, counts"),
    Route("GET", "/api/masters", "masters", "The writable master of every cluster"),
    Route("GET", "/api/master/{hint}", "cluster_master", "The master of a cluster"),
    Route("GET", "/api/instance-replicas" + _I, "instance_replicas", "Direct replicas of an instance"),
    Route("GET", "/api/downtimed", "downtimed", "Downtimed instances"),
    Route("GET", "/api/downtimed/", "downtimed", "Same (orchestrator-client's `downtimed` without -i/-a asks this)"),
    Route("GET", "/api/downtimed/{hint}", "downtimed", "Downtimed instances of a cluster"),
    Route("GET", "/api/cluster-osc-replicas/{hint}", "cluster_osc_replicas",
          "Replicas fit to control an online schema change (Orchestrator's heuristic)"),
    *(Route("GET", f"/api/{kind}/{{hint}}", "topology", f"ASCII tree of a cluster, in Details ({kind})")
      for kind in ("topology", "topology-tabulated", "topology-tags")),
    *(Route("GET", f"/api/{kind}" + _I, "topology", f"ASCII tree of an instance's cluster ({kind})")
      for kind in ("topology", "topology-tabulated", "topology-tags")),
    Route("GET", "/api/forget-cluster/{hint}", "forget_cluster", "Forget every instance of a cluster"),
    Route("GET", "/api/register-candidate" + _I + "/{rule}", "register_candidate",
          "Promotion rule for an instance for the next hour: prefer, neutral, prefer_not, must_not"),
    Route("GET", "/api/start-replica" + _I, "start_replica", "START SLAVE"),
    Route("GET", "/api/stop-replica" + _I, "stop_replica", "STOP SLAVE"),
    Route("GET", "/api/set-read-only" + _I, "set_read_only", "SET GLOBAL read_only = ON"),
    Route("GET", "/api/set-writeable" + _I, "set_writeable", "SET GLOBAL read_only = OFF (refused on a fenced one)"),
    Route("GET", "/api/relocate" + _I + _B, "relocate", "Make a replica replicate from another instance (GTID)"),
    Route("GET", "/api/relocate-below" + _I + _B, "relocate", "Same as relocate"),
    Route("GET", "/api/move-below-gtid" + _I + _B, "move_below_gtid", "Move a replica below another via GTID"),
    Route("GET", "/api/move-gtid" + _I + _B, "move_below_gtid",
          "Same as move-below-gtid (the path orchestrator-client's move-gtid calls)"),
    Route("GET", "/api/move-below" + _I + _B, "move_below", "Move a replica below its sibling"),
    Route("GET", "/api/move-up" + _I, "move_up", "Move a replica below its master's master"),
    Route("GET", "/api/relocate-replicas" + _I + _B, "relocate_replicas",
          "Move every replica of an instance below another (?pattern= filters)"),
    Route("GET", "/api/move-replicas-gtid" + _I + _B, "relocate_replicas", "Same as relocate-replicas"),
    Route("GET", "/api/force-master-failover/{hint}", "force_master_failover",
          "Fail the master over now as if it were dead (it is set read_only and fenced)"),
    Route("GET", "/api/force-master-failover" + _I, "force_master_failover", "Same, cluster named by a member"),
    Route("GET", "/api/force-master-takeover/{hint}" + _D, "force_master_takeover",
          "Fail the master over to the designated direct replica"),
    Route("GET", "/api/force-master-takeover" + _I + _D, "force_master_takeover",
          "Same, cluster named by a member"),
    Route("GET", "/api/ack-all-recoveries", "ack_all_recoveries", "Acknowledge every recovery; ?comment= (required)"),
    Route("GET", "/api/disable-global-recoveries", "disable_global_recoveries",
          "No automated recovery on any cluster until enabled again (every manager)"),
    Route("GET", "/api/enable-global-recoveries", "enable_global_recoveries", "Allow automated recoveries again"),
    Route("GET", "/api/check-global-recoveries", "check_global_recoveries", "enabled or disabled"),
    Route("GET", "/api/status", "status", "Is this manager node healthy (500 when not)"),
    Route("GET", "/api/proxysql", "proxysql",
          "turnout's own: the ProxySQLs the manager drives ([[manager.proxysql]]), converged or lagging"),
    Route("GET", "/api/raft-health", "raft_health",
          "\"healthy\" when a manager leads and this one discovers (turnout has no raft)"),
)
ROUTES += _ORCHESTRATOR + tuple(
    Route(r.method, r.path.replace(f"/api/{new}/", f"/api/{old}/"), r.handler, f"{r.summary} (old name)")
    for r in _ORCHESTRATOR for new, old in _SLAVE_SYNONYMS.items() if r.path.startswith(f"/api/{new}/")
)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        params = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "integer" if name.endswith("port") else "string"}}
                  for name in re.findall(r"{(\w+)}", route.path)]
        paths.setdefault(route.path, {})[route.method.lower()] = {
            "summary": route.summary,
            "operationId": route.path.removeprefix("/api/").replace("/", "_").replace("{", "").replace("}", ""),
            "parameters": params,
            "responses": {
                "200": {"description": "OK (Orchestrator's {Code, Message, Details} or the object itself)",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"description": "bad parameter"}, "404": {"description": "unknown cluster or instance"},
                "409": {"description": "refused; Message says why"}, "500": {"description": "operation failed"},
            },
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "turnout manager API (Orchestrator-compatible subset)", "version": "1"},
        "paths": paths,
    }
