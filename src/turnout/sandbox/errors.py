"""The one error every sandbox operation raises."""

from __future__ import annotations


class SandboxError(Exception):
    """A sandbox operation failed; the message says what to do next."""
