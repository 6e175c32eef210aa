"""The common-layout shortcuts of the chunk path (issue #12) agree with the general code.

The sender builds its usual media chunks and acks with one struct call, and the parsers
match the same layouts before walking TLVs; these tests hold both shortcuts to the bytes
and values the general encoders and the TLV walk give, including near-misses (one byte
changed) that the shortcut must leave to the walk.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import ript.protocol.chunks as ch
from ript.protocol.chunks import AckChunk, ChunkError, MediaChunk, PayloadType
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender, PendingAck

KEYS = MediaKeys.from_material(bytes(range(16)), bytes(range(12)), 8)
C2S = Direction.C2S


def _walk_package(package: bytes) -> list[ch.Tlv]:
    return ch.decode_tlvs(package)


@settings(max_examples=200, deadline=None)
@given(
    source=st.integers(0, 255),
    sink=st.integers(0, 255),
    payload_type=st.integers(0, 0x3F) | st.sampled_from(list(PayloadType)),
    timestamp=st.integers(0, 2**64 - 1),
    payload=st.binary(max_size=900),
    sealed=st.booleans(),
    acked=st.booleans(),
)
def test_sender_common_media_chunk_is_the_general_encoding(
    *,
    source: int,
    sink: int,
    payload_type: int,
    timestamp: int,
    payload: bytes,
    sealed: bool,
    acked: bool,
) -> None:
    keys = KEYS if sealed else None
    sender = ChunkSender(C2S, keys)
    sender.media(source, sink, payload_type, timestamp, payload, now=0.0)  # notes the layout
    if acked:  # truncated values from now on
        sender.on_ack(AckChunk(0, C2S, source, sink, 0, 0), 0.01)
    raw = sender.media(source, sink, payload_type, timestamp, payload, now=0.02)
    width = (2, 4) if acked else (8, 8)
    chunk = MediaChunk(
        1,
        timestamp,
        payload_type,
        source,
        sink,
        payload,
        seq_bytes=width[0],
        timestamp_bytes=width[1],
    )
    assert raw == ch.encode_chunk(chunk, C2S, keys)
    envelope, envelope_bytes, _ = ch.decode_chunk_parts(raw)
    assert envelope == ch._walk_envelope(envelope_bytes, 0, len(envelope_bytes))
    if payload_type < 0x40:
        assert ch._common_envelope(envelope_bytes, 0, len(envelope_bytes)) is not None
    decoded = ch.decode_chunk(raw, C2S, keys, last_seq=1, last_timestamp=timestamp)
    assert decoded == chunk


@settings(max_examples=200, deadline=None)
@given(
    direction=st.sampled_from(list(Direction)),
    source=st.integers(0, 255),
    sink=st.integers(0, 255),
    acked_seq=st.integers(0, 2**64 - 1),
    delay=st.integers(0, 2**62 - 1),
    sealed=st.booleans(),
)
def test_sender_common_ack_is_the_general_encoding(
    *, direction: Direction, source: int, sink: int, acked_seq: int, delay: int, sealed: bool
) -> None:
    keys = KEYS if sealed else None
    raw = ChunkSender(C2S, keys).ack(direction, source, sink, acked_seq, delay)
    ack = AckChunk(0, direction, source, sink, acked_seq, delay)
    assert raw == ch.encode_chunk(ack, C2S, keys)
    envelope, envelope_bytes, rest = ch.decode_chunk_parts(raw)
    assert ch._common_envelope(envelope_bytes, 0, len(envelope_bytes)) == envelope
    package = ch.open_body(envelope, envelope_bytes, rest, None if keys is None else keys.c2s, 0)
    assert package is not None
    assert ch._common_ack(envelope, package) == ack
    assert ch.decode_chunk(raw, C2S, keys) == ack


def test_sender_uses_general_encoding_for_optional_fields_and_wide_payload_types() -> None:
    sender = ChunkSender(C2S, KEYS)
    for seq in range(3):
        raw = sender.media(1, 2, PayloadType.H264, 5, b"x", now=0.0, reference_frame=seq == 1)
        chunk = MediaChunk(seq, 5, PayloadType.H264, 1, 2, b"x", None, seq == 1)
        assert raw == ch.encode_chunk(chunk, C2S, KEYS)
    raw = sender.media(1, 3, PayloadType.OPUS, 5, b"x", now=0.0)
    raw = sender.media(1, 3, PayloadType.OPUS, 5, b"x", now=0.0, active_level=9)
    assert raw == ch.encode_chunk(
        MediaChunk(1, 5, PayloadType.OPUS, 1, 3, b"x", active_level=9), C2S, KEYS
    )


def _common_envelopes() -> list[bytes]:
    full = ch.encode_media_envelope(MediaChunk(7, 9, PayloadType.OPUS, 1, 2, b""))
    short = ch.encode_media_envelope(
        MediaChunk(7, 9, PayloadType.OPUS, 1, 2, b"", seq_bytes=2, timestamp_bytes=4)
    )
    control = ch.encode_control_envelope(7, 1)
    return [full, short, control]


@settings(max_examples=500, deadline=None)
@given(which=st.integers(0, 2), index=st.integers(0, 28), value=st.integers(0, 255))
def test_envelope_near_misses_go_to_the_walk(which: int, index: int, value: int) -> None:
    envelope = bytearray(_common_envelopes()[which])
    envelope[index % len(envelope)] = value
    common = ch._common_envelope(envelope, 0, len(envelope))
    try:
        walked = ch._walk_envelope(envelope, 0, len(envelope))
    except ChunkError:
        assert common is None
        return
    assert common is None or common == walked


@settings(max_examples=500, deadline=None)
@given(index=st.integers(0, 29), value=st.integers(0, 255), delay=st.integers(0, 2**62 - 1))
def test_ack_package_near_misses_go_to_the_walk(index: int, value: int, delay: int) -> None:
    package = bytearray(ch.encode_ack_package(AckChunk(3, C2S, 1, 2, 99, delay)))
    package[index % len(package)] = value
    envelope = ch.parse_envelope(ch.encode_control_envelope(3, 1))
    common = ch._common_ack(envelope, package)
    if common is None:
        return
    tlvs = dict(_walk_package(bytes(package)))
    assert len(tlvs) == 5
    assert ch.decode_varint(tlvs[ch.PackageType.ACK_DELAY]) == (
        common.delay_us,
        len(tlvs[ch.PackageType.ACK_DELAY]),
    )
    assert int.from_bytes(tlvs[ch.PackageType.SEQUENCE], "big") == common.acked_seq
    assert tlvs[ch.PackageType.SOURCE] == bytes((common.source,))
    assert tlvs[ch.PackageType.SINK] == bytes((common.sink,))


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=300), index=st.integers(0, 3), value=st.integers(0, 255))
def test_media_package_near_misses_go_to_the_walk(payload: bytes, index: int, value: int) -> None:
    package = bytearray(ch.encode_media_package(MediaChunk(0, 0, 1, 1, 1, payload)))
    package[index % len(package)] = value
    common = ch._common_media_payload(package)
    if common is not None:
        assert _walk_package(bytes(package)) == [(ch.PackageType.MEDIA, common)]


def test_one_pending_ack_is_taken_like_several() -> None:
    sender = ChunkSender(C2S, KEYS)
    rx = ChunkReceiver(C2S, KEYS)
    rx.receive(ch.frame([sender.media(1, 2, PayloadType.OPUS, 5, b"x", now=0.0)]), 2.0)
    assert rx.take_pending_acks(2.0125) == [PendingAck(C2S, 1, 2, 0, 12_500)]
    assert not rx.has_pending_acks
    rx.receive(ch.frame([sender.media(1, 2, PayloadType.OPUS, 25, b"x", now=0.0)]), 3.0)
    assert rx.take_pending_acks(2.5) == [PendingAck(C2S, 1, 2, 1, 0)]  # never negative
