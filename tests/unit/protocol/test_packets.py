from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from turnout.protocol.packets import (
    MAX_PAYLOAD,
    MalformedPacket,
    Packet,
    PacketBuffer,
    PacketTooLarge,
    ProtocolError,
    encode_packet,
    header,
    next_seq_after,
    read_lenenc_bytes,
    read_lenenc_int,
    read_nul_bytes,
    write_lenenc_bytes,
    write_lenenc_int,
)


def drain(buf: PacketBuffer) -> list[Packet]:
    out = []
    while (packet := buf.next_packet()) is not None:
        out.append(packet)
    return out


@given(st.lists(st.tuples(st.binary(max_size=300), st.integers(0, 255)), max_size=8), st.data())
def test_small_packets_round_trip_in_any_chunking(
    packets: list[tuple[bytes, int]], data: st.DataObject
) -> None:
    wire = b"".join(encode_packet(p, s) for p, s in packets)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(wire)))))
    buf = PacketBuffer()
    got: list[Packet] = []
    last = 0
    for cut in [*cuts, len(wire)]:
        buf.feed(wire[last:cut])
        last = cut
        got += drain(buf)
    assert got == [Packet(s, p) for p, s in packets]
    assert len(buf) == 0


@pytest.mark.parametrize("size", [MAX_PAYLOAD - 1, MAX_PAYLOAD, MAX_PAYLOAD + 1, 2 * MAX_PAYLOAD])
def test_large_payloads_split_and_join(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    wire = encode_packet(payload, 254)
    pieces = size // MAX_PAYLOAD + 1
    assert len(wire) == size + 4 * pieces
    assert next_seq_after(size, 254) == (254 + pieces) & 0xFF
    if size % MAX_PAYLOAD == 0:
        assert wire[-4:] == header(0, (254 + pieces - 1) & 0xFF)  # the empty trailing piece
    buf = PacketBuffer()
    step = 5_000_000
    got: list[Packet] = []
    for pos in range(0, len(wire) + 1, step):
        buf.feed(wire[pos : pos + step])
        got += drain(buf)
    assert len(got) == 1
    assert got[0].seq == (254 + pieces - 1) & 0xFF
    assert got[0].payload == payload
    assert len(buf) == 0


def test_too_large_is_refused_from_the_header_alone() -> None:
    buf = PacketBuffer(max_payload=100)
    buf.feed(header(101, 0))
    with pytest.raises(PacketTooLarge):
        buf.next_packet()


def test_too_large_across_continuation_pieces_is_refused_before_the_last_piece() -> None:
    buf = PacketBuffer(max_payload=MAX_PAYLOAD + 5)
    buf.feed(header(MAX_PAYLOAD, 0) + bytes(MAX_PAYLOAD) + header(6, 1))
    with pytest.raises(PacketTooLarge):
        buf.next_packet()


def test_continuation_out_of_order() -> None:
    buf = PacketBuffer()
    buf.feed(header(MAX_PAYLOAD, 3) + bytes(MAX_PAYLOAD) + header(1, 5) + b"x")
    with pytest.raises(MalformedPacket):
        buf.next_packet()


def test_incomplete_packet_waits() -> None:
    buf = PacketBuffer()
    buf.feed(encode_packet(b"hello", 1)[:6])
    assert buf.next_packet() is None
    assert len(buf) == 6
    buf.feed(b"llo")
    assert buf.next_packet() == Packet(1, b"hello")


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_protocol_errors(data: bytes) -> None:
    buf = PacketBuffer(max_payload=1000)
    buf.feed(data)
    got: list[Packet] = []
    try:
        while (packet := buf.next_packet()) is not None:
            got.append(packet)
    except ProtocolError:
        return
    assert sum(4 + len(p.payload) for p in got) + len(buf) == len(data)
    assert len(buf) < 4 or len(buf) < 4 + int.from_bytes(data[-len(buf) :][:3], "little")


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (250, b"\xfa"),
        (251, b"\xfc\xfb\x00"),
        (0xFFFF, b"\xfc\xff\xff"),
        (0x10000, b"\xfd\x00\x00\x01"),
        (0xFFFFFF, b"\xfd\xff\xff\xff"),
        (0x1000000, b"\xfe\x00\x00\x00\x01\x00\x00\x00\x00"),
    ],
)
def test_lenenc_int_boundaries(n: int, encoded: bytes) -> None:
    assert write_lenenc_int(n) == encoded
    assert read_lenenc_int(b"x" + encoded, 1) == (n, 1 + len(encoded))


@given(st.integers(0, 2**64 - 1), st.binary(max_size=300))
def test_lenenc_round_trip(n: int, data: bytes) -> None:
    assert read_lenenc_int(write_lenenc_int(n), 0) == (n, len(write_lenenc_int(n)))
    encoded = write_lenenc_bytes(data)
    assert read_lenenc_bytes(encoded + b"tail", 0) == (data, len(encoded))


def test_lenenc_null_and_errors() -> None:
    assert read_lenenc_int(b"\xfb", 0) == (None, 1)
    assert read_lenenc_bytes(b"\xfb", 0) == (None, 1)
    for bad in (b"\xff", b"\xfc\x01", b"\xfd\x01\x02", b"\xfe\x01", b"", b"\x05abc"):
        with pytest.raises(MalformedPacket):
            read_lenenc_bytes(bad, 0)


def test_nul_terminated() -> None:
    assert read_nul_bytes(b"abc\x00def", 0) == (b"abc", 4)
    with pytest.raises(MalformedPacket):
        read_nul_bytes(b"abc", 0)
