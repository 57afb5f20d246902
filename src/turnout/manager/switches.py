"""Operator switches every manager sharing the state store sees: global recoveries disabled,
and candidates registered with a promotion rule (register-candidate).

Each is a named lease in the store: shared by all managers, kept across restarts, and expiring
on its own where Orchestrator's expire (a registered candidate after an hour).
"""

from __future__ import annotations

from collections.abc import Iterable

from turnout.manager.candidates import PROMOTION_RULES, PromotionRule
from turnout.state.base import StateStore

RECOVERIES_DISABLED = "turnout-global-recoveries-disabled"
_DISABLED_BY = "disabled"
_FOREVER = 10 * 365 * 86400.0
CANDIDATE = "turnout-candidate/"
# Orchestrator's CandidateInstanceExpireMinutes default.
CANDIDATE_SECONDS = 3600.0


async def disable_recoveries(store: StateStore) -> None:
    await store.acquire_lease(RECOVERIES_DISABLED, _DISABLED_BY, _FOREVER)


async def enable_recoveries(store: StateStore) -> None:
    await store.release_lease(RECOVERIES_DISABLED, _DISABLED_BY)


async def recoveries_disabled(store: StateStore) -> bool:
    return await store.lease_owner(RECOVERIES_DISABLED) is not None


async def register_candidate(store: StateStore, key: str, rule: PromotionRule) -> None:
    name = CANDIDATE + key
    current = await store.lease_owner(name)
    if current is not None and current != rule:
        await store.release_lease(name, current)
    await store.acquire_lease(name, rule, CANDIDATE_SECONDS)


async def registered_rules(store: StateStore, keys: Iterable[str]) -> dict[str, PromotionRule]:
    """The promotion rule registered for each of `keys` that has an unexpired one."""
    rules: dict[str, PromotionRule] = {}
    for key in keys:
        rule = await store.lease_owner(CANDIDATE + key)
        if rule in PROMOTION_RULES:
            rules[key] = rule
    return rules
