"""Per-call media chunk sender and receiver state, sans-IO (profile section 8).

:class:`ChunkSender` turns codec frames into sealed chunks of one direction:
it numbers each stream (source, sink) from 0, sends full 8-byte sequence
numbers and timestamps until a chunk carrying them has been acknowledged and
2-byte / 4-byte truncated values after that, numbers control chunks in their
own space, and turns the acknowledgements it gets back into loss and
round-trip-time figures.

:class:`ChunkReceiver` takes the bodies or datagrams of the other direction,
unframes, opens and checks them, expands truncated values, drops duplicates,
and queues one acknowledgement per authenticated media chunk.  It never
raises: malformed and forged chunks are counted in its result and statistics.

Both are fed a clock (``now``, seconds, any monotonic origin, the same for
every call of one object); neither reads time or does I/O itself.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ript.protocol.chunks import (
    FULL_WIDTH,
    MAX_CHUNK_SIZE,
    SEQ_LIMIT,
    TRUNCATED_SEQ_WIDTH,
    TRUNCATED_TIMESTAMP_WIDTH,
    AckChunk,
    ChunkEncodeError,
    ChunkKind,
    MediaChunk,
    PayloadType,
    UnknownControlChunk,
    assemble_chunk,
    chunk_parts,
    control_from_package,
    decode_chunk_parts,
    expand,
    media_from_package,
    unframe_partial,
)
from ript.protocol.errors import RiptProtocolError
from ript.protocol.events import Direction
from ript.protocol.media_crypto import DIRECTION_CODES, MediaKeys
from ript.protocol.varint import VARINT_MAX, Buffer, encode_varint, varint_size

SEND_HISTORY = 1024
"""Chunks kept per stream (send time, sealed bytes) for RTT and re-sending: 10 s of 10 ms
chunks; acks of older chunks give no RTT and they are never re-sent."""

RESEND_WINDOW = 8.0
"""Seconds a sent media chunk is kept for re-sending; an older one is given up
(``SenderStats.given_up``).  Profile section 10 asks for 5 s; the 3 s more cover the
path's own recovery after a 5 s blip (QUIC's probe timer has backed off to 1-3 s by then,
docs/performance.md), so a 5 s blip loses nothing."""

REORDER_GAP = 3
"""A chunk is taken as lost, and re-sent, once a chunk this many later has been acked."""

RESEND_MIN_INTERVAL = 0.1
"""Seconds at least between two sends of one chunk (more when the RTT is longer)."""

REPLAY_WINDOW = 1024
"""Sequence numbers below the highest seen by more than this are dropped as too late."""

MAX_STREAMS = 64
"""Receive streams tracked per call; chunks of further streams are dropped."""

MAX_PENDING_ACKS = 1024
"""Acks waiting to be sent; beyond this the oldest are forgotten (and counted)."""

ACK_HOLD = 0.060
"""Pending acks travel alone when no media leaves within this many seconds."""

DATAGRAM_PAYLOAD = 1000
"""Largest framed chunk a sender emits, so that each chunk fits one datagram alone."""

_NOTHING: list[bytes] = []
"""What :meth:`ChunkSender.resends` returns when nothing is due (shared: never mutated)."""
_SEQ_MASK = (1 << (8 * TRUNCATED_SEQ_WIDTH)) - 1
_TIMESTAMP_MASK = (1 << (8 * TRUNCATED_TIMESTAMP_WIDTH)) - 1
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
_NO_CEILING = 1 << 64
"""The ceiling of a sender without reservations: above every sequence number."""

# The common chunks built without the general encoders (issue #12): the same bytes as
# chunks.encode_media_envelope / encode_control_envelope / encode_ack_package write for
# them (type order, 1-byte payload type, no optional field, no extension), packed at once.
_FULL_HEAD = struct.Struct(">HQHQ")
"""``01 08 seq | 02 08 timestamp`` of a media envelope with full values."""
_TRUNCATED_HEAD = struct.Struct(">HHHI")
"""``01 02 seq | 02 04 timestamp`` of a media envelope with truncated values."""
_ACK_ENVELOPE = struct.Struct(">HBHQHH")
"""``00 01 01 | 01 08 seq | 0b 02 0001``: the envelope of an acknowledgement."""
_ACK_PACKAGE = struct.Struct(">HBHBHBHQB")
"""``14 01 dir | 05 01 source | 06 01 sink | 01 08 seq | 15``, then the delay's length and value."""
_LENGTH_BYTES = tuple(bytes((n,)) for n in range(64))
"""A one-byte varint per value below 64 (envelope lengths, the delay's length)."""
_MEDIA_HEADS = tuple(
    b"\x04" + (bytes((n,)) if n < 0x40 else (n | 0x4000).to_bytes(2, "big"))
    for n in range(MAX_CHUNK_SIZE + 1)
)
"""``04 length`` of a media package, per payload length."""


class PendingAck(NamedTuple):
    """One received media chunk still to be acknowledged; ``delay_us`` since its receipt."""

    direction: Direction
    source: int
    sink: int
    seq: int
    delay_us: int


class ReceiveResult(NamedTuple):
    """What one body or datagram held.

    ``media`` are new, authenticated chunks with full sequence numbers and
    timestamps, in arrival order.  ``auth_failures`` counts forged or
    corrupted chunks, ``malformed`` chunks (or a framing error that lost the
    rest of the body), ``dropped`` authenticated media chunks not delivered
    (duplicate, too late, truncated without a reference, too many streams).
    """

    media: tuple[MediaChunk, ...] = ()
    acks: tuple[AckChunk, ...] = ()
    other_control: tuple[UnknownControlChunk, ...] = ()
    auth_failures: int = 0
    malformed: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class SenderStats:
    """Totals of one sender; RTTs in seconds (``None`` until an ack has given one)."""

    sent: int
    acked: int
    lost: int
    control_sent: int
    rtt_last: float | None
    rtt_min: float | None
    rtt_avg: float | None
    resent: int = 0
    """Media chunks sent again (each re-send counts) because a later one was acked first."""
    resent_chunks: int = 0
    """Media chunks sent more than once (each counted once, however often it was re-sent):
    the first sends the path lost, or whose acks it lost."""
    given_up: int = 0
    """Media chunks older than :data:`RESEND_WINDOW` and not re-sent any more, less those acked
    after all (a late ack): the chunks the sender takes as lost for good."""


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """Totals of one receiver; ``lost`` from sequence gaps, ``jitter_ms`` as RFC 3550 §6.4.1."""

    received: int
    duplicates: int
    late: int
    lost: int
    auth_failures: int
    malformed: int
    unexpandable: int
    stream_overflow: int
    acks_dropped: int
    control_received: int
    jitter_ms: float


class _SendStream:
    """Sequence counter, truncation permission and send history of one outgoing stream."""

    __slots__ = (
        "acked",
        "highest_acked",
        "history_acked",
        "history_chunk",
        "history_epoch",
        "history_resent",
        "history_seq",
        "history_time",
        "next_seq",
        "resend_from",
        "sent",
        "tail",
        "tail_type",
        "truncate",
    )

    def __init__(self, first_seq: int = 0) -> None:
        self.next_seq = first_seq
        self.truncate = False
        self.sent = 0
        self.acked = 0
        self.highest_acked = -1
        self.history_seq = [-1] * SEND_HISTORY
        self.history_time = [0.0] * SEND_HISTORY
        # The require_full_values epoch a full-value chunk was sent in; -1 if truncated.
        self.history_epoch = [-1] * SEND_HISTORY
        self.history_acked = [False] * SEND_HISTORY
        # The sealed chunk as sent (None once acked or given up) and when it last left.
        self.history_chunk: list[bytes | None] = [None] * SEND_HISTORY
        self.history_resent = [0.0] * SEND_HISTORY
        # Every chunk below this one is acked, given up or forgotten: re-sending looks from here.
        self.resend_from = first_seq
        # The envelope's end (payload type, source, sink) of the common layout for payload
        # type tail_type (None: not known yet, or no common layout), checked once.
        self.tail = b""
        self.tail_type: int | None = None


def _check_fits(chunk: bytes) -> None:
    size = len(chunk)
    if size > MAX_CHUNK_SIZE:
        raise ChunkEncodeError(f"chunk of {size} bytes exceeds the {MAX_CHUNK_SIZE}-byte limit")
    if varint_size(size) + size > DATAGRAM_PAYLOAD:
        raise ChunkEncodeError(
            f"chunk of {size} bytes does not fit a {DATAGRAM_PAYLOAD}-byte datagram"
        )


class ChunkSender:
    """Builds the sealed chunks one side sends in ``direction`` during one handler's call leg.

    ``keys`` is ``None`` when the call description has no ``media-key``.
    Encoding errors (a field out of range, a chunk over the size limit) raise
    :class:`~ript.protocol.chunks.ChunkEncodeError` and change no state.
    """

    def __init__(self, direction: Direction, keys: MediaKeys | None) -> None:
        self.direction = direction
        self._key = None if keys is None else keys.for_direction(direction)
        self._streams: dict[tuple[int, int], _SendStream] = {}
        self._control_seq = 0
        self._epoch = 0
        self._rtt_count = 0
        self._rtt_sum = 0.0
        self._rtt_min: float | None = None
        self._rtt_last: float | None = None
        self._unacked_since: float | None = None
        self._resent = 0
        self._resent_chunks = 0
        self._given_up = 0
        self._first_seq = 0
        self._ceiling = _NO_CEILING
        self._reserve: Callable[[int], int] | None = None

    def resume_numbering(self, first_seq: int, reserve: Callable[[int], int]) -> None:
        """Number every stream and the control chunks from ``first_seq``, within reservations.

        For a sender whose numbers must survive a restart of its process under the same
        key (the provider's): before a number at or above the last reservation is used,
        ``reserve(number)`` is called and returns the new ceiling (exclusive), which it must
        have made durable.  A restarted sender resumes at the last ceiling, so no nonce
        repeats; the numbers skipped look lost to the receiver.  Call before any chunk.
        """
        if self._streams or self._control_seq:
            raise ChunkEncodeError("the numbering of a sender in use cannot be resumed")
        self._first_seq = self._control_seq = first_seq
        self._reserve = reserve
        self._ceiling = first_seq  # the first number asks for a reservation

    @property
    def first_seq(self) -> int:
        """The first number of every stream (0, or where :meth:`resume_numbering` began)."""
        return self._first_seq

    def _reserve_from(self, number: int) -> None:
        reserve = self._reserve
        ceiling = number if reserve is None else reserve(number)
        if ceiling <= number:
            raise ChunkEncodeError(f"no sequence number at or above {number} is reserved")
        self._ceiling = ceiling

    def _seal(
        self, envelope: bytes, package: bytes, nonce_fields: tuple[int, int, int, int]
    ) -> bytes:
        if self._key is None:
            chunk = assemble_chunk(envelope, package)
        else:
            nonce = self._key.nonce(*nonce_fields)
            chunk = assemble_chunk(envelope, self._key.seal(nonce, envelope, package))
        _check_fits(chunk)
        return chunk

    def media(
        self,
        source: int,
        sink: int,
        payload_type: PayloadType | int,
        timestamp_ms: int,
        payload: bytes,
        *,
        now: float,
        active_level: int | None = None,
        reference_frame: bool | None = None,
        spatial_layer: int | None = None,
        temporal_layer: int | None = None,
        seq: int | None = None,
    ) -> bytes:
        """The next chunk of stream (``source``, ``sink``), numbered and sealed.

        Full values travel until this stream's full-value chunk is acked (and
        always on a reference frame, as the draft asks for intra frames).
        ``seq`` numbers the chunk instead of the stream's next number: a sender that
        mirrors another's numbering (the provider's in-order echo) may send out of
        order and leave holes.  It must be at least :attr:`first_seq` and never a
        number this stream used before (a nonce must not repeat); later chunks
        without ``seq`` continue after the highest number sent.
        """
        stream = self._streams.get((source, sink))
        new_stream = stream is None
        if stream is None:
            stream = _SendStream(self._first_seq)
        full = not stream.truncate or bool(reference_frame)
        if seq is None:
            seq = stream.next_seq
        elif seq < self._first_seq:
            raise ChunkEncodeError(f"sequence number {seq} is below {self._first_seq}")
        if seq >= self._ceiling:
            self._reserve_from(seq)
        if (
            stream.tail_type == payload_type
            and active_level is None
            and reference_frame is None
            and spatial_layer is None
            and temporal_layer is None
            and seq < SEQ_LIMIT
            and 0 <= timestamp_ms < SEQ_LIMIT
            and len(payload) <= MAX_CHUNK_SIZE
        ):
            # The common chunk (issue #12): the bytes chunk_parts and _seal would make.
            if full:
                envelope = _FULL_HEAD.pack(0x0108, seq, 0x0208, timestamp_ms) + stream.tail
            else:
                envelope = (
                    _TRUNCATED_HEAD.pack(
                        0x0102, seq & _SEQ_MASK, 0x0204, timestamp_ms & _TIMESTAMP_MASK
                    )
                    + stream.tail
                )
            package = _MEDIA_HEADS[len(payload)] + payload
            key = self._key
            if key is not None:
                package = key.seal(key.nonce(source, sink, 0, seq), envelope, package)
            encoded = b"".join((_LENGTH_BYTES[len(envelope)], envelope, package))
            _check_fits(encoded)
        else:
            chunk = MediaChunk(
                seq,
                timestamp_ms,
                payload_type,
                source,
                sink,
                payload,
                active_level,
                reference_frame,
                spatial_layer,
                temporal_layer,
                seq_bytes=FULL_WIDTH if full else TRUNCATED_SEQ_WIDTH,
                timestamp_bytes=FULL_WIDTH if full else TRUNCATED_TIMESTAMP_WIDTH,
            )
            encoded = self._media_chunk(stream, chunk)
        if new_stream:
            self._streams[(source, sink)] = stream
        slot = seq % SEND_HISTORY
        stream.history_seq[slot] = seq
        stream.history_time[slot] = now
        stream.history_epoch[slot] = self._epoch if full else -1
        stream.history_acked[slot] = False
        stream.history_chunk[slot] = encoded
        stream.history_resent[slot] = now
        if seq >= stream.next_seq:
            stream.next_seq = seq + 1
        stream.sent += 1
        if self._unacked_since is None:
            self._unacked_since = now
        return encoded

    def _media_chunk(self, stream: _SendStream, chunk: MediaChunk) -> bytes:
        """A media chunk through the general encoders (any field); notes the common tail."""
        encoded = self._seal(*chunk_parts(chunk))
        # The encoders accepted source, sink and payload type: a 1-byte payload type gives
        # the common layout, whose tail is kept for the next chunks of this stream.
        if 0 <= chunk.payload_type < 0x40:
            stream.tail = bytes((3, 1, chunk.payload_type, 5, 1, chunk.source, 6, 1, chunk.sink))
            stream.tail_type = chunk.payload_type
        return encoded

    def ack(
        self, acked_direction: Direction, source: int, sink: int, acked_seq: int, delay_us: int
    ) -> bytes:
        """A sealed acknowledgement control chunk with the next control sequence number."""
        seq = self._control_seq
        if seq >= self._ceiling:
            self._reserve_from(seq)
        if (
            0 <= source <= 0xFF
            and 0 <= sink <= 0xFF
            and 0 <= acked_seq < SEQ_LIMIT
            and 0 <= delay_us <= VARINT_MAX
            and seq < SEQ_LIMIT
            and source.__class__ is not bool
            and sink.__class__ is not bool
        ):
            # The common acknowledgement (issue #12): the bytes chunk_parts and _seal make.
            envelope = _ACK_ENVELOPE.pack(0x0001, 1, 0x0108, seq, 0x0B02, 1)
            delay = encode_varint(delay_us)
            package = b"".join(
                (
                    _ACK_PACKAGE.pack(
                        0x1401,
                        DIRECTION_CODES[acked_direction],
                        0x0501,
                        source,
                        0x0601,
                        sink,
                        0x0108,
                        acked_seq,
                        0x15,
                    ),
                    _LENGTH_BYTES[len(delay)],
                    delay,
                )
            )
            key = self._key
            if key is not None:
                package = key.seal(key.nonce(0, 0, 1, seq), envelope, package)
            encoded = b"".join((_LENGTH_BYTES[len(envelope)], envelope, package))
        else:
            chunk = AckChunk(seq, acked_direction, source, sink, acked_seq, delay_us)
            encoded = self._seal(*chunk_parts(chunk))
        self._control_seq = seq + 1
        return encoded

    def acks(self, pending: Iterable[PendingAck]) -> list[bytes]:
        """One acknowledgement chunk per entry of :meth:`ChunkReceiver.take_pending_acks`."""
        ack = self.ack
        # A PendingAck's fields are ack()'s arguments, in order.
        return [ack(*p) for p in pending]

    def on_ack(self, ack: AckChunk, now: float) -> float | None:
        """Take note of an ack of one of our chunks; return its RTT in seconds if known.

        Acks of another direction, of unknown streams, of chunks older than
        :data:`SEND_HISTORY`, and repeated acks are ignored (``None``).
        """
        if ack.direction is not self.direction:
            return None
        stream = self._streams.get((ack.source, ack.sink))
        if stream is None:
            return None
        slot = ack.acked_seq % SEND_HISTORY
        if stream.history_seq[slot] != ack.acked_seq or stream.history_acked[slot]:
            return None
        if stream.history_chunk[slot] is None:
            # Given up by resends() (only there is an unacked chunk's copy dropped), yet it
            # arrived: its ack was late or its first ack lost.  Not a loss after all, so the
            # count stays what the receiver's sequence gaps say (docs/performance.md, blips).
            self._given_up -= 1
        stream.history_acked[slot] = True
        stream.history_chunk[slot] = None
        stream.acked += 1
        stream.highest_acked = max(stream.highest_acked, ack.acked_seq)
        if stream.history_epoch[slot] == self._epoch:
            stream.truncate = True
        self._unacked_since = None
        if stream.history_resent[slot] != stream.history_time[slot]:
            return None  # sent more than once: which send the ack answers is unknown (Karn)
        rtt = max(0.0, now - stream.history_time[slot] - ack.delay_us / 1e6)
        self._rtt_last = rtt
        self._rtt_min = rtt if self._rtt_min is None else min(self._rtt_min, rtt)
        self._rtt_count += 1
        self._rtt_sum += rtt
        return rtt

    def resends(self, now: float) -> list[bytes]:
        """The sealed media chunks to send again now, oldest first (usually none).

        A chunk is re-sent when a chunk :data:`REORDER_GAP` or more later in its
        stream has been acked (the path works, this one did not arrive), it left
        at least :data:`RESEND_MIN_INTERVAL` (or 1.5 RTT) ago, and it was first
        sent less than :data:`RESEND_WINDOW` ago.  A path that was down for a few
        seconds thus gets its whole backlog back in one burst on the first acks
        after it returns, with the original sequence numbers and timestamps; the
        receiver's jitter buffer drops what is too late to play.  Called after
        acks are taken, so it costs one comparison per stream when nothing is
        missing.
        """
        out: list[bytes] = _NOTHING
        rtt = self._rtt_last
        interval = RESEND_MIN_INTERVAL if rtt is None else max(RESEND_MIN_INTERVAL, 1.5 * rtt)
        oldest = now - RESEND_WINDOW
        for stream in self._streams.values():
            limit = stream.highest_acked - REORDER_GAP
            seq = max(stream.resend_from, stream.next_seq - SEND_HISTORY)
            if seq > limit:
                continue
            advancing = True  # resend_from moves past chunks that need nothing more
            while seq <= limit:
                slot = seq % SEND_HISTORY
                chunk = stream.history_chunk[slot] if stream.history_seq[slot] == seq else None
                if chunk is not None:
                    if stream.history_time[slot] < oldest:
                        stream.history_chunk[slot] = None
                        self._given_up += 1
                    else:
                        advancing = False
                        if now - stream.history_resent[slot] >= interval:
                            if out is _NOTHING:
                                out = []
                            out.append(chunk)
                            if stream.history_resent[slot] == stream.history_time[slot]:
                                self._resent_chunks += 1  # its first re-send
                            stream.history_resent[slot] = now
                            self._resent += 1
                if advancing:
                    stream.resend_from = seq + 1
                seq += 1
        return out

    def require_full_values(self) -> None:
        """Send full values again until a chunk sent from now on is acked (handler change)."""
        self._epoch += 1
        for stream in self._streams.values():
            stream.truncate = False

    def rekey(self, keys: MediaKeys | None) -> None:
        """Seal with a new handler's ``media-key`` from now on, with full values until acked.

        Sequence numbers continue; a fresh key means no nonce repeats anyway.
        """
        self._key = None if keys is None else keys.for_direction(self.direction)
        self.require_full_values()
        for stream in self._streams.values():
            stream.resend_from = stream.next_seq  # sealed for the old leg: never re-sent

    @property
    def unacked_since(self) -> float | None:
        """When the first media chunk sent after the latest ack left (``None``: all acked)."""
        return self._unacked_since

    def stats(self) -> SenderStats:
        streams = self._streams.values()
        acked = sum(s.acked for s in streams)
        # Chunks up to the highest acked one that were never acked count as lost.
        lost = sum(max(0, s.highest_acked + 1 - s.acked) for s in streams)
        return SenderStats(
            sent=sum(s.sent for s in streams),
            acked=acked,
            lost=lost,
            control_sent=self._control_seq,
            rtt_last=self._rtt_last,
            rtt_min=self._rtt_min,
            rtt_avg=self._rtt_sum / self._rtt_count if self._rtt_count else None,
            resent=self._resent,
            resent_chunks=self._resent_chunks,
            given_up=self._given_up,
        )


class _ReceiveStream:
    """Expansion reference, duplicate window and counters of one incoming stream."""

    __slots__ = (
        "base",
        "duplicates",
        "highest",
        "highest_timestamp",
        "jitter",
        "last_arrival",
        "last_timestamp",
        "late",
        "received",
        "window",
    )

    def __init__(self, seq: int, timestamp: int) -> None:
        self.highest = seq
        self.highest_timestamp = timestamp
        self.base = seq
        self.window = 0  # bit i set: highest - i was received
        self.received = 0
        self.duplicates = 0
        self.late = 0
        self.jitter = 0.0
        self.last_arrival: float | None = None
        self.last_timestamp = timestamp

    def accept(self, seq: int, timestamp: int, now: float) -> bool:
        """Record a chunk; ``False`` if it is a duplicate or older than the window."""
        if seq > self.highest or self.received == 0:
            shift = seq - self.highest
            self.window = (
                ((self.window << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
            )
            self.highest = seq
            self.highest_timestamp = timestamp
        else:
            offset = self.highest - seq
            if offset >= REPLAY_WINDOW:
                self.late += 1
                return False
            bit = 1 << offset
            if self.window & bit:
                self.duplicates += 1
                return False
            self.window |= bit
            self.base = min(self.base, seq)
        self.received += 1
        if self.last_arrival is not None:
            transit_change = (now - self.last_arrival) * 1000.0 - (timestamp - self.last_timestamp)
            self.jitter += (abs(transit_change) - self.jitter) / 16.0
        self.last_arrival = now
        self.last_timestamp = timestamp
        return True


class ChunkReceiver:
    """Opens the chunks the peer sends in ``direction`` and tracks its streams."""

    def __init__(self, direction: Direction, keys: MediaKeys | None) -> None:
        self.direction = direction
        self._key = None if keys is None else keys.for_direction(direction)
        self._streams: dict[tuple[int, int], _ReceiveStream] = {}
        self._pending: deque[tuple[int, int, int, float]] = deque(maxlen=MAX_PENDING_ACKS)
        self._auth_failures = 0
        self._malformed = 0
        self._unexpandable = 0
        self._stream_overflow = 0
        self._acks_dropped = 0
        self._control_received = 0
        self._last_receipt: float | None = None

    def receive(self, data: Buffer, now: float) -> ReceiveResult:
        """Process one body or datagram received at ``now``; never raises."""
        chunks, framing_error = unframe_partial(data)
        malformed = 0 if framing_error is None else 1
        auth_failures = dropped = 0
        media: list[MediaChunk] = []
        acks: list[AckChunk] = []
        other: list[UnknownControlChunk] = []
        key = self._key
        for raw in chunks:
            try:
                envelope, envelope_bytes, rest = decode_chunk_parts(raw)
                if envelope.kind is ChunkKind.CONTROL:
                    # open_body() inlined (per chunk): the nonce of a control chunk.
                    package = (
                        rest
                        if key is None
                        else key.open(key.nonce(0, 0, 1, envelope.seq), envelope_bytes, rest)
                    )
                    if package is None:
                        auth_failures += 1
                        continue
                    control = control_from_package(envelope, package)
                    if isinstance(control, AckChunk):
                        acks.append(control)
                    else:
                        other.append(control)
                    continue
                stream = self._streams.get((envelope.source, envelope.sink))
                if stream is None and (
                    envelope.seq_bytes != FULL_WIDTH or envelope.timestamp_bytes != FULL_WIDTH
                ):
                    # No full value seen yet for this stream: nothing to expand against.
                    self._unexpandable += 1
                    dropped += 1
                    continue
                seq = envelope.seq
                timestamp = envelope.timestamp
                if stream is not None:
                    seq = expand(seq, envelope.seq_bytes, stream.highest)
                    timestamp = expand(
                        timestamp, envelope.timestamp_bytes, stream.highest_timestamp
                    )
                package = (
                    rest
                    if key is None
                    else key.open(
                        key.nonce(envelope.source, envelope.sink, 0, seq), envelope_bytes, rest
                    )
                )
                if package is None:
                    auth_failures += 1
                    continue
                chunk = media_from_package(envelope, package, seq, timestamp)
            except RiptProtocolError:
                malformed += 1
                continue
            if stream is None:
                if len(self._streams) >= MAX_STREAMS:
                    self._stream_overflow += 1
                    dropped += 1
                    continue
                stream = _ReceiveStream(seq, timestamp)
                self._streams[(envelope.source, envelope.sink)] = stream
            if len(self._pending) == MAX_PENDING_ACKS:
                self._acks_dropped += 1
            # Duplicates are acked too: the first ack may have been the one lost.
            self._pending.append((envelope.source, envelope.sink, seq, now))
            self._last_receipt = now
            if stream.accept(seq, timestamp, now):
                media.append(chunk)
            else:
                dropped += 1
        self._auth_failures += auth_failures
        self._malformed += malformed
        self._control_received += len(acks) + len(other)
        return ReceiveResult(
            tuple(media), tuple(acks), tuple(other), auth_failures, malformed, dropped
        )

    def take_pending_acks(self, now: float) -> list[PendingAck]:
        """Every media chunk received since the last call, to be acked; clears the queue."""
        direction = self.direction
        queue = self._pending
        if len(queue) == 1:  # the usual case: the chunk of the tick before
            source, sink, seq, at = queue.popleft()
            delay = round((now - at) * 1e6)
            delay = 0 if delay < 0 else delay if delay <= VARINT_MAX else VARINT_MAX
            return [PendingAck(direction, source, sink, seq, delay)]
        pending = [
            PendingAck(
                direction, source, sink, seq, min(max(0, round((now - at) * 1e6)), VARINT_MAX)
            )
            for source, sink, seq, at in queue
        ]
        queue.clear()
        return pending

    @property
    def has_pending_acks(self) -> bool:
        return bool(self._pending)

    @property
    def ack_deadline(self) -> float | None:
        """When pending acks must leave alone if no media has carried them (``None``: none)."""
        return self._pending[0][3] + ACK_HOLD if self._pending else None

    @property
    def last_receipt(self) -> float | None:
        """When the latest authenticated media chunk arrived (for the 5 s media timeout)."""
        return self._last_receipt

    def rekey(self, keys: MediaKeys | None) -> None:
        """A new handler's leg: new key, streams start afresh, old pending acks are dropped."""
        self._key = None if keys is None else keys.for_direction(self.direction)
        self._streams.clear()
        self._pending.clear()

    def stats(self) -> ReceiverStats:
        streams = self._streams.values()
        return ReceiverStats(
            received=sum(s.received for s in streams),
            duplicates=sum(s.duplicates for s in streams),
            late=sum(s.late for s in streams),
            lost=sum(max(0, s.highest - s.base + 1 - s.received) for s in streams),
            auth_failures=self._auth_failures,
            malformed=self._malformed,
            unexpandable=self._unexpandable,
            stream_overflow=self._stream_overflow,
            acks_dropped=self._acks_dropped,
            control_received=self._control_received,
            jitter_ms=max((s.jitter for s in streams), default=0.0),
        )
