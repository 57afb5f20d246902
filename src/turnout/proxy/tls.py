"""TLS for client connections (`mysql-have_ssl`): the certificate, and the layer a channel runs
its bytes through.

The certificate and key are ProxySQL's files in the datadir, so a ProxySQL's certificates serve
as they are: `proxysql-cert.pem` and `proxysql-key.pem`, with `proxysql-ca.pem` for clients that
verify. When none exist, a CA and a certificate signed by it are generated, as ProxySQL does.

`TlsLayer` is TLS over memory buffers rather than a wrapped socket: a client sends its TLS
hello right behind the SSLRequest packet, without waiting for an answer, so those bytes may
already have been read with the packet. They go into the layer like any later ones.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path

CA_FILE = "proxysql-ca.pem"
CERT_FILE = "proxysql-cert.pem"
KEY_FILE = "proxysql-key.pem"

# What one read takes out of the TLS layer at a time.
_READ_SIZE = 1 << 17


class TlsSetupError(Exception):
    """The certificate files cannot be read or made."""


def server_context(directory: Path) -> ssl.SSLContext:
    """A server-side context from the certificate files in `directory`, generated when missing."""
    cert, key = directory / CERT_FILE, directory / KEY_FILE
    if not cert.exists() and not key.exists():
        generate_certificates(directory)
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


def generate_certificates(directory: Path, days: int = 3650) -> None:
    """A CA and a server certificate it signs (for localhost, 127.0.0.1 and this host's name)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_after = now + datetime.timedelta(days=days)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turnout auto-generated CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    host = socket.gethostname()
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    if host and host != "localhost":
        names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "turnout auto-generated server certificate")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    unencrypted = serialization.NoEncryption()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write(directory / CA_FILE, ca_cert.public_bytes(pem), 0o644)
        _write(directory / CERT_FILE, cert.public_bytes(pem), 0o644)
        _write(
            directory / KEY_FILE,
            key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, unencrypted),
            0o600,
        )
    except OSError as exc:
        raise TlsSetupError(f"cannot write TLS certificates in {directory}: {exc}") from exc


def _write(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)


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
