"""The `[manager]` table of the TOML configuration, with Orchestrator's key names where they apply."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turnout.manager.candidates import PROMOTION_RULES, PromotionRule
from turnout.topology.model import split_key


class SettingsError(ValueError):
    """A configuration value is wrong; the message says which and what is expected."""


@dataclass(frozen=True)
class ProxySQLTarget:
    """One `[[manager.proxysql]]` entry."""

    address: str  # the admin interface, HOST:PORT
    user: str = "admin"
    password: str = "admin"
    cluster: str = ""  # the cluster it fronts (name, alias or member); "" = the only cluster
    writer_hostgroup: int | None = None  # both unset: read from its mysql_replication_hostgroups
    reader_hostgroup: int | None = None
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.address


def parse_targets(entries: Any) -> tuple[ProxySQLTarget, ...]:
    """The `[[manager.proxysql]]` array of tables, checked; ValueError says what is wrong."""
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("proxysql must be an array of tables: [[manager.proxysql]]")
    known = {"address", "user", "password", "cluster", "writer_hostgroup", "reader_hostgroup", "name"}
    targets = []
    for number, entry in enumerate(entries, 1):
        where = f"[[manager.proxysql]] #{number}"
        unknown = sorted(set(entry) - known)
        if unknown:
            raise ValueError(f"{where}: unknown key {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
        address = entry.get("address")
        if not isinstance(address, str):
            raise ValueError(f"{where}: address = \"HOST:PORT\" of its admin interface is required")
        split_key(address)
        for text in ("user", "password", "cluster", "name"):
            if not isinstance(entry.get(text, ""), str):
                raise ValueError(f"{where}: {text} must be a string")
        groups = [entry.get("writer_hostgroup"), entry.get("reader_hostgroup")]
        if any(g is not None and (isinstance(g, bool) or not isinstance(g, int) or g < 0) for g in groups):
            raise ValueError(f"{where}: writer_hostgroup and reader_hostgroup are hostgroup numbers")
        if (groups[0] is None) != (groups[1] is None) or (groups[0] is not None and groups[0] == groups[1]):
            raise ValueError(f"{where}: give both writer_hostgroup and reader_hostgroup (different), or neither "
                             "to read them from its mysql_replication_hostgroups")
        targets.append(ProxySQLTarget(address, entry.get("user", "admin"), entry.get("password", "admin"),
                                      entry.get("cluster", ""), groups[0], groups[1], entry.get("name", "")))
    return tuple(targets)



@dataclass(frozen=True)
class ManagerSettings:
    ListenAddress: str = "127.0.0.1:3000"
    MySQLTopologyUser: str = ""
    MySQLTopologyPassword: str = ""
    MySQLReplicaUser: str = ""
    MySQLReplicaPassword: str = ""
    MySQLConnectTimeoutSeconds: float = 2.0
    # Bound on one whole probe (connect + every statement): a hung server costs no more.
    MySQLDiscoveryReadTimeoutSeconds: float = 3.0
    InstancePollSeconds: float = 5.0
    RecoveryPeriodBlockSeconds: float = 3600.0
    RecoverMasterClusterFilters: tuple[str, ...] = ("*",)
    PreFailoverProcesses: tuple[str, ...] = ()
    PostMasterFailoverProcesses: tuple[str, ...] = ()
    PostFailoverProcesses: tuple[str, ...] = ()
    PostUnsuccessfulFailoverProcesses: tuple[str, ...] = ()
    PreGracefulTakeoverProcesses: tuple[str, ...] = ()
    PostGracefulTakeoverProcesses: tuple[str, ...] = ()
    ReasonableReplicationLagSeconds: float = 10.0
    # HTTP authentication for the API and the console: "" (none), "basic" (one account) or
    # "multi" (as basic, and the user `readonly` with any password may view but not act).
    AuthenticationMethod: str = ""
    HTTPAuthUser: str = ""
    HTTPAuthPassword: str = ""
    # turnout's own keys
    SQLite3DataFile: str = "turnout-state.db"
    # "etcd://host:port[,host:port]/prefix" for a shared etcd; "" keeps the SQLite3DataFile
    StateStore: str = ""
    DiscoverySeeds: tuple[str, ...] = ()
    ReplicationFlavor: str = ""  # "" detects mariadb/mysql; "binlog" forces file/position
    PromotionRules: Mapping[str, str] = field(default_factory=dict)
    RelayLogApplyTimeoutSeconds: float = 30.0
    GracefulTakeoverWaitSeconds: float = 10.0
    # How long transactions in flight on the old master may run on during a takeover before the
    # proxy ends them with an error (new writes are held meanwhile, not failed).
    TakeoverDrainSeconds: float = 2.0
    HookTimeoutSeconds: float = 30.0
    DetectionDelayBoundSeconds: float = 10.0
    ManagerId: str = ""
    # [[manager.proxysql]]: ProxySQL admin interfaces the manager keeps pointed at each master
    ProxySQL: tuple[ProxySQLTarget, ...] = ()
    # Where other managers reach this one's API (forwarding); "" derives it from ListenAddress.
    AdvertiseAddress: str = ""
    # Managers in HA (several on one store): the leader's lease, how often it is renewed, and
    # how long after the start of the last successful renewal the leader still starts a step.
    LeaderLeaseSeconds: float = 10.0
    LeaderRenewSeconds: float = 2.0
    LeaderRenewDeadlineSeconds: float = 7.0
    # Proxies following a shared store (etcd): the same three for each proxy's own lease. A
    # proxy that has not renewed within the deadline stops sending writes.
    ProxyLeaseSeconds: float = 10.0
    ProxyRenewSeconds: float = 2.0
    ProxyRenewDeadlineSeconds: float = 7.0
    # What a proxy cut off from the store does with reads: "serve" (from ONLINE servers within
    # max_replication_lag, as the monitor sees them) or "refuse".
    ProxyFencedReads: str = "serve"
    # How a proxy is named in the store's registry; "" is "<host name>:<proxy port>:<pid>".
    ProxyId: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ManagerSettings:
        values = dict(values)
        proxies: tuple[ProxySQLTarget, ...] = ()
        if "proxysql" in values:
            try:
                proxies = parse_targets(values.pop("proxysql"))
            except ValueError as exc:
                raise SettingsError(str(exc)) from exc
        known = {f.name: f for f in dataclasses.fields(cls) if f.name != "ProxySQL"}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise SettingsError(
                f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} in [manager]; "
                f"known keys: {', '.join(sorted(known))}"
            )
        hints = typing.get_type_hints(cls)
        converted = {name: _convert(name, hints[name], value) for name, value in values.items()}
        settings = cls(**converted, ProxySQL=proxies)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.InstancePollSeconds < 1:
            raise SettingsError("InstancePollSeconds must be 1 or more")
        for name in ("MySQLConnectTimeoutSeconds", "MySQLDiscoveryReadTimeoutSeconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be above 0")
        _, sep, port = self.ListenAddress.rpartition(":")
        if not sep or not port.isdigit():
            raise SettingsError(f"ListenAddress must be HOST:PORT, got {self.ListenAddress!r}")
        for key, rule in self.PromotionRules.items():
            if rule not in PROMOTION_RULES:
                raise SettingsError(
                    f"PromotionRules[{key!r}] = {rule!r}: use one of {', '.join(PROMOTION_RULES)}"
                )
        method = self.AuthenticationMethod.lower()
        if method not in ("", "basic", "multi"):
            raise SettingsError(
                f"AuthenticationMethod = {self.AuthenticationMethod!r}: use \"\" (none), \"basic\" or \"multi\" "
                "(Orchestrator's \"proxy\" and \"token\" methods are not supported)"
            )
        if method and not (self.HTTPAuthUser and self.HTTPAuthPassword):
            raise SettingsError(f"AuthenticationMethod = {method!r} needs HTTPAuthUser and HTTPAuthPassword")
        if method == "multi" and self.HTTPAuthUser == "readonly":
            raise SettingsError("HTTPAuthUser must not be `readonly`: with \"multi\" that user may only view")
        if self.ReplicationFlavor not in ("", "mariadb", "mysql", "binlog"):
            raise SettingsError("ReplicationFlavor must be empty (detect), mariadb, mysql or binlog")
        if self.ProxyFencedReads not in ("serve", "refuse"):
            raise SettingsError("ProxyFencedReads must be serve or refuse")
        problems = timing_problems(self)
        if problems:
            raise SettingsError("; ".join(problems))

    @property
    def advertise(self) -> str:
        """host:port where other managers reach this one's API."""
        if self.AdvertiseAddress:
            return self.AdvertiseAddress
        host, port = self.listen
        if host in ("", "0.0.0.0", "::"):
            import socket

            host = socket.gethostname()
        return f"{host}:{port}"

    @property
    def listen(self) -> tuple[str, int]:
        host, _, port = self.ListenAddress.rpartition(":")
        return host or "127.0.0.1", int(port)

    @property
    def promotion_rules(self) -> dict[str, PromotionRule]:
        return {k: typing.cast(PromotionRule, v) for k, v in self.PromotionRules.items()}


def timing_problems(s: ManagerSettings) -> list[str]:
    """The timing inequalities the safety argument needs (README "Timings"), as messages. Pure.

    For each lease (leader, proxy): renew < deadline < lease, with room for one failed renewal
    before the deadline, and a margin of at least a second between the deadline (when the
    holder stops acting) and the lease's expiry (when another may act).
    """
    problems = []
    for who in ("Leader", "Proxy"):
        ttl = getattr(s, f"{who}LeaseSeconds")
        renew = getattr(s, f"{who}RenewSeconds")
        deadline = getattr(s, f"{who}RenewDeadlineSeconds")
        if ttl < 2:
            problems.append(f"{who}LeaseSeconds={ttl:g} must be 2 or more (etcd's leases count whole seconds)")
        if renew <= 0:
            problems.append(f"{who}RenewSeconds must be above 0")
        if deadline < 2 * renew:
            problems.append(f"{who}RenewDeadlineSeconds={deadline:g} must be at least 2 x {who}RenewSeconds="
                            f"{renew:g}: one failed renewal must not cost the lease")
        if deadline > ttl - 1:
            problems.append(f"{who}RenewDeadlineSeconds={deadline:g} must be at least 1s below {who}LeaseSeconds="
                            f"{ttl:g}: the holder stops acting before anyone else may start")
    if s.InstancePollSeconds > s.LeaderLeaseSeconds:
        problems.append(f"InstancePollSeconds={s.InstancePollSeconds:g} must not exceed LeaderLeaseSeconds="
                        f"{s.LeaderLeaseSeconds:g}")
    return problems


def _convert(name: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{name} must be a string, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise SettingsError(f"{name} must be a list of strings, got {value!r}")
        if not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise SettingsError(f"{name} must be a table of strings, got {value!r}")
        return types.MappingProxyType(dict(value))
    raise SettingsError(f"{name}: unsupported setting type {hint}")  # pragma: no cover


def load(path: Path | str) -> ManagerSettings:
    """The `[manager]` table of a TOML file (defaults when the table is missing)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from exc
    table = raw.get("manager", {})
    if not isinstance(table, dict):
        raise SettingsError(f"{path}: [manager] must be a table")
    return ManagerSettings.from_mapping(table)
