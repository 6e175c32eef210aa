"""What the handset's hardware reports: plain, hashable event values.

Every input adapter (:mod:`riptphone.hw.hook`, :mod:`riptphone.hw.keypad`,
:mod:`riptphone.hw.buttons`, and the virtual handset) calls one
``on_event(event)`` callback with these values, from its own thread; the daemon
hands them to the asyncio loop with ``loop.call_soon_threadsafe`` and the
phone's state machine (:mod:`riptphone.app`) consumes them.

Order guarantees, per key or button: ``KeyDown`` comes first, then at most one
``KeyLongPress`` (when the key is held for the long-press time), then exactly
one ``KeyUp`` whose ``long`` tells whether a ``KeyLongPress`` was sent for this
press.  A consumer that does not care about long presses acts on ``KeyDown``
(digits) and ignores the rest; one that gives a key two meanings acts on
``KeyUp(long=False)`` (short) and ``KeyLongPress`` (long), never on both.
All values are already debounced: a bouncing contact gives one event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "KEYS",
    "ButtonDown",
    "ButtonLongPress",
    "ButtonUp",
    "EventSink",
    "HookChanged",
    "HwEvent",
    "KeyDown",
    "KeyLongPress",
    "KeyUp",
]

KEYS = frozenset("0123456789*#ABCD")
"""Every key a keypad can report: A-D only exist on a 4x4 keypad."""


@dataclass(frozen=True, slots=True)
class HookChanged:
    """The handset was lifted (``off_hook=True``) or put back; also sent once at start."""

    off_hook: bool


@dataclass(frozen=True, slots=True)
class KeyDown:
    """A keypad key (one of :data:`KEYS`: ``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``)
    went down."""

    key: str


@dataclass(frozen=True, slots=True)
class KeyLongPress:
    """The key has been held for the long-press time (sent once per press, while held)."""

    key: str


@dataclass(frozen=True, slots=True)
class KeyUp:
    """The key was released; ``long`` is True when a :class:`KeyLongPress` preceded it."""

    key: str
    long: bool = False


@dataclass(frozen=True, slots=True)
class ButtonDown:
    """A named extra button (``"pull"``, ``"mute"``, ``"volume-up"``, ``"volume-down"``,
    ``"redial"``, ``"dnd"``, ``"flash"``: config's ``BUTTON_NAMES``) went down."""

    name: str


@dataclass(frozen=True, slots=True)
class ButtonLongPress:
    """The button has been held for the long-press time (once per press, while held)."""

    name: str


@dataclass(frozen=True, slots=True)
class ButtonUp:
    """The button was released; ``long`` is True when a :class:`ButtonLongPress` preceded it."""

    name: str
    long: bool = False


HwEvent = HookChanged | KeyDown | KeyLongPress | KeyUp | ButtonDown | ButtonLongPress | ButtonUp
"""Any event the handset reports."""

EventSink = Callable[[HwEvent], None]
"""The ``on_event`` callback every adapter takes; called from the adapter's own thread."""
