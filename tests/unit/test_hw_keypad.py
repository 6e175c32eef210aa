"""The matrix keypad scanner against a mock key matrix (gpiozero MockFactory)."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from riptphone.hw.events import HwEvent, KeyDown, KeyLongPress, KeyUp
from riptphone.hw.keypad import KeyMatrix, Keypad, ambiguous

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from hwmock import KeyMatrix as MockMatrix  # noqa: E402
from hwmock import mock_factory  # noqa: E402

ROWS = [5, 6, 13, 26]
COLUMNS = [12, 16, 25]
COLUMNS_4X4 = [12, 16, 25, 7]
SCAN_S = 0.01


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    with mock_factory() as f:
        yield f


class Bench:
    """A keypad scanned by hand with a fake clock, on a mock matrix."""

    def __init__(self, factory: MockFactory, layout: str = "4x3") -> None:
        columns = COLUMNS if layout == "4x3" else COLUMNS_4X4
        self.matrix = MockMatrix(factory, ROWS, columns, layout)
        self.events: list[HwEvent] = []
        self.keypad = Keypad(ROWS, columns, self.events.append, layout=layout)
        self.now = 0.0

    def scan(self, seconds: float) -> None:
        for _ in range(round(seconds / SCAN_S)):
            self.keypad.scan_once(self.now)
            self.now += SCAN_S

    def type(self, keys: str, bounce: bool = False) -> None:
        for key in keys:
            if bounce:  # the contact chatters between the first scans
                for i in range(3):
                    (self.matrix.press if i % 2 == 0 else self.matrix.release)(key)
                    self.scan(SCAN_S)
            self.matrix.press(key)
            self.scan(0.06)
            if bounce:
                for i in range(3):
                    (self.matrix.release if i % 2 == 0 else self.matrix.press)(key)
                    self.scan(SCAN_S)
            self.matrix.release(key)
            self.scan(0.06)


def typed(keys: str) -> list[HwEvent]:
    out: list[HwEvent] = []
    for key in keys:
        out += [KeyDown(key), KeyUp(key, long=False)]
    return out


@pytest.mark.parametrize("bounce", [False, True])
def test_a_typed_number_gives_exactly_its_keys_in_order(factory: MockFactory, bounce: bool) -> None:
    bench = Bench(factory)
    try:
        bench.type("14089529999#", bounce=bounce)
        bench.type("*0", bounce=bounce)
        assert bench.events == typed("14089529999#*0")
        assert bench.keypad.matrix.ghost_scans == 0
    finally:
        bench.keypad.close()


def test_every_key_of_a_4x4_keypad(factory: MockFactory) -> None:
    bench = Bench(factory, "4x4")
    try:
        bench.type("123A456B789C*0#D")
        assert bench.events == typed("123A456B789C*0#D")
    finally:
        bench.keypad.close()


def test_a_held_key_is_a_long_press(factory: MockFactory) -> None:
    bench = Bench(factory)
    try:
        bench.matrix.press("0")
        bench.scan(0.5)
        assert bench.events == [KeyDown("0")]
        bench.scan(1.0)
        assert bench.events == [KeyDown("0"), KeyLongPress("0")]
        bench.matrix.release("0")
        bench.scan(0.1)
        assert bench.events == [KeyDown("0"), KeyLongPress("0"), KeyUp("0", long=True)]
    finally:
        bench.keypad.close()


def test_a_scan_that_shows_ghosting_is_ignored(factory: MockFactory) -> None:
    bench = Bench(factory)
    try:
        bench.matrix.press("1")
        bench.scan(0.1)
        # 1, 2 and 4 sit on three corners of a rectangle: 5 reads pressed too.
        bench.matrix.press("2", "4")
        assert bench.keypad.read() == {(0, 0), (0, 1), (1, 0), (1, 1)}
        bench.scan(0.3)
        assert bench.keypad.matrix.ghost_scans == 30
        assert bench.keypad.pressed == {"1"}
        bench.matrix.release("2", "4")
        bench.scan(0.1)
        bench.matrix.release("1")
        bench.scan(0.1)
        assert bench.events == [KeyDown("1"), KeyUp("1")]
    finally:
        bench.keypad.close()


@pytest.mark.parametrize("keys", ["19", "3*", "50", "12", "47"])
def test_two_keys_held_together_without_a_possible_phantom_are_both_reported(
    factory: MockFactory, keys: str
) -> None:
    bench = Bench(factory)
    try:
        bench.matrix.press(*keys)
        bench.scan(0.1)
        assert bench.keypad.pressed == set(keys)
        assert sorted(e.key for e in bench.events if isinstance(e, KeyDown)) == sorted(keys)
        bench.matrix.release(*keys)
        bench.scan(0.1)
        assert sorted(e.key for e in bench.events if isinstance(e, KeyUp)) == sorted(keys)
        assert bench.keypad.matrix.ghost_scans == 0
    finally:
        bench.keypad.close()


def test_the_ghosting_rule() -> None:
    assert not ambiguous([])
    assert not ambiguous([(0, 0), (0, 1), (0, 2)])  # one row
    assert not ambiguous([(0, 1), (1, 1), (3, 1)])  # one column
    assert not ambiguous([(0, 0), (1, 1), (2, 2)])  # a diagonal
    assert ambiguous([(0, 0), (0, 1), (1, 0)])  # three corners
    assert ambiguous([(0, 0), (0, 2), (3, 0), (3, 2)])
    assert ambiguous([(1, 1), (3, 1), (3, 0)])


def test_the_sans_io_matrix_debounces_each_key() -> None:
    m = KeyMatrix(("12", "34"), debounce_ms=20, long_press_ms=800)
    assert m.feed({(0, 0)}, 0.0) == []
    assert m.feed(set(), 0.01) == []  # chatter
    assert m.feed({(0, 0)}, 0.02) == []
    assert m.feed({(0, 0)}, 0.04) == [KeyDown("1")]
    assert m.feed({(0, 0), (1, 1)}, 0.05) == []
    assert m.feed({(0, 0), (1, 1)}, 0.07) == [KeyDown("4")]
    assert m.pressed == {"1", "4"}


def test_the_scan_thread_reports_keys(factory: MockFactory) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS)
    events: queue.Queue[tuple[HwEvent, str]] = queue.Queue()
    keypad = Keypad(
        ROWS, COLUMNS, lambda e: events.put((e, threading.current_thread().name)), scan_ms=2
    )
    try:
        keypad.start()
        for key in "911":
            matrix.press(key)
            assert events.get(timeout=10) == (KeyDown(key), "keypad-gpio5")
            matrix.release(key)
            assert events.get(timeout=10) == (KeyUp(key), "keypad-gpio5")
    finally:
        keypad.close()
    assert events.empty()


def test_wrong_pin_counts_are_refused(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="4x4 keypad needs 4 row pins and 4 column pins"):
        Keypad(ROWS, COLUMNS, print, layout="4x4")
    with pytest.raises(ValueError, match="layout"):
        Keypad(ROWS, COLUMNS, print, layout="3x4")


def test_close_releases_the_pins(factory: MockFactory) -> None:
    Keypad(ROWS, COLUMNS, print).close()
    Keypad(ROWS, COLUMNS, print).close()  # GPIOPinInUse if the first kept them


def test_one_row_is_driven_low_at_a_time_and_the_others_float(factory: MockFactory) -> None:
    matrix = MockMatrix(factory, ROWS, COLUMNS)
    driven: list[list[tuple[int, bool]]] = []
    update = matrix.update

    def watch() -> None:
        driven.append([(r, p.state) for r, p in enumerate(matrix.rows) if p.function == "output"])
        update()

    matrix.update = watch
    with Keypad(ROWS, COLUMNS, print) as keypad:
        driven.clear()
        keypad.read()
        assert max(len(rows) for rows in driven) == 1
        assert [rows[0] for rows in driven if rows] == [(r, False) for r in range(4)]
        assert all(pin.function == "input" and pin.pull == "floating" for pin in matrix.rows)
        assert all(pin.pull == "up" for pin in matrix.columns)
