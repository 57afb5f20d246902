"""Calling a running manager's HTTP API, as the CLI and the demo do (orchestrator-client's job)."""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

from turnout.output import UserError


def call(api: str, path: str, timeout: float = 120) -> Any:
    """GET /api/<path>; the decoded JSON. Errors become UserErrors that say what to do."""
    request = urllib.request.Request(api.rstrip("/") + "/api/" + path, headers=_auth_headers())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = json.loads(body).get("Message") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        if exc.code == 401:
            message = f"{message}: set ORCHESTRATOR_AUTH_USER and ORCHESTRATOR_AUTH_PASSWORD"
        raise UserError(f"{message}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"cannot reach the manager at {api} ({reason}); start it with `turnout manager --config FILE`, "
            "or point --api / TURNOUT_API at it"
        ) from exc
    data = json.loads(body)
    if isinstance(data, dict) and data.get("Code") == "ERROR":
        raise UserError(str(data.get("Message")))
    return data


def _auth_headers() -> dict[str, str]:
    """Basic authentication from orchestrator-client's variables, when they are set."""
    user = os.environ.get("ORCHESTRATOR_AUTH_USER")
    if not user:
        return {}
    password = os.environ.get("ORCHESTRATOR_AUTH_PASSWORD", "")
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def master_of(cluster_info: dict[str, Any]) -> str:
    """"host:port" of the master in one entry of /api/clusters-info."""
    master = cluster_info["Master"]
    return f"{master['Hostname']}:{master['Port']}"
