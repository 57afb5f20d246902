"""The console's event hub: rebuilds on a version change or a poke, sends only what changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from turnout.api.events import Hub, sse_message


async def no_changes() -> AsyncIterator[None]:
    """A state store watch that reports nothing."""
    for _ in ():
        yield None


async def next_item(queue: asyncio.Queue[tuple[str, str] | None]) -> tuple[str, str] | None:
    return await asyncio.wait_for(queue.get(), 60)  # a hang fails the test instead of stalling it


async def test_sections_are_sent_when_they_change_and_only_then() -> None:
    version = [0]
    value = {"clusters": ["a"], "proxies": [1]}
    builds = [0]

    async def build() -> dict[str, Any]:
        builds[0] += 1
        return dict(value)

    hub = Hub(build, no_changes, lambda: version[0], period=3600)
    await hub.start()
    try:
        queue = hub.subscribe()
        assert {await next_item(queue), await next_item(queue)} == {("clusters", '["a"]'), ("proxies", "[1]")}
        value["proxies"] = [2]
        version[0] = 1  # e.g. the local proxy's servers in force changed
        assert await next_item(queue) == ("proxies", "[2]")
        value["clusters"] = ["b"]
        hub.poke()  # e.g. an action finished
        assert await next_item(queue) == ("clusters", '["b"]')
        assert queue.empty()
        late = hub.subscribe()  # a new subscriber gets the latest of every section at once
        assert [late.get_nowait(), late.get_nowait()] == [("clusters", '["b"]'), ("proxies", "[2]")]
    finally:
        await hub.stop()
    assert queue.get_nowait() is None and late.get_nowait() is None  # the streams end
    assert builds[0] >= 3


def test_sse_message_format() -> None:
    assert sse_message("audit", '{"a":1}') == b'event: audit\ndata: {"a":1}\n\n'
