"""GTID positions as values: MariaDB GTID lists and MySQL GTID sets. Pure functions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MariaGtidList:
    """A MariaDB GTID position, 'domain-server-seq' per domain: {domain: (server_id, seq)}."""

    domains: tuple[tuple[int, int, int], ...]  # sorted (domain, server_id, seq)

    @classmethod
    def parse(cls, text: str | None) -> MariaGtidList:
        found: dict[int, tuple[int, int]] = {}
        for part in (text or "").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                domain, server, seq = (int(x) for x in part.split("-"))
            except ValueError as exc:
                raise ValueError(f"not a MariaDB GTID: {part!r}") from exc
            found[domain] = (server, seq)
        return cls(tuple(sorted((d, s, n) for d, (s, n) in found.items())))

    def seq(self, domain: int) -> int:
        return next((n for d, _, n in self.domains if d == domain), 0)

    def covers(self, other: MariaGtidList) -> bool:
        """True when this position has reached other's sequence in every domain."""
        return all(self.seq(d) >= n for d, _, n in other.domains)

    def ahead_of(self, other: MariaGtidList) -> list[str]:
        """Domains where this position is further than `other`, as 'D-S-N' (errant if other is the master)."""
        return [f"{d}-{s}-{n}" for d, s, n in self.domains if n > other.seq(d)]

    @property
    def transactions(self) -> int:
        return sum(n for _, _, n in self.domains)

    def __str__(self) -> str:
        return ",".join(f"{d}-{s}-{n}" for d, s, n in self.domains)


Interval = tuple[int, int]  # inclusive


@dataclass(frozen=True)
class MysqlGtidSet:
    """A MySQL GTID set, 'uuid:1-5:7,uuid2:1-3' as {uuid: sorted disjoint intervals}."""

    sets: tuple[tuple[str, tuple[Interval, ...]], ...]

    @classmethod
    def parse(cls, text: str | None) -> MysqlGtidSet:
        found: dict[str, list[Interval]] = {}
        for part in (text or "").replace("\n", "").split(","):
            part = part.strip()
            if not part:
                continue
            uuid, *ranges = part.split(":")
            if not ranges:
                raise ValueError(f"not a MySQL GTID set member: {part!r}")
            for rng in ranges:
                low, _, high = rng.partition("-")
                try:
                    interval = (int(low), int(high or low))
                except ValueError as exc:
                    raise ValueError(f"not a MySQL GTID interval: {rng!r}") from exc
                found.setdefault(uuid.lower(), []).append(interval)
        return cls(tuple(sorted((u, _merge(iv)) for u, iv in found.items())))

    def _map(self) -> dict[str, tuple[Interval, ...]]:
        return dict(self.sets)

    def subtract(self, other: MysqlGtidSet) -> MysqlGtidSet:
        theirs = other._map()
        result = []
        for uuid, intervals in self.sets:
            left = _subtract(intervals, theirs.get(uuid, ()))
            if left:
                result.append((uuid, left))
        return MysqlGtidSet(tuple(result))

    def covers(self, other: MysqlGtidSet) -> bool:
        return not other.subtract(self).sets

    @property
    def transactions(self) -> int:
        return sum(high - low + 1 for _, intervals in self.sets for low, high in intervals)

    def __str__(self) -> str:
        return ",".join(
            uuid + "".join(f":{lo}" if lo == hi else f":{lo}-{hi}" for lo, hi in intervals)
            for uuid, intervals in self.sets
        )


def _merge(intervals: list[Interval]) -> tuple[Interval, ...]:
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _subtract(mine: tuple[Interval, ...], theirs: tuple[Interval, ...]) -> tuple[Interval, ...]:
    result: list[Interval] = []
    for low, high in mine:
        pieces = [(low, high)]
        for t_low, t_high in theirs:
            next_pieces = []
            for p_low, p_high in pieces:
                if t_high < p_low or t_low > p_high:
                    next_pieces.append((p_low, p_high))
                    continue
                if p_low < t_low:
                    next_pieces.append((p_low, t_low - 1))
                if t_high < p_high:
                    next_pieces.append((t_high + 1, p_high))
            pieces = next_pieces
        result.extend(pieces)
    return tuple(result)
