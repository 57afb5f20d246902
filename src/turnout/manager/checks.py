"""Checks of replica settings that bound how fast a dead master can be detected. Pure functions.

Detection is holistic: a master is dead only when its replicas say so, so a hung master is
noticed no faster than the replicas' own timeouts allow.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from turnout.topology.model import Instance


@dataclass(frozen=True)
class SettingsFinding:
    instance: str
    setting: str
    value: float | None
    message: str


def detection_delay(replica: Instance) -> float | None:
    """Worst case, in seconds, before this replica reports a hung master (None if unknown)."""
    if replica.slave_net_timeout is None:
        return None
    # The IO thread notices silence after slave_net_timeout, then retries every connect_retry.
    return replica.slave_net_timeout + (replica.connect_retry or 0)


def slow_detection(replicas: Iterable[Instance], bound_seconds: float) -> list[SettingsFinding]:
    """Replicas whose settings would delay dead-master detection beyond `bound_seconds`."""
    findings = []
    for r in sorted(replicas, key=lambda i: i.key):
        if not r.is_replica:
            continue
        timeout = r.slave_net_timeout
        if timeout is not None and timeout > bound_seconds:
            findings.append(SettingsFinding(
                r.key, "slave_net_timeout", timeout,
                f"slave_net_timeout={timeout:g}s: a hung master is noticed only after {timeout:g}s "
                f"(bound {bound_seconds:g}s); SET GLOBAL slave_net_timeout={max(1, int(bound_seconds // 2))}",
            ))
        heartbeat = r.heartbeat_period
        if heartbeat is not None and (heartbeat <= 0 or (timeout is not None and heartbeat >= timeout)):
            findings.append(SettingsFinding(
                r.key, "heartbeat_period", heartbeat,
                f"heartbeat period {heartbeat:g}s is "
                f"{'off' if heartbeat <= 0 else 'not below slave_net_timeout'}: "
                "an idle master cannot be told from a dead one; CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD=1",
            ))
        retry = r.connect_retry
        if retry is not None and retry > bound_seconds:
            findings.append(SettingsFinding(
                r.key, "connect_retry", retry,
                f"connect retry {retry}s exceeds the bound of {bound_seconds:g}s: the replica reports "
                "its master's state that late; CHANGE MASTER TO MASTER_CONNECT_RETRY=1",
            ))
        delay = detection_delay(r)
        if delay is not None and delay > bound_seconds and not any(f.instance == r.key for f in findings):
            findings.append(SettingsFinding(
                r.key, "detection_delay", delay,
                f"slave_net_timeout + connect retry = {delay:g}s exceeds the bound of {bound_seconds:g}s",
            ))
    return findings


def unsafe_semi_sync(instances: Iterable[Instance], failover_seconds: float) -> list[SettingsFinding]:
    """Masters whose semi-sync timeout lets them acknowledge writes alone before a failover is done.

    Proxies fence themselves, but a client connected straight to a master cut off from its
    replicas gets acknowledgements once rpl_semi_sync_master_timeout has passed: writes the new
    master never sees. Only a timeout longer than detection + promotion (`failover_seconds`)
    keeps the cut-off master from acknowledging anything alone before it is replaced; after
    that, how long the partition lasts decides (README: semi-sync trade-off).
    """
    findings = []
    for inst in sorted(instances, key=lambda i: i.key):
        if inst.is_replica or not inst.reachable or not inst.semi_sync_master_enabled:
            continue
        timeout_ms = inst.semi_sync_timeout_ms
        if timeout_ms is None or timeout_ms / 1000 > failover_seconds:
            continue
        findings.append(SettingsFinding(
            inst.key, "rpl_semi_sync_master_timeout", timeout_ms,
            f"rpl_semi_sync_master_timeout={timeout_ms:g}ms: cut off from its replicas, this master acknowledges "
            f"writes alone after {timeout_ms / 1000:g}s, before a failover ({failover_seconds:g}s: detection bound + "
            f"poll + proxy lease) has replaced it; those writes are lost. SET GLOBAL rpl_semi_sync_master_timeout="
            f"{int(failover_seconds * 1000 * 3)} (or more)",
        ))
    return findings
