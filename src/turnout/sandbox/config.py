"""What a sandbox server looks like: its my.cnf and the accounts a deployment needs.

Pure functions and constants; nothing here starts a process.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from turnout.certificates import CA_FILE, CERT_FILE, KEY_FILE


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    grants: tuple[str, ...]
    purpose: str


# Every account a turnout deployment needs, with the least privilege that does the job.
# The application account holds nothing that bypasses read_only (no SUPER, no READ_ONLY ADMIN:
# MariaDB 10.11's GRANT ALL includes READ_ONLY ADMIN), or read_only would protect nothing.
APP = Account(
    "app",
    "app_pass",
    (
        "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, "
        "LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, TRIGGER, "
        "REFERENCES, EVENT ON *.*",
    ),
    "applications, through the proxy: data access only, cannot write to a read_only server",
)
MONITOR = Account(
    "monitor",
    "monitor_pass",
    ("USAGE, REPLICATION CLIENT, SLAVE MONITOR ON *.*",),
    "proxy health checks: connect, ping, SELECT @@read_only, SHOW SLAVE STATUS",
)
MANAGER = Account(
    "turnout",
    "turnout_pass",
    (
        "SUPER, PROCESS, RELOAD, REPLICATION SLAVE, REPLICATION CLIENT, SLAVE MONITOR, "
        "REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, READ_ONLY ADMIN, BINLOG ADMIN, "
        "CONNECTION ADMIN ON *.*",
        "SELECT ON mysql.*",
    ),
    "topology manager: discovery, read_only, CHANGE MASTER, killing sessions of a fenced master",
)
REPLICATION = Account(
    "repl",
    "repl_pass",
    ("REPLICATION SLAVE ON *.*",),
    "replicas connecting to their master",
)
ACCOUNTS = (APP, MONITOR, MANAGER, REPLICATION)


def account_sql(account: Account) -> list[str]:
    """CREATE USER and GRANT statements for one account, reachable over TCP from anywhere."""
    sql = [f"CREATE USER IF NOT EXISTS '{account.user}'@'%' IDENTIFIED BY '{account.password}'"]
    sql += [f"GRANT {grant} TO '{account.user}'@'%'" for grant in account.grants]
    return sql


@dataclass(frozen=True)
class NodePaths:
    root: Path

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def cnf(self) -> Path:
        return self.root / "my.cnf"

    @property
    def socket(self) -> Path:
        return self.root / "mariadbd.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.root / "error.log"


def server_cnf(
    paths: NodePaths, port: int, server_id: int, semi_sync: bool, run_as_root: bool, tls_dir: Path | None = None,
    bind_address: str = "127.0.0.1",
) -> str:
    """my.cnf for one sandbox server.

    Small memory footprint (many servers on one small machine), GTID replication with row-based
    binlogs, and replica timeouts short enough that a dead or hung master is noticed in seconds
    (slave_net_timeout=4 as Orchestrator recommends; MariaDB's default of 60 s hides a hung master
    for a minute). Every server starts read_only; the sandbox switches the master to writable.
    innodb_flush_log_at_trx_commit=2 loses nothing when a process is killed (the OS keeps its page
    cache), which is the failure a sandbox simulates.
    """
    lines = [
        "[mariadbd]",
        f"datadir = {paths.datadir}",
        f"socket = {paths.socket}",
        f"pid-file = {paths.pid_file}",
        f"log-error = {paths.error_log}",
        f"port = {port}",
        f"bind-address = {bind_address}",
        "skip-name-resolve = ON",
        f"server_id = {server_id}",
        "read_only = ON",
        "log_bin = mariadb-bin",
        "relay_log = relay-bin",
        "binlog_format = ROW",
        "log_slave_updates = ON",
        "gtid_strict_mode = ON",
        f"report_host = {bind_address}",
        f"report_port = {port}",
        "slave_net_timeout = 4",
        "skip_slave_start = ON",
        "max_connections = 1000",
        "innodb_buffer_pool_size = 32M",
        "innodb_log_file_size = 32M",
        "innodb_log_buffer_size = 4M",
        "innodb_flush_log_at_trx_commit = 2",
        "innodb_use_native_aio = OFF",
        "sync_binlog = 0",
        "performance_schema = OFF",
        "key_buffer_size = 1M",
        "aria_pagecache_buffer_size = 4M",
        "query_cache_size = 0",
        "query_cache_type = OFF",
        "table_open_cache = 400",
        "thread_cache_size = 16",
        "max_allowed_packet = 64M",
        "character_set_server = utf8mb4",
        "collation_server = utf8mb4_general_ci",
    ]
    if semi_sync:
        lines += [
            "rpl_semi_sync_master_enabled = OFF",
            "rpl_semi_sync_slave_enabled = OFF",
            "rpl_semi_sync_master_timeout = 10000",
            "rpl_semi_sync_master_wait_point = AFTER_SYNC",
        ]
    if tls_dir is not None:
        lines += [
            f"ssl_ca = {tls_dir / CA_FILE}",
            f"ssl_cert = {tls_dir / CERT_FILE}",
            f"ssl_key = {tls_dir / KEY_FILE}",
        ]
    if run_as_root:
        lines.append("user = root")
    return "\n".join(lines) + "\n"
