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
ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/health", "health", "Is this manager node healthy and is it the active (leader) node"),
    Route("GET", "/api/discover" + _I, "discover", "Discover an instance and the topology around it"),
    Route("GET", "/api/forget" + _I, "forget", "Forget an instance"),
    Route("GET", "/api/instance" + _I, "instance", "One instance"),
    Route("GET", "/api/clusters", "clusters", "Names of the known clusters"),
    Route("GET", "/api/clusters-info", "clusters_info", "The clusters with master, epoch and phase"),
    Route("GET", "/api/cluster/alias/{alias}", "cluster_by_alias", "Instances of the cluster with this alias"),
    Route("GET", "/api/cluster/{hint}", "cluster", "Instances of a cluster (name, alias or member host:port)"),
    Route("GET", "/api/topology/{hint}", "topology", "ASCII tree of a cluster, in Details"),
    Route("GET", "/api/replication-analysis", "replication_analysis", "Problems found in every cluster"),
    Route("GET", "/api/replication-analysis/{hint}", "replication_analysis", "Problems found in one cluster"),
    Route("GET", "/api/graceful-master-takeover/{hint}", "takeover",
          "Planned switch to the best replica; the old master replicates from it, stopped"),
    Route("GET", "/api/graceful-master-takeover/{hint}" + _I, "takeover",
          "Planned switch to the designated replica; the old master replicates from it, stopped"),
    Route("GET", "/api/graceful-master-takeover-auto/{hint}", "takeover",
          "Planned switch to the best replica; the old master replicates from it"),
    Route("GET", "/api/graceful-master-takeover-auto/{hint}" + _I, "takeover",
          "Planned switch to the designated replica; the old master replicates from it"),
    Route("GET", "/api/recover" + _I, "recover", "Recover a dead master now (not subject to anti-flapping)"),
    Route("GET", "/api/recover" + _I + "/{cand_host}/{cand_port}", "recover",
          "Recover a dead master, promoting the given candidate"),
    Route("GET", "/api/ack-recovery/cluster/{hint}", "ack_recovery",
          "Acknowledge a cluster's recoveries (lifts anti-flapping); ?comment="),
    Route("GET", "/api/audit-recovery", "audit_recovery", "Recoveries, most recent first"),
    Route("GET", "/api/audit-recovery/{hint}", "audit_recovery", "Recoveries of one cluster"),
    Route("GET", "/api/audit", "audit", "Audit log, most recent first"),
    Route("GET", "/api/audit/{hint}", "audit", "Audit log of one cluster"),
    Route("GET", "/api/begin-downtime" + _I + "/{owner}/{reason}/{duration}", "begin_downtime",
          "Downtime an instance: no automated recovery acts on it (duration: 300, 30s, 10m, 2h, 1d)"),
    Route("GET", "/api/end-downtime" + _I, "end_downtime", "End an instance's downtime"),
    Route("GET", "/api/unfence" + _I, "unfence",
          "Lift the fence of a failed master (turnout's own: after it was rebuilt as a replica)"),
    Route("GET", "/api/openapi.json", "openapi", "This document"),
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
