"""Extra buttons, the ringer and LED outputs, and the whole GPIO handset, on mock pins."""

from __future__ import annotations

import itertools
import queue
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpiozero.exc import GPIOPinInUse
from gpiozero.pins.mock import MockFactory, MockPin

from riptphone.config import HardwareConfig
from riptphone.hw.buttons import Buttons, Led, Ringer, parse_buttons
from riptphone.hw.events import (
    ButtonDown,
    ButtonLongPress,
    ButtonUp,
    HookChanged,
    HwEvent,
    KeyDown,
    KeyUp,
)
from riptphone.hw.gpio import GpioHandset

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from hwmock import KeyMatrix, bounce, mock_factory, pin_setter  # noqa: E402


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    with mock_factory() as f:
        yield f


def test_parse_buttons() -> None:
    assert parse_buttons(["mute:23", "redial:4"]) == {"mute": 23, "redial": 4}
    assert parse_buttons(HardwareConfig().buttons) == {
        "pull": 22,
        "mute": 23,
        "volume-up": 27,
        "volume-down": 24,
        "redial": 4,
    }
    for bad, why in [
        ("mute", "NAME:PIN"),
        ("mute:x", "NAME:PIN"),
        (":4", "NAME:PIN"),
        ("mute:4,mute:5", "twice"),
        ("mute:4,pull:4", "already"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_buttons(bad.split(","))


def test_a_bouncing_press_and_a_long_press(factory: MockFactory) -> None:
    events: list[HwEvent] = []
    with Buttons(["mute:23", "redial:4"], events.append, debounce_ms=30) as buttons:
        mute = pin_setter(factory.pin(23))
        t = 0.0

        def run(seconds: float) -> None:
            nonlocal t
            for _ in range(round(seconds / 0.001)):
                buttons.sample(t)
                t += 0.001

        run(0.1)
        assert events == []
        # Chatter on the way down and up, one sample between each change.
        assert bounce(mute, False, between=lambda: run(0.002)) == [True, False] * 4
        run(0.2)
        assert buttons.pressed == {"mute"}
        bounce(mute, True, between=lambda: run(0.002))
        run(0.1)
        assert events == [ButtonDown("mute"), ButtonUp("mute", long=False)]
        redial = factory.pin(4)
        redial.drive_low()
        run(1.0)
        redial.drive_high()
        run(0.1)
        assert events[2:] == [
            ButtonDown("redial"),
            ButtonLongPress("redial"),
            ButtonUp("redial", long=True),
        ]


def wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if check():
            return True
        time.sleep(0.005)
    return check()


def levels(pin: MockPin) -> list[bool]:
    return [s.state for s in pin.states]


def test_the_ringer_rings_in_its_cadence_and_stops(factory: MockFactory) -> None:
    pin = factory.pin(10)
    with Ringer(10) as ringer:
        assert not ringer.is_on
        ringer.ring(((0.005, 0.002), (0.005, 0.01)))
        assert ringer.mode == "pattern"
        # Four pulses: on, off, on, off, on, off, on, off (after the initial low).
        assert wait_for(lambda: len(pin.states) >= 9)
        history = levels(pin)
        assert all(a != b for a, b in itertools.pairwise(history))
        ringer.off()
        assert (ringer.is_on, ringer.mode) == (False, "off")
        settled = len(pin.states)
        time.sleep(0.05)
        assert len(pin.states) == settled  # the pattern thread is gone
        ringer.on()
        assert (ringer.is_on, ringer.mode, pin.state) == (True, "on", True)
    assert not pin.state  # closing switches it off


def test_the_led_blinks_then_stays_on(factory: MockFactory) -> None:
    pin = factory.pin(9)
    with Led(9) as led:
        led.blink(0.003, 0.003)
        assert wait_for(lambda: len(pin.states) >= 7)
        led.on()
        assert led.is_on and led.mode == "on"
        settled = len(pin.states)
        time.sleep(0.05)
        assert len(pin.states) == settled
        with pytest.raises(ValueError):
            led.pattern([])
        with pytest.raises(ValueError):
            led.pattern([(0.0, 0.0)])


def test_the_handset_starts_everything_and_reports_through_one_callback(
    factory: MockFactory,
) -> None:
    cfg = HardwareConfig()
    matrix = KeyMatrix(factory, cfg.keypad_rows, cfg.keypad_columns)
    hook = factory.pin(cfg.hook_pin)
    hook.drive_high()  # normally open: on hook
    events: queue.Queue[HwEvent] = queue.Queue()
    with GpioHandset(
        events.put,
        hook_pin=cfg.hook_pin,
        hook_wiring=cfg.hook_wiring,
        hook_debounce_ms=cfg.hook_debounce_ms,
        keypad=cfg.keypad,
        keypad_rows=cfg.keypad_rows,
        keypad_columns=cfg.keypad_columns,
        keypad_debounce_ms=cfg.keypad_debounce_ms,
        long_press_ms=cfg.long_press_ms,
        buttons=cfg.buttons,
        ringer_pin=10,
        led_pin=9,
    ) as handset:
        handset.start()
        assert events.get(timeout=10) == HookChanged(off_hook=False)
        hook.drive_low()
        assert events.get(timeout=10) == HookChanged(off_hook=True)
        matrix.press("7")
        assert events.get(timeout=10) == KeyDown("7")
        matrix.release("7")
        assert events.get(timeout=10) == KeyUp("7")
        mute = factory.pin(23)
        mute.drive_low()
        assert events.get(timeout=10) == ButtonDown("mute")
        mute.drive_high()
        assert events.get(timeout=10) == ButtonUp("mute")
        assert handset.ringer is not None and handset.led is not None
        handset.ringer.on()
        assert factory.pin(10).state


def test_a_pin_conflict_closes_what_was_opened(factory: MockFactory) -> None:
    with pytest.raises(GPIOPinInUse):
        GpioHandset(print, ringer_pin=17)  # the hook's pin
    # Everything was released: the same handset without the conflict opens.
    GpioHandset(print, keypad="none", buttons=()).close()
    GpioHandset(print).close()
