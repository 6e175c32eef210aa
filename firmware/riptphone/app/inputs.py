"""What can happen to the phone: the inputs of :class:`riptphone.app.machine.PhoneMachine`.

Three sources feed the same machine: the handset (hook, keypad, buttons; the
control socket sends the very same values), the line (registration and push
status from the daemon's connection to the provider) and calls (the daemon
translates each call's :class:`ript.protocol.call.Call` actions and
3PCC taps into the call inputs below).  Timers are not inputs: the daemon
calls :meth:`PhoneMachine.handle_timer` at :meth:`PhoneMachine.next_deadline`,
or feeds :class:`Tick`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ript.protocol.numbers import DialPlan

KEYS = frozenset("0123456789*#ABCD")
BUTTON_NAMES = ("pull", "mute", "volume-up", "volume-down", "redial", "dnd", "flash")

CallPhase = Literal["calling", "alerting", "in-call"]
PushState = Literal["up", "down", "none"]


@dataclass(frozen=True, slots=True)
class Input:
    """Base of every input."""


@dataclass(frozen=True, slots=True)
class HookOff(Input):
    """The handset was lifted (or ``{"cmd": "hook", "state": "off"}``)."""


@dataclass(frozen=True, slots=True)
class HookOn(Input):
    """The handset was put down."""


def _check_key(key: str) -> None:
    if key not in KEYS:
        raise ValueError(f"{key!r} is not a key of the keypad (0-9, *, #, A-D)")


@dataclass(frozen=True, slots=True)
class Key(Input):
    """A short press of a keypad key."""

    key: str

    def __post_init__(self) -> None:
        _check_key(self.key)


@dataclass(frozen=True, slots=True)
class KeyLong(Input):
    """A key held for the long-press time; the keypad reports this *instead of* :class:`Key`."""

    key: str

    def __post_init__(self) -> None:
        _check_key(self.key)


@dataclass(frozen=True, slots=True)
class Button(Input):
    """A short press of a named button; names outside :data:`BUTTON_NAMES` are refused."""

    name: str


@dataclass(frozen=True, slots=True)
class ButtonLong(Input):
    """A named button held for the long-press time (reported instead of :class:`Button`)."""

    name: str


@dataclass(frozen=True, slots=True)
class Dial(Input):
    """``{"cmd": "dial"}``: a number as if typed and sent with ``#``."""

    number: str


@dataclass(frozen=True, slots=True)
class LineOnline(Input):
    """Registered: the handler is up and the phone may call (profile section 4)."""

    number: str | None
    name: str = ""


@dataclass(frozen=True, slots=True)
class LineOffline(Input):
    """Not registered; ``registering`` while an attempt is under way."""

    reason: str
    registering: bool = False
    retry_in_s: int | None = None


@dataclass(frozen=True, slots=True)
class Provisioning(Input):
    """No token: the OAuth device flow is waiting for the user (profile section 2)."""

    url: str
    user_code: str
    expires_in_s: int | None = None


@dataclass(frozen=True, slots=True)
class ResetRequested(Input):
    """Factory reset: ``*`` and ``#`` held together on hook (``keypad``) or the control socket."""

    source: str = "keypad"


@dataclass(frozen=True, slots=True)
class Reconfigured(Input):
    """The configuration was re-read (SIGHUP): the volume and dial plan to use from now on."""

    volume: int
    plan: DialPlan
    interdigit_timeout: float


@dataclass(frozen=True, slots=True)
class PushChanged(Input):
    """The push channel (profile section 9) went up or down, or there is none."""

    status: PushState


@dataclass(frozen=True, slots=True)
class CallOffered(Input):
    """A call waiting for this phone: inbound and ringing, or (``outbound``) a 3PCC call to take."""

    uri: str
    peer: str
    peer_name: str | None = None
    outbound: bool = False


@dataclass(frozen=True, slots=True)
class CallProgress(Input):
    """A call handled here moved on: being set up, the far end ringing, or answered (media)."""

    uri: str
    state: CallPhase
    codec: str | None = None
    quality: int | None = None
    no_audio: bool = False  # the microphone or earpiece is gone (retried every second)


@dataclass(frozen=True, slots=True)
class CallRemote(Input):
    """A call of this line is handled by another device (answered or moved there)."""

    uri: str
    peer: str
    device: str | None = None
    peer_name: str | None = None
    outbound: bool | None = None  # the call's direction, when the daemon knows it (for the log)


@dataclass(frozen=True, slots=True)
class CallResumed(Input):
    """A call this phone carried before it restarted (a crash, a power cut), claimed again.

    The machine decides from the hook whether it goes on here (handset up) or is
    hung up (handset down); ``state`` is where the call stands now.
    """

    uri: str
    peer: str
    state: CallPhase
    peer_name: str | None = None
    outbound: bool = False


@dataclass(frozen=True, slots=True)
class CallGone(Input):
    """A call is over (any final state, or its URI answered 404)."""

    uri: str
    reason: str
    talk_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class CallFailed(Input):
    """The provider refused what this phone asked: a dial, an answer, a pull or a take."""

    reason: str


@dataclass(frozen=True, slots=True)
class CallReconnecting(Input):
    """The call's byways are being re-established (``on``) or are back (draft section 9.13)."""

    uri: str
    on: bool


@dataclass(frozen=True, slots=True)
class TapAnswer(Input):
    """A 3PCC ``answer`` tap: answer the ringing call as if the user had lifted the handset."""

    uri: str


@dataclass(frozen=True, slots=True)
class TapDecline(Input):
    """A 3PCC ``decline`` tap: decline the ringing call."""

    uri: str


@dataclass(frozen=True, slots=True)
class Tick(Input):
    """Run the timers that are due (the same as :meth:`PhoneMachine.handle_timer`)."""


ALL_INPUTS: tuple[type[Input], ...] = (
    HookOff,
    HookOn,
    Key,
    KeyLong,
    Button,
    ButtonLong,
    Dial,
    LineOnline,
    LineOffline,
    Provisioning,
    ResetRequested,
    Reconfigured,
    PushChanged,
    CallOffered,
    CallProgress,
    CallRemote,
    CallResumed,
    CallGone,
    CallFailed,
    CallReconnecting,
    TapAnswer,
    TapDecline,
    Tick,
)
"""Every input type, in the order the state table lists them."""
