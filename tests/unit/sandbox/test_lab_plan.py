"""The lab's decisions: names, addresses, partitions and the nftables rules they become."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from turnout.sandbox import lab_plan
from turnout.sandbox.errors import SandboxError

SUBNET = ipaddress.IPv4Network("10.201.7.0/24")


@pytest.mark.parametrize("name", ["node0", "proxy-a", "mgr_1", "a", "etcd12", "x" * 40])
def test_good_host_names(name: str) -> None:
    assert lab_plan.validate_host_name(name) == name


@pytest.mark.parametrize("name", ["", "Node0", "0node", "-a", "a b", "a/b", "a.b", "x" * 41, "bridge", "root"])
def test_bad_host_names(name: str) -> None:
    with pytest.raises(SandboxError):
        lab_plan.validate_host_name(name)


def test_names_carry_the_lab_id_and_fit_the_kernel() -> None:
    lab_id = lab_plan.new_lab_id(random.Random(1))
    assert len(lab_id) == 8 and int(lab_id, 16) >= 0
    assert lab_plan.namespace_name(lab_id, "node0") == f"turnout-{lab_id}-node0"
    assert len(lab_plan.root_link_name(lab_id)) <= 15  # IFNAMSIZ - 1


def test_lab_namespaces_finds_only_this_labs() -> None:
    names = ["turnout-aaaa0000-node0", "turnout-aaaa0000-bridge", "turnout-bbbb0000-node0", "other", "turnout-aaaa00001-x"]
    assert lab_plan.lab_namespaces("aaaa0000", names) == ["turnout-aaaa0000-bridge", "turnout-aaaa0000-node0"]


def test_fixed_addresses_for_nodes_and_etcd_members() -> None:
    assert lab_plan.root_address(SUBNET) == "10.201.7.1"
    assert lab_plan.host_address(SUBNET, "node0", []) == "10.201.7.10"
    assert lab_plan.host_address(SUBNET, "node3", []) == "10.201.7.13"
    assert lab_plan.host_address(SUBNET, "etcd0", []) == "10.201.7.50"
    assert lab_plan.host_address(SUBNET, "etcd2", []) == "10.201.7.52"


def test_other_hosts_take_the_lowest_free_address_from_100() -> None:
    assert lab_plan.host_address(SUBNET, "proxy-a", []) == "10.201.7.100"
    assert lab_plan.host_address(SUBNET, "proxy-b", ["10.201.7.100"]) == "10.201.7.101"
    assert lab_plan.host_address(SUBNET, "c", ["10.201.7.101"]) == "10.201.7.100"
    # Names that look fixed but are not (leading zero, out of range) are ordinary hosts.
    assert lab_plan.host_address(SUBNET, "node01", []) == "10.201.7.100"
    assert lab_plan.host_address(SUBNET, "node40", []) == "10.201.7.100"
    assert lab_plan.host_address(SUBNET, "etcd50", []) == "10.201.7.100"


def test_a_taken_fixed_address_falls_back_to_the_pool() -> None:
    assert lab_plan.host_address(SUBNET, "node0", ["10.201.7.10"]) == "10.201.7.100"


def test_a_full_network_is_reported() -> None:
    used = [str(SUBNET.network_address + i) for i in range(100, 255)]
    with pytest.raises(SandboxError, match="full"):
        lab_plan.host_address(SUBNET, "one-more", used)


def test_the_subnet_avoids_every_taken_network() -> None:
    rng = random.Random(7)
    taken = [ipaddress.IPv4Network("10.200.0.0/14"), ipaddress.IPv4Network("10.204.0.0/15"),
             ipaddress.IPv4Network("10.206.5.0/24")]
    for _ in range(50):
        subnet = lab_plan.choose_subnet(taken, rng)
        assert subnet.subnet_of(lab_plan.SUBNET_POOL)
        assert subnet.prefixlen == 24
        assert not any(subnet.overlaps(net) for net in taken)


def test_no_subnet_left_is_reported() -> None:
    with pytest.raises(SandboxError, match="no free /24"):
        lab_plan.choose_subnet([ipaddress.IPv4Network("10.0.0.0/8")], random.Random(1))


HOSTS = ["node0", "node1", "node2", "etcd0", "proxy-a", "proxy-b"]


def test_groups_are_parsed_from_comma_lists() -> None:
    assert lab_plan.parse_groups(["node0,proxy-a", " node1 , node2,"], HOSTS) == [
        ["node0", "proxy-a"], ["node1", "node2"]]
    assert lab_plan.parse_groups([["node0"], ["node1"]], HOSTS) == [["node0"], ["node1"]]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        (["node0"], "at least two groups"),
        ([], "at least two groups"),
        (["node0", ","], "empty partition group"),
        (["node0", "nope"], "no host 'nope'"),
        (["node0,node1", "node1"], "in two partition groups"),
    ],
)
def test_bad_groups_are_refused(groups: list[str], message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        lab_plan.parse_groups(groups, HOSTS)


def test_a_partition_cuts_both_ways_and_spares_hosts_in_no_group() -> None:
    groups = [["node0", "proxy-a"], ["node1", "node2", "etcd0"]]
    for source, target in itertools.product(HOSTS, HOSTS):
        side = {name: i for i, group in enumerate(groups) for name in group}
        expected = source not in side or target not in side or side[source] == side[target]
        assert lab_plan.reachable(groups, source, target) is expected, (source, target)
    assert lab_plan.reachable(None, "node0", "node1")


def test_three_groups_cut_every_pair_between_them() -> None:
    groups = [["a"], ["b"], ["c"]]
    assert lab_plan.blocked_pairs(groups) == {(x, y) for x in "abc" for y in "abc" if x != y}


def test_nft_script_drops_between_groups_both_ways() -> None:
    addresses = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}
    script = lab_plan.nft_script([["a", "b"], ["c"]], addresses)
    assert "ip saddr { 10.0.0.1, 10.0.0.2 } ip daddr { 10.0.0.3 } drop" in script
    assert "ip saddr { 10.0.0.3 } ip daddr { 10.0.0.1, 10.0.0.2 } drop" in script
    assert script.count(" drop") == 2
    # Replaced in one transaction: made (so that the delete cannot fail), deleted, made anew.
    lines = script.splitlines()
    assert lines[:3] == ["table bridge turnout", "delete table bridge turnout", "table bridge turnout {"]
    assert "policy accept" in script


def test_nft_script_without_partition_has_no_rule() -> None:
    script = lab_plan.nft_script(None, {"a": "10.0.0.1"})
    assert " drop" not in script and "hook forward" in script


def test_the_lab_id_of_a_namespace() -> None:
    assert lab_plan.lab_id_of("turnout-0a1b2c3d-node0") == "0a1b2c3d"
    assert lab_plan.lab_id_of("turnout-0a1b2c3d-bridge") == "0a1b2c3d"
    for other in ("turnout-0a1b2c3-node0", "turnout-0A1B2C3D-x", "other-0a1b2c3d-x", "turnout-0a1b2c3dx"):
        assert lab_plan.lab_id_of(other) is None
