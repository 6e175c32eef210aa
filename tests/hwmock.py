"""gpiozero MockFactory models of the handset's wiring: a key matrix and bouncing contacts.

:class:`KeyMatrix` wires mock row and column pins like a real keypad without
diodes: each pressed key joins its row to its column, and a column reads low
when any path of pressed keys joins it to a row that is driven low (an output
at 0).  Rows that float (inputs) pass the path on, so three pressed corners
of a rectangle make the fourth read pressed, exactly the ghosting a real
keypad shows.  Create it before the scanner so the factory hands the scanner
these pins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

__all__ = ["KeyMatrix", "MatrixRowPin", "bounce", "mock_factory"]

LAYOUTS = {
    "4x3": ("123", "456", "789", "*0#"),
    "4x4": ("123A", "456B", "789C", "*0#D"),
}


@contextmanager
def mock_factory() -> Iterator[MockFactory]:
    """A fresh MockFactory as ``Device.pin_factory`` for one test, closed afterwards."""
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    try:
        yield factory
    finally:
        factory.close()
        factory.reset()
        Device.pin_factory = previous


class MatrixRowPin(MockPin):  # type: ignore[misc]
    """A row pin that tells its matrix whenever it is driven or released."""

    def __init__(self, factory: Any, info: Any, matrix: KeyMatrix | None = None) -> None:
        self.matrix = matrix
        super().__init__(factory, info)

    def _set_function(self, value: str) -> None:
        super()._set_function(value)
        if self.matrix is not None:
            self.matrix.update()

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and self.matrix is not None:
            self.matrix.update()
        return changed


class KeyMatrix:
    """A keypad's wiring on ``factory``'s pins: press/release keys, the columns follow."""

    def __init__(
        self,
        factory: MockFactory,
        rows: Sequence[int],
        columns: Sequence[int],
        layout: str | Sequence[str] = "4x3",
    ) -> None:
        labels = LAYOUTS[layout] if isinstance(layout, str) else tuple(layout)
        self.cells = {label: (r, c) for r, row in enumerate(labels) for c, label in enumerate(row)}
        self._lock = threading.RLock()
        self._pressed: set[tuple[int, int]] = set()
        self.rows = [factory.pin(p, pin_class=MatrixRowPin, matrix=None) for p in rows]
        for pin in self.rows:
            pin.matrix = self
        self.columns = [factory.pin(p) for p in columns]
        self.update()

    @property
    def pressed(self) -> frozenset[str]:
        with self._lock:
            return frozenset(k for k, cell in self.cells.items() if cell in self._pressed)

    def press(self, *keys: str) -> None:
        with self._lock:
            self._pressed.update(self.cells[k] for k in keys)
            self.update()

    def release(self, *keys: str) -> None:
        with self._lock:
            self._pressed.difference_update(self.cells[k] for k in keys)
            self.update()

    def release_all(self) -> None:
        with self._lock:
            self._pressed.clear()
            self.update()

    def update(self) -> None:
        """Recompute every column from the rows' drive and the pressed keys."""
        with self._lock:
            low_rows = [
                r for r, pin in enumerate(self.rows) if pin.function == "output" and not pin.state
            ]
            # Flood from the driven rows through pressed keys, rows and columns alike.
            low_cols: set[int] = set()
            seen_rows = set(low_rows)
            frontier = list(low_rows)
            while frontier:
                r = frontier.pop()
                for pr, pc in self._pressed:
                    if pr == r and pc not in low_cols:
                        low_cols.add(pc)
                        for qr, qc in self._pressed:
                            if qc == pc and qr not in seen_rows:
                                seen_rows.add(qr)
                                frontier.append(qr)
            for c, pin in enumerate(self.columns):
                if pin.function != "input":
                    continue
                if c in low_cols:
                    pin.drive_low()
                elif pin.pull == "up":
                    pin.drive_high()


def bounce(
    set_level: Callable[[bool], None],
    final: bool,
    transitions: int = 7,
    between: Callable[[], None] | None = None,
) -> list[bool]:
    """Chatter a contact into ``final``: alternate levels ending on ``final``.

    ``between`` runs after each change (a scan or a few samples), so every
    intermediate level is seen.  Returns the levels set.
    """
    levels = [final if (transitions - i) % 2 == 0 else not final for i in range(transitions + 1)]
    for level in levels:
        set_level(level)
        if between is not None:
            between()
    return levels


def pin_setter(pin: MockPin) -> Callable[[bool], None]:
    """``set_level(level)`` for an input mock pin (True: high)."""

    def set_level(level: bool) -> None:
        if level:
            pin.drive_high()
        else:
            pin.drive_low()

    return set_level
