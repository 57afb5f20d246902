"""A manager running in the test's event loop, pointed at a sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from turnout.manager.service import ManagerService
from turnout.manager.settings import ManagerSettings
from turnout.sandbox.config import MANAGER, REPLICATION
from turnout.state import SQLiteStateStore

MakeManager = Callable[..., Any]


def settings_for(**overrides: Any) -> ManagerSettings:
    values: dict[str, Any] = {
        "MySQLTopologyUser": MANAGER.user,
        "MySQLTopologyPassword": MANAGER.password,
        "MySQLReplicaUser": REPLICATION.user,
        "MySQLReplicaPassword": REPLICATION.password,
        "InstancePollSeconds": 1,
        "MySQLConnectTimeoutSeconds": 1,
        "MySQLDiscoveryReadTimeoutSeconds": 1,
    }
    values.update(overrides)
    return ManagerSettings.from_mapping(values)


@pytest.fixture
async def make_manager(tmp_path: Path) -> AsyncIterator[MakeManager]:
    started: list[ManagerService] = []

    async def make(seed: str, **overrides: Any) -> ManagerService:
        store = SQLiteStateStore(tmp_path / f"state{len(started)}.db")
        service = ManagerService(settings_for(DiscoverySeeds=[seed], **overrides), store)
        started.append(service)
        await service.start()
        await service.wait_ticks(1)
        return service

    try:
        yield make
    finally:
        for service in started:
            await service.stop()
            await service.store.close()
