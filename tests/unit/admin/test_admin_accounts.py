"""Who may log into the admin interface: admin:admin only from loopback, as ProxySQL."""

from __future__ import annotations

import pytest

from turnout.admin.server import account_for


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.0.5"])
def test_default_admin_from_loopback(peer: str) -> None:
    assert account_for("admin", peer, "admin:admin", "stats:stats") == ("admin", False)


@pytest.mark.parametrize("peer", ["10.0.0.7", "192.168.1.2", "::ffff:10.0.0.7", "fe80::1"])
def test_default_admin_refused_from_elsewhere(peer: str) -> None:
    assert account_for("admin", peer, "admin:admin", "stats:stats") is None
    assert account_for("stats", peer, "admin:admin", "stats:stats") is None


def test_other_credentials_from_anywhere() -> None:
    assert account_for("radmin", "10.0.0.7", "admin:admin;radmin:s3cret", "stats:stats") == ("s3cret", False)
    assert account_for("admin", "10.0.0.7", "admin:changed", "stats:stats") == ("changed", False)
    assert account_for("monitoring", "10.0.0.7", "admin:admin", "monitoring:pw") == ("pw", True)
    assert account_for("nobody", "127.0.0.1", "admin:admin", "stats:stats") is None
