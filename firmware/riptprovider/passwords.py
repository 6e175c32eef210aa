"""Account passwords for the verification page: scrypt hashes, made and checked.

A hash is one string ``scrypt$N$r$p$salt_b64$hash_b64`` (standard base64,
no padding stripped), as ``ript-provider hash-password`` prints it and an
account's ``password`` key holds it.  scrypt (RFC 7914, :func:`hashlib.scrypt`)
is memory-hard: N=2^15, r=8 costs 32 MiB and about 0.1 s per guess, which
makes an offline attack on a stolen configuration file slow without making
a sign-in on a Raspberry Pi noticeably slow.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
DEFAULT_N = 2**15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_N = 2**20
"""Larger costs are refused when reading a hash: a typo must not make each sign-in take minutes."""


class PasswordHashError(ValueError):
    """A stored password hash that cannot be read; one sentence, never the hash itself."""


def _maxmem(n: int, r: int, p: int) -> int:
    # OpenSSL refuses scrypt above its default 32 MiB unless told: 128*N*r*p plus slack.
    return 128 * n * r * (p + 1) + 1024 * 1024


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    """A new hash of ``password`` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_maxmem(n, r, p),
        dklen=HASH_BYTES,
    )
    b64 = base64.b64encode
    return f"{SCHEME}${n}${r}${p}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise PasswordHashError(
            "a password must be a hash 'scrypt$N$r$p$salt$hash' (ript-provider hash-password)"
        )
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise PasswordHashError(
            "the password hash has a malformed number or base64 field"
        ) from None
    if n < 2 or n & (n - 1) or n > MAX_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise PasswordHashError(
            "the password hash's cost is out of range "
            f"(N a power of 2 up to {MAX_N}, r 1-32, p 1-16)"
        )
    if len(salt) < 8 or len(digest) < 16:
        raise PasswordHashError("the password hash's salt or digest is too short")
    return n, r, p, salt, digest


def check_password_hash(stored: str) -> None:
    """Raise :class:`PasswordHashError` unless :func:`verify_password` can read ``stored``."""
    _parse(stored)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; the comparison is constant-time."""
    n, r, p, salt, digest = _parse(stored)
    candidate = hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_maxmem(n, r, p),
        dklen=len(digest),
    )
    return hmac.compare_digest(candidate, digest)
