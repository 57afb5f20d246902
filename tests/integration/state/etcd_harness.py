"""A real etcd member for the state store tests, and `Backend`, the store objects of one scenario."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from turnout.sandbox.ports import free_port_block
from turnout.state import StateStore, open_store

ETCD_MISSING = "etcd is missing: run `make test`, which installs etcd-server (scripts/system-deps.sh)"


def etcd_binary() -> str:
    found = shutil.which("etcd") or ("/usr/bin/etcd" if Path("/usr/bin/etcd").exists() else None)
    if found is None:
        pytest.fail(ETCD_MISSING)
    return found


class EtcdServer:
    """One etcd member on 127.0.0.1 (client port, peer port = client port + 1)."""

    def __init__(self, datadir: Path, client_port: int) -> None:
        self.datadir = datadir
        self.client_port = client_port
        self.peer_port = client_port + 1
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def log(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def start(self) -> None:
        client, peer = f"http://127.0.0.1:{self.client_port}", f"http://127.0.0.1:{self.peer_port}"
        command = [
            etcd_binary(), "--name", "default", "--data-dir", str(self.datadir),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"default={peer}",
            # A short election timeout lowers etcd's minimum lease TTL to one second.
            "--heartbeat-interval", "10", "--election-timeout", "100",
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"etcd exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"etcd did not become healthy within 30 s:\n{self.log.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1) as resp:
                return bool(json.load(resp).get("health") == "true")
        except OSError:
            return False

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_etcd(directory: Path) -> Iterator[EtcdServer]:
    """One etcd member with its data under `directory`, on free loopback ports; always stopped after."""
    etcd_binary()
    server = EtcdServer(directory / "member", free_port_block(2))
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Backend:
    """Opens store objects that share one state: `target` is what `open_store` takes."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target
        self.opened: list[StateStore] = []

    def open(self) -> StateStore:
        store = open_store(self.target)
        self.opened.append(store)
        return store

    def __repr__(self) -> str:
        return f"Backend({self.name})"
