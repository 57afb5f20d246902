"""The whole admin service: store, listener and scheduler, started as ProxySQL starts.

On start: memory comes from disk (proxysql.db in the datadir) when it exists, else from the
configuration file, which is then saved to disk (so later starts ignore the file, as ProxySQL
does); `initial=True` takes the file even when disk exists and overwrites disk. Then every module
is loaded to runtime as one RuntimeConfig, handed to `on_runtime`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from turnout.admin.modules import Direction
from turnout.admin.scheduler import Scheduler
from turnout.admin.server import AdminListener
from turnout.admin.store import AdminError, AdminStore, Providers
from turnout.config.file import ConfigError, ConfigFile, load_config
from turnout.config.model import RuntimeConfig
from turnout.output import UserError

log = logging.getLogger(__name__)


class AdminService:
    def __init__(
        self,
        datadir: Path | None,
        config_file: ConfigFile | None = None,
        initial: bool = False,
        on_runtime: Callable[[RuntimeConfig], None] | None = None,
        providers: Providers | None = None,
    ) -> None:
        """`datadir` None takes the config file's; None there too keeps disk in memory."""
        self.datadir = datadir if datadir is not None else (config_file.datadir if config_file else None)
        self.config_file = config_file
        self.initial = initial
        self.on_runtime = on_runtime
        self.store = AdminStore(self.datadir, on_runtime=self._deliver, config=self._config, providers=providers)
        self.listener = AdminListener(self.store)
        self.scheduler = Scheduler()
        self._started = False

    @property
    def runtime(self) -> RuntimeConfig:
        return self.store.runtime

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the admin interface listens (after start)."""
        return list(self.listener.addresses)

    def _config(self) -> ConfigFile | None:
        """The configuration file as it is now: LOAD ... FROM CONFIG re-reads it, like ProxySQL."""
        if self.config_file is None or self.config_file.path is None:
            return self.config_file
        try:
            return load_config(self.config_file.path)
        except ConfigError as exc:
            raise AdminError(str(exc)) from exc

    def _deliver(self, config: RuntimeConfig) -> None:
        if self.on_runtime is not None:
            self.on_runtime(config)
        if self._started:
            self.scheduler.update(config.scheduler, config.int_variable("admin-scheduler_timeout_ms", 0))

    def bootstrap(self) -> RuntimeConfig:
        """Fill memory (disk, or the config file) and put everything in force; no I/O but files."""
        if self.store.disk_existed and not self.initial:
            log.info("configuration from %s", self.store.disk_path)
            self.store.load_all(Direction.DISK_TO_MEMORY)
        else:
            if self.config_file is not None:
                log.info("configuration from %s", self.config_file.path or "the configuration file")
                self.store.load_all(Direction.CONFIG_TO_MEMORY)
            self.store.save_all_to_disk()
        try:
            return self.store.load_all_to_runtime()
        except AdminError as exc:
            raise UserError(f"the configuration cannot be put in force: {exc}") from exc

    async def start(self) -> None:
        runtime = self.bootstrap()
        await self.listener.start(runtime.variable("admin-mysql_ifaces", "127.0.0.1:6032"))
        self._started = True
        self.scheduler.update(runtime.scheduler, runtime.int_variable("admin-scheduler_timeout_ms", 0))

    async def stop(self) -> None:
        self._started = False
        await self.scheduler.stop()
        await self.listener.stop()
        self.store.close()
