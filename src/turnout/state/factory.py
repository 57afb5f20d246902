"""Opening a state store from one configuration string.

- ``etcd://host:port[,host:port...]/prefix`` opens the etcd backend on those members (plain
  HTTP; the port defaults to 2379, the prefix to ``/turnout``);
- anything else is the path of a SQLite file.
"""

from __future__ import annotations

from pathlib import Path

from turnout.state.base import StateStore

ETCD_SCHEME = "etcd://"
DEFAULT_ETCD_PORT = 2379
DEFAULT_ETCD_PREFIX = "/turnout"


def parse_etcd_url(url: str) -> tuple[list[str], str]:
    """The endpoints (``http://host:port``) and key prefix an ``etcd://`` URL names."""
    if not url.lower().startswith(ETCD_SCHEME):
        raise ValueError(f"not an etcd URL (etcd://host:port[,host:port]/prefix): {url!r}")
    rest = url[len(ETCD_SCHEME):]
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
    """An etcd store for an ``etcd://`` URL, else a SQLite store on the file `target` names."""
    if isinstance(target, str) and target.lower().startswith(ETCD_SCHEME):
        from turnout.state.etcd import EtcdStateStore

        endpoints, prefix = parse_etcd_url(target)
        return EtcdStateStore(endpoints, prefix=prefix, timeout=timeout)
    from turnout.state.sqlite import SQLiteStateStore

    return SQLiteStateStore(target)
