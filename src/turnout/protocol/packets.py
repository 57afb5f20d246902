"""Packet framing: the 4-byte header (3-byte length, 1-byte sequence id), payloads of 16 MiB
and more split into continuation pieces, and the length-encoded integers and strings every
other message is made of."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

MAX_PAYLOAD: Final = 0xFFFFFF
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024 * 1024

Buffer = bytes | bytearray | memoryview


class ProtocolError(Exception):
    """The peer broke the protocol."""


class PacketTooLarge(ProtocolError):
    """A logical packet is larger than the configured limit."""


class MalformedPacket(ProtocolError):
    """A payload that cannot be what it claims to be."""


@dataclass(frozen=True, slots=True)
class Packet:
    seq: int
    payload: bytes


def header(length: int, seq: int) -> bytes:
    """The 4-byte header of one piece (length < 2**24)."""
    return bytes((length & 0xFF, (length >> 8) & 0xFF, length >> 16, seq & 0xFF))


def encode_packet(payload: bytes, seq: int) -> bytes:
    """Frame `payload` starting at sequence id `seq`: pieces of MAX_PAYLOAD bytes, the last one
    shorter (empty when the payload is an exact multiple of MAX_PAYLOAD)."""
    length = len(payload)
    if length < MAX_PAYLOAD:
        return header(length, seq) + payload
    parts: list[bytes] = []
    view = memoryview(payload)
    pos = 0
    while True:
        chunk = view[pos : pos + MAX_PAYLOAD]
        parts.append(header(len(chunk), seq))
        parts.append(chunk.tobytes())
        seq = (seq + 1) & 0xFF
        pos += MAX_PAYLOAD
        if len(chunk) < MAX_PAYLOAD:
            return b"".join(parts)


def next_seq_after(payload_len: int, seq: int) -> int:
    """The sequence id following a payload of `payload_len` bytes framed from `seq`."""
    return (seq + payload_len // MAX_PAYLOAD + 1) & 0xFF


def piece_count(payload_len: int) -> int:
    return payload_len // MAX_PAYLOAD + 1


class PacketBuffer:
    """Bytes in, whole logical packets out. Buffering and nothing else."""

    __slots__ = ("_buf", "_max", "_pos")

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_payload

    def feed(self, data: Buffer) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def take_rest(self) -> bytes:
        """The bytes past the last whole packet, taken out (they belong to another layer: TLS)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest

    def _consume(self, n: int) -> None:
        self._pos += n
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif self._pos > 65536 and self._pos * 2 > len(self._buf):
            del self._buf[: self._pos]
            self._pos = 0

    def next_packet(self) -> Packet | None:
        """The next complete logical packet, or None until more bytes arrive."""
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < 4:
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if length > self._max:
            raise PacketTooLarge(f"packet of {length} bytes exceeds the limit of {self._max}")
        if length < MAX_PAYLOAD:
            if end - pos - 4 < length:
                return None
            start = pos + 4
            packet = Packet(buf[pos + 3], bytes(buf[start : start + length]))
            self._consume(4 + length)
            return packet
        return self._next_multi_piece(pos, end)

    def _next_multi_piece(self, pos: int, end: int) -> Packet | None:
        buf = self._buf
        total = 0
        spans: list[tuple[int, int]] = []
        seq = buf[pos + 3]
        cursor = pos
        while True:
            if end - cursor < 4:
                return None
            length = buf[cursor] | buf[cursor + 1] << 8 | buf[cursor + 2] << 16
            piece_seq = buf[cursor + 3]
            if spans and piece_seq != (seq + 1) & 0xFF:
                raise MalformedPacket(f"continuation packet out of order: {piece_seq} after {seq}")
            seq = piece_seq
            total += length
            if total > self._max:
                raise PacketTooLarge(f"packet of more than {total} bytes exceeds the limit of {self._max}")
            spans.append((cursor + 4, cursor + 4 + length))
            cursor += 4 + length
            if cursor > end:
                return None
            if length < MAX_PAYLOAD:
                break
        payload = b"".join(bytes(buf[a:b]) for a, b in spans)
        self._consume(cursor - pos)
        return Packet(seq, payload)


def read_lenenc_int(buf: Buffer, pos: int) -> tuple[int | None, int]:
    """A length-encoded integer at `pos`: (value, position after it); value None for 0xFB (NULL)."""
    try:
        first = buf[pos]
        if first < 0xFB:
            return first, pos + 1
        if first == 0xFB:
            return None, pos + 1
        if first == 0xFC:
            if pos + 3 > len(buf):
                raise MalformedPacket("truncated length-encoded integer")
            return buf[pos + 1] | buf[pos + 2] << 8, pos + 3
        if first == 0xFD:
            if pos + 4 > len(buf):
                raise MalformedPacket("truncated length-encoded integer")
            return buf[pos + 1] | buf[pos + 2] << 8 | buf[pos + 3] << 16, pos + 4
        if first == 0xFE:
            if pos + 9 > len(buf):
                raise MalformedPacket("truncated length-encoded integer")
            return int.from_bytes(buf[pos + 1 : pos + 9], "little"), pos + 9
    except IndexError:
        raise MalformedPacket("truncated length-encoded integer") from None
    raise MalformedPacket("0xFF is not a length-encoded integer")


def read_lenenc_uint(buf: Buffer, pos: int) -> tuple[int, int]:
    """A length-encoded integer that must not be NULL."""
    value, pos = read_lenenc_int(buf, pos)
    if value is None:
        raise MalformedPacket("unexpected NULL length")
    return value, pos


def write_lenenc_int(n: int) -> bytes:
    if n < 0:
        raise ValueError("length-encoded integers are unsigned")
    if n < 0xFB:
        return bytes((n,))
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little")
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little")
    if n < 1 << 64:
        return b"\xfe" + n.to_bytes(8, "little")
    raise ValueError("integer too large for a length-encoded integer")


def read_lenenc_bytes(buf: Buffer, pos: int) -> tuple[bytes | None, int]:
    """A length-encoded string at `pos`: (bytes or None for NULL, position after it)."""
    length, pos = read_lenenc_int(buf, pos)
    if length is None:
        return None, pos
    end = pos + length
    if end > len(buf):
        raise MalformedPacket("truncated length-encoded string")
    return bytes(buf[pos:end]), end


def write_lenenc_bytes(data: bytes) -> bytes:
    return write_lenenc_int(len(data)) + data


def read_nul_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """A NUL-terminated string at `pos`: (bytes without the NUL, position after the NUL)."""
    data = bytes(buf[pos:])
    end = data.find(b"\x00")
    if end < 0:
        raise MalformedPacket("missing NUL terminator")
    return data[:end], pos + end + 1


def read_fixed(buf: Buffer, pos: int, n: int) -> tuple[bytes, int]:
    """Exactly `n` bytes at `pos`."""
    if pos + n > len(buf) or pos < 0:
        raise MalformedPacket("truncated packet")
    return bytes(buf[pos : pos + n]), pos + n


def read_uint(buf: Buffer, pos: int, n: int) -> tuple[int, int]:
    """A little-endian unsigned integer of `n` bytes at `pos`."""
    if pos + n > len(buf) or pos < 0:
        raise MalformedPacket("truncated packet")
    return int.from_bytes(buf[pos : pos + n], "little"), pos + n
