"""Managers and proxies as real processes on one etcd, and a TCP link that can be cut.

`Link` stands between one process and etcd: cut, it forwards nothing (bytes read are kept and
new connections wait), as a partition drops packets; healed, everything flows again. So one
process loses the store while the others keep it, on one host.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from turnout.sandbox.config import APP, MANAGER, REPLICATION
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

# Short timings so the tests take seconds; they satisfy the inequalities checked at start.
TIMINGS = {
    "InstancePollSeconds": 1,
    "LeaderLeaseSeconds": 4,
    "LeaderRenewSeconds": 0.5,
    "LeaderRenewDeadlineSeconds": 2.5,
    "ProxyLeaseSeconds": 4,
    "ProxyRenewSeconds": 0.5,
    "ProxyRenewDeadlineSeconds": 2.5,
    "RecoveryPeriodBlockSeconds": 1,
    "MySQLConnectTimeoutSeconds": 1,
    "MySQLDiscoveryReadTimeoutSeconds": 1,
}


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError, pymysql.err.MySQLError) as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


class Link:
    """A TCP forwarder from a local port to `target` that can be cut (black hole) and healed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.flowing.clear()

    def heal(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed.set()
        self.flowing.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self.lock:
            self.sockets += [client, server]
        threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                ready, _, _ = select.select([source], [], [], 0.2)
                if not ready:
                    continue
                data = source.recv(65536)
                if not data:
                    break
                self.flowing.wait()  # cut: what was read waits here, as packets would be lost and resent
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int  # API port (manager) or proxy port
    admin_port: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def kill9(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def api(port: int, path: str, timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of GET /api/<path>; errors are answers too."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}", timeout=timeout) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body else None, dict(exc.headers)


def is_leader(manager: Proc) -> bool:
    try:
        return api(manager.port, "leader-check", timeout=5)[0] == 200
    except OSError:
        return False


def manager_toml(workdir: Path, name: str, api_port: int, store: str, seeds: list[str], **extra: Any) -> Path:
    values: dict[str, Any] = {
        "ListenAddress": f"127.0.0.1:{api_port}",
        "ManagerId": name,
        "MySQLTopologyUser": MANAGER.user,
        "MySQLTopologyPassword": MANAGER.password,
        "MySQLReplicaUser": REPLICATION.user,
        "MySQLReplicaPassword": REPLICATION.password,
        "StateStore": store,
        "DiscoverySeeds": seeds,
        **TIMINGS,
        **extra,
    }
    lines = ["[manager]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = workdir / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


Keep = Callable[[Proc], Proc]


def start_manager(keep: Keep, workdir: Path, name: str, store: str, box: Sandbox, **extra: Any) -> Proc:
    port = free_port_block(1)
    config = manager_toml(workdir, name, port, store, [box.nodes[0].address], **extra)
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "turnout.cli", "manager", "--config", str(config)],
                                   stdout=out, stderr=out)
    proc = keep(Proc(name, process, log, port))
    wait_until(lambda: api(port, "health", timeout=5)[0] == 200, f"{name} to answer", 60)
    return proc


def start_proxy(keep: Keep, workdir: Path, name: str, store: str, box: Sandbox, metrics: bool = False,
                workers: int = 1, **extra: Any) -> Proc:
    """`turnout proxy` following the store (no manager of its own); `metrics`: /metrics on the
    port after the admin's (`Proc.extra["metrics_port"]`); `workers`: its `--workers`."""
    base = free_port_block(3)
    text = sandbox_config(box, workdir / f"{name}-data", base, base + 1, state_store=store)
    if metrics:
        text = text.replace('admin_credentials = "admin:admin"\n', 'admin_credentials = "admin:admin"\n'
                            f'restapi_enabled = true\nprometheus_exporter = true\nrestapi_port = {base + 2}\n')
    text = text.replace("connect_timeout_server_max = 10000", "connect_timeout_server_max = 4000")
    text += "".join(f"{k} = {json.dumps(v)}\n" for k, v in {**TIMINGS, **extra}.items()
                    if k.startswith("Proxy") or k in extra)
    # the [manager] table is the last one in the file: these keys land in it
    config = workdir / f"{name}.toml"
    config.write_text(text)
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config),
                                    "--workers", str(workers)], stdout=out, stderr=out)
    proc = keep(Proc(name, process, log, base, base + 1, {"metrics_port": base + 2}))
    wait_until(lambda: global_status(proc, "Store_proxy_registered") == "1", f"{name} to register", 60)
    return proc


def app(proc: Proc, timeout: float = 30) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=proc.port, user=APP.user, password=APP.password,
                           autocommit=True, connect_timeout=10, read_timeout=timeout, write_timeout=timeout)


def global_status(proc: Proc, name: str) -> str | None:
    with pymysql.connect(host="127.0.0.1", port=proc.admin_port, user="admin", password="admin",
                         autocommit=True, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = %s", (name,))
        row = cur.fetchone()
    return None if row is None else str(row[0])


def cluster(manager: Proc) -> dict[str, Any]:
    status, body, _ = api(manager.port, "clusters-info", timeout=10)
    assert status == 200 and body, body
    return body[0]  # type: ignore[no-any-return]


def master_of(manager: Proc) -> str:
    master = cluster(manager)["Master"]
    return f"{master['Hostname']}:{master['Port']}"


def metric(proc: Proc, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.extra['metrics_port']}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None
