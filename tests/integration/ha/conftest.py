"""A real etcd for the HA tests (one member on loopback ports, for the whole session), and `ha`:
the etcd URL of a fresh prefix plus every process and link a test starts, all stopped after."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integration.ha.ha_harness import Link, Proc
from integration.state.etcd_harness import EtcdServer, running_etcd


@pytest.fixture(scope="session")
def ha_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with running_etcd(tmp_path_factory.mktemp("ha-etcd")) as server:
        yield server


@dataclass
class HA:
    etcd: EtcdServer
    prefix: str
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)

    @property
    def store(self) -> str:
        return f"etcd://127.0.0.1:{self.etcd.client_port}{self.prefix}"

    def link(self) -> tuple[Link, str]:
        """A cuttable path to etcd, and the store URL that goes through it."""
        made = Link(("127.0.0.1", self.etcd.client_port))
        self.links.append(made)
        return made, f"etcd://127.0.0.1:{made.port}{self.prefix}"

    def keep(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc


@pytest.fixture
def ha(ha_etcd: EtcdServer, tmp_path: Path) -> Iterator[HA]:
    made = HA(ha_etcd, f"/ha-{uuid.uuid4().hex[:10]}", tmp_path)
    try:
        yield made
    finally:
        for link in made.links:
            link.heal()
        for proc in made.procs:
            proc.stop()
        for link in made.links:
            link.close()
