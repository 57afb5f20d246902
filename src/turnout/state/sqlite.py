"""The embedded state store: one SQLite file, shareable by several processes on one host.

sqlite3 calls run in a worker thread so the event loop never waits on the disk. WAL mode and a
busy timeout let managers and proxies in other processes read and write the same file;
compare-and-set runs inside BEGIN IMMEDIATE, which serialises writers across processes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

from turnout.state.base import (
    AuditEntry,
    ClusterState,
    Downtime,
    Fence,
    InstanceRecord,
    Phase,
    RecoveryRecord,
    StateStore,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY, master TEXT NOT NULL, epoch INTEGER NOT NULL, phase TEXT NOT NULL,
    members TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
    key TEXT PRIMARY KEY, cluster TEXT NOT NULL, data TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fences (
    key TEXT PRIMARY KEY, cluster TEXT NOT NULL, reason TEXT NOT NULL, fenced_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS downtimes (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, reason TEXT NOT NULL, ends_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS recoveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, cluster TEXT NOT NULL, failure_type TEXT NOT NULL,
    failed TEXT NOT NULL, successor TEXT, started_at REAL NOT NULL, ended_at REAL,
    success INTEGER NOT NULL DEFAULT 0, acknowledged INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT, acknowledged_at REAL, acknowledge_comment TEXT,
    manual INTEGER NOT NULL, details TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, cluster TEXT NOT NULL,
    action TEXT NOT NULL, message TEXT NOT NULL, instance TEXT);
"""


class SQLiteStateStore(StateStore):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._db)

        return await asyncio.to_thread(call)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def tx(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self._run(tx)

    async def _exec(self, sql: str, *params: Any) -> sqlite3.Cursor:
        return await self._write(lambda db: db.execute(sql, params))

    async def _one(self, sql: str, *params: Any) -> sqlite3.Row | None:
        row: sqlite3.Row | None = await self._run(lambda db: db.execute(sql, params).fetchone())
        return row

    async def _all(self, sql: str, *params: Any) -> list[sqlite3.Row]:
        return await self._run(lambda db: db.execute(sql, params).fetchall())

    async def close(self) -> None:
        await self._run(lambda db: db.close())

    # ---- clusters -------------------------------------------------------------------------
    @staticmethod
    def _cluster(row: sqlite3.Row) -> ClusterState:
        return ClusterState(
            name=row["name"],
            master=row["master"],
            epoch=row["epoch"],
            phase=cast(Phase, row["phase"]),
            members=tuple(json.loads(row["members"])),
            updated_at=row["updated_at"],
        )

    async def publish(self, state: ClusterState, expected_epoch: int | None) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT epoch FROM clusters WHERE name = ?", (state.name,)).fetchone()
            current = None if row is None else int(row["epoch"])
            if current != expected_epoch:
                return False
            db.execute(
                "INSERT OR REPLACE INTO clusters (name, master, epoch, phase, members, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (state.name, state.master, state.epoch, state.phase, json.dumps(list(state.members)),
                 state.updated_at),
            )
            return True

        if expected_epoch is not None and state.epoch < expected_epoch:
            raise ValueError(f"epoch cannot go backwards ({expected_epoch} -> {state.epoch})")
        return await self._write(tx)

    async def get_cluster(self, name: str) -> ClusterState | None:
        row = await self._one("SELECT * FROM clusters WHERE name = ?", name)
        return None if row is None else self._cluster(row)

    async def clusters(self) -> list[ClusterState]:
        rows = await self._run(lambda db: db.execute("SELECT * FROM clusters ORDER BY name").fetchall())
        return [self._cluster(row) for row in rows]

    async def delete_cluster(self, name: str) -> None:
        await self._write(lambda db: db.execute("DELETE FROM clusters WHERE name = ?", (name,)))

    async def watch(self, interval: float = 0.2) -> AsyncIterator[ClusterState]:
        seen: dict[str, ClusterState] = {}
        while True:
            for state in await self.clusters():
                if seen.get(state.name) != state:
                    seen[state.name] = state
                    yield state
            await asyncio.sleep(interval)

    # ---- leases ---------------------------------------------------------------------------------
    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        def tx(db: sqlite3.Connection) -> bool:
            now = time.time()
            row = db.execute("SELECT owner, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now:
                return False
            db.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (name, owner, now + ttl))
            return True

        return await self._write(tx)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._exec("DELETE FROM leases WHERE name = ? AND owner = ?", name, owner)

    async def lease_owner(self, name: str) -> str | None:
        row = await self._run(
            lambda db: db.execute(
                "SELECT owner FROM leases WHERE name = ? AND expires_at > ?", (name, time.time())
            ).fetchone()
        )
        return None if row is None else str(row["owner"])

    # ---- instances --------------------------------------------------------------------------------
    async def put_instance(self, key: str, cluster: str, data: Mapping[str, Any]) -> None:
        payload = json.dumps(dict(data), default=str)
        await self._write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO instances VALUES (?, ?, ?, ?)", (key, cluster, payload, time.time())
            )
        )

    async def instances(self, cluster: str | None = None) -> list[InstanceRecord]:
        def query(db: sqlite3.Connection) -> list[sqlite3.Row]:
            if cluster is None:
                return db.execute("SELECT * FROM instances ORDER BY key").fetchall()
            return db.execute("SELECT * FROM instances WHERE cluster = ? ORDER BY key", (cluster,)).fetchall()

        return [
            InstanceRecord(row["key"], row["cluster"], json.loads(row["data"]), row["updated_at"])
            for row in await self._run(query)
        ]

    async def forget_instance(self, key: str) -> bool:
        cursor = await self._write(lambda db: db.execute("DELETE FROM instances WHERE key = ?", (key,)))
        return cursor.rowcount > 0

    # ---- fences and downtime ---------------------------------------------------------------------
    async def fence(self, key: str, cluster: str, reason: str) -> None:
        now = time.time()
        await self._exec("INSERT OR REPLACE INTO fences VALUES (?, ?, ?, ?)", key, cluster, reason, now)

    async def unfence(self, key: str) -> bool:
        cursor = await self._write(lambda db: db.execute("DELETE FROM fences WHERE key = ?", (key,)))
        return cursor.rowcount > 0

    async def fenced(self) -> list[Fence]:
        rows = await self._run(lambda db: db.execute("SELECT * FROM fences ORDER BY key").fetchall())
        return [Fence(row["key"], row["cluster"], row["reason"], row["fenced_at"]) for row in rows]

    async def begin_downtime(self, key: str, owner: str, reason: str, seconds: float) -> None:
        ends = time.time() + seconds
        await self._exec("INSERT OR REPLACE INTO downtimes VALUES (?, ?, ?, ?)", key, owner, reason, ends)

    async def end_downtime(self, key: str) -> bool:
        cursor = await self._write(lambda db: db.execute("DELETE FROM downtimes WHERE key = ?", (key,)))
        return cursor.rowcount > 0

    async def downtimes(self) -> list[Downtime]:
        rows = await self._all("SELECT * FROM downtimes WHERE ends_at > ? ORDER BY key", time.time())
        return [Downtime(row["key"], row["owner"], row["reason"], row["ends_at"]) for row in rows]

    # ---- recoveries ---------------------------------------------------------------------------------
    async def start_recovery(self, cluster: str, failure_type: str, failed: str, manual: bool) -> int:
        def tx(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO recoveries (cluster, failure_type, failed, started_at, manual) "
                "VALUES (?, ?, ?, ?, ?)",
                (cluster, failure_type, failed, time.time(), int(manual)),
            )
            return int(cursor.lastrowid or 0)

        return await self._write(tx)

    async def finish_recovery(
        self, recovery_id: int, success: bool, successor: str | None, details: tuple[str, ...]
    ) -> None:
        await self._write(
            lambda db: db.execute(
                "UPDATE recoveries SET ended_at = ?, success = ?, successor = ?, details = ? WHERE id = ?",
                (time.time(), int(success), successor, json.dumps(list(details)), recovery_id),
            )
        )

    @staticmethod
    def _recovery(row: sqlite3.Row) -> RecoveryRecord:
        return RecoveryRecord(
            id=row["id"],
            cluster=row["cluster"],
            failure_type=row["failure_type"],
            failed=row["failed"],
            successor=row["successor"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            success=bool(row["success"]),
            acknowledged=bool(row["acknowledged"]),
            acknowledged_by=row["acknowledged_by"],
            acknowledged_at=row["acknowledged_at"],
            acknowledge_comment=row["acknowledge_comment"],
            manual=bool(row["manual"]),
            details=tuple(json.loads(row["details"])),
        )

    async def recoveries(self, cluster: str | None = None, limit: int = 100) -> list[RecoveryRecord]:
        def query(db: sqlite3.Connection) -> list[sqlite3.Row]:
            if cluster is None:
                return db.execute("SELECT * FROM recoveries ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return db.execute(
                "SELECT * FROM recoveries WHERE cluster = ? ORDER BY id DESC LIMIT ?", (cluster, limit)
            ).fetchall()

        return [self._recovery(row) for row in await self._run(query)]

    async def acknowledge_recoveries(self, cluster: str, by: str, comment: str) -> int:
        cursor = await self._write(
            lambda db: db.execute(
                "UPDATE recoveries SET acknowledged = 1, acknowledged_by = ?, acknowledged_at = ?, "
                "acknowledge_comment = ? WHERE cluster = ? AND acknowledged = 0",
                (by, time.time(), comment, cluster),
            )
        )
        return int(cursor.rowcount)

    # ---- audit -----------------------------------------------------------------------------------------
    async def audit(self, cluster: str, action: str, message: str, instance: str | None = None) -> None:
        await self._write(
            lambda db: db.execute(
                "INSERT INTO audit (at, cluster, action, message, instance) VALUES (?, ?, ?, ?, ?)",
                (time.time(), cluster, action, message, instance),
            )
        )

    async def audit_log(self, cluster: str | None = None, limit: int = 200) -> list[AuditEntry]:
        def query(db: sqlite3.Connection) -> list[sqlite3.Row]:
            if cluster is None:
                return db.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            return db.execute(
                "SELECT * FROM audit WHERE cluster = ? ORDER BY id DESC LIMIT ?", (cluster, limit)
            ).fetchall()

        return [
            AuditEntry(row["id"], row["at"], row["cluster"], row["action"], row["message"], row["instance"])
            for row in await self._run(query)
        ]
