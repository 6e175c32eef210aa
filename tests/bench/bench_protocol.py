"""Protocol-core micro-benchmarks: run on demand, never part of the test suite.

    .venv/bin/python tests/bench/bench_protocol.py [--runs 7]

Each figure is the median over ``--runs`` runs of the per-operation time of
a loop of many operations; the spread (min..max of the runs) is printed too,
because these machines are shared and noisy.  Results go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from ript.protocol.chunks import PayloadType, frame
from ript.protocol.descriptions import CallDescription, CallDirection, MediaKey
from ript.protocol.events import Alerting, CallStatus, Direction, Pong, format_timestamp
from ript.protocol.jsonstream import EventStreamReader, EventStreamWriter
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender

CALL = "https://provider.example/calls/3fa3dbde-b387-4e75-b979-f188047b9edb"
HANDLER = "https://provider.example/tgs/7/handlers/desk"


def timed(label: str, per_run: int, runs: int, make: Callable[[], Callable[[], None]]) -> None:
    samples = []
    for _ in range(runs):
        op = make()
        start = time.perf_counter()
        for _ in range(per_run):
            op()
        samples.append((time.perf_counter() - start) / per_run * 1e6)
    print(
        f"{label:<58} {statistics.median(samples):8.2f} µs"
        f"   (runs {min(samples):.2f}..{max(samples):.2f})"
    )


def event_parse() -> Callable[[], None]:
    writer = EventStreamWriter()
    writer.open()
    ev = Alerting(direction=Direction.S2C, call=CALL, timestamp=format_timestamp(time.time()))
    reader = EventStreamReader()
    reader.feed(b"[" + writer.encode(ev))
    data = writer.encode(ev)  # from the second event on, each starts with ','

    def op() -> None:
        reader.feed(data)

    return op


def event_parse_bytewise() -> Callable[[], None]:
    writer = EventStreamWriter()
    writer.open()
    ev = Pong(direction=Direction.S2C, call=CALL, timestamp=format_timestamp(0), nonce="17")
    reader = EventStreamReader()
    reader.feed(b"[" + writer.encode(ev))
    data = [bytes([b]) for b in writer.encode(ev)]

    def op() -> None:
        for piece in data:
            reader.feed(piece)

    return op


def media_round(
    keys: MediaKeys | None, payload: bytes | None = None, first_timestamp: int = 0
) -> Callable[[], Callable[[], None]]:
    """A chunk sent, received, acked back and the ack taken (bench_chunk_path.py too)."""

    def make() -> Callable[[], None]:
        tx = ChunkSender(Direction.C2S, keys)
        rx = ChunkReceiver(Direction.C2S, keys)
        back = ChunkSender(Direction.S2C, keys)
        back_rx = ChunkReceiver(Direction.S2C, keys)
        body = os.urandom(80) if payload is None else payload
        clock = [0.0, first_timestamp]

        def op() -> None:
            clock[0] += 0.02
            clock[1] += 20
            now = clock[0]
            chunk = tx.media(1, 1, PayloadType.OPUS, int(clock[1]), body, now=now)
            rx.receive(frame([chunk]), now)
            acks = back.acks(rx.take_pending_acks(now))
            for ack in back_rx.receive(frame(acks), now).acks:
                tx.on_ack(ack, now)

        return op

    return make


def media_send(keys: MediaKeys | None) -> Callable[[], Callable[[], None]]:
    def make() -> Callable[[], None]:
        tx = ChunkSender(Direction.C2S, keys)
        payload = os.urandom(80)
        counter = [0]

        def op() -> None:
            counter[0] += 1
            tx.media(1, 1, PayloadType.OPUS, counter[0] * 20, payload, now=counter[0] * 0.02)

        return op

    return make


def call_machine() -> Callable[[], None]:
    from ript.protocol.call import Call

    desc = CallDescription(
        uri=CALL,
        direction=CallDirection.OUTBOUND,
        from_="+14085551002",
        to="+14089529999",
        state=CallStatus.ANSWERED,
        handler=HANDLER,
        media_key=MediaKey(key=bytes(16), salt=bytes(12), tag_length=8),
    )
    call = Call(desc, own_handler=HANDLER)
    call.start(0.0)
    call.signalling_up(0.0)
    clock = [0.0]

    def op() -> None:
        clock[0] += 0.02
        now = clock[0]
        call.media_sent(now)
        call.media_received(now)
        call.ack_received(now)
        call.handle_timer(now)

    return op


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    keys = MediaKeys.from_material(os.urandom(16), os.urandom(12), 8)
    print(f"protocol core, median of {runs} runs per figure")
    timed("signalling: parse one event (whole)", 20000, runs, event_parse)
    timed("signalling: parse one event fed one byte at a time", 2000, runs, event_parse_bytewise)
    timed("media: build one sealed 80-byte chunk", 20000, runs, media_send(keys))
    timed("media: build one clear 80-byte chunk", 20000, runs, media_send(None))
    timed("media: chunk -> receive -> ack -> on_ack, sealed", 10000, runs, media_round(keys))
    timed("media: chunk -> receive -> ack -> on_ack, clear", 10000, runs, media_round(None))
    timed("call machine: one 20 ms tick (3 notes + timer)", 50000, runs, call_machine)


if __name__ == "__main__":
    main()
