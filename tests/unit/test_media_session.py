"""What a :class:`MediaSession` does with received bodies, and the stats it reports.

The session is not started (no ALSA devices, no byways): received bodies are fed
to it the way its GET loop and PUT replies do, and what reaches its jitter
buffer (the only way to the earpiece) and its counters is checked.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import struct
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import pytest

from ript.media.cn import ComfortNoise, decode_cn, encode_cn
from ript.media.dtmf import TelephoneEvent, decode_event, encode_event
from ript.media.g711 import ulaw_decode, ulaw_encode
from ript.media.jitter import Frame, Gap
from ript.media.tones import NoiseGenerator, ToneGenerator, ToneSpec, goertzel, rms_dbov
from ript.protocol.chunks import PayloadType, frame
from ript.protocol.descriptions import CallDescription, CallDirection, MediaKey
from ript.protocol.events import CallStatus, Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.calls.codec import CallCodec, CodecSettings
from riptphone.calls.media import INITIAL_PLAYOUT_MS, NO_ACTIVITY, MediaActivity, MediaSession
from riptphone.calls.transport import BywaysTransport
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import MediaByways

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from alsa.fileplugin import write_asoundrc  # noqa: E402

CALL = "https://p.example/calls/0b6f3e2a"
HANDLER = "https://p.example/tgs/7/handlers/desk"
KEY = MediaKey(key=bytes(range(16)), salt=bytes(range(12)), tag_length=8)
OTHER = MediaKey(key=bytes(16), salt=bytes(12), tag_length=8)
OPUS_FRAME = b"\xfc" + bytes(79)  # a valid 20 ms Opus packet (silence, CELT)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def session(clock: Clock) -> MediaSession:
    description = CallDescription(
        uri=CALL,
        handler=HANDLER,
        direction=CallDirection.OUTBOUND,
        from_="+14085551002",
        to="+14089529999",
        state=CallStatus.ANSWERED,
        client_directives="1 to 1: opus;",
        server_directives="1 to 1: opus;",
        media_key=KEY,
    )
    return MediaSession(
        BywaysTransport(MediaByways(H3Client(), f"{CALL}/media", {})),
        media_key=KEY,
        client_directives=description.client_directives,
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )


def provider_sender(key: MediaKey) -> ChunkSender:
    return ChunkSender(Direction.S2C, MediaKeys.from_material(key.key, key.salt, key.tag_length))


def chunk(sender: ChunkSender, seq_hint: int, clock: Clock) -> bytes:
    return sender.media(1, 1, PayloadType.OPUS, 20 * seq_hint, OPUS_FRAME, now=clock.now)


def played(media: MediaSession, clock: Clock) -> list[Frame]:
    """What the playout would hand the decoder over the next second."""
    frames = []
    for _ in range(50):
        clock.now += 0.02
        item = media._jitter.pop(clock.now)  # the playout task's one input
        if isinstance(item, Frame):
            frames.append(item)
    return frames


def test_a_chunk_sealed_with_another_key_is_an_auth_failure_and_never_played() -> None:
    clock = Clock()
    media = session(clock)
    forged = provider_sender(OTHER)
    media._take_body(frame([chunk(forged, i, clock) for i in range(3)]))  # as a GET answer
    stats = media.stats()
    assert stats.auth_failures == 3
    assert stats.chunks_received == 0
    assert played(media, clock) == []
    assert not media._receiver.has_pending_acks  # a forged chunk is never acked either


def test_chunks_sealed_with_the_calls_key_are_counted_and_played() -> None:
    clock = Clock()
    media = session(clock)
    genuine = provider_sender(KEY)
    media._take_body(frame([chunk(genuine, i, clock) for i in range(3)]))
    stats = media.stats()
    assert (stats.auth_failures, stats.chunks_received) == (0, 3)
    assert [f.payload for f in played(media, clock)] == [OPUS_FRAME] * 3
    assert media._receiver.has_pending_acks


def test_stats_count_sent_chunks_and_the_acks_that_come_back() -> None:
    clock = Clock()
    media = session(clock)
    assert media.stats().sealed is True
    # What _on_mic seals for each capture frame (it needs the loop to PUT them).
    body = frame([chunk(media._sender, i, clock) for i in range(2)])
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    result = provider_rx.receive(body, clock.now)
    assert (len(result.media), result.auth_failures) == (2, 0)
    clock.now += 0.03
    media._take_body(frame(provider_sender(KEY).acks(provider_rx.take_pending_acks(clock.now))))
    stats = media.stats()
    assert (stats.chunks_sent, stats.acks_received, stats.chunks_unacked) == (2, 2, 0)
    assert stats.auth_failures == 0
    assert isinstance(stats.rtt_ms, float) and stats.rtt_ms >= 0


class _HeldPuts(MediaByways):
    """Media byways whose PUTs are only recorded (no provider)."""

    def __init__(self) -> None:
        super().__init__(H3Client(), f"{CALL}/media", {})
        self.bodies: list[bytes] = []

    async def put(self, body: bytes) -> tuple[int, bytes]:
        self.bodies.append(body)
        return 200, b""


def test_traffic_is_noted_for_the_runner_and_never_touches_the_call() -> None:
    clock = Clock()
    byways = _HeldPuts()
    media = MediaSession(
        BywaysTransport(byways),
        media_key=KEY,
        client_directives="1 to 1: opus;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    assert media.take_activity() is NO_ACTIVITY
    genuine = provider_sender(KEY)
    media._take_body(frame([chunk(genuine, 0, clock)]))
    assert media.take_activity() == MediaActivity(clock.now, False, None)
    assert media.take_activity() is NO_ACTIVITY  # taken once

    async def speak() -> None:
        media._on_mic(bytes(1920))  # one 20 ms frame from the microphone
        sent_at = clock.now
        clock.now += 0.02
        media._on_mic(bytes(1920))
        await asyncio.sleep(0)
        assert len(byways.bodies) == 2
        # The no-ack timer needs the first send no ack has answered.
        assert media.take_activity() == MediaActivity(None, False, sent_at)
        provider_rx = ChunkReceiver(
            Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
        )
        for body in byways.bodies:
            provider_rx.receive(body, clock.now)
        clock.now += 0.05
        media._take_body(frame(genuine.acks(provider_rx.take_pending_acks(clock.now))))
        assert media.take_activity() == MediaActivity(None, True, None)
        media.stop()

    asyncio.run(speak())


def test_chunk_timestamps_are_the_wall_clock_time_of_their_first_sample() -> None:
    clock = Clock()
    byways = _HeldPuts()
    started = 1_765_000_000.123  # the wall clock when the session starts
    media = MediaSession(
        BywaysTransport(byways),
        media_key=KEY,
        client_directives="1 to 1: opus;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
        wall=lambda: started,
    )

    async def speak() -> None:
        for _ in range(3):
            media._on_mic(bytes(1920))
        await asyncio.sleep(0)
        media.stop()

    asyncio.run(speak())
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    stamps = [
        chunk.timestamp
        for body in byways.bodies
        for chunk in provider_rx.receive(body, clock.now).media
    ]
    first = int(started * 1000)
    assert stamps == [first, first + 20, first + 40]


def _sent(byways: _HeldPuts, clock: Clock) -> list[tuple[int, int, bytes]]:
    """(payload type, timestamp, payload) of every media chunk the session PUT."""
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    return [
        (int(c.payload_type), c.timestamp, c.payload)
        for body in byways.bodies
        for c in provider_rx.receive(body, clock.now).media
    ]


def _speaking(
    directive: str, frame_bytes: int, ticks: int, keys: str, ptime: int = 20
) -> list[Any]:
    clock = Clock()
    byways = _HeldPuts()
    media = MediaSession(
        BywaysTransport(byways),
        media_key=KEY,
        client_directives=directive,
        capture_device="unused",
        playback_device="unused",
        clock=clock,
        wall=lambda: 1_765_000_000.0,
        settings=CodecSettings(ptime=ptime),
    )

    async def speak() -> None:
        for key in keys:
            media.send_dtmf(key)
        for _ in range(ticks):
            media._on_mic(bytes(frame_bytes))
            await asyncio.sleep(0)  # the PUT goes out (at most 10 wait)
        media.stop()

    asyncio.run(speak())
    return _sent(byways, clock)


def test_keys_go_out_as_rfc4733_events_when_the_directive_has_telephone_event() -> None:
    sent = _speaking("1 to 1: PCMA,ptime=20; telephone-event;", 320, 16, "5#")
    start = 1_765_000_000_000
    events = [(ts, decode_event(p)) for pt, ts, p in sent if pt == PayloadType.TELEPHONE_EVENT]
    assert [pt for pt, _, _ in sent] == [4] * 14 + [3] * 2  # events stand in for audio
    # A press: one timestamp (its start), durations growing every 20 ms in 1/8000 s,
    # then the end packet three times with the final duration (RFC 4733 section 2.5.1.4).
    five = [e for ts, e in events if ts == start]
    assert [(e.event, e.end, e.duration) for e in five] == [
        (5, False, 160),
        (5, False, 320),
        (5, False, 480),
        (5, False, 640),
        (5, True, 800),
        (5, True, 800),
        (5, True, 800),
    ]
    hash_key = [e for ts, e in events if ts == start + 140]  # the next press starts after
    assert [e.event for e in hash_key] == [11] * 7 and [e.end for e in hash_key][-3:] == [True] * 3
    assert [ts for pt, ts, _ in sent if pt == PayloadType.PCMA] == [start + 280, start + 300]


def test_keys_are_in_band_tones_without_telephone_event() -> None:
    sent = _speaking("1 to 1: PCMU,ptime=60;", 640, 6, "1", ptime=40)
    assert {pt for pt, _, _ in sent} == {PayloadType.PCMU}
    # ptime 40: 100 ms of tone is 2 frames, then one of silence; timestamps step 40 ms.
    assert [ts - sent[0][1] for _, ts, _ in sent] == [0, 40, 80, 120, 160, 200]
    pcm = b"".join(ulaw_decode(p) for _, _, p in sent[:2])
    assert goertzel(pcm, 8000, 697) > 100 * goertzel(pcm, 8000, 1000)  # the "1" row tone
    assert goertzel(ulaw_decode(sent[2][2]), 8000, 697) < 1e3  # the gap is silent


def test_received_events_are_reported_once_per_press_and_not_played() -> None:
    clock = Clock()
    digits: list[str] = []
    media = MediaSession(
        BywaysTransport(MediaByways(H3Client(), f"{CALL}/media", {})),
        media_key=KEY,
        client_directives="1 to 1: opus; telephone-event;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
        on_dtmf=digits.append,
    )
    far = provider_sender(KEY)
    chunks = [far.media(1, 1, PayloadType.OPUS, 0, OPUS_FRAME, now=clock.now)]
    press = [TelephoneEvent(7, i >= 4, 10, 160 * min(i + 1, 5)) for i in range(7)]
    chunks += [
        far.media(1, 1, PayloadType.TELEPHONE_EVENT, 20, encode_event(e), now=clock.now)
        for e in press
    ]
    chunks.append(far.media(1, 1, PayloadType.TELEPHONE_EVENT, 20, b"\x07", now=clock.now))
    media._take_body(frame(chunks))
    assert digits == ["7"]  # seven packets, one press
    assert media.stats().bad_frames == 1  # the 1-byte payload
    kinds = [f.payload_type for f in played(media, clock)]
    # The event chunks hold their turns (silence) rather than leave gaps to conceal; the
    # buffer may drop one of the burst to catch up.
    assert kinds[0] == PayloadType.OPUS
    assert set(kinds[1:]) == {PayloadType.TELEPHONE_EVENT} and len(kinds) >= 7


def _frames(directive: str, pcm_frames: list[bytes], ptime: int = 20) -> list[Any]:
    """What the session sends for these microphone frames (keys: none)."""
    clock = Clock()
    byways = _HeldPuts()
    media = MediaSession(
        BywaysTransport(byways),
        media_key=KEY,
        client_directives=directive,
        capture_device="unused",
        playback_device="unused",
        clock=clock,
        wall=lambda: 1_765_000_000.0,
        settings=CodecSettings(ptime=ptime),
    )

    async def speak() -> None:
        for pcm in pcm_frames:
            media._on_mic(pcm)
            await asyncio.sleep(0)
        media.stop()

    asyncio.run(speak())
    return _sent(byways, clock)


def test_silence_sends_a_cn_chunk_every_400_ms_when_cn_is_negotiated() -> None:
    voice = ToneGenerator(ToneSpec(((200, -20.0),)), 8000, 20)
    room = NoiseGenerator(-60.0, 8000, 20, seed=2)
    mic = [voice.frame() for _ in range(10)] + [room.frame() for _ in range(100)]
    sent = _frames("1 to 1: PCMU; CN;", mic)
    kinds = [pt for pt, _, _ in sent]
    # 10 frames of voice, 200 ms of hangover, then CN at once and every 400 ms: 2 s of
    # silence cost 5 chunks instead of 90.
    assert kinds == [PayloadType.PCMU] * 20 + [PayloadType.CN] * 5
    start = sent[0][1]
    cn_at = [ts - start for pt, ts, _ in sent if pt == PayloadType.CN]
    assert cn_at == [400, 800, 1200, 1600, 2000]
    levels = {decode_cn(p).level for pt, _, p in sent if pt == PayloadType.CN}
    assert all(57 <= level <= 63 for level in levels)  # the room's -60 dBov
    # Without CN in the directive, silence is sent frame by frame.
    assert len(_frames("1 to 1: PCMU;", mic)) == 110


def test_opus_dtx_sends_almost_nothing_in_silence() -> None:
    voice = ToneGenerator(ToneSpec(((300, -15.0),)), 48000, 20)
    mic = [voice.frame() for _ in range(10)] + [bytes(1920)] * 100
    sent = _frames("1 to 1: opus; CN;", mic)
    assert all(pt == PayloadType.OPUS for pt, _, _ in sent)
    # libopus enters DTX after a few silent frames, then refreshes its noise every 400 ms.
    assert 10 < len(sent) < 40
    silent = [ts for _, ts, _ in sent if ts - sent[0][1] >= 800]
    assert all(b - a >= 380 for a, b in itertools.pairwise(silent))


class _Earpiece:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, pcm: bytes) -> bool:
        self.frames.append(pcm)
        return True


def test_received_cn_plays_comfort_noise_at_its_level_until_voice_returns() -> None:
    media = MediaSession(
        BywaysTransport(MediaByways(H3Client(), f"{CALL}/media", {})),
        media_key=KEY,
        client_directives="1 to 1: PCMU; CN;",
        capture_device="unused",
        playback_device="unused",
    )
    earpiece = _Earpiece()
    media._playback = earpiece  # type: ignore[assignment]
    far = provider_sender(KEY)
    voice = ToneGenerator(ToneSpec(((200, -20.0),)), 8000, 20)

    async def listen() -> None:
        now = time.monotonic()
        chunks = [
            far.media(1, 1, PayloadType.PCMU, 20 * i, ulaw_encode(voice.frame()), now=now)
            for i in range(3)
        ]
        chunks.append(far.media(1, 1, PayloadType.CN, 60, encode_cn(ComfortNoise(40)), now=now))
        media._take_body(frame(chunks))
        for _ in range(25):  # the capture frames' ticks, every 20 ms
            media._play_turn(time.monotonic())
            await asyncio.sleep(0.02)

    asyncio.run(listen())
    levels = [rms_dbov(pcm) for pcm in earpiece.frames]
    assert len(levels) >= 15  # a frame every 20 ms, the gaps after CN included
    assert levels[0] > -25  # the voice
    noise = levels[4:]
    assert all(-43 < level < -37 for level in noise), noise  # -40 dBov, never concealment
    assert media.bad_frames == 0


def _snr_db(reference: bytes, guess: bytes) -> float:
    ref, got = array("h", reference), array("h", guess)
    signal = sum(x * x for x in ref) or 1
    noise = sum((x - y) ** 2 for x, y in zip(ref, got, strict=True)) or 1
    return 10 * math.log10(signal / noise)


@pytest.mark.parametrize("codec", ["opus", "PCMA"])
def test_a_lost_chunk_is_rebuilt_from_fec_or_concealed_not_played_as_silence(codec: str) -> None:
    # The far end sends 16 chunks of a voiced sound, one every 20 ms; chunk 12 is lost and
    # 13 overtakes it (with 11), so 12's turn comes with its successor buffered.  What the
    # earpiece gets for that turn is close to what was sent: Opus rebuilds it from the FEC
    # data in chunk 13, G.711 repeats the last pitch period.
    clock = Clock()
    media = MediaSession(
        BywaysTransport(MediaByways(H3Client(), f"{CALL}/media", {})),
        media_key=KEY,
        client_directives=f"1 to 1: {codec};",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    rate = 48000 if codec == "opus" else 8000
    spec = ToneSpec(((200, -14.0), (400, -18.0), (600, -22.0)))
    tone = ToneGenerator(spec, rate, 20)
    far_codec = CallCodec(codec, 20, CodecSettings(opus_complexity=5))
    far_codec.expect_loss(10)  # the far end's path loses chunks: its Opus adds FEC
    reference_codec = CallCodec(codec, 20)
    packets = [far_codec.encode(tone.frame()) for _ in range(16)]
    reference = [reference_codec.decode(p) for p in packets]
    far = provider_sender(KEY)
    pt = PayloadType[codec.upper()]
    heard: dict[int, bytes] = {}
    chunks = [far.media(1, 1, pt, 20 * i, p, now=clock.now) for i, p in enumerate(packets)]
    arrivals = [[c] for c in chunks]
    arrivals[11].append(chunks[13])
    arrivals[12] = arrivals[13] = []
    for i in range(len(packets) + 3):
        if i < len(packets) and arrivals[i]:
            media._take_body(frame(arrivals[i]))
        item = media._jitter.pop(clock.now)
        pcm = media._earpiece_pcm(item)
        seq = item.seq if isinstance(item, (Frame, Gap)) else None
        if pcm is not None and seq is not None:
            heard[seq] = pcm
        clock.now += 0.02
    assert sorted(heard) == list(range(16))  # every turn played, the lost one too
    assert _snr_db(reference[11], heard[11]) > 30  # played as decoded before the loss
    # 26 dB (Opus FEC) and 22 dB (G.711 pitch repeat) here; Opus PLC alone gives about 8,
    # silence 0.
    assert _snr_db(reference[12], heard[12]) > 15, _snr_db(reference[12], heard[12])


class _Sends:
    """A transport that records each body handed to it."""

    name = "webtransport"
    puts_dropped = put_failures = get_failures = 0

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def start(self, deliver: Any) -> None:
        pass

    def send(self, body: bytes) -> None:
        self.bodies.append(body)

    def stop(self) -> None:
        pass


def test_each_capture_frame_also_plays_one_earpiece_frame() -> None:
    # One wake-up per tick: the capture frame that sends also pops the jitter buffer
    # and writes to the earpiece (no playout timer of its own).
    clock = Clock()
    sends = _Sends()
    media = MediaSession(
        sends,
        media_key=KEY,
        client_directives="1 to 1: PCMU;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    earpiece = _Earpiece()
    media._playback = earpiece  # type: ignore[assignment]
    far = provider_sender(KEY)
    voice = ToneGenerator(ToneSpec(((200, -20.0),)), 8000, 20)
    sent = [ulaw_encode(voice.frame()) for _ in range(5)]
    media._take_body(
        frame(
            [
                far.media(1, 1, PayloadType.PCMU, 20 * i, p, now=clock.now)
                for i, p in enumerate(sent)
            ]
        )
    )
    for _ in range(5):
        clock.now += 0.02
        media._on_mic(bytes(320))
    assert len(sends.bodies) == 5  # every frame went out
    assert earpiece.frames == [ulaw_decode(p) for p in sent]  # and each tick played one
    assert media.frames_played == 5


def test_acks_owed_leave_alone_at_the_first_tick_without_media_after_ack_hold() -> None:
    # G.711 with CN in silence: one CN chunk, then nothing for 400 ms.  The acks owed for
    # the far end's chunk then go alone, on a capture tick, once ACK_HOLD (60 ms) has passed.
    clock = Clock()
    sends = _Sends()
    media = MediaSession(
        sends,
        media_key=KEY,
        client_directives="1 to 1: PCMU; CN;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    clock.now += 0.02
    media._on_mic(bytes(320))  # silence: the CN chunk
    assert len(sends.bodies) == 1
    far = provider_sender(KEY)
    media._take_body(frame([far.media(1, 1, PayloadType.PCMU, 0, bytes(160), now=clock.now)]))
    alone = []
    body = b""
    arrival = clock.now
    for tick in range(1, 6):
        clock.now = arrival + tick * 0.02
        media._on_mic(bytes(320))
        if len(sends.bodies) > 1:
            alone.append(tick)
            body = sends.bodies.pop()
    assert alone == [3]  # 60 ms after the chunk came, once
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    result = provider_rx.receive(body, clock.now)
    assert (len(result.media), len(result.acks)) == (0, 1)


def test_a_resent_backlog_goes_in_bodies_of_at_most_64_kib() -> None:
    clock = Clock()
    byways = _HeldPuts()
    media = MediaSession(
        BywaysTransport(byways),
        media_key=KEY,
        client_directives="1 to 1: opus;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )

    async def blip() -> None:
        # 5 s of large chunks that all fell into a blackhole (a 160 kbit/s stream)...
        big = b"\xfc" + bytes(899)
        for i in range(250):
            media._sender.media(1, 1, PayloadType.OPUS, 20 * i, big, now=clock.now)
        # ...then the path returns: the provider acks the next one, which asks for the rest.
        clock.now += 1.0
        back = media._sender.media(1, 1, PayloadType.OPUS, 5000, big, now=clock.now)
        assert len(provider_rx.receive(frame([back]), clock.now).media) == 1
        clock.now += 0.02
        media._take_body(frame(provider_sender(KEY).acks(provider_rx.take_pending_acks(clock.now))))
        await asyncio.sleep(0)
        media.stop()

    asyncio.run(blip())
    assert sum(len(body) for body in byways.bodies) > 200_000
    assert max(len(body) for body in byways.bodies) <= 65536  # else the provider says 413
    got = [c.seq for body in byways.bodies for c in provider_rx.receive(body, clock.now).media]
    assert got == list(range(248))  # every lost chunk, once, in order


class _Timers:
    """``loop.call_later`` on the fake clock: callbacks run as :meth:`run_until` passes them."""

    class _Handle:
        def __init__(self, due: float, callback: Any) -> None:
            self.due, self.callback, self.cancelled = due, callback, False

        def cancel(self) -> None:
            self.cancelled = True

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.handles: list[_Timers._Handle] = []

    def call_later(self, delay: float, callback: Any) -> _Timers._Handle:
        handle = self._Handle(self.clock.now + delay, callback)
        self.handles.append(handle)
        return handle

    def run_until(self, now: float) -> None:
        while True:
            due = [h for h in self.handles if not h.cancelled and h.due <= now + 1e-9]
            if not due:
                break
            handle = min(due, key=lambda h: h.due)
            self.handles.remove(handle)
            self.clock.now = max(self.clock.now, handle.due)
            handle.callback()
        self.clock.now = now


class _TimedEarpiece(_Earpiece):
    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.times: list[float] = []

    def write(self, pcm: bytes) -> bool:
        self.times.append(self.clock.now)
        return super().write(pcm)


@pytest.mark.parametrize("burst", [1, 4])
def test_a_stalled_microphone_does_not_stop_playout_acks_or_media(burst: int) -> None:
    # The microphone stops giving frames without an error for 200 ms: the loop ticks
    # itself with silence, so the earpiece goes on at the ptime rate, acks and media
    # go out; when frames come again they drive the ticks, one per turn, no duplicates,
    # also when the capture thread first delivers the frames it owes back to back.
    clock = Clock()
    sends = _Sends()
    media = MediaSession(
        sends,
        media_key=KEY,
        client_directives="1 to 1: PCMU;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    earpiece = _TimedEarpiece(clock)
    media._playback = earpiece  # type: ignore[assignment]
    timers = _Timers(clock)
    start = clock.now
    media._watch_capture(timers.call_later)
    far = provider_sender(KEY)
    sent = [bytes((0x10 + i,)) * 160 for i in range(30)]  # each frame told apart
    # The far end's chunks come every 20 ms (at 10 ms past each tick); our capture
    # frames at 20, 40, ... 100 ms, then none until 305 ms (``burst`` of them at once),
    # then every 20 ms again.
    mic_ms = [20, 40, 60, 80, 100, *[305] * burst, *range(325, 606, 20)]
    for ms in range(1, 620):
        timers.run_until(start + ms / 1000)
        if ms % 20 == 10 and (i := ms // 20) < len(sent):
            media._take_body(
                frame([far.media(1, 1, PayloadType.PCMU, 20 * i, sent[i], now=clock.now)])
            )
        for _ in range(mic_ms.count(ms)):
            media._on_mic(bytes(320))
    stalled = [round((t - start) * 1000) for t in earpiece.times if 100 < (t - start) * 1000 < 305]
    # Noticed 3 ptimes after the last frame, then a tick every ptime.
    assert stalled == list(range(160, 301, 20)), stalled
    gaps = [round((b - a) * 1000) for a, b in itertools.pairwise(earpiece.times)]
    assert max(gaps) <= 60 and min(gaps) >= 15, gaps  # no double tick at the hand-back
    # One tick per turn (100 + 200 + 300 ms), less the first ones: the jitter buffer
    # starts playing once its initial delay is buffered, until then nothing is written.
    waiting = INITIAL_PLAYOUT_MS // 20 - 1
    assert len(earpiece.times) == 5 + 8 + 15 - waiting
    # Every far frame played once, in order (a tick is never played twice).
    index = {ulaw_decode(p): i for i, p in enumerate(sent)}
    heard = [index[pcm] for pcm in earpiece.frames if pcm in index]
    assert heard == sorted(set(heard)) and len(heard) >= 25, heard
    # Our media: one chunk per tick, timestamps one ptime apart, no gap, no repeat.
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    stamps, acked = [], 0
    for body in sends.bodies:
        result = provider_rx.receive(body, clock.now)
        stamps += [c.timestamp for c in result.media]
        acked += len(result.acks)
    assert len(stamps) == len(earpiece.times) + waiting
    assert all(b - a == 20 for a, b in itertools.pairwise(stamps)), stamps
    assert acked == len(sent)  # the far end's chunks were all acked, the stalled ones too
    assert media.capture_stalls == 1
    media._playback = None  # the fake has no stats() or stop()
    media.stop()
    assert all(h.cancelled for h in timers.handles)  # no timer outlives the session


def test_a_capture_stall_of_a_second_is_reported_as_no_audio_device() -> None:
    clock = Clock()
    media = MediaSession(
        _Sends(),
        media_key=KEY,
        client_directives="1 to 1: PCMU;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
    )
    timers = _Timers(clock)
    start = clock.now
    media._watch_capture(timers.call_later)
    timers.run_until(start + 0.9)
    assert media.audio_error() is None  # stalled, ticking with silence, not said yet
    timers.run_until(start + 1.1)
    error = media.audio_error()
    assert error is not None and error.startswith("no audio device (microphone:"), error
    assert media.stats().audio_error == error  # the control socket's call.stats
    media._on_mic(bytes(320))
    assert media.audio_error() is None
    media.stop()


async def _until(condition: Any, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_real_microphone_whose_reads_block_does_not_stop_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Real alsa-lib: the file plugin's capture reads a FIFO, so when the FIFO runs dry
    # the capture thread's read() blocks, no error, no frame (a stalled USB card).
    files = write_asoundrc(tmp_path)
    files.capture_in.unlink()
    os.mkfifo(files.capture_in)
    monkeypatch.setenv("ALSA_CONFIG_PATH", files.config_path)
    writer = os.open(files.capture_in, os.O_RDWR)  # alsa-lib's open does not wait for us
    os.write(writer, bytes(320) * 3)  # 60 ms of the microphone, then nothing
    back = [struct.pack("<h", 2000 + 400 * i) * 160 for i in range(10)]
    sends = _Sends()
    media = MediaSession(
        sends,
        media_key=KEY,
        client_directives="1 to 1: PCMU;",
        capture_device=files.capture_device,
        playback_device=files.playback_device,
    )
    provider_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    media_out: list[tuple[int, bytes]] = []
    acks: list[int] = []

    def take_sent() -> None:
        for body in sends.bodies:
            result = provider_rx.receive(body, time.monotonic())
            media_out.extend((c.timestamp, c.payload) for c in result.media)
            acks.extend(a.seq for a in result.acks)
        sends.bodies.clear()

    async def call() -> None:
        media.start()
        try:
            await _until(lambda: media.capture_stalls == 1, "the stall to be noticed")
            far = provider_sender(KEY)
            now = time.monotonic()
            media._take_body(
                frame(
                    [
                        far.media(1, 1, PayloadType.PCMU, 20 * i, bytes(160), now=now)
                        for i in range(5)
                    ]
                )
            )
            # The loop's own ticks play the far end and ack it, and the earpiece, which
            # the stuck capture thread no longer drives, plays on its own clock.
            await _until(lambda: media.frames_played >= 5, "the earpiece to play")
            playback = media._playback
            assert playback is not None
            await _until(lambda: playback.standby_turns >= 5, "the earpiece's own turns")
            await _until(lambda: (take_sent(), len(acks) == 5)[1], "the acks")
            os.write(writer, b"".join(back))  # the microphone is back
            await _until(lambda: media._stall_since is None, "capture to drive the ticks again")
            last = ulaw_encode(back[-1])
            await _until(
                lambda: (take_sent(), any(p == last for _, p in media_out))[1],
                "the microphone's frames to go out",
            )
        finally:
            os.close(writer)  # reads return at once again, so the capture thread can stop
            media.stop()
        take_sent()

    asyncio.run(call())
    stamps = [ts for ts, _ in media_out]
    assert len(stamps) > 10
    assert all(b - a == 20 for a, b in itertools.pairwise(stamps)), stamps  # no gap, no repeat
    encoded = [ulaw_encode(pcm) for pcm in back]
    resumed = [encoded.index(p) for _, p in media_out if p in encoded]
    # The frames after the stall went out once each, in order (the first may have
    # coincided with a silent tick of the loop, which took its turn).
    assert resumed == list(range(10 - len(resumed), 10)) and len(resumed) >= 9, resumed


def _opus_mode(packet: bytes) -> str:
    """RFC 6716 section 3.1: the TOC byte's configuration says SILK, hybrid or CELT."""
    config = packet[0] >> 3
    return "silk" if config < 12 else "hybrid" if config < 16 else "celt"


def _lossy_opus_call(
    phases: list[tuple[int, int | None]], settings: CodecSettings | None = None
) -> tuple[list[list[str]], list[int]]:
    """A 1 kHz tone sent for (seconds, lose every n-th chunk) phases: the Opus modes the far
    end received in each phase, and the session's loss hint at the end of every second."""
    clock = Clock()
    sends = _Sends()
    media = MediaSession(
        sends,
        media_key=KEY,
        client_directives="1 to 1: opus;",
        capture_device="unused",
        playback_device="unused",
        clock=clock,
        settings=settings,
    )
    far_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    far_tx = provider_sender(KEY)
    tone = ToneGenerator(ToneSpec(((1000, -20.0),)), 48000, 20)
    modes: list[list[str]] = []
    hints: list[int] = []
    for count, lose_every in phases:
        modes.append([])
        for tick in range(50 * count):
            clock.now += 0.02
            media._on_mic(tone.frame())
            body = sends.bodies.pop()
            sends.bodies.clear()  # re-sends: counted by the sender, not looked at here
            if lose_every is None or tick % lose_every:
                for chunk_ in far_rx.receive(body, clock.now).media:
                    modes[-1].append(_opus_mode(chunk_.payload))
                media._take_body(frame(far_tx.acks(far_rx.take_pending_acks(clock.now))))
            if tick % 50 == 49:
                hints.append(media.stats().loss_hint_pct)
    return modes, hints


def test_opus_fec_follows_the_loss_the_acks_show() -> None:
    # On a clean path the encoder expects no loss and codes the CPU bench's tone in its
    # cheap CELT mode; when a tenth of the chunks go missing it is told so within a
    # second and moves to SILK with in-band FEC; ten clean seconds later it is back.
    modes, hints = _lossy_opus_call([(2, None), (3, 10), (20, None)])
    assert hints[:2] == [0, 0]
    assert set(modes[0][-50:]) == {"celt"}  # (its first frames are SILK: warm-up)
    assert hints[2] >= 5  # the first lossy second
    assert modes[1][-45:].count("silk") >= 40, modes[1][-45:]  # FEC lives in SILK
    assert hints[-1] == 0
    assert set(modes[2][-100:]) == {"celt"}


def test_opus_fec_off_in_the_settings_never_expects_loss() -> None:
    modes, hints = _lossy_opus_call([(1, None), (3, 10)], CodecSettings(opus_fec=False))
    assert hints == [0, 0, 0, 0]
    assert set(modes[1]) == {"celt"}


def test_the_loss_hint_window_stays_a_second_when_the_leg_changes_codec() -> None:
    # The same leg (same key) re-established with a new directive keeps its sender; a G.711
    # session before it must still close its loss windows, or the Opus session's first
    # window spans the whole G.711 session and a long-gone burst turns FEC on, on a clean path.
    clock = Clock()
    sends = _Sends()
    far_rx = ChunkReceiver(
        Direction.C2S, MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)
    )
    far_tx = provider_sender(KEY)

    def run(media: MediaSession, rate: int, phases: list[tuple[int, int | None]]) -> list[int]:
        tone = ToneGenerator(ToneSpec(((1000, -20.0),)), rate, 20)
        hints: list[int] = []
        for seconds, lose_every in phases:
            for tick in range(50 * seconds):
                clock.now += 0.02
                media._on_mic(tone.frame())
                body = sends.bodies.pop()
                sends.bodies.clear()
                if lose_every is None or tick % lose_every:
                    far_rx.receive(body, clock.now)
                    media._take_body(frame(far_tx.acks(far_rx.take_pending_acks(clock.now))))
                if tick % 50 == 49:
                    hints.append(media._loss_hint.pct)
        return hints

    def session(directive: str, previous: MediaSession | None) -> MediaSession:
        return MediaSession(
            sends,
            media_key=KEY,
            client_directives=directive,
            capture_device="unused",
            playback_device="unused",
            clock=clock,
            previous=previous,
        )

    g711 = session("1 to 1: PCMU;", None)
    run(g711, 8000, [(2, 10), (20, None)])  # a lossy start, then long clean
    opus = session("1 to 1: opus;", g711)
    assert opus._sender is g711._sender  # the same leg: numbering goes on
    hints = run(opus, 48000, [(2, None)])
    assert hints == [0, 0]
    assert opus.stats().loss_hint_pct == 0
