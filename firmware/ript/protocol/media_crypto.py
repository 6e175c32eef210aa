"""AES-128-GCM sealing of media and control chunk packages (profile section 8, "AEAD").

A call description's ``media-key`` gives one key, one salt and a tag length.
:class:`MediaKeys` derives the two per-direction keys from them once
(HKDF-SHA256, info ``"ript c2s"`` / ``"ript s2c"``); each :class:`DirectionKey`
then builds nonces and seals or opens packages:

* nonce = salt XOR (direction | source | sink | kind | 8-byte full sequence
  number), 12 bytes, so no nonce repeats under one key;
* AAD = the envelope bytes exactly as sent;
* the GCM tag is cut to ``tag_length`` bytes and placed before the ciphertext.

Opening never raises on a bad tag: it returns ``None`` and the caller counts
the failure.  The chunk layout around these bytes lives in
:mod:`ript.protocol.chunks`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ript.protocol.errors import RemoteProtocolError
from ript.protocol.events import Direction
from ript.protocol.varint import Buffer

KEY_LENGTH = 16
SALT_LENGTH = 12
NONCE_LENGTH = 12
TAG_LENGTH_MIN = 4
TAG_LENGTH_MAX = 16
_FULL_TAG = 16

DIRECTION_CODES: dict[Direction, int] = {Direction.C2S: 0, Direction.S2C: 1}
"""The one-byte code of a direction, used in nonces and in acknowledgement packages."""

_HKDF_INFO: dict[Direction, bytes] = {Direction.C2S: b"ript c2s", Direction.S2C: b"ript s2c"}


class MediaKeyError(RemoteProtocolError):
    """A ``media-key`` from the provider has a key, salt or tag length of the wrong size."""


def derive_direction_key(key: bytes, salt: bytes, direction: Direction) -> bytes:
    """HKDF-SHA256(IKM=key, salt=salt, info="ript c2s" or "ript s2c", L=16)."""
    hkdf = HKDF(algorithm=SHA256(), length=KEY_LENGTH, salt=salt, info=_HKDF_INFO[direction])
    return hkdf.derive(key)


def make_nonce(
    salt: bytes, direction: Direction, *, source: int, sink: int, kind: int, seq: int
) -> bytes:
    """The 12-byte nonce of one chunk (source and sink are 0 for control chunks)."""
    block = bytes((DIRECTION_CODES[direction], source, sink, kind)) + seq.to_bytes(8, "big")
    return bytes(a ^ b for a, b in zip(salt, block, strict=True))


@dataclass(frozen=True, slots=True)
class DirectionKey:
    """The derived key of one direction: builds nonces, seals and opens packages.

    ``key`` is the derived 16-byte key, ``salt`` the call's 12-byte salt.  Key
    material is left out of ``repr`` so that it cannot leak into a log line.
    """

    direction: Direction
    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    tag_length: int
    _aead: AESGCM = field(init=False, repr=False, compare=False)
    _nonce_base: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != KEY_LENGTH:
            raise MediaKeyError(f"a media key must be {KEY_LENGTH} bytes, not {len(self.key)}")
        if len(self.salt) != SALT_LENGTH:
            raise MediaKeyError(f"a media salt must be {SALT_LENGTH} bytes, not {len(self.salt)}")
        if not TAG_LENGTH_MIN <= self.tag_length <= TAG_LENGTH_MAX:
            raise MediaKeyError(
                f"tag-length must be {TAG_LENGTH_MIN}..{TAG_LENGTH_MAX}, not {self.tag_length}"
            )
        object.__setattr__(self, "_aead", AESGCM(self.key))
        # The direction byte never changes for this key: fold it into the salt once.
        base = int.from_bytes(self.salt, "big") ^ (DIRECTION_CODES[self.direction] << 88)
        object.__setattr__(self, "_nonce_base", base)

    def nonce(self, source: int, sink: int, kind: int, seq: int) -> bytes:
        """Nonce for a chunk of this direction.

        ``source``, ``sink`` and ``kind`` are 0..255 and ``seq`` is the full
        64-bit sequence number; :mod:`~ript.protocol.chunks` checks them.
        """
        block = (source << 80) | (sink << 72) | (kind << 64) | seq
        return (self._nonce_base ^ block).to_bytes(NONCE_LENGTH, "big")

    def seal(self, nonce: bytes, aad: Buffer, package: Buffer) -> bytes:
        """``tag (tag_length bytes) | ciphertext`` of ``package``."""
        sealed = self._aead.encrypt(nonce, package, aad)
        size = len(package)
        return sealed[size : size + self.tag_length] + sealed[:size]

    def open(self, nonce: bytes, aad: Buffer, sealed: Buffer) -> bytes | None:
        """The package inside ``tag | ciphertext``, or ``None`` if it does not authenticate.

        ``AESGCM.decrypt`` only takes full 16-byte tags, and the streaming
        ``Cipher`` API that takes short ones costs three to four times more
        per chunk (building the cipher object dominates).
        GCM encryption is a keystream XOR whose tag is computed over the
        ciphertext, so encrypting the ciphertext yields the plaintext, and
        encrypting that plaintext again reproduces the received ciphertext and
        its full tag, which is then compared in constant time.
        """
        tag_length = self.tag_length
        if len(sealed) < tag_length:
            return None
        size = len(sealed) - tag_length
        plaintext = self._aead.encrypt(nonce, sealed[tag_length:], None)[:size]
        expected = self._aead.encrypt(nonce, plaintext, aad)[size : size + tag_length]
        if not hmac.compare_digest(expected, sealed[:tag_length]):
            return None
        return plaintext


@dataclass(frozen=True, slots=True)
class MediaKeys:
    """Both directions' keys of one handler's call leg, derived once from ``media-key``."""

    tag_length: int
    c2s: DirectionKey
    s2c: DirectionKey

    @classmethod
    def from_material(cls, key: bytes, salt: bytes, tag_length: int) -> MediaKeys:
        """Derive both directions from the decoded ``key`` (16 bytes) and ``salt`` (12 bytes).

        Raises :class:`MediaKeyError` when a size is wrong.
        """
        if len(key) != KEY_LENGTH:
            raise MediaKeyError(f"media-key key must be {KEY_LENGTH} bytes, not {len(key)}")
        if len(salt) != SALT_LENGTH:
            raise MediaKeyError(f"media-key salt must be {SALT_LENGTH} bytes, not {len(salt)}")
        if isinstance(tag_length, bool) or not TAG_LENGTH_MIN <= tag_length <= TAG_LENGTH_MAX:
            raise MediaKeyError(
                f"media-key tag-length must be {TAG_LENGTH_MIN}..{TAG_LENGTH_MAX}, not {tag_length}"
            )
        c2s, s2c = (
            DirectionKey(d, derive_direction_key(key, salt, d), salt, tag_length)
            for d in (Direction.C2S, Direction.S2C)
        )
        return cls(tag_length, c2s, s2c)

    def for_direction(self, direction: Direction) -> DirectionKey:
        return self.c2s if direction is Direction.C2S else self.s2c
