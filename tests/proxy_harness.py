"""A proxy running in a background thread's event loop, in front of the shared sandbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import pytest
import uvloop

from turnout.config.model import MysqlServer, MysqlUser, QueryRule, ReplicationHostgroup, RuntimeConfig
from turnout.proxy.hostgroups import HostgroupTable
from turnout.proxy.proxy import Proxy
from turnout.sandbox.config import APP
from turnout.sandbox.sandbox import Sandbox

WRITER, READER = 10, 20
T = TypeVar("T")


def split_config(box: Sandbox, **variables: str) -> RuntimeConfig:
    """The classic read/write split, with the rules exactly as ProxySQL users write them."""
    servers = [MysqlServer(WRITER, "127.0.0.1", box.nodes[0].port)]
    servers += [MysqlServer(READER, "127.0.0.1", node.port) for node in box.nodes[1:]]
    return RuntimeConfig(
        version=1,
        servers=tuple(servers),
        users=(MysqlUser(APP.user, APP.password, default_hostgroup=WRITER),),
        query_rules=(
            QueryRule(rule_id=1, active=1, match_digest=r"^SELECT.*FOR UPDATE", destination_hostgroup=WRITER, apply=1),
            QueryRule(rule_id=2, active=1, match_digest=r"^SELECT", destination_hostgroup=READER, apply=1),
        ),
        replication_hostgroups=(ReplicationHostgroup(WRITER, READER),),
        variables={"mysql-connect_timeout_server_max": "2000", **variables},
    )


@dataclass
class RunningProxy:
    proxy: Proxy
    port: int
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[[], T]) -> T:
        """Run a function on the proxy's loop thread (to change its configuration safely)."""
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # pragma: no cover - surfaced to the test
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    def set_servers(self, servers: list[MysqlServer], write_blocked: dict[int, str] | None = None) -> None:
        self.call(lambda: self.proxy.apply_routing(HostgroupTable.build(servers, write_blocked)))

    def connect(self, user: str = APP.user, password: str = APP.password, **kwargs: Any) -> pymysql.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, **kwargs)


@pytest.fixture
def start_proxy() -> Iterator[Callable[..., RunningProxy]]:
    running: list[tuple[RunningProxy, threading.Thread]] = []

    def start(config: RuntimeConfig, datadir: Path | None = None) -> RunningProxy:
        loop = uvloop.new_event_loop()  # the event loop turnout runs on
        ready: Future[RunningProxy] = Future()

        async def main() -> None:
            proxy = Proxy(config, datadir=datadir)
            await proxy.start("127.0.0.1", 0)
            ready.set_result(RunningProxy(proxy, proxy.ports[0], loop))

        def thread_main() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(main())
            loop.run_forever()

        thread = threading.Thread(target=thread_main, daemon=True)
        thread.start()
        handle = ready.result(timeout=10)
        running.append((handle, thread))
        return handle

    yield start
    for handle, thread in running:
        asyncio.run_coroutine_threadsafe(handle.proxy.stop(), handle.loop).result(timeout=10)
        handle.loop.call_soon_threadsafe(handle.loop.stop)
        thread.join(timeout=10)


@pytest.fixture
def split_proxy(sandbox: Sandbox, start_proxy: Callable[..., RunningProxy]) -> RunningProxy:
    return start_proxy(split_config(sandbox))


def server_counter(box: Sandbox, node: int, name: str) -> int:
    rows = box.execute(node, f"SHOW GLOBAL STATUS LIKE '{name}'")
    return int(rows[0]["Value"])
