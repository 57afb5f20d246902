"""Decisions of the multi-host lab, as pure functions: names, addresses, partitions, firewall rules.

Nothing here runs a command; `turnout.sandbox.lab` carries the decisions out.

Naming (every name a lab makes carries its 8-hex-digit id, so leftovers can be found):

- network namespace of a host:   ``turnout-<id>-<host>``
- the namespace holding the bridge: ``turnout-<id>-bridge`` (the bridge ``br0`` and the bridge ends
  of every veth live there, so deleting that namespace deletes them all)
- the root namespace's veth:     ``tnt<id>`` (its peer in the bridge namespace is ``root``)
- a host's own interface:        ``eth0``

Addresses, in one /24 of 10.200.0.0/13 chosen at creation so that no route of the machine
overlaps it: ``.1`` the root namespace, ``.10 + i`` the MariaDB server of node i, ``.50 + i``
etcd member i, ``.100`` and up every other host, in the order they were added.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable, Mapping, Sequence

from turnout.sandbox.errors import SandboxError

NAME_PREFIX = "turnout-"
BRIDGE_HOST = "bridge"
ROOT_LINK_PREFIX = "tnt"
SUBNET_POOL = ipaddress.IPv4Network("10.200.0.0/13")
ROOT_OFFSET = 1
NODE_OFFSET = 10
ETCD_OFFSET = 50
OTHER_OFFSET = 100
LAST_OFFSET = 254
NFT_TABLE = "turnout"

_HOST_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_RESERVED = {BRIDGE_HOST, "root"}


def validate_host_name(name: str) -> str:
    if not _HOST_NAME.match(name):
        raise SandboxError(
            f"bad host name {name!r}: use a lower-case letter, then letters, digits, '-' or '_' (40 at most)"
        )
    if name in _RESERVED:
        raise SandboxError(f"{name!r} is reserved in the lab; choose another host name")
    return name


def namespace_name(lab_id: str, host: str) -> str:
    return f"{NAME_PREFIX}{lab_id}-{host}"


def root_link_name(lab_id: str) -> str:
    return f"{ROOT_LINK_PREFIX}{lab_id}"  # 11 characters: within the kernel's 15


def lab_namespaces(lab_id: str, names: Iterable[str]) -> list[str]:
    """The namespaces among `names` that belong to lab `lab_id` (for cleaning up after a crash)."""
    prefix = namespace_name(lab_id, "")
    return sorted(name for name in names if name.startswith(prefix))


_NAMESPACE = re.compile(rf"^{NAME_PREFIX}([0-9a-f]{{8}})-")


def lab_id_of(namespace: str) -> str | None:
    """The id of the lab a namespace belongs to, if it is a lab's."""
    match = _NAMESPACE.match(namespace)
    return match.group(1) if match else None


def new_lab_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}"


def choose_subnet(taken: Sequence[ipaddress.IPv4Network], rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 of SUBNET_POOL that overlaps no network in `taken` (the machine's routes and addresses)."""
    candidates = list(SUBNET_POOL.subnets(new_prefix=24))
    rng.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(net) for net in taken):
            return subnet
    raise SandboxError(f"no free /24 left in {SUBNET_POOL}: remove old labs (`turnout sandbox down`)")


def address_at(subnet: ipaddress.IPv4Network, offset: int) -> str:
    if not 0 < offset < subnet.num_addresses - 1:
        raise SandboxError(f"no address at offset {offset} in {subnet}")
    return str(subnet.network_address + offset)


def root_address(subnet: ipaddress.IPv4Network) -> str:
    return address_at(subnet, ROOT_OFFSET)


def host_address(subnet: ipaddress.IPv4Network, host: str, used: Iterable[str]) -> str:
    """The address of a new host: fixed for nodeN and etcdN, else the lowest free one from .100."""
    taken = set(used)
    fixed = _fixed_offset(host)
    if fixed is not None:
        address = address_at(subnet, fixed)
        if address not in taken:
            return address
    for offset in range(OTHER_OFFSET, LAST_OFFSET + 1):
        address = address_at(subnet, offset)
        if address not in taken:
            return address
    raise SandboxError(f"the lab's network {subnet} is full")


def _fixed_offset(host: str) -> int | None:
    for prefix, offset, count in (("node", NODE_OFFSET, ETCD_OFFSET - NODE_OFFSET),
                                  ("etcd", ETCD_OFFSET, OTHER_OFFSET - ETCD_OFFSET)):
        rest = host[len(prefix):]
        if host.startswith(prefix) and rest.isdigit() and str(int(rest)) == rest and int(rest) < count:
            return offset + int(rest)
    return None


def parse_groups(groups: Sequence[str] | Sequence[Sequence[str]], hosts: Iterable[str]) -> list[list[str]]:
    """Groups given as "a,b" strings (or lists of names), checked against the lab's hosts."""
    known = set(hosts)
    parsed: list[list[str]] = []
    for group in groups:
        names = [n.strip() for n in group.split(",")] if isinstance(group, str) else [n.strip() for n in group]
        names = [n for n in names if n]
        if not names:
            raise SandboxError("an empty partition group: give comma-separated host names, e.g. node0,proxy-a")
        parsed.append(names)
    if len(parsed) < 2:
        raise SandboxError("a partition needs at least two groups (GROUP GROUP ...)")
    seen: dict[str, int] = {}
    for index, names in enumerate(parsed):
        for name in names:
            if name not in known:
                raise SandboxError(f"no host {name!r} in this lab; hosts: {', '.join(sorted(known))}")
            if name in seen:
                raise SandboxError(f"host {name!r} is in two partition groups ({seen[name] + 1} and {index + 1})")
            seen[name] = index
    return parsed


def blocked_pairs(groups: Sequence[Sequence[str]]) -> set[tuple[str, str]]:
    """Every (from, to) host pair a partition cuts: hosts of different groups, both ways."""
    return {
        (a, b)
        for i, left in enumerate(groups)
        for j, right in enumerate(groups)
        if i != j
        for a in left
        for b in right
    }


def reachable(groups: Sequence[Sequence[str]] | None, source: str, target: str) -> bool:
    """Whether `source` reaches `target` under the partition `groups` (None: no partition)."""
    return groups is None or (source, target) not in blocked_pairs(groups)


def nft_script(groups: Sequence[Sequence[str]] | None, addresses: Mapping[str, str]) -> str:
    """The nft script that replaces the bridge's filter table by the rules of `groups` (None: heal).

    One transaction: the table is created (so that deleting it cannot fail), deleted, made anew.
    Frames between hosts cross the bridge, so one forward chain there sees every path; dropped
    packets vanish as in a real partition (no reset, no ICMP), and ARP still passes.
    """
    lines = [f"table bridge {NFT_TABLE}", f"delete table bridge {NFT_TABLE}", f"table bridge {NFT_TABLE} {{",
             "  chain forward {", "    type filter hook forward priority 0; policy accept;"]
    for i, left in enumerate(groups or ()):
        for j, right in enumerate(groups or ()):
            if i == j:
                continue
            sources = ", ".join(addresses[name] for name in left)
            targets = ", ".join(addresses[name] for name in right)
            lines.append(f"    ip saddr {{ {sources} }} ip daddr {{ {targets} }} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"
