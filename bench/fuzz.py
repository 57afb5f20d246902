"""Fuzzing the MySQL protocol layer, sans-IO and through a live proxy (not run in CI).

Part 1 feeds mutated and random packets into `turnout.protocol` directly, both sides:
- what a client sends a proxy: the packet reader, the server side of the handshake
  (HandshakeResponse, SSLRequest, auth switch answers), COM_CHANGE_USER and every command parser;
- what a server sends a proxy: the client side of the handshake (greetings, auth switch and
  more-data packets, OK/ERR), OK/ERR/EOF/PrepareOk/column definition/row parsers, the response
  framer (one command's whole answer, fed in random chunks) and the whole-result-set scan.
The seeds are built with the protocol's own builders; each case is one seed mutated (bit flips,
bytes replaced, inserted, deleted, truncated, duplicated, length-encoded markers planted) or
random bytes. A parser may refuse bad input only with `ProtocolError` (the data path turns that
into a MySQL error or a closed connection); any other exception is a crash, reported with the
input that raised it (a reproducer, as hex).

Part 2 sends mutated and random packets to a live `turnout proxy` with a real MariaDB sandbox
behind it, from raw sockets: before login (handshake answers), and after a real login (command
packets: COM_QUERY, prepared statements, COM_CHANGE_USER, unknown commands, broken headers).
Afterwards the proxy process must still be running, serve a normal client, and hold no backend
connection beyond its pool's idle ones (every pooled connection idle: ConnUsed 0; the servers'
app-user threads equal the pools' ConnFree).

    python -m bench.fuzz [--sansio 1000000] [--live 100000] [--seed 1]

Writes bench/results/fuzz.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import socket
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql

from bench.common import RESULTS_DIR, log, machine, workdir, write_json
from turnout.protocol import commands as cmd
from turnout.protocol import constants as c
from turnout.protocol.client import ClientHandshake
from turnout.protocol.generic import build_eof, build_err, build_ok, parse_eof, parse_err, parse_ok
from turnout.protocol.handshake import (
    ChangeUser,
    Greeting,
    HandshakeResponse,
    build_auth_switch_request,
    build_change_user,
    build_greeting,
    build_handshake_response,
    build_ssl_request,
    parse_auth_switch_request,
    parse_change_user,
    parse_greeting,
)
from turnout.protocol.metadata import with_metadata
from turnout.protocol.packets import Packet, PacketBuffer, ProtocolError, encode_packet
from turnout.protocol.prepared import PrepareOk, build_prepare_ok, parse_prepare_ok
from turnout.protocol.response import ResponseFramer, whole_result_set
from turnout.protocol.resultset import (
    ColumnDef,
    build_column_def,
    build_text_resultset,
    parse_column_def,
    parse_text_row,
)
from turnout.protocol.server import ServerHandshake

# ---- mutation ------------------------------------------------------------------------------------

MARKERS = (b"\x00", b"\xfb", b"\xfc", b"\xfd", b"\xfe", b"\xff", b"\xff\xff\xff", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff")


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to four random edits of `data`."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        pos = rng.randrange(len(out) + 1)
        if op == 0 and out:  # flip a bit
            i = min(pos, len(out) - 1)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and out:  # replace a byte
            out[min(pos, len(out) - 1)] = rng.randrange(256)
        elif op == 2:  # insert random bytes
            out[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 3 and out:  # delete a range
            del out[pos:pos + rng.randint(1, 16)]
        elif op == 4:  # truncate
            del out[pos:]
        elif op == 5 and out:  # duplicate a chunk
            start = rng.randrange(len(out))
            out[pos:pos] = out[start:start + rng.randint(1, 32)]
        elif op == 6:  # plant a length-encoded marker
            marker = rng.choice(MARKERS)
            out[pos:pos + len(marker)] = marker
        else:  # extreme values in a little-endian field
            out[pos:pos + 2] = rng.choice((b"\x00\x00", b"\xff\xff", b"\xff\x7f", b"\x00\x80"))
    return bytes(out)


def random_payload(rng: random.Random) -> bytes:
    size = rng.choice((0, 1, 2, 4, 9, 20, 64, 300))
    return rng.randbytes(rng.randint(0, size))


def case(rng: random.Random, seeds: list[bytes]) -> bytes:
    """A mutated seed (9 in 10) or random bytes."""
    if rng.random() < 0.1:
        return random_payload(rng)
    return mutate(rng, rng.choice(seeds))


# ---- seeds, built with the protocol's own builders -------------------------------------------------

CAPS = c.DEFAULT_SERVER_CAPABILITIES


def client_seeds() -> dict[str, list[bytes]]:
    """Payloads a client sends."""
    hello = [
        build_handshake_response(HandshakeResponse(CAPS, 1 << 24, 33, "app", b"x" * 20, "db", "mysql_native_password",
                                                   {"_client_name": "fuzz", "_pid": "1"})),
        build_handshake_response(HandshakeResponse(CAPS & ~c.CLIENT_CONNECT_ATTRS, 1 << 24, 45, "u", b"", None, None)),
        build_handshake_response(HandshakeResponse(CAPS | (1 << 35), 1 << 24, 224, "app", b"y" * 32, None,
                                                   "caching_sha2_password")),
        build_ssl_request(CAPS | c.CLIENT_SSL, 1 << 24, 33),
    ]
    commands = [
        cmd.build_query("SELECT 1"), cmd.build_query("INSERT INTO t VALUES (1, 'a')"),
        cmd.build_stmt_prepare("SELECT ? + ?"), cmd.build_stmt_close(7), cmd.build_stmt_reset(7),
        cmd.build_stmt_fetch(7, 100), cmd.build_init_db("test"), cmd.build_set_option(1),
        cmd.build_field_list("t", "%"), cmd.build_command(c.COM_PING), cmd.build_command(c.COM_QUIT),
        cmd.build_stmt_execute(cmd.StmtExecute(7, 0, 1, b"\x00", True, b"\x08\x00\xfe\x00", b"\x01" + b"\x00" * 7 + b"\x03abc")),
        cmd.build_stmt_execute(cmd.StmtExecute(9, 0, 1, b"\x01", False, None, b"")),
        build_change_user(ChangeUser("app", b"z" * 20, "db", 33, "mysql_native_password", {"a": "b"}), CAPS),
    ]
    return {"hello": hello, "commands": commands}


def server_seeds() -> dict[str, list[bytes]]:
    """Payloads and whole responses a server sends."""
    greetings = [
        build_greeting(Greeting(10, "10.11.6-MariaDB", 42, b"s" * 20, CAPS & 0xFFFFFFFF, 33, 2, "mysql_native_password",
                                0)),
        build_greeting(Greeting(10, "5.5.5-10.11.6-MariaDB-log", 7, b"t" * 20, (CAPS & 0xFFFFFFFF) & ~1, 45, 2,
                                "mysql_native_password", 0x1F)),
        build_greeting(Greeting(10, "8.0.36", 9, b"u" * 20, CAPS & 0xFFFFFFFF, 255, 2, "caching_sha2_password", 0)),
    ]
    auth = [build_ok(), build_err(1045, "Access denied", "28000"),
            build_auth_switch_request("mysql_native_password", b"v" * 20 + b"\x00"),
            build_auth_switch_request("caching_sha2_password", b"w" * 20 + b"\x00"), b"\x01\x03", b"\x01\x04",
            b"\x01" + b"-----BEGIN PUBLIC KEY-----"]
    column = build_column_def(ColumnDef("a", schema="s", table="t"))
    packets = [build_ok(3, 9, 2, 1, b"Records: 3"), build_err(1146, "Table 'x.y' doesn't exist", "42S02"), build_eof(),
               build_prepare_ok(PrepareOk(5, 2, 1, 0)), column, b"\x01a\xfb\x03abc"]
    rows = [[1, "x", None], [2, "yy" * 40, 3.5]]
    responses = {
        c.COM_QUERY: [
            build_text_resultset(["a", "b", "c"], rows),
            build_text_resultset([ColumnDef("n", schema="s")], [[i] for i in range(20)]),
            encode_packet(build_ok(1, 5), 1), encode_packet(build_err(1064, "syntax"), 1),
            encode_packet(b"\xfbfile.csv", 1),  # LOCAL INFILE request
            build_text_resultset(["a"], [[1]], status_flags=2 | c.SERVER_MORE_RESULTS_EXISTS)
            + build_text_resultset(["b"], [[2]], seq=6),  # count, definition, EOF, row, EOF: 1..5
        ],
        c.COM_STMT_PREPARE: [
            encode_packet(build_prepare_ok(PrepareOk(5, 1, 2, 0)), 1) + encode_packet(column, 2)
            + encode_packet(column, 3) + encode_packet(build_eof(), 4) + encode_packet(column, 5)
            + encode_packet(build_eof(), 6),
            encode_packet(build_prepare_ok(PrepareOk(6, 0, 0, 0)), 1),
        ],
        c.COM_STMT_EXECUTE: [
            encode_packet(b"\x01", 1) + encode_packet(column, 2) + encode_packet(build_eof(), 3)
            + encode_packet(b"\x00\x00\x01\x00\x00\x00", 4) + encode_packet(build_eof(), 5),
            encode_packet(b"\x01\x00", 1) + encode_packet(b"\x00\x00\x02\x00\x00\x00", 2)
            + encode_packet(build_eof(), 3),  # metadata left out (MariaDB's caching)
        ],
        c.COM_FIELD_LIST: [encode_packet(column, 1) + encode_packet(build_eof(), 2)],
        c.COM_STATISTICS: [encode_packet(b"Uptime: 1  Threads: 1", 1)],
        c.COM_STMT_FETCH: [encode_packet(b"\x00\x00\x01\x00\x00\x00", 1) + encode_packet(build_eof(), 2)],
    }
    return {"greetings": greetings, "auth": auth, "packets": packets,
            "responses": [bytes(r) for rs in responses.values() for r in rs], "commands": list(responses)}


# ---- sans-IO targets ---------------------------------------------------------------------------------


class Crash:
    def __init__(self, target: str, data: bytes, exc: BaseException) -> None:
        self.target, self.data = target, data
        self.kind = f"{type(exc).__name__}: {exc}"[:200]
        self.where = traceback.extract_tb(exc.__traceback__)[-1]


def sansio_targets(rng: random.Random) -> list[tuple[str, Callable[[], bytes], Callable[[bytes], object]]]:
    cs, ss = client_seeds(), server_seeds()
    all_client = cs["hello"] + cs["commands"]

    def packet_stream(data: bytes) -> None:
        buffer = PacketBuffer(max_payload=rng.choice((16, 300, 1 << 24)))
        pos = 0
        while pos < len(data):
            step = rng.randint(1, 64)
            buffer.feed(data[pos:pos + step])
            pos += step
            while buffer.next_packet() is not None:
                pass

    def server_handshake(data: bytes) -> None:
        hs = ServerHandshake(1, tls=rng.random() < 0.5)
        hs.greeting()
        seq = 1 if rng.random() < 0.95 else rng.randrange(256)
        hs.receive(Packet(seq, data))
        if hs.response is not None and hs.wants_switch:
            hs.switch_to_native()
            hs.receive(Packet(3, mutate(rng, data)))

    def commands(data: bytes) -> None:
        """The parser the proxy would pick for the command byte (now and then another one)."""
        command = cmd.command_of(data)
        if rng.random() < 0.1:
            command = rng.choice(list(by_command))
        for parse in by_command.get(command, ()):
            parse(data)

    by_command: dict[int, tuple[Callable[[bytes], object], ...]] = {
        c.COM_QUERY: (cmd.query_text,),
        c.COM_STMT_PREPARE: (cmd.query_text,),
        c.COM_STMT_EXECUTE: (lambda d: cmd.parse_stmt_execute(d, rng.choice((0, 1, 2, 3, 9))), cmd.stmt_id_of,
                             lambda d: cmd.with_stmt_id(d, 99)),
        c.COM_STMT_CLOSE: (cmd.stmt_id_of,), c.COM_STMT_RESET: (cmd.stmt_id_of,),
        c.COM_STMT_FETCH: (cmd.stmt_id_of, lambda d: cmd.with_stmt_id(d, 99)),
        c.COM_STMT_SEND_LONG_DATA: (cmd.stmt_id_of,),
        c.COM_INIT_DB: (cmd.parse_init_db,), c.COM_SET_OPTION: (cmd.parse_set_option,),
        c.COM_FIELD_LIST: (cmd.parse_field_list,),
        c.COM_CHANGE_USER: (lambda d: parse_change_user(d, CAPS if rng.random() < 0.7 else rng.getrandbits(64)),),
    }

    def client_handshake(data: bytes) -> None:
        hs = ClientHandshake("app", password="pw", database="db" if rng.random() < 0.5 else None,
                             tls=rng.random() < 0.2)
        answer = hs.receive(Packet(0, data))
        if isinstance(answer, bytes):
            hs.receive(Packet(2, case(rng, ss["auth"])))

    packet_parsers: list[tuple[Callable[[bytes], object], list[bytes]]] = [
        (parse_ok, [build_ok(3, 9, 2, 1, b"Records: 3"), build_ok()]),
        (parse_err, [build_err(1146, "Table 'x.y' doesn't exist", "42S02"), build_err(2013, "lost")]),
        (parse_eof, [build_eof(), build_eof(1, 0x22)]),
        (parse_prepare_ok, [build_prepare_ok(PrepareOk(5, 2, 1, 0))]),
        (parse_column_def, [build_column_def(ColumnDef("a", schema="s", table="t")), build_column_def(ColumnDef("é"))]),
        (lambda d: parse_text_row(d, rng.randint(0, 4)), [b"\x01a\xfb\x03abc", b"\xfb\xfb", b"\x0512345"]),
        (parse_greeting, ss["greetings"]),
        (parse_auth_switch_request, ss["auth"][2:4]),
    ]
    chosen: list[Callable[[bytes], object]] = [parse_ok]

    def server_packet_case() -> bytes:
        parse, seeds = rng.choice(packet_parsers)
        chosen[0] = parse
        return case(rng, seeds if rng.random() < 0.8 else ss["packets"])

    def server_packets(data: bytes) -> None:
        chosen[0](data)

    def framer(data: bytes) -> None:
        framer = ResponseFramer(rng.choice(ss["commands"]), keep_columns=rng.random() < 0.5)
        pos = 0
        while pos < len(data) and not framer.done:
            if framer.local_infile:
                framer.resume_after_infile()
            step = rng.choice((1, 3, 7, 64, len(data)))
            used = framer.feed(data[pos:pos + step])
            if used == 0 and not framer.local_infile:
                break
            pos += used

    def whole(data: bytes) -> None:
        whole_result_set(data)
        if rng.random() < 0.2:
            with_metadata(data, [build_column_def(ColumnDef("a"))])

    return [
        ("client: packet reader", lambda: case(rng, [encode_packet(p, 0) for p in all_client]), packet_stream),
        ("client: handshake (server side)", lambda: case(rng, cs["hello"]), server_handshake),
        ("client: commands", lambda: case(rng, all_client), commands),
        ("server: handshake (client side)", lambda: case(rng, ss["greetings"]), client_handshake),
        ("server: OK/ERR/EOF/PrepareOk/columns/rows/greeting", server_packet_case, server_packets),
        ("server: response framer", lambda: case(rng, ss["responses"]), framer),
        ("server: whole result set scan", lambda: case(rng, ss["responses"]), whole),
    ]


def run_sansio(count: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    targets = sansio_targets(rng)
    per_target: dict[str, collections.Counter[str]] = {name: collections.Counter() for name, _, _ in targets}
    crashes: dict[tuple[str, str, int], Crash] = {}
    started = time.monotonic()
    for i in range(count):
        name, make, run = targets[i % len(targets)]
        data = make()
        try:
            run(data)
            per_target[name]["accepted"] += 1
        except ProtocolError:
            per_target[name]["refused (ProtocolError)"] += 1
        except Exception as exc:  # a crash: anything the data path does not expect
            per_target[name]["crash"] += 1
            crash = Crash(name, data, exc)
            crashes.setdefault((name, crash.where.filename, crash.where.lineno or 0), crash)
        if i and i % 100_000 == 0:
            log(f"sans-IO: {i:,} cases, {len(crashes)} distinct crashes, {time.monotonic() - started:.0f} s")
    seconds = time.monotonic() - started
    return {
        "cases": count, "seconds": round(seconds, 1), "seed": seed,
        "per_target": {k: dict(v) for k, v in per_target.items()},
        "distinct_crashes": [
            {"target": cr.target, "error": cr.kind, "at": f"{Path(cr.where.filename).name}:{cr.where.lineno}",
             "input_hex": cr.data.hex()[:400]}
            for cr in crashes.values()
        ],
    }


# ---- live proxy ----------------------------------------------------------------------------------------


def _recv_some(sock: socket.socket, limit: int = 1 << 16) -> bytes:
    try:
        return sock.recv(limit)
    except (TimeoutError, OSError):
        return b""


def _login(port: int, user: str, password: str) -> socket.socket:
    """A raw socket logged in through the proxy with the protocol's own client handshake."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    hs = ClientHandshake(user, password=password, capabilities=CAPS & ~c.CLIENT_SSL & ~c.CLIENT_COMPRESS)
    buffer = PacketBuffer()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the proxy closed the connection during login")
        buffer.feed(data)
        while (packet := buffer.next_packet()) is not None:
            answer = hs.receive(packet)
            if isinstance(answer, bytes):
                sock.sendall(answer)
            elif answer is not None:
                if type(answer).__name__ != "AuthDone":
                    raise ConnectionError(f"login refused: {answer}")
                return sock


def run_live(count: int, seed: int, out: dict[str, Any]) -> dict[str, Any]:
    from bench.common import child, tail
    from turnout.sandbox.config import APP
    from turnout.sandbox.deploy import sandbox_config
    from turnout.sandbox.ports import free_port_block
    from turnout.sandbox.sandbox import Sandbox

    rng = random.Random(seed + 1)
    cs = client_seeds()
    results: dict[str, Any] = {"cases": count}
    with workdir("turnout-fuzz-") as tmp:
        base = free_port_block(2)
        box = Sandbox.create(tmp / "sandbox", base, 1)
        try:
            box.execute(0, "CREATE DATABASE IF NOT EXISTS fz", "CREATE TABLE IF NOT EXISTS fz.t (id INT PRIMARY KEY, v TEXT)",
                        "INSERT IGNORE INTO fz.t VALUES (1, 'a'), (2, 'b')")
            ports = free_port_block(2)
            config = tmp / "turnout.toml"
            config.write_text(sandbox_config(box, tmp / "data", ports, ports + 1))
            log_path = tmp / "turnout.log"
            with child([sys.executable, "-m", "turnout.cli", "proxy", "--config", str(config)], log_path) as proc:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        pymysql.connect(host="127.0.0.1", port=ports, user=APP.user, password=APP.password).close()
                        break
                    except pymysql.err.MySQLError:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise RuntimeError(f"turnout proxy did not start:\n{tail(log_path)}") from None
                        time.sleep(0.1)
                fds_before = len(os.listdir(f"/proc/{proc.pid}/fd"))
                kinds: collections.Counter[str] = collections.Counter()
                started = time.monotonic()
                sent = 0
                session: socket.socket | None = None
                used = 0
                while sent < count:
                    if proc.poll() is not None:
                        raise RuntimeError(f"turnout proxy exited with {proc.returncode}:\n{tail(log_path)}")
                    if rng.random() < 0.1:  # before login: a mutated handshake answer
                        sock = socket.create_connection(("127.0.0.1", ports), timeout=2)
                        _recv_some(sock)
                        sock.sendall(encode_packet(case(rng, cs["hello"]), 1 if rng.random() < 0.9 else rng.randrange(256)))
                        sent += 1
                        kinds["handshake"] += 1
                        sock.settimeout(0.2)
                        _recv_some(sock)
                        sock.close()
                        continue
                    if session is None or used > 200:
                        if session is not None:
                            session.close()
                        session = _login(ports, APP.user, APP.password)
                        session.settimeout(0.01)
                        used = 0
                    burst = b""
                    for _ in range(rng.randint(1, 10)):
                        payload = case(rng, cs["commands"])
                        if rng.random() < 0.05:
                            burst += rng.randbytes(rng.randint(1, 8))  # a broken header
                        else:
                            burst += encode_packet(payload, 0)
                        sent += 1
                        used += 1
                    kinds["command bursts"] += 1
                    try:
                        session.sendall(burst)
                        while _recv_some(session):
                            pass
                    except OSError:
                        session.close()
                        session = None
                    if sent and sent % 10_000 < 5:
                        log(f"live: {sent:,} packets, {time.monotonic() - started:.0f} s")
                if session is not None:
                    session.close()
                seconds = time.monotonic() - started
                results.update(alive_after=proc.poll() is None, seconds=round(seconds, 1), kinds=dict(kinds))
                # a normal client still gets normal answers
                with pymysql.connect(host="127.0.0.1", port=ports, user=APP.user, password=APP.password,
                                     autocommit=True) as conn, conn.cursor() as cur:
                    cur.execute("SELECT id, v FROM fz.t ORDER BY id")
                    results["normal_client_rows"] = list(cur.fetchall())
                    cur.execute("INSERT INTO fz.t VALUES (3, 'c') ON DUPLICATE KEY UPDATE v = 'c'")
                results["normal_client_ok"] = results["normal_client_rows"] == [(1, "a"), (2, "b")]
                results["leaks"] = _leaks(box, ports + 1, APP.user, proc.pid)
                _drain_pools(ports, APP.user, APP.password)
                results["leaks_after_every_idle_connection_was_taken_once"] = _leaks(box, ports + 1, APP.user,
                                                                                     proc.pid)
                results["proxy_fds_before"] = fds_before
                results["proxy_fds_after"] = len(os.listdir(f"/proc/{proc.pid}/fd"))
                results["errors_in_log"] = _log_errors(log_path)
        finally:
            box.down(destroy=True)
    return results


def _proxy_sockets(pid: int, ports: set[int]) -> collections.Counter[str]:
    """The proxy process's TCP sockets to the servers' ports, by state (ESTABLISHED, CLOSE_WAIT...)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    names = {"01": "ESTABLISHED", "08": "CLOSE_WAIT", "06": "TIME_WAIT", "04": "FIN_WAIT1", "05": "FIN_WAIT2"}
    states: collections.Counter[str] = collections.Counter()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if fields[9] in inodes and remote_port in ports:
                    states[names.get(fields[3], fields[3])] += 1
    return states


def _leaks(box: Any, admin_port: int, app_user: str, pid: int) -> dict[str, Any]:
    """Backend connections once the fuzzing clients have left: none in use (ConnUsed 0), and every
    live socket the proxy holds to a server is a thread on that server (the pools' idle ones and
    the monitor's). Pooled connections a server ended meanwhile (it closes a connection on a
    malformed packet) wait in the pool as CLOSE_WAIT sockets until they are next taken out,
    when they are dropped unused; counted apart."""
    ports = {node.port for node in box.nodes}
    deadline = time.monotonic() + 30
    while True:
        with pymysql.connect(host="127.0.0.1", port=admin_port, user="admin", password="admin") as conn, \
                conn.cursor() as cur:
            cur.execute("SELECT SUM(ConnUsed), SUM(ConnFree) FROM stats_mysql_connection_pool")
            used, free = (int(v or 0) for v in cur.fetchone())
            cur.execute("SELECT COUNT(*) FROM stats_mysql_processlist")
            sessions = int(cur.fetchone()[0])
        threads = {"app": 0, "other": 0}
        for node in box.nodes:
            for row in box.execute(node.index, "SELECT USER, COUNT(*) AS n FROM information_schema.PROCESSLIST "
                                               "WHERE USER IN ('app', 'monitor') GROUP BY USER"):
                threads["app" if row["USER"] == app_user else "other"] += int(row["n"])
        sockets = _proxy_sockets(pid, ports)
        settled = used == 0 and sessions == 0 and sockets["ESTABLISHED"] == threads["app"] + threads["other"] \
            and threads["app"] <= free
        if settled or time.monotonic() > deadline:
            return {"pool_conn_used": used, "pool_conn_free": free, "server_app_threads": threads["app"],
                    "server_monitor_threads": threads["other"], "proxy_sockets_to_servers": dict(sockets),
                    "client_sessions": sessions, "leaked": not settled}
        time.sleep(0.2)


def _drain_pools(port: int, user: str, password: str, clients: int = 12) -> None:
    """Enough concurrent statements on both hostgroups to take every idle connection out once."""
    import threading

    def one(statement: str) -> None:
        with pymysql.connect(host="127.0.0.1", port=port, user=user, password=password) as conn, conn.cursor() as cur:
            cur.execute(statement)

    threads = [threading.Thread(target=one, args=(f"SELECT SLEEP(0.5){' FOR UPDATE' if i % 2 else ''}",))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)


def _log_errors(path: Path) -> dict[str, int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        if "Traceback" in line:
            counts["tracebacks"] += 1
        elif " ERROR " in line:
            counts["error lines"] += 1
    return dict(counts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sansio", type=int, default=1_000_000, help="cases into the sans-IO layer")
    parser.add_argument("--live", type=int, default=100_000, help="packets through a live proxy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "fuzz.json")
    args = parser.parse_args()
    data: dict[str, Any] = {"benchmark": "fuzz", "machine": machine()}
    if args.sansio:
        log(f"sans-IO: {args.sansio:,} cases")
        data["sansio"] = run_sansio(args.sansio, args.seed)
        crashes = data["sansio"]["distinct_crashes"]
        log(f"sans-IO: {args.sansio:,} cases in {data['sansio']['seconds']} s, {len(crashes)} distinct crashes")
        for crash in crashes:
            log(f"  {crash['target']}: {crash['error']} at {crash['at']}; input {crash['input_hex'][:120]}")
    if args.live:
        log(f"live: {args.live:,} packets through turnout proxy")
        data["live"] = run_live(args.live, args.seed, data)
        log(f"live: {data['live']}")
    out = write_json(args.out, data)
    log(f"wrote {out}")
    ok = not data.get("sansio", {}).get("distinct_crashes") and (
        not args.live or (data["live"]["alive_after"] and data["live"]["normal_client_ok"]
                          and not data["live"]["leaks"]["leaked"]
                          and not data["live"]["leaks_after_every_idle_connection_was_taken_once"]["leaked"]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
