"""The Python drivers' own test suites, run directly against MariaDB and through turnout.

For each driver the project installs (PyMySQL, mysql-connector-python, MariaDB Connector/Python,
at the versions pyproject.toml pins), runs the driver's own test suite twice against a fresh
one-server sandbox: once connecting to the server itself, once through a turnout proxy in front of
it (one hostgroup, no read/write split, so every difference is the proxy's). Then compares the
outcome of every test and prints a table; bench/results/driver_suites.json has every test whose
outcome differs, with the failure message, and the reason when it is a known one (README: "What
drivers see: known differences from the server").

The suites' sources are not part of this repository; each run takes a directory holding one:

    python -m bench.driver_suites --pymysql DIR --connector DIR --mariadb DIR [--timeout 60]

- PyMySQL: a clone of its repository (the suite is pymysql/tests). It runs against the
  installed PyMySQL (the pinned version), not the clone's copy of the library.
- mysql-connector-python: its source distribution or repository (unittests.py and tests/, at
  the top or under mysql-connector-python/), run with unittests.py --use-external-server.
- MariaDB Connector/Python: its source distribution or repository (testing/test).

Every suite runs as one account, `suite`, holding ALL PRIVILEGES WITH GRANT OPTION, on the server
and in the proxy's user list, with the databases and extra accounts the suite's own CI prepares.
Each test has --timeout seconds; each suite run --suite-timeout. Exit status: 0 when every
difference is a known one, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from bench.common import (
    BENCH_DIR,
    RESULTS_DIR,
    child,
    install_signal_handlers,
    log,
    machine,
    sandbox,
    tail,
    turnout_executable,
    wait_for_port,
    workdir,
    write_json,
)
from bench.suite_recorder import RESULTS_ENV
from turnout.sandbox.ports import free_port_block
from turnout.sandbox.sandbox import Sandbox

HOSTGROUP = 10


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    grants: tuple[str, ...]


SUITE_ACCOUNT = Account("suite", "suite_pass", ("ALL PRIVILEGES ON *.* TO {who} WITH GRANT OPTION",))


@dataclass(frozen=True)
class Endpoint:
    """Where a suite's clients connect: the server, or the proxy in front of it."""

    target: str  # "direct" or "proxy"
    host: str
    port: int


@dataclass
class SuiteRun:
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    distribution: str  # the installed package whose version is tested
    accounts: tuple[Account, ...]  # made on the server and known to the proxy, besides SUITE_ACCOUNT
    setup_sql: tuple[str, ...]  # run as root on the server before the suite
    prepare: Callable[[Path, Path, Endpoint, int], SuiteRun]  # (source, scratch dir, endpoint, timeout)


def _copy_tree(source: Path, destination: Path) -> None:
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _pytest_argv(paths: Sequence[str], timeout: int, ini: Path) -> list[str]:
    return [
        sys.executable, "-m", "pytest", *paths, "-c", str(ini), "--rootdir", str(ini.parent),
        "-p", "bench.suite_recorder", "-p", "no:cacheprovider", "-q", "-rN", "--no-header",
        "--timeout", str(timeout), "--timeout-method", "signal",
    ]


def _env(results: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": str(BENCH_DIR.parent), RESULTS_ENV: str(results), **extra}


# ---- PyMySQL ---------------------------------------------------------------------------------


def _prepare_pymysql(source: Path, scratch: Path, endpoint: Endpoint, timeout: int) -> SuiteRun:
    """The installed pymysql package with the clone's pymysql/tests added, so the suite runs the
    pinned library; databases.json (what the suite's CI writes) points at the endpoint."""
    tests = source / "pymysql" / "tests"
    if not (tests / "base.py").exists():
        raise SystemExit(f"--pymysql {source}: no pymysql/tests/base.py (a clone of PyMySQL's repository)")
    spec = importlib.util.find_spec("pymysql")
    assert spec is not None and spec.submodule_search_locations
    package = scratch / "pymysql"
    _copy_tree(Path(next(iter(spec.submodule_search_locations))), package)
    _copy_tree(tests, package / "tests")
    (package / "tests" / "databases.json").write_text(json.dumps([
        {"host": endpoint.host, "port": endpoint.port, "user": SUITE_ACCOUNT.user, "password": SUITE_ACCOUNT.password,
         "database": "test1", "use_unicode": True, "local_infile": True},
        {"host": endpoint.host, "port": endpoint.port, "user": "test2", "password": "some password",
         "database": "test2"},
    ], indent=1))
    ini = scratch / "pytest.ini"
    ini.write_text("[pytest]\n")
    results = scratch / "results.jsonl"
    return SuiteRun(_pytest_argv(["pymysql/tests"], timeout, ini), scratch, _env(results))


PYMYSQL = Suite(
    name="PyMySQL",
    distribution="PyMySQL",
    accounts=(Account("test2", "some password", ("ALL ON test2.* TO {who}",)),),
    setup_sql=(  # the suite's ci/docker-entrypoint-initdb.d
        "CREATE DATABASE test1 DEFAULT CHARACTER SET utf8mb4",
        "CREATE DATABASE test2 DEFAULT CHARACTER SET utf8mb4",
        "SET GLOBAL local_infile = ON",
        "INSTALL SONAME 'auth_ed25519'",
        "CREATE FUNCTION ed25519_password RETURNS STRING SONAME 'auth_ed25519.so'",
    ),
    prepare=_prepare_pymysql,
)


# ---- mysql-connector-python ------------------------------------------------------------------


def _connector_root(source: Path) -> Path:
    for root in (source, source / "mysql-connector-python"):
        if (root / "unittests.py").exists() and (root / "tests").is_dir():
            return root
    raise SystemExit(f"--connector {source}: no unittests.py and tests/ (mysql-connector-python's sources)")


def _prepare_connector(source: Path, scratch: Path, endpoint: Endpoint, timeout: int) -> SuiteRun:
    """unittests.py, tests/ and cpydist/ alone (not the library in lib/: the installed connector is the one tested), run
    by bench.suite_recorder against an external server."""
    root = _connector_root(source)
    run_dir = scratch / "connector"
    run_dir.mkdir()
    shutil.copy2(root / "unittests.py", run_dir / "unittests.py")
    _copy_tree(root / "tests", run_dir / "tests")
    _copy_tree(root / "cpydist", run_dir / "cpydist")  # tests/__init__.py imports its helpers
    version = Path("lib", "mysql", "connector", "version.py")  # which cpydist reads
    (run_dir / version).parent.mkdir(parents=True)
    shutil.copy2(root / version, run_dir / version)
    results = scratch / "results.jsonl"
    argv = [
        sys.executable, "-m", "bench.suite_recorder", str(results), str(timeout), str(run_dir / "unittests.py"),
        "--use-external-server", "--skip-install", "--host", endpoint.host, "--port", str(endpoint.port),
        "--user", SUITE_ACCOUNT.user, "--password", SUITE_ACCOUNT.password, "--verbosity", "0",
    ]
    return SuiteRun(argv, run_dir, _env(results))


CONNECTOR = Suite(
    name="mysql-connector-python",
    distribution="mysql-connector-python",
    accounts=(),
    setup_sql=(),  # unittests.py makes its database (myconnpy) itself
    prepare=_prepare_connector,
)


# ---- MariaDB Connector/Python ----------------------------------------------------------------


def _prepare_mariadb(source: Path, scratch: Path, endpoint: Endpoint, timeout: int) -> SuiteRun:
    tests = source / "testing" / "test"
    if not (tests / "conf_test.py").exists():
        raise SystemExit(f"--mariadb {source}: no testing/test/conf_test.py (MariaDB Connector/Python's sources)")
    run_dir = scratch / "testing"
    run_dir.mkdir()
    _copy_tree(tests, run_dir / "test")
    ini = run_dir / "pytest.ini"
    ini.write_text("[pytest]\n")
    results = scratch / "results.jsonl"
    env = _env(results, TEST_DB_HOST=endpoint.host, TEST_DB_PORT=str(endpoint.port), TEST_DB_USER=SUITE_ACCOUNT.user,
               TEST_DB_PASSWORD=SUITE_ACCOUNT.password, TEST_DB_DATABASE="testp")
    return SuiteRun(_pytest_argv(["test"], timeout, ini), run_dir, env)


MARIADB = Suite(
    name="MariaDB Connector/Python",
    distribution="mariadb",
    accounts=(),
    setup_sql=("CREATE DATABASE testp",),
    prepare=_prepare_mariadb,
)

SUITES = {"pymysql": PYMYSQL, "connector": CONNECTOR, "mariadb": MARIADB}


# ---- one run: a sandbox, maybe a proxy, the suite ------------------------------------------------


def _prepare_server(box: Sandbox, suite: Suite) -> str:
    """The suite's accounts and databases on the server; returns the version string the server
    greets clients with (the proxy greets them with the same)."""
    statements = []
    for account in (SUITE_ACCOUNT, *suite.accounts):
        who = f"'{account.user}'@'%'"
        statements.append(f"CREATE USER {who} IDENTIFIED BY '{account.password}'")
        statements += [f"GRANT {grant.format(who=who)}" for grant in account.grants]
    box.execute(0, *statements)
    for sql in suite.setup_sql:
        try:
            box.execute(0, sql)
        except pymysql.MySQLError as exc:  # e.g. a plugin the server's packages lack
            log(f"{suite.name}: setup statement {sql!r} failed on the server: {exc}")
    conn = box.connect(0, user=SUITE_ACCOUNT.user, password=SUITE_ACCOUNT.password)
    try:
        return str(conn.server_version)
    finally:
        conn.close()


def single_hostgroup_config(
    box: Sandbox, accounts: Sequence[Account], listen_port: int, admin_port: int, datadir: Path, server_version: str
) -> str:
    """turnout's TOML config: the master alone in one hostgroup, every account defaulting to it."""
    lines = [
        f'datadir = "{datadir}"',
        "",
        "[admin_variables]",
        'admin_credentials = "admin:admin"',
        f'mysql_ifaces = "127.0.0.1:{admin_port}"',
        "",
        "[mysql_variables]",
        f'interfaces = "127.0.0.1:{listen_port}"',
        f'server_version = "{server_version}"',
        'monitor_username = "monitor"',
        'monitor_password = "monitor_pass"',
        "",
        "[[mysql_servers]]",
        'address = "127.0.0.1"',
        f"port = {box.nodes[0].port}",
        f"hostgroup = {HOSTGROUP}",
    ]
    for account in accounts:
        lines += [
            "",
            "[[mysql_users]]",
            f'username = "{account.user}"',
            f'password = "{account.password}"',
            f"default_hostgroup = {HOSTGROUP}",
        ]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def proxy_in_front(box: Sandbox, suite: Suite, server_version: str, scratch: Path) -> Iterator[int]:
    base = free_port_block(2)
    datadir = scratch / "turnout-data"
    datadir.mkdir()
    config = scratch / "turnout.toml"
    config.write_text(single_hostgroup_config(box, (SUITE_ACCOUNT, *suite.accounts), base, base + 1, datadir,
                                              server_version))
    log_path = scratch / "turnout.log"
    log(f"starting turnout proxy on port {base} in front of the server on {box.nodes[0].port}")
    with child([turnout_executable(), "proxy", "--config", str(config)], log_path) as proc:
        wait_for_port(base, proc, log_path)
        yield base
        if proc.poll() is not None:
            log(f"turnout exited with {proc.returncode} during the suite:\n{tail(log_path)}")


@dataclass
class SuiteOutcomes:
    """One run of a suite: outcome and message per test, seconds per test, the run's duration."""

    tests: dict[str, tuple[str, str]]
    seconds: dict[str, float]
    wall_seconds: float = 0.0


def read_results(path: Path) -> SuiteOutcomes:
    """Outcome and message per test from a recorder's JSON lines; a test that started and never
    ended (the suite was killed in it) is an error."""
    outcomes: dict[str, tuple[str, str]] = {}
    seconds: dict[str, float] = {}
    if not path.exists():
        return SuiteOutcomes(outcomes, seconds)
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if record.get("started"):
            outcomes.setdefault(record["test"], ("error", "the suite was stopped while this test ran"))
        else:
            outcomes[record["test"]] = (record["outcome"], record.get("message", ""))
            seconds[record["test"]] = float(record.get("seconds", 0.0))
    return SuiteOutcomes(outcomes, seconds)


def run_suite(suite: Suite, source: Path, target: str, scratch: Path, timeout: int,
              suite_timeout: int) -> SuiteOutcomes:
    """The suite once, against a fresh sandbox's server directly or through a proxy."""
    scratch.mkdir(parents=True)
    with sandbox(scratch, replicas=0) as box:
        server_version = _prepare_server(box, suite)
        with contextlib.ExitStack() as stack:
            port = box.nodes[0].port
            if target == "proxy":
                port = stack.enter_context(proxy_in_front(box, suite, server_version, scratch))
            run = suite.prepare(source, scratch, Endpoint(target, "127.0.0.1", port), timeout)
            results = Path(run.env[RESULTS_ENV])
            log(f"{suite.name} {target}: running the suite (at most {suite_timeout} s)")
            env = dict(os.environ, **run.env)
            started = time.monotonic()
            with open(scratch / "suite.log", "ab") as out:
                try:
                    subprocess.run(run.argv, cwd=run.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, timeout=suite_timeout, check=False)
                except subprocess.TimeoutExpired:
                    log(f"{suite.name} {target}: stopped after {suite_timeout} s")
            outcomes = read_results(results)
            outcomes.wall_seconds = round(time.monotonic() - started, 1)
            if not outcomes.tests:
                log(f"{suite.name} {target}: no test ran:\n{tail(scratch / 'suite.log')}")
            return outcomes


# ---- comparing ---------------------------------------------------------------------------------


# Why a test's outcome through the proxy may differ from the server's (README: "What drivers
# see: known differences from the server").
# Each reason starts with the short label the table shows.
UNKNOWN_ACCOUNT = ("unknown account: the test makes an account on the server and logs in as it, and the proxy's "
                   "user list does not have it")
PROCESSLIST = ("processlist ids: SHOW PROCESSLIST lists the server's threads, while the id a client gets in its "
               "handshake is its proxy session's")
BACKEND_STATUS = ("backend status: session and global status describe the proxy's connections to the server "
                  "(Compression is the backend connection's; Aborted_clients counts no client connection)")

KNOWN_DIFFERENCES: dict[str, dict[str, str]] = {
    "PyMySQL": {
        "pymysql/tests/test_issues.py::TestNewIssues::test_issue_36": PROCESSLIST,
        "pymysql/tests/test_connection.py::TestAuthentication::testAuthEd25519": UNKNOWN_ACCOUNT,
    },
    "mysql-connector-python": {
        "tests.test_bugs.BugOra35349093.test_set_compress_true": BACKEND_STATUS,
        "tests.test_connection.MySQLConnectionTests.test_shutdown": BACKEND_STATUS,
    },
    "MariaDB Connector/Python": {
        "test/integration/test_connection.py::TestConnection::test_compress": BACKEND_STATUS,
        "test/integration/test_connection.py::TestConnection::test_ed25519": UNKNOWN_ACCOUNT,
        "test/integration/test_nondbapi.py::CursorTest::test_change_user": UNKNOWN_ACCOUNT,
    },
}


def verdict(outcome: str) -> str:
    """What the comparison looks at: a failure and an error are both a test that did not pass."""
    return "failed" if outcome == "error" else outcome


def counts(outcomes: dict[str, tuple[str, str]]) -> dict[str, int]:
    found = Counter(verdict(outcome) for outcome, _ in outcomes.values())
    return {name: found.get(name, 0) for name in ("passed", "failed", "skipped")}


def differences(direct: dict[str, tuple[str, str]], proxied: dict[str, tuple[str, str]],
                known: dict[str, str]) -> list[dict[str, str | None]]:
    """Every test that passed (or was skipped) one way and not the other; a test may be missing
    from a run altogether (a class whose set-up failed)."""
    found: list[dict[str, str | None]] = []
    for test in sorted(set(direct) | set(proxied)):
        there, here = direct.get(test, ("not run", "")), proxied.get(test, ("not run", ""))
        if verdict(there[0]) != verdict(here[0]):
            found.append({
                "test": test, "direct": there[0], "proxy": here[0],
                "direct_message": there[1], "proxy_message": here[1], "reason": known.get(test),
            })
    return found


def slowest_through_proxy(direct: SuiteOutcomes, proxied: SuiteOutcomes, n: int = 5) -> list[dict[str, Any]]:
    """The tests that took the most longer through the proxy than directly (a wait, a timeout)."""
    extra = sorted(((proxied.seconds[t] - direct.seconds.get(t, 0.0), t) for t in proxied.seconds), reverse=True)
    return [{"test": t, "direct_s": direct.seconds.get(t), "proxy_s": proxied.seconds[t]} for _, t in extra[:n]]


def compare(suite: Suite, direct: SuiteOutcomes, proxied: SuiteOutcomes) -> dict[str, Any]:
    diffs = differences(direct.tests, proxied.tests, KNOWN_DIFFERENCES.get(suite.name, {}))
    return {
        "suite": suite.name,
        "version": importlib.metadata.version(suite.distribution),
        "direct": counts(direct.tests),
        "proxy": counts(proxied.tests),
        "wall_seconds": {"direct": direct.wall_seconds, "proxy": proxied.wall_seconds},
        "slowest_through_proxy": slowest_through_proxy(direct, proxied),
        "differences": diffs,
        "unexplained": sum(1 for diff in diffs if diff["reason"] is None),
    }


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of the comparison, as the README shows it."""
    lines = [
        "| suite | version | direct pass / fail / skip | proxy pass / fail / skip | differences |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        d, p = row["direct"], row["proxy"]
        reasons = Counter(str(diff["reason"]) for diff in row["differences"] if diff["reason"])
        explained = ", ".join(f"{n} {reason.split(':')[0]}" for reason, n in reasons.items())
        lines.append(
            f"| {row['suite']} | {row['version']} "
            f"| {d['passed']} / {d['failed']} / {d['skipped']} | {p['passed']} / {p['failed']} / {p['skipped']} "
            f"| {len(row['differences'])}: {explained or 'none'}"
            + (f"; {row['unexplained']} unexplained" if row["unexplained"] else "") + " |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    chosen = [(SUITES[key], Path(getattr(args, key)).resolve()) for key in SUITES if getattr(args, key)]
    if not chosen:
        log("nothing to run: give --pymysql, --connector and/or --mariadb DIR")
        return 2
    rows = []
    with workdir("turnout-driver-suites-") as tmp:
        for suite, source in chosen:
            slug = suite.distribution.lower()
            direct = run_suite(suite, source, "direct", tmp / slug / "direct", args.timeout, args.suite_timeout)
            proxied = run_suite(suite, source, "proxy", tmp / slug / "proxy", args.timeout, args.suite_timeout)
            row = compare(suite, direct, proxied)
            rows.append(row)
            for diff in row["differences"]:
                log(f"{suite.name}: {diff['test']}: direct {diff['direct']}, proxy {diff['proxy']}: "
                    f"{diff['proxy_message'] or diff['direct_message']}"
                    + (f" [known: {diff['reason']}]" if diff["reason"] else ""))
            if args.keep:
                kept = Path(args.keep) / slug
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(tmp / slug, kept, ignore=shutil.ignore_patterns("sandbox"))
    print(table(rows))
    path = write_json(Path(args.json), {"machine": machine(), "timeout_s": args.timeout, "suites": rows})
    log(f"wrote {path}")
    return 0 if all(row["unexplained"] == 0 for row in rows) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pymysql", metavar="DIR", help="a clone of PyMySQL's repository")
    parser.add_argument("--connector", metavar="DIR", help="mysql-connector-python's sources")
    parser.add_argument("--mariadb", metavar="DIR", help="MariaDB Connector/Python's sources")
    parser.add_argument("--timeout", type=int, default=60, help="seconds per test")
    parser.add_argument("--suite-timeout", type=int, default=600, help="seconds per suite run")
    parser.add_argument("--json", default=str(RESULTS_DIR / "driver_suites.json"))
    parser.add_argument("--keep", metavar="DIR", help="keep each run's logs and results here")
    args = parser.parse_args()
    install_signal_handlers()
    try:
        return run(args)
    except KeyboardInterrupt:
        log("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
