"""The pure parts behind the Orchestrator API: topology lines, OSC replicas, move checks, durations."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.api.app import parse_duration
from turnout.manager import osc, tree
from turnout.manager.analysis import Snapshot
from turnout.manager.relocation import (
    OperationRefused,
    ancestors,
    can_replicate_from,
    check_move,
    descendants,
)
from turnout.state.base import ClusterState
from turnout.topology.model import Instance


def inst(port: int, master: int | None = None, **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "version": "10.11.6-MariaDB", "read_only": master is not None, "server_id": port,
        "binlog_file": "mariadb-bin.000001", "binlog_format": "ROW", "log_replica_updates": True,
        "gtid_binlog_pos": "0-1-5", "gtid_current_pos": "0-1-5",
    }
    if master is not None:
        values.update(master_host="h", master_port=master, io_running="Yes", sql_running=True,
                      seconds_behind_master=0, using_gtid="Slave_Pos")
    values.update(fields)
    return Instance("h", port, **values)


def topo(*items: Instance) -> dict[str, Instance]:
    return {i.key: i for i in items}


# ---- topology lines --------------------------------------------------------------------------------------
def test_tokens_follow_orchestrator() -> None:
    master = inst(1)
    assert tree.tokens(master, master.key) == ["0s", "ok", "10.11.6-MariaDB", "rw", "ROW", ">>,GTID"]
    stopped = inst(2, 1, io_running="No", sql_running=False, seconds_behind_master=None)
    assert tree.tokens(stopped, stopped.key)[:2] == ["null", "nonreplicating"]
    lagging = inst(3, 1, seconds_behind_master=21)
    assert tree.tokens(lagging, lagging.key)[:2] == ["21s", "lag"]
    dead = inst(4, 1, reachable=False)
    assert tree.tokens(dead, dead.key)[:2] == ["unknown", "invalid"]
    nobinlog = inst(5, 1, binlog_file="", log_replica_updates=False, semi_sync_replica_enabled=True)
    marks = tree.Marks(fenced=frozenset({"h:5"}), downtimed=frozenset({"h:5"}), errant=frozenset({"h:5"}))
    assert tree.tokens(nobinlog, "h:5", marks)[4:] == ["nobinlog", "GTID:errant,semi:replica,downtimed,fenced"]


def test_render_aligns_and_marks_replicas() -> None:
    text = tree.render(topo(inst(1), inst(2, 1), inst(3, 2, io_running="No", sql_running=False)))
    assert text.splitlines() == [
        "h:1     [0s,ok,10.11.6-MariaDB,rw,ROW,>>,GTID]",
        "+ h:2   [0s,ok,10.11.6-MariaDB,ro,ROW,>>,GTID]",
        "  - h:3 [null,nonreplicating,10.11.6-MariaDB,ro,ROW,>>,GTID]",
    ]


def test_render_tabulated_and_tags() -> None:
    lines = tree.render(topo(inst(1), inst(2, 1, seconds_behind_master=12)), tabulated=True).splitlines()
    assert lines == ["h:1  | 0s|ok|10.11.6-MariaDB|rw|ROW|>>,GTID",
                     "+ h:2|12s|ok|10.11.6-MariaDB|ro|ROW|>>,GTID"]
    assert tree.render(topo(inst(1), inst(2, 1)), tags=True).splitlines()[1] == (
        "+ h:2 [0s,ok,10.11.6-MariaDB,ro,ROW,>>,GTID] []")


def test_render_puts_the_master_first_and_survives_cycles() -> None:
    fenced_root = inst(0)
    text = tree.render(topo(fenced_root, inst(1), inst(2, 1)), root_order=("h:1",))
    assert [line.split()[0] for line in text.splitlines()] == ["h:1", "+", "h:0"]
    cycle = tree.render(topo(inst(1, 2), inst(2, 1)))
    assert len(cycle.splitlines()) == 2 and "h:1" in cycle and "h:2" in cycle  # no endless walk


# ---- OSC replicas ----------------------------------------------------------------------------------------
def test_osc_control_replicas() -> None:
    flat = topo(inst(1), inst(2, 1), inst(3, 1), inst(4, 1))
    assert osc.control_replicas(flat, "h:1") == ["h:2", "h:3"]
    deep = topo(inst(1), inst(2, 1), inst(3, 2), inst(4, 2), inst(5, 3), inst(6, 1), inst(7, 1, reachable=False))
    # the intermediate master h:2, two of its replicas (busiest first), the third tier h:5, leaf h:6
    assert osc.control_replicas(deep, "h:1") == ["h:2", "h:3", "h:4", "h:5", "h:6"]


# ---- moving replicas ----------------------------------------------------------------------------------------
def test_ancestors_and_descendants() -> None:
    instances = topo(inst(1), inst(2, 1), inst(3, 2), inst(4, 1))
    assert ancestors(instances, "h:3") == ["h:2", "h:1"]
    assert descendants(instances, "h:2") == {"h:3"}
    assert descendants(instances, "h:1") == {"h:2", "h:3", "h:4"}


@pytest.mark.parametrize(("other", "reason"), [
    (inst(1, reachable=False), "unreachable"),
    (inst(1, binlog_file=""), "no binary log"),
    (inst(1, 9, log_replica_updates=False), "without log_slave_updates"),
    (inst(1, server_id=2), "same server_id"),
    (inst(1, version="11.4.2-MariaDB"), "older than"),
    (inst(1, binlog_format="ROW"), None),
])
def test_can_replicate_from(other: Instance, reason: str | None) -> None:
    replica = inst(2, 3, server_id=2)
    result = can_replicate_from(replica, other)
    assert (result is None) if reason is None else (reason in (result or ""))


def test_can_replicate_from_binlog_formats() -> None:
    statement = inst(2, 3, binlog_format="STATEMENT")
    assert "cannot replicate ROW events" in (can_replicate_from(statement, inst(1)) or "")
    assert can_replicate_from(inst(2, 3), inst(1, binlog_format="MIXED")) is None
    assert can_replicate_from(inst(2, 3), inst(2)) == "h:2 cannot replicate from itself"


def test_check_move_refusals() -> None:
    state = ClusterState("c", "h:1", 1, members=("h:1", "h:2", "h:3", "h:4"))
    snapshot = Snapshot.of("c", [inst(1), inst(2, 1), inst(3, 2), inst(4, 1)], fenced=["h:4"])
    replica, below = check_move(state, snapshot, "h:3", "h:1", True)
    assert (replica.key, below.key) == ("h:3", "h:1")
    cases = [
        (state.evolve(phase="switching"), "h:3", "h:1", True, "is switching"),
        (state, "h:9", "h:1", True, "not a known instance"),
        (state, "h:3", "h:4", True, "is fenced"),
        (state, "h:1", "h:2", True, "it is the master of c"),
        (state, "h:2", "h:3", True, "makes a cycle"),
        (state, "h:3", "h:1", False, "GTID only"),
    ]
    for cluster, key, target, gtid, message in cases:
        with pytest.raises(OperationRefused, match=message):
            check_move(cluster, snapshot, key, target, gtid)


# ---- durations ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400),
                                              ("4w", 2419200)])
def test_durations_like_orchestrator(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["300", "", "10 m", "-5m", "1y", "m"])
def test_durations_orchestrator_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="Cannot parse simple time"):
        parse_duration(text)
