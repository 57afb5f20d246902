"""The multi-host lab: simulated hosts in Linux network namespaces on a bridge of their own.

Each host is a network namespace with one interface (``eth0``) and one address; the bridge
joining them lives in a namespace of its own, so the machine's firewall (docker's, say) never
sees the lab's traffic, and deleting that namespace deletes the bridge and every veth at once.
The root namespace joins the bridge through one veth with the subnet's ``.1``, so tests and the
CLI reach every host by its address; hosts have no default route, so nothing leaves the machine.

A partition is an nftables table in the bridge's namespace that drops frames between the
groups' addresses, both ways; the root namespace is in no group and keeps reaching everyone.

Everything made is recorded in ``DIR/lab.json`` before it is made, and carries the lab's id
(see `lab_plan`), so `down` removes it all even after the process that made it died; the bridge's
alias holds DIR, so `prune` finds and removes labs whose directory is gone.
Needs root, iproute2 and nftables.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from turnout.sandbox import lab_plan
from turnout.sandbox.errors import SandboxError

LAB_FILE = "lab.json"
_LOCK_FILE = "lab.lock"
_GLOBAL_LOCK = Path(tempfile.gettempdir()) / "turnout-lab-subnets.lock"
_BRIDGE = "br0"
_HOST_LINK = "eth0"
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL for what still runs on a host at `down`


@dataclass
class LabHost:
    name: str
    address: str


@dataclass
class LabProcess:
    host: str
    pid: int
    argv: list[str]
    log: str | None


@dataclass
class LabState:
    id: str
    subnet: str
    hosts: list[LabHost] = field(default_factory=list)
    partition: list[list[str]] | None = None
    processes: list[LabProcess] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LabState:
        return cls(
            id=raw["id"],
            subnet=raw["subnet"],
            hosts=[LabHost(**h) for h in raw.get("hosts", [])],
            partition=raw.get("partition"),
            processes=[LabProcess(**p) for p in raw.get("processes", [])],
        )


def missing_tools() -> list[str]:
    """What the lab needs and this machine lacks, each with how to get it."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, veths and nftables need it): run as root")
    if shutil.which("ip") is None:
        missing.append("the ip command: apt-get install iproute2")
    if shutil.which("nft") is None:
        missing.append("the nft command: apt-get install nftables")
    return missing


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise SandboxError("the multi-host lab cannot run here; missing: " + "; ".join(missing)
                           + " (scripts/system-deps.sh installs the packages)")


def _run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(list(argv), input=stdin, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SandboxError(f"`{' '.join(argv)}` failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def _namespaces() -> list[str]:
    out = _run(["ip", "-j", "netns", "list"], check=False).strip()
    try:
        return [entry["name"] for entry in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in out.splitlines() if line.strip()]


def _namespace_pids(namespace: str) -> list[int]:
    out = _run(["ip", "netns", "pids", namespace], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _link_exists(name: str, namespace: str | None = None) -> bool:
    argv = ["ip"] + (["-n", namespace] if namespace else []) + ["link", "show", name]
    return subprocess.run(argv, capture_output=True).returncode == 0


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace routes or has an address in (default routes aside)."""
    taken: list[ipaddress.IPv4Network] = []
    for route in json.loads(_run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = route.get("dst", "default")
        if dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(_run(["ip", "-j", "-4", "addr"]) or "[]"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                taken.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return taken


def _wait_in_namespace(proc: subprocess.Popen[bytes], namespace: str) -> None:
    """Until `proc` (``ip netns exec``) has entered `namespace`, or exited: then it runs on the host."""
    try:
        target = os.stat(f"/run/netns/{namespace}").st_ino
    except OSError:
        return
    while proc.poll() is None:
        try:
            if os.stat(f"/proc/{proc.pid}/ns/net").st_ino == target:
                return
        except OSError:
            return
        time.sleep(0.005)


def _disable_ipv6(namespace: str) -> None:
    """Turn IPv6 off in a namespace (before its interfaces exist, so they get no address)."""
    _run(["ip", "netns", "exec", namespace, "sh", "-c",
          "for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; "
          "do [ -e $f ] && echo 1 > $f; done; true"])


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class Lab:
    """The lab of one sandbox directory (``DIR/lab.json``)."""

    def __init__(self, directory: Path | str, state: LabState) -> None:
        self.dir = Path(directory).resolve()
        self.state = state

    # ---- construction ------------------------------------------------------------------------
    @staticmethod
    def exists(directory: Path | str) -> bool:
        return (Path(directory) / LAB_FILE).exists()

    @classmethod
    def open(cls, directory: Path | str) -> Lab:
        path = Path(directory) / LAB_FILE
        if not path.exists():
            raise SandboxError(f"{directory} holds no lab (no {LAB_FILE}); make one with "
                               f"`turnout sandbox up --dir {directory} --hosts`")
        return cls(directory, LabState.from_json(json.loads(path.read_text())))

    @classmethod
    def create(cls, directory: Path | str, hosts: Sequence[str] = ()) -> Lab:
        """A new lab in `directory` (made if needed), its network up, with `hosts` added."""
        require_tools()
        path = Path(directory)
        if (path / LAB_FILE).exists():
            raise SandboxError(f"{path} already holds a lab; use it, or remove it with "
                               f"`turnout sandbox down --dir {path} --destroy`")
        path.mkdir(parents=True, exist_ok=True)
        rng = random.SystemRandom()
        with _locked(_GLOBAL_LOCK):
            # Under the machine-wide lock until the root veth holds its address, so that two labs
            # made at once cannot pick the same subnet.
            subnet = lab_plan.choose_subnet(_taken_networks(), rng)
            lab = cls(path, LabState(id=lab_plan.new_lab_id(rng), subnet=str(subnet)))
            lab._save()
            try:
                lab.up()
            except BaseException:
                with contextlib.suppress(Exception):
                    lab.down()
                raise
        try:
            for host in hosts:
                lab.add_host(host)
        except BaseException:
            with contextlib.suppress(Exception):
                lab.down()
            raise
        return lab

    def _save(self) -> None:
        raw = asdict(self.state)
        tmp = self.dir / (LAB_FILE + ".tmp")
        tmp.write_text(json.dumps(raw, indent=2) + "\n")
        tmp.replace(self.dir / LAB_FILE)

    @contextlib.contextmanager
    def _mutate(self) -> Iterator[LabState]:
        """Read, change and write lab.json under a lock (CLI commands may run at once)."""
        with _locked(self.dir / _LOCK_FILE):
            self.state = self._read()
            try:
                yield self.state
            except BaseException:
                self.state = self._read()  # the change failed: as the file still says
                raise
            self._save()

    def _read(self) -> LabState:
        return LabState.from_json(json.loads((self.dir / LAB_FILE).read_text()))

    # ---- names ----------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.state.id

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.state.subnet)

    @property
    def root_address(self) -> str:
        """The root namespace's address on the lab's bridge."""
        return lab_plan.root_address(self.subnet)

    @property
    def hosts(self) -> list[str]:
        return [h.name for h in self.state.hosts]

    def _host(self, name: str) -> LabHost:
        for host in self.state.hosts:
            if host.name == name:
                return host
        raise SandboxError(f"no host {name!r} in this lab; hosts: {', '.join(self.hosts) or 'none'} "
                           f"(add one with `turnout sandbox add-host --dir {self.dir} NAME`)")

    def address(self, host: str) -> str:
        return self._host(host).address

    def namespace(self, host: str) -> str:
        self._host(host)
        return lab_plan.namespace_name(self.id, host)

    @property
    def _bridge_ns(self) -> str:
        return lab_plan.namespace_name(self.id, lab_plan.BRIDGE_HOST)

    @property
    def _root_link(self) -> str:
        return lab_plan.root_link_name(self.id)

    # ---- network --------------------------------------------------------------------------------
    def up(self) -> None:
        """Make whatever of the lab's network is missing (after `down`, or a reboot); idempotent."""
        require_tools()
        present = set(_namespaces())
        bridge_ns = self._bridge_ns
        if bridge_ns not in present:
            _run(["ip", "netns", "add", bridge_ns])
            _disable_ipv6(bridge_ns)
            _run(["ip", "-n", bridge_ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", bridge_ns, "link", "add", _BRIDGE, "type", "bridge"])
            # The lab's directory, written on the bridge itself: `prune` finds labs whose directory is gone.
            _run(["ip", "-n", bridge_ns, "link", "set", _BRIDGE, "alias", str(self.dir)])
            _run(["ip", "-n", bridge_ns, "link", "set", _BRIDGE, "up"])
        self._apply_rules()
        if not _link_exists(self._root_link):
            _run(["ip", "link", "add", self._root_link, "type", "veth", "peer", "name", "root",
                  "netns", bridge_ns])
            with contextlib.suppress(OSError):
                Path(f"/proc/sys/net/ipv6/conf/{self._root_link}/disable_ipv6").write_text("1\n")
            _run(["ip", "-n", bridge_ns, "link", "set", "root", "master", _BRIDGE, "up"])
            _run(["ip", "addr", "add", f"{self.root_address}/{self.subnet.prefixlen}", "dev", self._root_link])
            _run(["ip", "link", "set", self._root_link, "up"])
        for host in self.state.hosts:
            self._host_up(host, present)

    def _host_up(self, host: LabHost, present: set[str]) -> None:
        namespace = lab_plan.namespace_name(self.id, host.name)
        if namespace in present and _link_exists(_HOST_LINK, namespace):
            return
        if namespace not in present:
            _run(["ip", "netns", "add", namespace])
            # No IPv6: the partition's rules are IPv4 rules, and link-local IPv6 would pass them.
            _disable_ipv6(namespace)
        port = f"h{host.address.rsplit('.', 1)[1]}"  # the bridge end, named after the last octet
        if _link_exists(port, self._bridge_ns):
            _run(["ip", "-n", self._bridge_ns, "link", "del", port])
        _run(["ip", "-n", self._bridge_ns, "link", "add", port, "type", "veth", "peer", "name", _HOST_LINK,
              "netns", namespace])
        _run(["ip", "-n", self._bridge_ns, "link", "set", port, "master", _BRIDGE, "up"])
        _run(["ip", "-n", namespace, "addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", _HOST_LINK])
        _run(["ip", "-n", namespace, "link", "set", _HOST_LINK, "up"])
        _run(["ip", "-n", namespace, "link", "set", "lo", "up"])

    def add_host(self, name: str) -> str:
        """Add an empty host; returns its address."""
        lab_plan.validate_host_name(name)
        with self._mutate() as state:
            if any(h.name == name for h in state.hosts):
                raise SandboxError(f"host {name!r} already exists in this lab ({self.address(name)})")
            host = LabHost(name, lab_plan.host_address(self.subnet, name, [h.address for h in state.hosts]))
            state.hosts.append(host)
        self._host_up(host, set(_namespaces()))
        return host.address

    # ---- partitions -----------------------------------------------------------------------------
    def partition(self, groups: Sequence[str] | Sequence[Sequence[str]]) -> list[list[str]]:
        """Cut every path between hosts of different groups, both ways (replaces any partition)."""
        parsed = lab_plan.parse_groups(groups, self.hosts)
        with self._mutate() as state:
            state.partition = parsed
            self._apply_rules()
        return parsed

    def heal(self) -> None:
        with self._mutate() as state:
            state.partition = None
            self._apply_rules()

    def _apply_rules(self) -> None:
        if self._bridge_ns not in _namespaces():
            raise SandboxError(f"the lab's network is down; bring it up with `turnout sandbox up --dir {self.dir}`")
        addresses = {h.name: h.address for h in self.state.hosts}
        _run(["ip", "netns", "exec", self._bridge_ns, "nft", "-f", "-"],
             stdin=lab_plan.nft_script(self.state.partition, addresses))

    # ---- processes --------------------------------------------------------------------------------
    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run on `host` (``ip netns exec``; the pid of the started process is argv's)."""
        if not argv:
            raise SandboxError("no command given: turnout sandbox run --dir D --host NAME -- COMMAND ...")
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def run(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run `argv` on `host` in the foreground (keyword arguments go to subprocess.run)."""
        return subprocess.run(self.command(host, argv), **kwargs)

    def spawn(
        self, host: str, argv: Sequence[str], log: Path | str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `argv` on `host` in the background, in a session of its own; `down` stops it.

        Its output is appended to `log` (default DIR/logs/HOST.log).
        """
        command = self.command(host, argv)
        log_path = Path(log) if log is not None else self.dir / "logs" / f"{host}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=dict(env) if env is not None else None)
        with self._mutate() as state:
            state.processes = [p for p in state.processes if _alive(p.pid)]
            state.processes.append(LabProcess(host, proc.pid, list(argv), str(log_path)))
        _wait_in_namespace(proc, self.namespace(host))
        return proc

    def processes(self, host: str) -> list[dict[str, Any]]:
        """What runs on `host`: every process in its namespace."""
        namespace = self.namespace(host)
        if namespace not in _namespaces():
            return []
        return [{"pid": pid, "command": _cmdline(pid)} for pid in _namespace_pids(namespace) if _alive(pid)]

    # ---- reporting ----------------------------------------------------------------------------------
    def reachable(self, source: str, target: str) -> bool:
        """Whether the partition in force lets `source` reach `target` (by the rules, not by probing)."""
        return lab_plan.reachable(self.state.partition, source, target)

    def status(self) -> dict[str, Any]:
        present = set(_namespaces())
        return {
            "id": self.id,
            "subnet": self.state.subnet,
            "root_address": self.root_address,
            "network": "up" if self._bridge_ns in present else "down",
            "hosts": [
                {
                    "host": h.name,
                    "address": h.address,
                    "namespace": lab_plan.namespace_name(self.id, h.name),
                    "processes": self.processes(h.name)
                    if lab_plan.namespace_name(self.id, h.name) in present else [],
                }
                for h in self.state.hosts
            ],
            "partition": self.state.partition,
        }

    # ---- teardown -------------------------------------------------------------------------------------
    def leftovers(self) -> list[str]:
        """The lab's namespaces that exist now (by name prefix, whatever lab.json says)."""
        return lab_plan.lab_namespaces(self.id, _namespaces())

    def down(self) -> None:
        """Stop every process on the lab's hosts, then remove its namespaces, bridge, veths and rules.

        The lab's addresses and hosts stay in lab.json: `up` makes the same network again.
        """
        namespaces = self.leftovers()
        pids = {pid for ns in namespaces for pid in _namespace_pids(ns)}
        # Those started a moment ago may still be `ip netns exec NAMESPACE ...`, not yet inside.
        pids |= {p.pid for p in self.state.processes
                 if _alive(p.pid) and lab_plan.namespace_name(self.id, p.host) in _cmdline(p.pid)}
        _stop_pids(pids)
        hosts_first = sorted(namespaces, key=lambda ns: ns == self._bridge_ns)
        for namespace in hosts_first:
            _run(["ip", "netns", "del", namespace], check=False)
        if _link_exists(self._root_link):
            _run(["ip", "link", "del", self._root_link], check=False)
        with contextlib.suppress(OSError, ValueError, KeyError), self._mutate() as state:
            state.processes = []
            state.partition = None
        still = self.leftovers()
        if still or _link_exists(self._root_link):
            raise SandboxError(f"could not remove {', '.join([*still, self._root_link])}: "
                               "remove them with `ip netns del NAME` / `ip link del NAME`")


def _lab_of(directory: Path) -> str | None:
    try:
        return str(json.loads((directory / LAB_FILE).read_text())["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _bridge_alias(namespace: str) -> str | None:
    out = _run(["ip", "-n", namespace, "-j", "link", "show", _BRIDGE], check=False)
    try:
        alias = json.loads(out)[0].get("ifalias")
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return None
    return str(alias) if alias else None


def orphaned_labs() -> dict[str, list[str]]:
    """Labs with namespaces on this machine whose directory no longer holds them: {id: namespaces}.

    A lab's bridge carries its directory (the bridge's alias); a lab whose bridge namespace is gone
    is half removed, so an orphan too. A bridge without an alias is left alone: its directory is
    unknown, and it may be in use.
    """
    found: dict[str, list[str]] = {}
    for name in _namespaces():
        lab_id = lab_plan.lab_id_of(name)
        if lab_id is not None:
            found.setdefault(lab_id, []).append(name)
    orphans = {}
    for lab_id, names in found.items():
        bridge = lab_plan.namespace_name(lab_id, lab_plan.BRIDGE_HOST)
        if bridge in names:
            directory = _bridge_alias(bridge)
            if directory is None or _lab_of(Path(directory)) == lab_id:
                continue
        orphans[lab_id] = sorted(names)
    return orphans


def prune() -> list[str]:
    """Remove every orphaned lab (processes, namespaces, bridge, veths, rules); returns their ids."""
    require_tools()
    removed = []
    for lab_id, names in orphaned_labs().items():
        _stop_pids({pid for ns in names for pid in _namespace_pids(ns)})
        bridge = lab_plan.namespace_name(lab_id, lab_plan.BRIDGE_HOST)
        for name in sorted(names, key=lambda ns: ns == bridge):
            _run(["ip", "netns", "del", name], check=False)
        link = lab_plan.root_link_name(lab_id)
        if _link_exists(link):
            _run(["ip", "link", "del", link], check=False)
        removed.append(lab_id)
    return removed


def _stop_pids(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL whatever still runs after STOP_TIMEOUT."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
