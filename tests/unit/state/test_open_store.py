"""Choosing the state store from one string: etcd:// URLs and SQLite paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.manager.settings import ManagerSettings
from turnout.state import SQLiteStateStore, open_store
from turnout.state.etcd import EtcdStateStore, _prefix_end, attempt_budget
from turnout.state.factory import parse_etcd_url


@pytest.mark.parametrize(
    ("url", "endpoints", "prefix"),
    [
        ("etcd://10.0.0.1:2379/turnout", ["http://10.0.0.1:2379"], "/turnout"),
        ("etcd://a:1,b:2,c:3/x/y/", ["http://a:1", "http://b:2", "http://c:3"], "/x/y"),
        ("etcd://a", ["http://a:2379"], "/turnout"),
        ("etcd://a:1/", ["http://a:1"], "/turnout"),
        ("ETCD://[::1]:5/p", ["http://[::1]:5"], "/p"),
        ("etcd://[::1]/p", ["http://[::1]:2379"], "/p"),
    ],
)
def test_etcd_urls(url: str, endpoints: list[str], prefix: str) -> None:
    assert parse_etcd_url(url) == (endpoints, prefix)
    store = open_store(url)
    assert isinstance(store, EtcdStateStore)
    assert (store.endpoints, store.prefix) == (endpoints, prefix)


def test_etcd_url_options_set_the_timings() -> None:
    store = open_store("etcd://a:1,b:2/p?timeout=2&connect_timeout=0.5&check_every=1.5")
    assert isinstance(store, EtcdStateStore)
    assert (store.endpoints, store.prefix) == (["http://a:1", "http://b:2"], "/p")
    assert (store.timeout, store.connect_timeout, store.check_every) == (2.0, 0.5, 1.5)
    default = open_store("etcd://a/p", timeout=3)
    assert isinstance(default, EtcdStateStore)
    assert (default.timeout, default.connect_timeout, default.check_every) == (3.0, 1.0, 2.0)
    no_prefix = open_store("etcd://a:1?timeout=1")
    assert isinstance(no_prefix, EtcdStateStore)
    assert (no_prefix.endpoints, no_prefix.prefix, no_prefix.timeout) == (["http://a:1"], "/turnout", 1.0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("etcd://a/p?retries=3", "unknown option 'retries'"),
        ("etcd://a/p?timeout=0", "above 0"),
        ("etcd://a/p?timeout=soon", "above 0"),
        ("etcd://a/p?timeout=-1", "above 0"),
        ("etcd://a/p?timeout", "name=seconds"),
        ("etcd://a/p?timeout=", "above 0"),
    ],
)
def test_bad_etcd_url_options(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


@pytest.mark.parametrize("url", ["etcd://", "etcd://a:x/p", "etcd://:5/p", "etcd://,/p", "etcd://[::1]x/p"])
def test_bad_etcd_urls_say_what_is_expected(url: str) -> None:
    with pytest.raises(ValueError, match="etcd"):
        open_store(url)


def test_anything_else_is_a_sqlite_file(tmp_path: Path) -> None:
    for target in (tmp_path / "a.db", str(tmp_path / "b.db")):
        assert isinstance(open_store(target), SQLiteStateStore)
    assert isinstance(open_store(":memory:"), SQLiteStateStore)


def test_endpoints_without_scheme_and_bad_arguments() -> None:
    assert EtcdStateStore("h1:1, h2:2/").endpoints == ["http://h1:1", "http://h2:2"]
    assert EtcdStateStore("https://h:1").endpoints == ["https://h:1"]
    assert EtcdStateStore("h:1", prefix="a/b/").prefix == "/a/b"
    with pytest.raises(ValueError, match="endpoint"):
        EtcdStateStore([])
    with pytest.raises(ValueError, match="timeout"):
        EtcdStateStore("h:1", timeout=0)


def test_prefix_end() -> None:
    assert _prefix_end(b"/t/a/") == b"/t/a0"
    assert _prefix_end(b"a\xff") == b"b"
    assert _prefix_end(b"\xff") == b"\0"


def test_manager_settings_name_the_store() -> None:
    assert ManagerSettings().StateStore == ""
    assert ManagerSettings.from_mapping({"StateStore": "etcd://h:2379/t"}).StateStore == "etcd://h:2379/t"


@pytest.mark.parametrize(
    ("remaining", "left", "budget"),
    [
        (5.0, 3, 5.0 / 3),   # an equal share
        (5.0, 1, 5.0),       # the last member gets all that is left
        (1.0, 3, 1.0 / 3),   # a short timeout still leaves time for the others
        (0.3, 3, 0.25),      # at least a quarter of a second...
        (0.1, 3, 0.1),       # ...when that much is left
        (10.0, 2, 5.0),
    ],
)
def test_each_attempt_gets_a_share_of_the_time_left(remaining: float, left: int, budget: float) -> None:
    assert attempt_budget(remaining, left) == pytest.approx(budget)
