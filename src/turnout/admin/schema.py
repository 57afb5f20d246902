"""ProxySQL 2.x's admin tables as SQLite DDL: names, columns, defaults and CHECK constraints.

Configuration tables exist three times: in `main` (memory, what the operator edits), as
`main.runtime_<name>` (what is in force, refreshed before every read) and in `disk`
(proxysql.db in the datadir). `stats` and `monitor` hold tables the proxy and the monitor fill.
"""

from __future__ import annotations

from collections.abc import Mapping

MYSQL_SERVERS = """CREATE TABLE {name} (
    hostgroup_id INT CHECK (hostgroup_id>=0) NOT NULL DEFAULT 0,
    hostname VARCHAR NOT NULL,
    port INT CHECK (port >= 0 AND port <= 65535) NOT NULL DEFAULT 3306,
    gtid_port INT CHECK ((gtid_port <> port OR gtid_port=0) AND gtid_port >= 0 AND gtid_port <= 65535) NOT NULL DEFAULT 0,
    status VARCHAR CHECK (UPPER(status) IN ('ONLINE','SHUNNED','OFFLINE_SOFT', 'OFFLINE_HARD')) NOT NULL DEFAULT 'ONLINE',
    weight INT CHECK (weight >= 0 AND weight <=10000000) NOT NULL DEFAULT 1,
    compression INT CHECK (compression IN(0,1)) NOT NULL DEFAULT 0,
    max_connections INT CHECK (max_connections >=0) NOT NULL DEFAULT 1000,
    max_replication_lag INT CHECK (max_replication_lag >= 0 AND max_replication_lag <= 126144000) NOT NULL DEFAULT 0,
    use_ssl INT CHECK (use_ssl IN(0,1)) NOT NULL DEFAULT 0,
    max_latency_ms INT UNSIGNED CHECK (max_latency_ms>=0) NOT NULL DEFAULT 0,
    comment VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (hostgroup_id, hostname, port) )"""

MYSQL_USERS = """CREATE TABLE {name} (
    username VARCHAR NOT NULL,
    password VARCHAR,
    active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 1,
    use_ssl INT CHECK (use_ssl IN (0,1)) NOT NULL DEFAULT 0,
    default_hostgroup INT NOT NULL DEFAULT 0,
    default_schema VARCHAR,
    schema_locked INT CHECK (schema_locked IN (0,1)) NOT NULL DEFAULT 0,
    transaction_persistent INT CHECK (transaction_persistent IN (0,1)) NOT NULL DEFAULT 1,
    fast_forward INT CHECK (fast_forward IN (0,1)) NOT NULL DEFAULT 0,
    backend INT CHECK (backend IN (0,1)) NOT NULL DEFAULT 1,
    frontend INT CHECK (frontend IN (0,1)) NOT NULL DEFAULT 1,
    max_connections INT CHECK (max_connections >=0) NOT NULL DEFAULT 10000,
    attributes VARCHAR CHECK (JSON_VALID(attributes) OR attributes = '') NOT NULL DEFAULT '',
    comment VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (username, backend),
    UNIQUE (username, frontend))"""

MYSQL_QUERY_RULES = """CREATE TABLE {name} (
    rule_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 0,
    username VARCHAR,
    schemaname VARCHAR,
    flagIN INT CHECK (flagIN >= 0) NOT NULL DEFAULT 0,
    client_addr VARCHAR,
    proxy_addr VARCHAR,
    proxy_port INT CHECK (proxy_port >= 0 AND proxy_port <= 65535),
    digest VARCHAR,
    match_digest VARCHAR,
    match_pattern VARCHAR,
    negate_match_pattern INT CHECK (negate_match_pattern IN (0,1)) NOT NULL DEFAULT 0,
    re_modifiers VARCHAR DEFAULT 'CASELESS',
    flagOUT INT CHECK (flagOUT >= 0),
    replace_pattern VARCHAR CHECK(CASE WHEN replace_pattern IS NULL THEN 1 WHEN replace_pattern IS NOT NULL AND match_pattern IS NOT NULL THEN 1 ELSE 0 END),
    destination_hostgroup INT DEFAULT NULL,
    cache_ttl INT CHECK(cache_ttl > 0),
    cache_empty_result INT CHECK (cache_empty_result IN (0,1)) DEFAULT NULL,
    cache_timeout INT CHECK(cache_timeout >= 0),
    reconnect INT CHECK (reconnect IN (0,1)) DEFAULT NULL,
    timeout INT UNSIGNED CHECK (timeout >= 0),
    retries INT CHECK (retries>=0 AND retries <=1000),
    delay INT UNSIGNED CHECK (delay >=0),
    next_query_flagIN INT UNSIGNED,
    mirror_flagOUT INT UNSIGNED,
    mirror_hostgroup INT UNSIGNED,
    error_msg VARCHAR,
    OK_msg VARCHAR,
    sticky_conn INT CHECK (sticky_conn IN (0,1)),
    multiplex INT CHECK (multiplex IN (0,1,2)),
    gtid_from_hostgroup INT UNSIGNED,
    log INT CHECK (log IN (0,1)),
    apply INT CHECK(apply IN (0,1)) NOT NULL DEFAULT 0,
    attributes VARCHAR CHECK (JSON_VALID(attributes) OR attributes = '') NOT NULL DEFAULT '',
    comment VARCHAR)"""

MYSQL_REPLICATION_HOSTGROUPS = """CREATE TABLE {name} (
    writer_hostgroup INT CHECK (writer_hostgroup>=0) NOT NULL PRIMARY KEY,
    reader_hostgroup INT NOT NULL CHECK (reader_hostgroup<>writer_hostgroup AND reader_hostgroup>=0),
    check_type VARCHAR CHECK (LOWER(check_type) IN ('read_only','innodb_read_only','super_read_only','read_only|innodb_read_only','read_only&innodb_read_only')) NOT NULL DEFAULT 'read_only',
    comment VARCHAR NOT NULL DEFAULT '',
    UNIQUE (reader_hostgroup))"""

# turnout's own settings of a replication hostgroup pair, beside ProxySQL's table so its shape stays
# ProxySQL's. A pair without a row here takes the defaults; rows of pairs that do not exist are ignored.
TURNOUT_REPLICATION_HOSTGROUPS = """CREATE TABLE {name} (
    writer_hostgroup INT CHECK (writer_hostgroup>=0) NOT NULL PRIMARY KEY,
    stale_read_protection INT CHECK (stale_read_protection IN (0,1)) NOT NULL DEFAULT 1,
    two_writer_mode VARCHAR CHECK (two_writer_mode IN ('refuse','keep-current')) NOT NULL DEFAULT 'refuse')"""

# turnout's own settings of a frontend user, beside ProxySQL's mysql_users (whose shape stays
# ProxySQL's). A user without a row here takes the defaults; rows of users that do not exist are ignored.
TURNOUT_USERS = """CREATE TABLE {name} (
    username VARCHAR NOT NULL PRIMARY KEY,
    causal_reads INT CHECK (causal_reads IN (0,1)) NOT NULL DEFAULT 0)"""

# Galera and group replication: ProxySQL's tables, kept empty (turnout manages asynchronous replication).
_CLUSTER_HOSTGROUPS = """CREATE TABLE {name} (
    writer_hostgroup INT CHECK (writer_hostgroup>=0) NOT NULL PRIMARY KEY,
    backup_writer_hostgroup INT CHECK (backup_writer_hostgroup>=0 AND backup_writer_hostgroup<>writer_hostgroup) NOT NULL,
    reader_hostgroup INT NOT NULL CHECK (reader_hostgroup<>writer_hostgroup AND backup_writer_hostgroup<>reader_hostgroup AND reader_hostgroup>0),
    offline_hostgroup INT NOT NULL CHECK (offline_hostgroup<>writer_hostgroup AND offline_hostgroup<>reader_hostgroup AND backup_writer_hostgroup<>offline_hostgroup AND offline_hostgroup>=0),
    active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 1,
    max_writers INT NOT NULL CHECK (max_writers >= 0) DEFAULT 1,
    writer_is_also_reader INT CHECK (writer_is_also_reader IN (0,1,2)) NOT NULL DEFAULT 0,
    max_transactions_behind INT CHECK (max_transactions_behind>=0) NOT NULL DEFAULT 0,
    comment VARCHAR,
    UNIQUE (reader_hostgroup),
    UNIQUE (offline_hostgroup),
    UNIQUE (backup_writer_hostgroup))"""
MYSQL_GALERA_HOSTGROUPS = _CLUSTER_HOSTGROUPS
MYSQL_GROUP_REPLICATION_HOSTGROUPS = _CLUSTER_HOSTGROUPS

# ProxySQL 2.6's per-hostgroup settings: the table exists, kept empty (turnout has no such settings yet).
MYSQL_HOSTGROUP_ATTRIBUTES = """CREATE TABLE {name} (
    hostgroup_id INT NOT NULL PRIMARY KEY,
    max_num_online_servers INT CHECK (max_num_online_servers>=0 AND max_num_online_servers <= 1000000) NOT NULL DEFAULT 1000000,
    autocommit INT CHECK (autocommit IN (-1, 0, 1)) NOT NULL DEFAULT -1,
    free_connections_pct INT CHECK (free_connections_pct >= 0 AND free_connections_pct <= 100) NOT NULL DEFAULT 10,
    init_connect VARCHAR NOT NULL DEFAULT '',
    multiplex INT CHECK (multiplex IN (0, 1)) NOT NULL DEFAULT 1,
    connection_warming INT CHECK (connection_warming IN (0, 1)) NOT NULL DEFAULT 0,
    throttle_connections_per_sec INT CHECK (throttle_connections_per_sec >= 1 AND throttle_connections_per_sec <= 1000000) NOT NULL DEFAULT 1000000,
    ignore_session_variables VARCHAR CHECK (JSON_VALID(ignore_session_variables) OR ignore_session_variables = '') NOT NULL DEFAULT '',
    hostgroup_settings VARCHAR CHECK (JSON_VALID(hostgroup_settings) OR hostgroup_settings = '') NOT NULL DEFAULT '',
    servers_defaults VARCHAR CHECK (JSON_VALID(servers_defaults) OR servers_defaults = '') NOT NULL DEFAULT '',
    comment VARCHAR NOT NULL DEFAULT '')"""
UNMANAGED_TABLES = ("mysql_galera_hostgroups", "mysql_group_replication_hostgroups", "mysql_hostgroup_attributes")

PROXYSQL_SERVERS = """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 6032,
    weight INT CHECK (weight >= 0) NOT NULL DEFAULT 0,
    comment VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (hostname, port) )"""

SCHEDULER = """CREATE TABLE {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    active INT CHECK (active IN (0,1)) NOT NULL DEFAULT 1,
    interval_ms INTEGER CHECK (interval_ms>=100 AND interval_ms<=100000000) NOT NULL,
    filename VARCHAR NOT NULL,
    arg1 VARCHAR,
    arg2 VARCHAR,
    arg3 VARCHAR,
    arg4 VARCHAR,
    arg5 VARCHAR,
    comment VARCHAR NOT NULL DEFAULT '')"""

GLOBAL_VARIABLES = """CREATE TABLE {name} (
    variable_name VARCHAR NOT NULL PRIMARY KEY,
    variable_value VARCHAR NOT NULL)"""

# Table name -> DDL template, for the tables that live in memory, runtime and disk.
CONFIG_TABLES: Mapping[str, str] = {
    "mysql_servers": MYSQL_SERVERS,
    "mysql_users": MYSQL_USERS,
    "turnout_users": TURNOUT_USERS,
    "mysql_query_rules": MYSQL_QUERY_RULES,
    "mysql_replication_hostgroups": MYSQL_REPLICATION_HOSTGROUPS,
    "turnout_replication_hostgroups": TURNOUT_REPLICATION_HOSTGROUPS,
    "mysql_galera_hostgroups": MYSQL_GALERA_HOSTGROUPS,
    "mysql_group_replication_hostgroups": MYSQL_GROUP_REPLICATION_HOSTGROUPS,
    "mysql_hostgroup_attributes": MYSQL_HOSTGROUP_ATTRIBUTES,
    "scheduler": SCHEDULER,
    "proxysql_servers": PROXYSQL_SERVERS,
    "global_variables": GLOBAL_VARIABLES,
}

# What LOAD ... TO RUNTIME put in force, per module, as ProxySQL Cluster compares it.
RUNTIME_CHECKSUMS_VALUES = """CREATE TABLE runtime_checksums_values (
    name VARCHAR NOT NULL,
    version INT NOT NULL,
    epoch INT NOT NULL,
    checksum VARCHAR NOT NULL,
    PRIMARY KEY (name))"""

# turnout's own: memory rows that are not in force yet, refreshed before every read.
PENDING_CHANGES = """CREATE TABLE turnout_pending_changes (
    module VARCHAR NOT NULL,
    table_name VARCHAR NOT NULL,
    change VARCHAR CHECK (change IN ('added','removed','changed')) NOT NULL,
    row_key VARCHAR NOT NULL,
    memory VARCHAR,
    runtime VARCHAR)"""

STATS_TABLES: Mapping[str, str] = {
    "stats_mysql_connection_pool": """CREATE TABLE {name} (
    hostgroup INT,
    srv_host VARCHAR,
    srv_port INT,
    status VARCHAR,
    ConnUsed INT,
    ConnFree INT,
    ConnOK INT,
    ConnERR INT,
    MaxConnUsed INT,
    Queries INT,
    Queries_GTID_sync INT,
    Bytes_data_sent INT,
    Bytes_data_recv INT,
    Latency_us INT)""",
    "stats_mysql_commands_counters": """CREATE TABLE {name} (
    Command VARCHAR NOT NULL PRIMARY KEY,
    Total_Time_us INT NOT NULL,
    Total_cnt INT NOT NULL,
    cnt_100us INT NOT NULL,
    cnt_500us INT NOT NULL,
    cnt_1ms INT NOT NULL,
    cnt_5ms INT NOT NULL,
    cnt_10ms INT NOT NULL,
    cnt_50ms INT NOT NULL,
    cnt_100ms INT NOT NULL,
    cnt_500ms INT NOT NULL,
    cnt_1s INT NOT NULL,
    cnt_5s INT NOT NULL,
    cnt_10s INT NOT NULL,
    cnt_INFs INT NOT NULL)""",
    "stats_mysql_query_digest": """CREATE TABLE {name} (
    hostgroup INT,
    schemaname VARCHAR NOT NULL,
    username VARCHAR NOT NULL,
    client_address VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    digest_text VARCHAR NOT NULL,
    count_star INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    sum_time INTEGER NOT NULL,
    min_time INTEGER NOT NULL,
    max_time INTEGER NOT NULL,
    sum_rows_affected INTEGER NOT NULL,
    sum_rows_sent INTEGER NOT NULL,
    PRIMARY KEY(hostgroup, schemaname, username, client_address, digest))""",
    "stats_mysql_global": """CREATE TABLE {name} (
    Variable_Name VARCHAR NOT NULL PRIMARY KEY,
    Variable_Value VARCHAR NOT NULL)""",
    "stats_mysql_processlist": """CREATE TABLE {name} (
    ThreadID INT NOT NULL,
    SessionID INTEGER PRIMARY KEY,
    user VARCHAR,
    db VARCHAR,
    cli_host VARCHAR,
    cli_port INT,
    hostgroup INT,
    l_srv_host VARCHAR,
    l_srv_port INT,
    srv_host VARCHAR,
    srv_port INT,
    command VARCHAR,
    time_ms INT NOT NULL,
    info VARCHAR,
    status_flags INT,
    extended_info VARCHAR)""",
    "stats_mysql_users": """CREATE TABLE {name} (
    username VARCHAR PRIMARY KEY,
    frontend_connections INT NOT NULL,
    frontend_max_connections INT NOT NULL)""",
    "stats_mysql_query_rules": """CREATE TABLE {name} (
    rule_id INTEGER PRIMARY KEY,
    hits INT NOT NULL)""",
    "stats_mysql_errors": """CREATE TABLE {name} (
    hostgroup INT NOT NULL,
    hostname VARCHAR NOT NULL,
    port INT NOT NULL,
    username VARCHAR NOT NULL,
    client_address VARCHAR NOT NULL,
    schemaname VARCHAR NOT NULL,
    errno INT NOT NULL,
    count_star INTEGER NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    last_error VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (hostgroup, hostname, port, username, schemaname, errno) )""",
    # ProxySQL fills it from its binlog readers; turnout from the monitor's replication check (the
    # GTIDs each server was last seen to have applied, which causal reads use; `events` stays 0).
    "stats_mysql_gtid_executed": """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 3306,
    gtid_executed VARCHAR,
    events INT NOT NULL,
    PRIMARY KEY (hostname, port) )""",
    # ProxySQL's stats database has a small global_variables table of its own (what the stats
    # user's SHOW VARIABLES reads).
    "global_variables": """CREATE TABLE {name} (
    variable_name VARCHAR NOT NULL PRIMARY KEY,
    variable_value VARCHAR NOT NULL)""",
}
# Reading a *_reset table returns the counters and zeroes them (the provider does the zeroing).
STATS_TABLES = {
    **STATS_TABLES,
    "stats_mysql_query_digest_reset": STATS_TABLES["stats_mysql_query_digest"],
    "stats_mysql_connection_pool_reset": STATS_TABLES["stats_mysql_connection_pool"],
    "stats_mysql_errors_reset": STATS_TABLES["stats_mysql_errors"],
}

MONITOR_TABLES: Mapping[str, str] = {
    "mysql_server_connect_log": """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 3306,
    time_start_us INT NOT NULL DEFAULT 0,
    connect_success_time_us INT DEFAULT 0,
    connect_error VARCHAR,
    PRIMARY KEY (hostname, port, time_start_us))""",
    "mysql_server_ping_log": """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 3306,
    time_start_us INT NOT NULL DEFAULT 0,
    ping_success_time_us INT DEFAULT 0,
    ping_error VARCHAR,
    PRIMARY KEY (hostname, port, time_start_us))""",
    "mysql_server_read_only_log": """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 3306,
    time_start_us INT NOT NULL DEFAULT 0,
    success_time_us INT DEFAULT 0,
    read_only INT DEFAULT 1,
    error VARCHAR,
    PRIMARY KEY (hostname, port, time_start_us))""",
    "mysql_server_replication_lag_log": """CREATE TABLE {name} (
    hostname VARCHAR NOT NULL,
    port INT NOT NULL DEFAULT 3306,
    time_start_us INT NOT NULL DEFAULT 0,
    success_time_us INT DEFAULT 0,
    repl_lag INT DEFAULT 0,
    error VARCHAR,
    PRIMARY KEY (hostname, port, time_start_us))""",
}


def config_ddl(schema: str, runtime: bool = False) -> list[str]:
    """CREATE statements for the configuration tables of `schema` ("main" or "disk")."""
    prefix = "runtime_" if runtime else ""
    return [ddl.format(name=f"{schema}.{prefix}{table}") for table, ddl in CONFIG_TABLES.items()]


def all_ddl() -> dict[str, list[str]]:
    """Schema name -> CREATE statements, disk excluded (it is created only when missing)."""
    return {
        "main": [*config_ddl("main"), *config_ddl("main", runtime=True), RUNTIME_CHECKSUMS_VALUES, PENDING_CHANGES],
        "stats": [ddl.format(name=f"stats.{table}") for table, ddl in STATS_TABLES.items()],
        "monitor": [ddl.format(name=f"monitor.{table}") for table, ddl in MONITOR_TABLES.items()],
    }


def columns_of(ddl: str) -> list[str]:
    """The column names of a CREATE TABLE template, in order."""
    body = ddl.split("(", 1)[1]
    names = []
    for line in body.splitlines():
        word = line.strip().split(" ", 1)[0]
        if word and word.upper() not in ("PRIMARY", "UNIQUE") and not word.startswith(")"):
            names.append(word)
    return names
