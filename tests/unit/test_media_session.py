"""What a :class:`MediaSession` does with received bodies, and the stats it reports.

The session is not started (no ALSA devices, no byways): received bodies are fed
to it the way its GET loop and PUT replies do, and what reaches its jitter
buffer (the only way to the earpiece) and its counters is checked.
"""

from __future__ import annotations

import asyncio

from ript.media.jitter import Frame
from ript.protocol.chunks import PayloadType, frame
from ript.protocol.descriptions import CallDescription, CallDirection, MediaKey
from ript.protocol.events import CallStatus, Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.calls.media import NO_ACTIVITY, MediaActivity, MediaSession
from riptphone.calls.transport import BywaysTransport
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import MediaByways

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
