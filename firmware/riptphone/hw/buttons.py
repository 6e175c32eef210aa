"""Extra named buttons (pull, mute, volume, redial...) and the ringer/LED outputs.

Buttons: each on its own pin, pulled up, closing to ground; all sampled every
``poll_ms`` on one thread, debounced, with long presses, reported as
:class:`~riptphone.hw.events.ButtonDown` / ``ButtonLongPress`` / ``ButtonUp``.

Outputs: :class:`Ringer` (a buzzer through a transistor, or a relay) and
:class:`Led` drive one pin each, steadily or in a repeating on/off pattern
played on a small thread of their own, so the caller only says what it wants
("ring", "blink", "off") and never times pulses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from gpiozero import DigitalOutputDevice, InputDevice

from riptphone.hw.debounce import Press, PressDetector
from riptphone.hw.events import ButtonDown, ButtonLongPress, ButtonUp, EventSink
from riptphone.hw.poller import Clock, PollThread

__all__ = [
    "RING_UK",
    "RING_US",
    "ButtonEvent",
    "Buttons",
    "Led",
    "PatternOutput",
    "Ringer",
    "parse_buttons",
]

ButtonEvent = ButtonDown | ButtonLongPress | ButtonUp

Pattern = Sequence[tuple[float, float]]  # (on seconds, off seconds), repeated

RING_US: Pattern = ((2.0, 4.0),)
RING_UK: Pattern = ((0.4, 0.2), (0.4, 2.0))


def parse_buttons(items: Iterable[str]) -> dict[str, int]:
    """``["mute:23", ...]`` → ``{"mute": 23, ...}``; ValueError naming the bad item."""
    out: dict[str, int] = {}
    for item in items:
        name, sep, pin = item.partition(":")
        if not name or not sep or not pin.isdigit():
            raise ValueError(f'button {item!r} must be NAME:PIN, like "mute:23"')
        if name in out:
            raise ValueError(f"button {name!r} is listed twice")
        if int(pin) in out.values():
            raise ValueError(f"button {item!r}: pin {pin} is already another button's")
        out[name] = int(pin)
    return out


class Buttons:
    """Named buttons: ``buttons`` is ``{"mute": 23, ...}`` or ``["mute:23", ...]``."""

    def __init__(
        self,
        buttons: Mapping[str, int] | Iterable[str],
        on_event: EventSink,
        *,
        debounce_ms: int = 30,
        long_press_ms: int = 800,
        poll_ms: int = 10,
        clock: Clock = time.monotonic,
        pin_factory: Any = None,
    ) -> None:
        pins = dict(buttons) if isinstance(buttons, Mapping) else parse_buttons(buttons)
        self._on_event = on_event
        self._devices: dict[str, Any] = {}
        try:
            for name, pin in pins.items():
                self._devices[name] = InputDevice(pin, pull_up=True, pin_factory=pin_factory)
        except BaseException:
            self._release()
            raise
        self._detectors = {
            name: PressDetector(debounce_ms / 1000, long_press_ms / 1000) for name in pins
        }
        self._thread = PollThread("buttons", poll_ms / 1000, self.sample, clock)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._devices)

    @property
    def pressed(self) -> frozenset[str]:
        """The buttons that are down (debounced)."""
        return frozenset(name for name, d in self._detectors.items() if d.pressed)

    def sample(self, now: float) -> list[ButtonEvent]:
        """Read every button once; report (to ``on_event``) and return the events."""
        out: list[ButtonEvent] = []
        for name, device in self._devices.items():
            for press in self._detectors[name].feed(bool(device.is_active), now):
                event = _event(name, press)
                self._on_event(event)
                out.append(event)
        return out

    def start(self) -> None:
        """Start sampling on the buttons' thread (does nothing without buttons)."""
        if self._devices:
            self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def close(self) -> None:
        """Stop the thread and release the pins."""
        self.stop()
        self._release()

    def _release(self) -> None:
        for device in self._devices.values():
            device.close()
        self._devices.clear()

    def __enter__(self) -> Buttons:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _event(name: str, press: Press) -> ButtonEvent:
    if press is Press.DOWN:
        return ButtonDown(name)
    if press is Press.LONG:
        return ButtonLongPress(name)
    return ButtonUp(name, long=press is Press.LONG_UP)


class PatternOutput:
    """One output pin: off, on, or a repeating on/off pattern (active high)."""

    def __init__(self, pin: int, *, pin_factory: Any = None) -> None:
        self._device = DigitalOutputDevice(pin, initial_value=False, pin_factory=pin_factory)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mode = "off"

    @property
    def mode(self) -> str:
        """``"off"``, ``"on"`` or ``"pattern"``."""
        return self._mode

    @property
    def is_on(self) -> bool:
        """Whether the pin is high right now."""
        return bool(self._device.value)

    def on(self) -> None:
        with self._lock:
            self._end_pattern()
            self._device.on()
            self._mode = "on"

    def off(self) -> None:
        with self._lock:
            self._end_pattern()
            self._device.off()
            self._mode = "off"

    def pattern(self, steps: Pattern) -> None:
        """Repeat ``steps`` ((on s, off s), ...) until :meth:`on` or :meth:`off`."""
        if not steps or any(on < 0 or off < 0 for on, off in steps):
            raise ValueError("a pattern needs (on, off) steps of zero or more seconds")
        if not any(on + off > 0 for on, off in steps):
            raise ValueError("a pattern needs at least one step longer than zero")
        with self._lock:
            self._end_pattern()
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._play,
                args=(tuple(steps), self._stop),
                name="output-pattern",
                daemon=True,
            )
            self._mode = "pattern"
            self._thread.start()

    def _play(self, steps: Pattern, stop: threading.Event) -> None:
        while True:
            for on_s, off_s in steps:
                if on_s > 0:
                    self._device.on()
                    if stop.wait(on_s):
                        return
                self._device.off()
                if stop.wait(off_s):
                    return

    def _end_pattern(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(2.0)

    def close(self) -> None:
        """Switch off, stop any pattern and release the pin."""
        with self._lock:
            self._end_pattern()
            self._mode = "off"
            if not self._device.closed:
                self._device.off()
        self._device.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Ringer(PatternOutput):
    """A buzzer or relay driven high while ringing, in a telephone cadence."""

    def ring(self, cadence: Pattern = RING_US) -> None:
        """Ring in ``cadence`` (:data:`RING_US`: 2 s on, 4 s off; :data:`RING_UK`) until off."""
        self.pattern(cadence)


class Led(PatternOutput):
    """A status LED: off, on, or blinking."""

    def blink(self, on_s: float = 0.5, off_s: float = 0.5) -> None:
        self.pattern(((on_s, off_s),))
