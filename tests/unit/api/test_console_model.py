"""What the console shows, from the manager's and the proxies' views. Pure functions."""

from __future__ import annotations

from turnout.api import console_model as cm
from turnout.api.proxies import with_rates
from turnout.manager.analysis import Snapshot, analyze
from turnout.manager.candidates import Limits
from turnout.state.base import AuditEntry, ClusterState, Downtime, Fence, RecoveryRecord
from turnout.topology.flavors import MariaDBGtid
from turnout.topology.model import Instance

F = MariaDBGtid()


def master(key: str = "m:1", **fields: object) -> Instance:
    host, port = key.split(":")
    values: dict[str, object] = {"read_only": False, "gtid_binlog_pos": "0-1-10", "gtid_current_pos": "0-1-10",
                                 "semi_sync_master_enabled": True}
    values.update(fields)
    return Instance(host, int(port), **values)  # type: ignore[arg-type]


def replica(key: str, of: str = "m:1", **fields: object) -> Instance:
    host, port = key.split(":")
    mh, mp = of.split(":")
    values: dict[str, object] = {
        "master_host": mh, "master_port": int(mp), "io_running": "Yes", "sql_running": True, "read_only": True,
        "seconds_behind_master": 0, "gtid_io_pos": "0-1-10", "gtid_slave_pos": "0-1-10", "gtid_current_pos": "0-1-10",
        "gtid_binlog_pos": "0-1-10", "semi_sync_replica_enabled": True}
    values.update(fields)
    return Instance(host, int(port), **values)  # type: ignore[arg-type]


def tree(state: ClusterState, snapshot: Snapshot, **kw: object) -> dict[str, object]:
    args: dict[str, object] = {"fences": {}, "downtimes": {}, "rows": [], "auto_recovery": True}
    args.update(kw)
    return cm.cluster_tree(state, snapshot, analyze(snapshot), **args)  # type: ignore[arg-type]


def flatten(nodes: list[dict[str, object]], depth: int = 0) -> list[tuple[int, str, str]]:
    out = []
    for n in nodes:
        out.append((depth, str(n["key"]), str(n["role"])))
        out += flatten(n["children"], depth + 1)  # type: ignore[arg-type]
    return out


def test_tree_master_intermediate_and_replicas() -> None:
    snap = Snapshot.of("c", [master(), replica("a:1"), replica("b:1"), replica("c:1", of="b:1")])
    view = tree(ClusterState("c", "m:1", 4, members=("m:1", "a:1", "b:1", "c:1")), snap)
    assert flatten(view["tree"]) == [(0, "m:1", "master"), (1, "a:1", "replica"), (1, "b:1", "intermediate"),
                                     (2, "c:1", "replica")]
    assert (view["master"], view["epoch"], view["phase"], view["problems"]) == ("m:1", 4, "stable", [])
    root = view["tree"][0]  # type: ignore[index]
    assert root["published_master"] and root["semi_sync"] == "master" and root["read_only"] is False
    assert root["children"][0]["semi_sync"] == "replica" and root["children"][0]["gtid"] == "0-1-10"


def test_dead_master_after_failover_is_a_fenced_root_after_the_published_master() -> None:
    dead = master("m:1", reachable=False, last_probe_error="connection refused", semi_sync_master_enabled=False)
    snap = Snapshot.of("c", [dead, master("a:1"), replica("b:1", of="a:1")], fenced=["m:1"])
    fence = Fence("m:1", "c", "dead master replaced by a:1", 1.0)
    rows = [cm.ServerRow("local", 10, "m:1", "OFFLINE_HARD", "fenced"), cm.ServerRow("local", 10, "a:1", "ONLINE", "")]
    view = tree(ClusterState("c", "a:1", 3), snap, fences={"m:1": fence}, rows=rows)
    assert flatten(view["tree"]) == [(0, "a:1", "master"), (1, "b:1", "replica"), (0, "m:1", "fenced former master")]
    old = view["tree"][1]  # type: ignore[index]
    assert old["fenced"] == {"reason": "dead master replaced by a:1", "at": 1.0}
    assert old["reachable"] is False and old["last_error"] == "connection refused"
    assert old["proxy_rows"] == [{"proxy": "local", "hostgroup": 10, "status": "OFFLINE_HARD", "comment": "fenced"}]
    assert not old["published_master"]


def test_problems_are_listed_and_attached_to_their_server() -> None:
    snap = Snapshot.of("c", [master(reachable=False), replica("a:1", io_running="Connecting", last_io_errno=2003)],
                       downtimed=["m:1"])
    view = tree(ClusterState("c", "m:1", 1), snap, downtimes={"m:1": Downtime("m:1", "bob", "upgrade", 99.0)})
    assert [(p["code"], p["downtimed"]) for p in view["problems"]] == [("DeadMaster", True)]  # type: ignore[index]
    root = view["tree"][0]  # type: ignore[index]
    assert root["problem"]["code"] == "DeadMaster"
    assert root["downtime"] == {"owner": "bob", "reason": "upgrade", "ends_at": 99.0}


def test_a_replication_loop_does_not_recurse_for_ever() -> None:
    snap = Snapshot.of("c", [replica("a:1", of="b:1"), replica("b:1", of="a:1")])
    view = tree(ClusterState("c", "a:1", 1), snap)
    assert {k for _, k, _ in flatten(view["tree"])} <= {"a:1", "b:1"}


def entry(i: int, at: float, action: str, cluster: str = "c", message: str = "") -> AuditEntry:
    return AuditEntry(i, at, cluster, action, message or f"{action} {i}", None)


def test_audit_groups_operations_with_step_offsets() -> None:
    entries = [entry(1, 100.0, "discover"), entry(2, 200.0, "graceful-master-takeover"),
               entry(3, 200.5, "graceful-master-takeover"), entry(4, 200.6, "recover", cluster="d"),
               entry(5, 201.25, "graceful-master-takeover"), entry(6, 300.0, "graceful-master-takeover")]
    groups = cm.audit_groups(reversed(entries))
    assert [(g["action"], [s["id"] for s in g["steps"]]) for g in groups] == [
        ("graceful-master-takeover", [6]), ("graceful-master-takeover", [2, 3, 5]), ("recover", [4]),
        ("discover", [1])]
    takeover = groups[1]
    assert takeover["duration"] == 1.25 and [s["offset"] for s in takeover["steps"]] == [0.0, 0.5, 1.25]


def test_recoveries_view_has_duration_and_acknowledgement() -> None:
    done = RecoveryRecord(1, "c", "DeadMaster", "m:1", "a:1", 10.0, 12.5, True, True, "bob", 20.0, "ok", False,
                          ("step",))
    running = RecoveryRecord(2, "c", "DeadMaster", "a:1", None, 30.0, None, False, False, None, None, None, True, ())
    view = cm.recoveries_view([done, running])
    assert [r["id"] for r in view] == [2, 1]
    assert view[0]["active"] and view[0]["duration"] is None and view[0]["manual"]
    assert view[1]["duration"] == 2.5 and view[1]["acknowledged_by"] == "bob" and view[1]["steps"] == ["step"]


def checks(state: ClusterState, snap: Snapshot, designated: str | None, busy: bool = False) -> dict[str, bool]:
    return {f"{c.name}: {c.detail}": c.ok
            for c in cm.takeover_checks(state, snap, designated, F, {}, Limits(10), busy)}


def test_takeover_checks_pass_on_a_healthy_cluster() -> None:
    snap = Snapshot.of("c", [master(), replica("a:1")])
    result = checks(ClusterState("c", "m:1", 1), snap, "a:1")
    assert all(result.values()) and len(result) == 5, result


def test_takeover_checks_name_what_refuses() -> None:
    snap = Snapshot.of("c", [master(), replica("a:1", seconds_behind_master=50, sql_running=False,
                                                   gtid_binlog_pos="0-1-10,1-9-3")])
    failing = [k for k, ok in checks(ClusterState("c", "m:1", 1, phase="switching"), snap, "a:1").items() if not ok]
    assert any(k.startswith("cluster is stable: phase switching") for k in failing)
    assert any("lagging 50s" in k for k in failing) and any("SQL thread not running" in k for k in failing)
    assert any(k.startswith("no errant transactions") and "1-9-3" in k for k in failing)
    dead = Snapshot.of("c", [master(reachable=False, last_probe_error="refused"), replica("a:1")])
    assert not checks(ClusterState("c", "m:1", 1), dead, None)["master answers: unreachable (refused): use recover"]
    assert checks(ClusterState("c", "m:1", 1), snap, None, busy=True) == {
        "cluster is stable: phase stable (a recovery is running): wait for it to finish": False,
        "master answers: reachable": True, "master is a master: replicates from nothing": True}
    assert not checks(ClusterState("c", "m:1", 1), snap, "x:9")["designated replica is known: x:9 is not in c"]


def test_questions_per_second_between_reports() -> None:
    previous: dict[str, tuple[float, int]] = {}
    first = with_rates([{"name": "local", "at": 10.0, "questions": 100}], previous)
    assert first[0]["qps"] is None
    second = with_rates([{"name": "local", "at": 12.0, "questions": 300}], previous)
    assert second[0]["qps"] == 100.0
    restarted = with_rates([{"name": "local", "at": 13.0, "questions": 5}], previous)
    assert restarted[0]["qps"] == 0.0


def test_driven_proxysqls_as_proxy_reports() -> None:
    from turnout.api.proxies import driven_reports

    statuses = [
        {"Proxy": "p1:6032", "ClusterAlias": "c1", "Converged": True, "Lagging": False, "Epoch": 3,
         "Master": "m:1", "Phase": "stable", "LastError": ""},
        {"Proxy": "p2:6032", "ClusterAlias": "c1", "Converged": False, "Lagging": True, "Epoch": 2,
         "Master": "old:1", "Phase": "stable", "LastError": "(2003) cannot connect"},
        {"Proxy": "p2:6032", "ClusterAlias": "c2", "Converged": True, "Lagging": False, "Epoch": None,
         "Master": "", "Phase": "", "LastError": ""},
    ]
    reports = driven_reports(statuses, 5.0)
    assert [(r["name"], r["converged"], r["lagging"], r["errors"]) for r in reports] == [
        ("p1:6032", True, [], []), ("p2:6032", False, ["c1"], ["(2003) cannot connect"])]
    assert reports[1]["epochs"] == {"c1": {"master": "old:1", "epoch": 2, "phase": "stable"},
                                    "c2": {"master": "", "epoch": None, "phase": ""}}
    assert with_rates(reports, {})[0]["qps"] is None


def test_registered_proxies_against_the_current_epochs() -> None:
    from turnout.api.proxies import registered_reports
    from turnout.state.base import ProxyRecord

    clusters = [ClusterState("c1", "m2:1", 5), ClusterState("c2", "x:1", 2)]
    records = [
        ProxyRecord("b:6033", "b:6033", {"c1": (4, "stable"), "c2": (2, "stable")}, 90.0),
        ProxyRecord("a:6033", "a:6033", {"c1": (5, "promoting")}, 99.0),
        ProxyRecord("local:6033", "local:6033", {"c1": (5, "stable")}, 99.0),
    ]
    reports = registered_reports(records, clusters, 100.0, skip="local:6033")
    assert [(r["name"], r["behind"], r["lease_age"]) for r in reports] == [("a:6033", [], 1.0),
                                                                            ("b:6033", ["c1"], 10.0)]
    assert reports[0]["epochs"] == {"c1": {"master": "m2:1", "epoch": 5, "phase": "promoting"}}
    assert reports[1]["epochs"]["c1"] == {"master": "", "epoch": 4, "phase": "stable"}
