"""State store fixtures: a real etcd for the session, and `backend`, which runs a test on each store.

- `etcd_server`: one etcd member on free loopback ports for the whole session, always stopped.
- `backend`: parametrised over "sqlite" and "etcd"; `backend.open()` makes another store object
  on the same shared state (the same SQLite file, or the same etcd prefix), so a scenario can
  play two managers or a manager and a proxy. Every test gets a fresh file / prefix.
- `EtcdServer` is also used directly by tests that stop and restart their own member.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from integration.state.etcd_harness import Backend, EtcdServer, running_etcd


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(params=["sqlite", "etcd"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "etcd":
        server: EtcdServer = request.getfixturevalue("etcd_server")
        target = f"etcd://127.0.0.1:{server.client_port}/test-{uuid.uuid4().hex[:12]}"
    else:
        target = str(tmp_path / "state.db")
    made = Backend(request.param, target)
    try:
        yield made
    finally:
        for store in made.opened:
            await store.close()
