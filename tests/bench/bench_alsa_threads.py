"""CPU of the two ALSA threads per 20 ms frame, beside a busy asyncio loop (issue #12).

    PYTHONPATH=firmware .venv/bin/python tests/bench/bench_alsa_threads.py [--passes 5]

Runs ``AlsaCapture`` (48 kHz mono, 20 ms, a callback in the loop) and
``AlsaPlayback`` (fed by that callback) through alsa-lib's file plugin, while
the loop's thread does about a millisecond of Python every 4 ms so that the
threads meet a GIL holder as in a call.  Each pass reports each thread's
``sum_exec_runtime`` from ``/proc/self/task/TID/schedstat`` (nanoseconds, not
the clock-tick user/sys of ``stat``) as s/min and µs per frame; the last line
is the median of the passes.  ``riptphone`` is the one on ``PYTHONPATH``, so the
same script measures the base tree and a branch (A/B in the same minutes).
The file plugin does not pace, so the threads sleep to each frame's turn here;
on a card they sleep in ``read()``/``write()`` instead.  Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alsa.fileplugin import write_asoundrc

RATE = 48000
FRAMES_PER_S = 50


def thread_ns(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0])


async def one_pass(seconds: float, capture_device: str, playback_device: str) -> dict[str, float]:
    from riptphone.hw.alsa import AlsaCapture, AlsaPlayback

    loop = asyncio.get_running_loop()
    out = AlsaPlayback(playback_device, RATE)
    cap = AlsaCapture(capture_device, RATE, loop=loop, on_frame=out.write)
    out.start()
    cap.start()
    try:
        await asyncio.sleep(0.5)  # past the start
        threads = {"capture": cap._thread, "playback": out._thread}
        tids = {name: t.native_id for name, t in threads.items() if t and t.native_id}
        before = {name: thread_ns(tid) for name, tid in tids.items()}
        began = time.monotonic()
        while time.monotonic() - began < seconds:
            busy = 0
            for i in range(20000):  # ~1 ms of Python holding the GIL
                busy += i
            await asyncio.sleep(0.004)
        wall = time.monotonic() - began
        return {
            name: (thread_ns(tid) - before[name]) / 1e9 * 60 / wall for name, tid in tids.items()
        }
    finally:
        cap.stop()
        out.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-alsa-") as work:
        files = write_asoundrc(Path(work), bytes(RATE * 2 * int(args.seconds + 5)))
        os.environ["ALSA_CONFIG_PATH"] = files.config_path
        results: dict[str, list[float]] = {"capture": [], "playback": []}
        for n in range(args.passes):
            got = asyncio.run(one_pass(args.seconds, files.capture_device, files.playback_device))
            for name, per_min in got.items():
                results[name].append(per_min)
            print(
                f"pass {n + 1}: "
                + "  ".join(
                    f"{k} {v:.3f} s/min ({v / 60 / FRAMES_PER_S * 1e6:.0f} µs/frame)"
                    for k, v in got.items()
                ),
                flush=True,
            )
        medians = {k: statistics.median(v) for k, v in results.items()}
        print(
            "median: "
            + "  ".join(
                f"{k} {v:.3f} s/min ({v / 60 / FRAMES_PER_S * 1e6:.0f} µs/frame)"
                for k, v in medians.items()
            )
        )


if __name__ == "__main__":
    main()
