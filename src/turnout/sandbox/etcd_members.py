"""A real etcd cluster on the lab's hosts: member i runs on host ``etcd{i}`` at ports 2379 and 2380.

Debian's etcd-server; data in ``DIR/etcd{i}/data``, output in ``DIR/etcd{i}/etcd.log``, the pid
in ``DIR/etcd{i}/etcd.pid``. A killed member restarted on its data directory rejoins the cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from turnout.sandbox import processes
from turnout.sandbox.errors import SandboxError
from turnout.sandbox.lab import Lab
from turnout.sandbox.processes import pid_alive, process_state

CLIENT_PORT = 2379
PEER_PORT = 2380
START_TIMEOUT = 60.0


def etcd_binary() -> str:
    for candidate in (shutil.which("etcd"), "/usr/bin/etcd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError("etcd not found: apt-get install etcd-server (scripts/system-deps.sh installs it)")


class EtcdMembers:
    """The etcd members of one lab sandbox."""

    def __init__(self, lab: Lab, directory: Path, count: int, election_ms: int = 1000) -> None:
        self.lab = lab
        self.dir = directory
        self.count = count
        self.election_ms = election_ms

    # ---- names ----------------------------------------------------------------------------------
    def host(self, index: int) -> str:
        if not 0 <= index < self.count:
            raise SandboxError(f"no etcd member {index}: this lab has members 0..{self.count - 1}")
        return f"etcd{index}"

    def address(self, index: int) -> str:
        return self.lab.address(self.host(index))

    def endpoint(self, index: int) -> str:
        """The member's client URL, ``http://ADDRESS:2379``."""
        return f"http://{self.address(index)}:{CLIENT_PORT}"

    @property
    def endpoints(self) -> list[str]:
        return [self.endpoint(i) for i in range(self.count)]

    def store_url(self, prefix: str = "/turnout") -> str:
        """What ``[manager] StateStore`` takes: ``etcd://a:2379,b:2379,c:2379/turnout``."""
        members = ",".join(f"{self.address(i)}:{CLIENT_PORT}" for i in range(self.count))
        return f"etcd://{members}/{prefix.strip('/')}"

    def _root(self, index: int) -> Path:
        return self.dir / self.host(index)

    def _pid_file(self, index: int) -> Path:
        return self._root(index) / "etcd.pid"

    def log(self, index: int) -> Path:
        return self._root(index) / "etcd.log"

    # ---- processes ------------------------------------------------------------------------------
    def command(self, index: int) -> list[str]:
        name = self.host(index)
        client = f"http://{self.address(index)}:{CLIENT_PORT}"
        peer = f"http://{self.address(index)}:{PEER_PORT}"
        cluster = ",".join(f"{self.host(i)}=http://{self.address(i)}:{PEER_PORT}" for i in range(self.count))
        return [
            etcd_binary(), "--name", name, "--data-dir", str(self._root(index) / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"turnout-{self.lab.id}",
            "--heartbeat-interval", str(max(1, self.election_ms // 10)),
            "--election-timeout", str(self.election_ms),
        ]

    def pid(self, index: int) -> int | None:
        try:
            pid = int(self._pid_file(index).read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        # An empty command line: the process is between fork and exec (just started).
        if pid_alive(pid) and (not cmdline or str(self._root(index) / "data") in cmdline):
            return pid
        with contextlib.suppress(OSError):
            self._pid_file(index).unlink()
        return None

    def start(self, index: int, wait: bool = True) -> None:
        """Start member `index` (on its data directory if it has one); `wait`: until it is healthy."""
        if self.pid(index) is None:
            root = self._root(index)
            root.mkdir(parents=True, exist_ok=True)
            with open(self.log(index), "ab") as out:
                proc = subprocess.Popen(self.lab.command(self.host(index), self.command(index)), stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self._pid_file(index).write_text(f"{proc.pid}\n")
        if wait:
            self.wait_healthy([index])

    def start_all(self) -> None:
        """Start every member (they elect a leader only once a majority runs), then wait for all."""
        for index in range(self.count):
            self.start(index, wait=False)
        self.wait_healthy(range(self.count))

    def healthy(self, index: int, timeout: float = 1.0) -> bool:
        """The member answers /health with true: it runs and its cluster has a leader."""
        try:
            with urllib.request.urlopen(self.endpoint(index) + "/health", timeout=timeout) as resp:
                return bool(json.load(resp).get("health") == "true")
        except (OSError, ValueError):
            return False

    def wait_healthy(self, indexes: Iterable[int], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        for index in list(indexes):
            while not self.healthy(index):
                if self.pid(index) is None:
                    raise SandboxError(f"etcd member {index} exited; its log ends:\n{self._tail(index)}")
                if time.monotonic() > deadline:
                    raise SandboxError(f"etcd member {index} was not healthy within {timeout:.0f}s; "
                                       f"its log ends:\n{self._tail(index)}")
                time.sleep(0.05)

    def _tail(self, index: int) -> str:
        try:
            return self.log(index).read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def kill(self, index: int) -> None:
        """SIGKILL: the member dies as in a crash."""
        pid = processes.send(self.pid(index), signal.SIGKILL)
        if pid is not None:
            processes.wait_exit(pid, 10)

    def stop(self, index: int, timeout: float = 20) -> None:
        pid = self.pid(index)
        if pid is not None and not processes.terminate(pid, timeout):
            self.kill(index)

    def stop_all(self, timeout: float = 2) -> None:
        """SIGTERM to every member at once (one stopping alone may wait for the others to take over
        its leadership), then SIGKILL to those still running after `timeout`."""
        running = {index: pid for index in range(self.count) if (pid := self.pid(index)) is not None}
        for pid in running.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for index, pid in running.items():
            if not processes.wait_exit(pid, max(0.0, deadline - time.monotonic())):
                self.kill(index)

    def pause(self, index: int) -> None:
        """SIGSTOP: the member hangs, its sockets stay open."""
        if processes.send(self.pid(index), signal.SIGSTOP) is None:
            raise SandboxError(f"etcd member {index} is not running")

    def resume(self, index: int) -> None:
        processes.send(self.pid(index), signal.SIGCONT)

    def status(self) -> list[dict[str, Any]]:
        rows = []
        for index in range(self.count):
            pid = self.pid(index)
            state = "down" if pid is None else ("paused" if process_state(pid) == "T" else "running")
            rows.append({
                "member": index,
                "host": self.host(index),
                "endpoint": self.endpoint(index),
                "pid": pid,
                "state": state,
                "healthy": state == "running" and self.healthy(index, timeout=0.5),
            })
        return rows
