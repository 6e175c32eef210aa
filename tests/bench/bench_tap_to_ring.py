"""Tap-to-ring latency on loopback: a shoulder tap is published, the phone reports ringing.

    .venv/bin/python tests/bench/bench_tap_to_ring.py [--samples 50]

Starts ``ript-provider serve`` with its spawned mosquitto and one
``ript-phone run`` daemon as subprocesses (tests/integration/scenario.py, the
same line as the inbound end-to-end scenarios), and keeps a ``watch``
connection open on the phone's control socket, read by a thread that stamps
each line as it arrives.  Each sample injects an inbound call with the
provider's admin socket (``{"cmd": "inbound"}``) and waits for the phone's
``ring`` line; then the call is hung up (admin ``hangup``) and the phone shown
the call's end before the next sample.

What is timed: from the admin reply (the provider has created the call and
handed the tap to its MQTT publisher, which sends it at once on its own
thread: tap published) to the ``ring`` line reaching this process.  That span
holds the MQTT hop provider → mosquitto → phone (TLS, QoS 1), the phone's tap
filter, its ``GET {call}`` over HTTP/3, the state machine and the control
socket.  The span from sending the admin request is shown too (it adds the
admin round trip and the provider creating the call).  Two warm-up calls are
not counted.  Not collected by pytest.  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: alsa, integration

from integration.scenario import ACCOUNT, CALLER, Line
from riptphone.control.client import ControlClientError, ControlConnection

WAIT = 20.0
WARM_UP = 2


class StampedWatch:
    """The phone's watch lines, each with the ``time.perf_counter()`` of its arrival."""

    def __init__(self, socket_path: Path) -> None:
        self.lines: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self._conn = ControlConnection(socket_path, timeout=None)
        self._conn.request({"cmd": "watch"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while (event := self._conn.receive()) is not None:
                self.lines.put((time.perf_counter(), event))
        except (ControlClientError, OSError, ValueError):
            pass

    def until(self, event_name: str, state: str | None = None) -> float:
        """The arrival time of the next line ``event_name`` (of ``state`` for state lines)."""
        deadline = time.monotonic() + WAIT
        while True:
            stamp, event = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if event.get("event") == event_name and (state is None or event["state"] == state):
                return stamp

    def close(self) -> None:
        self._conn.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run(samples: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-tap-"))
    line = Line(work)
    after_reply: list[float] = []
    after_request: list[float] = []
    try:
        phone = line.phone("Bench")
        watch = StampedWatch(phone.socket)
        try:
            for i in range(WARM_UP + samples):
                sent = time.perf_counter()
                reply = line.admin("inbound", account=ACCOUNT, from_=CALLER)
                replied = time.perf_counter()
                rang = watch.until("ring")
                if i >= WARM_UP:
                    after_reply.append((rang - replied) * 1000)
                    after_request.append((rang - sent) * 1000)
                line.admin("hangup", call=reply["call"]["uri"])
                watch.until("state", "ended")
        finally:
            watch.close()
    finally:
        line.close()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "samples": samples,
        "tap_to_ring_ms": summary(after_reply),
        "admin_request_to_ring_ms": summary(after_request),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "p95": round(percentile(values, 0.95), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args(argv)
    result = run(args.samples)
    print(json.dumps(result, indent=1))
    ring = result["tap_to_ring_ms"]
    print(
        f"tap published -> phone ringing, {args.samples} samples: "
        f"median {ring['median']:.1f} ms, p95 {ring['p95']:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
