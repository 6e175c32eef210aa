"""CPU of Opus encode + decode per 20 ms frame, and the Python around libopus (issue #12).

    PYTHONPATH=firmware .venv/bin/python tests/bench/bench_opus.py [--frames 2000] [--passes 5]

Times (``time.process_time``, median of ``--passes`` passes of ``--frames``
frames each) three ways over the same input, the phone's call settings
(48 kHz mono, 24 kbit/s, FEC with a 10 % loss hint, DTX, complexity 9 unless
``--complexity``):

* **module**: ``ript.media.opus_codec`` as found on ``PYTHONPATH``, so the same
  script measures the base tree and a branch (A/B in the same minutes);
* **bare**: ``opus_encode`` / ``opus_decode`` called straight through ctypes on
  the module's own codec states, into buffers made once, with nothing around
  them: libopus's cost plus one ctypes call each, the floor for any wrapper;
* **ctypes call**: one call of a trivial libopus function
  (``opus_packet_get_nb_frames``), the price of crossing into C at all.

``module - bare`` is the Python-side overhead per frame.  The input is a cycle
of tones, a DTMF pair and noise (no silence, so DTX does not skip frames).
Passes alternate between module and bare so machine noise hits both alike.
Not collected by pytest; figures go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from ript.media import opus_codec
from ript.media.tones import NoiseGenerator, ToneGenerator, ToneSpec, dtmf_spec

RATE = 48000
SAMPLES = 960


def input_frames() -> list[bytes]:
    frames: list[bytes] = []
    for freq in (300, 700, 1000, 2200):
        gen = ToneGenerator(ToneSpec(((freq, -15.0), (freq * 3 // 2, -22.0))), RATE)
        frames += [gen.frame() for _ in range(10)]
    dtmf = ToneGenerator(dtmf_spec("8"), RATE)
    frames += [dtmf.frame() for _ in range(10)]
    noise = NoiseGenerator(-25.0, RATE, seed=12)
    frames += [noise.frame() for _ in range(10)]
    return frames


def coders(complexity: int) -> tuple[Any, Any]:
    enc = opus_codec.OpusEncoder(
        RATE, 24000, fec=True, expected_loss_pct=10, dtx=True, complexity=complexity
    )
    return enc, opus_codec.OpusDecoder(RATE)


# The bare calls go through the module's own prototypes: module - bare is then exactly
# the Python the module puts around them.
OPUS_ENCODE = opus_codec._opus_encode
OPUS_DECODE = opus_codec._opus_decode
prototype = opus_codec._prototype
VERSION = prototype("opus_get_version_string", ctypes.c_char_p)
NB_FRAMES = prototype("opus_packet_get_nb_frames", ctypes.c_int, ctypes.c_char_p, ctypes.c_int32)


def module_pass(frames: list[bytes], count: int, complexity: int) -> tuple[float, float]:
    """(encode + decode, decode alone) µs per frame through the module."""
    enc, dec = coders(complexity)
    n = len(frames)
    encode, decode = enc.encode, dec.decode
    start = time.process_time()
    packets = [encode(frames[i % n]) for i in range(count)]
    for p in packets:
        decode(p)
    both = time.process_time() - start
    dec2 = opus_codec.OpusDecoder(RATE)
    decode = dec2.decode
    start = time.process_time()
    for p in packets:
        decode(p)
    alone = time.process_time() - start
    return both / count * 1e6, alone / count * 1e6


def bare_pass(frames: list[bytes], count: int, complexity: int) -> tuple[float, float]:
    """(encode + decode, decode alone) µs per frame: libopus through one ctypes call each."""
    enc, dec = coders(complexity)
    est, dst = enc._encoder.encoder_state, dec._decoder.decoder_state
    out, pcm = ctypes.create_string_buffer(2 * SAMPLES), ctypes.create_string_buffer(2 * SAMPLES)
    n = len(frames)
    start = time.process_time()
    packets = []
    for i in range(count):
        size = OPUS_ENCODE(est, frames[i % n], SAMPLES, out, 2 * SAMPLES)
        packets.append(out[:size])
    for p in packets:
        OPUS_DECODE(dst, p, len(p), pcm, SAMPLES, 0)
    both = time.process_time() - start
    fresh = opus_codec.OpusDecoder(RATE)  # kept alive: opuslib frees the state with its owner
    dst = fresh._decoder.decoder_state
    start = time.process_time()
    for p in packets:
        OPUS_DECODE(dst, p, len(p), pcm, SAMPLES, 0)
    alone = time.process_time() - start
    return both / count * 1e6, alone / count * 1e6


def ctypes_call_us(calls: int = 200_000) -> float:
    packet = b"\x00\x00"
    start = time.process_time()
    for _ in range(calls):
        NB_FRAMES(packet, 2)
    return (time.process_time() - start) / calls * 1e6


def median_of(results: list[tuple[float, float]], index: int) -> float:
    return statistics.median(r[index] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--complexity", type=int, default=9)
    args = parser.parse_args(argv)
    frames = input_frames()
    module_pass(frames, 200, args.complexity)  # warm up: imports, caches, CPU clocks
    bare_pass(frames, 200, args.complexity)
    runs: dict[str, list[tuple[float, float]]] = {"module": [], "bare": []}
    passes: list[tuple[str, Callable[[list[bytes], int, int], tuple[float, float]]]] = [
        ("module", module_pass),
        ("bare", bare_pass),
    ]
    for _ in range(args.passes):
        for name, run in passes:
            runs[name].append(run(frames, args.frames, args.complexity))
    call = statistics.median(ctypes_call_us() for _ in range(args.passes))
    print(f"module      {opus_codec.__file__}")
    print(f"libopus     {VERSION().decode()}, python {sys.version.split()[0]}")
    print(f"utc         {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())}")
    print(f"loadavg     {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"frames      {args.frames} x {args.passes} passes, complexity {args.complexity}, "
        "medians in µs per 20 ms frame"
    )
    for name in ("module", "bare"):
        both, alone = median_of(runs[name], 0), median_of(runs[name], 1)
        enc = both - alone
        print(f"{name:<11} encode+decode {both:7.1f}   decode {alone:6.1f}   encode {enc:6.1f}")
    over = median_of(runs["module"], 0) - median_of(runs["bare"], 0)
    over_dec = median_of(runs["module"], 1) - median_of(runs["bare"], 1)
    over_enc = over - over_dec
    print(
        f"overhead    encode+decode {over:7.1f}   decode {over_dec:6.1f}   encode {over_enc:6.1f}"
    )
    print(f"ctypes call {call:.2f} µs (opus_packet_get_nb_frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
