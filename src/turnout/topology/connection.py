"""Short-lived aiomysql connections with hard timeouts, so a hung server never blocks the caller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiomysql

from turnout.topology.model import split_key


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


class ServerError(Exception):
    """A server could not be reached or refused a statement; the message names the server."""


@contextlib.asynccontextmanager
async def connect(key: str, credentials: Credentials, timeout: float) -> AsyncIterator[Any]:
    host, port = split_key(key)
    try:
        conn = await asyncio.wait_for(
            aiomysql.connect(
                host=host,
                port=port,
                user=credentials.user,
                password=credentials.password,
                connect_timeout=timeout,
                autocommit=True,
            ),
            timeout,
        )
    except TimeoutError as exc:
        raise ServerError(f"{key}: no answer within {timeout:g}s while connecting") from exc
    except Exception as exc:
        raise ServerError(f"{key}: cannot connect: {_describe(exc)}") from exc
    try:
        yield conn
    finally:
        conn.close()  # closes the socket without a round trip, which a hung server would never answer


async def query(conn: Any, key: str, sql: str, timeout: float) -> list[dict[str, Any]]:
    """Run one statement; its rows as dicts."""
    async def run() -> list[dict[str, Any]]:
        async with conn.cursor(aiomysql.DictCursor) as cur:
            await cur.execute(sql)
            rows = await cur.fetchall()
            return list(rows) if rows else []

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError as exc:
        raise ServerError(f"{key}: no answer within {timeout:g}s to {sql.split()[0]} ...") from exc
    except ServerError:
        raise
    except Exception as exc:
        raise ServerError(f"{key}: {_redact(sql)} failed: {_describe(exc)}") from exc


async def execute(
    key: str, credentials: Credentials, statements: list[str], timeout: float
) -> list[dict[str, Any]]:
    """Connect, run statements in order, return the last one's rows."""
    rows: list[dict[str, Any]] = []
    async with connect(key, credentials, timeout) as conn:
        for sql in statements:
            rows = await query(conn, key, sql, timeout)
    return rows


def _describe(exc: BaseException) -> str:
    if getattr(exc, "args", None) and len(exc.args) >= 2:
        return f"({exc.args[0]}) {exc.args[1]}"
    return str(exc) or type(exc).__name__


def _redact(sql: str) -> str:
    for marker in ("PASSWORD=", "PASSWORD ="):
        head, sep, tail = sql.partition(marker)
        if sep:
            rest = tail.split(",", 1)
            return head + sep + "'***'" + ("," + rest[1] if len(rest) > 1 else "")
    return sql
