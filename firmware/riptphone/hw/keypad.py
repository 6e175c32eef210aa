"""A 4x3 or 4x4 matrix keypad, scanned on its own thread.

Scan: every ``scan_ms`` each row in turn is driven low while the others float
(high impedance, so two keys in one column cannot short a high row to a low
one), and the columns, pulled up, read low where a key joins them to the driven
row.  Without a diode per key, three keys on the corners of a rectangle make
the fourth corner read pressed too ("ghosting"); a scan whose picture could be
such a phantom is ignored as if it had not happened, and the keys keep their
last state.  Each key is debounced and long-press timed by
:class:`~riptphone.hw.debounce.PressDetector`.

:class:`KeyMatrix` is the sans-IO half (a scan picture and a clock in, events
out); :class:`Keypad` adds the pins and the thread.  ``Keypad.scan_once(now)``
runs one scan without the thread, for tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from itertools import combinations
from types import TracebackType
from typing import Any

from gpiozero import GPIODevice

from riptphone.hw.debounce import Press, PressDetector
from riptphone.hw.events import EventSink, KeyDown, KeyLongPress, KeyUp
from riptphone.hw.poller import Clock, PollThread

__all__ = ["LAYOUTS", "KeyEvent", "KeyMatrix", "Keypad", "ambiguous"]

LAYOUTS: dict[str, tuple[str, ...]] = {
    "4x3": ("123", "456", "789", "*0#"),
    "4x4": ("123A", "456B", "789C", "*0#D"),
}
"""Key labels by row (top first), each row's keys left to right."""

KeyEvent = KeyDown | KeyLongPress | KeyUp

Cell = tuple[int, int]  # (row, column), both from 0


def ambiguous(pressed: Iterable[Cell]) -> bool:
    """Whether a scan picture could hold a phantom key.

    It could when three corners of a rectangle (two rows, two columns) read
    pressed: the current then flows around the rectangle and the fourth corner
    reads pressed whether it is or not.
    """
    rows: dict[int, set[int]] = {}
    for row, column in pressed:
        rows.setdefault(row, set()).add(column)
    return any(a & b and len(a | b) >= 2 for a, b in combinations(rows.values(), 2))


class KeyMatrix:
    """Debounced keys from scan pictures (sans-IO)."""

    def __init__(
        self, layout: Sequence[str], debounce_ms: int = 20, long_press_ms: int = 800
    ) -> None:
        widths = {len(row) for row in layout}
        if not layout or len(widths) != 1:
            raise ValueError("a keypad layout needs rows of one width")
        self.layout = tuple(layout)
        self._keys = {
            (r, c): label for r, row in enumerate(self.layout) for c, label in enumerate(row)
        }
        self._detectors = {
            cell: PressDetector(debounce_ms / 1000, long_press_ms / 1000) for cell in self._keys
        }
        self.scans = 0
        self.ghost_scans = 0

    @property
    def pressed(self) -> frozenset[str]:
        """The keys that are down (debounced)."""
        return frozenset(self._keys[cell] for cell, d in self._detectors.items() if d.pressed)

    def feed(self, pressed: Iterable[Cell], now: float) -> list[KeyEvent]:
        """Take one scan picture (the cells that read pressed); return the key events."""
        cells = frozenset(pressed)
        self.scans += 1
        if ambiguous(cells):
            self.ghost_scans += 1
            return []
        out: list[KeyEvent] = []
        for cell, detector in self._detectors.items():
            for press in detector.feed(cell in cells, now):
                out.append(_event(self._keys[cell], press))
        return out


def _event(key: str, press: Press) -> KeyEvent:
    if press is Press.DOWN:
        return KeyDown(key)
    if press is Press.LONG:
        return KeyLongPress(key)
    return KeyUp(key, long=press is Press.LONG_UP)


class Keypad:
    """The matrix keypad on BCM ``rows`` (top first) and ``columns`` (left first).

    ``layout`` is ``"4x3"`` or ``"4x4"`` (see :data:`LAYOUTS`) and must match the
    number of column pins.  Events go to ``on_event`` from the scan thread.
    """

    def __init__(
        self,
        rows: Sequence[int],
        columns: Sequence[int],
        on_event: EventSink,
        *,
        layout: str = "4x3",
        debounce_ms: int = 20,
        long_press_ms: int = 800,
        scan_ms: int = 10,
        clock: Clock = time.monotonic,
        pin_factory: Any = None,
    ) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"keypad layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
        labels = LAYOUTS[layout]
        if len(rows) != len(labels) or len(columns) != len(labels[0]):
            raise ValueError(
                f"a {layout} keypad needs {len(labels)} row pins and {len(labels[0])} column "
                f"pins, not {len(rows)} and {len(columns)}"
            )
        self.matrix = KeyMatrix(labels, debounce_ms, long_press_ms)
        self._on_event = on_event
        self._devices: list[Any] = []
        try:
            # GPIODevice only reserves the pin; the scan sets function and pull itself.
            self._rows = [self._claim(p, pin_factory) for p in rows]
            self._columns = [self._claim(p, pin_factory) for p in columns]
            for pin in self._rows:
                pin.function = "input"
                pin.pull = "floating"
            for pin in self._columns:
                pin.function = "input"
                pin.pull = "up"
        except BaseException:
            self._release()
            raise
        self._thread = PollThread(f"keypad-gpio{rows[0]}", scan_ms / 1000, self.scan_once, clock)

    def _claim(self, number: int, pin_factory: Any) -> Any:
        device = GPIODevice(number, pin_factory=pin_factory)
        self._devices.append(device)
        return device.pin

    def read(self) -> frozenset[Cell]:
        """Scan the matrix once: the cells that read pressed (may include phantoms)."""
        pressed: set[Cell] = set()
        for r, row in enumerate(self._rows):
            row.function = "output"
            row.state = False
            try:
                for c, column in enumerate(self._columns):
                    if not column.state:
                        pressed.add((r, c))
            finally:
                row.function = "input"
        return frozenset(pressed)

    def scan_once(self, now: float) -> list[KeyEvent]:
        """Scan once, report (to ``on_event``) and return the key events."""
        events = self.matrix.feed(self.read(), now)
        for event in events:
            self._on_event(event)
        return events

    @property
    def pressed(self) -> frozenset[str]:
        """The keys that are down (debounced)."""
        return self.matrix.pressed

    def start(self) -> None:
        """Start scanning on the keypad's thread."""
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def close(self) -> None:
        """Stop the thread and release the pins."""
        self.stop()
        self._release()

    def _release(self) -> None:
        for device in self._devices:
            device.close()
        self._devices.clear()

    def __enter__(self) -> Keypad:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
