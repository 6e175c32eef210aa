"""Tests of the per-call chunk sender and receiver (ript.protocol.media_streams)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol import chunks as ch
from ript.protocol import media_streams as ms
from ript.protocol.chunks import AckChunk, ChunkEncodeError, MediaChunk, PayloadType
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender, PendingAck

C2S = Direction.C2S
S2C = Direction.S2C
TS = 1_795_341_600_000
OPUS = b"\xfc" + bytes(79)
KEYS = MediaKeys.from_material(bytes(range(16)), bytes(range(12)), 8)
OTHER_KEYS = MediaKeys.from_material(bytes(16), bytes(12), 8)


def widths(raw: bytes) -> tuple[int, int]:
    envelope, _, _ = ch.decode_chunk_parts(raw)
    return envelope.seq_bytes, envelope.timestamp_bytes


class Call:
    """The phone's C2S sender and S2C receiver facing the provider's mirror images."""

    def __init__(self, keys: MediaKeys | None = KEYS) -> None:
        self.phone_tx = ChunkSender(C2S, keys)
        self.phone_rx = ChunkReceiver(S2C, keys)
        self.provider_tx = ChunkSender(S2C, keys)
        self.provider_rx = ChunkReceiver(C2S, keys)

    def phone_sends(self, seq_hint: int, now: float, source: int = 1, sink: int = 1) -> bytes:
        return self.phone_tx.media(
            source, sink, PayloadType.OPUS, TS + 20 * seq_hint, OPUS, now=now
        )

    def provider_acks(self, now: float) -> None:
        """Provider acks what it got; the acks reach the phone, which notes them."""
        acks = self.provider_tx.acks(self.provider_rx.take_pending_acks(now))
        for datagram in ch.pack_datagrams(acks):
            result = self.phone_rx.receive(datagram, now)
            for ack in result.acks:
                self.phone_tx.on_ack(ack, now)


# --------------------------------------------------------------------------- sending


def test_sequence_numbers_per_stream_from_zero_with_full_values() -> None:
    tx = ChunkSender(C2S, KEYS)
    sent = [tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=i * 0.02) for i in range(3)]
    other = tx.media(2, 1, PayloadType.PCMU, TS, b"\xff" * 160, now=0.1)
    assert [widths(raw) for raw in [*sent, other]] == [(8, 8)] * 4
    decoded = [ch.decode_chunk(raw, C2S, KEYS) for raw in [*sent, other]]
    assert [(c.seq, c.source) for c in decoded if isinstance(c, MediaChunk)] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (0, 2),
    ]
    assert tx.stats().sent == 4


def test_a_chunk_numbered_by_the_caller_mirrors_another_senders_numbers() -> None:
    # The provider's in-order echo: out of order and with a hole, then on from the highest.
    tx = ChunkSender(S2C, KEYS)
    tx.resume_numbering(1000, lambda number: number + 100)
    assert tx.first_seq == 1000
    rx = ChunkReceiver(S2C, KEYS)
    sent = [
        tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=0, seq=1000 + i) for i in (1, 0, 3)
    ]
    sent.append(tx.media(1, 1, PayloadType.OPUS, TS + 80, OPUS, now=0))
    got = [c for raw in sent for c in rx.receive(ch.frame([raw]), 0.1).media]
    assert [(c.seq, c.timestamp) for c in got] == [
        (1001, TS + 20),
        (1000, TS),
        (1003, TS + 60),
        (1004, TS + 80),
    ]
    assert rx.stats().auth_failures == 0 and tx.stats().sent == 4
    with pytest.raises(ChunkEncodeError, match="below 1000"):
        tx.media(1, 1, PayloadType.OPUS, TS, OPUS, now=0, seq=999)


def test_truncation_starts_once_a_full_value_chunk_is_acked() -> None:
    call = Call()
    first = call.phone_sends(0, 0.0)
    second = call.phone_sends(1, 0.02)
    assert call.provider_rx.receive(ch.frame([first, second]), 0.03).media[0].seq == 0
    assert widths(call.phone_sends(2, 0.04)) == (8, 8)  # no ack yet
    call.provider_acks(0.05)
    third = call.phone_sends(3, 0.06)
    assert widths(third) == (2, 4)
    assert len(third) == len(first) - 10  # 6 bytes of seq, 4 of timestamp saved
    result = call.provider_rx.receive(ch.frame([third]), 0.07)
    assert [(m.seq, m.timestamp, m.seq_bytes, m.timestamp_bytes) for m in result.media] == [
        (3, TS + 60, 2, 4)
    ]


def test_streams_truncate_independently() -> None:
    call = Call()
    call.provider_rx.receive(ch.frame([call.phone_sends(0, 0.0, 1, 1)]), 0.01)
    call.provider_acks(0.02)
    assert widths(call.phone_sends(1, 0.03, 1, 1)) == (2, 4)
    assert widths(call.phone_sends(0, 0.04, 1, 2)) == (8, 8)


def test_require_full_values_until_a_new_full_chunk_is_acked() -> None:
    tx = ChunkSender(C2S, None)

    def send(i: int) -> bytes:
        return tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=float(i))

    def ack(seq: int) -> None:
        tx.on_ack(AckChunk(seq, C2S, 1, 1, seq, 0), 10.0)

    assert widths(send(0)) == (8, 8)
    assert widths(send(1)) == (8, 8)
    ack(0)
    assert widths(send(2)) == (2, 4)
    tx.require_full_values()  # e.g. the call moved to another handler
    assert widths(send(3)) == (8, 8)
    ack(1)  # a full value, but sent before the change: proves nothing to the new handler
    ack(2)  # truncated
    assert widths(send(4)) == (8, 8)
    ack(3)
    assert widths(send(5)) == (2, 4)


def test_reference_frames_always_carry_full_values() -> None:
    tx = ChunkSender(C2S, None)
    tx.media(1, 1, PayloadType.H264, TS, b"x", now=0.0)
    tx.on_ack(AckChunk(0, C2S, 1, 1, 0, 0), 0.1)
    assert widths(tx.media(1, 1, PayloadType.H264, TS + 33, b"x", now=0.2)) == (2, 4)
    intra = tx.media(1, 1, PayloadType.H264, TS + 66, b"x", now=0.3, reference_frame=True)
    assert widths(intra) == (8, 8)
    decoded = ch.decode_chunk(intra, C2S)
    assert isinstance(decoded, MediaChunk)
    assert decoded.reference_frame is True


def test_optional_media_fields_are_sent() -> None:
    tx = ChunkSender(S2C, KEYS)
    raw = tx.media(
        2, 3, 4242, TS, b"v", now=0.0, active_level=33, spatial_layer=1, temporal_layer=2
    )
    decoded = ch.decode_chunk(raw, S2C, KEYS)
    assert decoded == MediaChunk(0, TS, 4242, 2, 3, b"v", 33, None, 1, 2)


def test_control_chunks_have_their_own_full_sequence_numbers() -> None:
    tx = ChunkSender(S2C, KEYS)
    tx.media(1, 1, PayloadType.OPUS, TS, OPUS, now=0.0)
    acks = tx.acks([PendingAck(C2S, 1, 1, 40, 100), PendingAck(C2S, 1, 1, 41, 50)])
    decoded = [ch.decode_chunk(raw, S2C, KEYS) for raw in acks]
    assert decoded == [AckChunk(0, C2S, 1, 1, 40, 100), AckChunk(1, C2S, 1, 1, 41, 50)]
    assert [widths(raw)[0] for raw in acks] == [8, 8]
    assert tx.ack(C2S, 1, 1, 42, 0) != acks[0]
    assert tx.stats().control_sent == 3


def test_oversized_chunk_is_refused_without_using_a_sequence_number() -> None:
    tx = ChunkSender(C2S, KEYS)
    with pytest.raises(ChunkEncodeError, match="1000"):
        tx.media(1, 1, PayloadType.OPUS, TS, bytes(990), now=0.0)
    with pytest.raises(ChunkEncodeError, match="source id"):
        tx.media(300, 1, PayloadType.OPUS, TS, OPUS, now=0.0)
    raw = tx.media(1, 1, PayloadType.OPUS, TS, OPUS, now=0.0)
    decoded = ch.decode_chunk(raw, C2S, KEYS)
    assert isinstance(decoded, MediaChunk)
    assert decoded.seq == 0
    assert tx.stats().sent == 1
    assert tx.unacked_since == 0.0


def test_largest_chunk_fits_one_datagram() -> None:
    tx = ChunkSender(C2S, None)
    payload = bytes(1000)
    while True:
        try:
            raw = tx.media(1, 1, PayloadType.OPUS, TS, payload, now=0.0)
            break
        except ChunkEncodeError:
            payload = payload[:-1]
    assert len(raw) == 998
    assert ch.pack_datagrams([raw]) == [ch.frame([raw])]


def test_nonces_never_repeat_within_a_call_leg() -> None:
    tx = ChunkSender(C2S, KEYS)
    nonces = []
    for i in range(300):
        for source, sink in ((1, 1), (1, 2)):
            raw = tx.media(source, sink, PayloadType.OPUS, TS + 20 * i, OPUS, now=i * 0.02)
            if i == 0:
                tx.on_ack(AckChunk(0, C2S, source, sink, 0, 0), 0.01)
            chunk = ch.decode_chunk(raw, C2S, KEYS, last_seq=i, last_timestamp=TS + 20 * i)
            assert isinstance(chunk, MediaChunk)
            nonces.append(KEYS.c2s.nonce(source, sink, 0, chunk.seq))
        ack = ch.decode_chunk(tx.ack(S2C, 1, 1, i, 0), C2S, KEYS)
        assert isinstance(ack, AckChunk)
        nonces.append(KEYS.c2s.nonce(0, 0, 1, ack.seq))
    assert len(set(nonces)) == len(nonces) == 900


def test_rekey_seals_with_the_new_key_and_sends_full_values() -> None:
    call = Call()
    call.provider_rx.receive(ch.frame([call.phone_sends(0, 0.0)]), 0.01)
    call.provider_acks(0.02)
    assert widths(call.phone_sends(1, 0.03)) == (2, 4)
    call.phone_tx.rekey(OTHER_KEYS)
    raw = call.phone_sends(2, 0.04)
    assert widths(raw) == (8, 8)
    assert call.provider_rx.receive(ch.frame([raw]), 0.05).auth_failures == 1
    fresh = ChunkReceiver(C2S, OTHER_KEYS)
    assert [m.seq for m in fresh.receive(ch.frame([raw]), 0.05).media] == [2]
    call.phone_tx.rekey(None)
    assert isinstance(ch.decode_chunk(call.phone_sends(3, 0.06), C2S), MediaChunk)


# --------------------------------------------------------------------------- acks and RTT


def test_on_ack_gives_rtt_without_the_peers_hold_time() -> None:
    tx = ChunkSender(C2S, None)
    tx.media(1, 1, PayloadType.OPUS, TS, OPUS, now=10.0)
    tx.media(1, 1, PayloadType.OPUS, TS + 20, OPUS, now=10.02)
    rtt = tx.on_ack(AckChunk(0, C2S, 1, 1, 1, 30_000), 10.12)
    assert rtt == pytest.approx(0.07)
    assert tx.on_ack(AckChunk(1, C2S, 1, 1, 1, 0), 10.2) is None  # repeated
    assert tx.on_ack(AckChunk(2, S2C, 1, 1, 0, 0), 10.2) is None  # other direction
    assert tx.on_ack(AckChunk(3, C2S, 9, 9, 0, 0), 10.2) is None  # unknown stream
    assert tx.on_ack(AckChunk(4, C2S, 1, 1, 7, 0), 10.2) is None  # never sent
    assert tx.on_ack(AckChunk(5, C2S, 1, 1, 0, 500_000), 10.3) == 0.0  # clamped


def test_acks_beyond_the_send_history_give_no_rtt() -> None:
    tx = ChunkSender(C2S, None)
    for i in range(ms.SEND_HISTORY + 1):
        tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=i * 0.02)
    assert tx.on_ack(AckChunk(0, C2S, 1, 1, 0, 0), 9.0) is None
    assert tx.on_ack(AckChunk(1, C2S, 1, 1, ms.SEND_HISTORY, 0), 9.0) is not None


def test_sender_stats() -> None:
    tx = ChunkSender(C2S, None)
    assert tx.stats() == ms.SenderStats(0, 0, 0, 0, None, None, None)
    for i in range(10):
        tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=i * 0.02)
    for seq, rtt in ((0, 0.05), (1, 0.03), (2, 0.04), (3, 0.05), (4, 0.06), (7, 0.02)):
        tx.on_ack(AckChunk(seq, C2S, 1, 1, seq, 0), seq * 0.02 + rtt)
    stats = tx.stats()
    assert (stats.sent, stats.acked, stats.lost) == (10, 6, 2)  # 5 and 6 not acked, 8+ pending
    assert stats.rtt_last == pytest.approx(0.02)
    assert stats.rtt_min == pytest.approx(0.02)
    assert stats.rtt_avg == pytest.approx(0.25 / 6)


def unacked_since(tx: ChunkSender) -> float | None:
    return tx.unacked_since  # a call, so that mypy does not keep an earlier narrowing


def test_unacked_since_tracks_the_oldest_unacknowledged_send() -> None:
    tx = ChunkSender(C2S, None)
    assert unacked_since(tx) is None
    tx.media(1, 1, PayloadType.OPUS, TS, OPUS, now=1.0)
    tx.media(1, 1, PayloadType.OPUS, TS + 20, OPUS, now=1.02)
    assert unacked_since(tx) == 1.0
    tx.on_ack(AckChunk(0, C2S, 1, 1, 0, 0), 1.05)
    assert unacked_since(tx) is None
    tx.media(1, 1, PayloadType.OPUS, TS + 40, OPUS, now=1.06)
    assert unacked_since(tx) == 1.06


# --------------------------------------------------------------------------- receiving


def sealed(chunk: ch.Chunk, direction: Direction = C2S, keys: MediaKeys | None = KEYS) -> bytes:
    return ch.encode_chunk(chunk, direction, keys)


def m(seq: int, timestamp: int, nbytes: tuple[int, int] = (8, 8), source: int = 1) -> MediaChunk:
    return MediaChunk(
        seq,
        timestamp,
        PayloadType.OPUS,
        source,
        1,
        OPUS,
        seq_bytes=nbytes[0],
        timestamp_bytes=nbytes[1],
    )


def test_receiver_expands_across_the_16_and_32_bit_boundaries() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    base_ts = (TS | 0xFFFF_FFFF) - 30  # 31 ms before the low 32 bits wrap
    sent = [m(65534, base_ts)] + [m(65534 + i, base_ts + 20 * i, (2, 4)) for i in range(1, 5)]
    result = rx.receive(ch.frame(sealed(c) for c in sent), 1.0)
    assert [(c.seq, c.timestamp) for c in result.media] == [(c.seq, c.timestamp) for c in sent]
    assert result.media[-1].seq == 0x1_0002
    assert result.media[-1].timestamp >> 32 == (base_ts >> 32) + 1


def test_truncated_chunk_on_an_unknown_stream_is_dropped() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    result = rx.receive(ch.frame([sealed(m(5, TS, (2, 4)))]), 1.0)
    assert (result.media, result.dropped) == ((), 1)
    assert rx.stats().unexpandable == 1
    assert not rx.has_pending_acks
    result = rx.receive(ch.frame([sealed(m(5, TS, (8, 4)))]), 1.0)
    assert result.dropped == 1
    assert rx.stats().unexpandable == 2


def test_duplicates_are_dropped_counted_and_still_acked() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    one = sealed(m(0, TS))
    result = rx.receive(ch.frame([one, one]), 1.0)
    assert ([c.seq for c in result.media], result.dropped) == ([0], 1)
    assert rx.receive(ch.frame([one]), 1.1).dropped == 1
    assert rx.stats().duplicates == 2
    assert len(rx.take_pending_acks(1.2)) == 3


def test_reordering_gaps_and_late_chunks() -> None:
    rx = ChunkReceiver(C2S, None)
    for seq in (10, 11, 14):
        rx.receive(ch.frame([sealed(m(seq, TS + 20 * seq), keys=None)]), seq * 0.02)
    assert rx.stats().lost == 2
    rx.receive(ch.frame([sealed(m(12, TS + 240), keys=None)]), 0.5)
    assert rx.stats().lost == 1
    far = 14 + ms.REPLAY_WINDOW + 5
    rx.receive(ch.frame([sealed(m(far, TS + 20 * far), keys=None)]), 30.0)
    result = rx.receive(ch.frame([sealed(m(13, TS + 260), keys=None)]), 30.1)
    assert (result.media, result.dropped) == ((), 1)
    stats = rx.stats()
    assert (stats.received, stats.late, stats.duplicates) == (5, 1, 0)
    assert stats.lost == far - 10 + 1 - 5


def test_forged_and_wrong_direction_chunks_are_counted_not_delivered() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    good = sealed(m(0, TS))
    forged = bytearray(sealed(m(1, TS + 20)))
    forged[-1] ^= 0x10
    wrong_direction = sealed(m(2, TS + 40), S2C)
    wrong_key = sealed(m(3, TS + 60), keys=OTHER_KEYS)
    clear = sealed(m(4, TS + 80), keys=None)
    result = rx.receive(ch.frame([good, bytes(forged), wrong_direction, wrong_key, clear]), 1.0)
    assert [c.seq for c in result.media] == [0]
    assert (result.auth_failures, result.malformed) == (4, 0)
    assert rx.stats().auth_failures == 4
    assert len(rx.take_pending_acks(1.0)) == 1  # forged chunks are never acked


def test_forged_chunks_do_not_move_the_expansion_reference() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    rx.receive(ch.frame([sealed(m(0, TS))]), 1.0)
    forged = bytearray(sealed(m(70000, TS)))
    forged[-1] ^= 1
    assert rx.receive(ch.frame([bytes(forged)]), 1.01).auth_failures == 1
    # Against the forged 70000, low bits 5000 would expand to 70536 (and fail to open).
    result = rx.receive(ch.frame([sealed(m(5000, TS + 20, (2, 4)))]), 1.02)
    assert ([c.seq for c in result.media], result.auth_failures) == ([5000], 0)


def test_malformed_chunk_is_skipped_and_framing_error_drops_only_the_rest() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    body = ch.frame([sealed(m(0, TS)), b"\x05garbage", sealed(m(1, TS + 20))])
    result = rx.receive(body, 1.0)
    assert ([c.seq for c in result.media], result.malformed) == ([0, 1], 1)
    body = ch.frame([sealed(m(2, TS + 40))]) + b"\x40"
    result = rx.receive(body, 1.1)
    assert ([c.seq for c in result.media], result.malformed) == ([2], 1)
    assert rx.stats().malformed == 2


def test_control_chunks_are_sorted_into_acks_and_others() -> None:
    rx = ChunkReceiver(S2C, KEYS)
    ack = AckChunk(0, C2S, 1, 1, 5, 100)
    other = ch.UnknownControlChunk(1, 77, ((1, b"x"),))
    forged = bytearray(sealed(AckChunk(2, C2S, 1, 1, 6, 0), S2C))
    forged[-2] ^= 4
    body = ch.frame([sealed(ack, S2C), sealed(other, S2C), bytes(forged)])
    result = rx.receive(body, 1.0)
    assert result.acks == (ack,)
    assert result.other_control == (other,)
    assert result.auth_failures == 1
    assert not rx.has_pending_acks  # control chunks are never acknowledged
    assert rx.stats().control_received == 2


def deadline(rx: ChunkReceiver) -> float | None:
    return rx.ack_deadline  # calls, so that mypy does not keep an earlier narrowing


def pending(rx: ChunkReceiver) -> bool:
    return rx.has_pending_acks


def test_pending_acks_delay_and_deadline() -> None:
    rx = ChunkReceiver(S2C, None)
    assert deadline(rx) is None
    assert rx.take_pending_acks(0.0) == []
    rx.receive(ch.frame([sealed(m(0, TS), S2C, None)]), 2.0)
    rx.receive(ch.frame([sealed(m(1, TS + 20), S2C, None)]), 2.02)
    assert pending(rx)
    assert deadline(rx) == pytest.approx(2.0 + ms.ACK_HOLD)
    assert rx.last_receipt == 2.02
    assert rx.take_pending_acks(2.025) == [
        PendingAck(S2C, 1, 1, 0, 25_000),
        PendingAck(S2C, 1, 1, 1, 5_000),
    ]
    assert not pending(rx)
    assert deadline(rx) is None


def test_pending_acks_are_bounded() -> None:
    rx = ChunkReceiver(C2S, None)
    body = ch.frame(sealed(m(i, TS + 20 * i), keys=None) for i in range(ms.MAX_PENDING_ACKS + 3))
    rx.receive(body, 1.0)
    assert rx.stats().acks_dropped == 3
    pending = rx.take_pending_acks(1.0)
    assert len(pending) == ms.MAX_PENDING_ACKS
    assert pending[0].seq == 3


def test_stream_count_is_bounded() -> None:
    rx = ChunkReceiver(C2S, None)
    body = ch.frame(sealed(m(0, TS, source=i), keys=None) for i in range(ms.MAX_STREAMS + 2))
    result = rx.receive(body, 1.0)
    assert (len(result.media), result.dropped) == (ms.MAX_STREAMS, 2)
    assert rx.stats().stream_overflow == 2


def test_jitter() -> None:
    steady = ChunkReceiver(C2S, None)
    shaky = ChunkReceiver(C2S, None)
    for i in range(50):
        chunk = ch.frame([sealed(m(i, TS + 20 * i), keys=None)])
        steady.receive(chunk, 5.0 + i * 0.02)
        shaky.receive(chunk, 5.0 + i * 0.02 + (0.01 if i % 2 else 0.0))
    assert steady.stats().jitter_ms == pytest.approx(0.0, abs=1e-6)
    assert 5.0 < shaky.stats().jitter_ms < 10.0


def test_receiver_rekey_starts_afresh() -> None:
    rx = ChunkReceiver(C2S, KEYS)
    rx.receive(ch.frame([sealed(m(100, TS))]), 1.0)
    rx.rekey(OTHER_KEYS)
    assert not rx.has_pending_acks
    result = rx.receive(ch.frame([sealed(m(0, TS + 5000), keys=OTHER_KEYS)]), 2.0)
    assert [c.seq for c in result.media] == [0]  # not "late" against the old leg's 100
    assert rx.receive(ch.frame([sealed(m(1, TS), keys=KEYS)]), 2.1).auth_failures == 1


# --------------------------------------------------------------------------- pipelines


def test_full_call_loop_with_acks_riding_on_media() -> None:
    call = Call()
    now = 0.0
    got_phone: list[int] = []
    got_provider: list[int] = []
    for i in range(60):
        now = i * 0.02
        # Phone: media plus pending acks in one datagram.
        acks = call.phone_tx.acks(call.phone_rx.take_pending_acks(now))
        for datagram in ch.pack_datagrams([call.phone_sends(i, now), *acks]):
            result = call.provider_rx.receive(datagram, now + 0.015)
            got_provider += [c.seq for c in result.media]
            for ack in result.acks:
                call.provider_tx.on_ack(ack, now + 0.015)
        # Provider: the same the other way.
        acks = call.provider_tx.acks(call.provider_rx.take_pending_acks(now + 0.016))
        media = call.provider_tx.media(1, 1, PayloadType.OPUS, TS + 20 * i, OPUS, now=now + 0.016)
        for datagram in ch.pack_datagrams([media, *acks]):
            result = call.phone_rx.receive(datagram, now + 0.03)
            got_phone += [c.seq for c in result.media]
            for ack in result.acks:
                call.phone_tx.on_ack(ack, now + 0.03)
    assert got_phone == got_provider == list(range(60))
    phone = call.phone_tx.stats()
    assert (phone.sent, phone.lost) == (60, 0)
    assert phone.acked == 60
    # 30 ms there and back, less the 1 ms the provider held the ack.
    assert phone.rtt_min == pytest.approx(0.029, abs=1e-6)
    assert phone.rtt_avg == pytest.approx(0.029, abs=1e-6)
    assert call.provider_rx.stats().received == 60


@settings(max_examples=40, deadline=None)
@given(st.data(), st.booleans())
def test_lossy_reordering_network_never_corrupts_media(data: Any, sealed_: bool) -> None:
    keys = KEYS if sealed_ else None
    call = Call(keys)
    sent: dict[int, int] = {}
    in_flight: list[bytes] = []
    delivered: list[MediaChunk] = []
    count = data.draw(st.integers(1, 120))
    for i in range(count):
        now = i * 0.02
        timestamp = TS + 20 * i + data.draw(st.integers(0, 3))
        sent[i] = timestamp
        in_flight.append(
            call.phone_tx.media(1, 1, PayloadType.OPUS, timestamp, bytes([i % 256]), now=now)
        )
        # The network delivers, drops, duplicates or holds back what is in flight.
        while in_flight and data.draw(st.booleans()):
            raw = in_flight.pop(data.draw(st.integers(0, len(in_flight) - 1)))
            fate = data.draw(st.sampled_from(["deliver", "deliver", "drop", "twice"]))
            if fate == "drop":
                continue
            copies = [raw, raw] if fate == "twice" else [raw]
            result = call.provider_rx.receive(ch.frame(copies), now + 0.01)
            delivered += result.media
            assert result.auth_failures == result.malformed == 0
        if data.draw(st.booleans()):
            call.provider_acks(now + 0.012)
    seqs = [c.seq for c in delivered]
    assert len(seqs) == len(set(seqs))
    for chunk in delivered:
        assert chunk.timestamp == sent[chunk.seq]
        assert chunk.payload == bytes([chunk.seq % 256])
    assert call.provider_rx.stats().received == len(delivered)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_receive_never_raises_on_random_bytes(data: bytes, sealed_: bool) -> None:
    rx = ChunkReceiver(C2S, KEYS if sealed_ else None)
    rx.receive(ch.frame([sealed(m(0, TS), keys=KEYS if sealed_ else None)]), 0.0)
    result = rx.receive(data, 1.0)
    assert result.malformed + result.auth_failures + result.dropped + len(result.media) >= 0
    rx.take_pending_acks(2.0)


@settings(max_examples=300, deadline=None)
@given(st.data(), st.booleans())
def test_receive_never_raises_on_mutated_bodies(data: Any, sealed_: bool) -> None:
    keys = KEYS if sealed_ else None
    rx = ChunkReceiver(C2S, keys)
    rx.receive(ch.frame([sealed(m(0, TS), keys=keys)]), 0.0)
    parts = [
        sealed(m(1, TS + 20, (2, 4)), keys=keys),
        sealed(AckChunk(0, S2C, 1, 1, 9, 3), keys=keys),
        sealed(m(2, TS + 40), keys=keys),
    ]
    body = bytearray(ch.frame(parts))
    for _ in range(data.draw(st.integers(1, 5))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    body = body[: data.draw(st.integers(0, len(body)))]
    result = rx.receive(bytes(body), 1.0)
    assert len(result.media) <= 2
    for chunk in result.media:
        assert chunk.seq in (1, 2) or not sealed_


# --------------------------------------------------------------------------- re-sending


def test_a_blip_is_resent_in_one_burst_on_the_first_acks_after_it() -> None:
    """3 s of chunks lost on a dead path come back, numbered as before, once acks resume."""
    call = Call()
    t = 0.0
    for i in range(10):  # the path works: everything arrives and is acked
        call.provider_rx.receive(ch.frame([call.phone_sends(i, t)]), t)
        call.provider_acks(t)
        t += 0.02
    assert call.phone_tx.resends(t) == []
    lost = [call.phone_sends(i, t + 0.02 * (i - 10)) for i in range(10, 160)]  # 3 s, dropped
    t += 3.0
    assert call.phone_tx.resends(t) == []  # no later ack yet: nothing is known lost
    for i in range(160, 165):  # the path is back
        call.provider_rx.receive(ch.frame([call.phone_sends(i, t)]), t)
        t += 0.02
    call.provider_acks(t)
    burst = call.phone_tx.resends(t)
    assert burst == lost  # the sealed chunks as first sent: same numbers and timestamps
    result = call.provider_rx.receive(ch.frame(burst), t)
    assert [c.seq for c in result.media] == list(range(10, 160))
    assert call.provider_rx.stats().lost == 0
    assert call.phone_tx.stats().resent == 150
    call.provider_acks(t + 0.01)
    assert call.phone_tx.resends(t + 1.0) == []  # all acked: nothing more
    stats = call.phone_tx.stats()
    assert (stats.acked, stats.lost, stats.given_up) == (165, 0, 0)


def test_chunks_older_than_the_window_are_given_up_and_resends_are_paced() -> None:
    call = Call()
    first = call.phone_sends(0, 0.0)  # lost
    gone = [call.phone_sends(i, 1.0 + 0.02 * i) for i in range(1, 5)]  # lost too
    t = ms.RESEND_WINDOW + 0.5  # chunk 0 is now older than the window, 1.. are not
    for i in range(5, 10):
        call.provider_rx.receive(ch.frame([call.phone_sends(i, t)]), t)
    call.provider_acks(t)
    burst = call.phone_tx.resends(t)
    assert first not in burst and burst == gone
    assert call.phone_tx.stats().given_up == 1
    # Not again before the interval; again after it if still not acked.
    assert call.phone_tx.resends(t + ms.RESEND_MIN_INTERVAL / 2) == []
    assert call.phone_tx.resends(t + 1.01 * ms.RESEND_MIN_INTERVAL) == burst
    # Each re-send counts; each chunk re-sent counts once (the loss Opus FEC is told of).
    assert (call.phone_tx.stats().resent, call.phone_tx.stats().resent_chunks) == (8, 4)


def test_a_chunk_given_up_then_acked_is_no_longer_counted_given_up() -> None:
    """A late ack (its chunk re-sent near the window's end) takes the give-up back."""
    call = Call()
    late = call.phone_sends(0, 0.0)  # arrives, but its ack is late
    t = ms.RESEND_WINDOW + 0.5
    for i in range(1, 6):
        call.provider_rx.receive(ch.frame([call.phone_sends(i, t)]), t)
    call.provider_acks(t)
    assert call.phone_tx.resends(t) == []
    assert (call.phone_tx.stats().given_up, call.phone_tx.stats().lost) == (1, 1)
    call.provider_rx.receive(ch.frame([late]), t)
    call.provider_acks(t + 0.01)
    stats = call.phone_tx.stats()
    assert (stats.given_up, stats.lost, stats.acked) == (0, 0, 6)
    call.provider_rx.receive(ch.frame([late]), t)  # a duplicate: its second ack changes nothing
    call.provider_acks(t + 0.02)
    assert call.phone_tx.stats().given_up == 0


def test_reordering_within_the_gap_is_not_taken_for_loss() -> None:
    call = Call()
    late = call.phone_sends(0, 0.0)
    for i in range(1, ms.REORDER_GAP):
        call.provider_rx.receive(ch.frame([call.phone_sends(i, 0.0)]), 0.0)
    call.provider_acks(0.5)
    assert call.phone_tx.resends(0.5) == []  # only REORDER_GAP - 1 later chunks acked
    call.provider_rx.receive(ch.frame([late]), 0.5)
    call.provider_acks(0.5)
    assert call.phone_tx.resends(1.0) == []


def test_a_resent_chunk_gives_no_rtt_and_a_rekey_forgets_the_backlog() -> None:
    call = Call()
    lost = call.phone_sends(0, 0.0)
    for i in range(1, 5):
        call.provider_rx.receive(ch.frame([call.phone_sends(i, 0.0)]), 0.0)
    call.provider_acks(0.05)
    rtts = call.phone_tx.stats().rtt_avg
    assert call.phone_tx.resends(0.2) == [lost]
    call.provider_rx.receive(ch.frame([lost]), 2.0)  # answered 2 s after it first left
    call.provider_acks(2.0)
    assert call.phone_tx.stats().rtt_avg == rtts  # Karn: no sample from a re-sent chunk
    for i in range(5, 10):
        call.phone_sends(i, 2.0)  # lost
    call.phone_tx.rekey(OTHER_KEYS)  # a new handler's leg
    fresh = Call(OTHER_KEYS)
    fresh.phone_tx = call.phone_tx
    for i in range(10, 15):
        fresh.provider_rx.receive(ch.frame([fresh.phone_sends(i, 2.1)]), 2.1)
    fresh.provider_acks(2.1)
    assert fresh.phone_tx.resends(2.5) == []


def test_resumed_numbering_starts_at_the_reservation_and_asks_for_more() -> None:
    """A provider restarted under the same key: never a number it may have used before."""
    asked: list[int] = []

    def reserve(number: int) -> int:
        asked.append(number)
        return number + 3

    sender = ChunkSender(S2C, KEYS)
    sender.resume_numbering(1000, reserve)
    receiver = ChunkReceiver(S2C, KEYS)
    seqs = []
    for i in range(7):
        raw = sender.media(0, 0, PayloadType.OPUS, 20 * i, b"x", now=0.0)
        (chunk,) = receiver.receive(ch.frame([raw]), 0.0).media
        seqs.append(chunk.seq)
    assert seqs == list(range(1000, 1007))
    ack = ch.unframe(ch.frame([sender.ack(C2S, 0, 0, 5, 0)]))[0]
    envelope, _, _ = ch.decode_chunk_parts(ack)
    assert envelope.seq == 1000  # the acks' own numbering resumes there too
    # Asked before the first number at each ceiling; one ceiling covers every number space.
    assert asked == [1000, 1003, 1006]
    with pytest.raises(ChunkEncodeError):
        sender.resume_numbering(0, reserve)  # not once numbers are in use


def test_a_reservation_that_gives_nothing_stops_the_sender() -> None:
    sender = ChunkSender(S2C, KEYS)
    sender.resume_numbering(10, lambda number: number)
    with pytest.raises(ChunkEncodeError, match="reserved"):
        sender.media(0, 0, PayloadType.OPUS, 0, b"x", now=0.0)
    assert sender.stats().sent == 0
