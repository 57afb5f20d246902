"""Classifying admin statements: every LOAD/SAVE alias of ProxySQL, SHOW, probes, SET, refusals."""

from __future__ import annotations

import pytest

from turnout.admin import sql
from turnout.admin.modules import MODULES, Direction

ALIASES = {
    Direction.MEMORY_TO_RUNTIME: ["LOAD {m} TO RUNTIME", "LOAD {m} TO RUN", "LOAD {m} FROM MEMORY", "LOAD {m} FROM MEM"],
    Direction.RUNTIME_TO_MEMORY: ["SAVE {m} TO MEMORY", "SAVE {m} TO MEM", "SAVE {m} FROM RUNTIME", "SAVE {m} FROM RUN"],
    Direction.DISK_TO_MEMORY: ["LOAD {m} TO MEMORY", "LOAD {m} TO MEM", "LOAD {m} FROM DISK"],
    Direction.MEMORY_TO_DISK: ["SAVE {m} TO DISK", "SAVE {m} FROM MEMORY", "SAVE {m} FROM MEM"],
    Direction.CONFIG_TO_MEMORY: ["LOAD {m} FROM CONFIG"],
}
FORMS = [(module, direction, form) for module in MODULES for direction, forms in ALIASES.items() for form in forms]


@pytest.mark.parametrize(("module", "direction", "form"), FORMS)
def test_every_load_save_alias(module: str, direction: Direction, form: str) -> None:
    text = form.format(m=module)
    assert sql.classify(text) == sql.LoadSave(module, direction)
    assert sql.classify(f"  {text.lower()} ;") == sql.LoadSave(module, direction)
    assert sql.classify(text.replace(" ", "   \n")) == sql.LoadSave(module, direction)


@pytest.mark.parametrize(
    "text",
    ["LOAD MYSQL SERVERS TO DISK", "SAVE MYSQL SERVERS TO RUNTIME", "SAVE MYSQL USERS FROM DISK",
     "SAVE SCHEDULER TO CONFIG", "LOAD MYSQL SERVER TO RUNTIME", "LOAD MYSQL QUERY RULES"],
)
def test_invalid_load_save_forms_are_refused(text: str) -> None:
    statement = sql.classify(text)
    assert isinstance(statement, sql.Refused)
    assert "LOAD" in statement.message


def test_show_statements() -> None:
    assert sql.classify("SHOW TABLES") == sql.ShowTables(None, None)
    assert sql.classify("show tables from stats") == sql.ShowTables("stats", None)
    assert sql.classify("SHOW TABLES LIKE 'runtime%'") == sql.ShowTables(None, "'runtime%'")
    assert sql.classify("SHOW DATABASES") == sql.ShowDatabases()
    assert sql.classify("SHOW CREATE TABLE main.mysql_servers") == sql.ShowCreateTable("main.mysql_servers")
    assert sql.classify("SHOW CREATE TABLE `mysql_servers`") == sql.ShowCreateTable("mysql_servers")
    assert sql.classify("SHOW VARIABLES") == sql.ShowVariables("", None)
    assert sql.classify("SHOW MYSQL VARIABLES") == sql.ShowVariables("mysql-", None)
    assert sql.classify("SHOW ADMIN VARIABLES") == sql.ShowVariables("admin-", None)
    assert sql.classify("SHOW VARIABLES LIKE 'mysql-monitor%'") == sql.ShowVariables("", "'mysql-monitor%'")
    assert sql.classify("SHOW WARNINGS") == sql.ShowWarnings()
    assert isinstance(sql.classify("SHOW FULL PROCESSLIST"), sql.Rewritten)
    assert isinstance(sql.classify("SHOW MYSQL STATUS"), sql.Rewritten)


def test_probes_clients_send() -> None:
    assert sql.classify("select @@version_comment limit 1") == sql.Probe((("@@version_comment", "@@version_comment"),))
    assert sql.classify("SELECT @@session.auto_increment_increment AS auto_increment_increment, @@version") == sql.Probe(
        (("@@session.auto_increment_increment", "auto_increment_increment"), ("@@version", "@@version"))
    )
    assert sql.classify("SELECT DATABASE()") == sql.Probe((("DATABASE()", "DATABASE()"),))
    assert isinstance(sql.classify("SELECT 1"), sql.Sql)
    assert isinstance(sql.classify("SELECT max(rule_id) FROM mysql_query_rules"), sql.Sql)


@pytest.mark.parametrize(
    "text",
    ["SET NAMES utf8mb4", "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_general_ci'", "SET autocommit=1",
     "SET @@session.autocommit = OFF", "SET SQL_MODE='STRICT_TRANS_TABLES'", "SET character_set_results = NULL",
     "BEGIN", "START TRANSACTION", "COMMIT", "ROLLBACK", "USE main", "PROXYSQL FLUSH LOGS",
     "proxysql flush query cache", "/* comment */ SET NAMES latin1"],
)
def test_harmless_statements_are_accepted(text: str) -> None:
    assert isinstance(sql.classify(text), sql.Ignored)


def test_set_of_a_proxysql_variable_edits_global_variables() -> None:
    assert sql.classify("SET mysql-monitor_ping_interval = 2000") == sql.SetVariable(
        "mysql-monitor_ping_interval", "2000"
    )
    assert sql.classify("SET admin-admin_credentials='admin:admin;radmin:pw'") == sql.SetVariable(
        "admin-admin_credentials", "admin:admin;radmin:pw"
    )


@pytest.mark.parametrize(
    "text",
    ["INSERT INTO runtime_mysql_servers (hostgroup_id, hostname) VALUES (1, 'h')",
     "UPDATE main.runtime_global_variables SET variable_value = 'x'", "DELETE FROM runtime_scheduler",
     "DELETE FROM turnout_pending_changes", "DROP TABLE mysql_servers", "ALTER TABLE mysql_servers ADD x INT",
     "ATTACH DATABASE '/tmp/x' AS y", "PRAGMA writable_schema = 1", "PROXYSQL SHUTDOWN"],
)
def test_refused(text: str) -> None:
    assert isinstance(sql.classify(text), sql.Refused)


def test_writes_name_their_table() -> None:
    assert sql.classify("INSERT INTO mysql_servers(hostgroup_id,hostname) VALUES (1,'h')").writes == "mysql_servers"
    assert sql.classify("REPLACE INTO main.mysql_users (username) VALUES ('u')").writes == "mysql_users"
    assert sql.classify("UPDATE global_variables SET variable_value=1").writes == "global_variables"
    assert sql.classify("TRUNCATE TABLE stats_mysql_query_digest") == sql.Sql(
        "DELETE FROM stats_mysql_query_digest", writes="stats_mysql_query_digest"
    )
    assert sql.classify("SELECT * FROM mysql_servers").writes is None
