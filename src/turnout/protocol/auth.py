"""Password scrambles: mysql_native_password (both sides) and caching_sha2_password (client side).

Naming follows the server's: stage1 = SHA1(password), stage2 = SHA1(stage1) is what
mysql.user stores (as "*" + upper hex). An empty password has an empty stored hash, an empty
stage1 and an empty scramble.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SALT_LENGTH = 20
_SALT_ALPHABET = bytes(b for b in range(0x21, 0x7F) if b not in b"$\\'\"")


def _sha1(*parts: bytes) -> bytes:
    digest = hashlib.sha1()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _sha256(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def new_salt() -> bytes:
    """A fresh 20-byte salt of printable characters (never NUL, which would end it on the wire)."""
    return bytes(secrets.choice(_SALT_ALPHABET) for _ in range(SALT_LENGTH))


def stage1(password: str) -> bytes:
    """SHA1(password); empty for an empty password."""
    if not password:
        return b""
    return _sha1(password.encode("utf-8"))


def native_password_hash(password: str) -> str:
    """What MySQL's PASSWORD() returns: "*" + 40 upper-case hex digits ("" for "")."""
    if not password:
        return ""
    return "*" + _sha1(stage1(password)).hex().upper()


def scramble_native(stage1: bytes, salt: bytes) -> bytes:
    """The mysql_native_password response for a password whose SHA1 is `stage1`."""
    if not stage1:
        return b""
    return _xor(stage1, _sha1(salt[:SALT_LENGTH], _sha1(stage1)))


def verify_native(response: bytes, salt: bytes, stored_hash: bytes) -> bytes | None:
    """Check a client's scramble against the stored SHA1(SHA1(password)); on success return the
    recovered stage1, which lets the caller log into backends as that user."""
    if not stored_hash:
        return b"" if not response else None
    if len(response) != 20 or len(stored_hash) != 20:
        return None
    candidate = _xor(response, _sha1(salt[:SALT_LENGTH], stored_hash))
    if hmac.compare_digest(_sha1(candidate), stored_hash):
        return candidate
    return None


def parse_stored_password(value: str) -> tuple[bytes, bytes | None]:
    """(SHA1(SHA1(password)), SHA1(password) or None) for a clear password or a "*HEX" hash."""
    if len(value) == 41 and value.startswith("*"):
        try:
            return bytes.fromhex(value[1:]), None
        except ValueError:
            pass
    first = stage1(value)
    return (_sha1(first) if first else b""), first


def scramble_caching_sha2(password: str, salt: bytes) -> bytes:
    """The caching_sha2_password fast-path response: XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + salt))."""
    if not password:
        return b""
    digest1 = _sha256(password.encode("utf-8"))
    digest2 = _sha256(digest1)
    return _xor(digest1, _sha256(digest2, salt[:SALT_LENGTH]))
