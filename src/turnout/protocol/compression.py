"""The compressed protocol (CLIENT_COMPRESS, zlib), sans-IO: what a connection carries once both
sides agreed on it, after the server's OK to the login.

Each compressed packet has a 7-byte header: the payload's length (3 bytes), a sequence id of its
own (1 byte), and the length of the data before compression (3 bytes; 0 when the payload is sent
as it is, which short or incompressible data is). The data inside is ordinary packets, several
to a compressed packet. The compressed sequence id starts at 0 with each command the client
sends, and the server's answers continue from the client's last one.
"""

from __future__ import annotations

import zlib
from typing import Final

from turnout.protocol.packets import ProtocolError

HEADER: Final = 7
# Whole packets are gathered into compressed packets of about the server's net_buffer_length.
FRAME_SIZE: Final = 16384
MAX_FRAME: Final = 0xFFFFFF
# Shorter data is sent uncompressed, as MariaDB does (MIN_COMPRESS_LENGTH).
MIN_COMPRESS_LENGTH: Final = 50


def frame(data: bytes, seq: int) -> bytes:
    """One compressed packet carrying `data` (less than 16 MiB)."""
    if len(data) >= MIN_COMPRESS_LENGTH:
        packed = zlib.compress(data)
        if len(packed) < len(data):
            return _header(len(packed), seq, len(data)) + packed
    return _header(len(data), seq, 0) + data


def _header(length: int, seq: int, uncompressed: int) -> bytes:
    return length.to_bytes(3, "little") + bytes((seq & 0xFF,)) + uncompressed.to_bytes(3, "little")


class Compression:
    """One connection's compressed stream, as the server side: `receive` turns what the client
    sent into plain packet bytes, `send` turns plain packet bytes into compressed packets."""

    __slots__ = ("_incoming", "_outgoing", "seq")

    def __init__(self) -> None:
        self._incoming = b""
        self._outgoing = b""
        self.seq = 0  # the next compressed sequence id to send

    def receive(self, data: bytes) -> bytes:
        """The plain bytes of the whole compressed packets received so far."""
        buffered = self._incoming + data if self._incoming else data
        plain: list[bytes] = []
        pos = 0
        while len(buffered) - pos >= HEADER:
            length = int.from_bytes(buffered[pos : pos + 3], "little")
            end = pos + HEADER + length
            if end > len(buffered):
                break
            uncompressed = int.from_bytes(buffered[pos + 4 : pos + 7], "little")
            payload = buffered[pos + HEADER : end]
            if uncompressed:
                try:
                    payload = zlib.decompress(payload)
                except zlib.error as exc:
                    raise ProtocolError(f"bad compressed packet: {exc}") from exc
                if len(payload) != uncompressed:
                    raise ProtocolError("compressed packet of the wrong length")
            plain.append(payload)
            self.seq = (buffered[pos + 3] + 1) & 0xFF
            pos = end
        self._incoming = buffered[pos:]
        return b"".join(plain)

    def send(self, data: bytes) -> bytes:
        """Compressed packets for the whole packets sent so far, about FRAME_SIZE bytes each
        before compression; the rest of a packet waits for its end (mysql-connector-python
        expects whole packets in each compressed one)."""
        buffered = self._outgoing + data if self._outgoing else data
        out: list[bytes] = []
        start = pos = 0
        size = len(buffered)
        while size - pos >= 4:
            end = pos + 4 + (buffered[pos] | buffered[pos + 1] << 8 | buffered[pos + 2] << 16)
            if end > size:
                break
            if end - start > FRAME_SIZE and pos > start:
                out.append(self._frame(buffered[start:pos]))
                start = pos
            pos = end
        while pos - start > MAX_FRAME:  # one packet of 16 MiB: it spans compressed packets
            out.append(self._frame(buffered[start : start + MAX_FRAME]))
            start += MAX_FRAME
        if pos > start:
            out.append(self._frame(buffered[start:pos]))
        self._outgoing = buffered[pos:]
        return b"".join(out)

    def _frame(self, data: bytes) -> bytes:
        framed = frame(data, self.seq)
        self.seq = (self.seq + 1) & 0xFF
        return framed
