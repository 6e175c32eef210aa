"""The provider's write-behind thread for the broker files (riptprovider.broker._Writer)."""

from __future__ import annotations

import threading
import time

from riptprovider.broker import _Writer


def test_a_waiter_that_gave_up_does_not_end_the_writer() -> None:
    # A registration waits at most 3 s for the broker, then cancels its future; the
    # write it waited for still finishes, and later changes must still be written.
    release = threading.Event()
    flushes: list[float] = []

    def flush() -> None:
        release.wait(5)
        flushes.append(time.monotonic())

    writer = _Writer(flush)
    try:
        writer.request()
        gave_up = writer.settled()
        gave_up.cancel()  # as asyncio.wait_for(wrap_future(...)) does on its timeout
        release.set()
        writer.request()
        later = writer.settled()
        later.result(timeout=5)  # before the fix: the thread died, this never resolved
        assert flushes  # (the two changes may share one flush)
        writer.request()
        writer.settled().result(timeout=5)  # and it goes on
    finally:
        writer.close()
