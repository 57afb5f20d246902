"""effective_servers: replication hostgroups, stale-read protection, two-writer guard, managed mode."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import pytest

from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.monitor.health import Address, HealthSnapshot, ReplicationStatus, ServerHealth
from turnout.monitor.routing import RoutingSnapshot, RoutingTable, effective_servers

HOSTS = {"A": ("10.0.0.1", 3306), "B": ("10.0.0.2", 3306), "C": ("10.0.0.3", 3306), "D": ("10.0.0.4", 3306)}
NAMES = {address: name for name, address in HOSTS.items()}


def row(hg: int, name: str, **kw: Any) -> MysqlServer:
    host, port = HOSTS[name]
    return MysqlServer(hostgroup_id=hg, hostname=host, port=port, **kw)


def repl(
    io: str = "Yes",
    sql: str = "Yes",
    lag: int | None = 0,
    master: str = "A",
    io_err: str = "",
    sql_err: str = "",
) -> ReplicationStatus:
    host, port = HOSTS[master]
    return ReplicationStatus(
        configured=True,
        io_running=io,
        sql_running=sql,
        last_io_error=io_err,
        last_sql_error=sql_err,
        seconds_behind_master=lag,
        master_host=host,
        master_port=port,
    )


NO_REPL = ReplicationStatus(configured=False)


def ok(
    name: str, read_only: bool, replication: ReplicationStatus | None = NO_REPL, **kw: Any
) -> ServerHealth:
    return ServerHealth(
        address=HOSTS[name], connect_ok=True, ping_ok=True, read_only=read_only, replication=replication, **kw
    )


def writer(name: str) -> ServerHealth:
    return ok(name, False)


def replica(name: str, **kw: Any) -> ServerHealth:
    return ok(name, True, repl(**kw))


def snapshot(*servers: ServerHealth) -> HealthSnapshot:
    return HealthSnapshot(7, MappingProxyType({s.address: s for s in servers}))


STANDARD = (row(10, "A"), row(20, "B"), row(20, "C"))
PAIR = ReplicationHostgroup(10, 20)


def config(
    servers: tuple[MysqlServer, ...] = STANDARD,
    pairs: tuple[ReplicationHostgroup, ...] = (PAIR,),
    **variables: str,
) -> RuntimeConfig:
    return RuntimeConfig(
        version=3,
        servers=servers,
        replication_hostgroups=pairs,
        variables=MappingProxyType({f"mysql-monitor_{k}": v for k, v in variables.items()}),
    )


def summary(snap: RoutingSnapshot) -> list[str]:
    return [f"{s.hostgroup_id} {NAMES[s.address]} {s.status}" for s in snap.servers]


def comments(snap: RoutingSnapshot) -> dict[str, str]:
    return {f"{s.hostgroup_id} {NAMES[s.address]}": s.comment for s in snap.servers if s.comment}


@dataclass
class Case:
    id: str
    health: tuple[ServerHealth, ...]
    expected: list[str]
    config: RuntimeConfig = field(default_factory=config)
    masters: dict[int, Address] | None = None
    previous: RoutingSnapshot | None = None
    comments: dict[str, str] = field(default_factory=dict)  # "hg NAME" -> substring of the comment
    blocked: dict[int, str] = field(default_factory=dict)  # writer hg -> substring of the message
    fences: dict[Address, str] | None = None  # the manager's fences (state store)


def prev(*rows: str, held_out: tuple[tuple[int, str], ...] = ()) -> RoutingSnapshot:
    """A previous snapshot from 'hg NAME STATUS' strings."""
    servers = []
    for text in rows:
        hg, name, status = text.split()
        servers.append(row(int(hg), name, status=status))
    return RoutingSnapshot(
        servers=tuple(servers), held_out=frozenset((hg, HOSTS[name]) for hg, name in held_out)
    )


SERVING = prev("10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE")

CASES = [
    # ---- placement by read_only ----------------------------------------------------------------
    Case(
        "healthy: writer also reader by default",
        (writer("A"), replica("B"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
    ),
    Case(
        "writer_is_also_reader=false keeps the writer out of the readers",
        (writer("A"), replica("B"), replica("C")),
        ["10 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        config=config(writer_is_also_reader="false"),
    ),
    Case(
        "read_only=OFF server configured only as reader moves to the writer hostgroup",
        (writer("A"), replica("B")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(20, "A"), row(20, "B"))),
    ),
    Case(
        "read_only=ON server configured as writer moves to the readers",
        (replica("A", master="B"), writer("B")),
        ["10 B ONLINE", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(10, "A"), row(20, "B"))),
    ),
    Case(
        "a server configured in both hostgroups keeps each row's own attributes",
        (writer("A"),),
        ["10 A ONLINE", "20 A ONLINE"],
        config=config((row(10, "A", weight=5), row(20, "A", weight=1))),
    ),
    Case(
        "read_only never seen: rows stay as configured",
        (),
        ["10 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
    ),
    Case(
        "read_only unknown for one server only",
        (writer("A"), replica("B")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
    ),
    Case(
        "servers outside every pair stay where configured",
        (writer("A"), replica("B"), replica("C"), replica("D")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE", "30 D ONLINE"],
        config=config((*STANDARD, row(30, "D"))),
    ),
    Case(
        "two independent pairs",
        (writer("A"), replica("B"), writer("C"), ok("D", True, repl(master="C"))),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "30 C ONLINE", "40 C ONLINE", "40 D ONLINE"],
        config=config(
            (row(10, "A"), row(20, "B"), row(30, "C"), row(40, "D")),
            pairs=(PAIR, ReplicationHostgroup(30, 40)),
        ),
    ),
    Case(
        "a pair reusing a hostgroup of an earlier pair is ignored",
        (writer("A"), replica("B"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "30 C ONLINE"],
        config=config(
            (row(10, "A"), row(20, "B"), row(30, "C")),
            pairs=(PAIR, ReplicationHostgroup(20, 30)),
        ),
    ),
    # ---- health -------------------------------------------------------------------------------------
    Case(
        "failed connect shuns every row of the server",
        (replace(writer("A"), connect_ok=False, connect_error="2003: refused"), replica("B"), replica("C")),
        ["10 A SHUNNED", "20 A SHUNNED", "20 B ONLINE", "20 C ONLINE"],
        comments={"10 A": "connect failed (2003: refused)"},
    ),
    Case(
        "ping failures below mysql-monitor_ping_max_failures do not shun",
        (writer("A"), replace(replica("B"), ping_ok=False, ping_failures=2), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
    ),
    Case(
        "ping failures reaching mysql-monitor_ping_max_failures shun",
        (writer("A"), replace(replica("B"), ping_ok=False, ping_failures=3, ping_error="timeout"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        comments={"20 B": "3 consecutive pings failed (timeout)"},
    ),
    Case(
        "mysql-monitor_ping_max_failures is configurable",
        (writer("A"), replace(replica("B"), ping_ok=False, ping_failures=1), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        config=config(ping_max_failures="1"),
    ),
    Case(
        "read_only checks failing mysql-monitor_read_only_max_timeout_count times shun",
        (replace(writer("A"), read_only_failures=3, read_only_error="timeout"), replica("B"), replica("C")),
        ["10 A SHUNNED", "20 A SHUNNED", "20 B ONLINE", "20 C ONLINE"],
        comments={"10 A": "3 read_only checks failed"},
    ),
    Case(
        "read_only check failures do not shun a server outside any pair",
        (replace(ok("D", False), read_only_failures=5),),
        ["30 D ONLINE"],
        config=config((row(30, "D"),), pairs=()),
    ),
    Case(
        "health shuns servers outside any pair",
        (replace(ok("D", False), connect_ok=False, connect_error="x"),),
        ["30 D SHUNNED"],
        config=config((row(30, "D"),), pairs=()),
    ),
    Case(
        "max_replication_lag outside any pair (ProxySQL's check, NULL lag as slave_lag_when_null)",
        (ok("B", True, repl(lag=None, sql="No")), ok("C", True, repl(lag=5)), ok("D", True, repl(lag=4))),
        ["30 B SHUNNED", "30 C SHUNNED", "30 D ONLINE"],
        config=config(tuple(row(30, n, max_replication_lag=4) for n in "BCD"), pairs=()),
        comments={"30 B": "lag NULL > max_replication_lag 4s", "30 C": "lag 5s"},
    ),
    Case(
        "a server that recovered is back",
        (writer("A"), replace(replica("B"), ping_failures=0, connect_ok=True), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=prev("10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"),
    ),
    # ---- operator statuses -----------------------------------------------------------------------
    Case(
        "OFFLINE_SOFT and OFFLINE_HARD set by the operator stay, healthy or not",
        (writer("A"), replica("B"), ok("C", True, NO_REPL)),
        ["10 A ONLINE", "20 A ONLINE", "20 B OFFLINE_SOFT", "20 C OFFLINE_HARD"],
        config=config((row(10, "A"), row(20, "B", status="OFFLINE_SOFT"), row(20, "C", status="OFFLINE_HARD"))),
    ),
    Case(
        "an operator status travels with the server when it moves",
        (writer("A"), replica("B")),
        ["10 A OFFLINE_SOFT", "20 A OFFLINE_SOFT", "20 B ONLINE"],
        config=config((row(10, "A", status="OFFLINE_SOFT"), row(20, "B"))),
    ),
    Case(
        "a configured SHUNNED status is recomputed from health",
        (writer("A"), replica("B")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(10, "A"), row(20, "B", status="SHUNNED"))),
        previous=SERVING,
    ),
    Case(
        "operator comment kept, turnout's reason appended",
        (writer("A"), ok("B", True, NO_REPL)),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED"],
        config=config((row(10, "A"), row(20, "B", comment="rack 2"))),
        comments={"20 B": "rack 2; turnout: read_only=ON and not replicating"},
    ),
    # ---- stale-read protection -----------------------------------------------------------------
    Case(
        "graceful demotion: old master read_only=ON without replication is shunned",
        (ok("A", True, NO_REPL), writer("B"), replica("C", master="B")),
        ["10 B ONLINE", "20 A SHUNNED", "20 B ONLINE", "20 C ONLINE"],
        config=config((row(10, "A"), row(20, "B"), row(20, "C"))),
        previous=SERVING,
        comments={"20 A": "turnout: read_only=ON and not replicating (no replication configured)"},
    ),
    Case(
        "old master replicating again and caught up is a reader again",
        (replica("A", master="B"), writer("B"), replica("C", master="B")),
        ["10 B ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=prev("10 B ONLINE", "20 A SHUNNED", "20 B ONLINE", "20 C ONLINE", held_out=((20, "A"),)),
    ),
    Case(
        "second demotion works the same",
        (replica("A", master="C"), ok("B", True, NO_REPL), writer("C")),
        ["10 C ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=prev("10 B ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"),
        comments={"20 B": "not replicating (no replication configured)"},
    ),
    Case(
        "SQL thread stopped",
        (writer("A"), replica("B", sql="No", lag=None), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "turnout: read_only=ON and not replicating (SQL thread stopped)"},
    ),
    Case(
        "IO thread stopped",
        (writer("A"), replica("B", io="No", lag=None), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "(IO thread stopped)"},
    ),
    Case(
        "IO thread connecting, with its error",
        (writer("A"), replica("B", io="Connecting", lag=None, io_err="error connecting to master"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "IO thread connecting, error: error connecting to master"},
    ),
    Case(
        "replication error",
        (writer("A"), replica("B", sql="No", lag=None, sql_err="Duplicate entry '1'"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "SQL thread stopped, error: Duplicate entry '1'"},
    ),
    Case(
        "replication state never seen",
        (writer("A"), ok("B", True, None), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        comments={"20 B": "replication state unknown"},
    ),
    Case(
        "replication checks failing repeatedly make the state unknown",
        (writer("A"), replace(replica("B"), replication_failures=3, replication_error="timeout"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "replication state unknown: timeout"},
    ),
    Case(
        "one failed replication check keeps the last known state",
        (writer("A"), replace(replica("B"), replication_failures=1, replication_error="timeout"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=SERVING,
    ),
    Case(
        "NULL lag while threads run is not 'no lag'",
        (writer("A"), replica("B", lag=None), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=SERVING,
        comments={"20 B": "lag unknown (NULL)"},
    ),
    Case(
        "stale_read_protection=0: ProxySQL's behaviour, a non-replicating server keeps serving",
        (writer("A"), ok("B", True, NO_REPL), replica("C", sql="No", lag=None)),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        config=config(pairs=(ReplicationHostgroup(10, 20, stale_read_protection=0),)),
    ),
    Case(
        "stale_read_protection=0 with max_replication_lag: NULL lag counts as slave_lag_when_null",
        (writer("A"), ok("B", True, NO_REPL), replica("C", sql="No", lag=None)),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C SHUNNED"],
        config=config(
            (row(10, "A"), row(20, "B", max_replication_lag=30), row(20, "C", max_replication_lag=30)),
            pairs=(ReplicationHostgroup(10, 20, stale_read_protection=0),),
        ),
    ),
    Case(
        "stale_read_protection=0 and slave_lag_when_null below max_replication_lag",
        (writer("A"), replica("C", sql="No", lag=None)),
        ["10 A ONLINE", "20 A ONLINE", "20 C ONLINE"],
        config=config(
            (row(10, "A"), row(20, "C", max_replication_lag=30)),
            pairs=(ReplicationHostgroup(10, 20, stale_read_protection=0),),
            slave_lag_when_null="10",
        ),
    ),
    # ---- replication lag -------------------------------------------------------------------------
    Case(
        "lag above max_replication_lag shuns",
        (writer("A"), replica("B", lag=11), replica("C", lag=10)),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        config=config((row(10, "A"), row(20, "B", max_replication_lag=10), row(20, "C", max_replication_lag=10))),
        previous=SERVING,
        comments={"20 B": "replication lag 11s > max_replication_lag 10s"},
    ),
    Case(
        "a replica shunned for lag returns once within max_replication_lag, even if not at 0",
        (writer("A"), replica("B", lag=3)),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(10, "A"), row(20, "B", max_replication_lag=10))),
        previous=prev("10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", held_out=((20, "B"),)),
    ),
    Case(
        "max_replication_lag=0: a serving replica is not shunned for lag",
        (writer("A"), replica("B", lag=7), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=SERVING,
    ),
    Case(
        "max_replication_lag=0: a replica that was out returns only once caught up (lag 0)",
        (writer("A"), replica("B", lag=7), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=prev("10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE", held_out=((20, "B"),)),
        comments={"20 B": "catching up, replication lag 7s"},
    ),
    Case(
        "max_replication_lag=0: without a previous snapshot every replica must have caught up",
        (writer("A"), replica("B", lag=7), replica("C", lag=0)),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
    ),
    Case(
        "max_replication_lag=0: caught up replica returns",
        (writer("A"), replica("B", lag=0), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=prev("10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE", held_out=((20, "B"),)),
    ),
    Case(
        "the writer is never shunned for its own replication state",
        (ok("A", False, repl(master="B", sql="No", lag=None)), replica("B")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(10, "A", max_replication_lag=5), row(20, "B"))),
        previous=SERVING,
    ),
    # ---- no reader left ------------------------------------------------------------------------
    Case(
        "no reader left, writer not a reader: the writer serves reads",
        (writer("A"), ok("B", True, NO_REPL), replica("C", sql="No", lag=None)),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C SHUNNED"],
        config=config(writer_is_also_reader="false"),
        comments={"20 A": "turnout: writer serving reads, no reader left"},
    ),
    Case(
        "no reader and no healthy writer: reads have nowhere to go",
        (replace(writer("A"), connect_ok=False), ok("B", True, NO_REPL)),
        ["10 A SHUNNED", "20 B SHUNNED"],
        config=config((row(10, "A"), row(20, "B")), writer_is_also_reader="false"),
    ),
    Case(
        "a stale replica is never the fallback, even when it is the only server",
        (ok("B", True, NO_REPL),),
        ["20 B SHUNNED"],
        config=config((row(20, "B"),)),
    ),
    # ---- two writers -------------------------------------------------------------------------------
    Case(
        "two writers, refuse: writes blocked with a message naming them, reads continue",
        (writer("A"), writer("B"), replica("C")),
        ["10 A SHUNNED", "10 B SHUNNED", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=SERVING,
        blocked={
            10: "turnout: writes refused, 2 servers report read_only=OFF in writer hostgroup 10: "
            "10.0.0.1:3306, 10.0.0.2:3306"
        },
        comments={"10 A": "turnout: writes refused"},
    ),
    Case(
        "two writers, one of them dead: no conflict",
        (replace(writer("A"), connect_ok=False, connect_error="refused"), writer("B"), replica("C", master="B")),
        ["10 A SHUNNED", "10 B ONLINE", "20 A SHUNNED", "20 B ONLINE", "20 C ONLINE"],
        previous=SERVING,
    ),
    Case(
        "two writers, keep-current: the previous writer keeps the writes, the other is fenced",
        (writer("A"), writer("B"), replica("C")),
        ["10 A ONLINE", "10 B OFFLINE_HARD", "20 A ONLINE", "20 B OFFLINE_HARD", "20 C ONLINE"],
        config=config(pairs=(ReplicationHostgroup(10, 20, two_writer_mode="keep-current"),)),
        previous=SERVING,
        comments={"10 B": "writes stay on 10.0.0.1:3306 (two_writer_mode=keep-current)"},
    ),
    Case(
        "two writers, keep-current without a previous writer falls back to refuse",
        (writer("A"), writer("B"), replica("C")),
        ["10 A SHUNNED", "10 B SHUNNED", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        config=config(pairs=(ReplicationHostgroup(10, 20, two_writer_mode="keep-current"),)),
        blocked={10: "writes refused, 2 servers"},
    ),
    Case(
        "two writers, keep-current when the previous writer is not one of them falls back to refuse",
        (writer("A"), writer("B"), replica("C", master="A")),
        ["10 A SHUNNED", "10 B SHUNNED", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        config=config(pairs=(ReplicationHostgroup(10, 20, two_writer_mode="keep-current"),)),
        previous=prev("10 C ONLINE", "20 A ONLINE", "20 B ONLINE"),
        blocked={10: "writes refused"},
    ),
    Case(
        "two writers refused: a writer-hostgroup server not checked yet takes no writes either",
        (writer("A"), writer("B")),
        ["10 A SHUNNED", "10 B SHUNNED", "10 C SHUNNED", "20 A ONLINE", "20 B ONLINE"],
        config=config((row(10, "A"), row(10, "B"), row(10, "C"))),
        blocked={10: "writes refused"},
    ),
    Case(
        "three writers",
        (writer("A"), writer("B"), writer("C")),
        ["10 A SHUNNED", "10 B SHUNNED", "10 C SHUNNED", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        blocked={10: "3 servers report read_only=OFF in writer hostgroup 10"},
    ),
    Case(
        "writes resume when one writer goes back to read_only=ON (and it is then a stale reader)",
        (writer("A"), ok("B", True, NO_REPL), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B SHUNNED", "20 C ONLINE"],
        previous=prev("10 A SHUNNED", "10 B SHUNNED", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"),
    ),
    # ---- managed mode --------------------------------------------------------------------------
    Case(
        "managed: the published master is the writer",
        (writer("A"), replica("B"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["A"]},
        previous=SERVING,
    ),
    Case(
        "managed: another read_only=OFF server is fenced, no writes and no reads",
        (writer("A"), writer("B"), replica("C", master="B")),
        ["10 A OFFLINE_HARD", "10 B ONLINE", "20 A OFFLINE_HARD", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["B"]},
        previous=SERVING,
        comments={"10 A": "turnout: fenced, read_only=OFF but not the published master"},
    ),
    Case(
        "managed: a fenced server is fenced even when writer_is_also_reader=false",
        (writer("A"), writer("B"), replica("C", master="B")),
        ["10 A OFFLINE_HARD", "10 B ONLINE", "20 C ONLINE"],
        config=config(writer_is_also_reader="false"),
        masters={10: HOSTS["B"]},
        previous=SERVING,
    ),
    Case(
        "managed: the published master still read_only=ON takes no writes",
        (ok("A", True, NO_REPL), ok("B", True, NO_REPL), replica("C", master="B")),
        ["20 A SHUNNED", "20 B SHUNNED", "20 C ONLINE"],
        masters={10: HOSTS["B"]},
        previous=SERVING,
    ),
    Case(
        "managed: a published master not in mysql_servers leaves no writer, fences the others",
        (writer("A"), replica("B"), replica("C")),
        ["10 A OFFLINE_HARD", "20 A OFFLINE_HARD", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["D"]},
        previous=SERVING,
    ),
    Case(
        "managed: the published master whose read_only is not known yet takes no writes",
        (replica("B"), replica("C")),
        ["10 A SHUNNED", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["A"]},
        previous=SERVING,
        comments={"10 A": "read_only not known yet"},
    ),
    Case(
        "managed: an unknown server configured as writer is not the master",
        (writer("B"), replica("C", master="B")),
        ["10 A SHUNNED", "10 B ONLINE", "20 B ONLINE", "20 C ONLINE"],
        config=config((row(10, "A"), row(10, "B"), row(20, "C"))),
        masters={10: HOSTS["B"]},
        previous=SERVING,
        comments={"10 A": "not the published master"},
    ),
    Case(
        "managed: the two-writer guard does not apply, the published master decides",
        (writer("A"), writer("B"), replica("C")),
        ["10 A ONLINE", "10 B OFFLINE_HARD", "20 A ONLINE", "20 B OFFLINE_HARD", "20 C ONLINE"],
        masters={10: HOSTS["A"]},
        previous=SERVING,
    ),
    Case(
        "managed for one pair, unmanaged for the other",
        (writer("A"), writer("B"), writer("C"), writer("D")),
        ["10 A ONLINE", "10 B OFFLINE_HARD", "20 A ONLINE", "20 B OFFLINE_HARD",
         "30 C SHUNNED", "30 D SHUNNED", "40 C ONLINE", "40 D ONLINE"],
        config=config(
            (row(10, "A"), row(20, "B"), row(30, "C"), row(40, "D")),
            pairs=(PAIR, ReplicationHostgroup(30, 40)),
        ),
        masters={10: HOSTS["A"]},
        blocked={30: "writer hostgroup 30"},
    ),
    # ---- the manager's fences: out of all traffic until `turnout unfence` -----------------------
    Case(
        "fenced old master rebuilt as a healthy caught-up replica serves no reads",
        (replica("A", master="B"), writer("B"), replica("C", master="B")),
        ["10 A OFFLINE_HARD", "10 B ONLINE", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["B"]},
        previous=SERVING,
        fences={HOSTS["A"]: "dead master replaced by B"},
        comments={"10 A": "turnout: fenced by the manager (dead master replaced by B); `turnout unfence` lifts it"},
    ),
    Case(
        "a fence holds in every hostgroup the server is configured in",
        (writer("A"), replica("B"), replica("C")),
        ["10 A ONLINE", "20 A ONLINE", "20 B ONLINE", "20 C OFFLINE_HARD", "30 C OFFLINE_HARD"],
        config=config((row(10, "A"), row(20, "B"), row(20, "C"), row(30, "C"))),
        masters={10: HOSTS["A"]},
        previous=SERVING,
        fences={HOSTS["C"]: ""},
        comments={"30 C": "fenced by the manager"},
    ),
    Case(
        "a fence beats the operator's status and a health problem",
        (replica("A", master="B"), writer("B"), ServerHealth(address=HOSTS["C"], connect_ok=False)),
        ["10 A OFFLINE_HARD", "10 B ONLINE", "20 B ONLINE", "20 C OFFLINE_HARD"],
        config=config((row(10, "A", status="OFFLINE_SOFT"), row(20, "B"), row(20, "C"))),
        masters={10: HOSTS["B"]},
        previous=SERVING,
        fences={HOSTS["A"]: "x", HOSTS["C"]: "y"},
        comments={"10 A": "fenced by the manager (x)", "20 C": "fenced by the manager (y)"},
    ),
    Case(
        "a fenced server reporting read_only=OFF is no second writer: no conflict, writes go on",
        (writer("A"), writer("B"), replica("C")),
        ["10 A OFFLINE_HARD", "10 B ONLINE", "20 B ONLINE", "20 C ONLINE"],
        previous=SERVING,
        fences={HOSTS["A"]: ""},
    ),
    Case(
        "a fenced published master takes no writes, and nothing takes them instead",
        (writer("A"), replica("B"), replica("C")),
        ["10 A OFFLINE_HARD", "20 B ONLINE", "20 C ONLINE"],
        masters={10: HOSTS["A"]},
        previous=SERVING,
        fences={HOSTS["A"]: ""},
    ),
    Case(
        "a fenced server is never the writer's fallback reader",
        (writer("A"), replica("B", sql="No"), replica("C", sql="No")),
        ["10 A OFFLINE_HARD", "20 B SHUNNED", "20 C SHUNNED"],
        previous=SERVING,
        fences={HOSTS["A"]: ""},
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_effective_servers(case: Case) -> None:
    snap = effective_servers(case.config, snapshot(*case.health), case.masters, case.previous, case.fences)
    assert summary(snap) == case.expected
    found = comments(snap)
    for key, text in case.comments.items():
        assert text in found.get(key, ""), f"{key}: {found.get(key)!r}"
    assert set(snap.write_blocked) == set(case.blocked)
    for hg, text in case.blocked.items():
        assert text in snap.write_blocked[hg]
    assert snap.config_version == 3
    assert snap.health_version == 7


def test_row_attributes_are_copied_to_the_new_hostgroup() -> None:
    cfg = config((row(10, "A", weight=7, max_connections=50, comment="db1"), row(20, "B")))
    snap = effective_servers(cfg, snapshot(writer("A"), replica("B")), previous=SERVING)
    in_reader = next(s for s in snap.rows(20) if s.address == HOSTS["A"])
    assert (in_reader.weight, in_reader.max_connections, in_reader.comment) == (7, 50, "db1")


def test_conflicts_report_refuse_keep_current_and_fenced() -> None:
    health = snapshot(writer("A"), writer("B"), replica("C"))
    refused = effective_servers(config(), health, previous=SERVING)
    assert [(c.action, c.servers, c.writer) for c in refused.conflicts] == [
        ("refuse", (HOSTS["A"], HOSTS["B"]), None)
    ]
    keep = config(pairs=(ReplicationHostgroup(10, 20, two_writer_mode="keep-current"),))
    kept = effective_servers(keep, health, previous=SERVING)
    assert [(c.action, c.writer) for c in kept.conflicts] == [("keep-current", HOSTS["A"])]
    assert kept.write_blocked == {}
    fenced = effective_servers(config(), health, {10: HOSTS["B"]}, previous=SERVING)
    assert [(c.action, c.writer) for c in fenced.conflicts] == [("fenced", HOSTS["B"])]
    assert "fenced 10.0.0.1:3306" in fenced.conflicts[0].message
    calm = effective_servers(config(), snapshot(writer("A"), replica("B")), previous=SERVING)
    assert calm.conflicts == ()


def test_keep_current_stays_on_the_same_writer_across_recomputations() -> None:
    keep = config(pairs=(ReplicationHostgroup(10, 20, two_writer_mode="keep-current"),))
    table = RoutingTable()
    table.update(keep, snapshot(writer("A"), replica("B"), replica("C")))
    for _ in range(3):
        snap = table.update(keep, snapshot(writer("A"), writer("B"), replica("C")))
        assert snap.writer(10) == HOSTS["A"]
    snap = table.update(keep, snapshot(writer("A"), ok("B", True, repl()), replica("C")))
    assert snap.writer(10) == HOSTS["A"] and snap.conflicts == ()


def test_routing_table_hysteresis_for_a_catching_up_replica() -> None:
    table = RoutingTable()
    steps = [
        (replica("B", lag=0), "ONLINE"),
        (replica("B", lag=4), "ONLINE"),  # serving, max_replication_lag=0: not shunned for lag
        (replica("B", sql="No", lag=None), "SHUNNED"),  # stopped
        (replica("B", lag=40), "SHUNNED"),  # replicating again but far behind
        (replica("B", lag=1), "SHUNNED"),
        (replica("B", lag=0), "ONLINE"),  # caught up
        (replica("B", lag=2), "ONLINE"),
    ]
    cfg = config((row(10, "A"), row(20, "B")))
    for health, status in steps:
        snap = table.update(cfg, snapshot(writer("A"), health))
        assert next(s.status for s in snap.rows(20) if s.address == HOSTS["B"]) == status


def test_helpers_online_rows_writer() -> None:
    snap = effective_servers(
        config(), snapshot(writer("A"), replica("B"), ok("C", True, NO_REPL)), previous=SERVING
    )
    assert [NAMES[s.address] for s in snap.online(20)] == ["A", "B"]
    assert [NAMES[s.address] for s in snap.rows(20)] == ["A", "B", "C"]
    assert snap.writer(10) == HOSTS["A"]
    assert snap.writer(20) is None  # several
    assert snap.writer(99) is None
