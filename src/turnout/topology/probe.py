"""One probe of one server: connect, run the flavour's statements, build an `Instance`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from turnout.topology.connection import Credentials, ServerError, connect, query
from turnout.topology.flavors import Flavor, detect_flavor
from turnout.topology.model import Instance, split_key


async def probe(
    key: str,
    credentials: Credentials,
    timeout: float,
    previous: Instance | None = None,
    flavor: str | None = None,
) -> Instance:
    """The instance as it is now; if unreachable, `previous` marked unreachable (or a bare one).

    `timeout` bounds the whole probe, so a server that accepts connections but never answers
    (SIGSTOP) costs at most `timeout`.
    """
    started = time.time()
    try:
        return await asyncio.wait_for(_probe(key, credentials, timeout, previous, flavor, started), timeout)
    except (ServerError, TimeoutError) as exc:
        message = str(exc) if isinstance(exc, ServerError) else f"{key}: probe timed out after {timeout:g}s"
        if previous is None:
            host, port = split_key(key)
            return Instance(
                host=host, port=port, reachable=False, last_probe_error=message, last_checked=started
            )
        return previous.unreachable(message, started)


async def _probe(
    key: str,
    credentials: Credentials,
    timeout: float,
    previous: Instance | None,
    flavor_name: str | None,
    started: float,
) -> Instance:
    host, port = split_key(key)
    async with connect(key, credentials, timeout) as conn:
        flavor: Flavor
        if flavor_name is not None or (previous is not None and previous.version):
            flavor = detect_flavor(previous.version if previous else "", flavor_name)
        else:
            rows = await query(conn, key, "SELECT @@version AS version", timeout)
            flavor = detect_flavor(str(rows[0]["version"]))
        results: dict[str, list[dict[str, Any]]] = {}
        for name, sql in flavor.probe_sql.items():
            results[name] = await query(conn, key, sql, timeout)
    now = time.time()
    return flavor.build(host, port, results).evolve(
        last_checked=started, last_seen=now, probe_ms=round((now - started) * 1000, 2)
    )
