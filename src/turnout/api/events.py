"""Live updates for the console: server-sent events.

A `Hub` rebuilds the console's sections (clusters, proxies, timeline) when the state store's
watch reports a change, when `version` changes (the manager finished a discovery round, the
local proxy's servers in force changed with a monitor snapshot), and every second while anyone
watches; each subscriber gets a section only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("turnout.api")

Build = Callable[[], Awaitable[dict[str, Any]]]
KEEPALIVE_SECONDS = 15.0
MIN_INTERVAL = 0.2


def sse_message(event: str, data: str) -> bytes:
    """One server-sent event; `data` is JSON, so it holds no newline."""
    return f"event: {event}\ndata: {data}\n\n".encode()


class Hub:
    def __init__(self, build: Build, watch: Callable[[], Any], version: Callable[[], object],
                 period: float = 1.0) -> None:
        self._build = build
        self._watch = watch
        self._version = version
        self.period = period
        self.latest: dict[str, str] = {}
        self._subscribers: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._follow_store(), name="console-watch"),
                       asyncio.create_task(self._loop(), name="console-hub")]

    async def stop(self) -> None:
        for queue in self._subscribers:
            queue.put_nowait(None)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def subscribe(self) -> asyncio.Queue[tuple[str, str] | None]:
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        for section, data in self.latest.items():
            queue.put_nowait((section, data))
        self._subscribers.add(queue)
        self._wake.set()
        return queue

    def unsubscribe(self, queue: asyncio.Queue[tuple[str, str] | None]) -> None:
        self._subscribers.discard(queue)

    def poke(self) -> None:
        """Something changed (an action finished): rebuild now."""
        self._wake.set()

    async def _follow_store(self) -> None:
        while True:
            try:
                async for _ in self._watch():
                    self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("console: the state store's watch failed; retrying")
            await asyncio.sleep(1)

    async def _loop(self) -> None:
        seen: object = None
        last = 0.0
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the wake-up does, and then stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.25):
                    await self._wake.wait()
            version = self._version()
            due = self._wake.is_set() or version != seen or time.monotonic() - last >= self.period
            self._wake.clear()
            if not due or not self._subscribers:
                continue
            await asyncio.sleep(max(0.0, MIN_INTERVAL - (time.monotonic() - last)))  # a burst of changes: one build
            seen, last = version, time.monotonic()
            try:
                sections = await self._build()
            except Exception:
                log.exception("console: building the view failed")
                continue
            self.publish(sections)

    def publish(self, sections: dict[str, Any]) -> None:
        for section, value in sections.items():
            data = json.dumps(value, separators=(",", ":"), default=str)
            if self.latest.get(section) == data:
                continue
            self.latest[section] = data
            for queue in self._subscribers:
                queue.put_nowait((section, data))


async def stream(request: web.Request, hub: Hub, hello: dict[str, Any]) -> web.StreamResponse:
    """GET .../events: the sections as they change, until the client goes or the server stops."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n" + sse_message("hello", json.dumps(hello)))
    queue = hub.subscribe()
    try:
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    item = await queue.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if item is None:
                break
            await response.write(sse_message(*item))
    except ConnectionResetError:
        pass
    finally:
        hub.unsubscribe(queue)
    return response
