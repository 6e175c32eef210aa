"""The daemon's handset: GPIO (MockFactory pins, luma's dummy display) and virtual backends."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Callable

import pytest

from hwmock import KeyMatrix, mock_factory
from riptphone import handset as handset_module
from riptphone.app.inputs import Button, ButtonLong, HookOff, HookOn, Input, Key, KeyLong
from riptphone.config import HardwareConfig
from riptphone.handset import Handset, TextDisplay, to_input
from riptphone.hw.events import (
    ButtonDown,
    ButtonLongPress,
    ButtonUp,
    HookChanged,
    KeyDown,
    KeyLongPress,
    KeyUp,
)
from riptphone.hw.oled import dummy_display
from riptphone.ui.model import Dialling, Idle


def test_hardware_events_become_machine_inputs() -> None:
    assert to_input(HookChanged(True)) == HookOff()
    assert to_input(HookChanged(False)) == HookOn()
    assert to_input(KeyDown("5")) is None
    assert to_input(KeyUp("5")) == Key("5")
    assert to_input(KeyLongPress("#")) == KeyLong("#")
    assert to_input(KeyUp("#", long=True)) is None
    assert to_input(ButtonDown("mute")) is None
    assert to_input(ButtonUp("mute")) == Button("mute")
    assert to_input(ButtonLongPress("pull")) == ButtonLong("pull")
    assert to_input(ButtonUp("pull", long=True)) is None


def test_the_text_display_boxes_each_new_screen_once() -> None:
    out = io.StringIO()
    display = TextDisplay(out)
    screen = Idle("+14085551002", "Desk phone", "14:05")
    display.show(screen)
    display.show(screen)
    first = out.getvalue()
    assert first.count("+---") == 2  # one box: its top and bottom
    assert "408" in first
    display.show(Dialling("408"))
    assert out.getvalue().count("+---") == 4


async def _wait_for(inputs: list[Input], want: Callable[[list[Input]], bool]) -> None:
    deadline = time.monotonic() + 10
    while not want(inputs):
        assert time.monotonic() < deadline, f"inputs so far: {inputs}"
        await asyncio.sleep(0.01)


def test_the_gpio_handset_reports_hook_and_keys_and_draws_screens() -> None:
    config = HardwareConfig(backend="gpio", display="none", buttons=["mute:23"])

    async def scenario() -> None:
        inputs: list[Input] = []
        with mock_factory() as factory:
            matrix = KeyMatrix(factory, config.keypad_rows, config.keypad_columns)
            hook_pin = factory.pin(config.hook_pin)
            device = dummy_display()
            handset = Handset(
                config,
                asyncio.get_running_loop(),
                inputs.append,
                pin_factory=factory,
                display_device=device,
            )
            try:
                handset.start()
                await _wait_for(inputs, lambda got: HookOn() in got)
                hook_pin.drive_low()  # normally-open: lifting closes the contact
                await _wait_for(inputs, lambda got: HookOff() in got)
                for key in "42#":
                    matrix.press(key)
                    await asyncio.sleep(0.1)
                    matrix.release(key)
                    await asyncio.sleep(0.1)
                await _wait_for(inputs, lambda got: Key("#") in got)
                handset.show(Dialling("42", preview="+14085550042"))
                deadline = time.monotonic() + 10
                while handset.display is None or handset.display.sent == 0:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.01)
                assert device.image.getbbox() is not None  # something was drawn
            finally:
                handset.close()
        keys = [i for i in inputs if isinstance(i, Key)]
        assert keys == [Key("4"), Key("2"), Key("#")]

    asyncio.run(scenario())


def test_no_backend_means_the_hook_down_once_and_no_display() -> None:
    async def scenario() -> None:
        inputs: list[Input] = []
        handset = Handset(HardwareConfig(), asyncio.get_running_loop(), inputs.append)
        handset.start()
        handset.show(Idle(None, "Desk phone", "00:00"))
        handset.ring(True)
        await asyncio.sleep(0.05)
        handset.close()
        # Only the control socket's hook, down at start, said once as every handset does
        # (a call resumed after a restart waits for the hook: docs/phone-states.md).
        assert inputs == [HookOn()]
        assert handset.display is None

    asyncio.run(scenario())


def test_an_emulated_display_without_luma_emulator_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # luma.emulator is a dev extra: a plain install has the phone, without this display.
    monkeypatch.setitem(sys.modules, "luma.emulator", None)  # None: importing it fails
    for kind in ("asciiblock", "pygame"):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="riptphone.handset"):
            assert handset_module._emulator(kind) is None
        assert [r.getMessage() for r in caplog.records] == [
            f"event=display_unavailable kind={kind} "
            "reason='luma.emulator is not installed (pip install luma.emulator)'"
        ]
    assert handset_module._emulator("text") is None
