"""Hostgroups as the data path sees them: the ONLINE servers of each, and whether writes may go there."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from turnout.config.model import MysqlServer


def _empty_blocks() -> Mapping[int, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class HostgroupTable:
    """An immutable view built from runtime_mysql_servers as in force (after the monitor's changes)."""

    version: int = 0
    # A dict, never changed after build(): compiled, a dict lookup is a direct call where a
    # read-only mapping's would be a method looked up by name on every statement.
    by_hostgroup: dict[int, tuple[MysqlServer, ...]] = field(default_factory=dict)
    write_blocked: Mapping[int, str] = field(default_factory=_empty_blocks)
    # Writer hostgroups paused during a switchover (or by a proxy that fenced itself): writes
    # wait instead of failing (issue: held queries).
    paused: frozenset[int] = frozenset()
    # Why a hostgroup is paused, when the reason is worth telling a client whose statement waited
    # in vain (a proxy that fenced itself off from the state store).
    paused_reasons: Mapping[int, str] = field(default_factory=_empty_blocks)

    @classmethod
    def build(
        cls,
        servers: Iterable[MysqlServer],
        write_blocked: Mapping[int, str] | None = None,
        version: int = 0,
        paused: frozenset[int] = frozenset(),
        paused_reasons: Mapping[int, str] | None = None,
    ) -> HostgroupTable:
        groups: dict[int, list[MysqlServer]] = {}
        for server in servers:
            if server.status == "ONLINE":
                groups.setdefault(server.hostgroup_id, []).append(server)
        return cls(
            version=version,
            by_hostgroup={hg: tuple(members) for hg, members in groups.items()},
            write_blocked=MappingProxyType(dict(write_blocked or {})),
            paused=paused,
            paused_reasons=MappingProxyType(dict(paused_reasons or {})),
        )

    def online(self, hostgroup: int) -> tuple[MysqlServer, ...]:
        return self.by_hostgroup.get(hostgroup, ())


def pick_server(
    candidates: tuple[MysqlServer, ...],
    usable: Callable[[MysqlServer], bool],
    rng: random.Random,
) -> MysqlServer | None:
    """Weighted random choice among the candidates that are usable (capacity, not failing)."""
    pool = [s for s in candidates if s.weight > 0 and usable(s)]
    if len(pool) <= 1:
        return pool[0] if pool else None
    point = rng.random() * sum(s.weight for s in pool)
    for server in pool:
        point -= server.weight
        if point < 0:
            return server
    return pool[-1]


def pick_server_sticky(
    candidates: tuple[MysqlServer, ...],
    usable: Callable[[MysqlServer], bool],
    rng: random.Random,
    previous: tuple[str, int] | None,
    affinity: float,
) -> MysqlServer | None:
    """`pick_server`, except that with probability `affinity` the server of the session's previous
    statement is kept while it is a usable candidate with a weight.

    Keeping it saves the server a thread switch per statement; the weights still hold: each
    server's share of a session's statements tends to its weight's share, since a fresh choice by
    weight is made with probability 1 - affinity whatever came before.
    """
    if previous is not None and rng.random() < affinity:
        for server in candidates:
            if server.address == previous:
                if server.weight > 0 and usable(server):
                    return server
                break
    return pick_server(candidates, usable, rng)
