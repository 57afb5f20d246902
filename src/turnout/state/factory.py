"""Opening a state store from one configuration string.

- ``etcd://host:port[,host:port...]/prefix[?timeout=5&connect_timeout=1&check_every=2]`` opens
  the etcd backend on those members (plain HTTP; the port defaults to 2379, the prefix to
  ``/turnout``); the options, in seconds, are `EtcdStateStore`'s: how long a call may take in all,
  how long connecting to one member may take, how long a silent watch stream is trusted;
- anything else is the path of a SQLite file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl

from turnout.state.base import StateStore

ETCD_SCHEME = "etcd://"
DEFAULT_ETCD_PORT = 2379
DEFAULT_ETCD_PREFIX = "/turnout"
ETCD_OPTIONS = ("timeout", "connect_timeout", "check_every")


def parse_etcd_options(url: str) -> dict[str, float]:
    """The timing options after ``?`` in an ``etcd://`` URL, in seconds."""
    _, mark, query = url.partition("?")
    options: dict[str, float] = {}
    if not mark:
        return options
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"bad options in {url!r}: give name=seconds pairs joined by &, e.g. ?timeout=2") from None
    for name, value in pairs:
        if name not in ETCD_OPTIONS:
            raise ValueError(f"unknown option {name!r} in {url!r}: known are {', '.join(ETCD_OPTIONS)}")
        try:
            seconds = float(value)
        except ValueError:
            seconds = 0.0
        if not 0 < seconds < 3600:
            raise ValueError(f"{name}={value!r} in {url!r}: give seconds above 0 (e.g. {name}=2)")
        options[name] = seconds
    return options


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """The endpoints (``http://host:port``) and key prefix an ``etcd://`` URL names."""
    if not url.lower().startswith(ETCD_SCHEME):
        raise ValueError(f"not an etcd URL (etcd://host:port[,host:port]/prefix): {url!r}")
    rest = url[len(ETCD_SCHEME):].partition("?")[0]
    hosts, slash, path = rest.partition("/")
    endpoints = []
    for member in (h.strip() for h in hosts.split(",")):
        if not member:
            continue
        if member.startswith("["):  # [IPv6]:port
            host, _, after = member.partition("]")
            host += "]"
            port = after[1:] if after.startswith(":") else ("" if after else str(DEFAULT_ETCD_PORT))
        elif ":" in member:
            host, _, port = member.rpartition(":")
        else:
            host, port = member, str(DEFAULT_ETCD_PORT)
        if host in ("", "[]") or not port.isdigit():
            raise ValueError(f"bad etcd member {member!r} in {url!r}: expected host:port")
        endpoints.append(f"http://{host}:{port}")
    if not endpoints:
        raise ValueError(f"no etcd member in {url!r}: expected etcd://host:port[,host:port]/prefix")
    prefix = "/" + path.strip("/") if slash and path.strip("/") else DEFAULT_ETCD_PREFIX
    return endpoints, prefix


def open_store(target: str | Path, timeout: float = 5.0) -> StateStore:
    """An etcd store for an ``etcd://`` URL, else a SQLite store on the file `target` names.

    A ``timeout`` option in the URL wins over the `timeout` argument.
    """
    if isinstance(target, str) and target.lower().startswith(ETCD_SCHEME):
        from turnout.state.etcd import EtcdStateStore

        endpoints, prefix = parse_etcd_url(target)
        options = {"timeout": timeout, **parse_etcd_options(target)}
        return EtcdStateStore(endpoints, prefix=prefix, **options)
    from turnout.state.sqlite import SQLiteStateStore

    return SQLiteStateStore(target)
