"""Invariants of effective_servers over arbitrary health, checked with generated cases."""

from __future__ import annotations

from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.config.model import MysqlServer, ReplicationHostgroup, RuntimeConfig
from turnout.monitor.health import HealthSnapshot, ReplicationStatus, ServerHealth
from turnout.monitor.routing import effective_servers

ADDRESSES = [("10.0.0.1", 3306), ("10.0.0.2", 3306), ("10.0.0.3", 3306), ("10.0.0.4", 3306)]

replication = st.one_of(
    st.none(),
    st.just(ReplicationStatus(configured=False)),
    st.builds(
        ReplicationStatus,
        configured=st.just(True),
        io_running=st.sampled_from(["Yes", "No", "Connecting"]),
        sql_running=st.sampled_from(["Yes", "No"]),
        seconds_behind_master=st.one_of(st.none(), st.integers(0, 100)),
    ),
)


@st.composite
def health_for(draw: st.DrawFn, address: tuple[str, int]) -> ServerHealth:
    return ServerHealth(
        address=address,
        connect_ok=draw(st.sampled_from([None, True, False])),
        ping_failures=draw(st.integers(0, 4)),
        read_only=draw(st.sampled_from([None, True, False])),
        read_only_failures=draw(st.integers(0, 4)),
        replication=draw(replication),
        replication_failures=draw(st.integers(0, 4)),
    )


@st.composite
def scenario(draw: st.DrawFn) -> tuple[RuntimeConfig, HealthSnapshot, dict[int, tuple[str, int]] | None]:
    servers = tuple(
        MysqlServer(
            hostgroup_id=draw(st.sampled_from([10, 20])),
            hostname=host,
            port=port,
            max_replication_lag=draw(st.sampled_from([0, 0, 5])),
            status=draw(st.sampled_from(["ONLINE", "ONLINE", "ONLINE", "OFFLINE_SOFT", "SHUNNED"])),
        )
        for host, port in ADDRESSES[: draw(st.integers(1, 4))]
    )
    pair = ReplicationHostgroup(
        10,
        20,
        stale_read_protection=draw(st.sampled_from([0, 1])),
        two_writer_mode=draw(st.sampled_from(["refuse", "keep-current"])),
    )
    wiar = draw(st.sampled_from(["true", "false"]))
    cfg = RuntimeConfig(
        servers=servers,
        replication_hostgroups=(pair,),
        variables=MappingProxyType({"mysql-monitor_writer_is_also_reader": wiar}),
    )
    health = {s.address: draw(health_for(s.address)) for s in servers if draw(st.booleans())}
    masters = draw(st.one_of(st.none(), st.sampled_from(ADDRESSES).map(lambda a: {10: a})))
    return cfg, HealthSnapshot(1, MappingProxyType(health)), masters


@settings(max_examples=400, deadline=None)
@given(scenario())
def test_invariants(case: tuple[RuntimeConfig, HealthSnapshot, dict[int, tuple[str, int]] | None]) -> None:
    cfg, health, masters = case
    snap = effective_servers(cfg, health, masters)
    pair = cfg.replication_hostgroups[0]

    # Every configured server is still listed somewhere (scripts find it), each row once.
    assert {s.address for s in cfg.servers} <= {s.address for s in snap.servers}
    keys = [(s.hostgroup_id, s.address) for s in snap.servers]
    assert len(keys) == len(set(keys))

    for s in snap.online(10):
        h = health.get(s.address)
        # Only a server known to be read_only=OFF and healthy takes writes...
        if h is not None and h.read_only is not None:
            assert h.read_only is False
        assert h is None or h.connect_ok is not False
        # ...and in managed mode, only the published master, only once its read_only=OFF is seen.
        if masters is not None:
            assert s.address == masters[10]
            assert h is not None and h.read_only is False

    # Unmanaged: several servers seen with read_only=OFF never all take writes silently. (Before
    # its first read_only check a server stays as configured, as in ProxySQL.)
    known_writers = [s for s in snap.online(10) if (h := health.get(s.address)) and h.read_only is False]
    if masters is None and len(known_writers) > 1:
        assert 10 in snap.write_blocked
    if 10 in snap.write_blocked:
        assert snap.online(10) == ()

    # Stale-read protection: a read_only=ON server serving reads replicates, with a known lag.
    if pair.stale_read_protection:
        for s in snap.online(20):
            h = health.get(s.address)
            if h is not None and h.read_only is True:
                assert h.replication is not None and h.replication.replicating
                assert h.replication.seconds_behind_master is not None

    # Operator statuses are never overridden to ONLINE.
    configured = {(s.hostgroup_id, s.address): s.status for s in cfg.servers}
    for s in snap.servers:
        if configured.get((s.hostgroup_id, s.address)) in ("OFFLINE_SOFT", "OFFLINE_HARD"):
            assert s.status != "ONLINE"
