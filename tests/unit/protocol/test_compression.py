"""The compressed protocol: whatever way the bytes are cut, both directions give back exactly
the packets sent, each compressed packet holds whole packets, and sequence ids follow the client's."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from turnout.protocol.compression import FRAME_SIZE, HEADER, MIN_COMPRESS_LENGTH, Compression, frame
from turnout.protocol.packets import PacketBuffer, ProtocolError, encode_packet

payloads = st.lists(
    st.one_of(st.binary(max_size=80), st.builds(lambda n, b: b * n, st.integers(0, 40000), st.binary(min_size=1, max_size=3))),
    min_size=1, max_size=6,
)
cuts = st.lists(st.integers(1, 20000), min_size=1, max_size=40)


def _cut(data: bytes, sizes: list[int]) -> list[bytes]:
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces


def _frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """(sequence id, uncompressed length, plain data) of each compressed packet."""
    frames, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "little")
        uncompressed = int.from_bytes(data[pos + 4 : pos + 7], "little")
        body = data[pos + HEADER : pos + HEADER + length]
        frames.append((data[pos + 3], uncompressed, zlib.decompress(body) if uncompressed else body))
        pos += HEADER + length
    return frames


@settings(deadline=None)  # zlib on tens of kilobytes, on a loaded machine
@given(payloads, cuts, cuts)
def test_round_trip_whatever_the_cuts(bodies: list[bytes], write_cuts: list[int], read_cuts: list[int]) -> None:
    plain = b"".join(encode_packet(body, i) for i, body in enumerate(bodies))
    sender = Compression()
    wire = b"".join(sender.send(piece) for piece in _cut(plain, write_cuts))
    receiver = Compression()
    assert b"".join(receiver.receive(piece) for piece in _cut(wire, read_cuts)) == plain
    frames = _frames(wire)
    assert [seq for seq, _, _ in frames] == list(range(len(frames)))
    for _, _, data in frames:  # whole packets only, about FRAME_SIZE at most unless one is larger
        buffer = PacketBuffer(max_payload=1 << 30)
        buffer.feed(data)
        count = 0
        while buffer.next_packet() is not None:
            count += 1
        assert not buffer.take_rest()
        assert len(data) <= FRAME_SIZE or count == 1


def test_short_or_incompressible_data_is_sent_as_is() -> None:
    short = encode_packet(b"x" * (MIN_COMPRESS_LENGTH - 10), 0)
    assert frame(short, 3) == len(short).to_bytes(3, "little") + b"\x03\x00\x00\x00" + short
    incompressible = b"".join(hashlib.sha256(bytes([i])).digest() for i in range(40))
    assert frame(incompressible, 0) == len(incompressible).to_bytes(3, "little") + b"\x00\x00\x00\x00" + incompressible
    long = b"a" * 1000
    framed = frame(long, 1)
    assert int.from_bytes(framed[4:7], "little") == 1000 and len(framed) < 100


def test_answers_continue_the_clients_sequence() -> None:
    side = Compression()
    command = encode_packet(b"\x03SELECT 1", 0)
    assert side.receive(frame(command, 0)) == command
    first = side.send(encode_packet(b"\x00\x00\x00\x02\x00\x00\x00", 1))
    assert first[3] == 1
    assert side.send(encode_packet(b"\x00" * 7, 2))[3] == 2
    side.receive(frame(command, 0))  # the next command starts again at 0
    assert side.send(encode_packet(b"\x00" * 7, 1))[3] == 1


def test_a_corrupt_compressed_packet_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Compression().receive(b"\x05\x00\x00\x00\x10\x00\x00garbg")
