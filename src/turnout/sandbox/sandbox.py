"""Local MariaDB replication sandboxes: real mariadbd processes on 127.0.0.1.

A sandbox directory holds `sandbox.json` (what it is) and one folder per server
(`node0` is the first master). Data directories are copied from a template made once per
MariaDB version by mariadb-install-db, so a new server costs a copy, not an install.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from turnout.certificates import generate_certificates
from turnout.sandbox import processes
from turnout.sandbox.config import ACCOUNTS, MANAGER, REPLICATION, NodePaths, account_sql, server_cnf
from turnout.sandbox.errors import SandboxError as SandboxError
from turnout.sandbox.etcd_members import EtcdMembers, etcd_binary
from turnout.sandbox.lab import Lab
from turnout.sandbox.processes import pid_alive as pid_alive
from turnout.sandbox.processes import process_state

META_FILE = "sandbox.json"
LAB_MARIADB_PORT = 3306
START_TIMEOUT = 60.0


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Node:
    index: int
    port: int
    server_id: int
    root: str
    host: str = "127.0.0.1"  # the address it listens on: a lab host's own, else loopback

    @property
    def paths(self) -> NodePaths:
        return NodePaths(Path(self.root))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def host_name(self) -> str:
        """The node's host in a multi-host lab."""
        return f"node{self.index}"


@dataclass
class SandboxMeta:
    base_port: int
    semi_sync: bool
    nodes: list[Node] = field(default_factory=list)
    tls: bool = False  # the servers offer TLS, with a certificate made for the sandbox
    hosts: bool = False  # a multi-host lab: every server on a host of its own (turnout.sandbox.lab)
    etcd: int = 0  # etcd members on hosts etcd0, etcd1, ... (lab only)
    etcd_election_ms: int = 1000


def find_binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SandboxError(
        f"{name} not found: install MariaDB (apt-get install mariadb-server mariadb-client), "
        "or run `make demo` which installs it"
    )


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return True
    return False


def _mariadb_version() -> str:
    out = subprocess.run([find_binary("mariadbd"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[2]


def template_datadir(progress: Progress = _quiet) -> Path:
    """A freshly installed, never started data directory, made once per MariaDB version."""
    cache = Path(os.environ.get("TURNOUT_CACHE", Path.home() / ".cache" / "turnout"))
    template = cache / f"datadir-{_mariadb_version()}"
    if (template / "mysql").is_dir():
        return template
    progress(f"initialising a template data directory in {template} (once per MariaDB version)")
    staging = template.with_name(template.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    cmd = [
        find_binary("mariadb-install-db"),
        f"--datadir={staging}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--no-defaults",
        "--skip-name-resolve",
    ]
    if os.geteuid() == 0:
        cmd.append("--user=root")
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SandboxError(f"mariadb-install-db failed: {result.stderr.strip()[-500:]}")
    try:
        staging.rename(template)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    return template


class Sandbox:
    """A replication sandbox rooted at one directory."""

    def __init__(self, directory: Path | str, meta: SandboxMeta) -> None:
        self.dir = Path(directory).resolve()
        self.meta = meta
        self._lab: Lab | None = None

    @property
    def lab(self) -> Lab:
        """The lab of a multi-host sandbox (`up --hosts`)."""
        if not self.meta.hosts:
            raise SandboxError(f"{self.dir} is a single-host sandbox; the lab needs `turnout sandbox up --hosts`")
        if self._lab is None:
            self._lab = Lab.open(self.dir)
        return self._lab

    @property
    def etcd(self) -> EtcdMembers:
        """The etcd members of a lab started with `--etcd N`."""
        if not self.meta.etcd:
            raise SandboxError(f"{self.dir} has no etcd members; make the sandbox with `--hosts --etcd 3`")
        return EtcdMembers(self.lab, self.dir, self.meta.etcd, self.meta.etcd_election_ms)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path | str) -> Sandbox:
        path = Path(directory)
        meta_file = path / META_FILE
        if not meta_file.exists():
            raise SandboxError(
                f"{path} is not a turnout sandbox (no {META_FILE}); "
                f"create one with `turnout sandbox up --dir {path}`"
            )
        raw = json.loads(meta_file.read_text())
        meta = SandboxMeta(
            base_port=raw["base_port"],
            semi_sync=raw["semi_sync"],
            nodes=[Node(**node) for node in raw["nodes"]],
            tls=raw.get("tls", False),
            hosts=raw.get("hosts", False),
            etcd=raw.get("etcd", 0),
            etcd_election_ms=raw.get("etcd_election_ms", 1000),
        )
        return cls(path, meta)

    @classmethod
    def create(
        cls,
        directory: Path | str,
        base_port: int,
        replicas: int,
        semi_sync: bool = False,
        progress: Progress = _quiet,
        tls: bool = False,
        hosts: bool = False,
        etcd: int = 0,
        etcd_election_ms: int = 1000,
    ) -> Sandbox:
        """Create and start a sandbox, or start the existing one at `directory`.

        `hosts`: a multi-host lab (turnout.sandbox.lab): node i on host ``node{i}`` at port 3306 of
        its own address (`base_port` is not used), and `etcd` etcd members on ``etcd0``, ...
        """
        path = Path(directory)
        if etcd and not hosts:
            raise SandboxError("--etcd needs --hosts: etcd members run on lab hosts of their own")
        if etcd < 0:
            raise SandboxError("--etcd must be 0 or more")
        if (path / META_FILE).exists():
            box = cls.open(path)
            if len(box.meta.nodes) != replicas + 1 or (
                (box.meta.hosts, box.meta.etcd) != (hosts, etcd) if hosts or box.meta.hosts
                else box.meta.base_port != base_port
            ):
                shape = (f"a lab with {box.meta.etcd} etcd members" if box.meta.hosts
                         else f"a sandbox on port {box.meta.base_port}")
                raise SandboxError(
                    f"{path} already holds {shape} and {len(box.meta.nodes)} servers; use it as is, "
                    f"or remove it with `turnout sandbox down --dir {path} --destroy`"
                )
            progress(f"reusing the sandbox in {path}")
            box.start_all(progress)
            return box
        if path.exists() and any(path.iterdir()):
            raise SandboxError(
                f"{path} exists and is not a turnout sandbox; choose an empty or new --dir"
            )
        if replicas < 0:
            raise SandboxError("--replicas must be 0 or more")
        find_binary("mariadbd")
        if etcd:
            etcd_binary()
        busy = [] if hosts else [p for p in range(base_port, base_port + replicas + 1) if port_in_use(p)]
        if busy:
            raise SandboxError(
                f"port {busy[0]} is already in use; choose another --base-port "
                f"(this sandbox needs {replicas + 1} free ports from {base_port})"
            )
        template = template_datadir(progress)
        path.mkdir(parents=True, exist_ok=True)
        meta = SandboxMeta(base_port=base_port, semi_sync=semi_sync, tls=tls, hosts=hosts, etcd=etcd,
                           etcd_election_ms=etcd_election_ms)
        lab = None
        if hosts:
            progress("making the lab's network: a namespace per host on a bridge of its own")
            lab = Lab.create(path, [f"node{i}" for i in range(replicas + 1)] + [f"etcd{i}" for i in range(etcd)])
        try:
            tls_dir = (path / "tls").resolve() if tls else None
            if tls_dir is not None:
                generate_certificates(tls_dir)
            for index in range(replicas + 1):
                node = Node(
                    index=index,
                    port=LAB_MARIADB_PORT if lab else base_port + index,
                    server_id=index + 1,
                    root=str((path / f"node{index}").resolve()),
                    host=lab.address(f"node{index}") if lab else "127.0.0.1",
                )
                paths = node.paths
                paths.root.mkdir(parents=True)
                shutil.copytree(template, paths.datadir)
                paths.cnf.write_text(
                    server_cnf(paths, node.port, node.server_id, semi_sync, run_as_root=os.geteuid() == 0, tls_dir=tls_dir,
                               bind_address=node.host)
                )
                meta.nodes.append(node)
        except BaseException:
            if lab is not None:  # the servers never started: only the network is there to remove
                with contextlib.suppress(Exception):
                    lab.down()
            raise
        box = cls(path, meta)
        box._lab = lab
        box._save()
        try:
            box.start_all(progress)
            box._build_replication(progress)
        except BaseException:
            with contextlib.suppress(Exception):  # no server of a half-made sandbox stays running
                box.down()
            raise
        return box

    def _save(self) -> None:
        raw = {
            "base_port": self.meta.base_port,
            "semi_sync": self.meta.semi_sync,
            "tls": self.meta.tls,
            "hosts": self.meta.hosts,
            "etcd": self.meta.etcd,
            "etcd_election_ms": self.meta.etcd_election_ms,
            "nodes": [asdict(node) for node in self.meta.nodes],
        }
        (self.dir / META_FILE).write_text(json.dumps(raw, indent=2) + "\n")

    # ---- processes ------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        return self.meta.nodes

    def node(self, index: int) -> Node:
        if not 0 <= index < len(self.nodes):
            raise SandboxError(f"no node {index}: this sandbox has nodes 0..{len(self.nodes) - 1}")
        return self.nodes[index]

    def pid(self, index: int) -> int | None:
        """The running server's pid; a stale pid file is removed."""
        pid_file = self.node(index).paths.pid_file
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if pid_alive(pid) and self._is_our_mariadbd(pid, index):
            return pid
        with contextlib.suppress(OSError):
            pid_file.unlink()
        return None

    def _is_our_mariadbd(self, pid: int, index: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self.node(index).paths.cnf) in cmdline

    def start(self, index: int, progress: Progress = _quiet) -> None:
        node = self.node(index)
        if self.pid(index) is not None:
            return
        if not self.meta.hosts and not _wait_port_free(node.port, timeout=3.0):
            raise SandboxError(
                f"port {node.port} for node {index} is taken by another process; stop it, "
                f"or recreate the sandbox with another --base-port"
            )
        progress(f"starting node {index} on {node.address}")
        log = node.paths.root / "mariadbd.stdout"
        command = [find_binary("mariadbd"), f"--defaults-file={node.paths.cnf}"]
        if self.meta.hosts:
            command = self.lab.command(node.host_name, command)
        with open(log, "ab") as out:
            subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(index)

    def _wait_ready(self, index: int) -> None:
        node = self.node(index)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with self.connect(index, connect_timeout=1):
                    return
            except pymysql.err.OperationalError:
                time.sleep(0.05)
        tail = ""
        with contextlib.suppress(OSError):
            tail = node.paths.error_log.read_text()[-1500:]
        raise SandboxError(f"node {index} did not start within {START_TIMEOUT:.0f}s; its error log ends:\n{tail}")

    def start_all(self, progress: Progress = _quiet) -> None:
        if self.meta.hosts:
            self.lab.up()
        if self.meta.etcd:
            progress(f"starting {self.meta.etcd} etcd members")
            self.etcd.start_all()
        for node in self.nodes:
            self.resume(node.index)
            self.start(node.index, progress)

    def kill(self, index: int) -> None:
        """SIGKILL: the server dies as in a crash."""
        pid = processes.send(self.pid(index), signal.SIGKILL)
        if pid is not None:
            processes.wait_exit(pid, 10)
            with contextlib.suppress(OSError):
                self.node(index).paths.pid_file.unlink()

    def stop(self, index: int, timeout: float = 60) -> None:
        """Orderly shutdown; falls back to SIGKILL if the server does not stop in time."""
        pid = self.pid(index)
        if pid is not None and not processes.terminate(pid, timeout):
            self.kill(index)

    def pause(self, index: int) -> None:
        """SIGSTOP: the server hangs, its sockets stay open."""
        if processes.send(self.pid(index), signal.SIGSTOP) is None:
            raise SandboxError(f"node {index} is not running")

    def resume(self, index: int) -> None:
        processes.send(self.pid(index), signal.SIGCONT)

    def down(self, destroy: bool = False, progress: Progress = _quiet) -> None:
        try:
            for node in self.nodes:
                if self.pid(node.index) is not None:
                    progress(f"stopping node {node.index}")
                self.stop(node.index)
            if self.meta.etcd:
                self.etcd.stop_all()
        finally:
            if self.meta.hosts and Lab.exists(self.dir):
                progress("removing the lab's namespaces, bridge, veths and firewall rules")
                self.lab.down()
        if destroy:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- SQL --------------------------------------------------------------------------------
    def connect(
        self,
        index: int,
        user: str | None = None,
        password: str = "",
        database: str | None = None,
        connect_timeout: float = 5,
        read_timeout: float | None = 30,
    ) -> pymysql.connections.Connection[Any]:
        """A PyMySQL connection: root over the unix socket by default, or `user` over TCP."""
        node = self.node(index)
        if user is None:
            return pymysql.connect(
                unix_socket=str(node.paths.socket),
                user="root",
                password="",
                database=database,
                connect_timeout=int(max(1, connect_timeout)),
                read_timeout=int(read_timeout) if read_timeout else None,
                autocommit=True,
            )
        return pymysql.connect(
            host=node.host,
            port=node.port,
            user=user,
            password=password,
            database=database,
            connect_timeout=int(max(1, connect_timeout)),
            read_timeout=int(read_timeout) if read_timeout else None,
            autocommit=True,
        )

    @contextlib.contextmanager
    def cursor(self, index: int) -> Iterator[pymysql.cursors.DictCursor]:
        with self.connect(index) as conn, conn.cursor(pymysql.cursors.DictCursor) as cur:
            yield cur

    def execute(self, index: int, *statements: str) -> list[dict[str, Any]]:
        """Run statements as root on one node; returns the last statement's rows."""
        rows: list[dict[str, Any]] = []
        with self.cursor(index) as cur:
            for sql in statements:
                cur.execute(sql)
                rows = list(cur.fetchall())
        return rows

    # ---- replication ------------------------------------------------------------------------
    def replication_sql(self, master: Node) -> list[str]:
        return [
            "STOP SLAVE",
            f"CHANGE MASTER TO MASTER_HOST='{master.host}', MASTER_PORT={master.port}, "
            f"MASTER_USER='{REPLICATION.user}', MASTER_PASSWORD='{REPLICATION.password}', "
            "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
            "START SLAVE",
        ]

    def _build_replication(self, progress: Progress) -> None:
        master, *replicas = self.nodes
        progress(f"node 0 (port {master.port}) is the master; creating accounts")
        statements = ["DELETE FROM mysql.global_priv WHERE User=''", "FLUSH PRIVILEGES"]
        for account in ACCOUNTS:
            statements += account_sql(account)
        self.execute(master.index, *statements)
        if self.meta.semi_sync:
            self.execute(master.index, "SET GLOBAL rpl_semi_sync_master_enabled = ON")
        self.execute(master.index, "SET GLOBAL read_only = OFF")
        for replica in replicas:
            progress(f"node {replica.index} (port {replica.port}) replicates from node 0")
            if self.meta.semi_sync:
                self.execute(replica.index, "SET GLOBAL rpl_semi_sync_slave_enabled = ON")
            self.execute(replica.index, *self.replication_sql(master))
        self.wait_replicas_caught_up()

    def wait_replicas_caught_up(self, timeout: float = 30, only: Collection[int] | None = None) -> None:
        """Wait until every running replica (or those among the node indexes `only`) has applied
        its master's binlog position."""
        deadline = time.monotonic() + timeout
        for node in self.nodes if only is None else [self.nodes[index] for index in only]:
            while True:
                status = self.replica_status(node.index)
                if status is None:
                    break
                master_index = self.index_of(f"{status['Master_Host']}:{status['Master_Port']}")
                if master_index is None:
                    break
                master_pos = self.execute(master_index, "SELECT @@gtid_binlog_pos AS pos")[0]["pos"]
                applied = self.execute(node.index, "SELECT @@gtid_slave_pos AS pos")[0]["pos"]
                if _gtid_covers(applied, master_pos):
                    break
                if time.monotonic() > deadline:
                    raise SandboxError(
                        f"node {node.index} did not catch up with node {master_index} in {timeout:.0f}s "
                        f"(applied {applied or 'nothing'}, master at {master_pos}; IO thread {status['Slave_IO_Running']}, "
                        f"SQL thread {status['Slave_SQL_Running']}, last error: "
                        f"{status['Last_IO_Error'] or status['Last_SQL_Error'] or 'none'}); "
                        f"see `turnout sandbox status --dir {self.dir}`"
                    )
                time.sleep(0.05)

    def reset(self) -> None:
        """Bring every server back up and replicating from node 0, the way `create` left them.

        Cheap enough to run between tests; it does not undo topology changes other than stopped
        replication threads (tests that move the master use a sandbox of their own).
        """
        self.start_all()
        master = self.nodes[0]
        self.execute(master.index, "SET GLOBAL read_only = OFF")
        for node in self.nodes[1:]:
            status = self.replica_status(node.index)
            if status is None or self.index_of(f"{status['Master_Host']}:{status['Master_Port']}") != master.index:
                self.execute(node.index, *self.replication_sql(master))
            elif status["Slave_IO_Running"] != "Yes" or status["Slave_SQL_Running"] != "Yes":
                self.execute(node.index, "START SLAVE")
            self.execute(node.index, "SET GLOBAL read_only = ON")
        self.wait_replicas_caught_up()

    def replica_status(self, index: int) -> dict[str, Any] | None:
        rows = self.execute(index, "SHOW SLAVE STATUS")
        return rows[0] if rows else None

    def index_of_port(self, port: int) -> int | None:
        """The node at `port` (single-host sandboxes; in a lab every node is at 3306: use index_of)."""
        return next((node.index for node in self.nodes if node.port == port), None)

    def index_of(self, key: str) -> int | None:
        """The node whose address is `key` ("host:port"); a single-host sandbox matches the port only."""
        host, _, port = key.rpartition(":")
        if not port.isdigit():
            return None
        if not self.meta.hosts:
            return self.index_of_port(int(port))
        return next((n.index for n in self.nodes if n.host == host and n.port == int(port)), None)

    def lab_status(self) -> dict[str, Any]:
        """A lab's hosts (address, what runs there), the partition in force, servers and etcd members."""
        servers = self.status()
        for row in servers:
            row["host"] = self.node(row["node"]).host_name
            row["address"] = self.node(row["node"]).address
        members = self.etcd.status() if self.meta.etcd else []
        return _annotate_hosts(self.lab.status(), servers, members)

    def status(self) -> list[dict[str, Any]]:
        """One row per server: process, role and replication state."""
        rows = []
        for node in self.nodes:
            row: dict[str, Any] = {
                "node": node.index,
                "port": node.port,
                "pid": self.pid(node.index),
                "state": "down",
                "role": None,
                "read_only": None,
                "replicating_from": None,
                "io_thread": None,
                "sql_thread": None,
                "gtid_position": None,
                "lag": None,
                "last_error": None,
            }
            rows.append(row)
            if row["pid"] is None:
                continue
            if process_state(row["pid"]) == "T":
                row["state"] = "paused"
                continue
            try:
                with self.connect(node.index, connect_timeout=2, read_timeout=5) as conn:
                    cur = conn.cursor(pymysql.cursors.DictCursor)
                    cur.execute("SELECT @@read_only AS ro, @@gtid_current_pos AS pos")
                    top = cur.fetchone() or {}
                    cur.execute("SHOW SLAVE STATUS")
                    replica = cur.fetchone()
            except pymysql.err.MySQLError as exc:
                row["state"] = f"unreachable: {exc.args[-1]}"
                continue
            row["state"] = "running"
            row["read_only"] = bool(top.get("ro"))
            row["gtid_position"] = top.get("pos")
            if replica:
                row["role"] = "replica"
                master_port = int(replica["Master_Port"])
                row["replicating_from"] = f"{replica['Master_Host']}:{master_port}"
                row["io_thread"] = replica["Slave_IO_Running"]
                row["sql_thread"] = replica["Slave_SQL_Running"]
                row["lag"] = replica["Seconds_Behind_Master"]
                row["last_error"] = replica["Last_IO_Error"] or replica["Last_SQL_Error"] or None
            else:
                row["role"] = "master" if not row["read_only"] else "standalone"
        return rows


def _annotate_hosts(lab_status: dict[str, Any], servers: list[dict[str, Any]],
                    members: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab's status with, on each host, the sandbox server that runs there."""
    serves: dict[str, str] = {f"node{row['node']}": f"mariadb node {row['node']} ({row['state']})" for row in servers}
    serves.update({row["host"]: f"etcd member {row['member']} ({row['state']})" for row in members})
    for host in lab_status["hosts"]:
        host["serves"] = serves.get(host["host"])
    return {**lab_status, "servers": servers, "etcd": members}


def _wait_port_free(port: int, timeout: float) -> bool:
    """A server just killed can hold its port for a moment while its last threads exit."""
    deadline = time.monotonic() + timeout
    while port_in_use(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _gtid_covers(applied: str, target: str) -> bool:
    """True when the GTID list `applied` has reached every domain's sequence in `target`."""
    have = parse_gtid_list(applied)
    return all(have.get(domain, (0, 0))[1] >= seq for domain, (_, seq) in parse_gtid_list(target).items())


def parse_gtid_list(text: str | None) -> dict[int, tuple[int, int]]:
    """MariaDB GTID list 'D-S-N,...' -> {domain: (server_id, seq_no)}."""
    result: dict[int, tuple[int, int]] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        domain, server, seq = (int(x) for x in part.split("-"))
        result[domain] = (server, seq)
    return result


def manager_credentials() -> tuple[str, str]:
    return MANAGER.user, MANAGER.password
