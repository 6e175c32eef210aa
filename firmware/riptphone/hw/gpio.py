"""The whole GPIO handset: hook, keypad, buttons, ringer and LED, started and stopped together.

Every input reports through one ``on_event`` callback from its own thread
(hook, keypad and buttons each sample on theirs).  The daemon builds this from
``HardwareConfig`` and posts events into its loop with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

from riptphone.hw.buttons import Buttons, Led, Ringer
from riptphone.hw.events import EventSink
from riptphone.hw.hook import Hook
from riptphone.hw.keypad import Keypad
from riptphone.hw.poller import Clock

__all__ = ["GpioHandset"]


class GpioHandset:
    """Builds the parts from plain arguments; ``keypad="none"`` or a pin of -1 leaves one out.

    If any part fails to open (a pin already in use), the parts opened so far
    are closed before the error propagates.
    """

    def __init__(
        self,
        on_event: EventSink,
        *,
        hook_pin: int = 17,
        hook_wiring: str = "normally-open",
        hook_debounce_ms: int = 50,
        keypad: str = "4x3",
        keypad_rows: Sequence[int] = (5, 6, 13, 26),
        keypad_columns: Sequence[int] = (12, 16, 25),
        keypad_debounce_ms: int = 20,
        long_press_ms: int = 800,
        buttons: Iterable[str] = (
            "pull:22",
            "mute:23",
            "volume-up:27",
            "volume-down:24",
            "redial:4",
        ),
        button_debounce_ms: int = 30,
        ringer_pin: int = -1,
        led_pin: int = -1,
        clock: Clock = time.monotonic,
        pin_factory: Any = None,
    ) -> None:
        self.hook: Hook | None = None
        self.keypad: Keypad | None = None
        self.buttons: Buttons | None = None
        self.ringer: Ringer | None = None
        self.led: Led | None = None
        try:
            self.hook = Hook(
                hook_pin,
                on_event,
                wiring=hook_wiring,
                debounce_ms=hook_debounce_ms,
                clock=clock,
                pin_factory=pin_factory,
            )
            if keypad != "none":
                self.keypad = Keypad(
                    keypad_rows,
                    keypad_columns,
                    on_event,
                    layout=keypad,
                    debounce_ms=keypad_debounce_ms,
                    long_press_ms=long_press_ms,
                    clock=clock,
                    pin_factory=pin_factory,
                )
            self.buttons = Buttons(
                buttons,
                on_event,
                debounce_ms=button_debounce_ms,
                long_press_ms=long_press_ms,
                clock=clock,
                pin_factory=pin_factory,
            )
            if ringer_pin >= 0:
                self.ringer = Ringer(ringer_pin, pin_factory=pin_factory)
            if led_pin >= 0:
                self.led = Led(led_pin, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        """Start every input's thread (the hook reports its state once it is stable)."""
        for part in (self.hook, self.keypad, self.buttons):
            if part is not None:
                part.start()

    def stop(self) -> None:
        for part in (self.hook, self.keypad, self.buttons):
            if part is not None:
                part.stop()

    def close(self) -> None:
        """Stop the threads, switch the outputs off and release every pin."""
        for part in (self.hook, self.keypad, self.buttons, self.ringer, self.led):
            if part is not None:
                part.close()

    def __enter__(self) -> GpioHandset:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
