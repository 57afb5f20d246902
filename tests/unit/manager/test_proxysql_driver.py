"""What the manager writes into a ProxySQL's mysql_servers: pure decisions."""

from __future__ import annotations

from typing import Any

import pytest

from turnout.manager.proxysql import (
    desired_rows,
    needs_write,
    rewrite_statements,
    runtime_matches,
)
from turnout.manager.settings import ManagerSettings, ProxySQLTarget, SettingsError, parse_targets
from turnout.state.base import ClusterState


def row(hostgroup: int, port: int, status: str = "ONLINE", **extra: Any) -> dict[str, Any]:
    return {"hostgroup_id": str(hostgroup), "hostname": "h", "port": str(port), "status": status,
            "weight": extra.get("weight", "1"), "max_replication_lag": extra.get("lag", "0"),
            "comment": extra.get("comment", "")}


CURRENT = [row(10, 1, comment="node0"), row(20, 2, weight="5", comment="node1"), row(20, 3), row(30, 9)]


def test_writer_holds_exactly_the_master_and_readers_the_replicating_replicas() -> None:
    state = ClusterState("c", "h:2", 2)
    wanted = desired_rows(CURRENT, 10, 20, state, ["h:3", "h:1"])
    assert [(r["hostgroup_id"], r["port"], r["status"]) for r in wanted] == [
        (10, 2, "ONLINE"), (20, 1, "ONLINE"), (20, 3, "ONLINE")]
    # other columns come from the server's existing rows
    assert wanted[0]["weight"] == "5" and wanted[0]["comment"] == "node1"
    assert wanted[1]["comment"] == "node0"
    assert needs_write(CURRENT, wanted, 10, 20)
    converged = [r for r in CURRENT if r["hostgroup_id"] == "30"] + [
        {**r, "hostgroup_id": str(r["hostgroup_id"]), "port": str(r["port"])} for r in wanted]
    assert not needs_write(converged, wanted, 10, 20), "a converged ProxySQL is left alone"


def test_a_switching_cluster_drains_its_master() -> None:
    wanted = desired_rows(CURRENT, 10, 20, ClusterState("c", "h:1", 1, phase="switching"), ["h:2", "h:3"])
    assert (wanted[0]["port"], wanted[0]["status"]) == (1, "OFFLINE_SOFT")
    recovering = desired_rows(CURRENT, 10, 20, ClusterState("c", "h:1", 1, phase="recovering"), [])
    assert [(r["hostgroup_id"], r["status"]) for r in recovering] == [(10, "OFFLINE_SOFT")]


def test_the_fifth_failover_is_computed_like_the_first() -> None:
    """Only the published state and the replicas decide: whatever the ProxySQL holds now."""
    messy = [row(10, 1), row(10, 2), row(10, 7, "SHUNNED"), row(20, 1), row(20, 4)]
    for current in (CURRENT, messy, []):
        wanted = desired_rows(current, 10, 20, ClusterState("c", "h:4", 9), ["h:5"])
        assert [(r["hostgroup_id"], r["port"], r["status"]) for r in wanted] == [(10, 4, "ONLINE"), (20, 5, "ONLINE")]


def test_runtime_check() -> None:
    wanted = desired_rows(CURRENT, 10, 20, ClusterState("c", "h:2", 2), ["h:3"])
    runtime = [row(10, 2), row(20, 3), row(20, 2)]  # writer_is_also_reader added the writer to the readers
    assert runtime_matches(runtime, wanted, 10, 20)
    assert not runtime_matches([row(10, 2), row(10, 1), row(20, 3)], wanted, 10, 20)
    assert not runtime_matches([row(10, 2, "OFFLINE_SOFT"), row(20, 3)], wanted, 10, 20)
    assert not runtime_matches([row(10, 2)], wanted, 10, 20)


def test_statements_are_proxysql_admin_sql() -> None:
    wanted = desired_rows(CURRENT, 10, 20, ClusterState("c", "h:2", 2), [])
    assert rewrite_statements(wanted, 10, 20) == [
        "DELETE FROM mysql_servers WHERE hostgroup_id IN (10, 20)",
        "INSERT INTO mysql_servers (hostgroup_id, hostname, port, status, weight, max_replication_lag, comment) "
        "VALUES (10, 'h', 2, 'ONLINE', 5, 0, 'node1')",
        "LOAD MYSQL SERVERS TO RUNTIME",
        "SAVE MYSQL SERVERS TO DISK",
    ]
    quoted = desired_rows([row(20, 2, comment="it's")], 10, 20, ClusterState("c", "h:2", 2), [])
    assert rewrite_statements(quoted, 10, 20)[1].endswith("VALUES (10, 'h', 2, 'ONLINE', 1, 0, 'it\\'s')")


def test_configuration() -> None:
    settings = ManagerSettings.from_mapping({"proxysql": [
        {"address": "10.0.0.5:6032", "user": "radmin", "password": "x", "writer_hostgroup": 10,
         "reader_hostgroup": 20, "cluster": "main", "name": "px1"},
        {"address": "10.0.0.6:6032"},
    ]})
    assert settings.ProxySQL == (ProxySQLTarget("10.0.0.5:6032", "radmin", "x", "main", 10, 20, "px1"),
                                 ProxySQLTarget("10.0.0.6:6032"))
    assert settings.ProxySQL[1].label == "10.0.0.6:6032"
    assert parse_targets([]) == ()
    for bad, message in [
        ({"address": "nohost"}, "expected HOST:PORT"),
        ({}, "address"),
        ({"address": "h:1", "writer_hostgroup": 10}, "give both"),
        ({"address": "h:1", "writer_hostgroup": 10, "reader_hostgroup": 10}, "give both"),
        ({"address": "h:1", "writer_hostgroup": "10", "reader_hostgroup": 20}, "hostgroup numbers"),
        ({"address": "h:1", "port": 1}, "unknown key port"),
    ]:
        with pytest.raises((SettingsError, ValueError), match=message):
            ManagerSettings.from_mapping({"proxysql": [bad]})
    with pytest.raises(SettingsError, match="array of tables"):
        ManagerSettings.from_mapping({"proxysql": {"address": "h:1"}})


def test_toml_array_of_tables(tmp_path: Any) -> None:
    from turnout.manager.settings import load

    path = tmp_path / "turnout.toml"
    path.write_text('[manager]\nInstancePollSeconds = 2\n\n[[manager.proxysql]]\naddress = "127.0.0.1:6032"\n\n'
                    '[[manager.proxysql]]\naddress = "127.0.0.1:7032"\nwriter_hostgroup = 1\nreader_hostgroup = 2\n')
    settings = load(path)
    assert [(t.address, t.writer_hostgroup) for t in settings.ProxySQL] == [("127.0.0.1:6032", None),
                                                                               ("127.0.0.1:7032", 1)]
