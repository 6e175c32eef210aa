"""The virtual handset: typed characters become the same events as the GPIO handset's."""

from __future__ import annotations

import os
import threading

from riptphone.hw.events import (
    ButtonDown,
    ButtonLongPress,
    ButtonUp,
    HookChanged,
    HwEvent,
    KeyDown,
    KeyUp,
)
from riptphone.hw.virtual import KeyboardHandset, events_for, help_text


def test_characters_map_to_events() -> None:
    assert events_for("5", off_hook=False) == [KeyDown("5"), KeyUp("5")]
    assert events_for("#", off_hook=True) == [KeyDown("#"), KeyUp("#")]
    assert events_for(" ", off_hook=False) == [HookChanged(True)]
    assert events_for("h", off_hook=True) == [HookChanged(False)]
    assert events_for("m", off_hook=True) == [ButtonDown("mute"), ButtonUp("mute")]
    assert events_for("+", off_hook=True) == [ButtonDown("volume-up"), ButtonUp("volume-up")]
    assert events_for("P", off_hook=True) == [
        ButtonDown("pull"),
        ButtonLongPress("pull"),
        ButtonUp("pull", long=True),
    ]
    assert events_for("\n", off_hook=True) == []
    assert events_for("x", off_hook=True) == []


def test_help_names_every_button() -> None:
    text = help_text()
    for name in ("pull", "mute", "redial", "volume-up", "volume-down", "dnd", "flash"):
        assert name in text


def test_a_pipe_drives_the_handset_like_a_keyboard() -> None:
    read_fd, write_fd = os.pipe()
    events: list[HwEvent] = []
    done = threading.Event()

    def sink(event: HwEvent) -> None:
        events.append(event)
        if event == HookChanged(False) and len(events) > 1:
            done.set()

    with os.fdopen(read_fd, "rb") as stream:
        handset = KeyboardHandset(sink, stream)
        handset.start()
        os.write(write_fd, b" 12#\nh")
        assert done.wait(10)
        handset.stop()
    os.close(write_fd)
    assert events == [
        HookChanged(False),
        HookChanged(True),
        KeyDown("1"),
        KeyUp("1"),
        KeyDown("2"),
        KeyUp("2"),
        KeyDown("#"),
        KeyUp("#"),
        HookChanged(False),
    ]
