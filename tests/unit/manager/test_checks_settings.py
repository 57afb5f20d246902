"""Replica settings that slow down detection; the [manager] settings table."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.manager.checks import detection_delay, slow_detection
from turnout.manager.settings import ManagerSettings, SettingsError, load
from turnout.topology.model import Instance


def rep(**fields: object) -> Instance:
    values: dict[str, object] = {"master_host": "m", "master_port": 1, "slave_net_timeout": 4.0,
                                 "heartbeat_period": 1.0, "connect_retry": 1}
    values.update(fields)
    return Instance("r", 1, **values)  # type: ignore[arg-type]


def test_detection_delay_and_slow_settings() -> None:
    assert detection_delay(rep()) == 5.0
    assert detection_delay(rep(slave_net_timeout=None)) is None
    assert slow_detection([rep()], 10) == []
    assert slow_detection([Instance("m", 1, slave_net_timeout=600)], 10) == [], "a master is not checked"
    [finding] = slow_detection([rep(slave_net_timeout=60.0, heartbeat_period=30.0)], 10)
    assert (finding.setting, finding.value) == ("slave_net_timeout", 60.0)
    assert "SET GLOBAL slave_net_timeout=5" in finding.message
    [finding] = slow_detection([rep(heartbeat_period=0.0)], 10)
    assert finding.setting == "heartbeat_period" and "off" in finding.message
    [finding] = slow_detection([rep(heartbeat_period=5.0)], 10)
    assert "not below slave_net_timeout" in finding.message
    [finding] = slow_detection([rep(connect_retry=60)], 10)
    assert finding.setting == "connect_retry"
    [finding] = slow_detection([rep(slave_net_timeout=9.0, connect_retry=5)], 10)
    assert (finding.setting, finding.value) == ("detection_delay", 14.0)


def test_settings_defaults_and_keys() -> None:
    s = ManagerSettings.from_mapping({})
    assert (s.ListenAddress, s.InstancePollSeconds, s.RecoveryPeriodBlockSeconds) == ("127.0.0.1:3000", 5.0, 3600.0)
    assert s.listen == ("127.0.0.1", 3000)
    s = ManagerSettings.from_mapping({
        "MySQLTopologyUser": "turnout", "InstancePollSeconds": 1, "PreFailoverProcesses": ["echo {failedHost}"],
        "PromotionRules": {"db2:3306": "prefer"}, "RecoverMasterClusterFilters": ["prod-.*"],
    })
    assert s.InstancePollSeconds == 1.0 and isinstance(s.InstancePollSeconds, float)
    assert s.PreFailoverProcesses == ("echo {failedHost}",)
    assert s.promotion_rules == {"db2:3306": "prefer"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"InstancePollSecs": 1}, "unknown key InstancePollSecs in [manager]; known keys: "),
        ({"a": 1, "b": 2}, "unknown keys a, b"),
        ({"InstancePollSeconds": "5"}, "InstancePollSeconds must be a number"),
        ({"InstancePollSeconds": True}, "InstancePollSeconds must be a number"),
        ({"InstancePollSeconds": 0.5}, "InstancePollSeconds must be 1 or more"),
        ({"MySQLTopologyUser": 5}, "MySQLTopologyUser must be a string"),
        ({"PreFailoverProcesses": "echo"}, "PreFailoverProcesses must be a list of strings"),
        ({"PreFailoverProcesses": [1]}, "PreFailoverProcesses must be a list of strings"),
        ({"PromotionRules": {"h:1": "always"}}, "PromotionRules['h:1'] = 'always'"),
        ({"PromotionRules": ["h:1"]}, "PromotionRules must be a table"),
        ({"ListenAddress": "localhost"}, "ListenAddress must be HOST:PORT"),
        ({"ReplicationFlavor": "oracle"}, "ReplicationFlavor must be"),
        ({"MySQLConnectTimeoutSeconds": 0}, "MySQLConnectTimeoutSeconds must be above 0"),
    ],
)
def test_settings_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as err:
        ManagerSettings.from_mapping(values)
    assert message in str(err.value)


def test_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "turnout.toml"
    path.write_text('[proxy]\nx = 1\n[manager]\nListenAddress = "127.0.0.1:3999"\nInstancePollSeconds = 2\n')
    s = load(path)
    assert (s.listen, s.InstancePollSeconds) == (("127.0.0.1", 3999), 2.0)
    (tmp_path / "bad.toml").write_text("[manager\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load(tmp_path / "bad.toml")
    with pytest.raises(SettingsError, match="cannot read"):
        load(tmp_path / "missing.toml")
