"""Where a server's response to one command ends, found without decoding rows.

The framer walks packet headers in the byte stream. It keeps only the packets it must read
(the first packet of a result set, column-count, EOF / OK / ERR, PrepareOk); rows and column
definitions are skipped by counting down their lengths.

CLIENT_DEPRECATE_EOF (`deprecate_eof`): where both sides agreed on it, no EOF follows column
definitions (of a result set or a PrepareOk), and what ends rows (and COM_FIELD_LIST's
definitions, and answers COM_SET_OPTION) is an OK packet with the EOF's header 0xFE, of any
length short of a continued packet (session tracking may lengthen it). A row never starts with
0xFE below 16 MiB (0xFE starts a length of 2**24 or more), so the header alone tells it apart.

MariaDB's progress reports (MARIADB_CLIENT_PROGRESS): while a long statement runs (ALTER TABLE,
LOAD DATA…), the server may send ERR packets with error code 0xFFFF before its answer. They are
not the answer: the framer passes over them.

MariaDB's metadata caching (MARIADB_CLIENT_CACHE_METADATA): where both sides agreed on it, a
result's column-count packet carries one more byte, 1 when column definitions follow and 0 when
they are left out because the client has them cached (COM_STMT_EXECUTE of an unchanged
statement); the EOF after the definitions is sent either way. The framer reads that byte from
the packet's length, so it frames both kinds of connection alike.
"""

from __future__ import annotations

from typing import Protocol

from turnout.protocol.constants import (
    COM_FIELD_LIST,
    COM_QUIT,
    COM_STATISTICS,
    COM_STMT_CLOSE,
    COM_STMT_EXECUTE,
    COM_STMT_FETCH,
    COM_STMT_PREPARE,
    COM_STMT_SEND_LONG_DATA,
    SERVER_MORE_RESULTS_EXISTS,
    SERVER_SESSION_STATE_CHANGED,
    SERVER_STATUS_CURSOR_EXISTS,
)
from turnout.protocol.generic import ErrPacket, OkPacket, parse_eof, parse_err, parse_ok
from turnout.protocol.packets import MAX_PAYLOAD, Buffer, MalformedPacket, read_lenenc_int
from turnout.protocol.prepared import PrepareOk, parse_prepare_ok

_NO_RESPONSE = frozenset({COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT})


def expects_response(command: int) -> bool:
    """Whether the server answers `command` at all."""
    return command not in _NO_RESPONSE


# Where in the response the next logical packet falls.
_FIRST = 0  # first packet of a response or of the next result
_COLUMNS = 1  # column definitions of a result set
_COLUMNS_EOF = 2  # the EOF after them
_ROWS = 3  # rows until EOF or ERR
_FIELDS = 4  # COM_FIELD_LIST: definitions until EOF or ERR
_SINGLE = 5  # COM_STATISTICS: one string packet
_PREP_PARAMS = 6
_PREP_PARAMS_EOF = 7
_PREP_COLUMNS = 8
_PREP_COLUMNS_EOF = 9

# States whose packets are skipped unless their first byte says ERR or EOF.
_PEEKING = frozenset({_COLUMNS, _ROWS, _FIELDS, _PREP_PARAMS, _PREP_COLUMNS})
# Column definitions, kept when asked (`keep_columns`).
_DEFINITIONS = frozenset({_COLUMNS, _PREP_COLUMNS})
# A packet shorter than this that starts with 0xFE ends a list: 9 for a classic EOF, any length
# short of a continued packet for the OK that stands in for it (CLIENT_DEPRECATE_EOF).
_EOF_LIMIT = 9
_OK_EOF_LIMIT = MAX_PAYLOAD


def is_progress_report(payload: bytes | bytearray) -> bool:
    """A MariaDB progress report: an ERR packet with error code 0xFFFF, never a final answer."""
    return len(payload) >= 3 and payload[0] == 0xFF and payload[1] == 0xFF and payload[2] == 0xFF


class ResponseFramer:
    """Fed the server's bytes after one command, says where its response ends."""

    __slots__ = (
        "_at",
        "_base",
        "_collect",
        "_continues",
        "_eof_limit",
        "_expect_seq",
        "_header",
        "_in_payload",
        "_left",
        "_length",
        "_packet_start",
        "_peek",
        "_remaining",
        "_state",
        "boundary",
        "columns",
        "command",
        "deprecate_eof",
        "done",
        "error",
        "keep_columns",
        "last_seq",
        "local_infile",
        "metadata_omitted",
        "ok",
        "prepare",
        "result_sets",
        "state_oks",
        "status_flags",
        "track_state_oks",
        "warnings",
    )

    def __init__(
        self, command: int, keep_columns: bool = False, deprecate_eof: bool = False, track_state_oks: bool = False
    ) -> None:
        self.command = command
        self.deprecate_eof = deprecate_eof
        self._eof_limit = _OK_EOF_LIMIT if deprecate_eof else _EOF_LIMIT
        # Keep the column definitions of a PrepareOk or of the first result set in `columns`
        # (None when none were sent); `metadata_omitted` says the first result set left them out.
        self.keep_columns = keep_columns
        self.columns: list[bytes] | None = None
        self.metadata_omitted = False
        self.done = False
        self.status_flags = 0
        # The warning count of the response's last OK or EOF (what SHOW WARNINGS would list).
        self.warnings = 0
        self.error: ErrPacket | None = None
        self.ok: OkPacket | None = None
        self.local_infile = False
        self.prepare: PrepareOk | None = None
        self.last_seq = -1
        self.result_sets = 0
        # Offsets in the response's bytes (0: its first byte): `boundary` is the end of the last
        # whole packet fed; with `track_state_oks`, `state_oks` lists (start, end) of each OK
        # packet (header included) that carries session state, for the relay to rewrite
        # (causal.SessionStateStripper) before a client that did not ask for it sees it.
        self.track_state_oks = track_state_oks
        self.state_oks: list[tuple[int, int]] = []
        self.boundary = 0
        self._base = 0  # offset of the next byte fed
        self._at = 0  # offset the piece-by-piece path has reached
        self._packet_start = 0
        if command == COM_FIELD_LIST:
            self._state = _FIELDS
        elif command == COM_STATISTICS:
            self._state = _SINGLE
        elif command == COM_STMT_FETCH:
            self._state = _ROWS
        else:
            self._state = _FIRST
        self._header = bytearray()
        self._remaining = 0  # payload bytes of the current piece still to come
        self._length = 0  # logical payload length so far
        self._in_payload = False
        self._continues = False  # the current piece is full: another piece of the same packet follows
        self._collect: bytearray | None = None
        self._peek = False
        self._left = 0
        self._expect_seq: int | None = None

    def feed(self, data: Buffer) -> int:
        """Consume the leading bytes of `data` that belong to this response; return how many."""
        end = len(data)
        pos = 0
        base = self._base
        if not self._in_payload and not self._header and self._length == 0:
            pos = self._feed_whole_packets(data, end)
        while pos < end and not self.done and not self.local_infile:
            if not self._in_payload:
                header = self._header
                if not header and self._length == 0 and not self._continues:
                    self._packet_start = base + pos
                if header or end - pos < 4:
                    take = min(4 - len(header), end - pos)
                    header += data[pos : pos + take]
                    pos += take
                    if len(header) < 4:
                        break
                    length = header[0] | header[1] << 8 | header[2] << 16
                    seq = header[3]
                    header.clear()
                else:
                    length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                    seq = data[pos + 3]
                    pos += 4
                self._at = base + pos
                self._start_piece(length, seq)
                continue
            take = self._remaining
            if take > end - pos:
                take = end - pos
            if self._peek:
                self._peek = False
                first = data[pos]
                if first == 0xFF or (first == 0xFE and self._remaining < self._eof_limit and not self._continues):
                    self._collect = bytearray()
            if self._collect is not None:
                self._collect += data[pos : pos + take]
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                self._at = base + pos
                self._end_piece()
        self._base = base + pos
        return pos

    def _feed_whole_packets(self, data: Buffer, end: int) -> int:
        """The common case, fast: packets that lie whole in `data`, each handed to the state
        machine exactly as the piece-by-piece path would; stops at the first one that does not."""
        pos = 0
        base = self._base
        while pos + 4 < end and not self.done and not self.local_infile:
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            stop = pos + 4 + length
            if length == 0 or length == MAX_PAYLOAD or stop > end:
                break
            seq = data[pos + 3]
            if self._expect_seq is not None and seq != self._expect_seq:
                raise MalformedPacket(f"packet out of order: got sequence id {seq}, expected {self._expect_seq}")
            self._expect_seq = (seq + 1) & 0xFF
            self.last_seq = seq
            first = data[pos + 4]
            if self._skips() and first != 0xFF and not (first == 0xFE and length < self._eof_limit):
                payload = None
            else:
                payload = bytearray(data[pos + 4 : stop])
            self._packet_start = base + pos
            self.boundary = base + stop
            pos = stop
            self._on_packet(payload)
        return pos

    def resume_after_infile(self) -> None:
        """The client has sent its file (up to the empty packet): wait for the server's OK/ERR."""
        if not self.local_infile:
            raise MalformedPacket("no LOCAL INFILE request is pending")
        self.local_infile = False
        self._state = _FIRST
        self._expect_seq = None

    def _start_piece(self, length: int, seq: int) -> None:
        if self._expect_seq is not None and seq != self._expect_seq:
            raise MalformedPacket(f"packet out of order: got sequence id {seq}, expected {self._expect_seq}")
        self._expect_seq = (seq + 1) & 0xFF
        self.last_seq = seq
        if self._length == 0 and not self._continues:
            # A new logical packet.
            if self._skips():
                self._collect = None
                self._peek = True
            else:
                self._collect = bytearray()
                self._peek = False
        else:
            self._peek = False
        self._length += length
        self._continues = length == MAX_PAYLOAD
        self._remaining = length
        self._in_payload = True
        if length == 0:
            self._end_piece()

    def _skips(self) -> bool:
        """Whether the next packet is skipped (unless it turns out to be ERR or EOF)."""
        state = self._state
        if state not in _PEEKING:
            return False
        return not (self.keep_columns and state in _DEFINITIONS and self.result_sets == 0)

    def _end_piece(self) -> None:
        self._in_payload = False
        self._peek = False
        if self._continues:
            return
        payload = self._collect
        self._collect = None
        self._length = 0
        self.boundary = self._at
        self._on_packet(payload)

    def _on_packet(self, payload: bytearray | None) -> None:
        state = self._state
        if state == _ROWS:
            if payload is None:
                return
            if payload[0] == 0xFF:
                self._finish_err(payload)
                return
            self.result_sets += 1
            status, self.warnings = self._end_of_list(payload)
            self._after_result(status)
        elif state in (_COLUMNS, _PREP_PARAMS, _PREP_COLUMNS):
            if payload is not None:  # None: skipped unread (it was no ERR or EOF)
                if not payload:  # kept definitions are collected whole, an empty one too
                    raise MalformedPacket("an empty packet where a column definition belongs")
                if payload[0] == 0xFF:
                    self._finish_err(payload)
                    return
                if self._skips() or (payload[0] == 0xFE and len(payload) < self._eof_limit):
                    raise MalformedPacket("EOF before the announced number of column definitions")
                if self.columns is not None:
                    self.columns.append(bytes(payload))
            self._left -= 1
            if self._left == 0:
                if self.deprecate_eof:  # no EOF follows the definitions
                    self._on_definitions_eof(state + 1, self.status_flags)
                else:
                    self._state = state + 1
        elif state in (_COLUMNS_EOF, _PREP_PARAMS_EOF, _PREP_COLUMNS_EOF):
            self._on_definitions_eof(state, self._eof_or_err(payload))
        elif state == _FIRST:
            self._on_first(payload)
        elif state == _FIELDS:
            if payload is None:
                return
            if payload[0] == 0xFF:
                self._finish_err(payload)
                return
            self.status_flags, self.warnings = self._end_of_list(payload)
            self.done = True
        else:  # _SINGLE
            if payload and payload[0] == 0xFF:
                self._finish_err(payload)
            else:
                self.done = True

    def _end_of_list(self, payload: bytearray) -> tuple[int, int]:
        """The status flags and warning count of what ends a list: an EOF, or with
        CLIENT_DEPRECATE_EOF the OK packet with header 0xFE."""
        if self.deprecate_eof:
            ok = parse_ok(payload)
            self._note_state(ok.status_flags)
            return ok.status_flags, ok.warnings
        eof = parse_eof(payload)
        return eof.status_flags, eof.warnings

    def _eof_or_err(self, payload: bytearray | None) -> int | None:
        """The status flags of an EOF; None (and the response is over) for an ERR."""
        if not payload:
            raise MalformedPacket("expected EOF or ERR")
        if payload[0] == 0xFF:
            self._finish_err(payload)
            return None
        return parse_eof(payload).status_flags

    def _on_definitions_eof(self, state: int, flags: int | None) -> None:
        if flags is None:
            return
        self.status_flags = flags
        if state == _COLUMNS_EOF:
            if self.deprecate_eof:  # a cursor's status comes in the OK that ends the (empty) rows
                self._state = _ROWS
            elif self.command == COM_STMT_EXECUTE and flags & SERVER_STATUS_CURSOR_EXISTS:
                # Rows come later, through COM_STMT_FETCH.
                self.result_sets += 1
                self.done = True
            else:
                self._state = _ROWS
        elif state == _PREP_PARAMS_EOF and self.prepare is not None and self.prepare.num_columns:
            self._left = self.prepare.num_columns
            self._state = _PREP_COLUMNS
        else:
            self.done = True

    def _on_first(self, payload: bytearray | None) -> None:
        if not payload:
            raise MalformedPacket("empty response packet")
        first = payload[0]
        if first == 0x00:
            if self.command == COM_STMT_PREPARE:
                self._on_prepare_ok(parse_prepare_ok(payload))
                return
            ok = parse_ok(payload)
            self.ok = ok
            self.warnings = ok.warnings
            self._note_state(ok.status_flags)
            self._after_result(ok.status_flags)
        elif first == 0xFF:
            if is_progress_report(payload):
                return  # the answer is still to come
            self._finish_err(payload)
        elif first == 0xFB:
            self.local_infile = True
        elif first == 0xFE and len(payload) < self._eof_limit:
            self.status_flags, self.warnings = self._end_of_list(payload)
            self.done = True
        else:
            count, used = read_lenenc_int(payload, 0)
            if not count:
                raise MalformedPacket("bad column count")
            self._left = count
            self._state = _COLUMNS
            if used < len(payload):  # metadata caching's "metadata follows" byte
                if payload[used] > 1 or used + 1 != len(payload):
                    raise MalformedPacket("bad column count packet")
                if payload[used] == 0:
                    self._state = _ROWS if self.deprecate_eof else _COLUMNS_EOF
                    if self.result_sets == 0:
                        self.metadata_omitted = True
                    return
            if self.keep_columns and self.result_sets == 0:
                self.columns = []

    def _on_prepare_ok(self, prepare: PrepareOk) -> None:
        self.prepare = prepare
        if self.keep_columns:
            self.columns = []
        if prepare.num_params:
            self._left = prepare.num_params
            self._state = _PREP_PARAMS
        elif prepare.num_columns:
            self._left = prepare.num_columns
            self._state = _PREP_COLUMNS
        else:
            self.done = True

    def _after_result(self, flags: int) -> None:
        self.status_flags = flags
        if flags & SERVER_MORE_RESULTS_EXISTS and self.command != COM_STMT_FETCH:
            self._state = _FIRST
        else:
            self.done = True

    def _note_state(self, status_flags: int) -> None:
        """The OK packet just read carries session state: note where it lies."""
        if self.track_state_oks and status_flags & SERVER_SESSION_STATE_CHANGED:
            self.state_oks.append((self._packet_start, self.boundary))

    def _finish_err(self, payload: bytearray) -> None:
        # ERR carries no status: keep the last one this response reported, minus "more results".
        self.error = parse_err(payload)
        self.status_flags &= ~SERVER_MORE_RESULTS_EXISTS
        self.done = True


class ResponseOutcome(Protocol):
    """How a response ended, as the session needs it (a ResponseFramer, or a WholeResultSet)."""

    @property
    def status_flags(self) -> int: ...
    @property
    def error(self) -> ErrPacket | None: ...
    @property
    def ok(self) -> OkPacket | None: ...
    @property
    def warnings(self) -> int: ...


class WholeResultSet:
    """What the proxy needs to know of a response `whole_result_set` recognised."""

    __slots__ = ("status_flags",)
    error: ErrPacket | None = None
    ok: OkPacket | None = None
    warnings = 0  # whole_result_set takes only result sets without warnings

    def __init__(self, status_flags: int) -> None:
        self.status_flags = status_flags


def whole_result_set(data: bytes, deprecate_eof: bool = False) -> int:
    """The final status flags when `data` is exactly one complete result set and nothing more
    (column count under 251 with or without metadata caching's byte, its column definitions
    unless that byte left them out, EOF (none with `deprecate_eof`), rows, then the EOF (with
    `deprecate_eof`, the OK with header 0xFE) without "more results" and without warnings:
    a statement with warnings keeps its connection for SHOW WARNINGS, which the framer says);
    -1 for anything else, which `ResponseFramer` then reads packet by packet.

    The common answer to a SELECT arrives in one read; this walks its packets' headers and first
    bytes only, checking each packet is what its place in a result set says it must be and that
    the sequence ids follow each other. `data` is bytes, not any Buffer: compiled, indexing
    bytes is a machine operation where a Buffer's is a generic call.
    """
    end = len(data)
    if end < 14 or data[1] != 0 or data[2] != 0:
        return -1
    count = data[4]
    if count == 0 or count > 250:
        return -1
    if data[0] == 1:
        columns = count
        pos = 5
    elif data[0] == 2 and data[5] < 2:  # metadata caching: 0 when the definitions are left out
        columns = count if data[5] else 0
        pos = 6
    else:
        return -1
    # the packet after the definitions: their EOF, or with deprecate_eof already rows
    eof_index = -1 if deprecate_eof else columns + 1
    index = 0  # packets after the column count
    seq = data[3]
    while pos < end:
        if end - pos < 5:
            return -1
        length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        seq = (seq + 1) & 0xFF
        if data[pos + 3] != seq:
            return -1
        start = pos + 4
        pos = start + length
        if length == 0 or length == MAX_PAYLOAD or pos > end:
            return -1
        index += 1
        first = data[start]
        terminator = first == 0xFF or (first == 0xFE and (deprecate_eof or length < 9))
        if index <= columns:  # a column definition
            if terminator:
                return -1
        elif index == eof_index:  # the EOF after the definitions
            if first != 0xFE or length != 5:
                return -1
        elif terminator:  # the end of the rows: must be an EOF (an OK), and the last packet
            if first != 0xFE or pos != end:
                return -1
            if deprecate_eof:
                # 0xFE, affected rows and insert id (0, one byte each), status, warnings, and
                # maybe session tracking's info after them
                if length < 7 or data[start + 1] or data[start + 2] or data[start + 5] or data[start + 6]:
                    return -1
            elif length != 5 or data[start + 1] or data[start + 2]:
                return -1
            flags = data[start + 3] | data[start + 4] << 8
            if flags & (SERVER_MORE_RESULTS_EXISTS | SERVER_STATUS_CURSOR_EXISTS):
                return -1  # (a cursor's definitions followed by no rows: the framer says)
            return flags
    return -1
