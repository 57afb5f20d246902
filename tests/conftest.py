"""Fixtures on real MariaDB sandboxes.

- `shared_sandbox`: one master + two replicas for the whole session; `reset()` between tests
  brings every server back up and replicating from node 0. Tests must not change its topology.
- `fresh_sandbox`: a new sandbox for one test (failovers, kills); destroyed afterwards.
- `make_sandbox`: the factory behind both, for tests that need another shape.
- `make_lab`: a multi-host lab network (turnout.sandbox.lab) with the hosts asked for, no servers;
  `make_lab_sandbox`: a sandbox whose servers (and etcd members) run on lab hosts. Both always
  remove every namespace, bridge, veth and rule they made. Mark such tests `netns`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from turnout.compiled import stale_compiled_sources
from turnout.sandbox.lab import Lab, missing_tools
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

SandboxFactory = Callable[..., Sandbox]
LabFactory = Callable[..., Lab]


def pytest_configure(config: pytest.Config) -> None:
    stale = stale_compiled_sources()
    if stale:
        pytest.exit(
            f"{', '.join(map(str, stale))}: changed after the data path was compiled, so the tests "
            "would run the old code. Run `make test` (or `make setup`), which rebuilds it.",
            returncode=4,
        )


SERVER_FIXTURES = frozenset({"sandbox", "shared_sandbox", "fresh_sandbox", "make_sandbox"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that starts servers is marked `sandbox` (`make unit` runs the others): those
    under tests/integration, and any test using a sandbox fixture."""
    integration = Path(__file__).parent / "integration"
    for item in items:
        if integration in Path(str(item.path)).parents or SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.sandbox)


def _have_mariadb() -> bool:
    return shutil.which("mariadbd") is not None or Path("/usr/sbin/mariadbd").exists()


def _factory(root: Path, created: list[Sandbox]) -> SandboxFactory:
    def make(replicas: int = 2, semi_sync: bool = False, tls: bool = False) -> Sandbox:
        if not _have_mariadb():
            pytest.fail("mariadbd is missing: run `make test`, which installs MariaDB")
        directory = root / f"sbx{len(created)}"
        base = free_port_block(replicas + 1)
        box = Sandbox.create(directory, base, replicas, semi_sync=semi_sync, tls=tls)
        created.append(box)
        return box

    return make


@pytest.fixture(scope="session")
def shared_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    created: list[Sandbox] = []
    box = _factory(tmp_path_factory.mktemp("shared"), created)()
    try:
        yield box
    finally:
        for made in created:
            made.down(destroy=True)


@pytest.fixture
def sandbox(shared_sandbox: Sandbox) -> Sandbox:
    """The shared sandbox, checked healthy before the test."""
    shared_sandbox.reset()
    return shared_sandbox


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[SandboxFactory]:
    created: list[Sandbox] = []
    try:
        yield _factory(tmp_path, created)
    finally:
        for made in created:
            made.down(destroy=True)


@pytest.fixture
def fresh_sandbox(make_sandbox: SandboxFactory) -> Sandbox:
    return make_sandbox()


pytest_plugins = ["proxy_harness", "system_harness", "driver_harness"]


def _require_lab() -> None:
    missing = missing_tools()
    if missing:
        pytest.fail("the lab tests need " + "; ".join(missing) + " (`make setup` installs the packages)")


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[LabFactory]:
    """make_lab(["a", "b"]) -> a Lab with those (empty) hosts; removed after the test."""
    made: list[Path] = []

    def make(hosts: tuple[str, ...] | list[str] = ()) -> Lab:
        _require_lab()
        directory = tmp_path / f"lab{len(made)}"
        made.append(directory)
        return Lab.create(directory, hosts)

    try:
        yield make
    finally:
        for directory in made:
            if Lab.exists(directory):
                Lab.open(directory).down()


@pytest.fixture
def make_lab_sandbox(tmp_path: Path) -> Iterator[SandboxFactory]:
    """make_lab_sandbox(replicas=2, semi_sync=False, etcd=0) -> a Sandbox on lab hosts; removed after."""
    made: list[Path] = []

    def make(replicas: int = 2, semi_sync: bool = False, etcd: int = 0) -> Sandbox:
        _require_lab()
        if not _have_mariadb():
            pytest.fail("mariadbd is missing: run `make test`, which installs MariaDB")
        directory = tmp_path / f"labsbx{len(made)}"
        made.append(directory)
        return Sandbox.create(directory, 0, replicas, semi_sync=semi_sync, hosts=True, etcd=etcd)

    try:
        yield make
    finally:
        for directory in made:
            try:
                if (directory / "sandbox.json").exists():
                    Sandbox.open(directory).down(destroy=True)
            finally:
                if Lab.exists(directory):
                    Lab.open(directory).down()
