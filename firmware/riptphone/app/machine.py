"""The phone's state machine: hook, keys, buttons, line status, calls and timers in one table.

Sans-IO in the manner of :mod:`ript.protocol.call`: the daemon feeds
:meth:`PhoneMachine.handle` an input value (:mod:`riptphone.app.inputs`) and
``now`` (a monotonic clock in seconds) and carries out the actions it gets
back (:mod:`riptphone.app.outputs`); it calls :meth:`PhoneMachine.handle_timer`
at :meth:`PhoneMachine.next_deadline`.  The control socket feeds the very same
inputs as the hardware.

:data:`TRANSITIONS` is the whole behaviour: one handler per (state, input
type).  Every other pair is in :data:`UNHANDLED`, which says whether it is
ignored (and why) or refused (with the sentence the user and the control
socket get).  ``docs/phone-states.md`` is generated from both (and from each
handler's docstring) by ``python -m riptdev states``.  The screen shown in
each state is built by :mod:`riptphone.app.screens`, the states themselves are
in :mod:`riptphone.app.states`.

Design decisions (also in the doc):

* Single line.  While the phone is busy (dialling, in a call, or a call of the
  line is in use elsewhere) a second offered call does not ring and is not
  shown: the user's other devices ring for it.  The machine remembers it; if
  it ends unanswered it is logged as missed, and if it is still ringing when
  the phone becomes free (handset down), it rings here.
* Feature codes complete on their last key: ``*78`` do-not-disturb on,
  ``*79`` off, ``*11`` pull the call in use elsewhere.
* ``#`` with nothing typed redials; a long press of ``#`` toggles
  do-not-disturb (for keypads without a ``dnd`` button).
* Keys on hook start pre-dialling: the number dials on ``#``, the
  inter-digit timeout or a digit-map match, and the user lifts to talk.
* A call of this phone's found after a restart (``CallResumed``) goes on only
  with the handset up; with it down the phone hangs up.  The hook is never
  guessed: a call resumed before the handset's first hook report waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ript.protocol.numbers import DialMatch, DialPlan, NumberError
from riptphone.app import calllog
from riptphone.app.calllog import CallLogEntry
from riptphone.app.inputs import (
    ALL_INPUTS,
    BUTTON_NAMES,
    Button,
    ButtonLong,
    CallFailed,
    CallGone,
    CallOffered,
    CallProgress,
    CallReconnecting,
    CallRemote,
    CallResumed,
    Dial,
    HookOff,
    HookOn,
    Input,
    Key,
    KeyLong,
    LineOffline,
    LineOnline,
    Provisioning,
    PushChanged,
    Reconfigured,
    ResetRequested,
    TapAnswer,
    TapDecline,
    Tick,
)
from riptphone.app.outputs import (
    Answer,
    Decline,
    Hangup,
    Output,
    PhoneState,
    PlaceCall,
    Pull,
    Refuse,
    ResetPhone,
    SaveCallLog,
    SendDigit,
    SetMute,
    SetRinger,
    SetVolume,
    Show,
    Take,
    Tone,
    ToneKind,
)
from riptphone.app.screens import make_screen
from riptphone.app.states import AT_REST, NOT_ONLINE, PROFILE_STATE, WITH_CALL, State
from riptphone.ui import model
from riptphone.ui.model import PushState, Screen

ENDED_SCREEN_S = 3.0
RESTARTED = "phone restarted"
"""Why a call resumed after a restart with the handset down ended (its ended screen)."""
VOLUME_SHOWN_S = 2.0
VOLUME_STEP = 10
MAX_TYPED = 32

FEATURE_CODES = {
    "*78": "do-not-disturb on",
    "*79": "do-not-disturb off",
    "*11": "pull the call in use on another device to this phone",
}
"""Codes typed on the keypad; each acts on its last key, without ``#``."""

BUTTONS = {
    "pull": "take the call in use on another device (remote in use) to this phone",
    "mute": "mute or unmute the microphone during a call",
    "volume-up": f"playback volume up {VOLUME_STEP}% (any state; shown on the in-call screen)",
    "volume-down": f"playback volume down {VOLUME_STEP}%",
    "redial": "dial the last number dialled (idle, dialling or call ended)",
    "dnd": "do-not-disturb on/off: inbound calls are declined at once and logged as missed",
    "flash": "in a call: hang up and get dial tone; dialling: start over; ringing: decline",
}
"""What each named button does; a long press does the same as a short one."""


_S = State


@dataclass(slots=True)
class _Call:
    """The one call the phone shows."""

    uri: str | None  # None: placed, the provider has not named it yet
    peer: str
    direction: Literal["in", "out"] | None  # None: seen only in use elsewhere
    started: float  # wall clock, for the log
    peer_name: str | None = None
    offer_outbound: bool = False  # a 3PCC outbound call offered to be taken here
    answered: bool = False  # anywhere
    talk_from: float | None = None  # monotonic, while its media is here
    talked: float = 0.0  # seconds talked here before it moved away
    alerting: bool = False
    codec: str | None = None
    quality: int | None = None
    no_audio: bool = False
    reconnecting: bool = False
    device: str | None = None
    pulling: bool = False


@dataclass(slots=True)
class _Background:
    """A call of the line the phone is not showing (see "Single line" above)."""

    uri: str
    peer: str
    peer_name: str | None
    direction: Literal["in", "out"] | None
    started: float
    remote: bool = False  # answered on another device
    device: str | None = None


Handler = Callable[["PhoneMachine", Any], None]


class PhoneMachine:
    """The phone; see the module docstring."""

    def __init__(
        self,
        plan: DialPlan,
        interdigit_timeout: float,
        *,
        log: tuple[CallLogEntry, ...] = (),
        volume: int = 50,
        dnd: bool = False,
        check_destination: Callable[[str], str | None] | None = None,
    ) -> None:
        self.plan = plan
        self.interdigit_timeout = interdigit_timeout
        self.check_destination = check_destination
        """The line's policy (the TG's outbound destinations): why an E.164 number may not
        be dialled, or None; checked before anything is sent, so a refused number never
        leaves the phone."""
        self._state = State.OFFLINE
        self.off_hook = False
        self.hook_known = False
        """Whether the handset has reported its hook once (every backend does at start)."""
        self._held: dict[str, CallResumed] = {}
        """Calls resumed after a restart before the hook was known: decided at its report."""
        self._typed = ""
        self._last_key_at: float | None = None
        self.number: str | None = None
        self.name = ""
        self.registered = False
        self.push: PushState = "none"
        self._offline = LineOffline("not connected yet", registering=True)
        self._provisioning: Provisioning | None = None
        self.resetting = False  # a factory reset is under way (its screen)
        self.dnd = dnd
        self.muted = False
        self.volume = max(0, min(100, volume))
        self._volume_until: float | None = None
        self.missed = 0
        self.log = log[: calllog.MAX_ENTRIES]
        self.last_dialled: str | None = next(
            (entry.peer for entry in self.log if entry.direction == "out"), None
        )
        self._call: _Call | None = None
        self._background: dict[str, _Background] = {}
        self._ended: model.CallSummary | None = None
        self._ended_until: float | None = None
        self._cancel_pending = False  # hung up before the provider named the placed call
        self._notice: str | None = None
        self._tone: ToneKind = "off"
        self._ringing = False
        self._now = 0.0
        self._wall = 0.0
        self._out: list[Output] = []
        self._screen: Screen = make_screen(self)

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> str:
        """The profile section 11 state name."""
        return PROFILE_STATE[self._state]

    @property
    def machine_state(self) -> State:
        return self._state

    @property
    def screen(self) -> Screen:
        return self._screen

    @property
    def typed(self) -> str:
        return self._typed

    @property
    def call_uri(self) -> str | None:
        """The URI of the call on screen, if any (and once the provider named it)."""
        return None if self._call is None else self._call.uri

    def handle(self, event: Input, now: float, wall: float | None = None) -> list[Output]:
        """Feed one input; ``wall`` (epoch seconds, default ``now``) dates call-log entries."""
        self._now = now
        self._wall = now if wall is None else wall
        self._out = []
        state, log, screen = self.state, self.log, self._screen
        if isinstance(event, HookOff | HookOn | Key | KeyLong | Button | ButtonLong | Dial):
            self._notice = None
        first_hook = isinstance(event, HookOff | HookOn) and not self.hook_known
        if first_hook:
            self.hook_known = True
        self._dispatch(event)
        if first_hook:
            # The hook's first report decides the calls resumed before it (see _resumed_rest).
            held, self._held = self._held, {}
            for resumed in held.values():
                self._dispatch(resumed)
        out = self._out
        if self.log is not log:
            out.append(SaveCallLog(self.log))
        if self.state != state:
            out.append(PhoneState(self.state))
        self._screen = make_screen(self)
        if self._screen != screen:
            out.append(Show(self._screen))
        return out

    def handle_timer(self, now: float) -> list[Output]:
        """Run the timers due at ``now``."""
        return self.handle(Tick(), now)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timer` must next be called (monotonic), or None."""
        deadlines: list[float] = []
        if self._state is State.DIALLING and self._typed and self._last_key_at is not None:
            deadlines.append(self._last_key_at + self.interdigit_timeout)
        if self._state is State.ENDED and self._ended_until is not None:
            deadlines.append(self._ended_until)
        if self._volume_until is not None:
            deadlines.append(self._volume_until)
        call = self._call
        if self._state is State.IN_CALL and call is not None and call.talk_from is not None:
            # The in-call screen counts seconds.
            elapsed = self._now - call.talk_from
            deadlines.append(call.talk_from + int(elapsed) + 1)
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------ dispatch

    def _dispatch(self, event: Input) -> None:
        key = (self._state, type(event))
        handler = TRANSITIONS.get(key)
        if handler is not None:
            handler(self, event)
            return
        disposition = UNHANDLED[key]
        if disposition.refuse:
            self._refuse(disposition.text.format(state=self.state, reason=self._why_not_online()))

    def _why_not_online(self) -> str:
        if self._state is State.PROVISIONING:
            return "sign in first with the code on its screen"
        return self._offline.reason

    # ------------------------------------------------------------ small effects

    def _emit(self, action: Output) -> None:
        self._out.append(action)

    def _refuse(self, message: str) -> None:
        self._notice = message
        self._emit(Refuse(message))

    def _set_tone(self, kind: ToneKind) -> None:
        if kind != self._tone:
            self._tone = kind
            self._emit(Tone(kind))

    def _set_ringer(self, on: bool) -> None:
        if on != self._ringing:
            self._ringing = on
            self._emit(SetRinger(on))

    def _unmute(self) -> None:
        if self.muted:
            self.muted = False
            self._emit(SetMute(False))

    def _add_log(self, entry: CallLogEntry) -> None:
        self.log = calllog.add(self.log, entry)

    # ------------------------------------------------------------ where the phone rests

    def _rest(self) -> None:
        """Nothing on screen any more: provisioning, offline, a waiting call, dialling or idle."""
        self._call = None
        self._ended = None
        self._ended_until = None
        self._typed = ""
        self._last_key_at = None
        self._unmute()
        self._set_ringer(False)
        if not self.registered:
            self._set_tone("off")
            self._state = State.PROVISIONING if self._provisioning else State.OFFLINE
            return
        if not self.off_hook:
            self._set_tone("off")
            if self.dnd:
                # Turned on after these calls were remembered: decline them now.
                for bg in [bg for bg in self._background.values() if not bg.remote]:
                    if bg.direction == "in":
                        del self._background[bg.uri]
                        self._emit(Decline(bg.uri))
                        self._forget(CallGone(bg.uri, "declined"), bg)
            waiting = next((bg for bg in self._background.values() if not bg.remote), None)
            if waiting is not None:
                del self._background[waiting.uri]
                self._ring(
                    CallOffered(
                        waiting.uri, waiting.peer, waiting.peer_name, waiting.direction == "out"
                    ),
                    started=waiting.started,
                )
                return
            remote = next(iter(self._background.values()), None)
            if remote is not None:
                del self._background[remote.uri]
                self._call = _Call(
                    remote.uri,
                    remote.peer,
                    remote.direction,
                    remote.started,
                    remote.peer_name,
                    answered=True,
                    device=remote.device,
                )
                self._state = State.REMOTE
                return
            self._state = State.IDLE
            return
        self._state = State.DIALLING
        self._set_tone("dial")

    def _end(self, reason: str, *, missed: bool = False, busy: bool = True) -> None:
        """The call on screen is over: log it and show why for a few seconds."""
        call = self._call
        assert call is not None
        self._set_ringer(False)
        self._set_tone("busy" if self.off_hook and busy else "off")
        self._unmute()
        seconds = self._talk_seconds(call)
        if call.direction is not None and not (call.offer_outbound and not call.answered):
            self._add_log(
                CallLogEntry(
                    direction=call.direction,
                    peer=call.peer,
                    started=call.started,
                    seconds=seconds,
                    answered=call.answered,
                    peer_name=call.peer_name,
                )
            )
        if missed:
            self.missed += 1
        self._call = None
        self._typed = ""
        self._ended = model.CallSummary(
            call.peer,
            reason,
            seconds if call.talk_from is not None or call.talked else None,
            call.peer_name,
        )
        self._ended_until = self._now + ENDED_SCREEN_S
        self._state = State.ENDED

    def _talk_seconds(self, call: _Call) -> int:
        talked = call.talked
        if call.talk_from is not None:
            talked += self._now - call.talk_from
        return int(talked)

    def _ring(self, offer: CallOffered, *, started: float | None = None) -> None:
        self._call = _Call(
            offer.uri,
            offer.peer,
            "out" if offer.outbound else "in",
            self._wall if started is None else started,
            offer.peer_name,
            offer_outbound=offer.outbound,
        )
        self._state = State.RINGING
        self._set_ringer(not self.off_hook)

    def _decline_dnd(self, offer: CallOffered) -> None:
        self._emit(Decline(offer.uri))
        self._add_log(
            CallLogEntry("in", offer.peer, self._wall, 0, answered=False, peer_name=offer.peer_name)
        )
        self.missed += 1

    def _remember(self, offer: CallOffered) -> None:
        """A call offered while the phone is busy: let the other devices ring."""
        known = self._background.get(offer.uri)
        if known is None:
            self._background[offer.uri] = _Background(
                offer.uri,
                offer.peer,
                offer.peer_name,
                "out" if offer.outbound else "in",
                self._wall,
            )

    def _forget(self, gone: CallGone, bg: _Background | None = None) -> None:
        """A call the phone was not showing ended; log it if it rang for this line."""
        self._held.pop(gone.uri, None)
        bg = bg or self._background.pop(gone.uri, None)
        if bg is None or bg.direction != "in":
            return
        self._add_log(
            CallLogEntry("in", bg.peer, bg.started, 0, answered=bg.remote, peer_name=bg.peer_name)
        )
        if not bg.remote:
            self.missed += 1

    def _matches(self, uri: str) -> bool:
        return self._call is not None and self._call.uri == uri

    # ------------------------------------------------------------ dialling

    def _type_key(self, key: str) -> None:
        if key in "ABCD":
            return
        if key == "#":
            if self._typed:
                self._dial(self._typed)
            else:
                self._redial()
            return
        if len(self._typed) >= MAX_TYPED:
            self._refuse(f"a number has at most {MAX_TYPED} keys")
            return
        self._set_tone("off")
        self._typed += key
        self._last_key_at = self._now
        if self._typed in FEATURE_CODES:
            code, self._typed = self._typed, ""
            self._last_key_at = None
            self._feature(code)
            if self._state is State.DIALLING:
                if self.off_hook:
                    self._set_tone("dial")
                else:
                    self._rest()  # a code pre-dialled on hook: nothing more to type
            return
        if any(code.startswith(self._typed) for code in FEATURE_CODES):
            return
        if self.plan.match(self._typed) is DialMatch.COMPLETE:
            self._dial(self._typed)

    def _feature(self, code: str) -> None:
        if code == "*78":
            self._set_dnd(True)
        elif code == "*79":
            self._set_dnd(False)
        else:
            self._pull()

    def _dial(self, text: str) -> None:
        if self._cancel_pending:
            self._dial_refused("the last call is still being hung up; try again")
            return
        try:
            e164 = self.plan.normalise(text)
        except NumberError as exc:
            self._dial_refused(str(exc))
            return
        problem = None if self.check_destination is None else self.check_destination(e164)
        if problem is not None:
            self._dial_refused(problem)
            return
        self._set_tone("off")
        self._typed = ""
        self._last_key_at = None
        self._ended = None
        self.last_dialled = e164
        self._emit(PlaceCall(text.strip(), e164))
        self._call = _Call(None, e164, "out", self._wall)
        self._state = State.CALLING

    def _dial_refused(self, message: str) -> None:
        self._typed = ""
        self._last_key_at = None
        self._ended = None
        self._refuse(message)
        if self.off_hook:
            self._state = State.DIALLING
            self._set_tone("busy")
        else:
            self._state = State.IDLE
            self._set_tone("off")

    def _redial(self) -> None:
        if self.last_dialled is None:
            self._dial_refused("nothing to redial yet")
            return
        self._dial(self.last_dialled)

    def _start_dialling(self, *, tone: bool = True) -> None:
        self._ended = None
        self._ended_until = None
        self._typed = ""
        self._last_key_at = None
        self._state = State.DIALLING
        self._set_tone("dial" if self.off_hook and tone else "off")

    # ------------------------------------------------------------ buttons and features

    def _set_dnd(self, on: bool) -> None:
        self.dnd = on
        call = self._call
        if on and self._state is State.RINGING and call is not None and call.direction == "in":
            assert call.uri is not None
            self._emit(Decline(call.uri))
            self._end("declined (do not disturb)", missed=True)

    def _pull(self) -> None:
        call = self._call
        if self._state is State.REMOTE and call is not None and call.uri is not None:
            if call.pulling:
                self._refuse("already taking the call to this phone")
                return
            call.pulling = True
            self._emit(Pull(call.uri))
            return
        if self._state in AT_REST:
            remote = next((bg for bg in self._background.values() if bg.remote), None)
            if remote is not None:
                del self._background[remote.uri]
                self._set_tone("off")
                self._typed = ""
                self._ended = None
                self._call = _Call(
                    remote.uri,
                    remote.peer,
                    remote.direction,
                    remote.started,
                    remote.peer_name,
                    answered=True,
                    device=remote.device,
                    pulling=True,
                )
                self._state = State.REMOTE
                self._emit(Pull(remote.uri))
                return
        self._refuse("nothing to pull: no call of this line is in use on another device")

    def _take_or_answer(self) -> None:
        call = self._call
        assert call is not None and call.uri is not None
        self._set_ringer(False)
        if call.offer_outbound:
            self._emit(Take(call.uri))
            self._set_tone("ringback")
            self._state = State.CALLING
        else:
            self._emit(Answer(call.uri))
            self._state = State.ANSWERING

    def _hang_up(self, *, busy: bool = True) -> None:
        call = self._call
        assert call is not None
        if call.uri is None:
            self._cancel_pending = True
        else:
            self._emit(Hangup(call.uri))
        self._end("hung up", busy=busy)

    def _volume(self, step: int) -> None:
        self.volume = max(0, min(100, self.volume + step))
        self._emit(SetVolume(self.volume))
        if self._state is State.IN_CALL:
            self._volume_until = self._now + VOLUME_SHOWN_S

    # ================================================================ handlers
    # Each handler's docstring is its line in docs/phone-states.md.

    def _hook_off_quiet(self, _e: HookOff) -> None:
        """note the handset is up (no tone)"""
        self.off_hook = True

    def _hook_off_idle(self, _e: HookOff) -> None:
        """dial tone; missed-call count cleared → dialing"""
        self.off_hook = True
        self.missed = 0
        self._start_dialling()

    def _hook_off_dialling(self, _e: HookOff) -> None:
        """(pre-dialled on hook) dial tone if nothing is typed yet"""
        self.off_hook = True
        if not self._typed:
            self._set_tone("dial")

    def _hook_off_ringing(self, _e: HookOff) -> None:
        """inbound: SetRinger off, Answer → answering; 3PCC outbound: Take, ringback → calling"""
        self.off_hook = True
        self._take_or_answer()

    def _hook_off_ended(self, _e: HookOff) -> None:
        """dial tone at once → dialing"""
        if self.off_hook:
            return
        self.off_hook = True
        self._start_dialling()

    def _hook_on_quiet(self, _e: HookOn) -> None:
        """note the handset is down"""
        self.off_hook = False
        self._set_tone("off")

    def _hook_on_dialling(self, _e: HookOn) -> None:
        """cancel: tone off → idle (or a call still ringing for the line rings here)"""
        self.off_hook = False
        self._rest()

    def _hook_on_hangup(self, _e: HookOn) -> None:
        """Hangup (or cancel the call being placed) → ended"""
        self.off_hook = False
        self._hang_up()

    def _hook_on_ringing(self, _e: HookOn) -> None:
        """ringer back on if the handset was up (an answer that failed)"""
        self.off_hook = False
        self._set_ringer(True)

    def _key_idle(self, event: Key) -> None:
        """pre-dial on hook: the key starts a number → dialing"""
        self.missed = 0
        self._start_dialling()
        self._type_key(event.key)

    def _key_dialling(self, event: Key) -> None:
        """digit (dial tone off at the first); dial on '#', a digit-map match or a feature code"""
        self._type_key(event.key)

    def _key_in_call(self, event: Key) -> None:
        """SendDigit (DTMF)"""
        self._emit(SendDigit(event.key))

    def _key_remote(self, event: Key) -> None:
        """feature codes only (*11 pulls); anything else is refused"""
        if event.key not in "0123456789*":
            self._refuse(self._remote_hint())
            return
        self._typed += event.key
        if self._typed in FEATURE_CODES:
            code, self._typed = self._typed, ""
            self._feature(code)
        elif not any(code.startswith(self._typed) for code in FEATURE_CODES):
            self._typed = ""
            self._refuse(self._remote_hint())

    @staticmethod
    def _remote_hint() -> str:
        return "a call of this line is in use on another device: press pull or dial *11 to take it"

    def _key_ended(self, event: Key) -> None:
        """start a new number with this key → dialing"""
        self._start_dialling(tone=False)
        self._type_key(event.key)

    def _key_long(self, event: KeyLong) -> None:
        """'#' held: do-not-disturb on/off; any other key: as a short press"""
        if event.key == "#":
            self._set_dnd(not self.dnd)
        else:
            self._dispatch(Key(event.key))

    def _button(self, event: Button | ButtonLong) -> None:
        """the button's meaning (see Buttons below)"""
        name = event.name
        if name not in BUTTON_NAMES:
            self._refuse(f"the phone has no button {name!r}")
        elif name == "pull":
            self._pull()
        elif name == "mute":
            self._button_mute()
        elif name == "volume-up":
            self._volume(VOLUME_STEP)
        elif name == "volume-down":
            self._volume(-VOLUME_STEP)
        elif name == "redial":
            self._button_redial()
        elif name == "dnd":
            self._set_dnd(not self.dnd)
        else:
            self._button_flash()

    def _button_mute(self) -> None:
        if self._state not in (State.IN_CALL, State.ANSWERING):
            self._refuse("nothing to mute: there is no call")
            return
        self.muted = not self.muted
        self._emit(SetMute(self.muted))

    def _button_redial(self) -> None:
        if self._state not in AT_REST:
            self._refuse(f"cannot redial while the phone is {self.state}")
            return
        self._redial()

    def _button_flash(self) -> None:
        s = self._state
        call = self._call
        if s is State.DIALLING and self.off_hook:
            self._start_dialling()
        elif s is State.DIALLING:
            self._rest()
        elif s in (State.CALLING, State.ANSWERING, State.IN_CALL):
            self._hang_up(busy=False)
            if self.off_hook:
                self._start_dialling()
        elif s is State.RINGING and call is not None and call.uri is not None:
            self._emit(Decline(call.uri))
            self._end("declined")
        else:
            self._refuse(f"flash does nothing while the phone is {self.state}")

    def _dial_rest(self, event: Dial) -> None:
        """dial the number as if typed and sent → calling (refused: why, busy tone if off hook)"""
        self.missed = 0
        self._ended = None
        self._dial(event.number)

    def _online_rest(self, event: LineOnline) -> None:
        """registered → idle (dialing with dial tone if the handset is up)"""
        self.number, self.name, self.registered = event.number, event.name, True
        self._provisioning = None
        self.resetting = False
        self._rest()

    def _online_update(self, event: LineOnline) -> None:
        """note the number and name; the state stays"""
        self.number, self.name, self.registered = event.number, event.name, True
        self._provisioning = None

    def _offline_rest(self, event: LineOffline) -> None:
        """→ offline (tone off, typing dropped, calls remembered for the line forgotten)"""
        self.registered = False
        self._offline = event
        self._provisioning = None
        self.resetting = False
        self._background.clear()
        self._rest()

    def _offline_in_call(self, event: LineOffline) -> None:
        """note it: the call goes on; the phone shows offline once it ends"""
        self.registered = False
        self._offline = event
        self._provisioning = None

    def _provisioning_rest(self, event: Provisioning) -> None:
        """→ provisioning (QR code and user code)"""
        self.registered = False
        self._provisioning = event
        self.resetting = False
        self._background.clear()
        self._rest()

    def _provisioning_in_call(self, event: Provisioning) -> None:
        """note it: shown once the call ends"""
        self.registered = False
        self._provisioning = event

    def _reconfigured(self, event: Reconfigured) -> None:
        """volume and dial plan from the re-read configuration; a call goes on (volume shown)"""
        self.plan = event.plan  # from the next key typed
        self.interdigit_timeout = event.interdigit_timeout
        volume = max(0, min(100, event.volume))
        if volume != self.volume:
            self._volume(volume - self.volume)

    def _reset(self, event: ResetRequested) -> None:
        """ResetPhone → offline, "Factory reset…" until the login starts again"""
        self.registered = False
        self.resetting = True
        self._provisioning = None
        self._offline = LineOffline("factory reset")
        self._background.clear()
        self.missed = 0
        self.log = ()
        self.last_dialled = None
        self._rest()
        self._emit(ResetPhone())

    def _push(self, event: PushChanged) -> None:
        """note the push channel's status (idle screen)"""
        self.push = event.status

    def _offer_rest(self, event: CallOffered) -> None:
        """DND and inbound: Decline, logged missed; handset down: SetRinger → ringing; up: busy"""
        if self.dnd and not event.outbound:
            self._decline_dnd(event)
        elif self.off_hook:
            self._remember(event)
        else:
            self._set_tone("off")
            self._ring(event)

    def _offer_busy(self, event: CallOffered) -> None:
        """second call: DND and inbound → Decline; else not rung, remembered (see Single line)"""
        if self._matches(event.uri):
            return
        if self.dnd and not event.outbound:
            self._decline_dnd(event)
        else:
            self._remember(event)

    def _offer_answering(self, event: CallOffered) -> None:
        """this call offered again (our answer lost): → ringing; another call: as a second call"""
        if self._matches(event.uri):
            self._state = State.RINGING
            self._set_ringer(not self.off_hook)
            return
        self._offer_busy(event)

    def _progress_calling(self, event: CallProgress) -> None:
        """first news names the placed call; alerting: ringback; in-call: tone off → in-call"""
        call = self._call
        assert call is not None
        if call.uri is None:
            call.uri = event.uri
        elif call.uri != event.uri:
            self._progress_stray(event)
            return
        if event.state == "in-call":
            self._talking(event)
        else:
            call.alerting = event.state == "alerting"
            if call.alerting:
                self._set_tone("ringback")

    def _talking(self, event: CallProgress) -> None:
        call = self._call
        assert call is not None
        self._set_tone("off")
        call.answered = True
        call.pulling = False
        call.talk_from = self._now
        call.codec, call.quality, call.no_audio = event.codec, event.quality, event.no_audio
        self._state = State.IN_CALL

    def _progress_answering(self, event: CallProgress) -> None:
        """in-call: → in-call (media here)"""
        if not self._matches(event.uri):
            self._progress_stray(event)
        elif event.state == "in-call":
            self._talking(event)

    def _progress_in_call(self, event: CallProgress) -> None:
        """codec and quality on screen"""
        call = self._call
        if call is not None and call.uri == event.uri:
            call.codec, call.quality, call.no_audio = event.codec, event.quality, event.no_audio
        else:
            self._progress_stray(event)

    def _progress_remote(self, event: CallProgress) -> None:
        """(pulled here) in-call → in-call; calling/alerting → calling"""
        call = self._call
        if call is None or call.uri != event.uri:
            self._progress_stray(event)
            return
        if event.state == "in-call":
            self._talking(event)
        else:
            call.pulling = False
            call.alerting = event.state == "alerting"
            self._set_tone("ringback" if call.alerting else "off")
            self._state = State.CALLING

    def _progress_stray(self, event: CallProgress) -> None:
        """a call this phone hung up before it was named: Hangup; else nothing"""
        if self._cancel_pending:
            self._cancel_pending = False
            self._emit(Hangup(event.uri))

    def _progress_rest(self, event: CallProgress) -> None:
        """a remembered call of the line moved here (take tap): → calling/in-call; see below"""
        bg = self._background.get(event.uri)
        if bg is None:
            self._progress_stray(event)
            return
        del self._background[event.uri]
        self._typed = ""
        self._last_key_at = None
        self._ended = None
        self._call = _Call(
            bg.uri, bg.peer, bg.direction, bg.started, bg.peer_name, answered=bg.remote
        )
        self._state = State.REMOTE
        self._progress_remote(event)

    def _remote_here(self, event: CallRemote) -> None:
        """this call went to another device: ringer/tone off, media off → remote-in-use"""
        call = self._call
        assert call is not None
        if call.uri != event.uri:
            self._remote_elsewhere(event)
            return
        self._set_ringer(False)
        self._set_tone("off")
        self._unmute()
        if call.talk_from is not None:
            call.talked += self._now - call.talk_from
            call.talk_from = None
        call.answered = True
        call.pulling = False
        call.device = event.device
        self._state = State.REMOTE

    def _remote_elsewhere(self, event: CallRemote) -> None:
        """another call of the line in use elsewhere: remembered, not shown"""
        bg = self._background.get(event.uri)
        if bg is None:
            bg = _Background(event.uri, event.peer, event.peer_name, _direction(event), self._wall)
            self._background[event.uri] = bg
        bg.remote = True
        bg.device = event.device

    def _remote_rest(self, event: CallRemote) -> None:
        """handset down: → remote-in-use; up (busy dialling): remembered, not shown"""
        if self.off_hook or self._state is State.DIALLING:
            self._remote_elsewhere(event)
            return
        bg = self._background.pop(event.uri, None)
        self._set_tone("off")
        self._ended = None
        self._call = _Call(
            event.uri,
            event.peer,
            _direction(event) if bg is None else bg.direction,
            self._wall if bg is None else bg.started,
            event.peer_name,
            answered=True,
            device=event.device,
        )
        self._state = State.REMOTE

    def _resumed_rest(self, event: CallResumed) -> None:
        """handset up: the call goes on here → calling/in-call; down: Hangup → ended (see below)"""
        if not self.hook_known:
            # Not guessed: a call the user still holds must not be hung up, nor one on
            # the cradle resumed.  Every handset reports its hook at start; decided then.
            self._held[event.uri] = event
            return
        self._typed = ""
        self._last_key_at = None
        self._ended = None
        self._ended_until = None
        self._call = _Call(
            event.uri,
            event.peer,
            "out" if event.outbound else "in",
            self._wall,
            event.peer_name,
            answered=event.state == "in-call",
        )
        if self.off_hook:
            self._state = State.REMOTE  # a call shown, not yet carried: as pulled back here
            self._progress_remote(CallProgress(event.uri, event.state))
            return
        # The handset is down: nobody is on this end.  End the leg as replacing the
        # handset would, so that the far end is released and the line is free again.
        self._emit(Hangup(event.uri))
        self._end(RESTARTED, busy=False)

    def _resumed_busy(self, event: CallResumed) -> None:
        """another call is on screen: Hangup (one call at a time); this call: nothing"""
        if not self._matches(event.uri):
            self._emit(Hangup(event.uri))

    def _resumed_offline(self, event: CallResumed) -> None:
        """Hangup: a call cannot be carried until the phone is online"""
        self._emit(Hangup(event.uri))

    def _gone_call(self, event: CallGone) -> None:
        """this call is over: logged (missed if it rang unanswered) → ended; another: forgotten"""
        call = self._call
        assert call is not None
        if call.uri != event.uri:
            self._forget(event)
            return
        missed = self._state is State.RINGING and call.direction == "in" and not call.answered
        if event.talk_seconds is not None and call.talk_from is not None:
            call.talked, call.talk_from = float(event.talk_seconds), None
        self._end(event.reason, missed=missed)

    def _gone_rest(self, event: CallGone) -> None:
        """a remembered call ended: logged (missed if nobody answered)"""
        self._forget(event)

    def _failed_calling(self, event: CallFailed) -> None:
        """dial or take refused: reason shown; dialing with busy tone (handset up) or idle"""
        call = self._call
        assert call is not None
        self._set_ringer(False)
        self._add_log(
            CallLogEntry(
                "out", call.peer, call.started, 0, answered=False, peer_name=call.peer_name
            )
        )
        self._call = None
        self._dial_refused(event.reason)

    def _failed_answering(self, event: CallFailed) -> None:
        """answer refused: reason reported → ringing again"""
        self._refuse(event.reason)
        self._state = State.RINGING
        self._set_ringer(not self.off_hook)

    def _failed_remote(self, event: CallFailed) -> None:
        """pull refused: reason reported, still remote-in-use"""
        call = self._call
        assert call is not None
        call.pulling = False
        self._refuse(event.reason)

    def _failed_other(self, event: CallFailed) -> None:
        """ends a pending cancel silently; else the reason is reported"""
        if self._cancel_pending:
            self._cancel_pending = False
            return
        self._refuse(event.reason)

    def _reconnecting(self, event: CallReconnecting) -> None:
        """reconnecting flag on the in-call screen"""
        if self._matches(event.uri):
            assert self._call is not None
            self._call.reconnecting = event.on

    def _tap_answer(self, event: TapAnswer) -> None:
        """as lifting the handset (without lifting it); another call: refused"""
        if not self._matches(event.uri):
            self._refuse(f"cannot answer {event.uri}: it is not ringing on this phone")
            return
        self._take_or_answer()

    def _tap_decline(self, event: TapDecline) -> None:
        """Decline, SetRinger off → ended ("declined"); another call: refused"""
        if not self._matches(event.uri):
            self._refuse(f"cannot decline {event.uri}: it is not ringing on this phone")
            return
        self._emit(Decline(event.uri))
        self._end("declined")

    def _tick(self, _e: Tick) -> None:
        """due timers: inter-digit timeout dials; the ended screen gives way; volume hides"""
        now = self._now
        if self._volume_until is not None and now >= self._volume_until:
            self._volume_until = None
        if (
            self._state is State.DIALLING
            and self._typed
            and self._last_key_at is not None
            and now >= self._last_key_at + self.interdigit_timeout
        ):
            self._dial(self._typed)
        if (
            self._state is State.ENDED
            and self._ended_until is not None
            and now >= self._ended_until
        ):
            self._rest()


def _direction(event: CallRemote) -> Literal["in", "out"] | None:
    if event.outbound is None:
        return None
    return "out" if event.outbound else "in"


@dataclass(frozen=True, slots=True)
class Unhandled:
    """A (state, input) pair with no handler: ignored, or refused with ``text``."""

    refuse: bool
    text: str  # the refusal (``{state}``, ``{reason}`` filled in) or why it is ignored


def _ignore(why: str) -> Unhandled:
    return Unhandled(False, why)


def _refused(message: str) -> Unhandled:
    return Unhandled(True, message)


M = PhoneMachine


def _build() -> tuple[
    dict[tuple[State, type[Input]], Handler], dict[tuple[State, type[Input]], Unhandled]
]:
    t: dict[tuple[State, type[Input]], Handler] = {}
    u: dict[tuple[State, type[Input]], Unhandled] = {}

    def each(states: tuple[State, ...], kind: type[Input], handler: Handler) -> None:
        for s in states:
            t[(s, kind)] = handler

    every = tuple(State)
    # The handset.
    each(NOT_ONLINE, HookOff, M._hook_off_quiet)
    t[(_S.IDLE, HookOff)] = M._hook_off_idle
    t[(_S.DIALLING, HookOff)] = M._hook_off_dialling
    each((_S.CALLING, _S.ANSWERING, _S.IN_CALL, _S.REMOTE), HookOff, M._hook_off_quiet)
    t[(_S.RINGING, HookOff)] = M._hook_off_ringing
    t[(_S.ENDED, HookOff)] = M._hook_off_ended
    each((*NOT_ONLINE, _S.IDLE, _S.REMOTE, _S.ENDED), HookOn, M._hook_on_quiet)
    t[(_S.DIALLING, HookOn)] = M._hook_on_dialling
    each((_S.CALLING, _S.ANSWERING, _S.IN_CALL), HookOn, M._hook_on_hangup)
    t[(_S.RINGING, HookOn)] = M._hook_on_ringing
    t[(_S.IDLE, Key)] = M._key_idle
    t[(_S.DIALLING, Key)] = M._key_dialling
    t[(_S.IN_CALL, Key)] = M._key_in_call
    t[(_S.REMOTE, Key)] = M._key_remote
    t[(_S.ENDED, Key)] = M._key_ended
    for s in NOT_ONLINE:
        u[(s, Key)] = _refused("the phone is {state}: {reason}")
    for s in (_S.CALLING, _S.RINGING, _S.ANSWERING):
        u[(s, Key)] = _ignore("keys do nothing until the call is answered here")
    each(every, KeyLong, M._key_long)
    each(every, Button, M._button)
    each(every, ButtonLong, M._button)
    each(AT_REST, Dial, M._dial_rest)
    for s in NOT_ONLINE:
        u[(s, Dial)] = _refused("cannot dial: the phone is {state} ({reason})")
    for s in WITH_CALL:
        u[(s, Dial)] = _refused("cannot dial while the phone is {state}")
    # The line.
    each(NOT_ONLINE, LineOnline, M._online_rest)
    each((*AT_REST, *WITH_CALL), LineOnline, M._online_update)
    each((*NOT_ONLINE, *AT_REST), LineOffline, M._offline_rest)
    each(WITH_CALL, LineOffline, M._offline_in_call)
    each((*NOT_ONLINE, *AT_REST), Provisioning, M._provisioning_rest)
    each(WITH_CALL, Provisioning, M._provisioning_in_call)
    each(every, PushChanged, M._push)
    each(every, Reconfigured, M._reconfigured)
    each((*NOT_ONLINE, *AT_REST), ResetRequested, M._reset)
    for s in WITH_CALL:
        u[(s, ResetRequested)] = _refused("cannot reset while the phone is {state}: hang up first")
    # Calls.
    each((_S.IDLE, _S.ENDED), CallOffered, M._offer_rest)
    each((_S.DIALLING, _S.CALLING, _S.RINGING, _S.IN_CALL, _S.REMOTE), CallOffered, M._offer_busy)
    t[(_S.ANSWERING, CallOffered)] = M._offer_answering
    t[(_S.CALLING, CallProgress)] = M._progress_calling
    t[(_S.ANSWERING, CallProgress)] = M._progress_answering
    t[(_S.IN_CALL, CallProgress)] = M._progress_in_call
    t[(_S.REMOTE, CallProgress)] = M._progress_remote
    each(AT_REST, CallProgress, M._progress_rest)
    t[(_S.RINGING, CallProgress)] = M._progress_stray
    each(WITH_CALL, CallRemote, M._remote_here)
    each(AT_REST, CallRemote, M._remote_rest)
    each(AT_REST, CallResumed, M._resumed_rest)
    each(WITH_CALL, CallResumed, M._resumed_busy)
    each(NOT_ONLINE, CallResumed, M._resumed_offline)
    each(WITH_CALL, CallGone, M._gone_call)
    each(AT_REST, CallGone, M._gone_rest)
    t[(_S.CALLING, CallFailed)] = M._failed_calling
    t[(_S.ANSWERING, CallFailed)] = M._failed_answering
    t[(_S.REMOTE, CallFailed)] = M._failed_remote
    each((*NOT_ONLINE, *AT_REST, _S.RINGING, _S.IN_CALL), CallFailed, M._failed_other)
    each((_S.CALLING, _S.ANSWERING, _S.IN_CALL), CallReconnecting, M._reconnecting)
    for s in (*AT_REST, _S.RINGING, _S.REMOTE):
        u[(s, CallReconnecting)] = _ignore("no call of this phone carries media now")
    t[(_S.RINGING, TapAnswer)] = M._tap_answer
    t[(_S.RINGING, TapDecline)] = M._tap_decline
    for s in every:
        if s is not _S.RINGING:
            u[(s, TapAnswer)] = _refused("cannot answer: nothing is ringing (the phone is {state})")
            u[(s, TapDecline)] = _refused(
                "cannot decline: nothing is ringing (the phone is {state})"
            )
    each(every, Tick, M._tick)
    for s in NOT_ONLINE:
        for kind in (CallOffered, CallProgress, CallRemote, CallGone, CallReconnecting):
            u[(s, kind)] = _ignore("offline: the daemon re-offers live calls once back online")
    return t, u


TRANSITIONS, UNHANDLED = _build()
"""The whole behaviour: one handler per (state, input type); every other pair is in UNHANDLED."""


def _check_tables() -> None:
    both = set(TRANSITIONS) & set(UNHANDLED)
    missing = {(s, k) for s in State for k in ALL_INPUTS} - set(TRANSITIONS) - set(UNHANDLED)
    if both or missing:  # pragma: no cover - a table edit gone wrong fails at import
        raise RuntimeError(f"phone state table: both {both}, missing {missing}")


_check_tables()


__all__ = [
    "BUTTONS",
    "FEATURE_CODES",
    "PROFILE_STATE",
    "TRANSITIONS",
    "UNHANDLED",
    "PhoneMachine",
    "State",
    "Unhandled",
]
