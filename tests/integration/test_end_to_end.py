"""The whole system, as `make demo` runs it: a semi-sync sandbox behind `turnout up`, a workload,
a graceful takeover and a kill -9 of the master."""

from __future__ import annotations

from pathlib import Path

from turnout.demo import run_demo
from turnout.sandbox.ports import free_port_block


def test_takeover_and_kill_lose_no_acknowledged_write(tmp_path: Path) -> None:
    result = run_demo(free_port_block(13), tmp_path, steady_seconds=1.5)
    takeover, kill = result.events
    assert result.missing == 0, "an acknowledged write is missing on the new master"
    assert takeover.errors == 0, "the takeover must be invisible to writers"
    assert result.writes > 0 and result.reads > 0
    # writes came back on their own after the kill, and the killed master is not the master
    assert kill.finished > kill.started
    assert result.final_master != kill.detail.split(" -> ")[0]
