"""What applications see across repeated graceful takeovers and kill -9 of the master.

One 3-server semi-synchronous MariaDB sandbox and one `turnout up` in front of it for the whole
run; a workload of a few writers and readers through the proxy (every acknowledged write is
remembered). Then N graceful master takeovers (the master rotates among the three servers) and
N kill -9 of the master, alternating, with a few seconds of steady load between events. After a
kill the dead server is restarted, its fence lifted and made a replica of the new master again
(rebuilt from it when it holds transactions the new master never received), so every event
starts from 1 master + 2 semi-sync replicas.

Per event: the write pause (longest gap between acknowledged writes around the event), for kills
the time from the kill to the first acknowledged write, and the client errors by code. At the
end, every acknowledged write must be on the final master.

    python -m bench.switchover_pause [--takeovers 10] [--kills 10] [--steady-seconds 3]

Writes bench/results/switchover_pause.json and bench/results/switchover_pause.png (matplotlib:
`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from bench.common import (
    RESULTS_DIR,
    child,
    install_signal_handlers,
    log,
    machine,
    tail,
    workdir,
    write_json,
)
from turnout.sandbox.deploy import READER_HOSTGROUP, sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Node, Sandbox
from turnout.state.sqlite import SQLiteStateStore
from turnout.workload import TABLE, Workload, missing_writes

TAKEOVER_TARGET_S = 1.0
RECOVERY_TARGET_S = 3.0
STATE_FILE = "turnout-state.db"  # [manager] SQLite3DataFile's default, in the datadir


class BenchFailed(Exception):
    """turnout did not do what the benchmark waits for; the message says what."""


# ---- turnout's HTTP API and admin interface --------------------------------------------------


class Turnout:
    def __init__(self, proxy_port: int, admin_port: int, api_port: int, log_path: Path) -> None:
        self.proxy_port, self.admin_port, self.api_port = proxy_port, admin_port, api_port
        self.log_path = log_path

    def api(self, path: str, timeout: float = 60) -> Any:
        url = f"http://127.0.0.1:{self.api_port}/api/{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # the API answers errors with a JSON body
            body = exc.read()
            try:
                return json.loads(body)
            except ValueError:
                raise BenchFailed(f"GET {path}: HTTP {exc.code}: {body[:300]!r}") from exc

    def cluster(self) -> dict[str, Any] | None:
        try:
            clusters = self.api("clusters-info", timeout=5)
        except OSError:
            return None
        return clusters[0] if clusters else None

    def master(self) -> str | None:
        cluster = self.cluster()
        if not cluster:
            return None
        return f"{cluster['Master']['Hostname']}:{cluster['Master']['Port']}"

    def reader_status(self) -> dict[int, str]:
        """Port -> status of the servers in the reader hostgroup (runtime_mysql_servers)."""
        with pymysql.connect(host="127.0.0.1", port=self.admin_port, user="admin", password="admin",
                             connect_timeout=5, read_timeout=10) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT port, status FROM runtime_mysql_servers WHERE hostgroup_id = {READER_HOSTGROUP}")
            return {int(port): str(status) for port, status in cur.fetchall()}


def wait_until(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.02) -> float:
    """Poll `condition` until it holds; returns the time.time() it first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return time.time()
        except (OSError, pymysql.err.MySQLError):
            pass
        time.sleep(step)
    raise BenchFailed(f"timed out after {timeout:g} s waiting for {what}")


# ---- events ------------------------------------------------------------------------------------


@dataclass
class Event:
    kind: str  # "takeover" or "kill"
    number: int  # 1.. within its kind
    old_master: str
    started: float  # time.time() of the API call / the SIGKILL
    new_master: str = ""
    published: float = 0.0  # new master seen in clusters-info
    first_write: float = 0.0  # first write acknowledged after the new master was published
    pause_began: float = 0.0  # the longest gap between acknowledged writes in [started, first_write]
    resumed: float = 0.0  # ... and its end: the first write after the outage
    ended: float = 0.0  # start of the next event (errors until then belong to this one)
    write_pause_s: float = 0.0
    kill_to_first_write_s: float | None = None
    api_seconds: float | None = None
    api_message: str = ""
    errors: dict[str, int] = field(default_factory=dict)  # "write 2013" -> count, event to next event
    error_messages: list[str] = field(default_factory=list)
    rejoin: str = ""  # kills: how the dead server came back


def first_write_after(workload: Workload, since: float) -> float | None:
    later = [t for t in list(workload.counters.write_times[-5000:]) if t > since]
    return min(later) if later else None


def longest_gap(workload: Workload, start: float, end: float) -> tuple[float, float]:
    """(begin, end) of the longest gap between acknowledged writes ending in (start, end]: the same
    measure as Workload.write_pause, with its bounds. A gap may begin before `start`."""
    times = sorted(list(workload.counters.write_times))
    previous = max((t for t in times if t <= start), default=start)
    best = (previous, previous)
    for t in times:
        if t <= start:
            continue
        if t > end:
            break
        if t - previous > best[1] - best[0]:
            best = (previous, t)
        previous = t
    return best


def measure(event: Event, workload: Workload, since: float, what: str) -> None:
    """Wait for the first write acknowledged after `since` (the new master published), then take
    the event's pause as the longest gap between acknowledged writes from its start to there.

    Not simply the first write after the kill: the proxy can still relay, a few milliseconds
    after the SIGKILL, acknowledgements the dying master had sent."""
    wait_until(lambda: first_write_after(workload, since) is not None, 30, what)
    event.first_write = first_write_after(workload, since) or 0.0
    event.pause_began, event.resumed = longest_gap(workload, event.started, event.first_write)
    event.write_pause_s = event.resumed - event.pause_began


def node_of(box: Sandbox, key: str) -> Node:
    index = box.index_of_port(int(key.rsplit(":", 1)[1]))
    if index is None:
        raise BenchFailed(f"{key} is not a sandbox server")
    return box.node(index)


def settled(box: Sandbox, turnout: Turnout) -> str:
    """Wait until the cluster is stable with 3 members, both replicas replicating from the master
    and acknowledging semi-sync, and the proxy reading from both; returns the master."""
    def ready() -> bool:
        cluster = turnout.cluster()
        if not cluster or cluster["Phase"] != "stable" or len(cluster["Members"]) != 3:
            return False
        master = node_of(box, f"{cluster['Master']['Hostname']}:{cluster['Master']['Port']}")
        for node in box.nodes:
            if node.index == master.index:
                continue
            status = box.replica_status(node.index)
            if (status is None or int(status["Master_Port"]) != master.port
                    or status["Slave_IO_Running"] != "Yes" or status["Slave_SQL_Running"] != "Yes"):
                return False
        rows = box.execute(master.index, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
        if int(rows[0]["Value"]) != 2:
            return False
        readers = turnout.reader_status()
        return all(readers.get(n.port) == "ONLINE" for n in box.nodes if n.index != master.index)

    wait_until(ready, 60, "the cluster to settle (3 members, 2 semi-sync replicas, both readers ONLINE)", 0.1)
    return turnout.master() or ""


def takeover(box: Sandbox, turnout: Turnout, workload: Workload, number: int, mastered: dict[str, int]) -> Event:
    """A graceful takeover to the server that has been master the fewest times so far (the kills'
    promotions included), so the master rotates among the three."""
    old = settled(box, turnout)
    cluster = turnout.cluster() or {}
    start = node_of(box, old).index
    target = min((n for n in box.nodes if n.address != old),
                 key=lambda n: (mastered.get(n.address, 0), (n.index - start) % len(box.nodes)))
    event = Event("takeover", number, old, time.time(), new_master=target.address)
    answer = turnout.api(f"graceful-master-takeover-auto/{urllib.parse.quote(cluster['ClusterName'], safe='')}/"
                         f"127.0.0.1/{target.port}")
    event.api_seconds = time.time() - event.started
    event.api_message = str(answer.get("Message", ""))
    if answer.get("Code") != "OK":
        raise BenchFailed(f"takeover {number} {old} -> {target.address} failed: {answer}")
    returned = time.time()
    event.published = wait_until(lambda: turnout.master() == target.address, 30, f"{target.address} published")
    measure(event, workload, max(returned, event.published), "writes to resume after the takeover")
    return event


def kill(box: Sandbox, turnout: Turnout, workload: Workload, store_path: Path, number: int,
         databases: tuple[str, ...] = (TABLE.split(".")[0],)) -> Event:
    old = settled(box, turnout)
    victim = node_of(box, old)
    started = time.time()
    box.kill(victim.index)  # SIGKILL, then waits for the process to be gone
    dead = time.time()
    event = Event("kill", number, old, started)
    try:
        event.published = wait_until(lambda: turnout.master() not in (None, old), 30,
                                     f"the manager to promote a replica after the kill of {old}")
    except BenchFailed:
        raise BenchFailed(f"kill {number}: {old} killed, no new master published within 30 s") from None
    event.new_master = turnout.master() or ""
    try:
        measure(event, workload, max(dead, event.published), "writes to resume")
    except BenchFailed:
        raise BenchFailed(f"kill {number}: {event.new_master} published but no write acknowledged "
                          "within 30 s of its publication") from None
    event.kill_to_first_write_s = event.resumed - started
    cluster = turnout.cluster() or {}
    ack = turnout.api(f"ack-recovery/cluster/{urllib.parse.quote(cluster['ClusterName'], safe='')}"
                      f"?comment={urllib.parse.quote(f'benchmark kill {number}')}")
    event.api_message = str(ack.get("Message", ""))
    event.rejoin = rejoin(box, victim, node_of(box, event.new_master), store_path, databases)
    return event


# ---- bringing a killed master back as a replica -------------------------------------------------


def rejoin(box: Sandbox, node: Node, master: Node, store_path: Path,
           databases: tuple[str, ...] = (TABLE.split(".")[0],)) -> str:
    """Restart a killed (and fenced) master, make it a semi-sync replica of `master` (rebuilt from
    it if it holds transactions `master` never received), then lift its fence. Returns how."""
    box.start(node.index)
    box.execute(node.index, "SET GLOBAL read_only = ON", "STOP SLAVE", "RESET SLAVE ALL",
                "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos",
                "SET GLOBAL rpl_semi_sync_master_enabled = OFF", "SET GLOBAL rpl_semi_sync_slave_enabled = ON")
    box.execute(node.index, *box.replication_sql(master))
    how = "re-pointed"
    diverged = _replication_refused(box, node)
    if diverged:
        how = f"rebuilt from {master.address} (its binlog had transactions the new master never got: {diverged})"
        _rebuild(box, node, master, databases)
    box.wait_replicas_caught_up(timeout=60)
    asyncio.run(_unfence(store_path, node.address))
    return how


def _replication_refused(box: Sandbox, node: Node, timeout: float = 5.0) -> str:
    """'' once both replication threads run, else the IO error (e.g. 1236, diverged history)."""
    deadline = time.monotonic() + timeout
    while True:
        status = box.replica_status(node.index) or {}
        if int(status.get("Last_IO_Errno") or 0):
            return f"{status['Last_IO_Errno']} {status.get('Last_IO_Error', '')}".strip()
        if status.get("Slave_IO_Running") == "Yes" and status.get("Slave_SQL_Running") == "Yes" and \
                (status.get("Slave_SQL_Running_State") or "").startswith("Slave has read all relay log"):
            return ""
        if int(status.get("Last_SQL_Errno") or 0):
            raise BenchFailed(f"{node.address} replicating from its new master: SQL error "
                              f"{status['Last_SQL_Errno']} {status.get('Last_SQL_Error', '')}")
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.05)


def _rebuild(box: Sandbox, node: Node, master: Node, databases: tuple[str, ...]) -> None:
    """The workload's schema copied from `master` at a consistent point, the binlog reset, and
    replication started from that point's GTID."""
    dump = subprocess.run(
        ["mariadb-dump", f"--socket={master.paths.socket}", "-uroot", "--single-transaction", "--gtid",
         "--master-data=2", "--add-drop-database", "--databases", *databases],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout
    gtid = next(line.split("'")[1] for line in dump.splitlines() if "SET GLOBAL gtid_slave_pos" in line)
    box.execute(node.index, "STOP SLAVE", "RESET SLAVE ALL")
    subprocess.run(
        ["mariadb", f"--socket={node.paths.socket}", "-uroot", "--init-command=SET SESSION sql_log_bin = 0"],
        input=dump, text=True, capture_output=True, check=True, timeout=300,
    )
    box.execute(node.index, "RESET MASTER", f"SET GLOBAL gtid_slave_pos = '{gtid}'", *box.replication_sql(master))
    if _replication_refused(box, node):
        raise BenchFailed(f"{node.address} still cannot replicate from {master.address} after a rebuild: "
                          f"{box.replica_status(node.index)}")


async def _unfence(store_path: Path, key: str) -> None:
    store = SQLiteStateStore(store_path)
    try:
        fences = {f.key for f in await store.fenced()}
        if key not in fences:
            raise BenchFailed(f"{key} was not fenced after its kill (fences: {sorted(fences) or 'none'})")
        await store.unfence(key)
    finally:
        await store.close()


# ---- reporting ---------------------------------------------------------------------------------


def attribute_errors(events: list[Event], workload: Workload) -> None:
    for event in events:
        counts: collections.Counter[str] = collections.Counter()
        messages = set()
        for error in workload.errors_between(event.started, event.ended):
            counts[f"{error.kind} {error.code}"] += 1
            messages.add(f"{error.kind} {error.code} {error.message}")
        event.errors = dict(sorted(counts.items()))
        event.error_messages = sorted(messages)[:5]


def summary(events: list[Event]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for kind in ("takeover", "kill"):
        chosen = [e for e in events if e.kind == kind]
        if not chosen:
            continue
        pauses = [e.write_pause_s for e in chosen]
        errors = sum(sum(e.errors.values()) for e in chosen)
        entry: dict[str, Any] = {
            "events": len(chosen),
            "write_pause_p50_s": statistics.median(pauses), "write_pause_max_s": max(pauses),
            "client_errors": errors,
            "client_errors_by_code": dict(sum((collections.Counter(e.errors) for e in chosen), collections.Counter())),
        }
        if kind == "takeover":
            entry["target"] = f"write pause < {TAKEOVER_TARGET_S:g} s and 0 client errors"
            entry["target_met"] = max(pauses) < TAKEOVER_TARGET_S and errors == 0
        else:
            recovery = [e.kill_to_first_write_s or 0.0 for e in chosen]
            entry["kill_to_first_write_p50_s"] = statistics.median(recovery)
            entry["kill_to_first_write_max_s"] = max(recovery)
            entry["target"] = f"kill -> first acknowledged write < {RECOVERY_TARGET_S:g} s"
            entry["target_met"] = max(recovery) < RECOVERY_TARGET_S
        result[kind] = entry
    return result


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{n}x {code}" for code, n in errors.items()) or "0"


def print_table(events: list[Event], totals: dict[str, Any]) -> None:
    print()
    print(f"{'event':<12} {'from':>16} {'to':>16} {'published':>10} {'write pause':>12} {'kill->write':>12}"
          "  client errors")
    for e in events:
        recovery = f"{e.kill_to_first_write_s * 1000:.0f} ms" if e.kill_to_first_write_s is not None else "-"
        print(f"{e.kind + ' ' + str(e.number):<12} {e.old_master:>16} {e.new_master:>16} "
              f"{(e.published - e.started) * 1000:>7.0f} ms "
              f"{e.write_pause_s * 1000:>9.0f} ms {recovery:>12}  {_errors_text(e.errors)}")
    print()
    for kind, entry in totals["summary"].items():
        line = (f"{kind:<9} x{entry['events']}: write pause p50 {entry['write_pause_p50_s'] * 1000:.0f} ms, "
                f"max {entry['write_pause_max_s'] * 1000:.0f} ms")
        if kind == "kill":
            line += (f"; kill -> first write p50 {entry['kill_to_first_write_p50_s'] * 1000:.0f} ms, "
                     f"max {entry['kill_to_first_write_max_s'] * 1000:.0f} ms")
        line += f"; client errors {entry['client_errors']} {entry['client_errors_by_code'] or ''}"
        line += f"; target ({entry['target']}) {'met' if entry['target_met'] else 'NOT met'}"
        print(line)
    print(f"writes acknowledged {totals['writes']}, reads {totals['reads']}, client errors {totals['errors']}, "
          f"acknowledged writes missing on the final master {totals['missing']}")


def plot(events: list[Event], path: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no plot")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    styles = {"takeover": ("graceful master takeover", "o", "tab:blue"), "kill": ("kill -9 of the master", "s", "tab:red")}
    for kind, (label, marker, color) in styles.items():
        chosen = [e for e in events if e.kind == kind]
        if chosen:
            ax.plot([e.number for e in chosen], [e.write_pause_s * 1000 for e in chosen], marker=marker,
                    color=color, label=f"{label}: write pause")
    ax.axhline(TAKEOVER_TARGET_S * 1000, color="tab:blue", linestyle="--", linewidth=0.8,
               label=f"takeover target {TAKEOVER_TARGET_S:g} s")
    ax.axhline(RECOVERY_TARGET_S * 1000, color="tab:red", linestyle="--", linewidth=0.8,
               label=f"recovery target {RECOVERY_TARGET_S:g} s")
    ax.set_xlabel("event")
    ax.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_xticks(sorted({e.number for e in events}))
    ax.set_title("turnout: write pause per event (3-server semi-sync MariaDB sandbox)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# ---- the run -----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    events: list[Event] = []
    with workdir("turnout-switchover-") as tmp:
        base = free_port_block(3)
        log(f"starting a 3-server semi-sync sandbox on ports {base}..{base + 2}")
        box = Sandbox.create(tmp / "sandbox", base, 2, semi_sync=True)
        workload: Workload | None = None
        turnout: Turnout | None = None
        try:
            ports = free_port_block(3)
            datadir = tmp / "data"
            config = tmp / "turnout.toml"
            config.write_text(sandbox_config(box, datadir, ports, ports + 1, api_port=ports + 2,
                                               monitor_interval_ms=args.monitor_interval_ms))
            turnout = Turnout(ports, ports + 1, ports + 2, tmp / "turnout.log")
            log(f"starting turnout up: proxy {ports}, admin {ports + 1}, API {ports + 2}")
            with child([sys.executable, "-m", "turnout.cli", "up", "--config", str(config)], turnout.log_path) as proc:
                wait_until(lambda: proc.poll() is None and turnout.master() is not None, 30,
                           "the manager to discover the sandbox", 0.1)
                workload = Workload(ports, writers=args.writers, readers=args.readers)
                wait_until(lambda: _schema(workload), 30, "the proxy to accept writes", 0.1)
                workload.start()
                log(f"workload: {args.writers} writers, {args.readers} readers; {args.steady_seconds:g} s of steady load")
                time.sleep(args.steady_seconds)
                plan = _plan(args.takeovers, args.kills)
                mastered = {turnout.master() or "": 1}
                for kind, number in plan:
                    if proc.poll() is not None:
                        raise BenchFailed(f"turnout exited with {proc.returncode}")
                    if kind == "takeover":
                        event = takeover(box, turnout, workload, number, mastered)
                    else:
                        event = kill(box, turnout, workload, datadir / STATE_FILE, number)
                    mastered[event.new_master] = mastered.get(event.new_master, 0) + 1
                    if events:
                        events[-1].ended = event.started
                    events.append(event)
                    recovery = (f", kill -> first write {event.kill_to_first_write_s * 1000:.0f} ms"
                                if event.kill_to_first_write_s is not None else "")
                    log(f"{kind} {number}: {event.old_master} -> {event.new_master}, published after "
                        f"{(event.published - event.started) * 1000:.0f} ms, "
                        f"write pause {event.write_pause_s * 1000:.0f} ms"
                        f"{recovery}{'; ' + event.rejoin if event.rejoin else ''}")
                    time.sleep(args.steady_seconds)
                final_master = settled(box, turnout)
                end = time.time()
                if events:
                    events[-1].ended = end
                workload.stop()
                attribute_errors(events, workload)
                master_node = node_of(box, final_master)
                box.wait_replicas_caught_up()
                rows = box.execute(master_node.index, f"SELECT writer, seq FROM {TABLE}")
                counters = workload.counters
                missing = missing_writes(counters.acknowledged, [(r["writer"], r["seq"]) for r in rows])
                totals: dict[str, Any] = {
                    "writes": counters.writes, "reads": counters.reads, "errors": len(counters.errors),
                    "missing": len(missing), "final_master": final_master,
                    "times_master": dict(sorted(mastered.items())),
                    "errors_outside_events": len(workload.errors_between(0, events[0].started)) if events else 0,
                    "summary": summary(events),
                }
        except BaseException:
            if turnout is not None:
                log(f"turnout log (last lines):\n{tail(turnout.log_path, 60)}")
            raise
        finally:
            if workload is not None:
                workload.stop()
            log("stopping the sandbox")
            box.down(destroy=True)

    print_table(events, totals)
    data = {
        "benchmark": "switchover_pause",
        "machine": machine(),
        "settings": {"takeovers": args.takeovers, "kills": args.kills, "steady_seconds": args.steady_seconds,
                     "writers": args.writers, "readers": args.readers, "semi_sync": True,
                     "InstancePollSeconds": 1, "RecoveryPeriodBlockSeconds": 1, "monitor_interval_ms": args.monitor_interval_ms},
        **totals,
        "events": [_event_json(e) for e in events],
    }
    out = write_json(args.out_dir / "switchover_pause.json", data)
    log(f"wrote {out}")
    image = plot(events, args.out_dir / "switchover_pause.png")
    if image is not None:
        log(f"wrote {image}")
    return 0 if totals["missing"] == 0 else 1


def _event_json(event: Event) -> dict[str, Any]:
    data = asdict(event)
    data["published_after_s"] = round(event.published - event.started, 4)
    for name in ("write_pause_s", "kill_to_first_write_s", "api_seconds"):
        if data[name] is not None:
            data[name] = round(data[name], 4)
    for name in ("started", "published", "first_write", "pause_began", "resumed", "ended"):
        data[name] = round(data[name], 3)
    return data


def _schema(workload: Workload) -> bool:
    try:
        workload.create_schema()
    except pymysql.err.MySQLError:
        return False
    return True


def _plan(takeovers: int, kills: int) -> list[tuple[str, int]]:
    """Takeovers and kills alternating (the longer list finishes the run)."""
    plan = []
    for i in range(max(takeovers, kills)):
        if i < takeovers:
            plan.append(("takeover", i + 1))
        if i < kills:
            plan.append(("kill", i + 1))
    return plan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--takeovers", type=int, default=10)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--steady-seconds", type=float, default=3.0, help="steady load between events")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--monitor-interval-ms", type=int, default=500,
                        help="the proxy's ping / read_only / lag check interval (the sandbox config's default)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    return run_bench(run, parser.parse_args())


def run_bench(body: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """`body(args)` with SIGTERM as an interrupt: 2 when the benchmark failed, 130 when interrupted."""
    install_signal_handlers()
    try:
        return body(args)
    except BenchFailed as exc:
        log(f"FAILED: {exc}")
        return 2
    except KeyboardInterrupt:
        log("interrupted; everything the benchmark started is stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
