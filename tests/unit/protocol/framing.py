"""Framing payloads as a server sends them, for the response tests."""

from __future__ import annotations

from turnout.protocol.packets import MAX_PAYLOAD, encode_packet


def frame(payloads: list[bytes], seq: int = 1) -> bytes:
    """The payloads framed one after the other from sequence id `seq` (pieces of 16 MiB counted)."""
    out = []
    for payload in payloads:
        out.append(encode_packet(payload, seq))
        seq = (seq + len(payload) // MAX_PAYLOAD + 1) & 0xFF
    return b"".join(out)
