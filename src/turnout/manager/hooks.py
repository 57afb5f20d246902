"""Hooks: shell commands run before and after recoveries, with Orchestrator's placeholders."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{([A-Za-z]+)\}")


def expand(command: str, context: Mapping[str, str]) -> str:
    """Replace {placeholder}s known in `context`; unknown ones stay as written."""
    return _PLACEHOLDER.sub(lambda m: context.get(m.group(1), m.group(0)), command)


def environment(context: Mapping[str, str]) -> dict[str, str]:
    """Orchestrator also exports the placeholders as ORC_* variables (failureType -> ORC_FAILURE_TYPE)."""
    env = {}
    for name, value in context.items():
        env["ORC_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()] = value
    return env


def context(
    failure_type: str,
    failed: tuple[str, int],
    cluster: str,
    *,
    successor: tuple[str, int] | None = None,
    description: str = "",
    command: str = "",
    is_master: bool = True,
    replicas: Sequence[str] = (),
    lost_replicas: Sequence[str] = (),
    recovery_id: int | None = None,
    successful: bool | None = None,
    auto: bool = True,
    downtimed: bool = False,
) -> dict[str, str]:
    values = {
        "failureType": failure_type,
        "failureDescription": description,
        "command": command,
        "failedHost": failed[0],
        "failedPort": str(failed[1]),
        "failureCluster": cluster,
        "failureClusterAlias": cluster,
        "failureClusterDomain": "",
        "instanceType": "master" if is_master else "intermediate-master",
        "isMaster": str(is_master).lower(),
        "isCoMaster": "false",
        "countReplicas": str(len(replicas)),
        "countSlaves": str(len(replicas)),
        "replicaHosts": ",".join(replicas),
        "slaveHosts": ",".join(replicas),
        "isDowntimed": str(downtimed).lower(),
        "autoMasterRecovery": str(auto).lower(),
        "autoIntermediateMasterRecovery": "false",
        "orchestratorHost": os.uname().nodename,
        "recoveryUID": "" if recovery_id is None else str(recovery_id),
        "lostReplicas": ",".join(lost_replicas),
        "lostSlaves": ",".join(lost_replicas),
        "countLostReplicas": str(len(lost_replicas)),
    }
    if successor is not None:
        values.update(successorHost=successor[0], successorPort=str(successor[1]),
                      successorAlias=f"{successor[0]}:{successor[1]}")
    if successful is not None:
        values["isSuccessful"] = str(successful).lower()
    return values


@dataclass(frozen=True)
class HookResult:
    command: str
    returncode: int | None  # None: timed out
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


async def run_hook(command: str, values: Mapping[str, str], timeout: float) -> HookResult:
    expanded = expand(command, values)
    proc = await asyncio.create_subprocess_shell(
        expanded,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **environment(values)},
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return HookResult(expanded, None, f"timed out after {timeout:g}s")
    return HookResult(expanded, proc.returncode, out.decode(errors="replace").strip()[-2000:])


async def run_hooks(
    commands: Sequence[str], values: Mapping[str, str], timeout: float, stop_on_failure: bool
) -> list[HookResult]:
    """Run commands in order; with `stop_on_failure` the first failure ends the list (pre-hooks)."""
    results = []
    for command in commands:
        result = await run_hook(command, values, timeout)
        results.append(result)
        if stop_on_failure and not result.ok:
            break
    return results
