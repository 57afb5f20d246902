"""A turnout configuration file for a sandbox: what the demo, the tests and the benchmarks run."""

from __future__ import annotations

from pathlib import Path

from turnout.sandbox.config import APP, MANAGER, MONITOR, REPLICATION
from turnout.sandbox.sandbox import Sandbox

WRITER_HOSTGROUP = 10
READER_HOSTGROUP = 20


def sandbox_config(
    box: Sandbox,
    datadir: Path,
    proxy_port: int,
    admin_port: int,
    api_port: int | None = None,
    monitor_interval_ms: int = 500,
    poll_seconds: int = 1,
    state_store: str | None = None,
    bind: str = "127.0.0.1",
) -> str:
    """TOML with proxysql.cnf's sections: writer 10, readers 20, the classic read/write split.

    `bind`: the address the proxy, its admin interface and the manager's API listen on (on a lab
    host, "0.0.0.0" serves both the host's address and its own 127.0.0.1).
    """
    servers = "".join(
        f"""
[[mysql_servers]]
address = "{node.host}"
port = {node.port}
hostgroup = {WRITER_HOSTGROUP if node.index == 0 else READER_HOSTGROUP}
max_replication_lag = 10
comment = "node{node.index}"
"""
        for node in box.nodes
    )
    manager = ""
    if api_port is not None:
        manager = f"""
[manager]
ListenAddress = "{bind}:{api_port}"
MySQLTopologyUser = "{MANAGER.user}"
MySQLTopologyPassword = "{MANAGER.password}"
MySQLReplicaUser = "{REPLICATION.user}"
MySQLReplicaPassword = "{REPLICATION.password}"
InstancePollSeconds = {poll_seconds}
RecoveryPeriodBlockSeconds = 1
"""
    if state_store is not None:
        manager = (manager or "\n[manager]\n") + f'StateStore = "{state_store}"\n'
    return f"""datadir = "{datadir}"

[admin_variables]
admin_credentials = "admin:admin"
mysql_ifaces = "{bind}:{admin_port}"

[mysql_variables]
interfaces = "{bind}:{proxy_port}"
monitor_username = "{MONITOR.user}"
monitor_password = "{MONITOR.password}"
monitor_connect_interval = 2000
monitor_ping_interval = {monitor_interval_ms}
monitor_read_only_interval = {monitor_interval_ms}
monitor_replication_lag_interval = {monitor_interval_ms}
connect_timeout_server_max = 10000

[[mysql_replication_hostgroups]]
writer_hostgroup = {WRITER_HOSTGROUP}
reader_hostgroup = {READER_HOSTGROUP}
comment = "sandbox"
{servers}
[[mysql_users]]
username = "{APP.user}"
password = "{APP.password}"
default_hostgroup = {WRITER_HOSTGROUP}

[[mysql_query_rules]]
rule_id = 1
active = 1
match_digest = "^SELECT.*FOR UPDATE"
destination_hostgroup = {WRITER_HOSTGROUP}
apply = 1

[[mysql_query_rules]]
rule_id = 2
active = 1
match_digest = "^SELECT"
destination_hostgroup = {READER_HOSTGROUP}
apply = 1
{manager}"""
