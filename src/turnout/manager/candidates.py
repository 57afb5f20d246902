"""Choosing the replica to promote. Pure functions; every verdict carries its reasons.

Data first: among eligible replicas the one that has received the most of the old master's
transactions wins; promotion rules only break ties. A replica that is delayed, broken, stopped
or lagging beyond the limit is never promoted (promoting a replica that stopped replicating
days ago is the classic way to lose data).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from turnout.topology.flavors import Flavor
from turnout.topology.model import Instance

PromotionRule = Literal["prefer", "neutral", "prefer_not", "must_not"]
PROMOTION_RULES: tuple[PromotionRule, ...] = ("prefer", "neutral", "prefer_not", "must_not")
_RULE_RANK = {"prefer": 0, "neutral": 1, "prefer_not": 2, "must_not": 3}


@dataclass(frozen=True)
class Limits:
    max_lag_seconds: float = 10.0


@dataclass(frozen=True)
class Assessment:
    key: str
    eligible: bool
    rule: PromotionRule
    received: tuple[int, ...]
    applied: tuple[int, ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Choice:
    chosen: str | None
    reason: str
    assessments: tuple[Assessment, ...]

    def assessment(self, key: str) -> Assessment | None:
        return next((a for a in self.assessments if a.key == key), None)


def assess(
    replica: Instance, master_key: str, flavor: Flavor, rule: PromotionRule, limits: Limits, master_dead: bool
) -> Assessment:
    reasons = []
    if not replica.reachable:
        reasons.append(f"unreachable: {replica.last_probe_error or 'probe failed'}")
    if replica.master_key != master_key:
        reasons.append(f"replicates from {replica.master_key or 'nothing'}, not {master_key}")
    if rule == "must_not":
        reasons.append("promotion rule must_not")
    if replica.sql_delay > 0:
        reasons.append(f"delayed replica (SQL_Delay={replica.sql_delay}s)")
    if not replica.sql_running:
        error = replica.last_sql_error or "stopped"
        reasons.append(f"SQL thread not running ({error})")
    if replica.io_running == "No" and not replica.last_io_errno:
        reasons.append("IO thread stopped: replication was stopped, the replica may be far behind")
    elif not master_dead and replica.io_running != "Yes":
        state = replica.last_io_error or replica.io_running
        reasons.append(f"IO thread not connected to the master ({state})")
    lag = replica.seconds_behind_master
    if lag is not None and lag > limits.max_lag_seconds:
        reasons.append(f"lagging {lag}s behind its master (limit {limits.max_lag_seconds:g}s)")
    return Assessment(
        key=replica.key,
        eligible=not reasons,
        rule=rule,
        received=flavor.progress(replica, received=True),
        applied=flavor.progress(replica, received=False),
        reasons=tuple(reasons) or ("eligible",),
    )


def choose(
    master_key: str,
    replicas: Sequence[Instance],
    flavor: Flavor,
    rules: Mapping[str, PromotionRule] | None = None,
    limits: Limits = Limits(),
    master_dead: bool = True,
    required: str | None = None,
) -> Choice:
    """The replica of `master_key` to promote, or None with the reason none can be.

    `master_dead` relaxes the IO-thread checks (replicas of a dead master cannot be connected);
    `required` asks whether that one replica may be promoted (a takeover naming its target).
    """
    rules = rules or {}
    assessments = tuple(
        assess(r, master_key, flavor, rules.get(r.key, "neutral"), limits, master_dead)
        for r in sorted(replicas, key=lambda i: i.key)
    )
    if required is not None:
        wanted = next((a for a in assessments if a.key == required), None)
        if wanted is None:
            return Choice(None, f"{required} is not a replica of {master_key}", assessments)
        if not wanted.eligible:
            return Choice(None, f"{required} cannot be promoted: {'; '.join(wanted.reasons)}", assessments)
        return Choice(required, f"{required} was requested and is eligible", assessments)
    eligible = [a for a in assessments if a.eligible]
    if not eligible:
        summary = "; ".join(f"{a.key}: {', '.join(a.reasons)}" for a in assessments) or "it has no replicas"
        return Choice(None, f"no replica of {master_key} can be promoted: {summary}", assessments)
    best = sorted(eligible, key=lambda a: (_neg(a.received), _RULE_RANK[a.rule], _neg(a.applied), a.key))[0]
    ties = [a for a in eligible if a.received == best.received]
    reason = f"{best.key} has received the most transactions ({_fmt(best.received)})"
    if len(ties) > 1:
        others = ", ".join(a.key for a in ties if a is not best)
        reason += f", as much as {others}; promotion rule {best.rule}"
    return Choice(best.key, reason, assessments)


def _neg(values: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-v for v in values)


def _fmt(values: tuple[int, ...]) -> str:
    return ":".join(str(v) for v in values)
