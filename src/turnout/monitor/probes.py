"""The monitor's SQL: connect, ping, read_only and replication checks against one server.

Every call here is bounded by the caller's asyncio timeout; nothing retries on its own except a
single reconnect when the kept connection turns out to be dead.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiomysql
import pymysql

from turnout.monitor.health import Address, ReplicationStatus

T = TypeVar("T")

# Client error codes meaning "the connection is gone", not "the query failed".
_CONNECTION_LOST = {2006, 2013, 2055}


class ProbeError(Exception):
    """A check failed; `connect_failed` when the server refused or rejected a new connection."""

    def __init__(self, message: str, connect_failed: bool = False) -> None:
        super().__init__(message)
        self.connect_failed = connect_failed


@dataclass(frozen=True)
class ConnectAttempt:
    started_us: int  # wall clock, microseconds since the epoch
    duration_us: int
    error: str | None


def now_us() -> int:
    return time.time_ns() // 1000


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        return f"{exc.args[0]}: {exc.args[1]}"
    cause = exc.__cause__
    text = str(exc) or type(exc).__name__
    return f"{text} ({cause})" if cause else text


async def open_connection(
    address: Address, username: str, password: str, tls: ssl.SSLContext | None = None
) -> Any:
    """A new monitor connection; the caller bounds it with a timeout.

    aiomysql.connect() leaks the socket when cancelled during the handshake (it only cleans up on
    Exception, and a timeout cancels), which a hung server would do on every check; so the
    connection object is built here and closed on any exit.
    """
    conn = aiomysql.Connection(
        host=address[0],
        port=address[1],
        user=username,
        password=password,
        autocommit=None,
        program_name="turnout-monitor",
        ssl=tls,
    )
    try:
        await conn._connect()
    except BaseException:
        conn.close()
        raise
    return conn


async def probe_connect(
    address: Address, username: str, password: str, timeout_s: float, tls: ssl.SSLContext | None = None
) -> ConnectAttempt:
    """ProxySQL's connect check: open a new connection, then close it."""
    started = now_us()
    clock = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            conn = await open_connection(address, username, password, tls)
        conn.close()
    except (TimeoutError, OSError, pymysql.err.MySQLError) as exc:
        return ConnectAttempt(started, 0, describe(exc))
    return ConnectAttempt(started, int((time.monotonic() - clock) * 1e6), None)


ConnectListener = Callable[[ConnectAttempt], None]


class MonitorConnection:
    """The one connection the monitor keeps to a server, shared by its checks one at a time."""

    def __init__(
        self, address: Address, username: str, password: str, on_connect: ConnectListener,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address = address
        self._tls = tls
        self._username = username
        self._password = password
        self._on_connect = on_connect
        self._conn: Any = None
        self._lock = asyncio.Lock()

    async def call(self, op: Callable[[Any], Awaitable[T]], timeout_s: float) -> T:
        """Run `op` on the connection, (re)connecting first when needed, within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s), self._lock:
                return await self._call_locked(op)
        except TimeoutError as exc:
            raise ProbeError("timeout") from exc

    async def _call_locked(self, op: Callable[[Any], Awaitable[T]]) -> T:
        reused = self._conn is not None
        if not reused:
            await self._connect()
        try:
            return await op(self._conn)
        except BaseException as exc:
            self.close()
            if not (reused and _connection_lost(exc)):
                if isinstance(exc, (OSError, pymysql.err.MySQLError)):
                    raise ProbeError(describe(exc)) from exc
                raise
        # The kept connection had died since the last check (e.g. the server restarted): one
        # fresh attempt tells a dead server (connect fails) from a restarted one.
        await self._connect()
        try:
            return await op(self._conn)
        except BaseException as exc:
            self.close()
            if isinstance(exc, (OSError, pymysql.err.MySQLError)):
                raise ProbeError(describe(exc)) from exc
            raise

    async def _connect(self) -> None:
        started = now_us()
        clock = time.monotonic()
        try:
            self._conn = await open_connection(self.address, self._username, self._password, self._tls)
        except (OSError, pymysql.err.MySQLError) as exc:
            self._on_connect(ConnectAttempt(started, 0, describe(exc)))
            raise ProbeError(describe(exc), connect_failed=True) from exc
        self._on_connect(ConnectAttempt(started, int((time.monotonic() - clock) * 1e6), None))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _connection_lost(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, BrokenPipeError)):
        return True
    return (
        isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) and exc.args[0] in _CONNECTION_LOST
    )


# ---- the checks ------------------------------------------------------------------------------


async def ping(conn: Any) -> None:
    await conn.ping(reconnect=False)


async def read_only(conn: Any) -> bool:
    async with conn.cursor() as cur:
        await cur.execute("SELECT @@global.read_only")
        row = await cur.fetchone()
    return bool(int(row[0]))


async def replication(conn: Any) -> ReplicationStatus:
    async with conn.cursor(aiomysql.DictCursor) as cur:
        await cur.execute("SHOW SLAVE STATUS")
        status = await cur.fetchone()
        await cur.execute(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('gtid_current_pos', 'gtid_slave_pos', 'gtid_executed')"
        )
        gtid = {str(r["Variable_name"]): str(r["Value"] or "") for r in await cur.fetchall()}
    return replication_status(status, gtid)


def replication_status(row: dict[str, Any] | None, gtid: dict[str, str]) -> ReplicationStatus:
    """SHOW SLAVE STATUS (MariaDB or MySQL) and the gtid variables as a ReplicationStatus."""
    current = gtid.get("gtid_current_pos") or gtid.get("gtid_executed", "")
    if row is None:
        return ReplicationStatus(configured=False, gtid_current_pos=current)
    lag = row.get("Seconds_Behind_Master")
    return ReplicationStatus(
        configured=True,
        io_running=str(row.get("Slave_IO_Running") or ""),
        sql_running=str(row.get("Slave_SQL_Running") or ""),
        last_io_error=str(row.get("Last_IO_Error") or ""),
        last_sql_error=str(row.get("Last_SQL_Error") or ""),
        seconds_behind_master=None if lag is None else int(lag),
        master_host=str(row.get("Master_Host") or ""),
        master_port=int(row.get("Master_Port") or 0),
        gtid_io_pos=str(row.get("Gtid_IO_Pos") or row.get("Retrieved_Gtid_Set") or ""),
        gtid_slave_pos=gtid.get("gtid_slave_pos") or str(row.get("Executed_Gtid_Set") or ""),
        gtid_current_pos=current,
    )
