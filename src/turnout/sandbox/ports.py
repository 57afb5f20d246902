"""Finding free loopback ports for sandboxes, proxies and APIs started by tests and benchmarks."""

from __future__ import annotations

import random

from turnout.sandbox.sandbox import port_in_use


def free_port_block(count: int, low: int = 20000, high: int = 60000, attempts: int = 500) -> int:
    """The first port of `count` consecutive free ports on 127.0.0.1."""
    rng = random.SystemRandom()
    for _ in range(attempts):
        base = rng.randrange(low, high - count)
        if not any(port_in_use(port) for port in range(base, base + count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found between {low} and {high}")
