"""Causal reads: the OK packet's GTID, the SQL per flavour (MySQL's only here: MySQL cannot be
installed, MariaDB's also runs live), positions, and the routing decision."""

from __future__ import annotations

import asyncio
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.constants import (
    COM_QUERY,
    COM_STMT_EXECUTE,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_AUTOCOMMIT,
)
from turnout.protocol.generic import build_eof, build_err, build_ok, parse_ok
from turnout.protocol.packets import encode_packet, write_lenenc_bytes
from turnout.protocol.response import ResponseFramer
from turnout.protocol.resultset import ColumnDef, build_column_def
from turnout.proxy.backend import BackendConnection
from turnout.proxy.causal import (
    MARIADB,
    MYSQL,
    SESSION_TRACK_SYSTEM_VARIABLES,
    SessionStateStripper,
    covers,
    covers_set,
    flavour_of,
    gtid_of_ok,
    merged,
    monitor_position,
    parse_position,
    position_text,
    strip_packet,
    track_sql,
    wait_reached,
    wait_sql,
    without_session_state,
    written_gtid,
)
from turnout.proxy.channel import Channel
from turnout.proxy.decisions import (
    CAUSAL_GLOBAL,
    CAUSAL_OFF,
    CAUSAL_SESSION,
    CAUSAL_USER,
    CausalRoute,
    causal_mode,
    causal_route,
)
from turnout.proxy.settings import SessionSettings

# OK packets as MariaDB 10.11 sent them with CLIENT_SESSION_TRACK and last_gtid tracked.
MARIADB_INSERT_OK = b"\x00\x01\x01\x02@\x00\x00\x00\x13\x00\x11\tlast_gtid\x060-1-13"
MARIADB_UPDATE_OK = (
    b'\x00\x01\x00"@\x00\x00(Rows matched: 1  Changed: 1  Warnings: 0\x13\x00\x11\tlast_gtid\x060-1-14'
)
MARIADB_PLAIN_UPDATE_OK = b"\x00\x00\x00\x02\x00\x00\x00(Rows matched: 0  Changed: 0  Warnings: 0"
UUID = "3e11fa47-71ca-11e1-9e33-c80aa9429562"


def mysql_own_gtid_ok(gtid: str, info: bytes = b"") -> bytes:
    """An OK packet as MySQL documents it with session_track_gtids = OWN_GTID: a
    SESSION_TRACK_GTIDS (3) entry, its encoding specification 0, then the GTID."""
    entry = bytes([0]) + write_lenenc_bytes(gtid.encode())
    state = bytes([3]) + write_lenenc_bytes(entry)
    return b"\x00\x01\x00" + (0x4002).to_bytes(2, "little") + b"\x00\x00" + write_lenenc_bytes(info) + write_lenenc_bytes(state)


def test_mariadb_last_gtid_is_read_from_the_ok_packet() -> None:
    assert written_gtid(MARIADB_INSERT_OK) == "0-1-13"
    assert written_gtid(MARIADB_UPDATE_OK) == "0-1-14"
    assert written_gtid(MARIADB_PLAIN_UPDATE_OK) is None
    assert written_gtid(b"\x00\x00\x00\x02\x00\x00\x00") is None


def test_mysql_own_gtid_is_read_from_the_ok_packet() -> None:
    assert written_gtid(mysql_own_gtid_ok(f"{UUID}:23")) == f"{UUID}:23"
    assert written_gtid(mysql_own_gtid_ok(f"{UUID}:24", b"Rows matched: 1")) == f"{UUID}:24"


def test_stripped_ok_is_what_a_client_without_session_tracking_gets() -> None:
    # no message: nothing after the warnings (MariaDB sends no empty info then)
    assert without_session_state(MARIADB_INSERT_OK) == b"\x00\x01\x01\x02\x00\x00\x00"
    # a message stays, length-encoded as the server sends it either way
    assert without_session_state(MARIADB_UPDATE_OK) == (
        b'\x00\x01\x00"\x00\x00\x00(Rows matched: 1  Changed: 1  Warnings: 0'
    )
    assert without_session_state(MARIADB_PLAIN_UPDATE_OK) is MARIADB_PLAIN_UPDATE_OK
    stripped = parse_ok(without_session_state(mysql_own_gtid_ok(f"{UUID}:23")))
    assert stripped.status_flags & SERVER_SESSION_STATE_CHANGED == 0
    assert (stripped.affected_rows, stripped.warnings, stripped.info) == (1, 0, b"")


def test_strip_packet_rewrites_the_header_too() -> None:
    packet = encode_packet(MARIADB_INSERT_OK, 1)
    assert strip_packet(packet) == encode_packet(b"\x00\x01\x01\x02\x00\x00\x00", 1)
    plain = encode_packet(MARIADB_PLAIN_UPDATE_OK, 1)
    assert strip_packet(plain) is plain  # nothing to strip


def _state(gtid: str) -> bytes:
    """last_gtid's entry in an OK packet's session state, as MariaDB sends it."""
    value = gtid.encode()
    entry = bytes((9,)) + b"last_gtid" + bytes((len(value),)) + value
    return bytes((SESSION_TRACK_SYSTEM_VARIABLES, len(entry))) + entry


def _eof_ok(status: int, session_state: bytes = b"") -> bytes:
    """The OK with the EOF's header that ends rows with CLIENT_DEPRECATE_EOF."""
    return b"\xfe" + build_ok(0, 0, status, 0, session_state=session_state)[1:]


_DEFS = [build_column_def(ColumnDef(f"c{i}")) for i in range(2)]
_AC = SERVER_STATUS_AUTOCOMMIT
_MORE = SERVER_STATUS_AUTOCOMMIT | SERVER_MORE_RESULTS_EXISTS
# (command, deprecate-EOF, the payloads a tracking connection gets): every OK that carries
# session state must reach a client without tracking as without_session_state has it, and
# nothing else may change: rows that start with 0x00 (binary rows, empty strings) included.
_TRACKED_RESPONSES = {
    "one insert": (COM_QUERY, False, [build_ok(1, 7, _AC, session_state=_state("0-1-13"))]),
    "multi-statement writes, then a read, then an error": (COM_QUERY, False, [
        build_ok(1, 7, _MORE, session_state=_state("0-1-13")),
        build_ok(2, 0, _MORE, 0, b"Rows matched: 2  Changed: 2  Warnings: 0", session_state=_state("0-1-14")),
        b"\x02", *_DEFS, build_eof(0, _MORE), b"\x00\x01x", b"\x00\x00", build_eof(0, _MORE),
        build_ok(0, 0, _MORE),
        build_ok(1, 8, _MORE, session_state=_state("0-1-15")),
        build_err(1062, "23000", "Duplicate entry '1' for key 'PRIMARY'"),
    ]),
    "binary rows, deprecate-EOF, state in the OK after them": (COM_STMT_EXECUTE, True, [
        b"\x02", *_DEFS, b"\x00\x00\x01\x02", b"\x00\x00\x00\x00", _eof_ok(_AC, _state("0-1-16")),
    ]),
    "a call: rows, then its OK with state": (COM_QUERY, True, [
        b"\x02", *_DEFS, b"\x00\x00", _eof_ok(_MORE), build_ok(1, 0, _AC, session_state=_state("0-1-17")),
    ]),
}


@pytest.mark.parametrize("name", list(_TRACKED_RESPONSES))
@given(data=st.data())
def test_the_stripper_rewrites_every_ok_with_state_however_the_response_is_split(
    name: str, data: st.DataObject
) -> None:
    command, deprecate_eof, payloads = _TRACKED_RESPONSES[name]
    response = b"".join(encode_packet(p, i + 1) for i, p in enumerate(payloads))
    # what the server sends a client that does not track: every OK without its state (each
    # carries last_gtid here), the rest untouched (a binary row that starts with 0x00 is no OK)
    expected = b"".join(
        encode_packet(without_session_state(p) if b"last_gtid" in p else p, i + 1) for i, p in enumerate(payloads)
    )
    assert expected != response
    following = encode_packet(b"\x03SELECT 1", 0)  # the next command's bytes must not be taken
    stream = response + following
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=12))))
    framer = ResponseFramer(command, deprecate_eof=deprecate_eof, track_state_oks=True)
    stripper = SessionStateStripper()
    out = b""
    last = 0
    for cut in [*cuts, len(stream)]:
        chunk = stream[last:cut]
        last = cut
        used = framer.feed(chunk)
        out += stripper.relay(chunk[:used], framer)
        if framer.done:
            break
    assert framer.done
    assert out == expected


def test_tracking_sql_per_flavour() -> None:
    assert "session_track_system_variables = 'last_gtid'" in track_sql(MARIADB)
    assert track_sql(MYSQL).startswith("SET SESSION session_track_gtids = OWN_GTID")
    assert flavour_of("5.5.5-10.11.19-MariaDB-0+deb12u1") == MARIADB
    assert flavour_of("8.0.36") == MYSQL


def test_wait_sql_per_flavour() -> None:
    assert wait_sql(MARIADB, "0-0-14", 1500) == "SELECT MASTER_GTID_WAIT('0-0-14', 1.5)"
    assert wait_sql(MYSQL, f"{UUID}:1-23", 250) == f"SELECT WAIT_FOR_EXECUTED_GTID_SET('{UUID}:1-23', 0.25)"
    assert wait_sql(MYSQL, "x'y", 1000) == "SELECT WAIT_FOR_EXECUTED_GTID_SET('x''y', 1)"
    # 0 when reached; MariaDB's -1 and MySQL's 1 are timeouts, NULL an error
    assert wait_reached(b"0")
    assert not wait_reached(b"-1")
    assert not wait_reached(b"1")
    assert not wait_reached(None)


def test_positions() -> None:
    assert parse_position(MARIADB, "0-1-14,1-2-3") == {"0": 14, "1": 3}
    assert parse_position(MYSQL, f"{UUID.upper()}:1-5:7") == {UUID: 7}
    assert position_text(MARIADB, {"0": 14, "1": 3}) == "0-0-14,1-0-3"
    assert position_text(MYSQL, {UUID: 7}) == f"{UUID}:1-7"
    with pytest.raises(ValueError):
        parse_position(MARIADB, "0-14")
    with pytest.raises(ValueError):
        parse_position(MYSQL, UUID)
    assert covers_set(MARIADB, "0-1-20", {"0": 14})
    assert not covers_set(MARIADB, "0-1-13", {"0": 14})
    assert not covers_set(MARIADB, "garbage", {"0": 14})
    # MySQL: a gap below the highest applied number is not applied
    assert covers_set(MYSQL, f"{UUID}:1-30", {UUID: 23})
    assert not covers_set(MYSQL, f"{UUID}:1-20:22-30", {UUID: 23})
    assert not covers_set(MYSQL, f"{UUID}:1-20", {UUID: 23})


positions = st.dictionaries(st.sampled_from(["0", "1", "2"]), st.integers(0, 20), max_size=3)


@given(positions, positions, positions)
def test_merged_covers_both_and_is_the_least_such(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    both = merged(a, b)
    assert covers(both, a) and covers(both, b)
    if covers(c, a) and covers(c, b):
        assert covers(c, both)
    assert covers(a, a)
    assert merged(a, b) == merged(b, a)


def test_causal_mode() -> None:
    assert causal_mode(CAUSAL_USER, 0, None) == CAUSAL_OFF
    assert causal_mode(CAUSAL_USER, 1, None) == CAUSAL_SESSION
    assert causal_mode(CAUSAL_USER, 0, 10) == CAUSAL_SESSION  # the rule's gtid_from_hostgroup
    assert causal_mode(CAUSAL_SESSION, 0, None) == CAUSAL_SESSION
    assert causal_mode(CAUSAL_GLOBAL, 0, None) == CAUSAL_GLOBAL
    assert causal_mode(CAUSAL_GLOBAL, 1, 10) == CAUSAL_GLOBAL


addresses = st.sampled_from([("127.0.0.1", 3307), ("127.0.0.1", 3308), ("127.0.0.1", 3309)])
candidates = st.lists(st.tuples(addresses, st.none() | positions), max_size=3, unique_by=lambda c: c[0])


@given(st.none() | positions, candidates, st.integers(0, 5000))
def test_causal_route(
    wanted: dict[str, int] | None, found: list[tuple[tuple[str, int], dict[str, int] | None]], timeout_ms: int
) -> None:
    route, where = causal_route(wanted, found, timeout_ms)
    caught_up = [a for a, seen in found if seen is not None and covers(seen, wanted or {})]
    if not wanted:
        assert (route, where) == (CausalRoute.ANY, ())
    elif caught_up:
        # never a wait when a replica is known to have the writes; only such replicas
        assert route is CausalRoute.CAUGHT_UP
        assert list(where) == caught_up
    elif found and timeout_ms > 0:
        assert route is CausalRoute.WAIT
        assert list(where) == [a for a, _ in found]
    else:
        assert (route, where) == (CausalRoute.WRITER, ())
    # a replica not known to have the writes never serves the read without a wait
    if route is CausalRoute.CAUGHT_UP:
        assert all(covers(dict(found)[a] or {}, wanted or {}) for a in where)


def test_gtid_of_a_parsed_ok() -> None:
    assert gtid_of_ok(parse_ok(MARIADB_UPDATE_OK)) == "0-1-14"
    assert gtid_of_ok(parse_ok(MARIADB_PLAIN_UPDATE_OK)) is None
    assert gtid_of_ok(parse_ok(mysql_own_gtid_ok(f"{UUID}:23"))) == f"{UUID}:23"


def test_tracking_sql_keeps_a_tracking_clients_trackers() -> None:
    assert track_sql(MARIADB, keep_others=True) == (
        "SET SESSION session_track_system_variables = CONCAT(@@session_track_system_variables, ',last_gtid')"
    )
    assert track_sql(MYSQL, keep_others=True) == "SET SESSION session_track_gtids = OWN_GTID"


def test_monitor_position() -> None:
    assert monitor_position("0-1-14,1-2-3") == {"0": 14, "1": 3}
    assert monitor_position("") == {}
    # MySQL: per uuid, only the interval from 1 is known applied in order
    assert monitor_position(f"{UUID.upper()}:1-20:22-30,\n{UUID[:-1]}0:5-9") == {UUID: 20}
    assert monitor_position("garbage") is None
    assert monitor_position(f"{UUID}:x-3") is None


mysql_sets = st.lists(st.tuples(st.integers(1, 30), st.integers(0, 5)), max_size=3)


@given(mysql_sets, st.integers(1, 40))
def test_a_monitor_position_covers_only_what_the_set_covers(intervals: list[tuple[int, int]], wanted: int) -> None:
    text = f"{UUID}:" + ":".join(f"{low}-{low + span}" for low, span in intervals) if intervals else ""
    position = monitor_position(text)
    assert position is not None
    if covers(position, {UUID: wanted}):
        assert covers_set(MYSQL, text, {UUID: wanted})


def test_the_monitors_positions_reach_the_data_path_and_outlive_a_routing_change() -> None:
    from turnout.config.model import RuntimeConfig
    from turnout.proxy.hostgroups import HostgroupTable
    from turnout.proxy.proxy import Proxy

    a, b, c = ("127.0.0.1", 3307), ("127.0.0.1", 3308), ("127.0.0.1", 3309)
    proxy = Proxy(RuntimeConfig())
    proxy.applied = {a: {"0": 30}}  # a wait there succeeded
    proxy.apply_positions({a: "0-1-20", b: "0-1-12,1-1-4", c: "garbage"})
    # the further of the two stays; what cannot be read is not known
    assert proxy.applied == {a: {"0": 30}, b: {"0": 12, "1": 4}}
    route, where = causal_route({"0": 12}, [(b, proxy.applied.get(b)), (c, proxy.applied.get(c))], 1000)
    assert (route, where) == (CausalRoute.CAUGHT_UP, (b,))
    # a routing change forgets the waits' positions (a server may have been rebuilt), not the monitor's
    proxy.apply_routing(HostgroupTable.build(()))
    assert proxy.applied == {a: {"0": 20}, b: {"0": 12, "1": 4}}


# ---- the wait sent with the read: what the backend connection does with the bytes ----------------------
def _one_value_result(value: bytes) -> bytes:
    """MASTER_GTID_WAIT's answer, as MariaDB frames it without deprecate-EOF: one column, one row."""
    packets = [b"\x01", build_column_def(ColumnDef("w")), build_eof(0, SERVER_STATUS_AUTOCOMMIT),
               write_lenenc_bytes(value), build_eof(0, SERVER_STATUS_AUTOCOMMIT)]
    return b"".join(encode_packet(payload, seq) for seq, payload in enumerate(packets, start=1))


READ = bytes([COM_QUERY]) + b"SELECT v FROM t WHERE id = 1"
READ_ANSWER = b"".join(encode_packet(payload, seq) for seq, payload in enumerate(
    [b"\x01", build_column_def(ColumnDef("v")), build_eof(0, SERVER_STATUS_AUTOCOMMIT), write_lenenc_bytes(b"1"),
     build_eof(0, SERVER_STATUS_AUTOCOMMIT)], start=1))


async def _pipelined(wait_value: bytes, cuts: list[int]) -> tuple[bytes, bytes | None, bytes, bool]:
    """A BackendConnection on one end of a socket pair sends a wait with READ behind it; the other
    end, in the server's place, answers both in pieces cut at `cuts`. (What the server end got
    before answering; the wait's value; READ's answer as the channel then has it; whether
    skip_response left anything after it.)"""
    loop = asyncio.get_running_loop()
    proxy_end, server_end = socket.socketpair()
    server_end.setblocking(False)
    channel = Channel()
    await loop.create_connection(lambda: channel, sock=proxy_end)
    connection = BackendConnection(("127.0.0.1", 3306), "app", 0, channel, 7, SessionSettings())
    try:
        sql = wait_sql(MARIADB, "0-1-5", 1000)
        asked = asyncio.ensure_future(connection.query_value(sql, READ))
        expected = encode_packet(bytes([COM_QUERY]) + sql.encode(), 0) + encode_packet(READ, 0)
        received = b""
        while len(received) < len(expected):  # both commands, before any answer
            received += await loop.sock_recv(server_end, 65536)
        answers = _one_value_result(wait_value) + READ_ANSWER
        start = 0
        for cut in [*sorted(set(cuts)), len(answers)]:
            if cut > start:
                await loop.sock_sendall(server_end, answers[start:cut])
                await asyncio.sleep(0)
                start = cut
        server_end.shutdown(socket.SHUT_WR)  # nothing more: a connection that lost bytes ends, not hangs
        _, value = await asked
        if wait_reached(value):
            rest = b""
            while len(rest) < len(READ_ANSWER):
                chunk = await channel.read()
                if not chunk:
                    break
                rest += chunk
            return received, value, rest, False
        await connection.skip_response(COM_QUERY)
        return received, value, b"", channel.has_unread()
    finally:
        channel.close()
        server_end.close()


@given(
    st.sampled_from([b"0", b"-1"]),
    st.lists(st.integers(min_value=1, max_value=len(_one_value_result(b"-1")) + len(READ_ANSWER) - 1), max_size=6),
)
def test_a_read_sent_behind_its_wait_is_left_whole_on_the_connection(wait_value: bytes, cuts: list[int]) -> None:
    """The wait and the read leave together; the wait's answer is consumed to its last byte,
    however the two answers arrive cut; the read's is then on the channel whole (the wait
    reached), or read and dropped with nothing after it (the wait timed out)."""
    sql = wait_sql(MARIADB, "0-1-5", 1000)
    received, value, rest, surplus = asyncio.run(_pipelined(wait_value, cuts))
    assert received == encode_packet(bytes([COM_QUERY]) + sql.encode(), 0) + encode_packet(READ, 0)
    assert value == wait_value
    assert rest == (READ_ANSWER if wait_value == b"0" else b"")
    assert not surplus
