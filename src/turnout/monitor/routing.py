"""Which servers are in force, where, and in what state: one pure function of config and health.

`effective_servers` turns the configured mysql_servers, the replication hostgroups and the latest
health into the rows of runtime_mysql_servers. ProxySQL's documented replication hostgroup
semantics, plus turnout's fixes:

Placement (per replication hostgroup pair W/R; only servers configured in W or R take part)
  - read_only=OFF: in W, and in R too when mysql-monitor_writer_is_also_reader is true (default).
  - read_only=ON: in R only.
  - read_only never seen yet: rows stay as configured (ProxySQL), except in managed mode, where
    nothing but a published master that reports read_only=OFF takes writes.
  - A new row copies the server's configured row (weight, status, max_replication_lag, ...).
  - Servers in hostgroups outside every pair stay as configured; health still shuns them.

Status, first reason wins
  0. fenced by the manager (`fences`: a failed master, in the state store until `turnout unfence`)
     -> OFFLINE_HARD in every hostgroup it is configured in, whatever it reports: rebuilt as a
     healthy read_only replica or not, it serves neither writes nor reads until unfenced.
  1. fenced (managed mode: read_only=OFF but not the published master; keep-current: the other
     writers) -> OFFLINE_HARD, in W and in R: a possibly diverged server serves nothing.
  2. OFFLINE_SOFT / OFFLINE_HARD set by the operator stay.
  3. health: a failed connect, mysql-monitor_ping_max_failures consecutive failed pings, or (for
     servers in a pair) mysql-monitor_read_only_max_timeout_count failed read_only checks
     -> SHUNNED. Recovery brings the server back.
  4. two writers, mode refuse -> the W rows are SHUNNED and `write_blocked[W]` holds the error
     message the proxy answers writes with. Reads continue on R.
  5. readers (read_only=ON rows in R):
     - stale-read protection (per pair, on by default): a server that does not replicate (none
       configured, IO or SQL thread not running, replication error) or whose replication state is
       unknown is SHUNNED, with the reason in the comment. A NULL Seconds_Behind_Master never
       counts as "no lag".
     - max_replication_lag > 0: lag above it -> SHUNNED until lag <= max_replication_lag.
     - max_replication_lag = 0 with protection on: a reader that was out of traffic in the
       previous snapshot (or when there is no previous snapshot) returns only once its lag is 0,
       i.e. it has caught up; a reader already serving is not shunned for lag (ProxySQL's "0
       disables the lag check"). Pass the previous snapshot, or use `RoutingTable`.
     - protection off: ProxySQL's behaviour, a NULL lag counts as mysql-monitor_slave_lag_when_null.
  6. otherwise ONLINE.

No reader left: when R has no ONLINE row and W has exactly one ONLINE writer that is not
write-blocked, the writer serves the reads (ProxySQL's fallback; with writer_is_also_reader it is
already in R). The writer always has the newest data, so this never serves stale reads. A stale
or lagging replica is never used as a fallback; with no writer either, R is empty and reads fail.

Two writers (more than one live server of a pair reporting read_only=OFF; servers that fail their
health checks are not counted): mode "refuse" (default) blocks writes as above; mode
"keep-current" keeps writing to the writer of the previous snapshot and fences the others, and
falls back to refuse when there is no previous writer among them. Writes resume by themselves
once exactly one writer is left.

Managed mode (`published_masters[W]` given): the writer of W is the published master, only while
it reports read_only=OFF; every other read_only=OFF server of the pair is fenced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.monitor.health import Address, HealthSnapshot, ServerHealth
from turnout.monitor.settings import MonitorSettings

ONLINE = "ONLINE"
SHUNNED = "SHUNNED"
OFFLINE_SOFT = "OFFLINE_SOFT"
OFFLINE_HARD = "OFFLINE_HARD"
OPERATOR_STATUSES = (OFFLINE_SOFT, OFFLINE_HARD)

REFUSE = "refuse"
KEEP_CURRENT = "keep-current"
FENCED = "fenced"


@dataclass(frozen=True)
class WriterConflict:
    """More than one server of a pair reports read_only=OFF, and what turnout did about it."""

    writer_hostgroup: int
    reader_hostgroup: int
    servers: tuple[Address, ...]  # the servers reporting read_only=OFF
    action: str  # REFUSE, KEEP_CURRENT or FENCED (managed mode)
    writer: Address | None  # the server still taking writes, if any
    message: str


def _no_blocks() -> Mapping[int, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class RoutingSnapshot:
    """runtime_mysql_servers as in force, and the write guard, for one config and health version."""

    servers: tuple[MysqlServer, ...] = ()
    write_blocked: Mapping[int, str] = field(default_factory=_no_blocks)
    conflicts: tuple[WriterConflict, ...] = ()
    # (reader hostgroup, address) of read_only=ON servers kept out of reads; they must catch up
    # before they return (see the module docstring).
    held_out: frozenset[tuple[int, Address]] = frozenset()
    config_version: int = 0
    health_version: int = 0

    def rows(self, hostgroup: int) -> tuple[MysqlServer, ...]:
        return tuple(s for s in self.servers if s.hostgroup_id == hostgroup)

    def online(self, hostgroup: int) -> tuple[MysqlServer, ...]:
        return tuple(s for s in self.servers if s.hostgroup_id == hostgroup and s.status == ONLINE)

    def writer(self, hostgroup: int) -> Address | None:
        """The one ONLINE server of a hostgroup, or None when there are none or several."""
        online = self.online(hostgroup)
        return online[0].address if len(online) == 1 else None


def effective_servers(
    config: RuntimeConfig,
    health: HealthSnapshot,
    published_masters: Mapping[int, tuple[str, int]] | None = None,
    previous: RoutingSnapshot | None = None,
    fences: Mapping[Address, str] | None = None,
) -> RoutingSnapshot:
    """`fences`: the manager's fenced servers and why (the state store's fences)."""
    settings = MonitorSettings.from_config(config)
    fences = fences or {}
    pairs = _pairs(config.replication_hostgroups)
    paired = {hg for pair in pairs for hg in (pair.writer_hostgroup, pair.reader_hostgroup)}
    order = _address_order(config.servers)
    rows: list[MysqlServer] = []
    blocked: dict[int, str] = {}
    conflicts: list[WriterConflict] = []
    held_out: set[tuple[int, Address]] = set()

    for row in config.servers:
        if row.address in fences:
            rows.append(_fenced_row(row, fences[row.address]))
        elif row.hostgroup_id not in paired:
            rows.append(_unpaired_row(row, health.get(row.address), settings))
    for pair in pairs:
        hgs = (pair.writer_hostgroup, pair.reader_hostgroup)
        members = [s for s in config.servers if s.hostgroup_id in hgs and s.address not in fences]
        master = (published_masters or {}).get(pair.writer_hostgroup)
        result = _route_pair(pair, members, health, settings, master, previous)
        rows += result.rows
        if result.blocked is not None:
            blocked[pair.writer_hostgroup] = result.blocked
        if result.conflict is not None:
            conflicts.append(result.conflict)
        held_out |= result.held_out

    rows.sort(key=lambda s: (s.hostgroup_id, order[s.address]))
    return RoutingSnapshot(
        servers=tuple(rows),
        write_blocked=MappingProxyType(blocked),
        conflicts=tuple(conflicts),
        held_out=frozenset(held_out),
        config_version=config.version,
        health_version=health.version,
    )


class RoutingTable:
    """Keeps the previous snapshot for `effective_servers` (hysteresis, keep-current)."""

    def __init__(self) -> None:
        self.snapshot: RoutingSnapshot | None = None

    def update(
        self,
        config: RuntimeConfig,
        health: HealthSnapshot,
        published_masters: Mapping[int, tuple[str, int]] | None = None,
        fences: Mapping[Address, str] | None = None,
    ) -> RoutingSnapshot:
        self.snapshot = effective_servers(config, health, published_masters, self.snapshot, fences)
        return self.snapshot


# ---- helpers ---------------------------------------------------------------------------------


def _pairs(groups: Iterable[ReplicationHostgroup]) -> list[ReplicationHostgroup]:
    """Pairs in config order; a pair reusing a hostgroup of an earlier pair is ignored."""
    seen: set[int] = set()
    result = []
    for pair in groups:
        hgs = {pair.writer_hostgroup, pair.reader_hostgroup}
        if len(hgs) < 2 or hgs & seen:
            continue
        seen |= hgs
        result.append(pair)
    return result


def _address_order(servers: Iterable[MysqlServer]) -> dict[Address, int]:
    order: dict[Address, int] = {}
    for server in servers:
        order.setdefault(server.address, len(order))
    return order


def _fmt(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def _with(row: MysqlServer, status: str, reason: str | None) -> MysqlServer:
    if reason is None:
        return replace(row, status=status)
    comment = f"{row.comment}; {reason}" if row.comment else reason
    return replace(row, status=status, comment=comment)


def health_problem(health: ServerHealth | None, settings: MonitorSettings, paired: bool) -> str | None:
    """Why a server's health checks say it must not get traffic, or None."""
    if health is None:
        return None
    if health.connect_ok is False:
        return f"turnout: connect failed ({health.connect_error})"
    if health.ping_failures >= settings.ping_max_failures:
        return f"turnout: {health.ping_failures} consecutive pings failed ({health.ping_error})"
    if paired and health.read_only_failures >= settings.read_only_max_timeout_count:
        return f"turnout: {health.read_only_failures} read_only checks failed ({health.read_only_error})"
    return None


def _proxysql_lag_problem(
    row: MysqlServer, health: ServerHealth | None, settings: MonitorSettings
) -> str | None:
    if row.max_replication_lag <= 0 or health is None or health.replication is None:
        return None
    repl = health.replication
    if not repl.configured:
        return None
    lag = repl.seconds_behind_master
    effective = settings.slave_lag_when_null if lag is None else lag
    if effective > row.max_replication_lag:
        shown = "NULL" if lag is None else f"{lag}s"
        return f"turnout: replication lag {shown} > max_replication_lag {row.max_replication_lag}s"
    return None


def reader_problem(
    row: MysqlServer,
    health: ServerHealth | None,
    protect: bool,
    settings: MonitorSettings,
    was_held_out: bool,
) -> str | None:
    """Why a read_only=ON server must not serve reads (stale-read protection and lag), or None."""
    if not protect:
        return _proxysql_lag_problem(row, health, settings)
    repl = None if health is None else health.replication
    if health is None or repl is None or health.replication_failures >= settings.read_only_max_timeout_count:
        detail = "" if health is None or not health.replication_error else f": {health.replication_error}"
        return f"turnout: read_only=ON, replication state unknown{detail}"
    reason = repl.not_replicating_reason()
    if reason is not None:
        return f"turnout: read_only=ON and not replicating ({reason})"
    lag = repl.seconds_behind_master
    if lag is None:
        return "turnout: read_only=ON, replication lag unknown (NULL)"
    if row.max_replication_lag > 0 and lag > row.max_replication_lag:
        return f"turnout: replication lag {lag}s > max_replication_lag {row.max_replication_lag}s"
    if row.max_replication_lag == 0 and was_held_out and lag > 0:
        return f"turnout: catching up, replication lag {lag}s"
    return None


def _fenced_row(row: MysqlServer, reason: str) -> MysqlServer:
    detail = f" ({reason})" if reason else ""
    return _with(row, OFFLINE_HARD, f"turnout: fenced by the manager{detail}; `turnout unfence` lifts it")


def _unpaired_row(row: MysqlServer, health: ServerHealth | None, settings: MonitorSettings) -> MysqlServer:
    if row.status in OPERATOR_STATUSES:
        return row
    problem = health_problem(health, settings, paired=False) or _proxysql_lag_problem(row, health, settings)
    if problem is not None:
        return _with(row, SHUNNED, problem)
    return _with(row, ONLINE, None)


@dataclass
class _PairResult:
    rows: list[MysqlServer]
    blocked: str | None
    conflict: WriterConflict | None
    held_out: set[tuple[int, Address]]


def _route_pair(
    pair: ReplicationHostgroup,
    members: list[MysqlServer],
    health: HealthSnapshot,
    settings: MonitorSettings,
    master: Address | None,
    previous: RoutingSnapshot | None,
) -> _PairResult:
    w, r = pair.writer_hostgroup, pair.reader_hostgroup
    configured: dict[Address, dict[int, MysqlServer]] = {}
    for row in members:
        configured.setdefault(row.address, {})[row.hostgroup_id] = row
    problems = {a: health_problem(health.get(a), settings, paired=True) for a in configured}

    def read_only(address: Address) -> bool | None:
        h = health.get(address)
        return None if h is None else h.read_only

    candidates = [a for a in configured if read_only(a) is False]
    live = [a for a in candidates if problems[a] is None]

    # Who writes, who is fenced, and whether writes are refused.
    writers: list[Address] = candidates
    fenced: dict[Address, str] = {}
    blocked: str | None = None
    conflict: WriterConflict | None = None
    if master is not None:
        writers = [master] if master in candidates else []
        others = [a for a in candidates if a != master]
        for address in others:
            fenced[address] = "turnout: fenced, read_only=OFF but not the published master"
        if others:
            conflict = WriterConflict(
                w,
                r,
                tuple(sorted(candidates)),
                FENCED,
                writers[0] if writers else None,
                f"turnout: fenced {', '.join(_fmt(a) for a in sorted(others))} in writer hostgroup {w}: "
                f"read_only=OFF but the published master is {_fmt(master)}",
            )
    elif len(live) > 1:
        current = previous.writer(w) if previous is not None else None
        names = ", ".join(_fmt(a) for a in sorted(live))
        if pair.two_writer_mode == KEEP_CURRENT and current in live:
            assert current is not None
            writers = [a for a in candidates if a not in live or a == current]
            for address in live:
                if address != current:
                    fenced[address] = (
                        f"turnout: second writer, read_only=OFF; writes stay on {_fmt(current)} "
                        "(two_writer_mode=keep-current)"
                    )
            conflict = WriterConflict(
                w,
                r,
                tuple(sorted(live)),
                KEEP_CURRENT,
                current,
                f"turnout: {len(live)} servers report read_only=OFF in writer hostgroup {w}: {names}; "
                f"writes stay on {_fmt(current)}",
            )
        else:
            blocked = (
                f"turnout: writes refused, {len(live)} servers report read_only=OFF "
                f"in writer hostgroup {w}: {names}"
            )
            conflict = WriterConflict(w, r, tuple(sorted(live)), REFUSE, None, blocked)

    rows: list[MysqlServer] = []
    held_out: set[tuple[int, Address]] = set()
    for address, own in configured.items():
        template_w = own.get(w) or own[r]
        template_r = own.get(r) or own[w]
        ro = read_only(address)
        problem = problems[address]
        if address in fenced:
            rows.append(_with(replace(template_w, hostgroup_id=w), OFFLINE_HARD, fenced[address]))
            if settings.writer_is_also_reader:
                rows.append(_with(replace(template_r, hostgroup_id=r), OFFLINE_HARD, fenced[address]))
            continue
        if ro is None:
            rows += _unknown_rows(own, w, master, problem, blocked)
            continue
        if ro is False:
            in_w = replace(template_w, hostgroup_id=w)
            if address not in writers:  # managed mode: read_only=OFF is not enough
                rows.append(_with(in_w, SHUNNED, "turnout: not the published master"))
            else:
                rows.append(_status(in_w, problem, blocked))
            if settings.writer_is_also_reader:
                in_r = replace(template_r, hostgroup_id=r)
                rows.append(_status(in_r, problem, None))
            continue
        in_r = replace(template_r, hostgroup_id=r)
        was_held_out = previous is None or (r, address) in previous.held_out
        protect = bool(pair.stale_read_protection)
        why = reader_problem(in_r, health.get(address), protect, settings, was_held_out)
        reader = _status(in_r, problem, why)
        if reader.status != ONLINE:
            held_out.add((r, address))
        rows.append(reader)

    rows += _fallback_reader(rows, w, r, blocked)
    return _PairResult(rows, blocked, conflict, held_out)


def _status(row: MysqlServer, problem: str | None, extra: str | None) -> MysqlServer:
    if row.status in OPERATOR_STATUSES:
        return row
    reason = problem or extra
    return _with(row, SHUNNED if reason else ONLINE, reason)


def _unknown_rows(
    own: dict[int, MysqlServer], w: int, master: Address | None, problem: str | None, blocked: str | None
) -> list[MysqlServer]:
    rows = []
    for hg, row in own.items():
        if hg == w and master is not None:
            reason = (
                "turnout: read_only not known yet"
                if row.address == master
                else "turnout: not the published master"
            )
            rows.append(row if row.status in OPERATOR_STATUSES else _with(row, SHUNNED, problem or reason))
        else:
            rows.append(_status(row, problem, blocked if hg == w else None))
    return rows


def _fallback_reader(rows: list[MysqlServer], w: int, r: int, blocked: str | None) -> list[MysqlServer]:
    if blocked is not None or any(s.hostgroup_id == r and s.status == ONLINE for s in rows):
        return []
    writers = [s for s in rows if s.hostgroup_id == w and s.status == ONLINE]
    if len(writers) != 1:
        return []
    writer = writers[0]
    if any(s.hostgroup_id == r and s.address == writer.address for s in rows):
        return []  # the operator took the writer out of the readers
    return [_with(replace(writer, hostgroup_id=r), ONLINE, "turnout: writer serving reads, no reader left")]
