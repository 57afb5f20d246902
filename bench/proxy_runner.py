"""Run turnout's proxy alone from a config file (one process, uvloop), for the benchmarks.

Used only when the installed turnout has no `turnout proxy` command yet. No monitor, no admin:
servers stay in the hostgroups the file gives them.

    python -m bench.proxy_runner FILE.toml
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from turnout.config.file import parse
from turnout.proxy.proxy import Proxy, parse_interface


async def serve(config_path: Path) -> None:
    config_file = parse(config_path.read_text(), source=str(config_path), path=config_path)
    config = config_file.runtime_config()
    host, port = parse_interface(config.variable("mysql-interfaces", "127.0.0.1:6033"), 6033)
    proxy = Proxy(config)
    await proxy.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger("turnout").info("proxy listening on %s:%d", host, port)
    try:
        await stop.wait()
    finally:
        await proxy.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop
    except ImportError:
        logging.warning("uvloop is not installed; using asyncio's default event loop")
    else:
        uvloop.install()
    asyncio.run(serve(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
