"""Tests of media/control chunk encoding, framing and truncation (ript.protocol.chunks)."""

from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol import chunks as ch
from ript.protocol.chunks import (
    AckChunk,
    AuthFailure,
    ChunkEncodeError,
    ChunkError,
    MediaChunk,
    PayloadType,
    UnknownControlChunk,
)
from ript.protocol.errors import LocalProtocolError, RemoteProtocolError
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.varint import VARINT_MAX, encode_varint

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "chunks.json").read_text("utf-8")
)
C2S = Direction.C2S
S2C = Direction.S2C
TS = 1_795_341_600_000
KEYS = MediaKeys.from_material(bytes(range(16)), bytes(range(12)), 8)


def tlvs(items: list[list[Any]] | None) -> tuple[tuple[int, bytes], ...]:
    return tuple((t, bytes.fromhex(v)) for t, v in items or [])


def chunk_from_fields(f: dict[str, Any]) -> ch.Chunk:
    if f["type"] == "media":
        return MediaChunk(
            f["seq"],
            f["timestamp"],
            ch.payload_type_of(f["payload_type"]),
            f["source"],
            f["sink"],
            bytes.fromhex(f["payload"]),
            f.get("active_level"),
            f.get("reference_frame"),
            f.get("spatial_layer"),
            f.get("temporal_layer"),
            tlvs(f.get("extra_envelope")),
            tlvs(f.get("extra_package")),
            f["seq_bytes"],
            f["timestamp_bytes"],
        )
    if f["type"] == "ack":
        return AckChunk(
            f["seq"],
            Direction(f["direction"]),
            f["source"],
            f["sink"],
            f["acked_seq"],
            f["delay_us"],
            tlvs(f.get("extra_envelope")),
            tlvs(f.get("extra_package")),
        )
    return UnknownControlChunk(
        f["seq"], f["control_type"], tlvs(f["package"]), tlvs(f.get("extra_envelope"))
    )


def media(**changes: Any) -> MediaChunk:
    base: dict[str, Any] = {
        "seq": 5,
        "timestamp": TS,
        "payload_type": PayloadType.OPUS,
        "source": 1,
        "sink": 1,
        "payload": b"\xfc" + bytes(79),
    }
    base.update(changes)
    return MediaChunk(**base)


def clear_chunk(envelope: bytes, package: bytes) -> bytes:
    return encode_varint(len(envelope)) + envelope + package


MEDIA_ENV = ch.encode_media_envelope(media())
MEDIA_PKG = ch.encode_media_package(media())
CONTROL_ENV = ch.encode_control_envelope(0, 1)


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", VECTORS["chunks"], ids=lambda c: c["name"])
def test_chunk_vectors_both_ways(case: dict[str, Any]) -> None:
    chunk = chunk_from_fields(case["fields"])
    direction = Direction(case["direction"])
    raw = bytes.fromhex(case["hex"])
    assert ch.encode_chunk(chunk, direction) == raw
    decoded = ch.decode_chunk(
        raw,
        direction,
        last_seq=case.get("last_seq", 0),
        last_timestamp=case.get("last_timestamp", 0),
    )
    assert decoded == chunk


@pytest.mark.parametrize("case", VECTORS["bodies"], ids=lambda c: c["name"])
def test_body_vectors_both_ways(case: dict[str, Any]) -> None:
    parts = [bytes.fromhex(c) for c in case["chunks"]]
    body = bytes.fromhex(case["hex"])
    assert ch.frame(parts) == body
    assert [bytes(c) for c in ch.unframe(body)] == parts


@pytest.mark.parametrize("case", VECTORS["malformed"], ids=lambda c: c["name"])
def test_malformed_vectors(case: dict[str, Any]) -> None:
    with pytest.raises(ChunkError) as info:
        ch.decode_chunk(bytes.fromhex(case["hex"]), C2S)
    assert str(info.value) == case["message"]


@pytest.mark.parametrize("case", VECTORS["malformed_bodies"], ids=lambda c: c["hex"])
def test_malformed_body_vectors(case: dict[str, Any]) -> None:
    body = bytes.fromhex(case["hex"])
    with pytest.raises(ChunkError):
        ch.unframe(body)
    good, error = ch.unframe_partial(body)
    assert len(good) == case["chunks_before_error"]
    assert isinstance(error, ChunkError)


@pytest.mark.parametrize("case", VECTORS["truncation"], ids=lambda c: f"{c['value']}/{c['nbytes']}")
def test_truncation_vectors(case: dict[str, Any]) -> None:
    assert ch.truncate(case["value"], case["nbytes"]) == case["truncated"]
    assert ch.expand(case["truncated"], case["nbytes"], case["last"]) == case["expanded"]


def test_media_vector_is_the_documented_layout() -> None:
    case = next(c for c in VECTORS["chunks"] if c["name"] == "media-full")
    layout = (
        "20"  # envelope length 32
        "0108" + "0000000000000000"  # seq 0, 8 bytes
        "0208" + "000001a202b2c500"  # timestamp, 8 bytes
        "030101"  # payload type 1 (opus)
        "050101"  # source 1
        "060101"  # sink 1
        "0a012a"  # active level 42
        "040c" + "fc0102030405060708090a0b"  # package: media payload, 12 bytes
    )
    assert case["hex"] == layout


# --------------------------------------------------------------------------- envelope TLVs


@pytest.mark.parametrize(
    ("changes", "tlv"),
    [
        ({"seq": 0x0102}, "01080000000000000102"),
        ({"seq": 0x0102, "seq_bytes": 2}, "01020102"),
        ({"seq": 0x1_0102, "seq_bytes": 1}, "010102"),
        ({"timestamp": TS}, "0208000001a202b2c500"),
        ({"timestamp": TS, "timestamp_bytes": 4}, "020402b2c500"),
        ({"payload_type": PayloadType.AV1}, "03024061"),
        ({"payload_type": PayloadType.CN}, "030105"),
        ({"payload_type": 300}, "0302412c"),
        ({"source": 200}, "0501c8"),
        ({"sink": 255}, "0601ff"),
        ({"reference_frame": True}, "070101"),
        ({"reference_frame": False}, "070100"),
        ({"spatial_layer": 3}, "080103"),
        ({"temporal_layer": 4}, "090104"),
        ({"active_level": 127}, "0a017f"),
        ({"extra_envelope": ((40, b"ab"),)}, "28026162"),
        ({"extra_envelope": ((1000, b""),)}, "43e800"),
    ],
)
def test_each_envelope_tlv(changes: dict[str, Any], tlv: str) -> None:
    chunk = media(**changes)
    envelope = ch.encode_media_envelope(chunk)
    assert tlv in envelope.hex()
    decoded = ch.decode_chunk(ch.encode_chunk(chunk, C2S), C2S)
    assert isinstance(decoded, MediaChunk)
    expected_seq = chunk.seq & ((1 << (8 * chunk.seq_bytes)) - 1)
    expected_ts = chunk.timestamp & ((1 << (8 * chunk.timestamp_bytes)) - 1)
    assert decoded == MediaChunk(
        expected_seq,
        expected_ts,
        chunk.payload_type,
        chunk.source,
        chunk.sink,
        chunk.payload,
        chunk.active_level,
        chunk.reference_frame,
        chunk.spatial_layer,
        chunk.temporal_layer,
        chunk.extra_envelope,
        chunk.extra_package,
        chunk.seq_bytes,
        chunk.timestamp_bytes,
    )


def test_envelope_fields_default_to_absent() -> None:
    envelope = ch.parse_envelope(MEDIA_ENV)
    assert envelope.kind is ch.ChunkKind.MEDIA
    assert (envelope.seq, envelope.seq_bytes, envelope.timestamp, envelope.timestamp_bytes) == (
        5,
        8,
        TS,
        8,
    )
    assert envelope.reference_frame is None
    assert envelope.active_level is None
    assert envelope.extra == ()
    assert not MEDIA_ENV.startswith(b"\x00\x01\x00")  # kind left out for media


def test_explicit_media_kind_is_accepted() -> None:
    env = b"\x00\x01\x00" + MEDIA_ENV
    decoded = ch.decode_chunk(clear_chunk(env, MEDIA_PKG), C2S)
    assert decoded == media()


def test_payload_types() -> None:
    assert ch.payload_type_of(2) is PayloadType.PCMU
    assert ch.payload_type_of(96) is PayloadType.H264
    assert ch.payload_type_of(4242) == 4242
    assert not isinstance(ch.payload_type_of(4242), PayloadType)
    assert [int(p) for p in PayloadType] == [1, 2, 3, 4, 5, 6, 96, 97]


def test_payload_type_non_shortest_varint_accepted() -> None:
    env = MEDIA_ENV.replace(b"\x03\x01\x01", b"\x03\x02\x40\x01")
    decoded = ch.decode_chunk(clear_chunk(env, MEDIA_PKG), C2S)
    assert isinstance(decoded, MediaChunk)
    assert decoded.payload_type is PayloadType.OPUS


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"\x03\x01\x01", b"\x03\x02\x01\x01", "not exactly one varint"),
        (b"\x03\x01\x01", b"\x03\x00", "not exactly one varint"),
        (b"\x03\x01\x01", b"\x03\x01\x40", "payload type at offset \\d+ is cut short"),
        (b"\x03\x01\x01", b"\x03\x08\xc0\x00\x00\x01\x00\x00\x00\x00", "exceeds 32 bits"),
        (b"\x05\x01\x01", b"\x05\x00", "source id at offset .* has 0 bytes, not 1"),
        (b"\x06\x01\x01", b"\x06\x02\x01\x01", "sink id .* has 2 bytes"),
        (b"\x01\x08" + bytes(7) + b"\x05", b"\x01\x00", "sequence number .* 0 bytes, not 1..8"),
        (b"\x02\x08", b"\x02\x09\x00", "timestamp .* 9 bytes, not 1..8"),
        (b"", b"\x07\x01\x02", "reference frame flag .* is 2"),
        (b"", b"\x07\x02\x00\x01", "reference frame flag .* 2 bytes"),
        (b"", b"\x08\x02\x00\x01", "spatial layer .* 2 bytes"),
        (b"", b"\x09\x00", "temporal layer .* 0 bytes"),
        (b"", b"\x0a\x01\x80", "active level .* 128"),
        (b"", b"\x00\x01\x02", "unknown chunk kind 2"),
        (b"", b"\x00\x02\x00\x00", "kind .* 2 bytes"),
        (b"", b"\x0b\x02\x00\x01", "media chunk envelope carries a control"),
        (b"\x05\x01\x01", b"", "has no source id"),
        (b"\x06\x01\x01", b"", "has no sink id"),
        (b"\x03\x01\x01", b"", "has no payload type"),
        (b"\x02\x08", b"\x1e\x08", "has no timestamp"),
        (b"", b"\x05\x01\x02", "type 5 .* appears twice"),
        (b"", b"\x28\x00\x28\x00", "type 40 .* appears twice"),
        (b"", b"\x43\xe8\x00\x43\xe8\x00", "type 1000 .* appears twice"),
        (b"", b"\x28", "type 40 .* has no length"),
        (b"", b"\x28\x05\x00", "claims 5 byte"),
        (b"", b"\x28\x40", "TLV length .* cut short"),
        (b"", b"\x68", "TLV type .* cut short"),
    ],
)
def test_media_envelope_errors(old: bytes, new: bytes, message: str) -> None:
    """Replace ``old`` by ``new`` in a good envelope (or append ``new`` if ``old`` is empty)."""
    assert old in MEDIA_ENV
    env = MEDIA_ENV.replace(old, new, 1) if old else MEDIA_ENV + new
    with pytest.raises(ChunkError, match=message):
        ch.decode_chunk(clear_chunk(env, MEDIA_PKG), C2S)
    with pytest.raises(ChunkError, match=message):
        ch.parse_envelope(env)


def test_envelope_without_sequence_number() -> None:
    env = MEDIA_ENV.replace(b"\x01\x08" + bytes(7) + b"\x05", b"")
    with pytest.raises(ChunkError, match="no sequence number"):
        ch.parse_envelope(env)


def test_unknown_envelope_and_package_types_are_kept_in_order() -> None:
    env = MEDIA_ENV + b"\x04\x01\x09" + b"\x0c\x00" + b"\x7f\xff\x02hi"
    pkg = b"\x40\x63\x01\x01" + MEDIA_PKG + b"\x01\x01\x05"
    decoded = ch.decode_chunk(clear_chunk(env, pkg), C2S)
    assert isinstance(decoded, MediaChunk)
    assert decoded.extra_envelope == ((4, b"\x09"), (12, b""), (0x3FFF, b"hi"))
    assert decoded.extra_package == ((0x63, b"\x01"), (1, b"\x05"))
    # Re-emitted on encoding, after the known fields.
    again = ch.decode_chunk(ch.encode_chunk(decoded, C2S), C2S)
    assert again == decoded


@pytest.mark.parametrize(
    ("package", "message"),
    [
        (b"", "no media payload"),
        (b"\x05\x01\x01", "no media payload"),
        (MEDIA_PKG + MEDIA_PKG, "type 4 .* appears twice"),
        (b"\x04\x05\x00", "claims 5 byte"),
        (b"\x04", "has no length"),
    ],
)
def test_media_package_errors(package: bytes, message: str) -> None:
    with pytest.raises(ChunkError, match=message):
        ch.decode_chunk(clear_chunk(MEDIA_ENV, package), C2S)


def test_empty_payload_is_allowed() -> None:
    assert ch.decode_chunk(ch.encode_chunk(media(payload=b""), C2S), C2S) == media(payload=b"")


# --------------------------------------------------------------------------- control chunks

ACK = AckChunk(7, C2S, 1, 2, 0x1234_5678_9ABC, 1500)
ACK_PKG = ch.encode_ack_package(ACK)


def test_ack_layout() -> None:
    assert CONTROL_ENV.hex() == "000101" + "0108" + "0000000000000000" + "0b020001"
    assert ACK_PKG.hex() == (
        "140100" + "050101" + "060102" + "0108" + "0000123456789abc" + "150245dc"
    )
    raw = ch.encode_chunk(ACK, S2C)
    assert ch.decode_chunk(raw, S2C) == ACK


def test_ack_direction_s2c_and_extensions() -> None:
    ack = AckChunk(1, S2C, 0, 0, 0, 0, ((99, b"e"),), ((50, b"p"),))
    assert ch.decode_chunk(ch.encode_chunk(ack, C2S), C2S) == ack


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"\x14\x01\x00", b"", "lacks direction"),
        (b"\x05\x01\x01", b"", "lacks source id"),
        (b"\x06\x01\x02", b"", "lacks sink id"),
        (b"\x01\x08", b"\x1f\x08", "lacks sequence number"),
        (b"\x15\x02\x45\xdc", b"", "lacks delay"),
        (b"\x14\x01\x00", b"\x14\x01\x02", "direction is 2"),
        (b"\x14\x01\x00", b"\x14\x02\x00\x00", "direction has 2 bytes"),
        (b"\x05\x01\x01", b"\x05\x00", "source id has 0 bytes"),
        (b"\x01\x08\x00", b"\x01\x07", "sequence number has 7 bytes"),
        (b"\x15\x02\x45\xdc", b"\x15\x03\x45\xdc\x00", "delay .* not one varint"),
        (b"\x15\x02\x45\xdc", b"\x15\x00", "delay .* not one varint"),
        (b"\x15\x02\x45\xdc", b"\x15\x01\x45", "delay .* cut short"),
        (b"", b"\x05\x01\x01", "type 5 .* twice"),
    ],
)
def test_ack_package_errors(old: bytes, new: bytes, message: str) -> None:
    assert old in ACK_PKG
    package = ACK_PKG.replace(old, new, 1) if old else ACK_PKG + new
    with pytest.raises(ChunkError, match=message):
        ch.decode_chunk(clear_chunk(CONTROL_ENV, package), S2C)


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        (b"\x00\x01\x01\x01\x08" + bytes(8), "no control type"),
        (b"\x00\x01\x01\x0b\x02\x00\x01", "no sequence number"),
        (b"\x00\x01\x01\x01\x04" + bytes(4) + b"\x0b\x02\x00\x01", "4 bytes, not 8"),
        (CONTROL_ENV + b"\x02\x08" + bytes(8), "media field \\(timestamp\\)"),
        (CONTROL_ENV + b"\x03\x01\x01", "media field \\(payload type\\)"),
        (CONTROL_ENV + b"\x06\x01\x01", "media field \\(sink id\\)"),
        (CONTROL_ENV + b"\x0a\x01\x01", "media field \\(active level\\)"),
        (b"\x00\x01\x01\x01\x08" + bytes(8) + b"\x0b\x01\x01", "control type .* 1 bytes, not 2"),
    ],
)
def test_control_envelope_errors(envelope: bytes, message: str) -> None:
    with pytest.raises(ChunkError, match=message):
        ch.decode_chunk(clear_chunk(envelope, ACK_PKG), S2C)


def test_unknown_control_type_is_kept() -> None:
    env = ch.encode_control_envelope(3, 0x0777, ((77, b"x"),))
    pkg = b"\x01\x01\x05\x30\x00"
    decoded = ch.decode_chunk(clear_chunk(env, pkg), S2C)
    assert decoded == UnknownControlChunk(3, 0x0777, ((1, b"\x05"), (48, b"")), ((77, b"x"),))
    assert ch.encode_chunk(decoded, S2C) == clear_chunk(env, pkg)


def test_unknown_control_package_must_be_tlvs() -> None:
    env = ch.encode_control_envelope(3, 9)
    with pytest.raises(ChunkError, match="claims 4 byte"):
        ch.decode_chunk(clear_chunk(env, b"\x01\x04\x00"), S2C)


def test_unknown_control_may_not_pose_as_ack() -> None:
    with pytest.raises(ChunkEncodeError, match="AckChunk"):
        ch.encode_chunk(UnknownControlChunk(0, 1), C2S)


# --------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        (media(source=256), "source id must be 0..255"),
        (media(sink=-1), "sink id must be 0..255"),
        (media(active_level=128), "active level must be 0..127"),
        (media(spatial_layer=300), "spatial layer"),
        (media(temporal_layer=-2), "temporal layer"),
        (media(seq=2**64), "sequence number .* unsigned 64-bit"),
        (media(seq=-1), "sequence number"),
        (media(timestamp=2**64), "timestamp .* unsigned 64-bit"),
        (media(seq_bytes=0), "1..8 bytes, not 0"),
        (media(timestamp_bytes=9), "1..8 bytes, not 9"),
        (media(payload_type=2**32), "32 bits"),
        (media(payload_type=-1), "32 bits"),
        (media(extra_envelope=((1, b""),)), "type 1 is a known envelope type"),
        (media(extra_envelope=((40, b""), (40, b"x"))), "40 appears twice"),
        (media(extra_envelope=((2**62, b""),)), "outside 0 .. 2\\^62-1"),
        (media(extra_package=((4, b""),)), "type 4 is a known package type"),
        (media(payload=bytes(1000)), "exceeds the 1000-byte limit"),
        (AckChunk(0, C2S, 1, 1, 0, VARINT_MAX + 1), "ack delay"),
        (AckChunk(0, C2S, 1, 1, -1, 0), "acked sequence number"),
        (AckChunk(2**64, C2S, 1, 1, 0, 0), "control sequence number"),
        (AckChunk(0, C2S, 256, 1, 0, 0), "acked source id"),
        (AckChunk(0, C2S, 1, 1, 0, 0, extra_package=((21, b""),)), "known package type"),
        (UnknownControlChunk(0, 0x10000), "control type must be 0..65535"),
        (UnknownControlChunk(0, 5, ((1, b""), (1, b""))), "appears twice"),
    ],
)
def test_encode_errors(chunk: ch.Chunk, message: str) -> None:
    with pytest.raises(ChunkEncodeError, match=message):
        ch.encode_chunk(chunk, C2S, KEYS)
    assert issubclass(ChunkEncodeError, LocalProtocolError)


def test_chunk_size_limit_both_ways() -> None:
    # 34-byte envelope + 1 length byte + package of 3 + n bytes.
    fits = media(payload=bytes(1000 - 1 - len(MEDIA_ENV) - 3))
    raw = ch.encode_chunk(fits, C2S)
    assert len(raw) == ch.MAX_CHUNK_SIZE
    assert ch.decode_chunk(raw, C2S) == fits
    with pytest.raises(ChunkEncodeError):
        ch.encode_chunk(media(payload=fits.payload + b"x"), C2S)
    with pytest.raises(ChunkError, match="1001 bytes exceeds"):
        ch.decode_chunk(raw + b"\x00", C2S)


def test_decode_chunk_parts_splits_envelope_and_rest() -> None:
    raw = ch.encode_chunk(media(), C2S, KEYS)
    envelope, envelope_bytes, rest = ch.decode_chunk_parts(raw)
    assert bytes(envelope_bytes) == MEDIA_ENV
    assert envelope.seq == 5
    assert len(rest) == KEYS.tag_length + len(MEDIA_PKG)
    assert bytes(rest) != MEDIA_PKG


def test_decode_sealed_chunk_and_auth_failure() -> None:
    raw = ch.encode_chunk(media(), C2S, KEYS)
    assert ch.decode_chunk(raw, C2S, KEYS) == media()
    forged = raw[:-1] + bytes((raw[-1] ^ 1,))
    assert ch.decode_chunk(forged, C2S, KEYS) == AuthFailure(ch.ChunkKind.MEDIA, 1, 1, 5)
    assert ch.decode_chunk(raw, S2C, KEYS) == AuthFailure(ch.ChunkKind.MEDIA, 1, 1, 5)
    ack = ch.encode_chunk(ACK, S2C, KEYS)
    assert ch.decode_chunk(ack[:-1], S2C, KEYS) == AuthFailure(ch.ChunkKind.CONTROL, 0, 0, 7)


def test_sealed_chunk_shorter_than_tag_is_auth_failure() -> None:
    raw = clear_chunk(MEDIA_ENV, b"\x01\x02")
    assert isinstance(ch.decode_chunk(raw, C2S, KEYS), AuthFailure)


def test_tlv_helpers() -> None:
    assert ch.encode_tlv(21, b"\x01") == b"\x15\x01\x01"
    assert ch.decode_tlvs(b"\x15\x01\x01\x40\x40\x00") == [(21, b"\x01"), (64, b"")]
    with pytest.raises(ChunkError, match="twice"):
        ch.decode_tlvs(b"\x15\x00\x15\x00")
    assert issubclass(ChunkError, RemoteProtocolError)


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize(
    ("truncated", "nbytes", "last", "expected"),
    [
        (0x0002, 2, 0xFFFE, 0x1_0002),  # forward across 2^16
        (0xFFFE, 2, 0x1_0002, 0xFFFE),  # late chunk from before 2^16
        (0x0000, 2, 0xFFFF, 0x1_0000),
        (0x8000, 2, 0x1_0000, 0x1_8000),  # tie: the larger value wins
        (0x0000, 2, 0x1_8000, 0x2_0000),  # tie the other way round: still the larger
        (0x8001, 2, 0x1_0000, 0x8001),  # just past the tie: the smaller one is nearer
        (0xFFFF, 2, 5, 0xFFFF),  # nothing below 0
        (0x0003, 4, 0xFFFF_FFF0, 0x1_0000_0003),  # forward across 2^32
        (0xFFFF_FFF0, 4, 0x1_0000_0003, 0xFFFF_FFF0),
        (0x0001, 2, 2**64 - 2, 2**64 - 0xFFFF),  # nothing at or above 2^64
        (0x7F, 1, 0x1000, 0x107F),
        (0x81, 1, 0x1000, 0x0F81),
        (42, 8, 2**63, 42),  # a full value replaces
    ],
)
def test_expand_nearest(truncated: int, nbytes: int, last: int, expected: int) -> None:
    assert ch.expand(truncated, nbytes, last) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ch.truncate(1, 0), "1..8 bytes, not 0"),
        (lambda: ch.truncate(1, 9), "1..8 bytes, not 9"),
        (lambda: ch.truncate(-1, 2), "unsigned 64-bit"),
        (lambda: ch.truncate(2**64, 8), "unsigned 64-bit"),
        (lambda: ch.expand(0x1_0000, 2, 0), "does not fit in 2 bytes"),
        (lambda: ch.expand(1, 10, 0), "1..8 bytes, not 10"),
    ],
)
def test_truncation_argument_errors(call: Any, message: str) -> None:
    with pytest.raises(ChunkEncodeError, match=message):
        call()


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(1, 8), st.data())
def test_expand_inverts_truncate_within_half_window(value: int, nbytes: int, data: Any) -> None:
    half = 1 << (8 * nbytes - 1)
    last = data.draw(st.integers(max(0, value - half + 1), min(2**64 - 1, value + half - 1)))
    assert ch.expand(ch.truncate(value, nbytes), nbytes, last) == value


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(1, 7), st.integers(0, 2**64 - 1))
def test_expand_gives_the_nearest_candidate(value: int, nbytes: int, last: int) -> None:
    window = 1 << (8 * nbytes)
    got = ch.expand(ch.truncate(value, nbytes), nbytes, last)
    assert got % window == value % window
    assert 0 <= got < 2**64
    for other in (got - window, got + window):
        if 0 <= other < 2**64:
            assert abs(other - last) >= abs(got - last)


# --------------------------------------------------------------------------- framing


def test_frame_and_unframe() -> None:
    parts = [b"\x01", bytes(63), bytes(64), bytes(300), b""]
    body = ch.frame(parts)
    assert body[:2] == b"\x01\x01"
    assert body[66:68] == b"\x40\x40"
    assert [bytes(p) for p in ch.unframe(body)] == parts
    assert ch.unframe(b"") == []


def test_unframe_partial_keeps_chunks_before_the_error() -> None:
    body = ch.frame([b"abc", b"de"]) + b"\x09xyz"
    good, error = ch.unframe_partial(body)
    assert [bytes(g) for g in good] == [b"abc", b"de"]
    assert error is not None
    assert "offset 7 claims 9 bytes, only 3 remain" in str(error)
    with pytest.raises(ChunkError, match="cut short"):
        ch.unframe(b"\x01a\x80\x00")


def test_pack_datagrams_limit_and_order() -> None:
    parts = [bytes([i]) * size for i, size in enumerate([400, 400, 300, 998, 10, 5, 500])]
    datagrams = ch.pack_datagrams(parts)
    assert all(len(d) <= ch.DATAGRAM_LIMIT for d in datagrams)
    assert [len(d) for d in datagrams] == [804, 302, 1000, 11 + 6 + 502]
    assert [bytes(p) for d in datagrams for p in ch.unframe(d)] == parts
    assert ch.pack_datagrams([]) == []


def test_pack_datagrams_refuses_a_chunk_that_cannot_fit() -> None:
    with pytest.raises(ChunkEncodeError, match="1001 bytes cannot fit a 1000-byte datagram"):
        ch.pack_datagrams([bytes(999)])
    assert ch.pack_datagrams([bytes(30)] * 3, limit=64) == [
        ch.frame([bytes(30)] * 2),
        ch.frame([bytes(30)]),
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=30), st.integers(202, 1500))
def test_pack_datagrams_property(parts: list[bytes], limit: int) -> None:
    datagrams = ch.pack_datagrams(parts, limit)
    assert all(0 < len(d) <= limit for d in datagrams)
    assert [bytes(p) for d in datagrams for p in ch.unframe(d)] == parts
    # Greedy: the first chunk of each datagram would not have fitted in the one before.
    for before, after in itertools.pairwise(datagrams):
        first = bytes(ch.unframe(after)[0])
        assert len(before) + len(encode_varint(len(first))) + len(first) > limit


# --------------------------------------------------------------------------- properties

_extra_env = st.lists(
    st.tuples(st.integers(12, 2**20), st.binary(max_size=8)), max_size=3, unique_by=lambda t: t[0]
)
_extra_pkg = st.lists(
    st.tuples(st.integers(22, 2**20), st.binary(max_size=8)), max_size=3, unique_by=lambda t: t[0]
)
_opt_byte = st.none() | st.integers(0, 255)


@st.composite
def media_chunks(draw: Any) -> MediaChunk:
    seq_bytes = draw(st.integers(1, 8))
    ts_bytes = draw(st.integers(1, 8))
    return MediaChunk(
        draw(st.integers(0, (1 << (8 * seq_bytes)) - 1)),
        draw(st.integers(0, (1 << (8 * ts_bytes)) - 1)),
        ch.payload_type_of(draw(st.integers(0, 2**32 - 1) | st.sampled_from(list(PayloadType)))),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(st.binary(max_size=200)),
        draw(st.none() | st.integers(0, 127)),
        draw(st.none() | st.booleans()),
        draw(_opt_byte),
        draw(_opt_byte),
        tuple(draw(_extra_env)),
        tuple(draw(_extra_pkg | st.just([(4 + 60, b"x")]))),
        seq_bytes,
        ts_bytes,
    )


acks = st.builds(
    AckChunk,
    st.integers(0, 2**64 - 1),
    st.sampled_from([C2S, S2C]),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 2**64 - 1),
    st.integers(0, VARINT_MAX),
    st.lists(
        st.tuples(st.integers(12, 500), st.binary(max_size=4)), max_size=2, unique_by=lambda t: t[0]
    ).map(tuple),
    st.lists(
        st.tuples(st.integers(22, 500), st.binary(max_size=4)), max_size=2, unique_by=lambda t: t[0]
    ).map(tuple),
)
controls = st.builds(
    UnknownControlChunk,
    st.integers(0, 2**64 - 1),
    st.integers(2, 0xFFFF),
    st.lists(
        st.tuples(st.integers(0, 500), st.binary(max_size=6)), max_size=3, unique_by=lambda t: t[0]
    ).map(tuple),
)
any_chunk = media_chunks() | acks | controls


@settings(max_examples=300, deadline=None)
@given(
    any_chunk,
    st.sampled_from([C2S, S2C]),
    st.none() | st.integers(4, 16),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=12, max_size=12),
)
def test_chunk_round_trip(
    chunk: ch.Chunk, direction: Direction, tag_length: int | None, key: bytes, salt: bytes
) -> None:
    keys = None if tag_length is None else MediaKeys.from_material(key, salt, tag_length)
    raw = ch.encode_chunk(chunk, direction, keys)
    assert len(raw) <= ch.MAX_CHUNK_SIZE
    assert ch.decode_chunk(raw, direction, keys) == chunk
    assert [bytes(c) for c in ch.unframe(ch.frame([raw, raw]))] == [raw, raw]
    if keys is not None:
        other = S2C if direction is C2S else C2S
        assert isinstance(ch.decode_chunk(raw, other, keys), AuthFailure)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.booleans())
def test_random_bytes_raise_only_chunk_error(data: bytes, sealed: bool) -> None:
    keys = KEYS if sealed else None
    with contextlib.suppress(ChunkError):
        ch.decode_chunk(data, C2S, keys, last_seq=1000, last_timestamp=TS)
    with contextlib.suppress(ChunkError):
        ch.unframe(data)
    with contextlib.suppress(ChunkError):
        ch.decode_tlvs(data)
    with contextlib.suppress(ChunkError):
        ch.parse_envelope(data)


@settings(max_examples=300, deadline=None)
@given(any_chunk, st.data())
def test_mutated_chunks_raise_only_chunk_error(chunk: ch.Chunk, data: Any) -> None:
    raw = bytearray(ch.encode_chunk(chunk, C2S))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for candidate in (bytes(raw), bytes(raw[:cut])):
        with contextlib.suppress(ChunkError):
            ch.decode_chunk(candidate, C2S)


def test_every_vector_section_is_checked() -> None:
    # Sections checked here, in test_varint.py (varints*) and test_media_crypto.py (aead, tampered).
    assert set(VECTORS) == {
        "description",
        "varints",
        "varints_decode_only",
        "varints_truncated",
        "truncation",
        "chunks",
        "bodies",
        "aead",
        "tampered",
        "malformed",
        "malformed_bodies",
    }
    assert {c["fields"]["type"] for c in VECTORS["chunks"]} == {"media", "ack", "control"}
