"""The virtual handset: the keyboard stands in for the hook, keypad and buttons.

For laptops and CI, where there is no GPIO: :class:`KeyboardHandset` reads
single key presses from a terminal (or any byte stream, such as a pipe) on
its own thread and reports the same :mod:`riptphone.hw.events` values the
GPIO adapters report, so the phone cannot tell them apart.

The keys (:data:`KEYMAP`, also shown by :func:`help_text`):

======================  =====================================================
``0``-``9`` ``*`` ``#``  keypad keys (``A``-``D`` for a 4x4 keypad)
space or ``h``           lift or replace the handset (the hook toggles)
``p`` ``m`` ``r``        pull, mute, redial
``+`` / ``-``            volume up / down
``n`` ``f``              do-not-disturb, flash
``P`` ``M`` ``R`` ``N``  the same buttons held (a long press)
======================  =====================================================

A terminal is switched to cbreak mode (keys arrive one by one, without
Enter, and are not echoed) and restored on :meth:`KeyboardHandset.stop`.
Other bytes, including newlines, are ignored, so ``printf '14089529999#'``
piped in works too.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import threading
import tty
from typing import Any, BinaryIO

from riptphone.hw.events import (
    ButtonDown,
    ButtonLongPress,
    ButtonUp,
    EventSink,
    HookChanged,
    HwEvent,
    KeyDown,
    KeyUp,
)

BUTTON_KEYS: dict[str, str] = {
    "p": "pull",
    "m": "mute",
    "r": "redial",
    "+": "volume-up",
    "=": "volume-up",  # the unshifted key under '+'
    "-": "volume-down",
    "n": "dnd",
    "f": "flash",
}
HOOK_KEYS = frozenset(" h")
KEYPAD_KEYS = frozenset("0123456789*#ABCD")

KEYMAP: dict[str, str] = {
    "0-9 * # (A-D)": "keypad keys",
    "space or h": "lift / replace the handset",
    **{k: f"{v} button" for k, v in BUTTON_KEYS.items() if k != "="},
    "P M R N F": "the same buttons held (long press)",
}


def help_text() -> str:
    """One line listing the keys, for the virtual handset's start-up banner."""
    return "keys: " + "; ".join(f"{k} = {v}" for k, v in KEYMAP.items())


def events_for(char: str, off_hook: bool) -> list[HwEvent]:
    """The events one typed character stands for, given the hook state before it."""
    if char in KEYPAD_KEYS:
        return [KeyDown(char), KeyUp(char)]
    if char in HOOK_KEYS:
        return [HookChanged(not off_hook)]
    name = BUTTON_KEYS.get(char)
    if name is not None:
        return [ButtonDown(name), ButtonUp(name)]
    name = BUTTON_KEYS.get(char.lower()) if char.isupper() else None
    if name is not None:
        return [ButtonDown(name), ButtonLongPress(name), ButtonUp(name, long=True)]
    return []


class KeyboardHandset:
    """Reads key presses from ``stream`` (default: stdin) and reports them to ``on_event``.

    The handset starts on hook; :meth:`start` reports that once, like the
    hook switch adapter does.
    """

    def __init__(self, on_event: EventSink, stream: BinaryIO | None = None) -> None:
        self._on_event = on_event
        self._fd = (stream if stream is not None else os.fdopen(0, "rb", closefd=False)).fileno()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved: list[Any] | None = None
        self.off_hook = False

    def start(self) -> None:
        if self._thread is not None:
            return
        if os.isatty(self._fd):
            self._saved = termios.tcgetattr(self._fd)
            tty.setcbreak(self._fd)
        self._on_event(HookChanged(False))
        self._thread = threading.Thread(target=self._run, name="virtual-handset", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(1.0)
        if self._saved is not None:
            with contextlib.suppress(termios.error):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def feed(self, data: bytes) -> None:
        """Act on typed bytes (what the reading thread does; tests call it directly)."""
        for char in data.decode("ascii", "ignore"):
            for event in events_for(char, self.off_hook):
                if isinstance(event, HookChanged):
                    self.off_hook = event.off_hook
                self._on_event(event)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.2)
                if not ready:
                    continue
                data = os.read(self._fd, 64)
            except OSError:
                return
            if not data:
                return  # end of input: the handset stays as it is
            self.feed(data)
