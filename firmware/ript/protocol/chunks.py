"""Media and control chunks: framing, TLV layout, truncation (profile section 8).

A body or datagram is a sequence of ``length (varint) | chunk``.  A chunk is::

    envelope-length (varint) | envelope | tag (tag_length bytes, only with a key) | ciphertext

where the envelope (sent in clear, the AEAD's associated data) and the package
(sealed into the ciphertext, or sent as is without a key) are lists of
``type (varint) | length (varint) | value`` TLVs.

This module holds the values (:class:`MediaChunk`, :class:`AckChunk`,
:class:`UnknownControlChunk`), their encoders and decoders, the framing
(:func:`frame`, :func:`unframe`, :func:`pack_datagrams`) and the
sequence-number and timestamp truncation rule (:func:`truncate`,
:func:`expand`).  Malformed input raises :class:`ChunkError` only; a package
that fails authentication is not an error but an :class:`AuthFailure` value.
The per-stream state (sequence numbers, acks, statistics) lives in
:mod:`ript.protocol.media_streams`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ript.protocol.errors import LocalProtocolError, RemoteProtocolError
from ript.protocol.events import Direction
from ript.protocol.media_crypto import DIRECTION_CODES, DirectionKey, MediaKeys
from ript.protocol.varint import (
    VARINT_MAX,
    Buffer,
    VarintError,
    VarintRangeError,
    decode_varint,
    encode_varint,
    varint_size,
)

MAX_CHUNK_SIZE = 1000
"""No chunk may be longer (profile section 8)."""

DATAGRAM_LIMIT = 1000
"""No datagram (framed chunks) may be longer: aioquic stalls behind one that does not fit."""

MEDIA_BODY_LIMIT = 64 * 1024
"""No media request or response body may be longer (profile section 1): a re-sent backlog
of several seconds is split into bodies of at most this size (:func:`pack_datagrams`)."""

SEQ_LIMIT = 1 << 64
"""Sequence numbers and timestamps are unsigned 64-bit values."""

FULL_WIDTH = 8
TRUNCATED_SEQ_WIDTH = 2
TRUNCATED_TIMESTAMP_WIDTH = 4
PAYLOAD_TYPE_LIMIT = 1 << 32
ACTIVE_LEVEL_MAX = 127


class ChunkError(RemoteProtocolError):
    """Bytes received from the peer are not a well-formed body, chunk, envelope or package."""


class ChunkEncodeError(LocalProtocolError):
    """This side asked to encode a chunk the format does not allow (size, range, duplicate)."""


class ChunkKind(enum.IntEnum):
    MEDIA = 0
    CONTROL = 1


class EnvelopeType(enum.IntEnum):
    """TLV types of the envelope."""

    KIND = 0
    SEQUENCE = 1
    TIMESTAMP = 2
    PAYLOAD_TYPE = 3
    SOURCE = 5
    SINK = 6
    REFERENCE_FRAME = 7
    SPATIAL_LAYER = 8
    TEMPORAL_LAYER = 9
    ACTIVE_LEVEL = 10
    CONTROL_TYPE = 11


class PackageType(enum.IntEnum):
    """TLV types of the package (media payload, or the fields of an acknowledgement)."""

    SEQUENCE = 1
    MEDIA = 4
    SOURCE = 5
    SINK = 6
    DIRECTION = 20
    ACK_DELAY = 21


class ControlType(enum.IntEnum):
    ACKNOWLEDGEMENT = 1


class PayloadType(enum.IntEnum):
    """Codec of a media chunk; values not listed here are kept as plain ints."""

    OPUS = 1
    PCMU = 2
    PCMA = 3
    TELEPHONE_EVENT = 4
    CN = 5
    G729 = 6
    H264 = 96
    AV1 = 97


Tlv = tuple[int, bytes]
"""An extension TLV this implementation does not interpret: ``(type, value)``."""

ENVELOPE_TYPES = frozenset(EnvelopeType)
MEDIA_PACKAGE_TYPES = frozenset({PackageType.MEDIA})
ACK_PACKAGE_TYPES = frozenset(
    {
        PackageType.DIRECTION,
        PackageType.SOURCE,
        PackageType.SINK,
        PackageType.SEQUENCE,
        PackageType.ACK_DELAY,
    }
)
_MEDIA_ONLY = frozenset(
    {
        EnvelopeType.TIMESTAMP,
        EnvelopeType.PAYLOAD_TYPE,
        EnvelopeType.SOURCE,
        EnvelopeType.SINK,
        EnvelopeType.REFERENCE_FRAME,
        EnvelopeType.SPATIAL_LAYER,
        EnvelopeType.TEMPORAL_LAYER,
        EnvelopeType.ACTIVE_LEVEL,
    }
)
_ONE_BYTE = frozenset(
    {
        EnvelopeType.KIND,
        EnvelopeType.SOURCE,
        EnvelopeType.SINK,
        EnvelopeType.REFERENCE_FRAME,
        EnvelopeType.SPATIAL_LAYER,
        EnvelopeType.TEMPORAL_LAYER,
        EnvelopeType.ACTIVE_LEVEL,
    }
)
_KINDS = (ChunkKind.MEDIA, ChunkKind.CONTROL)
_MEDIA_REQUIRED = (
    EnvelopeType.TIMESTAMP,
    EnvelopeType.PAYLOAD_TYPE,
    EnvelopeType.SOURCE,
    EnvelopeType.SINK,
)


def _bits(types: Iterable[int]) -> int:
    return sum(1 << t for t in set(types))


_ONE_BYTE_BITS = _bits(_ONE_BYTE)
_MEDIA_ONLY_BITS = _bits(_MEDIA_ONLY)
_MEDIA_REQUIRED_BITS = _bits(_MEDIA_REQUIRED)
_LAST_ENVELOPE_TYPE = max(EnvelopeType)
_UNUSED_ENVELOPE_TYPE = 4  # the package's media type; undefined in an envelope
_ENVELOPE_NAMES: dict[int, str] = {
    EnvelopeType.KIND: "kind",
    EnvelopeType.SEQUENCE: "sequence number",
    EnvelopeType.TIMESTAMP: "timestamp",
    EnvelopeType.PAYLOAD_TYPE: "payload type",
    EnvelopeType.SOURCE: "source id",
    EnvelopeType.SINK: "sink id",
    EnvelopeType.REFERENCE_FRAME: "reference frame flag",
    EnvelopeType.SPATIAL_LAYER: "spatial layer",
    EnvelopeType.TEMPORAL_LAYER: "temporal layer",
    EnvelopeType.ACTIVE_LEVEL: "active level",
    EnvelopeType.CONTROL_TYPE: "control type",
}
_PACKAGE_NAMES: dict[int, str] = {
    PackageType.SEQUENCE: "sequence number",
    PackageType.MEDIA: "media payload",
    PackageType.SOURCE: "source id",
    PackageType.SINK: "sink id",
    PackageType.DIRECTION: "direction",
    PackageType.ACK_DELAY: "delay",
}
_PAYLOAD_TYPES: dict[int, PayloadType] = {pt.value: pt for pt in PayloadType}
_DIRECTIONS_BY_CODE: dict[int, Direction] = {code: d for d, code in DIRECTION_CODES.items()}


def payload_type_of(value: int) -> PayloadType | int:
    """The :class:`PayloadType` member for ``value``, or ``value`` itself if unknown."""
    return _PAYLOAD_TYPES.get(value, value)


# --------------------------------------------------------------------------- values

# The values made per chunk are NamedTuples, not frozen dataclasses: just as immutable and
# comparable, but built in one tuple allocation, where a frozen dataclass's __init__ calls
# object.__setattr__ once per field (14 fields: ~3 µs a MediaChunk, issue #12).


class MediaChunk(NamedTuple):
    """One media chunk of a stream (direction, ``source``, ``sink``).

    ``seq`` and ``timestamp`` (ms, wall clock of the first sample) are always
    the full 64-bit values; ``seq_bytes`` and ``timestamp_bytes`` say how many
    low bytes travel on the wire (8 = full, the sender's choice otherwise).
    A chunk decoded without a reference for expansion holds the received low
    part.  ``extra_envelope`` / ``extra_package`` keep TLVs of unknown types.
    """

    seq: int
    timestamp: int
    payload_type: PayloadType | int
    source: int
    sink: int
    payload: bytes
    active_level: int | None = None
    reference_frame: bool | None = None
    spatial_layer: int | None = None
    temporal_layer: int | None = None
    extra_envelope: tuple[Tlv, ...] = ()
    extra_package: tuple[Tlv, ...] = ()
    seq_bytes: int = FULL_WIDTH
    timestamp_bytes: int = FULL_WIDTH


class AckChunk(NamedTuple):
    """Control chunk acknowledging one media chunk (control type 1).

    ``seq`` is the control chunk's own sequence number; ``direction``,
    ``source``, ``sink`` and ``acked_seq`` (full value) name the acknowledged
    chunk; ``delay_us`` is the time from its receipt to this ack.
    """

    seq: int
    direction: Direction
    source: int
    sink: int
    acked_seq: int
    delay_us: int
    extra_envelope: tuple[Tlv, ...] = ()
    extra_package: tuple[Tlv, ...] = ()


@dataclass(frozen=True, slots=True)
class UnknownControlChunk:
    """Control chunk of a type this implementation does not know, kept whole."""

    seq: int
    control_type: int
    package: tuple[Tlv, ...] = ()
    extra_envelope: tuple[Tlv, ...] = ()


Chunk = MediaChunk | AckChunk | UnknownControlChunk


class AuthFailure(NamedTuple):
    """A chunk whose package did not authenticate: to be dropped and counted, never played."""

    kind: ChunkKind
    source: int
    sink: int
    seq: int


class Envelope(NamedTuple):
    """A decoded envelope; ``seq`` and ``timestamp`` are the received (maybe truncated) values."""

    kind: ChunkKind
    seq: int
    seq_bytes: int
    timestamp: int = 0
    timestamp_bytes: int = 0
    payload_type: PayloadType | int = 0
    source: int = 0
    sink: int = 0
    reference_frame: bool | None = None
    spatial_layer: int | None = None
    temporal_layer: int | None = None
    active_level: int | None = None
    control_type: int = 0
    extra: tuple[Tlv, ...] = ()


# --------------------------------------------------------------------------- truncation


def _check_width(nbytes: int) -> None:
    if not 1 <= nbytes <= FULL_WIDTH:
        raise ChunkEncodeError(f"a truncated value has 1..8 bytes, not {nbytes}")


def truncate(value: int, nbytes: int) -> int:
    """The low ``nbytes`` bytes of the 64-bit ``value``."""
    _check_width(nbytes)
    if not 0 <= value < SEQ_LIMIT:
        raise ChunkEncodeError(f"value {value} is not an unsigned 64-bit number")
    return value & ((1 << (8 * nbytes)) - 1)


def expand(truncated: int, nbytes: int, last: int) -> int:
    """The 64-bit value whose low ``nbytes`` bytes are ``truncated``, nearest to ``last``.

    RFC 9000 appendix A.3 generalised to any width, with ``last`` (the
    reference value of the stream) in place of the expected packet number.
    When two candidates are equally near, the larger wins; results stay
    within 0 .. 2^64-1.
    """
    _check_width(nbytes)
    window = 1 << (8 * nbytes)
    if not 0 <= truncated < window:
        raise ChunkEncodeError(f"{truncated} does not fit in {nbytes} bytes")
    if nbytes == FULL_WIDTH:
        return truncated
    half = window >> 1
    candidate = (last & ~(window - 1)) | truncated
    if candidate + half <= last and candidate + window < SEQ_LIMIT:
        return candidate + window
    if candidate > last + half and candidate >= window:
        return candidate - window
    return candidate


# --------------------------------------------------------------------------- TLV helpers


def _varint(buf: Buffer, pos: int, what: str, end: int | None = None) -> tuple[int, int]:
    """Decode a varint that must end by ``end`` (default: the end of ``buf``)."""
    try:
        value, after = decode_varint(buf, pos)
    except VarintError:
        raise ChunkError(f"{what} at offset {pos} is cut short") from None
    if end is not None and after > end:
        raise ChunkError(f"{what} at offset {pos} is cut short")
    return value, after


def _split_tlvs(buf: Buffer, pos: int, end: int, where: str) -> list[tuple[int, int, int]]:
    """``(type, value start, value end)`` of each TLV in ``buf[pos:end]``; no type twice."""
    tlvs: list[tuple[int, int, int]] = []
    seen_small = 0  # bit t set: type t < 64 seen; a set only for rare larger types
    seen_large: set[int] | None = None
    while pos < end:
        start = pos
        # Every type and length defined here fits a one-byte varint: skip the call.
        tlv_type = buf[pos]
        if tlv_type < 0x40:
            pos += 1
        else:
            tlv_type, pos = _varint(buf, pos, f"{where} TLV type", end)
        if pos >= end:
            raise ChunkError(f"{where} TLV type {tlv_type} at offset {start} has no length")
        length = buf[pos]
        if length < 0x40:
            pos += 1
        else:
            length, pos = _varint(buf, pos, f"{where} TLV length", end)
        stop = pos + length
        if stop > end:
            raise ChunkError(
                f"{where} TLV type {tlv_type} at offset {start} claims {length} byte(s), "
                f"only {end - pos} remain"
            )
        if tlv_type < 64:
            bit = 1 << tlv_type
            if seen_small & bit:
                raise ChunkError(f"{where} TLV type {tlv_type} at offset {start} appears twice")
            seen_small |= bit
        else:
            if seen_large is None:
                seen_large = set()
            if tlv_type in seen_large:
                raise ChunkError(f"{where} TLV type {tlv_type} at offset {start} appears twice")
            seen_large.add(tlv_type)
        tlvs.append((tlv_type, pos, stop))
        pos = stop
    return tlvs


def decode_tlvs(buf: Buffer) -> list[Tlv]:
    """Every ``(type, value)`` of a TLV list; raise :class:`ChunkError` if malformed."""
    return [(t, bytes(buf[s:e])) for t, s, e in _split_tlvs(buf, 0, len(buf), "TLV list")]


def encode_tlv(tlv_type: int, value: bytes) -> bytes:
    return encode_varint(tlv_type) + encode_varint(len(value)) + value


def _encode_extras(extras: Iterable[Tlv], known: frozenset[int], where: str) -> bytes:
    seen: set[int] = set()
    out = bytearray()
    for tlv_type, value in extras:
        if tlv_type in known:
            raise ChunkEncodeError(f"extension TLV type {tlv_type} is a known {where} type")
        if tlv_type in seen:
            raise ChunkEncodeError(f"extension TLV type {tlv_type} appears twice in the {where}")
        seen.add(tlv_type)
        try:
            out += encode_tlv(tlv_type, value)
        except VarintRangeError as exc:
            raise ChunkEncodeError(f"extension TLV type {tlv_type}: {exc}") from None
    return bytes(out)


def _uint(value: int, nbytes: int, what: str) -> bytes:
    """The low ``nbytes`` bytes of a 64-bit value, big endian."""
    if not 0 <= value < SEQ_LIMIT:
        raise ChunkEncodeError(f"{what} {value} is not an unsigned 64-bit number")
    if not 1 <= nbytes <= FULL_WIDTH:
        raise ChunkEncodeError(f"{what} is sent in 1..8 bytes, not {nbytes}")
    return (value & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "big")


def _byte(value: int, what: str, limit: int = 255) -> bytes:
    if isinstance(value, bool) or not 0 <= value <= limit:
        raise ChunkEncodeError(f"{what} must be 0..{limit}, not {value}")
    return bytes((value,))


# --------------------------------------------------------------------------- encoding


def encode_media_envelope(chunk: MediaChunk) -> bytes:
    """The envelope of a media chunk: types 1, 2, 3, 5, 6, then 7..10 if set, then extensions.

    Kind is left out (absent means media).
    """
    if not 0 <= chunk.payload_type < PAYLOAD_TYPE_LIMIT:
        raise ChunkEncodeError(f"payload type {chunk.payload_type} does not fit in 32 bits")
    seq = _uint(chunk.seq, chunk.seq_bytes, "sequence number")
    timestamp = _uint(chunk.timestamp, chunk.timestamp_bytes, "timestamp")
    pt = encode_varint(chunk.payload_type)
    parts = [
        b"\x01" + bytes((len(seq),)) + seq,
        b"\x02" + bytes((len(timestamp),)) + timestamp,
        b"\x03" + bytes((len(pt),)) + pt,
        b"\x05\x01" + _byte(chunk.source, "source id"),
        b"\x06\x01" + _byte(chunk.sink, "sink id"),
    ]
    if chunk.reference_frame is not None:
        parts.append(b"\x07\x01\x01" if chunk.reference_frame else b"\x07\x01\x00")
    if chunk.spatial_layer is not None:
        parts.append(b"\x08\x01" + _byte(chunk.spatial_layer, "spatial layer"))
    if chunk.temporal_layer is not None:
        parts.append(b"\x09\x01" + _byte(chunk.temporal_layer, "temporal layer"))
    if chunk.active_level is not None:
        parts.append(b"\x0a\x01" + _byte(chunk.active_level, "active level", ACTIVE_LEVEL_MAX))
    if chunk.extra_envelope:
        parts.append(_encode_extras(chunk.extra_envelope, ENVELOPE_TYPES, "envelope"))
    return b"".join(parts)


def encode_media_package(chunk: MediaChunk) -> bytes:
    """The package of a media chunk: type 4 (the codec output), then extensions."""
    package = b"\x04" + encode_varint(len(chunk.payload)) + chunk.payload
    if chunk.extra_package:
        package += _encode_extras(chunk.extra_package, MEDIA_PACKAGE_TYPES, "package")
    return package


def encode_control_envelope(seq: int, control_type: int, extra: Iterable[Tlv] = ()) -> bytes:
    """The envelope of a control chunk: kind 1, full 8-byte sequence number, control type."""
    if not 0 <= control_type <= 0xFFFF:
        raise ChunkEncodeError(f"control type must be 0..65535, not {control_type}")
    envelope = (
        b"\x00\x01\x01\x01\x08"
        + _uint(seq, FULL_WIDTH, "control sequence number")
        + b"\x0b\x02"
        + control_type.to_bytes(2, "big")
    )
    return envelope + _encode_extras(extra, ENVELOPE_TYPES, "envelope")


def encode_ack_package(ack: AckChunk) -> bytes:
    """The package of an acknowledgement: types 20, 5, 6, 1, 21, then extensions."""
    if not 0 <= ack.delay_us <= VARINT_MAX:
        raise ChunkEncodeError(f"ack delay {ack.delay_us} µs is outside 0 .. 2^62-1")
    delay = encode_varint(ack.delay_us)
    package = (
        b"\x14\x01"
        + bytes((DIRECTION_CODES[ack.direction],))
        + b"\x05\x01"
        + _byte(ack.source, "acked source id")
        + b"\x06\x01"
        + _byte(ack.sink, "acked sink id")
        + b"\x01\x08"
        + _uint(ack.acked_seq, FULL_WIDTH, "acked sequence number")
        + b"\x15"
        + bytes((len(delay),))
        + delay
    )
    if ack.extra_package:
        package += _encode_extras(ack.extra_package, ACK_PACKAGE_TYPES, "package")
    return package


def assemble_chunk(envelope: bytes, body: bytes) -> bytes:
    """``envelope-length | envelope | body`` where body is ``tag | ciphertext`` or the package."""
    chunk = encode_varint(len(envelope)) + envelope + body
    if len(chunk) > MAX_CHUNK_SIZE:
        raise ChunkEncodeError(
            f"chunk of {len(chunk)} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit"
        )
    return chunk


def chunk_parts(chunk: Chunk) -> tuple[bytes, bytes, tuple[int, int, int, int]]:
    """``(envelope, package, nonce fields (source, sink, kind, full seq))`` of a chunk value."""
    if isinstance(chunk, MediaChunk):
        envelope = encode_media_envelope(chunk)
        return (
            envelope,
            encode_media_package(chunk),
            (chunk.source, chunk.sink, ChunkKind.MEDIA, chunk.seq),
        )
    if isinstance(chunk, AckChunk):
        envelope = encode_control_envelope(
            chunk.seq, ControlType.ACKNOWLEDGEMENT, chunk.extra_envelope
        )
        return envelope, encode_ack_package(chunk), (0, 0, ChunkKind.CONTROL, chunk.seq)
    if chunk.control_type == ControlType.ACKNOWLEDGEMENT:
        raise ChunkEncodeError("an acknowledgement must be an AckChunk, not UnknownControlChunk")
    envelope = encode_control_envelope(chunk.seq, chunk.control_type, chunk.extra_envelope)
    package = _encode_extras(chunk.package, frozenset(), "package")
    return envelope, package, (0, 0, ChunkKind.CONTROL, chunk.seq)


def encode_chunk(chunk: Chunk, direction: Direction, keys: MediaKeys | None = None) -> bytes:
    """The bytes of one chunk sent in ``direction``, sealed when ``keys`` are given."""
    envelope, package, (source, sink, kind, seq) = chunk_parts(chunk)
    if keys is None:
        return assemble_chunk(envelope, package)
    key = keys.for_direction(direction)
    return assemble_chunk(envelope, key.seal(key.nonce(source, sink, kind, seq), envelope, package))


# --------------------------------------------------------------------------- common layouts

# What this implementation sends (and so, nearly always, receives) has one fixed layout per
# kind: the encoders above write the TLVs in type order with these widths.  The parsers
# match these layouts with one struct call and fall back to the general TLV walk for
# anything else (other widths or order, optional fields, extensions), which gives the same
# result for these bytes: the fast path only saves the walk's Python (issue #12).
# Each struct alternates a fixed ``type | length`` pair (a big-endian H) with its value.
_MEDIA_FULL = struct.Struct(">HQHQHBHBHB")
"""Media envelope, full values: seq (8 bytes), timestamp (8), payload type, source, sink."""
_MEDIA_FULL_HEADS = (0x0108, 0x0208, 0x0301, 0x0501, 0x0601)
_MEDIA_TRUNCATED = struct.Struct(">HHHIHBHBHB")
"""Media envelope, truncated values: seq (2 bytes), timestamp (4), payload type, source, sink."""
_MEDIA_TRUNCATED_HEADS = (0x0102, 0x0204, 0x0301, 0x0501, 0x0601)
_CONTROL = struct.Struct(">HBHQHH")
"""Control envelope: kind 1, seq (8 bytes), control type."""
_ACK_PACKAGE = struct.Struct(">HBHBHBHQBB")
"""Ack package up to the delay's value: direction, source, sink, acked seq, delay's type/length."""
_ACK_PACKAGE_HEADS = (0x1401, 0x0501, 0x0601, 0x0108)
_VARINT_MASKS = (0x3F, 0x3FFF, 0x3FFF_FFFF, 0x3FFF_FFFF_FFFF_FFFF)


_MEDIA_LAYOUTS = {
    _MEDIA_TRUNCATED.size: (_MEDIA_TRUNCATED, _MEDIA_TRUNCATED_HEADS, 2, 4),
    _MEDIA_FULL.size: (_MEDIA_FULL, _MEDIA_FULL_HEADS, 8, 8),
}
"""The media envelopes of the common layouts by length: struct, TLV heads, seq and
timestamp widths (truncated: 2 and 4 bytes; full: 8 and 8)."""


def _common_envelope(buf: Buffer, pos: int, end: int) -> Envelope | None:
    """The envelope at ``buf[pos:end]`` if it has one of the common layouts, else ``None``."""
    length = end - pos
    media = _MEDIA_LAYOUTS.get(length)
    if media is not None:
        layout, heads, seq_bytes, timestamp_bytes = media
        t = layout.unpack_from(buf, pos)
        if t[0::2] == heads and t[5] < 0x40:
            pt = t[5]
            return Envelope(
                ChunkKind.MEDIA,
                t[1],
                seq_bytes,
                t[3],
                timestamp_bytes,
                _PAYLOAD_TYPES.get(pt, pt),
                t[7],
                t[9],
            )
    elif length == 17:
        t = _CONTROL.unpack_from(buf, pos)
        if t[0] == 0x0001 and t[1] == 1 and t[2] == 0x0108 and t[4] == 0x0B02:
            return Envelope(ChunkKind.CONTROL, t[3], 8, control_type=t[5])
    return None


def _common_media_payload(package: Buffer) -> bytes | None:
    """The payload of a package that is exactly one media TLV, else ``None``."""
    size = len(package)
    if size < 2 or package[0] != PackageType.MEDIA:
        return None
    first = package[1]
    if first < 0x40:
        start, length = 2, first
    elif first < 0x80 and size >= 3:
        start, length = 3, ((first & 0x3F) << 8) | package[2]
    else:
        return None
    if start + length != size:
        return None
    return bytes(package[start:])


def _common_ack(envelope: Envelope, package: Buffer) -> AckChunk | None:
    """The acknowledgement in a package of the common layout (no extension), else ``None``."""
    size = len(package)
    if size < 22:
        return None
    t = _ACK_PACKAGE.unpack_from(package, 0)
    if t[0:8:2] != _ACK_PACKAGE_HEADS or t[8] != PackageType.ACK_DELAY or t[9] != size - 21:
        return None
    first = package[21]
    prefix = first >> 6
    if 1 << prefix != size - 21:
        return None  # the delay's varint does not fill its TLV: the walk reports it
    direction = _DIRECTIONS_BY_CODE.get(t[1])
    if direction is None:
        return None
    delay = first if prefix == 0 else int.from_bytes(package[21:], "big") & _VARINT_MASKS[prefix]
    return AckChunk(envelope.seq, direction, t[3], t[5], t[7], delay, envelope.extra)


# --------------------------------------------------------------------------- decoding


def _parse_envelope(buf: Buffer, pos: int, end: int) -> Envelope:
    common = _common_envelope(buf, pos, end)
    if common is not None:
        return common
    return _walk_envelope(buf, pos, end)


def _walk_envelope(buf: Buffer, pos: int, end: int) -> Envelope:
    """The general envelope parser: any order and width, optional fields, extensions."""
    kind = ChunkKind.MEDIA
    seq = seq_bytes = timestamp = timestamp_bytes = control_type = source = sink = 0
    payload_type: PayloadType | int = 0
    reference_frame: bool | None = None
    spatial_layer = temporal_layer = active_level = None
    extra: list[Tlv] = []
    present = 0  # bit t set: envelope type t was present
    for tlv_type, start, stop in _split_tlvs(buf, pos, end, "envelope"):
        length = stop - start
        if tlv_type > _LAST_ENVELOPE_TYPE or tlv_type == _UNUSED_ENVELOPE_TYPE:
            extra.append((tlv_type, bytes(buf[start:stop])))
            continue
        present |= 1 << tlv_type
        if (1 << tlv_type) & _ONE_BYTE_BITS:
            if length != 1:
                raise ChunkError(
                    f"envelope {_ENVELOPE_NAMES[tlv_type]} at offset {start} "
                    f"has {length} bytes, not 1"
                )
            value = buf[start]
            if tlv_type == EnvelopeType.KIND:
                if value > 1:
                    raise ChunkError(f"unknown chunk kind {value} at offset {start}")
                kind = _KINDS[value]
            elif tlv_type == EnvelopeType.SOURCE:
                source = value
            elif tlv_type == EnvelopeType.SINK:
                sink = value
            elif tlv_type == EnvelopeType.REFERENCE_FRAME:
                if value > 1:
                    raise ChunkError(f"reference frame flag at offset {start} is {value}, not 0/1")
                reference_frame = value == 1
            elif tlv_type == EnvelopeType.SPATIAL_LAYER:
                spatial_layer = value
            elif tlv_type == EnvelopeType.TEMPORAL_LAYER:
                temporal_layer = value
            else:
                if value > ACTIVE_LEVEL_MAX:
                    raise ChunkError(f"active level at offset {start} is {value}, not 0..127")
                active_level = value
        elif tlv_type in (EnvelopeType.SEQUENCE, EnvelopeType.TIMESTAMP):
            if not 1 <= length <= FULL_WIDTH:
                raise ChunkError(
                    f"envelope {_ENVELOPE_NAMES[tlv_type]} at offset {start} "
                    f"has {length} bytes, not 1..8"
                )
            value = int.from_bytes(buf[start:stop], "big")
            if tlv_type == EnvelopeType.SEQUENCE:
                seq, seq_bytes = value, length
            else:
                timestamp, timestamp_bytes = value, length
        elif tlv_type == EnvelopeType.PAYLOAD_TYPE:
            value, after = _varint(buf, start, "payload type", stop) if length else (0, start)
            if length == 0 or after != stop:
                raise ChunkError(f"payload type at offset {start} is not exactly one varint")
            if value >= PAYLOAD_TYPE_LIMIT:
                raise ChunkError(f"payload type {value} at offset {start} exceeds 32 bits")
            payload_type = payload_type_of(value)
        else:
            if length != 2:
                raise ChunkError(f"control type at offset {start} has {length} bytes, not 2")
            control_type = int.from_bytes(buf[start:stop], "big")

    if not present & (1 << EnvelopeType.SEQUENCE):
        raise ChunkError("envelope has no sequence number")
    if kind is ChunkKind.MEDIA:
        if present & _MEDIA_REQUIRED_BITS != _MEDIA_REQUIRED_BITS:
            missing = min(t for t in _MEDIA_REQUIRED if not present & (1 << t))
            raise ChunkError(f"media chunk envelope has no {_ENVELOPE_NAMES[missing]}")
        if present & (1 << EnvelopeType.CONTROL_TYPE):
            raise ChunkError("media chunk envelope carries a control type")
    else:
        if not present & (1 << EnvelopeType.CONTROL_TYPE):
            raise ChunkError("control chunk envelope has no control type")
        if present & _MEDIA_ONLY_BITS:
            name = _ENVELOPE_NAMES[min(t for t in _MEDIA_ONLY if present & (1 << t))]
            raise ChunkError(f"control chunk envelope carries a media field ({name})")
        if seq_bytes != FULL_WIDTH:
            raise ChunkError(f"control chunk sequence number has {seq_bytes} bytes, not 8")
    return Envelope(
        kind,
        seq,
        seq_bytes,
        timestamp,
        timestamp_bytes,
        payload_type,
        source,
        sink,
        reference_frame,
        spatial_layer,
        temporal_layer,
        active_level,
        control_type,
        tuple(extra),
    )


def parse_envelope(envelope: Buffer) -> Envelope:
    """Decode the bytes of one envelope; raise :class:`ChunkError` if malformed."""
    return _parse_envelope(envelope, 0, len(envelope))


def decode_chunk_parts(chunk: Buffer) -> tuple[Envelope, memoryview, memoryview]:
    """``(envelope, envelope bytes, rest)`` of one chunk; rest is ``tag | ciphertext`` or package.

    Raises :class:`ChunkError` when the chunk is too long or its envelope malformed.
    """
    if len(chunk) > MAX_CHUNK_SIZE:
        raise ChunkError(f"chunk of {len(chunk)} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit")
    view = memoryview(chunk)
    if view and view[0] < 0x40:  # every envelope this side makes: a one-byte length
        length, pos = view[0], 1
    else:
        length, pos = _varint(view, 0, "envelope length")
    end = pos + length
    if end > len(view):
        raise ChunkError(
            f"envelope length {length} at offset 0 runs past the {len(view)}-byte chunk"
        )
    envelope = _common_envelope(view, pos, end)
    if envelope is None:
        envelope = _walk_envelope(view, pos, end)
    return envelope, view[pos:end], view[end:]


def media_from_package(envelope: Envelope, package: Buffer, seq: int, timestamp: int) -> MediaChunk:
    """Combine a media envelope and its opened package; ``seq``/``timestamp`` already expanded."""
    payload = _common_media_payload(package)
    extra: tuple[Tlv, ...] = ()
    if payload is None:
        found: list[Tlv] = []
        for tlv_type, start, stop in _split_tlvs(package, 0, len(package), "package"):
            if tlv_type == PackageType.MEDIA:
                payload = bytes(package[start:stop])
            else:
                found.append((tlv_type, bytes(package[start:stop])))
        if payload is None:
            raise ChunkError("media chunk package has no media payload (type 4)")
        extra = tuple(found)
    return MediaChunk(
        seq,
        timestamp,
        envelope.payload_type,
        envelope.source,
        envelope.sink,
        payload,
        envelope.active_level,
        envelope.reference_frame,
        envelope.spatial_layer,
        envelope.temporal_layer,
        envelope.extra,
        extra,
        envelope.seq_bytes,
        envelope.timestamp_bytes,
    )


def control_from_package(envelope: Envelope, package: Buffer) -> AckChunk | UnknownControlChunk:
    """Decode the package of a control chunk according to its control type."""
    if envelope.control_type != ControlType.ACKNOWLEDGEMENT:
        return UnknownControlChunk(
            envelope.seq, envelope.control_type, tuple(decode_tlvs(package)), envelope.extra
        )
    common = _common_ack(envelope, package)
    if common is not None:
        return common
    direction: Direction | None = None
    source = sink = acked_seq = delay = -1
    extra: list[Tlv] = []
    for tlv_type, start, stop in _split_tlvs(package, 0, len(package), "package"):
        length = stop - start
        if tlv_type == PackageType.ACK_DELAY:
            delay, after = (
                _varint(package, start, "acknowledgement delay", stop) if length else (0, -1)
            )
            if after != stop:
                raise ChunkError(f"acknowledgement delay at offset {start} is not one varint")
        elif tlv_type == PackageType.SEQUENCE:
            if length != FULL_WIDTH:
                raise ChunkError(f"acknowledged sequence number has {length} bytes, not 8")
            acked_seq = int.from_bytes(package[start:stop], "big")
        elif tlv_type in ACK_PACKAGE_TYPES:
            name = _PACKAGE_NAMES[tlv_type]
            if length != 1:
                raise ChunkError(f"acknowledgement {name} has {length} bytes, not 1")
            value = package[start]
            if tlv_type == PackageType.SOURCE:
                source = value
            elif tlv_type == PackageType.SINK:
                sink = value
            else:
                direction = _DIRECTIONS_BY_CODE.get(value)
                if direction is None:
                    raise ChunkError(f"acknowledgement direction is {value}, not 0 or 1")
        else:
            extra.append((tlv_type, bytes(package[start:stop])))
    if direction is None or min(source, sink, acked_seq, delay) < 0:
        missing = [
            _PACKAGE_NAMES[t]
            for t, v in (
                (PackageType.DIRECTION, 0 if direction is not None else -1),
                (PackageType.SOURCE, source),
                (PackageType.SINK, sink),
                (PackageType.SEQUENCE, acked_seq),
                (PackageType.ACK_DELAY, delay),
            )
            if v < 0
        ]
        raise ChunkError(f"acknowledgement package lacks {', '.join(missing)}")
    return AckChunk(
        envelope.seq, direction, source, sink, acked_seq, delay, envelope.extra, tuple(extra)
    )


def open_body(
    envelope: Envelope, envelope_bytes: Buffer, rest: Buffer, key: DirectionKey | None, seq: int
) -> Buffer | None:
    """The package of a chunk: ``rest`` itself without a key, else opened (``None`` = forged)."""
    if key is None:
        return rest
    if envelope.kind is ChunkKind.MEDIA:
        nonce = key.nonce(envelope.source, envelope.sink, ChunkKind.MEDIA, seq)
    else:
        nonce = key.nonce(0, 0, ChunkKind.CONTROL, seq)
    return key.open(nonce, envelope_bytes, rest)


def decode_chunk(
    chunk: Buffer,
    direction: Direction,
    keys: MediaKeys | None = None,
    *,
    last_seq: int = 0,
    last_timestamp: int = 0,
) -> Chunk | AuthFailure:
    """Decode one chunk received in ``direction`` (stateless).

    Truncated sequence numbers and timestamps are expanded against
    ``last_seq`` / ``last_timestamp``; with the default 0 the received low part
    is kept.  Raises :class:`ChunkError` if malformed; returns
    :class:`AuthFailure` if the package does not authenticate.
    """
    envelope, envelope_bytes, rest = decode_chunk_parts(chunk)
    seq = expand(envelope.seq, envelope.seq_bytes, last_seq)
    key = None if keys is None else keys.for_direction(direction)
    package = open_body(envelope, envelope_bytes, rest, key, seq)
    if package is None:
        return AuthFailure(envelope.kind, envelope.source, envelope.sink, seq)
    if envelope.kind is ChunkKind.CONTROL:
        return control_from_package(envelope, package)
    timestamp = expand(envelope.timestamp, envelope.timestamp_bytes, last_timestamp)
    return media_from_package(envelope, package, seq, timestamp)


# --------------------------------------------------------------------------- framing


_FRAME_LENGTHS = tuple(encode_varint(n) for n in range(MAX_CHUNK_SIZE + 1))
"""The varint of every chunk length a chunk may have."""


def frame(chunks: Iterable[Buffer]) -> bytes:
    """A body or datagram: each chunk preceded by its length as a varint."""
    out: list[Buffer] = []
    for chunk in chunks:
        size = len(chunk)
        out.append(_FRAME_LENGTHS[size] if size <= MAX_CHUNK_SIZE else encode_varint(size))
        out.append(chunk)
    return b"".join(out)


def unframe_partial(body: Buffer) -> tuple[list[memoryview], ChunkError | None]:
    """The chunks of a body up to the first framing error, and that error (or ``None``).

    A chunk length that runs past the body cannot be resynchronised, so the
    rest of the body is lost; the chunks before it are still good.
    """
    view = memoryview(body)
    size = len(view)
    chunks: list[memoryview] = []
    pos = 0
    while pos < size:
        first = view[pos]
        if first < 0x40:
            length, start = first, pos + 1
        elif first < 0x80 and pos + 1 < size:  # the usual chunk: 64..16383 bytes
            length, start = ((first & 0x3F) << 8) | view[pos + 1], pos + 2
        else:
            try:
                length, start = decode_varint(view, pos)
            except VarintError:
                return chunks, ChunkError(f"chunk length at offset {pos} is cut short")
        end = start + length
        if end > size:
            return chunks, ChunkError(
                f"chunk at offset {pos} claims {length} bytes, only {size - start} remain"
            )
        chunks.append(view[start:end])
        pos = end
    return chunks, None


def unframe(body: Buffer) -> list[memoryview]:
    """The chunks of a body or datagram; raise :class:`ChunkError` on a framing error."""
    chunks, error = unframe_partial(body)
    if error is not None:
        raise error
    return chunks


def pack_datagrams(chunks: Sequence[Buffer], limit: int = DATAGRAM_LIMIT) -> list[bytes]:
    """Frame ``chunks`` in order into as few datagrams of at most ``limit`` bytes as fit.

    A datagram is only split between chunks.  Raises :class:`ChunkEncodeError`
    when one framed chunk alone exceeds ``limit``.
    """
    datagrams: list[bytes] = []
    current = bytearray()
    for chunk in chunks:
        framed_size = varint_size(len(chunk)) + len(chunk)
        if framed_size > limit:
            raise ChunkEncodeError(
                f"a framed chunk of {framed_size} bytes cannot fit a {limit}-byte datagram"
            )
        if len(current) + framed_size > limit:
            datagrams.append(bytes(current))
            current = bytearray()
        current += encode_varint(len(chunk))
        current += chunk
    if current:
        datagrams.append(bytes(current))
    return datagrams
