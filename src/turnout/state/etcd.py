"""The distributed state store: etcd v3, spoken through its HTTP/JSON gateway (no gRPC stack).

One key per record under a prefix (default ``/turnout``)::

    {prefix}/clusters/{name}        ClusterState as JSON
    {prefix}/leases/{name}          {"owner", "ttl", "lease"}, attached to an etcd lease
    {prefix}/instances/{key}        InstanceRecord as JSON
    {prefix}/fences/{key}           Fence as JSON
    {prefix}/downtimes/{key}        Downtime as JSON
    {prefix}/recoveries/{id:020d}   RecoveryRecord as JSON (ids 1, 2, 3 ... like SQLite's)
    {prefix}/audit/{id:020d}        AuditEntry as JSON
    {prefix}/counters/{kind}        the last id handed out for recoveries / audit
    {prefix}/proxies/{id}           ProxyRecord as JSON, attached to the proxy's own etcd lease

Names are percent-encoded so that a "/" in a name cannot escape its directory. Every write that
depends on what was read is a transaction comparing the revision it read (compare-and-set):

- ``publish`` compares the cluster key's mod_revision (create_revision 0 for a new cluster) and
  re-reads on a conflict, so two managers promoting from the same epoch cannot both win;
- ``acquire_lease`` grants an etcd lease and puts the key with it only if the key is absent
  (create_revision 0) or unchanged since it was read as ours; expiry is etcd's own, so it does not
  depend on the clocks of the machines involved. etcd counts TTLs in whole seconds and raises
  them to its minimum (about 1.5 x the election timeout), so a TTL is rounded up to that;
- new recoveries and audit entries take the next id from a counter key in the same transaction
  that writes them, so ids are unique and ordered across every writer.

``watch`` yields every current cluster state, then follows a streaming /v3/watch from the
revision it read; if the stream breaks it reads the clusters again every ``interval`` seconds
until a new stream is established, so no change is lost across an etcd restart.

Several endpoints (the members of one cluster) may be given:

- every request carries gRPC's ``hasleader`` metadata, so a member cut off from its cluster's
  leader refuses it at once ("no leader") instead of answering late, and cancels watches;
- a request that cannot connect (``connect_timeout``), times out, or meets a member without a
  leader is sent to the next member, the endpoint that answered last first; when every member
  failed, it goes round again after a short pause (a leader election, a member restarting) until
  ``timeout`` is spent, which bounds the whole call: each attempt gets a share of what is left;
- every read is linearizable (etcd's default; nothing here asks for a serializable read), so a
  member in a minority can never hand out a stale master or epoch;
- when no member answers, `EtcdUnavailable` says which members failed and how: callers get an
  error, never an empty answer ("no cluster", "no master", "no lease");
- a write retried on another member after a lost answer may have been applied by the first: the
  compare-and-set writes (`publish`, new recoveries and audit entries) recognise their own value
  when the comparison fails, instead of reporting a lost race or writing it twice.

``watch`` also checks that its stream is alive: a stream silent for ``check_every`` seconds is
replaced by a new one after a linearizable read of every cluster (which yields what the stream
missed), so a watcher whose member was cut off (its TCP connection stalled, no error ever comes)
follows the cluster again within seconds, through another member.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast
from urllib.parse import quote

import aiohttp

from turnout.state.base import (
    AuditEntry,
    ClusterState,
    Downtime,
    Fence,
    InstanceRecord,
    Phase,
    ProxyRecord,
    RecoveryRecord,
    StateStore,
)

log = logging.getLogger("turnout.state.etcd")

# gRPC status codes etcd returns when this member cannot serve the request but another may.
_TRY_ANOTHER_MEMBER = {4, 14}  # DEADLINE_EXCEEDED, UNAVAILABLE
_NOT_FOUND = 5
# gRPC metadata "hasleader: true" (through the JSON gateway's Grpc-Metadata- headers): a member
# without a leader refuses the request at once, and cancels such watches when it loses its leader.
_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
_MIN_ATTEMPT = 0.25  # seconds an attempt gets at least, when `timeout` leaves that much
_FIRST_PAUSE, _MAX_PAUSE = 0.05, 0.5  # between rounds over every member
_ID_WIDTH = 20
_STREAM_CREATED: Mapping[str, Any] = {"type": "CREATED"}  # marker yielded by _watch_stream
_STREAM_SILENT: Mapping[str, Any] = {"type": "SILENT"}  # marker: nothing came for check_every seconds


class EtcdError(RuntimeError):
    """etcd answered with an error (or something that is not etcd's v3 JSON gateway answered)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached."""


@dataclass(frozen=True)
class _KV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key above every key starting with `prefix` (etcd's range_end for a prefix)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _kv(raw: Mapping[str, Any]) -> _KV:
    return _KV(
        key=base64.b64decode(raw.get("key", "")),
        value=base64.b64decode(raw.get("value", "")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


def _dumps(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, default=str, separators=(",", ":")).encode()


def _normalise_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip().rstrip("/")
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint


class EtcdStateStore(StateStore):
    shares_proxies = True

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        prefix: str = "/turnout",
        timeout: float = 5.0,
        connect_timeout: float = 1.0,
        check_every: float = 2.0,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        self.endpoints = [_normalise_endpoint(e) for e in endpoints if e.strip()]
        if not self.endpoints:
            raise ValueError("EtcdStateStore needs at least one endpoint (http://host:port)")
        if timeout <= 0 or connect_timeout <= 0 or check_every <= 0:
            raise ValueError("timeout, connect_timeout and check_every must be above 0")
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.check_every = check_every
        self._current = 0  # the endpoint that answered last; tried first
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._proxy_leases: dict[str, tuple[int, str]] = {}  # proxy id -> (etcd lease, address)

    def __repr__(self) -> str:
        return f"EtcdStateStore({','.join(self.endpoints)!r}, prefix={self.prefix or '/'!r})"

    # ---- HTTP ---------------------------------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(raise_for_status=False)
            self._session_loop = loop
        return self._session

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._current + i) % n for i in range(n)]

    def _unavailable(self, failures: list[str]) -> EtcdUnavailable:
        return EtcdUnavailable(
            f"cannot reach etcd at {'; '.join(failures) or ', '.join(self.endpoints)} (tried for "
            f"{self.timeout:g}s): start etcd there, or point the state store "
            f"at running members (StateStore = \"etcd://host:port[,host:port]/prefix\" in [manager])"
        )

    def _attempt_timeout(self, remaining: float, left: int) -> aiohttp.ClientTimeout:
        budget = attempt_budget(remaining, left)
        return aiohttp.ClientTimeout(total=budget, sock_connect=min(budget, self.connect_timeout))

    async def _request(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST to the members in turn until one answers; rounds again (a leader election, a member
        restarting) until `timeout` is spent, then raises EtcdUnavailable."""
        session = self._http()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = _FIRST_PAUSE
        while True:
            failures: list[str] = []
            order = self._order()
            for position, index in enumerate(order):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                answer = await self._attempt(session, index, path, body,
                                             self._attempt_timeout(remaining, len(order) - position))
                if isinstance(answer, dict):
                    self._current = index
                    return answer
                failures.append(answer)
            remaining = deadline - loop.time()
            if remaining <= pause:
                raise self._unavailable(failures)
            await asyncio.sleep(pause)
            pause = min(2 * pause, _MAX_PAUSE)

    async def _attempt(
        self, session: aiohttp.ClientSession, index: int, path: str, body: Mapping[str, Any],
        timeout: aiohttp.ClientTimeout,
    ) -> dict[str, Any] | str:
        """etcd's answer from one member, or why another member should be tried."""
        endpoint = self.endpoints[index]
        try:
            async with session.post(endpoint + path, json=body, headers=_REQUIRE_LEADER, timeout=timeout) as resp:
                status = resp.status
                text = await resp.text()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            return f"{endpoint} ({_describe(exc)})"
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise EtcdError(
                f"{endpoint}{path} answered HTTP {status} with something that is not etcd's v3 JSON "
                f"gateway ({text[:80]!r}); check that the endpoint is an etcd v3.4+ client URL"
            )
        if "error" in data or status != 200:
            if isinstance(data.get("error"), dict):  # streaming endpoints nest their error
                data = data["error"]
            code = data.get("code")
            message = data.get("message") or data.get("error") or f"HTTP {status}"
            if isinstance(code, int) and code in _TRY_ANOTHER_MEMBER:
                return f"{endpoint} ({message})"
            raise EtcdError(f"etcd at {endpoint} refused {path}: {message}", code if isinstance(code, int) else None)
        return data

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - close() is a coroutine, a loop runs
                running = None
            if running is self._session_loop:
                await session.close()

    # ---- key-value primitives -----------------------------------------------------------------------
    def _key(self, kind: str, name: str = "") -> bytes:
        return f"{self.prefix}/{kind}/{quote(name, safe='')}".encode()

    def _dir(self, kind: str) -> bytes:
        return f"{self.prefix}/{kind}/".encode()

    async def _get(self, key: bytes) -> _KV | None:
        data = await self._request("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs") or []
        return _kv(kvs[0]) if kvs else None

    async def _list(self, directory: bytes) -> tuple[list[_KV], int]:
        """Every key under `directory`, in key order, and the revision they were read at."""
        data = await self._request(
            "/v3/kv/range", {"key": _b64(directory), "range_end": _b64(_prefix_end(directory))}
        )
        return [_kv(raw) for raw in data.get("kvs") or []], int(data["header"]["revision"])

    async def _scan_newest_first(self, directory: bytes, page: int = 256) -> AsyncIterator[_KV]:
        end = _prefix_end(directory)
        while True:
            data = await self._request(
                "/v3/kv/range",
                {"key": _b64(directory), "range_end": _b64(end), "limit": page,
                 "sort_order": "DESCEND", "sort_target": "KEY"},
            )
            kvs = [_kv(raw) for raw in data.get("kvs") or []]
            for kv in kvs:
                yield kv
            if not data.get("more") or not kvs:
                return
            end = kvs[-1].key  # range_end is exclusive: the next page starts below the last key

    async def _put(self, key: bytes, value: bytes) -> None:
        await self._request("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    async def _delete(self, key: bytes) -> bool:
        data = await self._request("/v3/kv/deleterange", {"key": _b64(key)})
        return int(data.get("deleted", 0)) > 0

    async def _txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]) -> bool:
        data = await self._request("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(data.get("succeeded", False))

    @staticmethod
    def _unchanged(key: bytes, seen: _KV | None) -> dict[str, Any]:
        """The txn comparison "`key` is as we read it" (absent if we read nothing)."""
        if seen is None:
            return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": 0}
        return {"key": _b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": seen.mod_revision}

    @staticmethod
    def _put_op(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
        put: dict[str, Any] = {"key": _b64(key), "value": _b64(value)}
        if lease:
            put["lease"] = lease
        return {"request_put": put}

    async def _update(self, key: bytes, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
        """Read-modify-write one JSON record with compare-and-set; False if absent or left alone."""
        while True:
            seen = await self._get(key)
            if seen is None:
                return False
            new = change(json.loads(seen.value))
            if new is None:
                return False
            if await self._txn([self._unchanged(key, seen)], [self._put_op(key, _dumps(new))]):
                return True

    async def _append(self, kind: str, record: Callable[[int], dict[str, Any]]) -> int:
        """Write `record(id)` under the next id of `kind`, taken from its counter in the same txn."""
        counter = self._key("counters", kind)
        while True:
            seen = await self._get(counter)
            next_id = (int(seen.value) if seen is not None else 0) + 1
            key = self._dir(kind) + f"{next_id:0{_ID_WIDTH}d}".encode()
            value = _dumps(record(next_id))
            if await self._txn(
                [self._unchanged(counter, seen)],
                [self._put_op(counter, str(next_id).encode()), self._put_op(key, value)],
            ):
                return next_id
            written = await self._get(key)
            if written is not None and written.value == value:
                return next_id  # an earlier attempt whose answer was lost wrote it

    # ---- clusters -------------------------------------------------------------------------------------
    @staticmethod
    def _cluster(value: bytes) -> ClusterState:
        raw = json.loads(value)
        return ClusterState(
            name=raw["name"],
            master=raw["master"],
            epoch=int(raw["epoch"]),
            phase=cast(Phase, raw["phase"]),
            members=tuple(raw.get("members", ())),
            updated_at=float(raw["updated_at"]),
        )

    async def publish(self, state: ClusterState, expected_epoch: int | None) -> bool:
        if expected_epoch is not None and state.epoch < expected_epoch:
            raise ValueError(f"epoch cannot go backwards ({expected_epoch} -> {state.epoch})")
        key = self._key("clusters", state.name)
        value = _dumps({**asdict(state), "members": list(state.members)})
        attempted = False
        while True:
            seen = await self._get(key)
            if attempted and seen is not None and seen.value == value:
                return True  # our txn was applied, its answer lost, and a retry found it done
            current = None if seen is None else self._cluster(seen.value).epoch
            if current != expected_epoch:
                return False
            attempted = True
            if await self._txn([self._unchanged(key, seen)], [self._put_op(key, value)]):
                return True
            # Someone wrote in between: read again; if the epoch moved, we lost.

    async def get_cluster(self, name: str) -> ClusterState | None:
        seen = await self._get(self._key("clusters", name))
        return None if seen is None else self._cluster(seen.value)

    async def clusters(self) -> list[ClusterState]:
        kvs, _ = await self._list(self._dir("clusters"))
        return sorted((self._cluster(kv.value) for kv in kvs), key=lambda c: c.name)

    async def delete_cluster(self, name: str) -> None:
        await self._delete(self._key("clusters", name))

    async def watch(self, interval: float = 0.2) -> AsyncIterator[ClusterState]:
        directory = self._dir("clusters")
        seen: dict[bytes, ClusterState] = {}  # by key, so that a deletion event can be matched
        first = True
        degraded = False  # the stream is down: warn once, then read quietly every `interval`

        def lost(reason: str) -> None:
            nonlocal degraded
            if not degraded:
                log.warning("state store watch: %s; reading the clusters every %gs until the stream "
                            "is back", reason, interval)
            else:
                log.debug("state store watch: %s", reason)
            degraded = True

        while True:
            try:
                kvs, revision = await self._list(directory)
            except EtcdError as exc:
                if first:
                    raise
                lost(str(exc))
                await asyncio.sleep(interval)
                continue
            first = False
            current: dict[bytes, ClusterState] = {}
            for kv in kvs:
                try:
                    current[kv.key] = self._cluster(kv.value)
                except (ValueError, KeyError, TypeError) as exc:
                    log.warning("state store watch: skipping an unreadable cluster record: %s", exc)
            seen = {key: state for key, state in seen.items() if key in current}
            for key, state in sorted(current.items(), key=lambda item: item[1].name):
                if seen.get(key) != state:
                    seen[key] = state
                    yield state
            silent = False
            try:
                async for event in self._watch_stream(directory, revision + 1):
                    if event is _STREAM_SILENT:  # the stream's last event: it ends after it
                        silent = True  # read everything again (linearizably), then a new stream
                        continue
                    if event is _STREAM_CREATED:
                        if degraded:
                            log.info("state store watch: stream back on %s", self.endpoints[self._current])
                            degraded = False
                        continue
                    kv = _kv(event["kv"])
                    if event.get("type") == "DELETE":
                        seen.pop(kv.key, None)
                        continue
                    try:
                        state = self._cluster(kv.value)
                    except (ValueError, KeyError, TypeError) as exc:
                        log.warning("state store watch: skipping an unreadable cluster record: %s", exc)
                        continue
                    if seen.get(kv.key) != state:
                        seen[kv.key] = state
                        yield state
                if silent:
                    continue
                lost("the watch stream ended")
            except (EtcdError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                lost(f"the watch stream broke ({_describe(exc)})")
            await asyncio.sleep(interval)

    async def _watch_stream(self, directory: bytes, start_revision: int) -> AsyncIterator[Mapping[str, Any]]:
        """Events under `directory` from `start_revision` on, until the stream ends or breaks.

        Yields `_STREAM_CREATED` first, once etcd has accepted the watch, and `_STREAM_SILENT` (then
        ends) when nothing came for `check_every` seconds: a quiet cluster, or a member that can no
        longer be reached; the caller cannot tell which without reading.
        """
        body = {"create_request": {"key": _b64(directory), "range_end": _b64(_prefix_end(directory)),
                                   "start_revision": start_revision}}
        session = self._http()
        failures: list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            try:
                resp = await session.post(
                    endpoint + "/v3/watch", json=body, headers=_REQUIRE_LEADER,
                    timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_connect=self.connect_timeout,
                                                  sock_read=self.check_every),
                )
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                failures.append(f"{endpoint} ({_describe(exc)})")
                continue
            async with resp:
                if resp.status != 200:
                    raise EtcdError(f"etcd at {endpoint} refused /v3/watch: HTTP {resp.status}")
                self._current = index
                buffer = b""
                chunks = aiter(resp.content.iter_any())
                while True:
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        break
                    except aiohttp.ServerTimeoutError:
                        yield _STREAM_SILENT
                        return
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if not line.strip():
                            continue
                        message = json.loads(line)
                        if "error" in message:
                            error = message["error"]
                            raise EtcdError(f"etcd at {endpoint} ended the watch: {error.get('message', error)}")
                        result = message.get("result", {})
                        if result.get("canceled"):
                            reason = result.get("cancel_reason") or (
                                f"revision {start_revision} compacted" if result.get("compact_revision") else "")
                            raise EtcdError(f"etcd at {endpoint} cancelled the watch: {reason or 'no reason given'}")
                        if result.get("created"):
                            yield _STREAM_CREATED
                        for event in result.get("events") or []:
                            yield event
            return  # the server ended the stream: the caller reads again and reconnects
        raise self._unavailable(failures)

    # ---- leases -----------------------------------------------------------------------------------------
    async def _grant(self, seconds: int) -> int:
        data = await self._request("/v3/lease/grant", {"TTL": seconds})
        return int(data["ID"])

    async def _keepalive(self, lease: int) -> bool:
        data = await self._request("/v3/lease/keepalive", {"ID": lease})
        return int(data.get("result", data).get("TTL", 0)) > 0

    async def _revoke(self, lease: int) -> None:
        try:
            await self._request("/v3/lease/revoke", {"ID": lease})
        except EtcdError as exc:
            if exc.code != _NOT_FOUND:  # already expired or revoked: nothing to do
                raise

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        key = self._key("leases", name)
        seconds = max(1, math.ceil(ttl))
        while True:
            seen = await self._get(key)
            held = None if seen is None else json.loads(seen.value)
            if held is not None and held["owner"] != owner:
                return False  # alive: etcd deletes the key when its lease expires
            renewable = seen is not None and held is not None and ttl > 0 and held.get("ttl") == seconds
            if renewable and seen is not None and seen.lease and await self._keepalive(seen.lease):
                return True  # ours, renewed in place
            if ttl <= 0:
                # Taken and expired at once: succeed if it is free or ours, and leave it free.
                if await self._txn([self._unchanged(key, seen)], [{"request_delete_range": {"key": _b64(key)}}]):
                    if seen is not None and seen.lease:
                        await self._revoke(seen.lease)
                    return True
                continue
            lease = await self._grant(seconds)
            value = _dumps({"owner": owner, "ttl": seconds, "lease": lease, "acquired_at": time.time()})
            if await self._txn([self._unchanged(key, seen)], [self._put_op(key, value, lease)]):
                if seen is not None and seen.lease:
                    await self._revoke(seen.lease)  # the key now lives on the new lease
                return True
            await self._revoke(lease)  # it changed under us: read again

    async def release_lease(self, name: str, owner: str) -> None:
        key = self._key("leases", name)
        seen = await self._get(key)
        if seen is None or json.loads(seen.value)["owner"] != owner:
            return
        deleted = await self._txn([self._unchanged(key, seen)], [{"request_delete_range": {"key": _b64(key)}}])
        if deleted and seen.lease:
            await self._revoke(seen.lease)

    async def lease_owner(self, name: str) -> str | None:
        seen = await self._get(self._key("leases", name))
        return None if seen is None else str(json.loads(seen.value)["owner"])

    # ---- proxies --------------------------------------------------------------------------------------------
    async def _put_proxy(self, proxy_id: str, lease: int, address: str, acks: Mapping[str, tuple[int, str]]) -> bool:
        record = {"id": proxy_id, "address": address, "acks": {k: list(v) for k, v in acks.items()},
                  "updated_at": time.time()}
        try:
            await self._request("/v3/kv/put", {"key": _b64(self._key("proxies", proxy_id)),
                                               "value": _b64(_dumps(record)), "lease": lease})
        except EtcdError as exc:
            if exc.code == _NOT_FOUND:  # "requested lease not found": it expired
                return False
            raise
        return True

    async def register_proxy(self, proxy_id: str, address: str, ttl: float) -> None:
        old = self._proxy_leases.pop(proxy_id, None)
        lease = await self._grant(max(1, math.ceil(ttl)))
        if not await self._put_proxy(proxy_id, lease, address, {}):
            raise EtcdError(f"etcd dropped the lease it had just granted to proxy {proxy_id}")
        self._proxy_leases[proxy_id] = (lease, address)
        if old is not None:
            await self._revoke(old[0])

    async def renew_proxy(self, proxy_id: str) -> bool:
        held = self._proxy_leases.get(proxy_id)
        if held is None:
            return False
        try:
            alive = await self._keepalive(held[0])
        except EtcdError as exc:
            if exc.code != _NOT_FOUND:
                raise
            alive = False
        if not alive:
            self._proxy_leases.pop(proxy_id, None)
        return alive

    async def ack_proxy(self, proxy_id: str, acks: Mapping[str, tuple[int, str]]) -> bool:
        held = self._proxy_leases.get(proxy_id)
        if held is None:
            return False
        if not await self._put_proxy(proxy_id, held[0], held[1], acks):
            self._proxy_leases.pop(proxy_id, None)
            return False
        return True

    async def deregister_proxy(self, proxy_id: str) -> None:
        held = self._proxy_leases.pop(proxy_id, None)
        if held is not None:
            await self._revoke(held[0])  # deletes the key with it

    async def proxies(self) -> list[ProxyRecord]:
        kvs, _ = await self._list(self._dir("proxies"))
        found = []
        for kv in kvs:
            raw = json.loads(kv.value)
            acks = {str(k): (int(v[0]), str(v[1])) for k, v in raw.get("acks", {}).items()}
            found.append(ProxyRecord(str(raw["id"]), str(raw.get("address", "")), acks, float(raw["updated_at"])))
        return sorted(found, key=lambda p: p.id)

    # ---- instances --------------------------------------------------------------------------------------
    async def put_instance(self, key: str, cluster: str, data: Mapping[str, Any]) -> None:
        record = {"key": key, "cluster": cluster, "data": dict(data), "updated_at": time.time()}
        await self._put(self._key("instances", key), _dumps(record))

    async def instances(self, cluster: str | None = None) -> list[InstanceRecord]:
        kvs, _ = await self._list(self._dir("instances"))
        records = [json.loads(kv.value) for kv in kvs]
        return sorted(
            (InstanceRecord(r["key"], r["cluster"], r["data"], float(r["updated_at"]))
             for r in records if cluster is None or r["cluster"] == cluster),
            key=lambda r: r.key,
        )

    async def forget_instance(self, key: str) -> bool:
        return await self._delete(self._key("instances", key))

    # ---- fences and downtime ------------------------------------------------------------------------------
    async def fence(self, key: str, cluster: str, reason: str) -> None:
        record = {"key": key, "cluster": cluster, "reason": reason, "fenced_at": time.time()}
        await self._put(self._key("fences", key), _dumps(record))

    async def unfence(self, key: str) -> bool:
        return await self._delete(self._key("fences", key))

    async def fenced(self) -> list[Fence]:
        kvs, _ = await self._list(self._dir("fences"))
        fences = (json.loads(kv.value) for kv in kvs)
        return sorted((Fence(f["key"], f["cluster"], f["reason"], float(f["fenced_at"])) for f in fences),
                      key=lambda f: f.key)

    async def begin_downtime(self, key: str, owner: str, reason: str, seconds: float) -> None:
        record = {"key": key, "owner": owner, "reason": reason, "ends_at": time.time() + seconds}
        await self._put(self._key("downtimes", key), _dumps(record))

    async def end_downtime(self, key: str) -> bool:
        return await self._delete(self._key("downtimes", key))

    async def downtimes(self) -> list[Downtime]:
        kvs, _ = await self._list(self._dir("downtimes"))
        now = time.time()
        records = (json.loads(kv.value) for kv in kvs)
        return sorted(
            (Downtime(d["key"], d["owner"], d["reason"], float(d["ends_at"])) for d in records if d["ends_at"] > now),
            key=lambda d: d.key,
        )

    # ---- recoveries -----------------------------------------------------------------------------------------
    async def start_recovery(self, cluster: str, failure_type: str, failed: str, manual: bool) -> int:
        started = time.time()

        def record(recovery_id: int) -> dict[str, Any]:
            return {"id": recovery_id, "cluster": cluster, "failure_type": failure_type, "failed": failed,
                    "successor": None, "started_at": started, "ended_at": None, "success": False,
                    "acknowledged": False, "acknowledged_by": None, "acknowledged_at": None,
                    "acknowledge_comment": None, "manual": manual, "details": []}

        return await self._append("recoveries", record)

    def _recovery_key(self, recovery_id: int) -> bytes:
        return self._dir("recoveries") + f"{recovery_id:0{_ID_WIDTH}d}".encode()

    async def finish_recovery(
        self, recovery_id: int, success: bool, successor: str | None, details: tuple[str, ...]
    ) -> None:
        ended = time.time()
        await self._update(
            self._recovery_key(recovery_id),
            lambda r: {**r, "ended_at": ended, "success": success, "successor": successor, "details": list(details)},
        )

    @staticmethod
    def _recovery(raw: Mapping[str, Any]) -> RecoveryRecord:
        return RecoveryRecord(**{**raw, "details": tuple(raw.get("details", ()))})

    async def recoveries(self, cluster: str | None = None, limit: int = 100) -> list[RecoveryRecord]:
        found: list[RecoveryRecord] = []
        if limit <= 0:
            return found
        async for kv in self._scan_newest_first(self._dir("recoveries")):
            raw = json.loads(kv.value)
            if cluster is None or raw["cluster"] == cluster:
                found.append(self._recovery(raw))
                if len(found) >= limit:
                    break
        return found

    async def acknowledge_recoveries(self, cluster: str, by: str, comment: str) -> int:
        kvs, _ = await self._list(self._dir("recoveries"))
        now = time.time()

        def acknowledge(raw: dict[str, Any]) -> dict[str, Any] | None:
            if raw["acknowledged"]:
                return None  # someone else acknowledged it meanwhile
            return {**raw, "acknowledged": True, "acknowledged_by": by, "acknowledged_at": now,
                    "acknowledge_comment": comment}

        count = 0
        for kv in kvs:
            raw = json.loads(kv.value)
            if raw["cluster"] == cluster and not raw["acknowledged"] and await self._update(kv.key, acknowledge):
                count += 1
        return count

    # ---- audit -------------------------------------------------------------------------------------------------
    async def audit(self, cluster: str, action: str, message: str, instance: str | None = None) -> None:
        at = time.time()
        await self._append(
            "audit",
            lambda entry_id: {"id": entry_id, "at": at, "cluster": cluster, "action": action,
                              "message": message, "instance": instance},
        )

    async def audit_log(self, cluster: str | None = None, limit: int = 200) -> list[AuditEntry]:
        found: list[AuditEntry] = []
        if limit <= 0:
            return found
        async for kv in self._scan_newest_first(self._dir("audit")):
            raw = json.loads(kv.value)
            if cluster is None or raw["cluster"] == cluster:
                found.append(AuditEntry(int(raw["id"]), float(raw["at"]), raw["cluster"], raw["action"],
                                        raw["message"], raw["instance"]))
                if len(found) >= limit:
                    break
        return found


def attempt_budget(remaining: float, left: int) -> float:
    """The seconds one attempt may take out of `remaining`, with `left` members still to try.

    An equal share, so that a member that never answers cannot spend the time the others need;
    the last member gets all that is left.
    """
    if left <= 1:
        return remaining
    return max(min(remaining, _MIN_ATTEMPT), remaining / left)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return text
