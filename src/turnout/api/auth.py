"""HTTP authentication for the API and the console: Orchestrator's `AuthenticationMethod`.

- "" : no authentication; everyone may act (fine on the loopback listener, warned about elsewhere).
- "basic": one account, `HTTPAuthUser` / `HTTPAuthPassword`, for every path.
- "multi": as "basic", and the user `readonly` with any password may view everything and act on
  nothing: the server refuses its actions, whatever page sent them.

Decisions are pure functions; `middleware` applies them to every request.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from turnout.manager.settings import ManagerSettings

log = logging.getLogger("turnout.api")

READONLY_USER = "readonly"
REALM = 'Basic realm="turnout"'

# First path segment after /api/ of the routes that only read. Anything else under /api/ is an
# action a viewer may not take (a route added later is refused to viewers until it is listed
# here). Orchestrator's read routes are listed too, so they stay viewable as they are added.
READ_ENDPOINTS = frozenset({
    "health", "lb-check", "_ping", "leader-check", "status", "raft-state", "raft-leader", "raft-health",
    "raft-status", "instance", "instance-replicas", "clusters", "clusters-info", "cluster", "cluster-info",
    "cluster-alias", "cluster-master", "cluster-osc-replicas", "cluster-pool-instances",
    "heuristic-cluster-pool-instances", "master", "masters", "topology", "topology-tabulated", "search", "problems",
    "replication-analysis", "replication-analysis-changelog", "audit", "audit-recovery", "audit-recovery-steps",
    "audit-failure-detection", "blocked-recoveries", "active-cluster-recovery", "recently-active-cluster-recovery",
    "recently-active-instance-recovery", "check-global-recoveries", "automated-recovery-filters", "downtimed",
    "maintenance", "all-instances", "bulk-instances", "bulk-promotion-rules", "can-replicate-from",
    "can-replicate-from-gtid", "last-pseudo-gtid", "openapi.json", "cluster-osc-slaves", "topology-tags",
    "instance-slaves", "cluster-info-alias",
})


@dataclass(frozen=True)
class Identity:
    user: str
    can_act: bool
    authenticated: bool


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an `Authorization: Basic ...` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def authenticate(settings: ManagerSettings, header: str | None) -> Identity | None:
    """Who sent a request, or None when it must be refused with 401. Pure."""
    method = settings.AuthenticationMethod.lower()
    if not method:
        return Identity("", can_act=True, authenticated=False)
    credentials = basic_credentials(header)
    if credentials is None:
        return None
    user, password = credentials
    if method == "multi" and user == READONLY_USER:
        return Identity(user, can_act=False, authenticated=True)
    if _same(user, settings.HTTPAuthUser) and _same(password, settings.HTTPAuthPassword):
        return Identity(user, can_act=True, authenticated=True)
    return None


def is_action(method: str, path: str) -> bool:
    """Does this request change something? GET routes under /api/ act unless they only read (as
    Orchestrator's, whose actions are GETs); elsewhere every method but GET/HEAD acts."""
    if path.startswith("/api/"):
        endpoint = path[len("/api/"):].split("/", 1)[0]
        return endpoint not in READ_ENDPOINTS
    return method not in ("GET", "HEAD", "OPTIONS")


def cross_site(sec_fetch_site: str | None) -> bool:
    """A browser sent this from another site's page (a forged action): refuse it. Clients that
    are not browsers (curl, orchestrator-client) send no Sec-Fetch-Site header."""
    return sec_fetch_site is not None and sec_fetch_site not in ("same-origin", "none")


def listener_warning(host: str, settings: ManagerSettings) -> str | None:
    """The warning to log when the API listens beyond loopback with no authentication. Pure."""
    if settings.AuthenticationMethod:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (
        f"the API and console listen on {host} without authentication: anyone who reaches it can "
        "run takeovers and recoveries. Set AuthenticationMethod = \"multi\" (or \"basic\"), "
        "HTTPAuthUser and HTTPAuthPassword in the [manager] table"
    )


def display_user(identity: Identity, request: web.Request) -> str:
    """The name audited for an action: the authenticated user, else where the request came from."""
    if identity.authenticated:
        return identity.user
    return f"anonymous@{request.remote or 'unknown'}"


IDENTITY: web.RequestKey[Identity] = web.RequestKey("identity", Identity)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Audit = Callable[[web.Request, Identity, web.StreamResponse], Awaitable[None]]


def middleware(settings: ManagerSettings, audit: Audit) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        identity = authenticate(settings, request.headers.get("Authorization"))
        if identity is None:
            return web.json_response(
                {"Code": "ERROR", "Message": "Unauthorized: this server needs a user and password", "Details": None},
                status=401, headers={"WWW-Authenticate": REALM},
            )
        request[IDENTITY] = identity
        if not is_action(request.method, request.path):
            return await handler(request)
        if not identity.can_act:
            return web.json_response(
                {"Code": "ERROR", "Message": "Unauthorized",
                 "Details": f"user {identity.user} may view, not act"}, status=403)
        if cross_site(request.headers.get("Sec-Fetch-Site")):
            return web.json_response(
                {"Code": "ERROR", "Message": "Unauthorized", "Details": "actions from another site's page are refused"},
                status=403)
        response = await handler(request)
        try:
            await audit(request, identity, response)
        except Exception:
            log.exception("auditing %s failed", request.path)
        return response

    return check


def identity_of(request: web.Request) -> Identity:
    return request.get(IDENTITY) or Identity("", can_act=True, authenticated=False)
