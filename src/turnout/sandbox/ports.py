"""Finding free loopback ports for sandboxes, proxies and APIs started by tests and benchmarks."""

from __future__ import annotations

import random

from turnout.sandbox.sandbox import port_in_use


def free_port_block(count: int, low: int = 20000, high: int = 32000, attempts: int = 500) -> int:
    """The first port of `count` consecutive free ports on 127.0.0.1.

    Below the kernel's ephemeral range (32768 and up by default), so that a port a test frees
    for a moment (a stopped server) is not taken by some client's outgoing connection.
    """
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(low, high - count)
        if not any(port_in_use(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found between {low} and {high}")
