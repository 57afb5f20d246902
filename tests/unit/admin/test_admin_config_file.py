"""The TOML configuration file: proxysql.cnf's sections read into a ConfigFile, and every problem
reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.config.file import ConfigError, load_config, locate, parse
from turnout.config.model import MysqlServer

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "turnout.toml"

GOOD = """\
datadir = "/var/lib/turnout"

[admin_variables]
admin_credentials = "admin:admin;radmin:secret"
mysql_ifaces = "127.0.0.1:16032"

[mysql_variables]
interfaces = "127.0.0.1:16033"
monitor_username = "monitor"
monitor_ping_interval = 2000
monitor_writer_is_also_reader = false

[[mysql_servers]]
address = "10.0.0.1"
port = 3306
hostgroup = 10

[[mysql_servers]]
hostname = "10.0.0.2"
hostgroup_id = 20
max_replication_lag = 5
status = "OFFLINE_SOFT"
comment = "replica"

[[mysql_users]]
username = "app"
password = "*E2D2D4B7D4B5A1E4F6DDEB3D6E1F1C0B8C0F5C0A"
default_hostgroup = 10

[[mysql_query_rules]]
rule_id = 2
active = 1
match_digest = "^SELECT"
destination_hostgroup = 20
apply = 1

[[mysql_query_rules]]
rule_id = 1
active = 1
match_digest = "^SELECT.*FOR UPDATE"
destination_hostgroup = 10
apply = 1

[[mysql_replication_hostgroups]]
writer_hostgroup = 10
reader_hostgroup = 20
comment = "cluster1"
two_writer_mode = "keep-current"

[[scheduler]]
id = 1
interval_ms = 5000
filename = "/bin/true"
arg1 = "x"

[manager]
recovery_period_block_seconds = 3600
[manager.clusters]
c1 = "10.0.0.1:3306"
"""


def test_reads_every_section() -> None:
    config = parse(GOOD)
    assert config.datadir == Path("/var/lib/turnout")
    assert config.servers == (
        MysqlServer(hostgroup_id=10, hostname="10.0.0.1", port=3306),
        MysqlServer(hostgroup_id=20, hostname="10.0.0.2", max_replication_lag=5, status="OFFLINE_SOFT",
                    comment="replica"),
    )
    assert config.users[0].username == "app" and config.users[0].default_hostgroup == 10
    assert [rule.rule_id for rule in config.query_rules] == [2, 1]
    assert config.replication_hostgroups[0].two_writer_mode == "keep-current"
    assert config.replication_hostgroups[0].stale_read_protection == 1
    assert config.scheduler[0].arg1 == "x" and config.scheduler[0].active == 1
    assert config.variables["mysql-monitor_ping_interval"] == "2000"
    assert config.variables["mysql-monitor_writer_is_also_reader"] == "false"
    assert config.variables["admin-mysql_ifaces"] == "127.0.0.1:16032"
    assert config.manager == {"recovery_period_block_seconds": 3600, "clusters": {"c1": "10.0.0.1:3306"}}


def test_runtime_config_orders_rules_and_fills_default_variables() -> None:
    runtime = parse(GOOD).runtime_config()
    assert [rule.rule_id for rule in runtime.query_rules] == [1, 2]
    assert runtime.variable("mysql-monitor_ping_interval", "") == "2000"
    assert runtime.variable("mysql-monitor_read_only_interval", "") == "1000"  # ProxySQL 2.7's default
    assert runtime.variable("mysql-interfaces", "") == "127.0.0.1:16033"


def test_example_file_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.datadir is not None and config.datadir.is_absolute()
    assert {server.hostgroup_id for server in config.servers} == {10, 20}


def _line_of(text: str, needle: str) -> int:
    return next(number for number, line in enumerate(text.splitlines(), 1) if needle in line)


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse(text, source="turnout.toml")
    return caught.value


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('port = 3306', 'port = -1', "port -1 is outside 0..65535"),
        ('port = 3306', 'port = "3306"', "port must be an integer"),
        ('port = 3306', 'prot = 3306', "unknown key 'prot'"),
        ('status = "OFFLINE_SOFT"', 'status = "DOWN"', "status 'DOWN' is not one of"),
        ('max_replication_lag = 5', 'max_replication_lag = -5', "max_replication_lag -5 is outside"),
        ('default_hostgroup = 10', 'default_hostgroup = "ten"', "default_hostgroup must be an integer"),
        ('match_digest = "^SELECT"', 'match_digest = "^SELECT ("', "not a valid regular expression"),
        ('apply = 1\n\n[[mysql_replication', 'apply = 2\n\n[[mysql_replication', "apply must be one of 0, 1"),
        ('reader_hostgroup = 20', 'reader_hostgroup = 10', "reader_hostgroup must differ"),
        ('two_writer_mode = "keep-current"', 'two_writer_mode = "both"', "two_writer_mode 'both'"),
        ('interval_ms = 5000', 'interval_ms = 5', "interval_ms 5 is outside 100..100000000"),
        ('monitor_ping_interval = 2000', 'monitor_ping_intervall = 2000', "unknown variable"),
        ('monitor_ping_interval = 2000', 'monitor_ping_interval = "often"', "is not an integer"),
        ('monitor_writer_is_also_reader = false', 'monitor_writer_is_also_reader = "maybe"', "not a boolean"),
        ('mysql_ifaces = "127.0.0.1:16032"', 'mysql_ifaces = "localhost"', "is not host:port"),
        (
            'admin_credentials = "admin:admin;radmin:secret"',
            'admin_credentials = "admin"',
            "not user:password",
        ),
    ],
)
def test_bad_values_name_their_line(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    text = GOOD.replace(old, new, 1)
    error = _error(text)
    assert len(error.problems) == 1, error.problems
    line, message = error.problems[0]
    assert expected in message
    assert line == _line_of(text, new.split("\n")[0])
    assert f"turnout.toml:{line}: " in str(error)


def test_unknown_section_and_top_level_key() -> None:
    text = GOOD + '\nlogfile = "x"\n'  # after [manager.clusters]: belongs to that table, passed through
    assert parse(text).manager["clusters"]["logfile"] == "x"
    text = 'logdir = "x"\n' + GOOD
    assert _error(text).problems == [(1, "unknown section or key 'logdir'")]
    text = GOOD.replace("[manager]", "[managr]")
    error = _error(text)
    assert error.problems[0][0] == _line_of(text, "[managr]")


def test_missing_required_key_names_the_table() -> None:
    text = GOOD.replace('hostname = "10.0.0.2"\n', "")
    problems = _error(text).problems
    assert len(problems) == 1
    assert "missing address or hostname" in problems[0][1]
    assert problems[0][0] == _line_of(text, "hostgroup_id = 20") - 1  # the second [[mysql_servers]]


def test_hostgroup_both_writer_and_reader_across_rows() -> None:
    text = GOOD + "\n[[mysql_replication_hostgroups]]\nwriter_hostgroup = 20\nreader_hostgroup = 30\n"
    messages = [message for _, message in _error(text).problems]
    assert any("hostgroup 20 is also a reader_hostgroup" in m for m in messages)
    assert any("hostgroup 20 is also a writer_hostgroup" in m for m in messages)


def test_duplicate_server_is_reported() -> None:
    text = GOOD + '\n[[mysql_servers]]\naddress = "10.0.0.1"\nhostgroup = 10\n'
    messages = [message for _, message in _error(text).problems]
    assert any("listed twice" in m for m in messages)


def test_syntax_error_names_the_line() -> None:
    text = GOOD.replace('port = 3306', 'port = = 3306')
    problems = _error(text).problems
    assert problems[0][0] == _line_of(text, "port = = 3306")
    assert "not valid TOML" in problems[0][1]


def test_locate_finds_keys_inside_the_right_table() -> None:
    assert locate(GOOD, "mysql_servers", 1, "hostgroup_id") == _line_of(GOOD, "hostgroup_id = 20")
    assert locate(GOOD, "mysql_servers", 0, "port") == _line_of(GOOD, "port = 3306")
    assert locate(GOOD, "mysql_servers", 1, "port") == _line_of(GOOD, 'hostname = "10.0.0.2"') - 1
    assert locate(GOOD, None, None, "datadir") == 1


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_relative_datadir_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text('datadir = "data"\n')
    assert load_config(tmp_path / "t.toml").datadir == tmp_path / "data"
