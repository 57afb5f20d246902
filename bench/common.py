"""Shared pieces of the benchmarks: a sandbox, turnout and HAProxy as child processes, sysbench.

Every process a benchmark starts is registered with a `Cleanup` and ended (by its own pid and
process group) on the way out, also on an exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
APP_USER = "app"
APP_PASSWORD = "app_pass"
WRITER_HOSTGROUP = 10
READER_HOSTGROUP = 20


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---- cleanup ---------------------------------------------------------------------------------


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every `finally` runs and children are ended."""
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    signal.signal(signal.SIGHUP, _sigterm_as_interrupt)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """End a child started with start_new_session=True: SIGTERM its group, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    # Workers of a multi-process proxy share the group; make sure none outlives its parent.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def child(argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[Any]]:
    """Run argv in its own session with stdout+stderr to log_path; always ended on exit."""
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env,
        )
    try:
        yield proc
    finally:
        stop_process(proc)


def raise_nofile_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- the sandbox -----------------------------------------------------------------------------


@contextlib.contextmanager
def sandbox(workdir: Path, replicas: int = 2) -> Iterator[Sandbox]:
    base = free_port_block(replicas + 1)
    log(f"starting a sandbox: 1 master + {replicas} replicas on ports {base}..{base + replicas}")
    box = Sandbox.create(workdir / "sandbox", base, replicas)
    try:
        yield box
    finally:
        log("stopping the sandbox")
        box.down(destroy=True)


def connections_by_user(box: Sandbox) -> list[dict[str, int]]:
    """Per node: connected sessions per account (information_schema.PROCESSLIST, without the
    server's own threads and the root connection asking)."""
    result = []
    for node in box.nodes:
        rows = box.execute(
            node.index,
            "SELECT USER AS user, COUNT(*) AS n FROM information_schema.PROCESSLIST "
            "WHERE ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Slave_IO', 'Slave_SQL', "
            "'Slave_worker') AND USER NOT IN ('system user', 'event_scheduler') GROUP BY USER",
        )
        result.append({row["user"]: int(row["n"]) for row in rows})
    return result


def threads_connected(box: Sandbox) -> list[int]:
    """Threads_connected on every node (includes the root connection asking)."""
    counts = []
    for node in box.nodes:
        rows = box.execute(node.index, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        counts.append(int(rows[0]["Value"]))
    return counts


def status_counters(box: Sandbox, names: Sequence[str]) -> list[dict[str, int]]:
    wanted = ",".join(f"'{name}'" for name in names)
    result = []
    for node in box.nodes:
        rows = box.execute(node.index, f"SHOW GLOBAL STATUS WHERE Variable_name IN ({wanted})")
        result.append({row["Variable_name"]: int(row["Value"]) for row in rows})
    return result


# ---- turnout ---------------------------------------------------------------------------------


def turnout_config(box: Sandbox, listen_port: int, admin_port: int, datadir: Path) -> str:
    """A proxysql.cnf-style TOML config: master in writer hostgroup 10, replicas in readers 20,
    the classic read/write split rules, the app user defaulting to the writers."""
    master, *replicas = box.nodes
    lines = [
        f'datadir = "{datadir}"',
        "",
        "[admin_variables]",
        'admin_credentials = "admin:admin"',
        f'mysql_ifaces = "127.0.0.1:{admin_port}"',
        "",
        "[mysql_variables]",
        f'interfaces = "127.0.0.1:{listen_port}"',
        'server_version = "10.11.0-MariaDB"',
        'monitor_username = "monitor"',
        'monitor_password = "monitor_pass"',
        "monitor_writer_is_also_reader = false",
        "max_connections = 20000",
        "",
        "[[mysql_replication_hostgroups]]",
        f"writer_hostgroup = {WRITER_HOSTGROUP}",
        f"reader_hostgroup = {READER_HOSTGROUP}",
        'comment = "bench"',
        "",
        "[[mysql_servers]]",
        'address = "127.0.0.1"',
        f"port = {master.port}",
        f"hostgroup = {WRITER_HOSTGROUP}",
        "max_connections = 1000",
    ]
    for replica in replicas:
        lines += [
            "",
            "[[mysql_servers]]",
            'address = "127.0.0.1"',
            f"port = {replica.port}",
            f"hostgroup = {READER_HOSTGROUP}",
            "max_connections = 1000",
        ]
    lines += [
        "",
        "[[mysql_users]]",
        f'username = "{APP_USER}"',
        f'password = "{APP_PASSWORD}"',
        f"default_hostgroup = {WRITER_HOSTGROUP}",
        "transaction_persistent = 1",
        "max_connections = 20000",
        "",
        "[[mysql_query_rules]]",
        "rule_id = 1",
        "active = 1",
        'match_digest = "^SELECT.*FOR UPDATE"',
        f"destination_hostgroup = {WRITER_HOSTGROUP}",
        "apply = 1",
        "",
        "[[mysql_query_rules]]",
        "rule_id = 2",
        "active = 1",
        'match_digest = "^SELECT"',
        f"destination_hostgroup = {READER_HOSTGROUP}",
        "apply = 1",
    ]
    return "\n".join(lines) + "\n"


def turnout_executable() -> str:
    exe = Path(sys.executable).with_name("turnout")
    return str(exe) if exe.exists() else (shutil.which("turnout") or "turnout")


def _turnout_help(*args: str) -> str:
    try:
        done = subprocess.run(
            [turnout_executable(), *args, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


@dataclass
class TurnoutCommand:
    argv: list[str]
    how: str  # "turnout proxy" or "bench runner"
    workers: int


def turnout_command(config_path: Path, workers: int, bare: bool = False) -> TurnoutCommand:
    """`turnout proxy --config FILE [--workers N]` when the installed turnout has it, else (or
    with bare=True) the benchmark's own runner: the data path alone, no admin, no monitor."""
    if not bare and re.search(r"^\s+proxy\b", _turnout_help(), re.MULTILINE):
        argv = [turnout_executable(), "proxy", "--config", str(config_path)]
        if "--workers" in _turnout_help("proxy"):
            argv += ["--workers", str(workers)]
            return TurnoutCommand(argv, "turnout proxy", workers)
        return TurnoutCommand(argv, "turnout proxy", 1)
    argv = [sys.executable, "-m", "bench.proxy_runner", str(config_path)]
    return TurnoutCommand(argv, "bench runner", 1)


def wait_for_port(port: int, proc: subprocess.Popen[Any], log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}:\n{tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    text = text.replace(str(path.parent), "<workdir>")  # the temporary directory, gone after the run
    return "\n".join(text.splitlines()[-lines:])


def _maybe_int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


@dataclass
class TurnoutProcess:
    port: int
    admin_port: int
    proc: subprocess.Popen[Any]
    log_path: Path
    command: TurnoutCommand

    def pool_stats(self) -> list[dict[str, Any]]:
        """stats_mysql_connection_pool from turnout's admin interface ([] when it has none)."""
        import pymysql

        try:
            conn = pymysql.connect(host="127.0.0.1", port=self.admin_port, user="admin", password="admin",
                                   connect_timeout=5, read_timeout=30)
        except pymysql.MySQLError:
            return []
        try:
            with conn.cursor(pymysql.cursors.DictCursor) as cur:
                cur.execute("SELECT hostgroup, srv_port, status, ConnUsed, ConnFree, ConnOK, ConnERR, MaxConnUsed, "
                            "Queries FROM stats_mysql_connection_pool ORDER BY hostgroup, srv_port")
                return [{key: _maybe_int(value) for key, value in row.items()} for row in cur.fetchall()]
        except pymysql.MySQLError:
            return []
        finally:
            conn.close()


@contextlib.contextmanager
def turnout_proxy(
    box: Sandbox, workdir: Path, workers: int = 1, bare: bool = False, source: Path | None = None, name: str = ""
) -> Iterator[TurnoutProcess]:
    """turnout in front of the sandbox as a child process (its own process group). With
    `source`, `turnout proxy` of the package in that directory (a `src` of some commit,
    interpreted), not of the installed one."""
    name = name or ("turnout-bare" if bare else "turnout")
    base = free_port_block(2)
    port, admin_port = base, base + 1
    datadir = workdir / f"{name}-data"
    datadir.mkdir(exist_ok=True)
    config_path = workdir / f"{name}.toml"
    config_path.write_text(turnout_config(box, port, admin_port, datadir))
    if source is None:
        command = turnout_command(config_path, workers, bare)
    else:
        main = "import sys; from turnout.cli import main; sys.exit(main())"
        argv = [sys.executable, "-c", main, "proxy", "--config", str(config_path)]
        command = TurnoutCommand(argv, "turnout proxy from source", 1)
    log_path = workdir / f"{name}.log"
    log(f"starting turnout ({command.how}, workers={command.workers}) on port {port}")
    path = str(BENCH_DIR.parent) if source is None else f"{source}{os.pathsep}{BENCH_DIR.parent}"
    env = dict(os.environ, PYTHONPATH=path)
    with child(command.argv, log_path, env=env) as proc:
        wait_for_port(port, proc, log_path)
        yield TurnoutProcess(port, admin_port, proc, log_path, command)


# ---- HAProxy ---------------------------------------------------------------------------------


HAPROXY_CFG = """\
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h

listen mysql
    bind 127.0.0.1:{port}
    balance roundrobin
    option tcp-smart-accept
    option tcp-smart-connect
{servers}
"""


@contextlib.contextmanager
def haproxy(backend_ports: Sequence[int], workdir: Path, name: str = "haproxy") -> Iterator[int]:
    """HAProxy in TCP mode in front of the given servers (round robin per connection); yields its port."""
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port_block(1)
    cfg = workdir / f"{name}.cfg"
    servers = "\n".join(
        f"    server s{i} 127.0.0.1:{backend} check inter 2s" for i, backend in enumerate(backend_ports)
    )
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    log_path = workdir / f"{name}.log"
    log(f"starting {name} (TCP mode) on port {port} -> {', '.join(map(str, backend_ports))}")
    with child([exe, "-f", str(cfg), "-db"], log_path) as proc:
        wait_for_port(port, proc, log_path)
        yield port


# ---- sysbench --------------------------------------------------------------------------------


@dataclass
class SysbenchResult:
    qps: float
    tps: float
    p95_ms: float
    avg_ms: float
    queries: int
    errors: int
    reconnects: int
    output: str


class SysbenchFailed(RuntimeError):
    pass


def sysbench_args(port: int, tables: int, table_size: int, threads: int) -> list[str]:
    return [
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        f"--mysql-port={port}",
        f"--mysql-user={APP_USER}",
        f"--mysql-password={APP_PASSWORD}",
        "--mysql-db=sbtest",
        f"--tables={tables}",
        f"--table-size={table_size}",
        f"--threads={threads}",
    ]


def sysbench_prepare(port: int, tables: int, table_size: int) -> None:
    cmd = ["sysbench", "oltp_read_only", *sysbench_args(port, tables, table_size, min(tables, 4)), "prepare"]
    log("sysbench prepare: " + " ".join(cmd))
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise SysbenchFailed(f"sysbench prepare failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _number(pattern: str, text: str) -> float | None:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def parse_sysbench(output: str) -> SysbenchResult:
    qps = _number(r"queries:\s+\d+\s+\(([\d.]+) per sec", output)
    tps = _number(r"transactions:\s+\d+\s+\(([\d.]+) per sec", output)
    queries = _number(r"queries:\s+(\d+)\s+\(", output)
    p95 = _number(r"95th percentile:\s+([\d.]+)", output)
    avg = _number(r"avg:\s+([\d.]+)", output)
    errors = _number(r"ignored errors:\s+(\d+)", output)
    reconnects = _number(r"reconnects:\s+(\d+)", output)
    if qps is None or p95 is None or tps is None:
        raise SysbenchFailed(f"cannot read sysbench's output:\n{output}")
    return SysbenchResult(
        qps=qps, tps=tps, p95_ms=p95, avg_ms=avg or 0.0, queries=int(queries or 0),
        errors=int(errors or 0), reconnects=int(reconnects or 0), output=output,
    )


def sysbench_run(
    workload: str, port: int, tables: int, table_size: int, threads: int, seconds: int, extra: Sequence[str] = ()
) -> SysbenchResult:
    cmd = [
        "sysbench", workload, *sysbench_args(port, tables, table_size, threads),
        f"--time={seconds}", "--db-ps-mode=auto", "--percentile=95", "--rand-type=uniform", *extra, "run",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=seconds + 120)
    except subprocess.TimeoutExpired as exc:
        streams = [s.decode(errors="replace") if isinstance(s, bytes) else (s or "") for s in (exc.stdout, exc.stderr)]
        raise SysbenchFailed(f"sysbench hung (no result {seconds + 120} s after start): {' '.join(cmd)}\n"
                             + "\n".join(streams)) from exc
    output = done.stdout + ("\n" + done.stderr if done.stderr else "")
    if done.returncode != 0:
        raise SysbenchFailed(f"sysbench exited with {done.returncode}: {' '.join(cmd)}\n{output}")
    return parse_sysbench(output)


# ---- reporting -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR, check=False
    ).stdout.strip()
    return {
        "commit": commit or None,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
