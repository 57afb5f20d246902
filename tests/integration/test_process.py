"""`turnout proxy --config FILE` as a real process: proxy, admin interface and monitor together."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pymysql
import pytest
from prometheus_client.parser import text_string_to_metric_families

from turnout.sandbox.config import APP
from turnout.sandbox.deploy import sandbox_config
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox


def _start_proxy(config: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config), *args],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as an init system stops turnout: it must exit within 15 s."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("turnout did not stop on SIGTERM")


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"turnout exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            pymysql.connect(host="127.0.0.1", port=port, user="admin", password="admin").close()
            return
        except pymysql.err.OperationalError:
            time.sleep(0.1)
    raise AssertionError("turnout did not start listening")


def test_proxy_process_with_admin(sandbox: Sandbox, tmp_path: Path) -> None:
    proxy_port = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(sandbox, tmp_path / "data", proxy_port, proxy_port + 1))
    process = subprocess.Popen(
        [sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
    )
    try:
        _wait_port(proxy_port + 1, process)
        admin = pymysql.connect(host="127.0.0.1", port=proxy_port + 1, user="admin", password="admin", autocommit=True)
        with admin.cursor() as cur:
            deadline = time.monotonic() + 10
            rows: tuple[tuple[object, ...], ...] = ()
            while time.monotonic() < deadline:
                cur.execute("SELECT hostgroup_id, port, status FROM runtime_mysql_servers ORDER BY hostgroup_id, port")
                rows = cur.fetchall()
                if len(rows) == 4:  # the writer is also a reader by default
                    break
                time.sleep(0.1)
            ports = [n.port for n in sandbox.nodes]
            # values come back as text, as from ProxySQL's admin interface
            assert [(int(hg), int(port), status) for hg, port, status in rows] == [
                (10, ports[0], "ONLINE"), (20, ports[0], "ONLINE"), (20, ports[1], "ONLINE"), (20, ports[2], "ONLINE"),
            ]
        app = pymysql.connect(host="127.0.0.1", port=proxy_port, user=APP.user, password=APP.password)
        with app.cursor() as cur:
            cur.execute("SELECT @@port")
            assert cur.fetchone()[0] in ports
        with admin.cursor() as cur:
            cur.execute("SELECT Command, Total_cnt FROM stats_mysql_commands_counters WHERE Command = 'SELECT'")
            assert int(cur.fetchone()[1]) >= 1
            cur.execute("SELECT COUNT(*) FROM stats_mysql_connection_pool")
            assert int(cur.fetchone()[0]) >= 1
            cur.execute("SELECT digest, digest_text, count_star FROM stats_mysql_query_digest "
                        "WHERE digest_text = 'SELECT @@port'")
            digest, _, count = cur.fetchone()
            assert digest.startswith("0x") and int(count) >= 1
            cur.execute("SELECT COUNT(*) FROM stats_mysql_query_digest_reset")
            assert int(cur.fetchone()[0]) >= 1
            cur.execute("SELECT COUNT(*) FROM stats_mysql_query_digest")
            assert int(cur.fetchone()[0]) == 0
        app.close()
        admin.close()
    finally:
        _stop(process)


def _serving_pids(proxy_port: int) -> set[int]:
    """Pids of the processes holding the server side of connections to the proxy's port."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{proxy_port} )"],
                         capture_output=True, text=True, check=True).stdout
    return {int(part.split("pid=")[1].split(",")[0]) for part in out.split() if "pid=" in part}


def test_workers_share_the_port_and_follow_load_to_runtime(sandbox: Sandbox, tmp_path: Path) -> None:
    proxy_port = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(sandbox, tmp_path / "data", proxy_port, proxy_port + 1))
    process = _start_proxy(config, "--workers", "3")
    clients: list[pymysql.connections.Connection] = []  # type: ignore[type-arg]
    try:
        _wait_port(proxy_port + 1, process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(clients) < 30:
            try:
                clients.append(pymysql.connect(host="127.0.0.1", port=proxy_port, user=APP.user, password=APP.password))
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        assert len(clients) == 30
        assert len(_serving_pids(proxy_port)) >= 2, "connections were not spread over the worker processes"
        admin = pymysql.connect(host="127.0.0.1", port=proxy_port + 1, user="admin", password="admin", autocommit=True)
        with admin.cursor() as cur:
            cur.execute("UPDATE mysql_query_rules SET rule_id = rule_id + 10")
            cur.execute("INSERT INTO mysql_query_rules (rule_id, active, match_pattern, error_msg, apply) "
                        "VALUES (1, 1, '^SELECT .turnout-blocked.', 'blocked by a rule', 1)")
            cur.execute("LOAD MYSQL QUERY RULES TO RUNTIME")
        admin.close()
        refused = 0
        for conn in clients:
            with conn.cursor() as cur:
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    try:
                        cur.execute("SELECT 'turnout-blocked'")
                    except pymysql.err.MySQLError as exc:
                        assert "blocked by a rule" in str(exc)
                        refused += 1
                        break
                    time.sleep(0.05)
        assert refused == len(clients)  # every worker put the new rule in force
        _check_stats_cover_every_worker(proxy_port + 1, clients)
    finally:
        for conn in clients:
            conn.close()
        _stop(process)
    assert not _serving_pids(proxy_port)


def _check_stats_cover_every_worker(admin_port: int, clients: list[pymysql.connections.Connection]) -> None:  # type: ignore[type-arg]
    """The admin's stats tables count what every process served (workers report each second)."""
    for conn in clients:
        with conn.cursor() as cur:
            for _ in range(5):
                cur.execute("SELECT 'counted'")
    admin = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin", autocommit=True)
    try:
        with admin.cursor() as cur:
            deadline = time.monotonic() + 10
            while True:
                cur.execute("SELECT SessionID FROM stats_mysql_processlist")
                sessions = [row[0] for row in cur.fetchall()]
                cur.execute("SELECT count_star FROM stats_mysql_query_digest WHERE digest_text LIKE 'SELECT ?%'")
                counted = sum(int(row[0]) for row in cur.fetchall())
                cur.execute("SELECT Variable_Value FROM stats_mysql_global WHERE Variable_Name = 'Client_Connections_connected'")
                connected = int(cur.fetchone()[0])
                if (
                    counted >= 5 * len(clients) and connected >= len(clients) and len(sessions) >= len(clients)
                ) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert len(sessions) >= len(clients) and len(set(sessions)) == len(sessions), sessions
            assert counted >= 5 * len(clients), counted
            assert connected >= len(clients), connected
            cur.execute("SELECT SUM(Queries) FROM stats_mysql_connection_pool")
            assert int(cur.fetchone()[0]) >= 5 * len(clients)
    finally:
        admin.close()


def test_up_without_manager_credentials_says_what_to_do(tmp_path: Path) -> None:
    base = free_port_block(2)
    config = tmp_path / "turnout.toml"
    config.write_text(
        f'datadir = "{tmp_path / "data"}"\n[admin_variables]\nmysql_ifaces = "127.0.0.1:{base + 1}"\n'
        f'[mysql_variables]\ninterfaces = "127.0.0.1:{base}"\n'
    )
    result = subprocess.run([sys.executable, "-m", "turnout.cli", "up", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "MySQLTopologyUser" in result.stderr and "[manager]" in result.stderr


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_prometheus_metrics_count_every_worker_and_follow_the_admin_variables(sandbox: Sandbox, tmp_path: Path) -> None:
    proxy_port = free_port_block(3)
    metrics_port = proxy_port + 2
    config = tmp_path / "turnout.toml"
    config.write_text(sandbox_config(sandbox, tmp_path / "data", proxy_port, proxy_port + 1).replace(
        "[admin_variables]\n",
        f"[admin_variables]\nrestapi_enabled = true\nprometheus_exporter = true\nrestapi_port = {metrics_port}\n",
    ))
    process = _start_proxy(config, "--workers", "2")
    clients: list[pymysql.connections.Connection] = []  # type: ignore[type-arg]
    try:
        _wait_port(proxy_port + 1, process)
        clients = [pymysql.connect(host="127.0.0.1", port=proxy_port, user=APP.user, password=APP.password)
                   for _ in range(8)]
        for conn in clients:
            with conn.cursor() as cur:
                for _ in range(10):
                    cur.execute("SELECT 1")
        deadline = time.monotonic() + 10
        while True:  # the workers report once a second
            samples = _scrape(metrics_port)
            selects = samples.get(("turnout_commands_total", (("command", "SELECT"),)), 0)
            if selects >= 80 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert selects >= 80, samples
        assert samples[("turnout_questions_total", ())] >= 80
        assert samples[("turnout_client_connections_connected", ())] >= 8
        reader_queries = sum(v for (name, labels), v in samples.items()
                             if name == "turnout_pool_queries_total" and ("hostgroup", "20") in labels)
        assert reader_queries >= 80, samples
        for direction in ("sent", "received"):  # counted as connections go back to the pool
            # a server's connection counters are on one of its rows (the master's: its writer
            # hostgroup's), the sum over all rows is what moved
            moved = sum(v for (name, labels), v in samples.items() if name == f"turnout_pool_bytes_{direction}_total")
            assert moved > 80 * 10, (direction, moved)
        assert any(name == "turnout_pool_server_online" and v == 1 for (name, _), v in samples.items())
        latencies = [v for (name, _), v in samples.items() if name == "turnout_pool_latency_seconds"]
        assert latencies and all(0 < v < 1 for v in latencies), latencies  # the monitor's pings

        with pymysql.connect(host="127.0.0.1", port=proxy_port + 1, user="admin", password="admin",
                             autocommit=True) as admin, admin.cursor() as cur:
            cur.execute("UPDATE global_variables SET variable_value = 'false' WHERE variable_name = 'admin-prometheus_exporter'")
            cur.execute("LOAD ADMIN VARIABLES TO RUNTIME")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                _scrape(metrics_port)
            except (urllib.error.URLError, ConnectionError):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the exporter still answers after admin-prometheus_exporter = false")
    finally:
        for conn in clients:
            conn.close()
        _stop(process)
