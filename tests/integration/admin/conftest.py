"""An AdminService on a free loopback port, and ways to talk to it with real clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from turnout.admin.service import AdminService
from turnout.config.file import parse
from turnout.config.model import RuntimeConfig
from turnout.sandbox.ports import free_port_block


@dataclass
class Admin:
    service: AdminService
    port: int
    datadir: Path
    delivered: list[RuntimeConfig] = field(default_factory=list)

    async def mariadb(self, sql: str, user: str = "admin", password: str = "admin") -> tuple[int, str, str]:
        """The `mariadb` command-line client, fed `sql` on stdin (batch mode, tab-separated)."""
        process = await asyncio.create_subprocess_exec(
            "mariadb", "-h127.0.0.1", f"-P{self.port}", f"-u{user}", f"-p{password}", "--batch",
            "--show-warnings", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(sql.encode())
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


Starter = Callable[..., Awaitable[Admin]]


def config_text(port: int, extra: str = "") -> str:
    return f'[admin_variables]\nmysql_ifaces = "127.0.0.1:{port}"\n{extra}'


@pytest.fixture
async def start_admin(tmp_path: Path) -> AsyncIterator[Starter]:
    running: list[AdminService] = []

    async def start(extra: str = "", datadir: Path | None = None, initial: bool = False,
                    port: int | None = None) -> Admin:
        port = port or free_port_block(1)
        config = parse(config_text(port, extra))
        admin = Admin(None, port, datadir or tmp_path / "data")  # type: ignore[arg-type]
        admin.service = AdminService(admin.datadir, config, initial=initial, on_runtime=admin.delivered.append)
        await admin.service.start()
        running.append(admin.service)
        return admin

    yield start
    for service in running:
        await service.stop()


async def stop(admin: Admin) -> None:
    await admin.service.stop()
