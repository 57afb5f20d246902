"""Process control shared by the sandbox's servers and etcd members: liveness, signals, waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (R, S, T, Z, ...); "?" when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0]
    except OSError:
        return "?"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    return process_state(pid) not in ("Z", "?")


def send(pid: int | None, sig: signal.Signals) -> int | None:
    """Send `sig` to `pid` if there is one; returns `pid`."""
    if pid is not None:
        os.kill(pid, sig)
    return pid


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait (reaping it if it is our child) until `pid` is gone; False if it still runs after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM (after SIGCONT: a paused process cannot shut down); True if it exited within `timeout`."""
    os.kill(pid, signal.SIGCONT)
    os.kill(pid, signal.SIGTERM)
    return wait_exit(pid, timeout)
