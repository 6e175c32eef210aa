"""The handset's screen: the machine's screens shown, the idle clock from the wall clock.

The machine's idle screen has no time of day in it (the machine is pure);
:meth:`ScreenOut.clocked` fills it in from the injected wall clock, and the
idle screen is shown again on every minute so its clock moves.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Protocol

from riptphone.ui.model import Idle, Screen


class ScreenOutput(Protocol):
    def show(self, screen: Screen) -> None: ...


class ScreenOut:
    """Shows screens on ``display``; ``current`` gives the screen to show again each minute."""

    def __init__(
        self,
        display: ScreenOutput,
        current: Callable[[], Screen],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._display = display
        self._current = current
        self._wall = wall
        self._timer: asyncio.TimerHandle | None = None

    def clocked(self, screen: Screen) -> Screen:
        """``screen`` with the idle clock set to the wall clock's local hour and minute."""
        if isinstance(screen, Idle):
            return dataclasses.replace(
                screen, clock=time.strftime("%H:%M", time.localtime(self._wall()))
            )
        return screen

    def show(self, screen: Screen) -> None:
        self._display.show(self.clocked(screen))
        if isinstance(screen, Idle) and self._timer is None:
            # The idle screen's clock moves on the minute.
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(60 - self._wall() % 60, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.show(self._current())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
