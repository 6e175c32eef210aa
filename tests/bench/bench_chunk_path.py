"""The Python cost of one 20 ms media chunk (issue #12): run on demand, never in the suite.

    PYTHONPATH=firmware .venv/bin/python tests/bench/bench_chunk_path.py [--passes 5]

Figures are CPU time (``time.process_time``) per operation, the median of
``--passes`` passes (the machine is shared; min..max of the passes printed too).
A/B: run it with ``PYTHONPATH=<other tree>/firmware`` in the same minutes.

* ``round``: a sealed 80-byte (20 ms Opus) chunk made by a ChunkSender, framed,
  received by a ChunkReceiver, acked back (take_pending_acks, acks, frame),
  the ack received and given to ``on_ack``: both ends of one chunk.
* ``send`` / ``receive``: the two halves alone.
* ``session tick``: the phone's MediaSession without devices or network: one
  capture tick (``_tick``: encode, seal, frame with the acks owed, send, pop the
  jitter buffer, decode) and one received body (``_take_body``: a provider chunk
  and an ack of ours, made beforehand: only the phone's side is timed).  With the
  codec stubbed (``no codec``), so that what remains is this path's Python; and
  with real libopus for scale.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from bench_protocol import media_round  # this folder: the script's own directory

from ript.protocol.chunks import PayloadType, frame
from ript.protocol.descriptions import MediaKey
from ript.protocol.events import Direction
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender

PAYLOAD = os.urandom(80)
KEY = MediaKey(key=bytes(range(16)), salt=bytes(range(12)), tag_length=8)


def measure(label: str, per_pass: int, passes: int, make: Callable[[], Callable[[], None]]) -> None:
    samples = []
    for _ in range(passes):
        op = make()
        for _ in range(50):  # warm up: streams exist, truncation allowed
            op()
        start = time.process_time()
        for _ in range(per_pass):
            op()
        samples.append((time.process_time() - start) / per_pass * 1e6)
    print(
        f"{label:<52} {statistics.median(samples):8.2f} µs"
        f"   (passes {min(samples):.2f}..{max(samples):.2f})",
        flush=True,
    )


def keys() -> MediaKeys:
    return MediaKeys.from_material(KEY.key, KEY.salt, KEY.tag_length)


def chunk_round(sealed: bool) -> Callable[[], Callable[[], None]]:
    # bench_protocol.py's round, with a wall-clock timestamp as in a call.
    return media_round(keys() if sealed else None, PAYLOAD, 1_700_000_000_000)


def chunk_send() -> Callable[[], None]:
    tx = ChunkSender(Direction.C2S, keys())
    clock = [0.0, 1_700_000_000_000]

    def op() -> None:
        clock[0] += 0.02
        clock[1] += 20
        frame([tx.media(1, 1, PayloadType.OPUS, clock[1], PAYLOAD, now=clock[0])])

    return op


def chunk_receive() -> Callable[[], None]:
    k = keys()
    tx = ChunkSender(Direction.S2C, k)
    bodies = [
        frame([tx.media(1, 1, PayloadType.OPUS, 1_700_000_000_000 + 20 * i, PAYLOAD, now=0.0)])
        for i in range(4000)
    ]
    state = [ChunkReceiver(Direction.S2C, k), 0]

    def op() -> None:
        i = state[1]
        if i == len(bodies):
            state[0], i = ChunkReceiver(Direction.S2C, k), 0
        rx = state[0]
        assert isinstance(rx, ChunkReceiver)
        rx.receive(bodies[i], i * 0.02)
        rx.take_pending_acks(i * 0.02)
        state[1] = i + 1

    return op


class _Transport:
    name = "webtransport"
    puts_dropped = put_failures = get_failures = 0

    def start(self, deliver: Callable[[bytes], None]) -> None:
        pass

    def send(self, body: bytes) -> None:
        pass

    def stop(self) -> None:
        pass


class _Playback:
    def write(self, pcm: bytes) -> None:
        pass


def session_tick(stub_codec: bool, n_ops: int) -> Callable[[], Callable[[], None]]:
    from riptphone.calls.media import MediaSession

    def make() -> Callable[[], None]:
        clock = [100.0]
        transport = _Transport()
        session = MediaSession(
            transport,  # type: ignore[arg-type]
            media_key=KEY,
            client_directives="1 to 1: opus;",
            capture_device="unused",
            playback_device="unused",
            clock=lambda: clock[0],
        )
        session._playback = _Playback()  # type: ignore[assignment]
        codec = session._codec
        pcm = os.urandom(len(codec.silence))
        source, sink = session._source, session._sink
        ts0 = 1_700_000_000_000
        if stub_codec:
            decoded = codec.silence
            codec.encode = lambda _pcm: PAYLOAD  # type: ignore[method-assign]
            codec.decode = lambda _payload: decoded  # type: ignore[method-assign]
        # The provider's bodies, made beforehand so that only the phone's work is timed:
        # its chunk of each tick and the ack of the phone's chunk of the tick before (the
        # phone numbers its chunks 0, 1, 2... one per tick: no DTX with the codec stubbed
        # or with random PCM).
        k = keys()
        provider = ChunkSender(Direction.S2C, k)
        bodies = []
        for i in range(n_ops + 100):
            parts = [provider.media(1, 1, PayloadType.OPUS, ts0 + 20 * i, PAYLOAD, now=0.0)]
            if i:
                parts.append(provider.ack(Direction.C2S, source, sink, i - 1, 5000))
            bodies.append(frame(parts))
        feed = iter(bodies)

        def op() -> None:
            clock[0] += 0.02
            now = clock[0]
            session._take_body(next(feed))
            session._tick(pcm, now)

        return op

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passes", type=int, default=5)
    passes = parser.parse_args().passes
    la = os.getloadavg()
    print(
        f"chunk path, CPU µs per op, median of {passes} passes; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC, "
        f"load {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"
    )
    measure("round: media -> receive -> ack -> on_ack, sealed", 10000, passes, chunk_round(True))
    measure("round: media -> receive -> ack -> on_ack, clear", 10000, passes, chunk_round(False))
    measure("send: media + frame, sealed", 20000, passes, chunk_send)
    measure("receive: body + take_pending_acks, sealed", 20000, passes, chunk_receive)
    measure("session: take_body + tick, sealed, no codec", 5000, passes, session_tick(True, 5000))
    measure("session: take_body + tick, sealed, libopus", 2000, passes, session_tick(False, 2000))


if __name__ == "__main__":
    main()
