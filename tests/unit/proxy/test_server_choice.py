"""Choosing a server for a statement: weights, usability, and affinity to the previous server."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.config.model import MysqlServer
from turnout.proxy.hostgroups import pick_server, pick_server_sticky

A = MysqlServer(20, "127.0.0.1", 3307, weight=1)
B = MysqlServer(20, "127.0.0.1", 3308, weight=3)
C = MysqlServer(20, "127.0.0.1", 3309, weight=0)


def everyone(server: MysqlServer) -> bool:
    return True


def shares(picks: Counter[tuple[str, int]]) -> dict[tuple[str, int], float]:
    total = sum(picks.values())
    return {address: count / total for address, count in picks.items()}


@pytest.mark.parametrize("affinity", [0.0, 0.5, 0.9, 0.99])
def test_a_session_statements_follow_the_weights_whatever_the_affinity(affinity: float) -> None:
    rng = random.Random(7)
    picks: Counter[tuple[str, int]] = Counter()
    previous = None
    for _ in range(200_000):
        server = pick_server_sticky((A, B, C), everyone, rng, previous, affinity)
        assert server is not None
        picks[server.address] += 1
        previous = server.address
    share = shares(picks)
    assert C.address not in share  # weight 0: never
    assert share[A.address] == pytest.approx(0.25, abs=0.02)
    assert share[B.address] == pytest.approx(0.75, abs=0.02)


def test_affinity_keeps_the_previous_server_most_of_the_time() -> None:
    rng = random.Random(3)
    stays = sum(
        pick_server_sticky((A, B), everyone, rng, A.address, 0.9) == A  # type: ignore[comparison-overlap]
        for _ in range(10_000)
    )
    # 0.9 kept, plus the fresh weighted choices that land on A again (0.1 x 0.25)
    assert stays / 10_000 == pytest.approx(0.925, abs=0.02)


@given(
    affinity=st.floats(0, 1),
    seed=st.integers(0, 2**32),
    previous=st.sampled_from([A.address, B.address, C.address, ("10.0.0.1", 3306), None]),
    unusable=st.sets(st.sampled_from([A.address, B.address, C.address])),
)
def test_never_a_server_that_is_not_usable_or_has_no_weight(
    affinity: float, seed: int, previous: tuple[str, int] | None, unusable: set[tuple[str, int]]
) -> None:
    def usable(server: MysqlServer) -> bool:
        return server.address not in unusable

    server = pick_server_sticky((A, B, C), usable, random.Random(seed), previous, affinity)
    plain = pick_server((A, B, C), usable, random.Random(seed))
    if server is None:
        assert plain is None
    else:
        assert server.weight > 0 and usable(server)


def test_a_previous_server_gone_from_the_hostgroup_is_not_kept() -> None:
    rng = random.Random(1)
    for _ in range(1000):
        assert pick_server_sticky((B,), everyone, rng, A.address, 1.0) == B
