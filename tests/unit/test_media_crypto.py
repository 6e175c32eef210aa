"""Tests of media AEAD keys, nonces, sealing and opening (ript.protocol.media_crypto).

Every AEAD vector is checked against independent computations: HKDF written
out with :mod:`hmac` (RFC 5869), the nonce built byte by byte, and GCM through
the full-tag ``AESGCM`` API rather than the module's truncated-tag path.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol import chunks as ch
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.events import Direction
from ript.protocol.media_crypto import (
    DirectionKey,
    MediaKeyError,
    MediaKeys,
    derive_direction_key,
    make_nonce,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "chunks.json").read_text("utf-8")
)
C2S = Direction.C2S
S2C = Direction.S2C
KEY = bytes(range(16))
SALT = bytes(range(0xA0, 0xAC))


def rfc5869_hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def nonce_by_hand(salt: bytes, *fields: int) -> bytes:
    """salt XOR (direction, source, sink, kind: one byte each | seq: 8 bytes big-endian)."""
    *head, seq = fields
    block = bytes(head) + seq.to_bytes(8, "big")
    return bytes(s ^ b for s, b in zip(salt, block, strict=True))


def reference_open(
    key: bytes, nonce: bytes, aad: bytes, tag: bytes, ciphertext: bytes
) -> bytes | None:
    """GCM with a short tag through the streaming API (the slower, obvious way)."""
    decryptor = Cipher(
        algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=len(tag))
    ).decryptor()
    decryptor.authenticate_additional_data(aad)
    plaintext = decryptor.update(ciphertext)
    try:
        return plaintext + decryptor.finalize()
    except InvalidTag:
        return None


def fields_of(chunk: ch.Chunk | ch.AuthFailure) -> dict[str, Any]:
    if isinstance(chunk, ch.MediaChunk):
        return {
            "type": "media",
            "seq": chunk.seq,
            "timestamp": chunk.timestamp,
            "payload_type": int(chunk.payload_type),
            "source": chunk.source,
            "sink": chunk.sink,
            "payload": chunk.payload.hex(),
            "seq_bytes": chunk.seq_bytes,
            "timestamp_bytes": chunk.timestamp_bytes,
            **({} if chunk.active_level is None else {"active_level": chunk.active_level}),
        }
    assert isinstance(chunk, ch.AckChunk)
    return {
        "type": "ack",
        "seq": chunk.seq,
        "direction": chunk.direction.value,
        "source": chunk.source,
        "sink": chunk.sink,
        "acked_seq": chunk.acked_seq,
        "delay_us": chunk.delay_us,
    }


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", VECTORS["aead"], ids=lambda c: c["name"])
def test_aead_vectors(case: dict[str, Any]) -> None:
    key, salt = bytes.fromhex(case["key"]), bytes.fromhex(case["salt"])
    tag_length = case["tag_length"]
    direction = Direction(case["direction"])
    envelope, package = bytes.fromhex(case["envelope"]), bytes.fromhex(case["package"])
    nonce, raw = bytes.fromhex(case["nonce"]), bytes.fromhex(case["hex"])

    # Key derivation, by the module and by RFC 5869 written out.
    for name, info in (("c2s_key", b"ript c2s"), ("s2c_key", b"ript s2c")):
        assert rfc5869_hkdf_sha256(key, salt, info, 16).hex() == case[name]
    assert derive_direction_key(key, salt, C2S).hex() == case["c2s_key"]
    assert derive_direction_key(key, salt, S2C).hex() == case["s2c_key"]
    keys = MediaKeys.from_material(key, salt, tag_length)
    dkey = keys.for_direction(direction)
    assert dkey.key.hex() == case[f"{direction.value}_key"]

    # Nonce: by the module and by hand from the chunk's own fields.
    envelope_fields = ch.parse_envelope(envelope)
    is_media = envelope_fields.kind is ch.ChunkKind.MEDIA
    full_seq = case["fields"]["seq"]
    source, sink = (envelope_fields.source, envelope_fields.sink) if is_media else (0, 0)
    code = 0 if direction is C2S else 1
    kind = int(envelope_fields.kind)
    assert nonce_by_hand(salt, code, source, sink, kind, full_seq) == nonce
    assert make_nonce(salt, direction, source=source, sink=sink, kind=kind, seq=full_seq) == nonce
    assert dkey.nonce(source, sink, kind, full_seq) == nonce

    # Sealing: full-tag AESGCM, cut to tag_length and put in front.
    full = AESGCM(bytes.fromhex(case[f"{direction.value}_key"])).encrypt(nonce, package, envelope)
    tag, ciphertext = full[len(package) : len(package) + tag_length], full[: len(package)]
    assert tag.hex() == case["tag"]
    assert ciphertext.hex() == case["ciphertext"]
    assert raw == bytes([len(envelope)]) + envelope + tag + ciphertext
    assert dkey.seal(nonce, envelope, package) == tag + ciphertext
    assert dkey.open(nonce, envelope, tag + ciphertext) == package

    # And the whole chunk both ways.
    chunk = ch.decode_chunk(
        raw,
        direction,
        keys,
        last_seq=case.get("last_seq", 0),
        last_timestamp=case.get("last_timestamp", 0),
    )
    assert not isinstance(chunk, ch.AuthFailure)
    assert fields_of(chunk) == case["fields"]
    assert ch.encode_chunk(chunk, direction, keys) == raw


@pytest.mark.parametrize("case", VECTORS["tampered"], ids=lambda c: c["name"])
def test_tampered_vectors_fail_authentication(case: dict[str, Any]) -> None:
    keys = MediaKeys.from_material(
        bytes.fromhex(case["key"]), bytes.fromhex(case["salt"]), case["tag_length"]
    )
    result = ch.decode_chunk(bytes.fromhex(case["hex"]), Direction(case["direction"]), keys)
    assert isinstance(result, ch.AuthFailure)


def test_vectors_use_distinct_direction_keys() -> None:
    case = VECTORS["aead"][0]
    assert case["c2s_key"] != case["s2c_key"]
    assert case["c2s_key"] != case["key"]


# --------------------------------------------------------------------------- keys


def test_from_material_derives_each_direction_once() -> None:
    keys = MediaKeys.from_material(KEY, SALT, 8)
    assert keys.tag_length == 8
    assert keys.for_direction(C2S) is keys.c2s
    assert keys.for_direction(S2C) is keys.s2c
    assert keys.c2s.key == rfc5869_hkdf_sha256(KEY, SALT, b"ript c2s", 16)
    assert keys.s2c.key == rfc5869_hkdf_sha256(KEY, SALT, b"ript s2c", 16)
    assert keys == MediaKeys.from_material(KEY, SALT, 8)


@pytest.mark.parametrize(
    ("key", "salt", "tag_length", "message"),
    [
        (bytes(15), SALT, 8, "key must be 16 bytes, not 15"),
        (bytes(32), SALT, 8, "key must be 16 bytes, not 32"),
        (KEY, bytes(11), 8, "salt must be 12 bytes, not 11"),
        (KEY, SALT, 3, "tag-length must be 4..16, not 3"),
        (KEY, SALT, 17, "tag-length must be 4..16, not 17"),
        (KEY, SALT, True, "tag-length must be 4..16"),
    ],
)
def test_bad_key_material(key: bytes, salt: bytes, tag_length: int, message: str) -> None:
    with pytest.raises(MediaKeyError, match=message):
        MediaKeys.from_material(key, salt, tag_length)
    assert issubclass(MediaKeyError, RemoteProtocolError)


@pytest.mark.parametrize(
    ("key", "salt", "tag_length"), [(bytes(8), SALT, 8), (KEY, bytes(4), 8), (KEY, SALT, 20)]
)
def test_direction_key_checks_sizes(key: bytes, salt: bytes, tag_length: int) -> None:
    with pytest.raises(MediaKeyError):
        DirectionKey(C2S, key, salt, tag_length)


def test_repr_does_not_show_key_material() -> None:
    keys = MediaKeys.from_material(KEY, SALT, 8)
    text = repr(keys)
    assert keys.c2s.key.hex() not in text
    assert repr(keys.c2s.key) not in text
    assert repr(SALT) not in text
    assert "tag_length=8" in text


# --------------------------------------------------------------------------- nonces


def test_nonce_layout() -> None:
    dkey = MediaKeys.from_material(KEY, bytes(12), 4).s2c
    assert dkey.nonce(2, 3, 0, 0x0102030405060708).hex() == "010203000102030405060708"
    assert dkey.nonce(0, 0, 1, 9).hex() == "010000010000000000000009"
    c2s = MediaKeys.from_material(KEY, bytes(12), 4).c2s
    assert c2s.nonce(2, 3, 0, 0x0102030405060708).hex() == "000203000102030405060708"


def test_nonces_are_unique_across_directions_streams_kinds_and_seqs() -> None:
    keys = MediaKeys.from_material(KEY, SALT, 8)
    seen = set()
    count = 0
    for dkey in (keys.c2s, keys.s2c):
        for source, sink in ((1, 1), (1, 2), (2, 1)):
            for seq in (0, 1, 255, 256, 65535, 65536, 2**64 - 1):
                seen.add(dkey.nonce(source, sink, 0, seq))
                count += 1
        for seq in (0, 1, 65536, 2**64 - 1):
            seen.add(dkey.nonce(0, 0, 1, seq))
            count += 1
    assert len(seen) == count


@settings(max_examples=200, deadline=None)
@given(
    st.tuples(
        st.integers(0, 255), st.integers(0, 255), st.integers(0, 1), st.integers(0, 2**64 - 1)
    ),
    st.tuples(
        st.integers(0, 255), st.integers(0, 255), st.integers(0, 1), st.integers(0, 2**64 - 1)
    ),
)
def test_distinct_fields_give_distinct_nonces(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int]
) -> None:
    dkey = MediaKeys.from_material(KEY, SALT, 8).c2s
    assert (dkey.nonce(*a) == dkey.nonce(*b)) == (a == b)


# --------------------------------------------------------------------------- seal / open


def test_open_rejects_every_single_bit_flip() -> None:
    dkey = MediaKeys.from_material(KEY, SALT, 4).c2s
    nonce = dkey.nonce(1, 1, 0, 7)
    aad = b"\x01\x01\x07"
    sealed = dkey.seal(nonce, aad, b"package!")
    assert dkey.open(nonce, aad, sealed) == b"package!"
    for index in range(len(sealed)):
        for bit in range(8):
            broken = bytearray(sealed)
            broken[index] ^= 1 << bit
            assert dkey.open(nonce, aad, bytes(broken)) is None
    assert dkey.open(nonce, aad + b"x", sealed) is None
    assert dkey.open(dkey.nonce(1, 1, 0, 8), aad, sealed) is None
    assert dkey.open(nonce, aad, sealed[:3]) is None
    assert dkey.open(nonce, aad, sealed[:-1]) is None


def test_empty_package_still_authenticates() -> None:
    dkey = MediaKeys.from_material(KEY, SALT, 16).s2c
    nonce = dkey.nonce(0, 0, 1, 0)
    sealed = dkey.seal(nonce, b"env", b"")
    assert len(sealed) == 16
    assert dkey.open(nonce, b"env", sealed) == b""
    assert dkey.open(nonce, b"enw", sealed) is None


def test_wrong_direction_key_fails() -> None:
    keys = MediaKeys.from_material(KEY, SALT, 8)
    nonce = keys.c2s.nonce(1, 1, 0, 0)
    sealed = keys.c2s.seal(nonce, b"e", b"p")
    assert keys.s2c.open(nonce, b"e", sealed) is None


@settings(max_examples=200, deadline=None)
@given(
    st.integers(4, 16),
    st.binary(max_size=300),
    st.binary(max_size=60),
    st.integers(0, 2**64 - 1),
    st.none() | st.integers(0, 10_000),
)
def test_open_agrees_with_the_reference_gcm(
    tag_length: int, package: bytes, aad: bytes, seq: int, flip: int | None
) -> None:
    dkey = MediaKeys.from_material(KEY, SALT, tag_length).c2s
    nonce = dkey.nonce(1, 2, 0, seq)
    sealed = bytearray(dkey.seal(nonce, aad, package))
    assert len(sealed) == tag_length + len(package)
    if flip is not None:
        sealed[flip % len(sealed)] ^= 1 << (flip % 8)
    tag, ciphertext = bytes(sealed[:tag_length]), bytes(sealed[tag_length:])
    expected = reference_open(dkey.key, nonce, aad, tag, ciphertext)
    assert dkey.open(nonce, aad, memoryview(sealed)) == expected
    assert (expected == package) == (flip is None)
