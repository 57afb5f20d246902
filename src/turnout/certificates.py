"""Certificates for TLS: ProxySQL's file names in a directory, and a CA with a server
certificate it signs, made when a deployment brings none (the proxy's datadir, a sandbox)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from pathlib import Path

CA_FILE = "proxysql-ca.pem"
CERT_FILE = "proxysql-cert.pem"
KEY_FILE = "proxysql-key.pem"


class CertificateError(Exception):
    """Certificate files cannot be made."""


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
        raise CertificateError(f"cannot write TLS certificates in {directory}: {exc}") from exc


def _write(path: Path, data: bytes, mode: int) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
