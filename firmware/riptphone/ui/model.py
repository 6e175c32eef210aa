"""The screens the phone can show, as plain values.

The phone's state machine (:mod:`riptphone.app`) decides *which* screen is
up and fills in its fields; :mod:`riptphone.ui.render` turns one into a
128x64 picture for the OLED and :mod:`riptphone.ui.text` into the text lines
of the control socket's ``screen`` field.  Keeping the model apart from both
lets the same decision drive the OLED, the terminal emulator and the tests,
and lets every screen be rendered from a made-up value (``docs/screens/``).

No field holds pixels, fonts or layout: a model says what the user must be
told, the renderer decides how it fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PushState = Literal["up", "down", "none"]


@dataclass(frozen=True, slots=True)
class Boot:
    """Power-on, before the configuration and state are read."""

    version: str
    detail: str = ""  # "reading state", "starting audio"...


@dataclass(frozen=True, slots=True)
class NotProvisioned:
    """No token: the OAuth device flow's QR code and user code (profile section 2)."""

    url: str  # verification_uri_complete, drawn as a QR code
    user_code: str
    expires_in_s: int | None = None


@dataclass(frozen=True, slots=True)
class NotConnected:
    """Not registered: still trying (``registering``) or waiting to retry."""

    reason: str
    registering: bool = False
    retry_in_s: int | None = None


@dataclass(frozen=True, slots=True)
class Idle:
    """On hook, nothing happening."""

    number: str | None  # own number, E.164
    name: str  # the handler's name
    clock: str  # "14:05", filled in by the caller so rendering stays pure
    registered: bool = True
    push: PushState = "none"
    missed: int = 0  # missed calls since the log was last looked at
    dnd: bool = False
    last_error: str | None = None  # e.g. "the provider refused: 403", shown until the next key


@dataclass(frozen=True, slots=True)
class Dialling:
    """Off hook, digits being typed (empty: dial tone)."""

    typed: str
    preview: str | None = None  # the E.164 number the digits make, once they make one
    problem: str | None = None  # why the digits cannot be dialled, when known


@dataclass(frozen=True, slots=True)
class Calling:
    """An outbound call not yet answered."""

    peer: str  # E.164
    peer_name: str | None = None
    alerting: bool = False  # the far end is ringing


@dataclass(frozen=True, slots=True)
class Ringing:
    """A call waiting for this phone: inbound, or a 3PCC outbound call to be taken."""

    peer: str  # caller id (inbound) or the number to be called (3PCC outbound)
    peer_name: str | None = None
    outbound: bool = False  # 3PCC: "call to X - lift to start"


@dataclass(frozen=True, slots=True)
class InCall:
    """A call whose media this phone carries."""

    peer: str
    seconds: int
    peer_name: str | None = None
    codec: str | None = None  # "OPUS", "PCMU"...; None until media flows
    quality: int | None = None  # 0 (bad) to 4 (good), from acks; None: not measured yet
    muted: bool = False
    reconnecting: bool = False  # byways being re-established (draft section 9.13)
    volume: int | None = None  # percent, shown for a moment after a change
    no_audio: bool = False  # the audio device is gone: the call goes on, the device is retried


@dataclass(frozen=True, slots=True)
class RemoteInUse:
    """A call of this line carried by another device; it can be pulled here."""

    peer: str
    device: str | None = None  # the other handler's name, when known
    peer_name: str | None = None


@dataclass(frozen=True, slots=True)
class CallSummary:
    """A call just ended; shown for a few seconds."""

    peer: str
    reason: str  # "hung up", "declined", "busy", "no answer", "the provider refused: 404"...
    seconds: int | None = None  # talk time, if the call was answered
    peer_name: str | None = None


@dataclass(frozen=True, slots=True)
class Resetting:
    """Factory reset under way: the login, handler and call log are being forgotten."""


@dataclass(frozen=True, slots=True)
class Error:
    """Something the user must fix (bad config, no audio device...)."""

    message: str
    title: str = "Error"


Screen = (
    Boot
    | NotProvisioned
    | NotConnected
    | Idle
    | Dialling
    | Calling
    | Ringing
    | InCall
    | RemoteInUse
    | CallSummary
    | Resetting
    | Error
)
"""Any one screen."""
