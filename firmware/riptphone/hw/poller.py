"""A thread that calls ``step(now)`` at a fixed period: how the GPIO adapters sample pins.

Polling instead of edge callbacks keeps debouncing in our own code (gpiozero's
``bounce_time`` is not applied by its mock pins, and is per-edge on hardware),
and a long press needs a timer anyway.  A few hundred pin reads a second cost
next to nothing on a Pi.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Clock", "PollThread"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]

_JOIN_TIMEOUT_S = 2.0


class PollThread:
    """Runs ``step(clock())`` every ``period_s`` on a daemon thread until :meth:`stop`.

    An exception from ``step`` (a pin that went away) ends the thread with one
    log line and is kept in :attr:`error`; the rest of the phone keeps running.
    """

    def __init__(
        self,
        name: str,
        period_s: float,
        step: Callable[[float], object],
        clock: Clock = time.monotonic,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"poll period must be positive, not {period_s}")
        self.name = name
        self.period_s = period_s
        self._step = step
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT_S)

    def _run(self) -> None:
        # Scheduled on a fixed grid so a slow step does not stretch the period.
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._step(self._clock())
            except Exception as error:
                self.error = error
                log.error("%s stopped: %s", self.name, error)
                return
            due += self.period_s
            delay = due - time.monotonic()
            if delay < 0:
                due = time.monotonic()
                delay = 0
            self._stop.wait(delay)
