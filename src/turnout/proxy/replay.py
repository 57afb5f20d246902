"""Transaction replay's record: what an open transaction sent and what it got back.

While a session is inside a transaction (and mysql-transaction_replay is on), every statement it
runs is kept as the client sent it (COM_QUERY, or COM_STMT_EXECUTE with its parameters), with a
checksum of the answer the client received (`ResultDigest`). When the transaction's server is
lost before its COMMIT was sent, the session runs the same statements on the new master and
compares each answer's checksum with the recorded one (replayer.py): equal everywhere, the
client carries on; else the transaction ends with error 1213 and says why.

What the checksum covers: the rows (text or binary protocol, every byte, in a CRC-32), the
column count, an OK packet's affected rows, insert id and warning count, the warning count of
the EOF that ends the rows, an ERR whole (in a CRC-32). What it leaves out, because it differs
between two servers or two connections for the same result: packet sequence ids, status flags
(and an OK packet's info and session-state text), column definitions and the EOF after them
(metadata caching leaves the definitions out on a connection that has them cached).

`unreproducible`: statements whose answer or effect a replay cannot reproduce even on the same
data (the time, random numbers, ids of the connection or the server…), decided on the text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import Final

from turnout.protocol.constants import SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_IN_TRANS
from turnout.protocol.packets import Buffer
from turnout.proxy.settings import SessionSettings
from turnout.proxy.statement import Keep, first_word

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
    if held <= _RESTORABLE:  # the common case, without building a set
        return None
    lost = sorted(str(reason) for reason in held - _RESTORABLE)
    return "it may depend on session state kept on the lost connection (" + ", ".join(lost) + ")"


def opens_transaction(first_word: str, autocommit: bool) -> bool:
    """Whether a statement run outside a transaction may open one, so that recording starts with
    it: BEGIN / START TRANSACTION, or any statement when autocommit is off."""
    return first_word == "BEGIN" or first_word == "START" or not autocommit


def may_open_transaction(sql: str, autocommit: bool) -> bool:
    """opens_transaction(first_word(sql), autocommit), without the cost of reading the first
    word (a regular expression, per autocommit statement) when the text starts with a letter:
    the word starts there, so its first five letters say."""
    if not autocommit:
        return True
    if sql[:1].isalpha():
        head = sql[:5]
        if not head.isascii() or (head.upper() != "BEGIN" and head.upper() != "START"):
            return False
        after = sql[5:6]  # the word is the ASCII letters from there (statement._FIRST_WORD)
        return not (after.isascii() and after.isalpha())
    return opens_transaction(first_word(sql), True)


# ---- the checksum of one answer ---------------------------------------------------------------
# Final: mypyc folds these in (a plain module constant is a dict lookup at every use).
_FIRST: Final = 0  # the first packet of a result: OK, ERR, EOF or a column count
_DEFINITIONS: Final = 1  # column definitions (left out of the checksum), then their EOF if any
_ROWS: Final = 2  # rows up to the EOF (or the OK with header 0xFE) or ERR
_MAX_PACKET: Final = 0xFFFFFF
_FIRST_ROW_SEQ: Final = 3  # a first row's sequence id after a column count and an EOF  # a row this long goes on in the next packet
# The checksum mixes the facts of the answer, each its kind then its number (h * _MUL + number,
# modulo a prime below 2**30: mypyc multiplies such ints without its slow path); a run of rows
# counts as its CRC-32.
_PRIME: Final = 1073741789  # 2**30 - 35
_MUL: Final = 48271
_SHORT_RUN: Final = 2048  # a run of rows up to this long is hashed from a copy (one allocation, not two)
_K_ROWS: Final = 1
_K_EOF: Final = 2
_K_OK: Final = 3
_K_ERR: Final = 4
_K_COUNT: Final = 5
_K_EMPTY: Final = 6


def _mixed(mix: int, kind: int, number: int) -> int:
    mix = (mix * _MUL + kind) % _PRIME
    return (mix * _MUL + number % _PRIME) % _PRIME


def _span(buf: bytes | bytearray, start: int, stop: int) -> Buffer:
    """buf[start:stop] to hash: a copy when short, else a view (no copy, but two objects)."""
    return buf[start:stop] if stop - start <= _SHORT_RUN else memoryview(buf)[start:stop]


def _lenenc(data: bytes, at: int, stop: int) -> tuple[int, int]:
    """A length-encoded integer of a packet ending at `stop`: (value, position after it); 0 and
    `stop` when the packet ends first (a malformed packet checksums as what it holds)."""
    if at >= stop:
        return 0, stop
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    if first == 0xFC and at + 3 <= stop:
        return data[at + 1] | data[at + 2] << 8, at + 3
    if first == 0xFD and at + 4 <= stop:
        return data[at + 1] | data[at + 2] << 8 | data[at + 3] << 16, at + 4
    if first == 0xFE and at + 9 <= stop:
        return int.from_bytes(data[at + 1 : at + 9], "little"), at + 9
    return 0, stop  # 0xFB (NULL), 0xFF or truncated


class ResultDigest:
    """The checksum of one statement's answer, fed the bytes as they are relayed (any split).

    Whole packets are read in place, in one pass (`_walk`): a run of rows goes into one CRC-32
    call, each row as its header and payload with the sequence id it would have in a result
    whose definitions were left out (3 for the first row, +1 each: the servers' ids differ with
    metadata caching and CLIENT_DEPRECATE_EOF), rewritten in a copy only where it is not that
    (so none in the commonest case, a cached binary result), the other packets give numbers (column count, warnings, affected rows,
    insert id) mixed without a call. A packet split across two feeds: a row streams into the
    CRC as it comes (`_left`), a column definition is skipped as it comes, anything else (short)
    waits whole in `_pending`.

    Either framing: with classic EOFs, or with CLIENT_DEPRECATE_EOF (no EOF after the column
    definitions, an OK with header 0xFE after the rows); the definitions are counted, never read,
    and the EOF after them is left out, so a result with them and one without (metadata caching)
    give the same checksum."""

    __slots__ = ("_columns", "_continued", "_crc", "_crc32", "_left", "_mix", "_pending", "_seq", "_skipping", "_state")

    def __init__(self) -> None:
        self._mix = 0  # the facts so far
        self._crc = 0  # the CRC-32 of the run of rows in progress
        # zlib.crc32 read once: mypyc looks a module's attribute up at every use
        self._crc32: Callable[[Buffer, int], int] = zlib.crc32
        self._state = _FIRST
        self._columns = 0  # column definitions still to come
        self._left = 0  # bytes of a split packet still to come (a row, or a definition when _skipping)
        self._skipping = False
        self._continued = False  # the next packet goes on with a row of _MAX_PACKET bytes
        self._pending = b""  # the start of a split short packet
        self._seq = _FIRST_ROW_SEQ  # the sequence id the next row counts with

    @property
    def value(self) -> int:
        return (self._mix * _MUL + self._crc % _PRIME) % _PRIME

    def reset(self) -> None:
        self._mix = 0
        self._crc = 0
        self._state = _FIRST
        self._columns = 0
        self._left = 0
        self._skipping = False
        self._continued = False
        self._pending = b""
        self._seq = _FIRST_ROW_SEQ

    def feed(self, data: bytes) -> None:
        pos = 0
        end = len(data)
        left = self._left
        if left:  # the rest of a split row (or definition)
            take = left if left < end else end
            if not self._skipping:
                self._crc = self._crc32(memoryview(data)[:take], self._crc)
            self._left = left - take
            if take == end:
                return
            pos = take
        if self._pending:
            data = self._pending + data[pos:]
            self._pending = b""
            pos = 0
            end = len(data)
        pos = self._walk(data, pos, end)
        if pos < end:
            self._split(data, pos, end)

    def _walk(self, data: bytes, pos: int, end: int) -> int:
        """Every whole packet from `pos` on; where the first incomplete one starts."""
        state = self._state
        mix = self._mix
        crc = self._crc
        columns = self._columns
        continued = self._continued
        seq = self._seq
        crc32 = self._crc32
        run = -1  # where the run of rows in progress starts in `data`
        rows: bytearray | None = None  # its copy from `run` on, once a sequence id needs zeroing
        while end - pos >= 4:
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            stop = pos + 4 + length
            if stop > end:
                break
            first = data[pos + 4] if length else 0
            if state == _ROWS:
                # A row: anything but 0xFE (EOF, or the OK that ends the rows, shorter than a row
                # starting with 0xFE can be) and 0xFF (ERR), and whatever follows a full packet.
                if continued or first < 0xFE or (first == 0xFE and length == _MAX_PACKET):
                    if run < 0:
                        run = pos
                        rows = None
                    if data[pos + 3] != seq:
                        if rows is None:
                            rows = bytearray(data[run:end])
                        rows[pos + 3 - run] = seq
                    seq = (seq + 1) & 0xFF
                    continued = length == _MAX_PACKET
                    pos = stop
                    continue
                if run >= 0:
                    crc = crc32(_span(data, run, pos) if rows is None else _span(rows, 0, pos - run), crc)
                    run = -1
                mix = _mixed(mix, _K_ROWS, crc)
                crc = 0
                if first == 0xFF:
                    mix = _mixed(mix, _K_ERR, crc32(data[pos + 4 : stop], 0))
                    state = _FIRST
                elif length <= 5:  # a classic EOF: its warning count
                    if length >= 3:
                        mix = _mixed(mix, _K_EOF, (data[pos + 5] | data[pos + 6] << 8))
                    if length >= 5 and (data[pos + 7] | data[pos + 8] << 8) & SERVER_MORE_RESULTS_EXISTS:
                        state = _FIRST
                else:  # the OK with header 0xFE that ends the rows (CLIENT_DEPRECATE_EOF)
                    mix, more = self._ok(data, pos + 5, stop, mix)
                    if more:
                        state = _FIRST
            elif state == _DEFINITIONS:
                if columns > 0:
                    columns -= 1
                    pos = stop
                    continue
                state = _ROWS
                seq = _FIRST_ROW_SEQ
                if first == 0xFE and length <= 5:  # the EOF after the definitions: left out
                    pos = stop
                # else: no EOF (CLIENT_DEPRECATE_EOF, or none sent): this packet is read as one of the rows'
                continue
            elif not length:
                mix = _mixed(mix, _K_EMPTY, 0)
            elif first == 0x00:
                mix, more = self._ok(data, pos + 5, stop, mix)
            elif first == 0xFF or first == 0xFB:  # ERR (or a LOCAL INFILE request): whole
                mix = _mixed(mix, _K_ERR, crc32(data[pos + 4 : stop], 0))
            elif first == 0xFE:  # an EOF answer (COM_SET_OPTION…)
                warnings = data[pos + 5] | data[pos + 6] << 8 if length >= 3 else 0
                mix = _mixed(mix, _K_EOF, warnings)
            else:  # a column count, then (metadata caching) whether the definitions follow
                count, at = _lenenc(data, pos + 4, stop)
                mix = _mixed(mix, _K_COUNT, count)
                columns = 0 if at < stop and data[at] == 0 else count
                state = _DEFINITIONS
            pos = stop
        if run >= 0:
            crc = crc32(_span(data, run, pos) if rows is None else _span(rows, 0, pos - run), crc)
        self._state = state
        self._mix = mix
        self._crc = crc
        self._columns = columns
        self._continued = continued
        self._seq = seq
        return pos

    def _ok(self, data: bytes, at: int, stop: int, mix: int) -> tuple[int, bool]:
        """An OK's affected rows, insert id and warning count mixed in (not its status flags,
        info or session state); and whether more results follow."""
        affected, at = _lenenc(data, at, stop)
        insert_id, at = _lenenc(data, at, stop)
        warnings = data[at + 2] | data[at + 3] << 8 if at + 4 <= stop else 0
        mix = _mixed(mix, _K_OK, affected)
        mix = _mixed(mix, _K_OK, insert_id)
        mix = _mixed(mix, _K_OK, warnings)
        return mix, at + 2 <= stop and bool((data[at] | data[at + 1] << 8) & SERVER_MORE_RESULTS_EXISTS)

    def _split(self, data: bytes, pos: int, end: int) -> None:
        """The packet at `pos` goes on in the next feed: a row streams, a definition is skipped
        as it comes, anything else waits whole (it is short)."""
        if end - pos >= 5:
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            first = data[pos + 4]
            got = end - pos - 4
            if self._state == _DEFINITIONS:
                if self._columns > 0:
                    self._columns -= 1
                    self._skipping = True
                    self._left = length - got
                    return
                if not (first == 0xFE and length <= 5):
                    self._state = _ROWS  # no EOF after the definitions: a row
                    self._seq = _FIRST_ROW_SEQ
            if self._state == _ROWS and (
                self._continued or first < 0xFE or (first == 0xFE and length == _MAX_PACKET)
            ):
                crc32 = self._crc32
                header = bytes((length & 0xFF, length >> 8 & 0xFF, length >> 16, self._seq))
                self._seq = (self._seq + 1) & 0xFF
                self._crc = crc32(memoryview(data)[pos + 4 : end], crc32(header, self._crc))
                self._continued = length == _MAX_PACKET
                self._skipping = False
                self._left = length - got
                return
        self._pending = data[pos:end]


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
        if self.entries:  # a new list (a replay may be reading the old one), only when needed
            self.entries = []
        self.size = 0
        self.refused = refused
        self.settings = settings
        self.recording = False

    def close(self) -> None:
        """The transaction ended (or was lost): nothing of it is kept."""
        self.active = False
        if self.entries:
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
