"""What the phone must do: the actions :class:`riptphone.app.machine.PhoneMachine` returns.

The daemon carries each one out in order.  Call actions name the call by its
URI; the daemon maps them onto the call's :class:`ript.protocol.call.Call`
(``Answer`` is its ``answer()``, ``Pull`` and ``Take`` are ``pull()``...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from riptphone.app.calllog import CallLogEntry
from riptphone.ui.model import Screen

ToneKind = Literal["dial", "ringback", "busy", "off"]


@dataclass(frozen=True, slots=True)
class Output:
    """Base of every action."""


@dataclass(frozen=True, slots=True)
class PlaceCall(Output):
    """Place a call: ``number`` as typed, ``e164`` as the dial plan normalised it."""

    number: str
    e164: str


@dataclass(frozen=True, slots=True)
class Answer(Output):
    uri: str


@dataclass(frozen=True, slots=True)
class Decline(Output):
    uri: str


@dataclass(frozen=True, slots=True)
class Hangup(Output):
    uri: str


@dataclass(frozen=True, slots=True)
class Pull(Output):
    """Take a remote-in-use call here (POST its own handler)."""

    uri: str


@dataclass(frozen=True, slots=True)
class Take(Output):
    """Take a 3PCC outbound call offered here (the user lifted the handset)."""

    uri: str


@dataclass(frozen=True, slots=True)
class SendDigit(Output):
    """A key pressed during a call: send it as DTMF."""

    key: str


@dataclass(frozen=True, slots=True)
class Tone(Output):
    """Play a local tone in the earpiece, or stop it (``off``)."""

    kind: ToneKind


@dataclass(frozen=True, slots=True)
class SetRinger(Output):
    on: bool


@dataclass(frozen=True, slots=True)
class SetMute(Output):
    muted: bool


@dataclass(frozen=True, slots=True)
class SetVolume(Output):
    """The playback volume, 0 to 100 percent."""

    percent: int


@dataclass(frozen=True, slots=True)
class Show(Output):
    """Put this screen up (emitted only when the screen changed)."""

    screen: Screen


@dataclass(frozen=True, slots=True)
class PhoneState(Output):
    """The profile section 11 state changed to ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class SaveCallLog(Output):
    """Store the whole call log (newest first); see :func:`riptphone.app.calllog.to_json`."""

    entries: tuple[CallLogEntry, ...]


@dataclass(frozen=True, slots=True)
class ResetPhone(Output):
    """Factory reset: forget the login, the handler and the call log, then log in anew."""


@dataclass(frozen=True, slots=True)
class Refuse(Output):
    """A request that does not fit now: report ``message`` (control socket error, log line)."""

    message: str
