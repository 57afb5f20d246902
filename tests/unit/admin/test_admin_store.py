"""The three layers: every LOAD/SAVE form moves what it should, invalid memory never reaches
runtime (nothing half-applied), and edits not in force are reported."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest

from turnout.admin.modules import MODULES, Direction
from turnout.admin.schema import MYSQL_USERS
from turnout.admin.session import AdminSession, Ok, ResultSet
from turnout.admin.sql import DIRECTIONS
from turnout.admin.store import AdminError, AdminStore, Providers
from turnout.config.file import ConfigFile
from turnout.config.model import (
    MysqlServer,
    MysqlUser,
    ProxysqlServer,
    QueryRule,
    ReplicationHostgroup,
    RuntimeConfig,
    SchedulerJob,
)

# Every alias (test_admin_sql checks DIRECTIONS against ProxySQL's list written out by hand).
FORMS = [
    (module, direction, f"{verb} {{m}} {prep} {place}")
    for module in MODULES
    for (verb, prep, place), direction in DIRECTIONS.items()
]


@dataclass(frozen=True)
class Case:
    edit: str  # puts `marker` in memory
    undo: str  # takes it out again
    memory: str  # a query whose rows contain `marker` when memory has it
    runtime: Callable[[RuntimeConfig], list[object]]
    marker: object
    config: ConfigFile


CASES = {
    "MYSQL SERVERS": Case(
        "INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (10, 'db1', 3306)",
        "DELETE FROM mysql_servers",
        "SELECT hostname FROM {schema}.mysql_servers",
        lambda c: [s.hostname for s in c.servers],
        "db1",
        ConfigFile(servers=(MysqlServer(10, "db1"),)),
    ),
    "MYSQL USERS": Case(
        "INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('app', 'pw', 10)",
        "DELETE FROM mysql_users",
        "SELECT username FROM {schema}.mysql_users",
        lambda c: [u.username for u in c.users],
        "app",
        ConfigFile(users=(MysqlUser("app", "pw", default_hostgroup=10),)),
    ),
    "MYSQL QUERY RULES": Case(
        "INSERT INTO mysql_query_rules (rule_id, active, match_digest, destination_hostgroup, apply) "
        "VALUES (7, 1, '^SELECT', 20, 1)",
        "DELETE FROM mysql_query_rules",
        "SELECT rule_id FROM {schema}.mysql_query_rules",
        lambda c: [r.rule_id for r in c.query_rules],
        7,
        ConfigFile(query_rules=(QueryRule(7, active=1, match_digest="^SELECT", destination_hostgroup=20, apply=1),)),
    ),
    "MYSQL VARIABLES": Case(
        "UPDATE global_variables SET variable_value = '2500' WHERE variable_name = 'mysql-monitor_ping_interval'",
        "UPDATE global_variables SET variable_value = '8000' WHERE variable_name = 'mysql-monitor_ping_interval'",
        "SELECT variable_value FROM {schema}.global_variables WHERE variable_name = 'mysql-monitor_ping_interval'",
        lambda c: [c.variables["mysql-monitor_ping_interval"]],
        "2500",
        ConfigFile(variables=MappingProxyType({"mysql-monitor_ping_interval": "2500"})),
    ),
    "ADMIN VARIABLES": Case(
        "UPDATE global_variables SET variable_value = '500' WHERE variable_name = 'admin-refresh_interval'",
        "UPDATE global_variables SET variable_value = '2000' WHERE variable_name = 'admin-refresh_interval'",
        "SELECT variable_value FROM {schema}.global_variables WHERE variable_name = 'admin-refresh_interval'",
        lambda c: [c.variables["admin-refresh_interval"]],
        "500",
        ConfigFile(variables=MappingProxyType({"admin-refresh_interval": "500"})),
    ),
    "SCHEDULER": Case(
        "INSERT INTO scheduler (id, interval_ms, filename) VALUES (3, 1000, '/bin/true')",
        "DELETE FROM scheduler",
        "SELECT id FROM {schema}.scheduler",
        lambda c: [j.id for j in c.scheduler],
        3,
        ConfigFile(scheduler=(SchedulerJob(3, interval_ms=1000, filename="/bin/true"),)),
    ),
    "PROXYSQL SERVERS": Case(
        "INSERT INTO proxysql_servers (hostname, port, weight) VALUES ('peer1', 6032, 1)",
        "DELETE FROM proxysql_servers",
        "SELECT hostname FROM {schema}.proxysql_servers",
        lambda c: [p.hostname for p in c.proxysql_servers],
        "peer1",
        ConfigFile(proxysql_servers=(ProxysqlServer("peer1", weight=1),)),
    ),
}
assert set(CASES) == set(MODULES)


class Harness:
    def __init__(self, datadir: Path, config: ConfigFile | None = None, providers: Providers | None = None) -> None:
        self.delivered: list[RuntimeConfig] = []
        self.store = AdminStore(datadir, on_runtime=self.delivered.append, config=lambda: config, providers=providers)
        self.session = AdminSession(self.store)

    def run(self, text: str) -> ResultSet | Ok:
        return self.session.execute(text)

    def rows(self, text: str) -> list[tuple[object, ...]]:
        answer = self.run(text)
        assert isinstance(answer, ResultSet)
        return answer.rows

    def has(self, case: Case, where: str) -> bool:
        if where == "runtime":
            return case.marker in case.runtime(self.store.runtime)
        return any(case.marker in row for row in self.rows(case.memory.format(schema=where)))


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def factory(config: ConfigFile | None = None, providers: Providers | None = None) -> Harness:
        harness = Harness(tmp_path / f"data{len(made)}", config, providers)
        made.append(harness)
        return harness

    yield factory
    for harness in made:
        harness.store.close()


@pytest.mark.parametrize(("module", "direction", "form"), FORMS)
def test_every_form_moves_its_module(make: Callable[..., Harness], module: str, direction: Direction,
                                     form: str) -> None:
    case = CASES[module]
    h = make(config=case.config)
    statement = form.format(m=module)
    if direction is Direction.MEMORY_TO_RUNTIME:
        h.run(case.edit)
        assert not h.has(case, "runtime")
        h.run(statement)
        assert h.has(case, "runtime")
        assert h.delivered[-1] is h.store.runtime and h.store.runtime.version == 1
    elif direction is Direction.MEMORY_TO_DISK:
        h.run(case.edit)
        h.run(statement)
        assert h.has(case, "disk") and not h.has(case, "runtime")
    elif direction is Direction.DISK_TO_MEMORY:
        h.run(case.edit)
        h.run(f"SAVE {module} TO DISK")
        h.run(case.undo)
        assert not h.has(case, "main")
        h.run(statement)
        assert h.has(case, "main")
    elif direction is Direction.RUNTIME_TO_MEMORY:
        h.run(case.edit)
        h.run(f"LOAD {module} TO RUNTIME")
        h.run(case.undo)
        assert not h.has(case, "main")
        h.run(statement)
        assert h.has(case, "main")
    else:
        assert not h.has(case, "main")
        h.run(statement)
        assert h.has(case, "main") and not h.has(case, "runtime")


@pytest.mark.parametrize("module", list(MODULES))
def test_other_modules_stay_as_they_are(make: Callable[..., Harness], module: str) -> None:
    h = make()
    for case in CASES.values():
        h.run(case.edit)
    h.run(f"LOAD {module} TO RUNTIME")
    h.run(f"SAVE {module} TO DISK")
    for name, case in CASES.items():
        assert h.has(case, "runtime") == (name == module)
        assert h.has(case, "disk") == (name == module)


def test_load_from_config_merges_like_proxysql(make: Callable[..., Harness]) -> None:
    h = make(config=ConfigFile(servers=(MysqlServer(10, "db1", comment="from file"),)))
    h.run("INSERT INTO mysql_servers (hostgroup_id, hostname, comment) VALUES (10, 'db1', 'by hand')")
    h.run("INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (20, 'db2')")
    h.run("LOAD MYSQL SERVERS FROM CONFIG")
    assert h.rows("SELECT hostgroup_id, hostname, comment FROM mysql_servers ORDER BY hostgroup_id") == [
        (10, "db1", "from file"),
        (20, "db2", ""),
    ]


def test_load_from_config_without_a_file(make: Callable[..., Harness]) -> None:
    with pytest.raises(AdminError, match="no configuration file"):
        make().run("LOAD MYSQL SERVERS FROM CONFIG")


def test_one_load_delivers_one_new_version(make: Callable[..., Harness]) -> None:
    h = make()
    h.run(CASES["MYSQL SERVERS"].edit)
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    assert [c.version for c in h.delivered] == [1, 2]
    assert h.delivered[1].servers == (MysqlServer(10, "db1"),)
    assert h.delivered[1].variables["mysql-monitor_ping_interval"] == "8000"


def test_lower_case_status_is_put_in_force_upper_case(make: Callable[..., Harness]) -> None:
    h = make()
    h.run("INSERT INTO mysql_servers (hostgroup_id, hostname, status) VALUES (1, 'h', 'offline_soft')")
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    assert h.store.runtime.servers[0].status == "OFFLINE_SOFT"


# --- rejected values ---------------------------------------------------------------------------

REFUSED_AT_EDIT = [
    ("INSERT INTO mysql_servers (hostgroup_id, hostname, status) VALUES (1, 'h', 'DOWN')", "CHECK constraint"),
    ("INSERT INTO mysql_servers (hostgroup_id, hostname, port) VALUES (1, 'h', -1)", "CHECK constraint"),
    ("INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (1, 1)", "CHECK"),
    ("INSERT INTO scheduler (interval_ms, filename) VALUES (1, 'x')", "CHECK constraint"),
    ("SET mysql-no_such_thing = 1", "unknown variable"),
    ("INSERT INTO runtime_mysql_servers (hostgroup_id, hostname) VALUES (1, 'h')", "cannot be edited"),
    ("SELECT * FROM no_such_table", "no such table"),
    ("SELECT 1; SELECT 2", "one statement"),
]


@pytest.mark.parametrize(("statement", "message"), REFUSED_AT_EDIT)
def test_refused_at_edit(make: Callable[..., Harness], statement: str, message: str) -> None:
    h = make()
    before = h.rows("SELECT * FROM mysql_servers"), h.rows("SELECT * FROM global_variables")
    with pytest.raises(AdminError, match=message):
        h.run(statement)
    assert (h.rows("SELECT * FROM mysql_servers"), h.rows("SELECT * FROM global_variables")) == before


REFUSED_AT_LOAD = [
    (
        "MYSQL SERVERS",
        [
            "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (10, 20)",
            "INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (20, 30)",
        ],
        "hostgroup 20 is also a reader_hostgroup",
    ),
    ("MYSQL SERVERS", ["INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES ('ten', 'h')"],
     "hostgroup_id must be an integer"),
    ("MYSQL SERVERS", ["INSERT INTO mysql_servers (hostgroup_id, hostname, max_connections) VALUES (1, 'h', 'lots')"],
     "max_connections must be an integer"),
    ("MYSQL SERVERS", ["INSERT INTO mysql_servers (hostgroup_id, hostname) VALUES (1, ' ')"],
     "hostname must not be empty"),
    ("MYSQL QUERY RULES", ["INSERT INTO mysql_query_rules (rule_id, match_digest) VALUES (1, '^SELECT (')"],
     "not a valid regular expression"),
    ("MYSQL QUERY RULES", ["INSERT INTO mysql_query_rules (rule_id, re_modifiers) VALUES (1, 'CASELESS,UNICODE')"],
     "re_modifiers UNICODE unknown"),
    ("MYSQL USERS", ["INSERT INTO mysql_users (username, default_hostgroup) VALUES ('u', -1)"],
     "default_hostgroup -1 is outside"),
    ("MYSQL VARIABLES", ["INSERT INTO global_variables VALUES ('mysql-no_such_thing', '1')"], "unknown variable"),
    ("MYSQL VARIABLES",
     ["UPDATE global_variables SET variable_value = 'often' WHERE variable_name = 'mysql-monitor_ping_interval'"],
     "is not an integer"),
    ("MYSQL VARIABLES",
     ["UPDATE global_variables SET variable_value = 'nowhere' WHERE variable_name = 'mysql-interfaces'"],
     "is not host:port"),
    ("ADMIN VARIABLES",
     ["UPDATE global_variables SET variable_value = 'admin' WHERE variable_name = 'admin-admin_credentials'"],
     "is not user:password"),
    ("SCHEDULER", ["INSERT INTO scheduler (id, interval_ms, filename) VALUES (1, 1000, '')"],
     "filename must not be empty"),
]


@pytest.mark.parametrize(("module", "statements", "message"), REFUSED_AT_LOAD)
def test_refused_at_load_nothing_half_applied(make: Callable[..., Harness], module: str, statements: list[str],
                                              message: str) -> None:
    h = make()
    # A valid edit of the same module and of another, loaded together: neither may reach runtime.
    valid = CASES[module]
    if module not in ("MYSQL VARIABLES", "ADMIN VARIABLES"):
        h.run(valid.edit)
    for statement in statements:
        h.run(statement)
    before = h.store.runtime
    with pytest.raises(AdminError, match=message) as caught:
        h.run(f"LOAD {module} TO RUNTIME")
    assert "nothing changed" in str(caught.value)
    assert h.store.runtime is before and h.delivered == []
    with pytest.raises(AdminError, match=message):
        h.store.load_all_to_runtime()
    assert h.store.runtime is before and h.delivered == []


def test_a_refusing_callback_leaves_runtime_as_it_was(tmp_path: Path) -> None:
    def refuse(config: RuntimeConfig) -> None:
        raise RuntimeError("the data path is not ready")

    store = AdminStore(tmp_path, on_runtime=refuse)
    session = AdminSession(store)
    session.execute(CASES["MYSQL SERVERS"].edit)
    with pytest.raises(AdminError, match="not ready"):
        session.execute("LOAD MYSQL SERVERS TO RUNTIME")
    assert store.runtime.version == 0 and store.runtime.servers == ()
    store.close()


# --- memory differs from runtime ---------------------------------------------------------------


def test_edits_not_in_force_are_reported(make: Callable[..., Harness]) -> None:
    h = make()
    answer = h.run(CASES["MYSQL SERVERS"].edit)
    assert isinstance(answer, Ok) and answer.affected_rows == 1
    assert answer.warnings == (
        "mysql_servers differs from runtime (1 added): run LOAD MYSQL SERVERS TO RUNTIME to apply "
        "(SAVE MYSQL SERVERS TO MEMORY discards the edits)",
    )
    assert h.rows("SHOW WARNINGS") == [("Warning", 1105, answer.warnings[0])]
    assert h.rows("SELECT module, table_name, change, row_key FROM turnout_pending_changes") == [
        ("MYSQL SERVERS", "mysql_servers", "added", "10/db1/3306")
    ]
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    assert h.rows("SELECT * FROM turnout_pending_changes") == []
    answer = h.run("UPDATE mysql_servers SET status = 'OFFLINE_SOFT'")
    assert isinstance(answer, Ok) and len(answer.warnings) == 1
    assert h.rows("SELECT change, memory, runtime FROM turnout_pending_changes") == [
        ("changed", "status='OFFLINE_SOFT'", "status='ONLINE'")
    ]
    answer = h.run("SAVE MYSQL SERVERS TO MEMORY")  # discards the edit
    assert isinstance(answer, Ok) and answer.warnings == ()
    assert h.rows("SELECT * FROM turnout_pending_changes") == []


def test_variables_differences(make: Callable[..., Harness]) -> None:
    h = make()
    answer = h.run("SET mysql-monitor_ping_interval = 2500")
    assert isinstance(answer, Ok) and "LOAD MYSQL VARIABLES TO RUNTIME" in answer.warnings[0]
    assert h.rows("SELECT row_key, memory, runtime FROM turnout_pending_changes") == [
        ("mysql-monitor_ping_interval", "2500", "8000")
    ]


# --- providers ---------------------------------------------------------------------------------


def test_runtime_servers_show_what_the_monitor_made_of_them(make: Callable[..., Harness]) -> None:
    effective = [MysqlServer(9010, "db1", status="SHUNNED", comment="not replicating")]
    h = make(providers=Providers(runtime_servers=lambda: effective))
    h.run(CASES["MYSQL SERVERS"].edit)
    h.run("INSERT INTO mysql_replication_hostgroups (writer_hostgroup, reader_hostgroup) VALUES (10, 20)")
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    assert h.rows("SELECT hostgroup_id, hostname, status, comment FROM runtime_mysql_servers") == [
        (9010, "db1", "SHUNNED", "not replicating")
    ]
    assert h.rows("SELECT writer_hostgroup, reader_hostgroup FROM runtime_mysql_replication_hostgroups") == [(10, 20)]
    # what the monitor did is not an edit waiting for LOAD
    assert h.rows("SELECT * FROM turnout_pending_changes") == []
    h.run("SAVE MYSQL SERVERS FROM RUNTIME")
    assert h.rows("SELECT hostgroup_id, status FROM mysql_servers") == [(9010, "SHUNNED")]


def test_stats_and_monitor_tables_are_filled_when_read(make: Callable[..., Harness]) -> None:
    asked: list[str] = []

    def stats(table: str) -> list[dict[str, object]] | None:
        asked.append(table)
        if table == "stats_mysql_global":
            return [{"Variable_Name": "Questions", "Variable_Value": str(len(asked))}]
        if table.startswith("stats_mysql_query_digest"):
            return [{"hostgroup": 20, "schemaname": "db", "username": "app", "client_address": "",
                     "digest": "0x1", "digest_text": "SELECT ?", "count_star": 3, "first_seen": 1, "last_seen": 2,
                     "sum_time": 30, "min_time": 5, "max_time": 15, "sum_rows_affected": 0, "sum_rows_sent": 3}]
        return None

    def monitor(table: str) -> list[dict[str, object]]:
        return [{"hostname": "db1", "port": 3306, "time_start_us": 1, "read_only": 1, "success_time_us": 10}]

    h = make(providers=Providers(stats=stats, monitor=monitor))
    assert h.rows("SELECT * FROM stats.stats_mysql_global") == [("Questions", "1")]
    assert h.rows("SELECT Variable_Value FROM stats_mysql_global") == [("2",)]
    assert h.rows("SELECT hostgroup, digest_text, count_star FROM stats_mysql_query_digest") == [(20, "SELECT ?", 3)]
    assert h.rows("SELECT hostname, read_only, error FROM monitor.mysql_server_read_only_log") == [("db1", 1, None)]
    assert h.rows("SHOW MYSQL STATUS") == [("Questions", "4")]
    asked.clear()
    h.run("TRUNCATE TABLE stats_mysql_query_digest")
    assert "stats_mysql_query_digest_reset" in asked


def test_a_failing_provider_costs_one_statement(make: Callable[..., Harness]) -> None:
    def broken(table: str) -> list[dict[str, object]]:
        raise OSError("proxy gone")

    h = make(providers=Providers(stats=broken))
    with pytest.raises(AdminError, match="proxy gone"):
        h.run("SELECT * FROM stats_mysql_connection_pool")
    assert h.rows("SELECT 1") == [(1,)]


def test_disk_survives_a_new_store(tmp_path: Path) -> None:
    first = AdminStore(tmp_path)
    session = AdminSession(first)
    session.execute(CASES["MYSQL SERVERS"].edit)
    session.execute("SAVE MYSQL SERVERS TO DISK")
    first.close()
    second = AdminStore(tmp_path)
    assert second.disk_existed
    second.load_all(Direction.DISK_TO_MEMORY)
    assert second.load_all_to_runtime().servers == (MysqlServer(10, "db1"),)
    second.close()


def test_replication_hostgroups_turnout_columns_reach_runtime(make: Callable[..., Harness]) -> None:
    h = make()
    h.run("INSERT INTO mysql_replication_hostgroups VALUES (10, 20, 'read_only', 'c1')")
    h.run("INSERT INTO mysql_replication_hostgroups VALUES (30, 40, 'read_only', 'c2')")
    h.run("INSERT INTO turnout_replication_hostgroups VALUES (10, 0, 'keep-current')")
    h.run("INSERT INTO turnout_replication_hostgroups VALUES (50, 0, 'keep-current')")  # no such pair: ignored
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    assert h.store.runtime.replication_hostgroups == (
        ReplicationHostgroup(10, 20, "read_only", "c1", stale_read_protection=0, two_writer_mode="keep-current"),
        ReplicationHostgroup(30, 40, "read_only", "c2"),
    )
    assert h.rows("SELECT * FROM runtime_mysql_replication_hostgroups") == [(10, 20, "read_only", "c1"),
                                                                          (30, 40, "read_only", "c2")]
    assert h.rows("SELECT * FROM runtime_turnout_replication_hostgroups") == [(10, 0, "keep-current")]


def test_replication_hostgroup_settings_from_the_config_file_go_beside_proxysqls_table(
    make: Callable[..., Harness],
) -> None:
    pairs = (ReplicationHostgroup(10, 20, comment="c", two_writer_mode="keep-current"), ReplicationHostgroup(30, 40))
    h = make(ConfigFile(replication_hostgroups=pairs))
    h.run("LOAD MYSQL SERVERS FROM CONFIG")
    assert h.rows("SELECT * FROM mysql_replication_hostgroups") == [(10, 20, "read_only", "c"),
                                                                  (30, 40, "read_only", "")]
    assert h.rows("SELECT * FROM turnout_replication_hostgroups") == [(10, 1, "keep-current")]
    h.run("LOAD MYSQL SERVERS TO RUNTIME")
    h.run("SAVE MYSQL SERVERS TO DISK")
    assert h.rows("SELECT * FROM disk.turnout_replication_hostgroups") == [(10, 1, "keep-current")]
    assert h.store.runtime.replication_hostgroups == pairs


def test_a_disk_written_with_turnouts_old_columns_is_moved_to_the_new_table(tmp_path: Path) -> None:
    import sqlite3

    tmp_path.mkdir(exist_ok=True)
    old = sqlite3.connect(tmp_path / "proxysql.db")
    old.execute(
        "CREATE TABLE mysql_replication_hostgroups (writer_hostgroup INT NOT NULL PRIMARY KEY, reader_hostgroup INT "
        "NOT NULL, check_type VARCHAR NOT NULL DEFAULT 'read_only', comment VARCHAR NOT NULL DEFAULT '', "
        "stale_read_protection INT NOT NULL DEFAULT 1, two_writer_mode VARCHAR NOT NULL DEFAULT 'refuse', "
        "UNIQUE (reader_hostgroup))"
    )
    old.execute("INSERT INTO mysql_replication_hostgroups VALUES (10, 20, 'read_only', 'a', 0, 'refuse')")
    old.execute("INSERT INTO mysql_replication_hostgroups VALUES (30, 40, 'super_read_only', 'b', 1, 'refuse')")
    old.commit()
    old.close()
    store = AdminStore(tmp_path)
    store.load_all(Direction.DISK_TO_MEMORY)
    assert store.load_all_to_runtime().replication_hostgroups == (
        ReplicationHostgroup(10, 20, "read_only", "a", stale_read_protection=0),
        ReplicationHostgroup(30, 40, "super_read_only", "b"),
    )
    assert [r[1] for r in store.db.execute("PRAGMA disk.table_info(mysql_replication_hostgroups)")] == [
        "writer_hostgroup", "reader_hostgroup", "check_type", "comment"
    ]
    store.close()


def test_unhex_inserts_the_hash_proxysql_admin_syncusers_sends(make: Callable[..., Harness]) -> None:
    h = make()
    stored = "*" + "AB" * 20
    h.run(f"INSERT INTO mysql_users (username, password, active, default_hostgroup) "
          f"VALUES ('u', UNHEX('{stored.encode().hex().upper()}'), 1, 10)")
    assert h.rows("SELECT password, HEX(password) FROM mysql_users") == [(stored, stored.encode().hex().upper())]
    assert h.rows("SELECT UNHEX('zz'), UNHEX(NULL), UNHEX('616263')") == [(None, None, "abc")]


def test_load_hashes_clear_passwords_and_runtime_shows_a_row_per_role(make: Callable[..., Harness]) -> None:
    from turnout.protocol.auth import native_password_hash

    h = make()
    h.run("INSERT INTO mysql_users (username, password, default_hostgroup) VALUES ('app', 'secret', 10)")
    h.run("INSERT INTO mysql_users (username, password, active) VALUES ('off', 'x', 0)")
    h.run("LOAD MYSQL USERS TO RUNTIME")
    digest = native_password_hash("secret")
    assert [u.password for u in h.store.runtime.users if u.username == "app"] == [digest]
    assert h.rows("SELECT password FROM mysql_users WHERE username = 'app'") == [("secret",)]  # memory untouched
    assert h.rows("SELECT username, password, backend, frontend FROM runtime_mysql_users ORDER BY backend") == [
        ("app", digest, 0, 1), ("app", digest, 1, 0),
    ]
    assert h.rows("SELECT * FROM turnout_pending_changes") == []  # hashed runtime is what memory means
    h.run("SAVE MYSQL USERS TO MEMORY")  # as ProxySQL: the runtime rows, hashed, one per role
    assert h.rows("SELECT username, HEX(password), backend, frontend FROM mysql_users ORDER BY backend") == [
        ("app", digest.encode().hex().upper(), 0, 1), ("app", digest.encode().hex().upper(), 1, 0),
    ]
    h.run("LOAD MYSQL USERS TO RUNTIME")
    assert h.rows("SELECT username, backend, frontend FROM runtime_mysql_users ORDER BY backend") == [
        ("app", 0, 1), ("app", 1, 0),
    ]


def test_hash_passwords_false_keeps_clear_text(make: Callable[..., Harness]) -> None:
    h = make()
    h.run("SET admin-hash_passwords = 'false'")
    h.run("LOAD ADMIN VARIABLES TO RUNTIME")
    h.run("INSERT INTO mysql_users (username, password) VALUES ('app', 'secret')")
    h.run("LOAD MYSQL USERS TO RUNTIME")
    assert [u.password for u in h.store.runtime.users] == ["secret"]


def test_runtime_checksums_values_count_loads(make: Callable[..., Harness]) -> None:
    h = make()
    h.store.load_all_to_runtime()
    names = [row[0] for row in h.rows("SELECT name FROM runtime_checksums_values ORDER BY name")]
    assert names == ["admin_variables", "mysql_query_rules", "mysql_servers", "mysql_servers_v2", "mysql_users",
                     "mysql_variables", "proxysql_servers"]
    before = dict(h.rows("SELECT name, checksum FROM runtime_checksums_values"))
    h.run(CASES["MYSQL USERS"].edit)
    h.run("LOAD MYSQL USERS TO RUNTIME")
    version, checksum = h.rows("SELECT version, checksum FROM runtime_checksums_values WHERE name = 'mysql_users'")[0]
    assert version == 2 and checksum != before["mysql_users"] and str(checksum).startswith("0x")
    assert len(str(checksum)) == 18


def test_galera_and_group_replication_tables_exist_and_stay_empty(make: Callable[..., Harness]) -> None:
    h = make()
    for table in ("mysql_galera_hostgroups", "mysql_group_replication_hostgroups"):
        assert h.rows(f"SELECT * FROM {table}") == []
        assert h.rows(f"SELECT * FROM runtime_{table}") == []
        with pytest.raises(AdminError, match="stays empty"):
            h.run(f"INSERT INTO {table} (writer_hostgroup, backup_writer_hostgroup, reader_hostgroup, "
                  "offline_hostgroup) VALUES (1, 2, 3, 4)")
    assert h.rows("SELECT * FROM runtime_mysql_hostgroup_attributes") == []
    with pytest.raises(AdminError, match="not implemented"):
        h.run("INSERT INTO mysql_hostgroup_attributes (hostgroup_id, multiplex) VALUES (10, 0)")


def test_the_stats_user_sees_the_stats_database_only(make: Callable[..., Harness]) -> None:
    h = make()
    h.store.load_all_to_runtime()
    stats = AdminSession(h.store, user="stats", read_only=True)
    with pytest.raises(AdminError, match="no such table: mysql_users"):
        stats.execute("SELECT * FROM mysql_users")
    # its global_variables is the stats database's own, as in ProxySQL: no credentials there
    assert stats.execute("SELECT * FROM global_variables WHERE variable_name LIKE 'admin-%'") == ResultSet(
        ("variable_name", "variable_value"), []
    )
    with pytest.raises(AdminError, match="no such table"):
        stats.execute("SELECT * FROM disk.mysql_users")
    answer = stats.execute("SHOW VARIABLES")
    assert isinstance(answer, ResultSet) and [row[0] for row in answer.rows] == ["mysql-max_allowed_packet"]
    assert isinstance(stats.execute("SELECT * FROM stats_mysql_connection_pool"), ResultSet)
    assert isinstance(stats.execute("SELECT * FROM monitor.mysql_server_ping_log"), ResultSet)
    tables = stats.execute("SHOW TABLES")
    assert isinstance(tables, ResultSet) and "stats_mysql_users" in [row[0] for row in tables.rows]
    assert "mysql_users" not in [row[0] for row in tables.rows]
    with pytest.raises(AdminError, match="readonly"):
        stats.execute("DELETE FROM stats_mysql_global")
    with pytest.raises(AdminError, match="Command not allowed"):
        stats.execute("PRAGMA table_info(stats_mysql_global)")
    with pytest.raises(AdminError, match="can only read"):
        stats.execute("LOAD MYSQL USERS TO RUNTIME")
    assert stats.execute("SELECT DATABASE()") == ResultSet(("DATABASE()",), [("stats",)])


def test_admin_read_only_refuses_sql_writes_until_proxysql_readwrite(make: Callable[..., Harness]) -> None:
    h = make()
    h.store.load_all_to_runtime()
    h.run("PROXYSQL READONLY")
    assert h.rows("SHOW GLOBAL VARIABLES LIKE 'read_only'") == [("read_only", "ON")]
    assert h.rows("SELECT @@global.read_only") == [(1,)]
    with pytest.raises(AdminError, match="readonly"):
        h.run(CASES["MYSQL SERVERS"].edit)
    with pytest.raises(AdminError, match="readonly"):
        h.run("SET admin-read_only = 'false'")  # as in ProxySQL: only PROXYSQL READWRITE undoes it
    h.run("LOAD MYSQL SERVERS TO RUNTIME")  # LOAD and SAVE still work
    assert h.rows("SELECT COUNT(*) FROM mysql_servers") == [(0,)]  # reads too
    h.run("PROXYSQL READWRITE")
    h.run(CASES["MYSQL SERVERS"].edit)
    assert h.rows("SHOW GLOBAL VARIABLES LIKE 'read_only'") == [("read_only", "OFF")]


def test_show_processlist_is_rewritten_as_proxysql_does(make: Callable[..., Harness]) -> None:
    h = make()
    short = h.run("SHOW PROCESSLIST")
    full = h.run("SHOW FULL PROCESSLIST")
    assert isinstance(short, ResultSet) and isinstance(full, ResultSet)
    assert short.columns == ("SessionID", "user", "db", "hostgroup", "command", "time_ms", "info")
    assert full.columns[:3] == ("ThreadID", "SessionID", "user") and len(full.columns) == 16


def test_users_causal_reads_go_beside_proxysqls_table(make: Callable[..., Harness], tmp_path: Path) -> None:
    h = make()
    h.run("INSERT INTO mysql_users (username, password) VALUES ('app', 'secret'), ('other', 'x')")
    h.run("INSERT INTO turnout_users VALUES ('app', 1)")
    h.run("INSERT INTO turnout_users VALUES ('nobody', 1)")  # no such user: ignored
    h.run("LOAD MYSQL USERS TO RUNTIME")
    by_name = {u.username: u.causal_reads for u in h.store.runtime.users}
    assert by_name == {"app": 1, "other": 0}
    assert h.rows("SELECT username, causal_reads FROM runtime_turnout_users") == [("app", 1)]
    h.run("SAVE MYSQL USERS TO DISK")  # memory as it is, as for ProxySQL's tables
    assert h.rows("SELECT * FROM disk.turnout_users ORDER BY username") == [("app", 1), ("nobody", 1)]
    h.run("DELETE FROM turnout_users")
    h.run("LOAD MYSQL USERS FROM DISK")
    assert h.rows("SELECT * FROM turnout_users ORDER BY username") == [("app", 1), ("nobody", 1)]
    with pytest.raises(Exception, match="CHECK"):
        h.run("INSERT INTO turnout_users VALUES ('other', 2)")


def test_a_disk_file_without_turnout_users_gains_it(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "proxysql.db")
    old.execute(MYSQL_USERS.format(name="mysql_users"))
    old.execute("INSERT INTO mysql_users (username, password) VALUES ('app', 'secret')")
    old.commit()
    old.close()
    store = AdminStore(tmp_path)
    store.load_all(Direction.DISK_TO_MEMORY)
    users = store.load_all_to_runtime().users
    assert [(u.username, u.causal_reads) for u in users] == [("app", 0)]
    store.close()


def test_config_file_users_causal_reads(make: Callable[..., Harness]) -> None:
    h = make(ConfigFile(users=(MysqlUser("app", "secret", causal_reads=1), MysqlUser("other", "x"))))
    h.run("LOAD MYSQL USERS FROM CONFIG")
    assert h.rows("SELECT * FROM turnout_users") == [("app", 1)]
    h.run("LOAD MYSQL USERS TO RUNTIME")
    assert [u.causal_reads for u in h.store.runtime.users] == [1, 0]
