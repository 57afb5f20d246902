"""TLS for client connections (`mysql-have_ssl`) and to servers (`use_ssl`): the contexts, and
the layer a channel runs its bytes through.

The certificate and key are ProxySQL's files in the datadir, so a ProxySQL's certificates serve
as they are: `proxysql-cert.pem` and `proxysql-key.pem`, with `proxysql-ca.pem` for clients that
verify. When none exist, a CA and a certificate signed by it are generated, as ProxySQL does.

`TlsLayer` is TLS over memory buffers rather than a wrapped socket: a client sends its TLS
hello right behind the SSLRequest packet, without waiting for an answer, so those bytes may
already have been read with the packet. They go into the layer like any later ones.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from turnout.certificates import CA_FILE, CERT_FILE, KEY_FILE, CertificateError, generate_certificates

__all__ = [
    "CA_FILE", "CERT_FILE", "KEY_FILE", "TlsLayer", "TlsSetupError", "client_context", "generate_certificates",
    "server_context",
]

# What one read takes out of the TLS layer at a time.
_READ_SIZE = 1 << 17


class TlsSetupError(Exception):
    """The certificate files cannot be read or made."""


def client_context(ca: str = "", cert: str = "", key: str = "") -> ssl.SSLContext:
    """The context for TLS to servers (mysql-ssl_p2s_*): the server's certificate is verified
    against `ca` when one is given (not its name: servers are often addressed by IP), else not
    verified, as in ProxySQL; `cert` and `key` are a client certificate, when servers ask."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    try:
        if ca:
            context.load_verify_locations(cafile=ca)
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            context.verify_mode = ssl.CERT_NONE
        if cert or key:
            context.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(f"cannot load the mysql-ssl_p2s_* files (ca {ca!r}, cert {cert!r}, key {key!r}): {exc}") from exc
    return context


def server_context(directory: Path) -> ssl.SSLContext:
    """A server-side context from the certificate files in `directory`, generated when missing."""
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    if not cert.exists() and not key.exists():
        try:
            generate_certificates(directory)
        except CertificateError as not_made:
            raise TlsSetupError(str(not_made)) from not_made
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TlsSetupError(
            f"cannot load the TLS certificate {cert} with its key {key}: {exc}. "
            "Fix or remove both files (turnout generates new ones when both are missing)."
        ) from exc
    return context


class TlsLayer:
    """One TLS connection over memory buffers: ciphertext in and out, plaintext in and out."""

    def __init__(self, context: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname)
        self.handshake_done = False
        self.closed = False  # the peer ended TLS (close_notify)

    def start(self) -> bytes:
        """Begin the handshake; what to send (a client's hello; nothing on the server side)."""
        self._advance_handshake()
        return self._outgoing.read()

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed ciphertext from the peer: (plaintext that came out of it, ciphertext to send).
        Raises ssl.SSLError when the peer's TLS is broken."""
        self._incoming.write(data)
        if not self.handshake_done and not self._advance_handshake():
            return b"", self._outgoing.read()
        chunks: list[bytes] = []
        while not self.closed:
            try:
                chunk = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            if not chunk:
                break
            chunks.append(chunk)
        plain = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return plain, self._outgoing.read()

    def send(self, data: bytes) -> bytes:
        """Plaintext to the peer: the ciphertext to write."""
        self._tls.write(data)
        return self._outgoing.read()

    def cipher(self) -> str | None:
        described = self._tls.cipher()
        return described[0] if described else None

    def version(self) -> str | None:
        return self._tls.version()

    def _advance_handshake(self) -> bool:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        self.handshake_done = True
        return True
