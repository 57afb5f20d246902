"""Transaction replay's record: what an open transaction sent and what it got back.

While a session is inside a transaction (and mysql-transaction_replay is on), every statement it
runs is kept as the client sent it (COM_QUERY, or COM_STMT_EXECUTE with its parameters), with a
checksum of the answer the client received (`ResultDigest`). When the transaction's server is
lost before its COMMIT was sent, the session runs the same statements on the new master and
compares each answer's checksum with the recorded one (replayer.py): equal everywhere, the
client carries on; else the transaction ends with error 1213 and says why.

What the checksum covers: the rows (text or binary protocol, every byte), the column count, an
OK packet's affected rows, insert id and warning count, an EOF's warning count, an ERR whole.
What it leaves out, because it differs between two servers or two connections for the same
result: packet sequence ids, status flags (and an OK packet's info and session-state text),
column definitions (metadata caching leaves them out on a connection that has them cached).

`unreproducible`: statements whose answer or effect a replay cannot reproduce even on the same
data (the time, random numbers, ids of the connection or the server…), decided on the text.
"""

from __future__ import annotations

import re
import zlib

from turnout.protocol.constants import SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_IN_TRANS
from turnout.protocol.packets import read_lenenc_int
from turnout.proxy.settings import SessionSettings
from turnout.proxy.statement import Keep

# Functions whose value differs from one call, connection or server to another (MariaDB
# MaxScale's readwritesplit leaves these to its checksums; turnout refuses them up front, so a
# value written by one of them is never silently replaced by another).
_FUNCTIONS = (
    "NOW", "SYSDATE", "CURDATE", "CURTIME", "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP",
    "LOCALTIME", "LOCALTIMESTAMP", "UTC_DATE", "UTC_TIME", "UTC_TIMESTAMP", "UNIX_TIMESTAMP",
    "RAND", "UUID", "UUID_SHORT", "SYS_GUID", "RANDOM_BYTES", "CONNECTION_ID", "LAST_INSERT_ID",
    "GET_LOCK", "RELEASE_LOCK", "RELEASE_ALL_LOCKS", "IS_FREE_LOCK", "IS_USED_LOCK",
    "MASTER_POS_WAIT", "MASTER_GTID_WAIT", "NEXTVAL", "LASTVAL", "SETVAL", "BENCHMARK",
)
# Keywords that are the time without parentheses.
_BARE = ("CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "LOCALTIME", "LOCALTIMESTAMP")
# Server variables that name the server, the connection or what it last generated.
_VARIABLES = (
    "SERVER_ID", "HOSTNAME", "SERVER_UUID", "PSEUDO_THREAD_ID", "THREAD_ID", "LAST_INSERT_ID",
    "IDENTITY", "INSERT_ID", "RAND_SEED1", "RAND_SEED2", "TIMESTAMP", "LAST_GTID", "GTID_CURRENT_POS",
    "GTID_BINLOG_POS", "GTID_SLAVE_POS", "GTID_EXECUTED", "PORT", "SOCKET",
)
_UNREPRODUCIBLE = re.compile(
    r"\b(?:(" + "|".join(_FUNCTIONS) + r")\s*\(|(" + "|".join(_BARE) + r")\b"
    r"|(NEXT|PREVIOUS)\s+VALUE\s+FOR\b)"
    r"|@@(?:SESSION\.|GLOBAL\.|LOCAL\.)?(" + "|".join(_VARIABLES) + r")\b"
    r"|\b(LOAD)\s+(?:DATA|XML)\b",
    re.IGNORECASE,
)
# What ended a transaction that is then replayed (said in error 1213 when the replay fails).
LOST_SERVER = "its server was lost before its COMMIT"
SWITCHED = "the master changed during a switchover before its COMMIT"
UNREPRODUCIBLE = "a statement's result cannot be reproduced"
TOO_LARGE = "it is larger than mysql-transaction_replay_max_size"
_CACHE_LIMIT = 4096
_verdicts: dict[str, str | None] = {}


def unreproducible(sql: str) -> str | None:
    """Why a replay could not reproduce this statement's answer or effect, or None. A name in a
    string literal or a comment counts too: refusing a replay is safe, a wrong one is not."""
    known = _verdicts.get(sql, "")
    if known != "":
        return known
    match = _UNREPRODUCIBLE.search(sql)
    verdict: str | None = None
    if match is not None:
        if match.group(1) is not None:
            verdict = f"it calls {match.group(1).upper()}()"
        elif match.group(2) is not None:
            verdict = f"it reads {match.group(2).upper()}"
        elif match.group(3) is not None:
            verdict = "it reads a sequence"
        elif match.group(4) is not None:
            verdict = f"it reads @@{match.group(4).lower()}"
        else:
            verdict = "it loads a file (LOAD DATA / LOAD XML)"
    if len(_verdicts) >= _CACHE_LIMIT:
        _verdicts.clear()
    _verdicts[sql] = verdict
    return verdict


# What a session may keep on its connection from before its transaction and still be replayed
# elsewhere: nothing of the session's lives on the connection then.
_RESTORABLE = frozenset({Keep.TRANSACTION, Keep.RULE_NO_MULTIPLEX})


def unrestorable(held: frozenset[Keep]) -> str | None:
    """Why a transaction cannot be replayed because of what its session kept on its connection
    before it began (user variables, temporary tables, locks… live only there), or None."""
    lost = sorted(str(reason) for reason in held - _RESTORABLE)
    if not lost:
        return None
    return "it may depend on session state kept on the lost connection (" + ", ".join(lost) + ")"


def opens_transaction(first_word: str, autocommit: bool) -> bool:
    """Whether a statement run outside a transaction may open one, so that recording starts with
    it: BEGIN / START TRANSACTION, or any statement when autocommit is off."""
    return first_word == "BEGIN" or first_word == "START" or not autocommit


# ---- the checksum of one answer ---------------------------------------------------------------
_FIRST = 0  # the first packet of a result: OK, ERR, EOF or a column count
_DEFINITIONS = 1  # column definitions (left out of the checksum), then their EOF if any
_ROWS = 2  # rows up to the EOF (or the OK with header 0xFE) or ERR

_COLLECT = 0  # the packet is gathered, then read
_STREAM = 1  # its payload goes into the checksum as it comes (a row)
_SKIP = 2  # left out (a column definition)
_PEEK = 3  # a row or the OK (header 0xFE) that ends the rows: its first byte says


class ResultDigest:
    """The checksum of one statement's answer, fed the bytes as they are relayed (any split).

    Either framing: with classic EOFs, or with CLIENT_DEPRECATE_EOF (no EOF after the column
    definitions, an OK with header 0xFE after the rows); the definitions are counted, so a
    result with them and one without (metadata caching) give the same checksum."""

    __slots__ = ("_columns", "_header", "_in_packet", "_left", "_mode", "_packet", "_state", "value")

    def __init__(self) -> None:
        self.value = 0
        self._header = bytearray()
        self._packet = bytearray()
        self._in_packet = False
        self._left = 0
        self._mode = _COLLECT
        self._state = _FIRST
        self._columns = 0  # column definitions still to come

    def reset(self) -> None:
        self.value = 0
        self._header.clear()
        self._packet.clear()
        self._in_packet = False
        self._left = 0
        self._state = _FIRST
        self._columns = 0

    def feed(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        view = memoryview(data)
        value = self.value
        while pos < end:
            if self._state == _ROWS and not self._in_packet and not self._header:
                # The common case, fast: the whole rows lying in `data` go into the checksum in
                # one call, their headers' sequence ids zeroed in a copy (a row counts as its
                # length, a zero byte and its payload, however it arrives: see _STREAM); anything
                # else (a short packet, the end, a split) goes below.
                run = pos
                rows: bytearray | None = None
                while pos + 4 < end:
                    length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                    stop = pos + 4 + length
                    first = data[pos + 4]
                    if length < 9 or stop > end or first == 0xFE or first == 0xFF:
                        break
                    if data[pos + 3]:
                        if rows is None:
                            rows = bytearray(view[run:end])
                        rows[pos + 3 - run] = 0
                    pos = stop
                if pos > run:
                    if rows is None:
                        value = zlib.crc32(view[run:pos], value)
                    else:
                        value = zlib.crc32(memoryview(rows)[: pos - run], value)
                    self.value = value
                if pos >= end:
                    return
            if not self._in_packet:
                header = self._header
                if not header and end - pos >= 4:
                    length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                    pos += 4
                else:
                    take = min(4 - len(header), end - pos)
                    header += data[pos : pos + take]
                    pos += take
                    if len(header) < 4:
                        return
                    length = header[0] | header[1] << 8 | header[2] << 16
                    header.clear()
                self._begin(length)
                value = self.value
                continue
            mode = self._mode
            if mode == _PEEK:
                mode = self._mode = _COLLECT if data[pos] == 0xFE or data[pos] == 0xFF else _STREAM
                if mode == _STREAM:  # a row: its length and a zero byte first, as the fast way above
                    left = self._left
                    self.value = zlib.crc32(bytes((left & 0xFF, left >> 8 & 0xFF, left >> 16, 0)), self.value)
            take = self._left
            if take > end - pos:
                take = end - pos
            if mode == _STREAM:
                self.value = zlib.crc32(memoryview(data)[pos : pos + take], self.value)
            elif mode == _COLLECT:
                self._packet += data[pos : pos + take]
            pos += take
            self._left -= take
            if self._left == 0:
                self._end()
            value = self.value

    def _begin(self, length: int) -> None:
        state = self._state
        if state == _DEFINITIONS:
            if self._columns > 0:
                self._columns -= 1
                self._mode = _SKIP
            elif length < 9:
                self._mode = _COLLECT  # their EOF, or (no EOF) a short first row
            else:
                self._state = _ROWS  # no EOF after the definitions: rows already
                self._mode = _PEEK
        elif state == _FIRST or length < 9:
            self._mode = _COLLECT  # OK / ERR / EOF / column count, or a short packet to look at
        else:
            self._mode = _PEEK
        self._left = length
        self._in_packet = True
        if length == 0:
            self._end()

    def _end(self) -> None:
        self._in_packet = False
        if self._mode != _COLLECT:
            return
        packet = self._packet
        state = self._state
        if not packet:
            self.value = zlib.crc32(b"\x00empty", self.value)
        elif packet[0] == 0xFF:
            self.value = zlib.crc32(packet, self.value)
        elif packet[0] == 0xFE and state != _FIRST:
            if state == _DEFINITIONS:  # the EOF after the definitions
                self.value = zlib.crc32(b"\xfe" + packet[1:3], self.value)
                self._state = _ROWS
            elif len(packet) < 9 and len(packet) <= 5:  # a classic EOF: its warning count
                self.value = zlib.crc32(b"\xfe" + packet[1:3], self.value)
                if len(packet) >= 5 and (packet[3] | packet[4] << 8) & SERVER_MORE_RESULTS_EXISTS:
                    self._state = _FIRST
            else:  # the OK with header 0xFE that ends the rows (CLIENT_DEPRECATE_EOF)
                self._ok(packet)
        elif state == _FIRST:
            if packet[0] == 0x00:
                self._ok(packet)
            elif packet[0] == 0xFE:  # an EOF answer (COM_SET_OPTION…)
                self.value = zlib.crc32(b"\xfe" + packet[1:3], self.value)
            else:
                count, used = read_lenenc_int(packet, 0)
                self.value = zlib.crc32(b"\x01" + packet[:used], self.value)
                # metadata caching's byte: 0 when the definitions are left out
                self._columns = 0 if count is None or (used < len(packet) and packet[used] == 0) else count
                self._state = _DEFINITIONS
        else:  # a row (short, or the first after definitions without their EOF)
            self.value = zlib.crc32(packet, self.value)
            self._state = _ROWS
        packet.clear()

    def _ok(self, packet: bytearray) -> None:
        """An OK: affected rows, insert id and warnings count; its status and info do not."""
        _, at = read_lenenc_int(packet, 1)
        _, at = read_lenenc_int(packet, at)
        self.value = zlib.crc32(b"\x00" + packet[1:at] + packet[at + 2 : at + 4], self.value)
        if len(packet) >= at + 2 and (packet[at] | packet[at + 1] << 8) & SERVER_MORE_RESULTS_EXISTS:
            self._state = _FIRST


# ---- the record of one transaction ------------------------------------------------------------
class Recorded:
    """One statement of the transaction as the client sent it, and its answer's checksum.

    A plain class, not a frozen dataclass: mypyc runs a dataclass's generated __init__ as
    interpreted code (frozen: an object.__setattr__ per field), one per recorded statement."""

    __slots__ = ("checksum", "num_params", "param_types", "payload", "sql")

    def __init__(self, payload: bytes, sql: str, num_params: int, param_types: bytes | None, checksum: int) -> None:
        self.payload = payload  # the client's command (COM_QUERY, or COM_STMT_EXECUTE with the client's id)
        self.sql = sql  # the statement's text (a prepared statement's, prepared again where it is replayed)
        self.num_params = num_params  # a prepared statement's parameter count
        self.param_types = param_types  # the parameter types in force when it ran
        self.checksum = checksum


class TransactionLog:
    """The open transaction's statements, bounded by `max_size` bytes: once larger, or once a
    statement that cannot be replayed ran, it keeps only why (`refused`) until the transaction
    ends. `active`: the session is inside a transaction the log follows."""

    __slots__ = (
        "_num_params",
        "_param_types",
        "_payload",
        "_sql",
        "active",
        "digest",
        "entries",
        "hostgroup",
        "max_size",
        "recording",
        "refused",
        "settings",
        "size",
    )

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.entries: list[Recorded] = []
        self.size = 0
        self.active = False
        self.refused: str | None = None
        self.settings = SessionSettings()  # the session's settings when the transaction began
        self.hostgroup = 0
        self.digest = ResultDigest()
        self.recording = False  # the statement in progress is being recorded
        self._payload = b""
        self._sql = ""
        self._num_params = 0
        self._param_types: bytes | None = None

    def open(self, settings: SessionSettings, refused: str | None) -> None:
        self.active = True
        self.entries = []
        self.size = 0
        self.refused = refused
        self.settings = settings
        self.recording = False

    def close(self) -> None:
        """The transaction ended (or was lost): nothing of it is kept."""
        self.active = False
        self.entries = []
        self.size = 0
        self.refused = None
        self.recording = False

    def refuse(self, reason: str) -> None:
        """Not replayable any more: the statements are let go, the reason is kept."""
        if self.refused is None:
            self.refused = reason
        self.entries = []
        self.size = 0
        self.recording = False

    def start(self, payload: bytes, sql: str, num_params: int, param_types: bytes | None) -> ResultDigest | None:
        """A statement of the transaction begins: the digest to feed its answer to, or None when
        it is not recorded (the log is refused already, or refuses now because of it)."""
        self.recording = False
        if self.refused is not None:
            return None
        why = unreproducible(sql)
        if why is not None:
            self.refuse(f"{UNREPRODUCIBLE} ({why})")
            return None
        size = self.size + len(payload) + 64
        if size > self.max_size:
            self.refuse(f"{TOO_LARGE} ({self.max_size} bytes)")
            return None
        self.size = size
        self._payload = payload
        self._sql = sql
        self._num_params = num_params
        self._param_types = param_types
        self.recording = True
        digest = self.digest
        digest.reset()
        return digest

    def done(self, succeeded: bool, status_flags: int) -> None:
        """The statement's answer reached the client; a success outside a transaction ends it."""
        if self.recording:
            self.recording = False
            self.entries.append(
                Recorded(self._payload, self._sql, self._num_params, self._param_types, self.digest.value)
            )
        if succeeded and not status_flags & SERVER_STATUS_IN_TRANS:
            self.close()
