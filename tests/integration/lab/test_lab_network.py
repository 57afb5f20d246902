"""The lab's network: hosts in namespaces, partitions both ways, heal, status, and a clean `down`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LabFactory
from turnout.sandbox import lab_plan
from turnout.sandbox.errors import SandboxError
from turnout.sandbox.lab import Lab, orphaned_labs

pytestmark = pytest.mark.netns

PORT = 7000
LISTENER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind((sys.argv[1], {PORT})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
)
PROBE = (
    "import socket, sys\n"
    "try:\n"
    f"    c = socket.create_connection((sys.argv[1], {PORT}), timeout=float(sys.argv[2]))\n"
    "    print(c.recv(64).decode())\n"
    "except OSError as exc:\n"
    "    print('unreachable', exc); sys.exit(1)\n"
)
# A dropped SYN is never answered: a probe that must fail waits this long. One that must succeed
# waits far longer, so that a slow machine cannot fail it.
CUT_WAIT = "1.0"
OK_WAIT = "20"


def listen_everywhere(lab: Lab) -> None:
    for host in lab.hosts:
        lab.spawn(host, [sys.executable, "-c", LISTENER, lab.address(host)])
    for host in lab.hosts:  # the root namespace reaches every host: wait for each listener from here
        wait_listening(lab.address(host))


def wait_listening(address: str) -> None:
    import socket

    while True:
        try:
            with socket.create_connection((address, PORT), timeout=5):
                return
        except OSError:
            time.sleep(0.05)


def reaches(lab: Lab, source: str, target: str) -> bool:
    wait = CUT_WAIT if not lab.reachable(source, target) else OK_WAIT
    result = lab.run(source, [sys.executable, "-c", PROBE, lab.address(target), wait],
                     capture_output=True, text=True)
    if result.returncode == 0:
        assert result.stdout.strip() == lab.address(target)
    return result.returncode == 0


def test_hosts_have_their_own_address_and_reach_each_other(make_lab: LabFactory) -> None:
    lab = make_lab(["a", "b"])
    assert lab.address("a") != lab.address("b")
    out = lab.run("a", ["ip", "-j", "-4", "addr", "show", "eth0"], capture_output=True, text=True, check=True)
    addresses = [i["local"] for link in json.loads(out.stdout) for i in link["addr_info"]]
    assert addresses == [lab.address("a")]
    assert "inet6" not in lab.run("a", ["ip", "addr"], capture_output=True, text=True, check=True).stdout
    routes = lab.run("a", ["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout
    assert "default" not in routes  # nothing leaves the machine
    listen_everywhere(lab)
    assert reaches(lab, "a", "b") and reaches(lab, "b", "a")


def test_partition_cuts_both_ways_heal_restores_and_status_reports_it(make_lab: LabFactory) -> None:
    lab = make_lab(["a", "b", "c", "free"])
    listen_everywhere(lab)

    groups = lab.partition(["a", "b,c"])
    assert groups == [["a"], ["b", "c"]]
    assert not reaches(lab, "a", "b") and not reaches(lab, "b", "a")
    assert not reaches(lab, "a", "c") and not reaches(lab, "c", "a")
    assert reaches(lab, "b", "c")
    for host in ("a", "b", "c"):  # in no group: reaches, and is reached by, everyone
        assert reaches(lab, "free", host) and reaches(lab, host, "free")
        wait_listening(lab.address(host))  # the root namespace too

    status = Lab.open(lab.dir).status()  # what another process (the CLI) reads
    assert status["partition"] == [["a"], ["b", "c"]]
    assert {h["host"]: h["address"] for h in status["hosts"]} == {h: lab.address(h) for h in lab.hosts}
    for host in status["hosts"]:  # what runs there: the listener started with the host's address
        assert [p["command"].endswith(host["address"]) for p in host["processes"]] == [True]

    lab.heal()
    assert Lab.open(lab.dir).status()["partition"] is None
    assert reaches(lab, "a", "b") and reaches(lab, "c", "a")


def test_a_partition_stalls_an_open_connection(make_lab: LabFactory) -> None:
    """Packets are dropped, not refused: a connection made before the cut hangs, as on a real network."""
    lab = make_lab(["a", "b"])
    echo = ("import socket, sys\n"
            f"s = socket.socket(); s.bind((sys.argv[1], {PORT})); s.listen(1)\n"
            "c, _ = s.accept()\n"
            "while (d := c.recv(64)):\n"
            "    c.sendall(d)\n")
    lab.spawn("b", [sys.executable, "-c", echo, lab.address("b")])
    client = ("import socket, sys, time\n"
              "while True:\n"
              "    try:\n"
              f"        c = socket.create_connection((sys.argv[1], {PORT}), timeout=20); break\n"
              "    except ConnectionRefusedError:\n"
              "        time.sleep(0.05)\n"
              "c.sendall(b'x'); print(c.recv(1).decode(), flush=True)\n"
              "sys.stdin.readline()\n"
              "c.settimeout(1.0); c.sendall(b'y')\n"
              "try:\n"
              "    print(c.recv(1).decode() or 'closed', flush=True)\n"
              "except TimeoutError:\n"
              "    print('stalled', flush=True)\n")
    proc = subprocess.Popen(lab.command("a", [sys.executable, "-c", client, lab.address("b")]),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "x"
        lab.partition(["a", "b"])
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "stalled"
    finally:
        proc.kill()
        proc.wait()


def test_run_in_the_background_and_down_stops_it(make_lab: LabFactory) -> None:
    lab = make_lab(["a"])
    proc = lab.spawn("a", ["sleep", "300"])
    assert [p["pid"] for p in lab.processes("a")] == [proc.pid]
    lab.down()
    proc.wait(timeout=30)
    assert lab.leftovers() == []


def test_down_after_a_crash_removes_everything(make_lab: LabFactory, tmp_path: Path) -> None:
    """The process that made the lab is killed; `down` from another process finds all it made."""
    directory = tmp_path / "crashed"
    maker = ("import os, signal, sys\n"
             "from turnout.sandbox.lab import Lab\n"
             "lab = Lab.create(sys.argv[1], ['a', 'b'])\n"
             "lab.spawn('a', ['sleep', '300'])\n"
             "print(lab.id, flush=True)\n"
             "os.kill(os.getpid(), signal.SIGKILL)\n")
    made = subprocess.run([sys.executable, "-c", maker, str(directory)], capture_output=True, text=True)
    assert made.returncode == -signal.SIGKILL, made.stderr
    lab_id = made.stdout.strip()
    lab = Lab.open(directory)
    assert lab.id == lab_id
    # Something lab.json never recorded, but named with the lab's prefix, is found as well.
    stray = lab_plan.namespace_name(lab_id, "stray")
    subprocess.run(["ip", "netns", "add", stray], check=True)
    before = set(lab.leftovers())
    assert {lab.namespace("a"), lab.namespace("b"), stray} <= before
    sleeper = lab.processes("a")[0]["pid"]

    lab.down()

    assert lab.leftovers() == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab_id not in netns
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert lab_plan.root_link_name(lab_id) not in links
    with pytest.raises(ProcessLookupError):
        for _ in range(200):  # killed: gone once its parent (init) reaps it
            os.kill(sleeper, 0)
            if Path(f"/proc/{sleeper}/stat").read_text().split(") ", 1)[1][0] == "Z":
                raise ProcessLookupError
            time.sleep(0.05)


def test_up_after_down_makes_the_same_network(make_lab: LabFactory) -> None:
    lab = make_lab(["a", "b"])
    addresses = {h: lab.address(h) for h in lab.hosts}
    lab.down()
    with pytest.raises(SandboxError, match="network is down"):
        lab.partition(["a", "b"])
    lab.up()
    assert {h: lab.address(h) for h in lab.hosts} == addresses
    listen_everywhere(lab)
    assert reaches(lab, "a", "b")


def test_add_host_refuses_duplicates_and_bad_names(make_lab: LabFactory) -> None:
    lab = make_lab(["a"])
    assert lab.add_host("proxy-a").startswith(lab.state.subnet.rsplit(".", 1)[0])
    with pytest.raises(SandboxError, match="already exists"):
        lab.add_host("a")
    with pytest.raises(SandboxError, match="bad host name"):
        lab.add_host("Bad Name")
    with pytest.raises(SandboxError, match="no host 'nope'"):
        lab.partition(["a", "nope"])
    with pytest.raises(SandboxError, match="no host 'ghost'"):
        lab.run("ghost", ["true"])


def test_two_labs_get_different_subnets(make_lab: LabFactory) -> None:
    first, second = make_lab(["a"]), make_lab(["a"])
    assert first.state.subnet != second.state.subnet
    assert first.id != second.id


def test_prune_removes_labs_whose_directory_is_gone_and_only_those(make_lab: LabFactory, tmp_path: Path) -> None:
    kept = make_lab(["a"])
    directory = tmp_path / "lost"
    maker = ("import sys\n"
             "from turnout.sandbox.lab import Lab\n"
             "lab = Lab.create(sys.argv[1], ['a'])\n"
             "lab.spawn('a', ['sleep', '300'])\n"
             "print(lab.id, flush=True)\n")
    made = subprocess.run([sys.executable, "-c", maker, str(directory)], capture_output=True, text=True, check=True)
    lost_id = made.stdout.strip()
    shutil.rmtree(directory)  # as a test run's temporary directory, removed with the lab still up

    assert lost_id in orphaned_labs()
    assert kept.id not in orphaned_labs()
    pruned = subprocess.run([sys.executable, "-m", "turnout.cli", "sandbox", "prune"], capture_output=True,
                            text=True)
    assert pruned.returncode == 0, pruned.stderr
    assert lost_id in pruned.stdout
    assert lost_id not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lost_id not in subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert set(kept.leftovers()) == {kept.namespace("a"), lab_plan.namespace_name(kept.id, "bridge")}


def test_cli_down_removes_a_lab_whose_sandbox_was_never_completed(tmp_path: Path) -> None:
    directory = tmp_path / "half"
    lab = Lab.create(directory, ["node0"])  # as `sandbox up --hosts` leaves it when killed right after
    try:
        down = subprocess.run([sys.executable, "-m", "turnout.cli", "sandbox", "down", "--dir", str(directory),
                               "--destroy"], capture_output=True, text=True)
        assert down.returncode == 0, down.stderr
        assert lab.leftovers() == []
        assert not directory.exists()
    finally:
        if Lab.exists(directory):
            lab.down()
