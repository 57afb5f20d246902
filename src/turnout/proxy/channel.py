"""A TCP connection as the data path uses it: read by a coroutine, or fed straight to a callback.

A session spends most of its code in a coroutine that awaits `read()`: login, transactions,
statements that need a new connection, anything unusual. Its steady state — a statement routed
to an idle pooled connection, the answer relayed back — runs as callbacks instead: while
`on_data` is set, bytes go to it as they arrive and no task is woken (see `fastpath`).

While `hold` is set, data that `on_data` declines is buffered without waking the reader, so a
statement relayed by callbacks finishes before the coroutine sees what the client sent next.

After `start_tls`, bytes pass through a `TlsLayer` both ways; readers and callbacks see plaintext.
After `start_compression` (a client that asked for CLIENT_COMPRESS, once logged in), they pass
through the compressed protocol too, inside TLS; readers and callbacks see plain packets.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import cast

from turnout.protocol.compression import Compression
from turnout.protocol.packets import ProtocolError
from turnout.proxy.tls import TlsLayer

# Buffered but unread bytes past which the peer is paused (a client sending a huge packet while
# its session waits for a backend).
READ_BUFFER_LIMIT = 1 << 20
# Unsent bytes past which a relay stops reading its source until the peer catches up.
WRITE_BUFFER_HIGH = 1 << 20


class Channel(asyncio.Protocol):
    def __init__(self, on_connected: Callable[[Channel], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._on_connected = on_connected
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        # Callback mode: returns whether it took the bytes; declined bytes are buffered.
        self.on_data: Callable[[bytes], bool] | None = None
        # Called once when the connection ends while a callback owns it.
        self.on_closed: Callable[[], None] | None = None
        # Called when the peer has taken our buffered writes (flow control for relaying).
        self.on_writable: Callable[[], None] | None = None
        self.hold = False
        self.tls: TlsLayer | None = None
        self._tls_ready: asyncio.Future[None] | None = None
        self.compression: Compression | None = None
        self.bytes_received = 0  # application bytes (after TLS), for the stats
        self.bytes_sent = 0

    # ---- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if self._on_connected is not None:
            on_connected, self._on_connected = self._on_connected, None
            on_connected(self)

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        if self.compression is not None:
            data = self._decompress(data)
            if not data:
                return
        self.bytes_received += len(data)
        on_data = self.on_data
        if on_data is not None and on_data(data):
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > READ_BUFFER_LIMIT and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        if not self.hold:
            self._wake_reader()

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(exc or ConnectionResetError("connection lost"))

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)
        if self.on_writable is not None:
            self.on_writable()

    # ---- for the coroutine --------------------------------------------------------------------
    async def read(self) -> bytes:
        """Whatever has arrived (waiting for something); b"" at end of file."""
        if not self._chunks and not self._eof:
            self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._read_waiter
            finally:
                self._read_waiter = None
        if self._chunks:
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
            self._buffered = 0
            if self._reading_paused and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        return b""

    async def drain(self) -> None:
        """Wait until the peer has taken enough of what was written."""
        if self._error is not None:
            raise self._error
        if not self._writing_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def unread(self, data: bytes) -> None:
        """Put `data` back in front of what the reader will see next."""
        self._chunks.insert(0, data)
        self._buffered += len(data)

    def release_hold(self) -> None:
        """Let the reader see what arrived while a callback held it back."""
        self.hold = False
        if self._chunks or self._eof:
            self._wake_reader()

    def start_tls(
        self, context: ssl.SSLContext, already_read: bytes = b"", server_side: bool = True
    ) -> asyncio.Future[None]:
        """Start TLS on this connection; done when the handshake is. `already_read`: bytes read
        past the last plain packet (a client's hello, sent right behind its SSLRequest without
        waiting), which go to TLS first, ahead of anything buffered here."""
        assert self.transport is not None
        pending = already_read + b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        tls = self.tls = TlsLayer(context, server_side=server_side)
        ready = self._tls_ready = asyncio.get_running_loop().create_future()
        if self._eof:
            ready.set_exception(ConnectionResetError("the peer left before TLS started"))
            return ready
        try:
            hello = tls.start()
        except ssl.SSLError as exc:
            self._tls_failed(exc)
            return ready
        if hello:
            self.transport.write(hello)
        if pending:
            plain = self._decrypt(pending)
            if plain:  # not expected before the handshake is over, but never dropped
                self.bytes_received += len(plain)
                self._chunks.append(plain)
                self._buffered += len(plain)
        return ready

    def start_compression(self, already_read: bytes = b"") -> None:
        """From now on, the compressed protocol both ways; `already_read`: bytes read past the
        last plain packet, which were compressed already."""
        self.compression = Compression()
        pending = already_read + b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if pending:
            plain = self._decompress(pending)
            if plain:
                self._chunks.append(plain)
                self._buffered += len(plain)

    def _decompress(self, data: bytes) -> bytes:
        compression = self.compression
        assert compression is not None and self.transport is not None
        try:
            return compression.receive(data)
        except ProtocolError as exc:
            self._error = exc
            self.transport.abort()
            return b""

    def _decrypt(self, data: bytes) -> bytes:
        tls = self.tls
        assert tls is not None and self.transport is not None
        try:
            plain, reply = tls.receive(data)
        except ssl.SSLError as exc:
            self._tls_failed(exc)
            return b""
        if reply:
            self.transport.write(reply)
        ready = self._tls_ready
        if ready is not None and tls.handshake_done:
            self._tls_ready = None
            if not ready.done():
                ready.set_result(None)
        if tls.closed:  # close_notify: the client ended the connection
            self.transport.close()
        return plain

    def _tls_failed(self, exc: ssl.SSLError) -> None:
        ready, self._tls_ready = self._tls_ready, None
        if ready is not None and not ready.done():
            ready.set_exception(exc)
        else:
            self._error = exc
        if self.transport is not None:
            self.transport.abort()

    # ---- both ---------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send `data`; to a connection that is closing or closed, nothing (its reader finds out
        at its next read: uvloop raises on a write to a closed transport)."""
        transport = self.transport
        assert transport is not None
        if transport.is_closing():
            return
        self.bytes_sent += len(data)
        if self.compression is not None:
            data = self.compression.send(data)
            if not data:
                return
        if self.tls is not None:
            try:
                data = self.tls.send(data)
            except ssl.SSLError as exc:
                self._tls_failed(exc)
                return
        transport.write(data)

    def is_closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def at_eof(self) -> bool:
        return self._eof and not self._chunks

    def has_unread(self) -> bool:
        return bool(self._chunks)

    def write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and not self._reading_paused:
            self.transport.resume_reading()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.transport.get_extra_info(name, default) if self.transport is not None else default

    # ---- internals ----------------------------------------------------------------------------
    def _ended(self, exc: Exception | None) -> None:
        if self._eof:
            return
        self._eof = True
        if exc is not None:
            self._error = exc
        ready, self._tls_ready = self._tls_ready, None
        if ready is not None and not ready.done():
            ready.set_exception(exc or ConnectionResetError("the peer left during the TLS handshake"))
        on_closed, self.on_closed = self.on_closed, None
        if on_closed is not None:
            on_closed()
        if not self.hold:
            self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


async def open_channel(host: str, port: int) -> Channel:
    loop = asyncio.get_running_loop()
    _, channel = await loop.create_connection(Channel, host, port)
    return channel
