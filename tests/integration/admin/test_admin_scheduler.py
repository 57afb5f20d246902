"""The scheduler runs real scripts: with their args, one run at a time, killed past the timeout;
and a ProxySQL-era scheduler script (Perl DBI, and one in Python) works unchanged against turnout."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from turnout.sandbox.sandbox import Sandbox

Starter = Callable[..., Awaitable[Any]]  # the start_admin fixture (conftest.py): -> Admin


async def until(condition: Callable[[], bool]) -> None:
    """Wait for `condition`; the test's own timeout bounds the wait."""
    while not condition():
        await asyncio.sleep(0.05)


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def job(job_id: int, filename: Path, interval_ms: int, *args: str) -> str:
    values = ", ".join(f"'{a}'" for a in args)
    columns = ", ".join(f"arg{i + 1}" for i in range(len(args)))
    extra_cols = f", {columns}" if args else ""
    extra_vals = f", {values}" if args else ""
    return (f"INSERT INTO scheduler (id, interval_ms, filename{extra_cols}) "
            f"VALUES ({job_id}, {interval_ms}, '{filename}'{extra_vals});")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"


async def test_runs_with_args_one_at_a_time(start_admin: Starter, tmp_path: Path) -> None:
    admin = await start_admin()
    log = tmp_path / "runs.log"
    slow = script(tmp_path / "slow.sh", f'echo "start $*" >> {log}\nsleep 0.3\necho "end" >> {log}\n')
    code, _, err = await admin.mariadb(job(1, slow, 100, "a b", "c") + "LOAD SCHEDULER TO RUNTIME;")
    assert code == 0, err
    await until(lambda: log.exists() and log.read_text().count("end") >= 3)
    await admin.mariadb("UPDATE scheduler SET active = 0; LOAD SCHEDULER TO RUNTIME;")
    lines = log.read_text().splitlines()
    starts = [line for line in lines if line.startswith("start")]
    assert starts[0] == "start a b c"
    # never two runs at once: every start is followed by its end before the next start
    assert all(line.startswith("start") == (i % 2 == 0) for i, line in enumerate(lines)), lines
    assert admin.service.scheduler.stats[1].skipped > 0


async def test_a_hanging_job_is_killed_with_its_children(start_admin: Starter, tmp_path: Path) -> None:
    admin = await start_admin()
    pids = tmp_path / "pids"
    hang = script(tmp_path / "hang.sh", f"sleep 600 &\necho $$ $! >> {pids}\nwait\n")
    code, _, err = await admin.mariadb(
        "UPDATE global_variables SET variable_value = '300' WHERE variable_name = 'admin-scheduler_timeout_ms';"
        "LOAD ADMIN VARIABLES TO RUNTIME;" + job(2, hang, 100) + "LOAD SCHEDULER TO RUNTIME;"
    )
    assert code == 0, err
    await until(lambda: admin.service.scheduler.stats[2].timeouts >= 2)
    first = [int(pid) for pid in pids.read_text().split()[:2]]
    assert not any(alive(pid) for pid in first)
    code, _, _ = await admin.mariadb("SELECT 1;")  # the admin interface never noticed
    assert code == 0


async def test_failing_jobs_are_counted_and_harmless(start_admin: Starter, tmp_path: Path) -> None:
    admin = await start_admin()
    failing = script(tmp_path / "fail.sh", "echo oops >&2\nexit 3\n")
    code, _, err = await admin.mariadb(
        job(3, failing, 100) + job(4, tmp_path / "missing", 100) + "LOAD SCHEDULER TO RUNTIME;"
    )
    assert code == 0, err
    stats = admin.service.scheduler.stats
    await until(lambda: stats[3].failures >= 2 and stats[4].failures >= 2)
    assert stats[3].last_exit == 3


# --- a ProxySQL-era scheduler script ------------------------------------------------------------
# Moves a read_only=ON server whose replication lag is NULL (not replicating) to hostgroup
# 9000+hostgroup, and back once it replicates again: what operators run next to ProxySQL.

PERL_CHECKER = r"""
use strict;
use warnings;
use DBI;
my ($admin_port, $user, $password) = @ARGV;
my $admin = DBI->connect("DBI:MariaDB:host=127.0.0.1;port=$admin_port", "admin", "admin",
                         { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
my $servers = $admin->selectall_arrayref("SELECT hostgroup_id, hostname, port FROM mysql_servers");
my $changed = 0;
for my $row (@$servers) {
    my ($hostgroup, $host, $port) = @$row;
    my $db = DBI->connect("DBI:MariaDB:host=$host;port=$port", $user, $password,
                          { RaiseError => 0, PrintError => 0 }) or next;
    my ($read_only) = $db->selectrow_array('SELECT @@global.read_only');
    my $status = $db->selectrow_hashref('SHOW SLAVE STATUS');
    my $lag = $status ? $status->{Seconds_Behind_Master} : undef;
    $db->disconnect;
    my $target;
    if ($hostgroup < 9000 && $read_only && !defined $lag) { $target = $hostgroup + 9000 }
    elsif ($hostgroup >= 9000 && defined $lag) { $target = $hostgroup - 9000 }
    next unless defined $target;
    $admin->do("UPDATE mysql_servers SET hostgroup_id = ? WHERE hostgroup_id = ? AND hostname = ? AND port = ?",
               undef, $target, $hostgroup, $host, $port);
    print "moved $host:$port from $hostgroup to $target\n";
    $changed = 1;
}
if ($changed) {
    $admin->do("LOAD MYSQL SERVERS TO RUNTIME");
    $admin->do("SAVE MYSQL SERVERS TO DISK");
}
"""

PYTHON_CHECKER = r"""
import sys
import pymysql

admin_port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
admin = pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin", autocommit=True)
changed = False
with admin.cursor() as cursor:
    cursor.execute("SELECT hostgroup_id, hostname, port FROM mysql_servers")
    for hostgroup, host, port in cursor.fetchall():
        hostgroup, port = int(hostgroup), int(port)
        try:
            db = pymysql.connect(host=host, port=port, user=user, password=password, connect_timeout=2)
        except pymysql.MySQLError:
            continue
        with db.cursor(pymysql.cursors.DictCursor) as server:
            server.execute("SELECT @@global.read_only AS ro")
            read_only = server.fetchone()["ro"]
            server.execute("SHOW SLAVE STATUS")
            status = server.fetchone()
        db.close()
        lag = status["Seconds_Behind_Master"] if status else None
        if hostgroup < 9000 and read_only and lag is None:
            target = hostgroup + 9000
        elif hostgroup >= 9000 and lag is not None:
            target = hostgroup - 9000
        else:
            continue
        cursor.execute(
            "UPDATE mysql_servers SET hostgroup_id = %s WHERE hostgroup_id = %s AND hostname = %s AND port = %s",
            (target, hostgroup, host, port),
        )
        print(f"moved {host}:{port} from {hostgroup} to {target}")
        changed = True
    if changed:
        cursor.execute("LOAD MYSQL SERVERS TO RUNTIME")
        cursor.execute("SAVE MYSQL SERVERS TO DISK")
"""


def _hostgroups(admin: Any, sandbox: Sandbox) -> dict[int, int]:
    """node index -> hostgroup in the runtime configuration."""
    return {sandbox.index_of_port(s.port): s.hostgroup_id for s in admin.service.runtime.servers}


async def test_proxysql_scheduler_scripts_work_unchanged(start_admin: Starter, sandbox: Sandbox,
                                                          tmp_path: Path) -> None:
    master, replica1, replica2 = sandbox.nodes
    servers = "".join(
        f'[[mysql_servers]]\naddress = "127.0.0.1"\nport = {node.port}\nhostgroup = {hostgroup}\n'
        for node, hostgroup in ((master, 10), (replica1, 20), (replica2, 20))
    )
    admin = await start_admin(
        "[[mysql_replication_hostgroups]]\nwriter_hostgroup = 10\nreader_hostgroup = 20\n" + servers
    )
    perl = tmp_path / "checker.pl"
    perl.write_text(PERL_CHECKER)
    python = tmp_path / "checker.py"
    python.write_text(PYTHON_CHECKER)
    try:
        for interpreter, checker, node in (("/usr/bin/perl", perl, replica1), (sys.executable, python, replica2)):
            statement = (
                "INSERT INTO scheduler (id, interval_ms, filename, arg1, arg2, arg3, arg4) VALUES "
                f"(1, 200, '{interpreter}', '{checker}', '{admin.port}', 'monitor', 'monitor_pass');"
                "LOAD SCHEDULER TO RUNTIME;"
            )
            code, _, err = await admin.mariadb("DELETE FROM scheduler;" + statement)
            assert code == 0, err
            await asyncio.to_thread(sandbox.execute, node.index, "STOP SLAVE")
            await until(lambda n=node: _hostgroups(admin, sandbox)[n.index] == 9020)
            assert _hostgroups(admin, sandbox) == {master.index: 10, node.index: 9020,
                                                   (3 - node.index): 20}
            await asyncio.to_thread(sandbox.execute, node.index, "START SLAVE")
            await until(lambda n=node: _hostgroups(admin, sandbox)[n.index] == 20)
            code, out, _ = await admin.mariadb("SELECT hostgroup_id FROM disk.mysql_servers ORDER BY port;")
            assert out.split() == ["hostgroup_id", "10", "20", "20"]
            assert admin.service.scheduler.stats[1].failures == 0
            code, _, err = await admin.mariadb("DELETE FROM scheduler; LOAD SCHEDULER TO RUNTIME;")
            assert code == 0, err
    finally:
        for node in (replica1, replica2):
            await asyncio.to_thread(sandbox.execute, node.index, "START SLAVE")
