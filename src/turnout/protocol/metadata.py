"""MariaDB's metadata caching (MARIADB_CLIENT_CACHE_METADATA) where a proxy stands in between.

A server leaves a prepared statement's column definitions out of COM_STMT_EXECUTE results while
they are the ones it last sent for that statement, and the client decodes the rows with the ones
it last received. Through a proxy the two can differ: the client's statement may have been
prepared on another server, or answered from the proxy's cache of PrepareOk responses, before a
schema change that reached this server. The proxy then puts the server's definitions back in.
"""

from __future__ import annotations

from collections.abc import Sequence

from turnout.protocol.packets import (
    MalformedPacket,
    PacketBuffer,
    encode_packet,
    next_seq_after,
    read_lenenc_int,
)

Metadata = tuple[bytes, ...]  # column definition payloads, in order


def with_metadata(response: bytes, columns: Sequence[bytes]) -> bytes:
    """`response` (one whole server response whose first result set left its column definitions
    out) with `columns` put back in, its "metadata follows" byte set to 1, and every later
    packet's sequence id moved along."""
    packets = PacketBuffer(max_payload=len(response) + 1)
    packets.feed(response)
    payloads: list[bytes] = []
    first_seq = -1
    while (packet := packets.next_packet()) is not None:
        if first_seq < 0:
            first_seq = packet.seq
        payloads.append(bytes(packet.payload))
    if not payloads or len(packets):
        raise MalformedPacket("not one whole response")
    head = payloads[0]
    count, used = read_lenenc_int(head, 0)
    if not count or used + 1 != len(head) or head[used] != 0:
        raise MalformedPacket("the response does not leave its column definitions out")
    if count != len(columns):
        raise MalformedPacket(f"{count} columns in the result, {len(columns)} definitions known")
    rebuilt = [head[:used] + b"\x01", *columns, *payloads[1:]]
    out: list[bytes] = []
    seq = first_seq
    for payload in rebuilt:
        out.append(encode_packet(payload, seq))
        seq = next_seq_after(len(payload), seq)
    return b"".join(out)
