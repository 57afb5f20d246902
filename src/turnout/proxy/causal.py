"""Causal reads' protocol and SQL, per server flavour: pure functions, no I/O.

A backend connection that tracks its session's GTIDs gets, in the OK packet of each statement
that committed a transaction, the GTID it wrote: MariaDB through the `last_gtid` system
variable tracker (`session_track_system_variables`), MySQL through `session_track_gtids =
OWN_GTID`. Both come in the OK packet's session state (CLIENT_SESSION_TRACK), which
`written_gtid` reads and `without_session_state` removes before the OK goes to a client that did
not ask for session tracking.

A read that must see a GTID waits for it on a replica with `wait_sql` (MariaDB's
MASTER_GTID_WAIT, MySQL's WAIT_FOR_EXECUTED_GTID_SET), whose one value `wait_reached` reads.

Positions are kept as `Position`s: MariaDB's as {domain: sequence}, MySQL's as {server uuid:
highest transaction number}; `covers` and `merged` compare and combine them. (A MySQL replica's
executed set is read as its highest number per uuid: a multi-threaded replica may have gaps below
it, so MySQL positions from the monitor are only used through `covers_set`, which reads intervals.)
"""

from __future__ import annotations

from turnout.protocol.constants import SERVER_SESSION_STATE_CHANGED
from turnout.protocol.generic import OkPacket
from turnout.protocol.packets import MalformedPacket, read_lenenc_int, read_lenenc_uint
from turnout.protocol.response import ResponseFramer

# Session state change types (the OK packet's session state info).
SESSION_TRACK_SYSTEM_VARIABLES = 0
SESSION_TRACK_GTIDS = 3

MARIADB = "mariadb"
MYSQL = "mysql"

# {domain (MariaDB) or server uuid (MySQL): the highest sequence number}
Position = dict[str, int]


def flavour_of(server_version: str) -> str:
    """The flavour of a server, by the version its greeting announced."""
    return MARIADB if "MariaDB" in server_version else MYSQL


def track_sql(flavour: str, keep_others: bool = False) -> str:
    """What a backend connection runs once, after its login, so that the OK packet of every
    statement that commits a transaction carries its GTID. Nothing else is tracked (the other
    trackers are off, so no other OK packet carries session state), unless `keep_others`: the
    connection serves clients that track session state themselves, whose trackers stay."""
    if keep_others:
        if flavour == MARIADB:
            return (
                "SET SESSION session_track_system_variables = "
                "CONCAT(@@session_track_system_variables, ',last_gtid')"
            )
        return "SET SESSION session_track_gtids = OWN_GTID"
    if flavour == MARIADB:
        return (
            "SET SESSION session_track_system_variables = 'last_gtid', session_track_schema = OFF, "
            "session_track_state_change = OFF, session_track_transaction_info = OFF"
        )
    return (
        "SET SESSION session_track_gtids = OWN_GTID, session_track_system_variables = '', "
        "session_track_schema = OFF, session_track_state_change = OFF, session_track_transaction_info = OFF"
    )


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def wait_sql(flavour: str, gtid: str, timeout_ms: int) -> str:
    """A SELECT of one value that waits up to `timeout_ms` for the server to have applied `gtid`."""
    seconds = f"{max(timeout_ms, 0) / 1000:g}"
    if flavour == MARIADB:
        return f"SELECT MASTER_GTID_WAIT({_sql_string(gtid)}, {seconds})"
    return f"SELECT WAIT_FOR_EXECUTED_GTID_SET({_sql_string(gtid)}, {seconds})"


def wait_reached(value: bytes | None) -> bool:
    """The wait's value: 0 when the GTID was applied in time (MariaDB -1 and MySQL 1 are timeouts;
    NULL is an error, e.g. a malformed GTID)."""
    return value == b"0"


# ---- positions ---------------------------------------------------------------------------------------
def parse_position(flavour: str, text: str) -> Position:
    """A GTID, or a list/set of them, as a Position. MariaDB: 'D-S-N,...'; MySQL: 'uuid:1-5:7,...'
    (the highest number per uuid). Raises ValueError for what is neither."""
    found: Position = {}
    for part in text.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        if flavour == MARIADB:
            pieces = part.split("-")
            if len(pieces) != 3:
                raise ValueError(f"not a MariaDB GTID: {part!r}")
            key, number = str(int(pieces[0])), int(pieces[2])
            int(pieces[1])  # a server id: a number, though it does not count
        else:
            uuid, _, ranges = part.partition(":")
            if not ranges:
                raise ValueError(f"not a MySQL GTID: {part!r}")
            key = uuid.lower()
            number = max(int(r.rpartition("-")[2]) for r in ranges.split(":"))
        if number > found.get(key, -1):
            found[key] = number
    return found


def covers(seen: Position, wanted: Position) -> bool:
    """Whether a server at `seen` has applied everything up to `wanted`, in every domain."""
    return all(seen.get(key, -1) >= number for key, number in wanted.items())


def merged(first: Position, second: Position) -> Position:
    """The position that covers both."""
    result = dict(first)
    for key, number in second.items():
        if number > result.get(key, -1):
            result[key] = number
    return result


def gtid_intervals(executed: str) -> dict[str, list[tuple[int, int]]]:
    """A MySQL GTID set ('uuid:1-5:7,uuid2:1-3') as each uuid's (low, high) intervals;
    ValueError when it is not one."""
    intervals: dict[str, list[tuple[int, int]]] = {}
    for part in executed.replace("\n", "").split(","):
        part = part.strip()
        if not part:
            continue
        uuid, _, ranges = part.partition(":")
        for piece in ranges.split(":"):
            low, _, high = piece.partition("-")
            intervals.setdefault(uuid.lower(), []).append((int(low), int(high or low)))
    return intervals


def covers_set(flavour: str, executed: str, wanted: Position) -> bool:
    """Whether a server whose applied GTIDs the monitor read as `executed` (MariaDB
    gtid_slave_pos; MySQL gtid_executed, intervals and all) has applied `wanted`. MySQL: the
    wanted number must lie in an interval of its uuid (a gap below the highest is not applied)."""
    if flavour == MARIADB:
        try:
            return covers(parse_position(MARIADB, executed), wanted)
        except ValueError:
            return False
    try:
        intervals = gtid_intervals(executed)
    except ValueError:
        return False
    for key, number in wanted.items():
        # own GTIDs are one transaction each, but the session's earlier ones are covered by the
        # replica applying in order: the interval must reach from 1 to the number
        if not any(low <= 1 and number <= high for low, high in intervals.get(key, ())):
            return False
    return True


def position_text(flavour: str, position: Position) -> str:
    """A Position as the wait function takes it: MariaDB 'D-0-N,...' (the server id does not count
    for MASTER_GTID_WAIT, which compares sequence numbers per domain), MySQL 'uuid:1-N,...'."""
    if flavour == MARIADB:
        return ",".join(f"{key}-0-{number}" for key, number in sorted(position.items()))
    return ",".join(f"{key}:1-{number}" for key, number in sorted(position.items()))


# ---- the OK packet's session state -----------------------------------------------------------------
def _state_offset(payload: bytes) -> int:
    """Where an OK payload's session state info starts (its total length first), or -1 when it
    carries none (SERVER_SESSION_STATE_CHANGED clear)."""
    if len(payload) < 7 or payload[0] not in (0x00, 0xFE):  # 0xFE: the OK that ends rows (deprecate-EOF)
        return -1
    _, pos = read_lenenc_uint(payload, 1)
    _, pos = read_lenenc_uint(payload, pos)
    if pos + 4 > len(payload):
        raise MalformedPacket("truncated OK packet")
    status = payload[pos] | payload[pos + 1] << 8
    if not status & SERVER_SESSION_STATE_CHANGED:
        return -1
    info_length, pos = read_lenenc_uint(payload, pos + 4)
    return pos + info_length


def written_gtid(payload: bytes) -> str | None:
    """The GTID an OK payload (with CLIENT_SESSION_TRACK) reports the statement wrote: MariaDB's
    `last_gtid` system variable, MySQL's SESSION_TRACK_GTIDS; None when it reports none."""
    start = _state_offset(payload)
    if start < 0:
        return None
    return _gtid_in_state(payload, start)


def gtid_of_ok(ok: OkPacket) -> str | None:
    """`written_gtid` of a parsed OK packet (its `info`: all that follows the warnings)."""
    if not ok.status_flags & SERVER_SESSION_STATE_CHANGED:
        return None
    rest = ok.info
    info_length, pos = read_lenenc_uint(rest, 0)
    return _gtid_in_state(rest, pos + info_length)


def _gtid_in_state(payload: bytes, start: int) -> str | None:
    if start >= len(payload):
        return None
    total, pos = read_lenenc_uint(payload, start)
    end = pos + total
    if end > len(payload):
        raise MalformedPacket("truncated session state info")
    found: str | None = None
    while pos < end:
        kind = payload[pos]
        length, pos = read_lenenc_uint(payload, pos + 1)
        entry_end = pos + length
        if entry_end > end:
            raise MalformedPacket("truncated session state entry")
        if kind == SESSION_TRACK_SYSTEM_VARIABLES:
            name_length, at = read_lenenc_uint(payload, pos)
            name = payload[at : at + name_length]
            value_length, at = read_lenenc_uint(payload, at + name_length)
            if name == b"last_gtid" and value_length:
                found = payload[at : at + value_length].decode("ascii", "replace")
        elif kind == SESSION_TRACK_GTIDS:
            value_length, at = read_lenenc_uint(payload, pos + 1)  # after the encoding specification
            if value_length:
                found = payload[at : at + value_length].decode("ascii", "replace")
        pos = entry_end
    return found


def without_session_state(payload: bytes) -> bytes:
    """An OK payload as a server sends it to a client without CLIENT_SESSION_TRACK: no session
    state, SERVER_SESSION_STATE_CHANGED clear, the info message (length-encoded either way) only
    when there is one. The payload itself when it carries no session state."""
    start = _state_offset(payload)
    if start < 0:
        return payload
    _, pos = read_lenenc_uint(payload, 1)
    _, pos = read_lenenc_uint(payload, pos)
    status = (payload[pos] | payload[pos + 1] << 8) & ~SERVER_SESSION_STATE_CHANGED
    info_length, _ = read_lenenc_int(payload, pos + 4)
    head = payload[:pos] + bytes((status & 0xFF, status >> 8)) + payload[pos + 2 : pos + 4]
    return head + (payload[pos + 4 : start] if info_length else b"")


def strip_packet(packet: bytes) -> bytes:
    """One whole OK packet (header included) as `without_session_state` has it, its sequence id kept."""
    payload = packet[4:]
    stripped = without_session_state(payload)
    if stripped is payload:
        return packet
    size = len(stripped)
    return bytes((size & 0xFF, size >> 8 & 0xFF, size >> 16)) + packet[3:4] + stripped


class SessionStateStripper:
    """Relays one response to a client that did not ask for session tracking from a connection
    that agreed on it (to learn the GTIDs its writes make): every OK packet that carries session
    state, wherever it falls (each statement's of a multi-statement, the OK that ends rows with
    deprecate-EOF, one split across reads), goes out as the server would have sent it to that
    client. The framer (built with track_state_oks) says where the OK packets lie; the bytes of a
    packet not yet whole are held back until it is, so none of an OK leaves before it is rewritten."""

    __slots__ = ("_base", "_held")

    def __init__(self) -> None:
        self._held = b""
        self._base = 0  # the response offset of the first held byte

    def relay(self, chunk: bytes, framer: ResponseFramer) -> bytes:
        """What of `chunk` (the bytes just fed to `framer`) and the bytes held before it can go
        to the client now."""
        data = self._held + chunk if self._held else chunk
        base = self._base
        cut = framer.boundary - base
        oks = framer.state_oks
        if oks:
            parts: list[bytes] = []
            at = 0
            for start, stop in oks:
                parts.append(data[at : start - base])
                parts.append(strip_packet(data[start - base : stop - base]))
                at = stop - base
            parts.append(data[at:cut])
            oks.clear()
            out = b"".join(parts)
        else:
            out = data if cut == len(data) else data[:cut]
        self._held = data[cut:]
        self._base = framer.boundary
        return out


def monitor_position(text: str) -> Position | None:
    """What the monitor read as a server's applied GTIDs (MariaDB gtid_slave_pos, or
    gtid_current_pos on a server that replicates from none; MySQL gtid_executed) as a Position
    `covers` can compare; None when it is neither flavour's. MariaDB's list is one sequence per
    domain, applied in order. A MySQL set counts per uuid only the interval that starts at 1 (a
    multi-threaded replica may have gaps above it: what lies past the first gap is not known
    applied in order)."""
    text = text.replace("\n", "").strip()
    if not text:
        return {}
    if ":" not in text:
        try:
            return parse_position(MARIADB, text)
        except ValueError:
            return None
    try:
        intervals = gtid_intervals(text)
    except ValueError:
        return None
    found: Position = {}
    for uuid, spans in intervals.items():
        from_first = [high for low, high in spans if low <= 1]
        if from_first:
            found[uuid] = max(from_first)
    return found
