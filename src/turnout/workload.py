"""A small read+write workload through the proxy that remembers every acknowledged write.

Used by the demo and the end-to-end tests: writes are numbered per writer, so a checker can
prove afterwards that every insert the proxy acknowledged is on the new master.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql

from turnout.sandbox.config import APP

TABLE = "turnout_demo.events"
SCHEMA_SQL = (
    "CREATE DATABASE IF NOT EXISTS turnout_demo",
    f"CREATE TABLE IF NOT EXISTS {TABLE} (writer INT NOT NULL, seq INT NOT NULL, at DOUBLE NOT NULL, "
    "PRIMARY KEY (writer, seq))",
)


@dataclass
class WorkloadError:
    at: float
    kind: str  # "write" or "read"
    code: int
    message: str


@dataclass
class Counters:
    writes: int = 0
    reads: int = 0
    errors: list[WorkloadError] = field(default_factory=list)
    acknowledged: set[tuple[int, int]] = field(default_factory=set)
    write_times: list[float] = field(default_factory=list)


def checker_schema(table: str) -> tuple[str, ...]:
    """A table that records duplicates instead of refusing them: (writer, seq) is not unique, so a
    write the proxy ran twice shows up as two rows (`duplicated_writes`)."""
    database = table.split(".")[0]
    return (
        f"CREATE DATABASE IF NOT EXISTS {database}",
        f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, writer INT NOT NULL, "
        "seq INT NOT NULL, at DOUBLE NOT NULL, KEY (writer, seq))",
    )


class Workload:
    def __init__(
        self,
        port: int,
        writers: int = 2,
        readers: int = 2,
        host: str = "127.0.0.1",
        table: str = TABLE,
        schema: tuple[str, ...] = SCHEMA_SQL,
    ) -> None:
        self.table = table
        self.schema = schema
        self.host = host
        self.port = port
        self.writers = writers
        self.readers = readers
        self.counters = Counters()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _connect(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host, port=self.port, user=APP.user, password=APP.password,
            autocommit=True, connect_timeout=5, read_timeout=30, write_timeout=30,
        )

    def create_schema(self) -> None:
        with self._connect() as conn, conn.cursor() as cur:
            for sql in self.schema:
                cur.execute(sql)

    def start(self) -> None:
        for writer in range(self.writers):
            self._threads.append(threading.Thread(target=self._write_loop, args=(writer,), daemon=True))
        for _ in range(self.readers):
            self._threads.append(threading.Thread(target=self._read_loop, daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def _error(self, kind: str, exc: Exception) -> None:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        with self._lock:
            self.counters.errors.append(WorkloadError(time.time(), kind, code, message))

    def _write_loop(self, writer: int) -> None:
        seq = 0
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                seq += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (writer, seq, at) VALUES (%s, %s, %s)", (writer, seq, time.time()))
                now = time.time()
                with self._lock:
                    self.counters.writes += 1
                    self.counters.acknowledged.add((writer, seq))
                    self.counters.write_times.append(now)
            except pymysql.err.MySQLError as exc:
                self._error("write", exc)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def _read_loop(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self._connect()
                with conn.cursor() as cur:
                    cur.execute(f"SELECT COUNT(*) FROM {self.table}")
                    cur.fetchall()
                with self._lock:
                    self.counters.reads += 1
            except pymysql.err.MySQLError as exc:
                self._error("read", exc)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(0.005)
        if conn is not None:
            conn.close()

    def write_pause(self, start: float, end: float) -> float:
        """The longest gap between acknowledged writes that overlaps [start, end], in seconds."""
        with self._lock:
            times = sorted(self.counters.write_times)
        before = [t for t in times if t <= start]
        previous = before[-1] if before else start
        longest = 0.0
        for t in times:
            if t <= start:
                continue
            longest = max(longest, t - previous)
            previous = t
            if t > end:
                break
        else:
            longest = max(longest, time.time() - previous)
        return longest

    def errors_between(self, start: float, end: float) -> list[WorkloadError]:
        with self._lock:
            return [e for e in self.counters.errors if start <= e.at <= end]


def missing_writes(acknowledged: set[tuple[int, int]], rows: list[tuple[int, int]]) -> set[tuple[int, int]]:
    """Acknowledged writes that are not in `rows` (writer, seq) read from the master."""
    return acknowledged - set(rows)


def duplicated_writes(rows: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """(writer, seq) -> how many times, for the writes found more than once in `rows`."""
    counts: dict[tuple[int, int], int] = {}
    for row in rows:
        counts[row] = counts.get(row, 0) + 1
    return {row: n for row, n in counts.items() if n > 1}
