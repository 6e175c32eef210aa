"""One call's state machine, seen from the phone (the RIPT client).

In the manner of h11 this module does no I/O: the caller feeds it what happened
(a signalling event, a call description from ``GET``/``POST {call}``, a user
action, a byway coming up or failing, a clock tick) together with ``now`` (a
monotonic time in seconds), and gets back a list of :class:`Action` objects to
carry out (send this event, open or close byways, ring, ...).

Two things are tracked, each by one transition table below:

* the call as this phone sees it (:class:`CallState`): is it being set up by
  us, ringing here, answered here, handled by another of the user's devices
  (remote in use), or over.  The provider holds the truth (profile section 6);
  its state events move this table, and so do local actions.
* the byways that carry the call (:class:`BywayState`), which are separate
  from call state (draft section 9.12): signalling byways open, up, and
  re-established on any fault (profile section 10), with the provider's
  ``retry-backoff`` when the connection itself is gone.

Timers (profile sections 7 and 10), all driven by ``now`` through
:meth:`Call.handle_timer` and :meth:`Call.next_deadline`:

* ``ping`` every 5 s while the byways are up; no ``pong`` for 3 x 5 s is a fault;
* no media received for the TG's ``media-timeout`` (5 s) while the call is
  answered here is a fault;
* media sent for 1 s without any acknowledgement is a fault;
* after a connection loss, the retry delay (``retry-backoff`` doubling to 64 s);
* byways being opened whose ``PUT`` has no response headers 5 s after it was
  sent (:meth:`Call.signalling_sent`; a connect has its own timeout): the
  connection is taken as gone (a provider that restarted does not know it and
  says nothing), so it is abandoned and the retry delay runs.

A fault never ends the call: it re-establishes the byways (a migration in the
sense of draft section 9.13).  Only the provider ends calls, or the user.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ript.backoff import BackoffPolicy
from ript.protocol.descriptions import CallDescription, CallDirection, MediaKey
from ript.protocol.errors import LocalProtocolError
from ript.protocol.events import (
    Alerting,
    Answered,
    CallStatus,
    Declined,
    Direction,
    End,
    Event,
    HandlerChanged,
    MediaPanic,
    Migrate,
    Ping,
    Pong,
    Proceeding,
    Reconnected,
    Reconnecting,
    StateEvent,
    UnknownEvent,
    format_timestamp,
)

PING_INTERVAL = 5.0
PONG_TIMEOUT = 3 * PING_INTERVAL
ACK_TIMEOUT = 1.0
DEFAULT_MEDIA_TIMEOUT = 5.0
DEFAULT_RETRY_BACKOFF = 2.0
MAX_RETRY_BACKOFF = 64.0
RETRY_JITTER = 0.1
"""A retry waits up to this fraction longer than its back-off, never shorter."""
MAX_DIRECTIVE_REFUSALS = 2
OPEN_TIMEOUT = 5.0
"""Seconds byways may stay opening before their connection is taken as dead."""


class CallState(enum.Enum):
    """The call as this phone sees it."""

    PROCEEDING = "proceeding"  # handled here, outbound, being set up
    ALERTING = "alerting"  # handled here, outbound, far end ringing
    RINGING = "ringing"  # offered here: inbound ringing, or a 3PCC outbound to take
    ANSWERING = "answering"  # the user took the offered call; POST {call} under way
    ACTIVE = "active"  # answered and handled here: media flows
    REMOTE = "remote"  # another of the user's devices handles it (remote in use)
    PULLING = "pulling"  # taking it from another device; POST {call} under way
    ENDED = "ended"


class Trigger(enum.Enum):
    """What moves :class:`CallState`: remote facts, local actions, claim results."""

    REMOTE_PROCEEDING = enum.auto()
    REMOTE_ALERTING = enum.auto()
    REMOTE_ANSWERED = enum.auto()
    REMOTE_FINAL = enum.auto()  # declined, failed, noanswer, end
    HANDLER_HERE = enum.auto()
    HANDLER_AWAY = enum.auto()
    GONE = enum.auto()  # the call URI answered 404
    ANSWER = enum.auto()
    DECLINE = enum.auto()
    PULL = enum.auto()
    HANGUP = enum.auto()
    CLAIMED_SETUP = enum.auto()  # our POST {call} succeeded; call not yet alerting
    CLAIMED_ALERTING = enum.auto()
    CLAIMED_ANSWERED = enum.auto()
    CLAIM_FAILED = enum.auto()


_S = CallState
_T = Trigger

# The whole call-state machine.  A pair that is absent is not allowed: for a
# local trigger that is a LocalProtocolError (the caller asked for something
# that does not fit), for a remote one a ProtocolViolation action (logged, the
# state is kept: the provider holds the truth and will tell us again).
CALL_TRANSITIONS: dict[tuple[CallState, Trigger], CallState] = {
    # Outbound, handled here, before answer.
    (_S.PROCEEDING, _T.REMOTE_PROCEEDING): _S.PROCEEDING,
    (_S.PROCEEDING, _T.REMOTE_ALERTING): _S.ALERTING,
    (_S.PROCEEDING, _T.REMOTE_ANSWERED): _S.ACTIVE,
    (_S.PROCEEDING, _T.REMOTE_FINAL): _S.ENDED,
    (_S.PROCEEDING, _T.HANDLER_HERE): _S.PROCEEDING,
    (_S.PROCEEDING, _T.HANDLER_AWAY): _S.REMOTE,
    (_S.PROCEEDING, _T.GONE): _S.ENDED,
    (_S.PROCEEDING, _T.HANGUP): _S.ENDED,
    (_S.ALERTING, _T.REMOTE_ALERTING): _S.ALERTING,
    (_S.ALERTING, _T.REMOTE_ANSWERED): _S.ACTIVE,
    (_S.ALERTING, _T.REMOTE_FINAL): _S.ENDED,
    (_S.ALERTING, _T.HANDLER_HERE): _S.ALERTING,
    (_S.ALERTING, _T.HANDLER_AWAY): _S.REMOTE,
    (_S.ALERTING, _T.GONE): _S.ENDED,
    (_S.ALERTING, _T.HANGUP): _S.ENDED,
    # Offered to this phone and nobody has taken it yet.
    (_S.RINGING, _T.REMOTE_PROCEEDING): _S.RINGING,
    (_S.RINGING, _T.REMOTE_ALERTING): _S.RINGING,
    (_S.RINGING, _T.REMOTE_ANSWERED): _S.REMOTE,
    (_S.RINGING, _T.REMOTE_FINAL): _S.ENDED,
    (_S.RINGING, _T.HANDLER_AWAY): _S.REMOTE,
    (_S.RINGING, _T.GONE): _S.ENDED,
    (_S.RINGING, _T.ANSWER): _S.ANSWERING,
    (_S.RINGING, _T.DECLINE): _S.ENDED,
    # Taking an offered call: whoever POSTs last holds it, so remote news
    # while our POST is under way waits for the POST's answer.
    (_S.ANSWERING, _T.REMOTE_PROCEEDING): _S.ANSWERING,
    (_S.ANSWERING, _T.REMOTE_ALERTING): _S.ANSWERING,
    (_S.ANSWERING, _T.REMOTE_ANSWERED): _S.ANSWERING,
    (_S.ANSWERING, _T.HANDLER_HERE): _S.ANSWERING,
    (_S.ANSWERING, _T.HANDLER_AWAY): _S.ANSWERING,
    (_S.ANSWERING, _T.REMOTE_FINAL): _S.ENDED,
    (_S.ANSWERING, _T.GONE): _S.ENDED,
    (_S.ANSWERING, _T.HANGUP): _S.ENDED,
    (_S.ANSWERING, _T.CLAIMED_SETUP): _S.PROCEEDING,
    (_S.ANSWERING, _T.CLAIMED_ALERTING): _S.ALERTING,
    (_S.ANSWERING, _T.CLAIMED_ANSWERED): _S.ACTIVE,
    (_S.ANSWERING, _T.CLAIM_FAILED): _S.RINGING,
    # Answered and handled here.
    (_S.ACTIVE, _T.REMOTE_ANSWERED): _S.ACTIVE,
    (_S.ACTIVE, _T.REMOTE_FINAL): _S.ENDED,
    (_S.ACTIVE, _T.HANDLER_HERE): _S.ACTIVE,
    (_S.ACTIVE, _T.HANDLER_AWAY): _S.REMOTE,
    (_S.ACTIVE, _T.GONE): _S.ENDED,
    (_S.ACTIVE, _T.HANGUP): _S.ENDED,
    # Remote in use: followed on the signalling byway, media elsewhere.
    (_S.REMOTE, _T.REMOTE_PROCEEDING): _S.REMOTE,
    (_S.REMOTE, _T.REMOTE_ALERTING): _S.REMOTE,
    (_S.REMOTE, _T.REMOTE_ANSWERED): _S.REMOTE,
    (_S.REMOTE, _T.HANDLER_AWAY): _S.REMOTE,
    (_S.REMOTE, _T.REMOTE_FINAL): _S.ENDED,
    (_S.REMOTE, _T.GONE): _S.ENDED,
    (_S.REMOTE, _T.PULL): _S.PULLING,
    (_S.PULLING, _T.REMOTE_PROCEEDING): _S.PULLING,
    (_S.PULLING, _T.REMOTE_ALERTING): _S.PULLING,
    (_S.PULLING, _T.REMOTE_ANSWERED): _S.PULLING,
    (_S.PULLING, _T.HANDLER_HERE): _S.PULLING,
    (_S.PULLING, _T.HANDLER_AWAY): _S.PULLING,
    (_S.PULLING, _T.REMOTE_FINAL): _S.ENDED,
    (_S.PULLING, _T.GONE): _S.ENDED,
    (_S.PULLING, _T.HANGUP): _S.ENDED,
    (_S.PULLING, _T.CLAIMED_SETUP): _S.PROCEEDING,
    (_S.PULLING, _T.CLAIMED_ALERTING): _S.ALERTING,
    (_S.PULLING, _T.CLAIMED_ANSWERED): _S.ACTIVE,
    (_S.PULLING, _T.CLAIM_FAILED): _S.REMOTE,
    # Over: late news changes nothing; hanging up twice is harmless.
    **{(_S.ENDED, t): _S.ENDED for t in _T if t not in (_T.ANSWER, _T.DECLINE, _T.PULL)},
}

LOCAL_TRIGGERS = frozenset({_T.ANSWER, _T.DECLINE, _T.PULL, _T.HANGUP})


class BywayState(enum.Enum):
    """The byways of the call (signalling, and media when handled here)."""

    CLOSED = "closed"  # not opened yet, or closed for good
    OPENING = "opening"  # PUT/GET {call}/events sent, waiting for the PUT's response headers
    UP = "up"
    WAITING = "waiting"  # the connection is gone: retry after a back-off delay


class BywayTrigger(enum.Enum):
    OPEN = enum.auto()
    SIGNALLING_UP = enum.auto()
    FAULT = enum.auto()  # reset, timeout, migrate, missing pongs: re-establish now
    CONNECTION_LOST = enum.auto()  # re-establish after the back-off delay
    RETRY_DUE = enum.auto()
    CLOSE = enum.auto()


_B = BywayState
_BT = BywayTrigger

BYWAY_TRANSITIONS: dict[tuple[BywayState, BywayTrigger], BywayState] = {
    (_B.CLOSED, _BT.OPEN): _B.OPENING,
    (_B.OPENING, _BT.SIGNALLING_UP): _B.UP,
    # A failure while opening, on a live connection, is retried after the
    # back-off too: re-opening at once could spin against a broken server.
    (_B.OPENING, _BT.FAULT): _B.WAITING,
    (_B.OPENING, _BT.CONNECTION_LOST): _B.WAITING,
    (_B.UP, _BT.SIGNALLING_UP): _B.UP,
    (_B.UP, _BT.FAULT): _B.OPENING,
    (_B.UP, _BT.CONNECTION_LOST): _B.WAITING,
    (_B.WAITING, _BT.FAULT): _B.WAITING,
    (_B.WAITING, _BT.CONNECTION_LOST): _B.WAITING,
    (_B.WAITING, _BT.RETRY_DUE): _B.OPENING,
    **{(s, _BT.CLOSE): _B.CLOSED for s in _B},
}


# --------------------------------------------------------------------------
# Actions: what the caller must do.


@dataclass(frozen=True, slots=True)
class Action:
    """Base of everything :class:`Call` asks its caller to do."""


@dataclass(frozen=True, slots=True)
class SendEvent(Action):
    """Send on the forward signalling byway (buffered while it is down)."""

    event: Event


@dataclass(frozen=True, slots=True)
class OpenSignalling(Action):
    """Open ``GET`` and ``PUT {uri}/events``.

    ``migration`` is true for every re-establishment: the ``PUT`` then carries
    no session cookie (draft section 9.13).
    """

    uri: str
    migration: bool


@dataclass(frozen=True, slots=True)
class OpenMedia(Action):
    """Start media for this handler: WebTransport, or 20 reverse GETs + PUTs.

    Only ever emitted after the signalling PUT's response headers arrived.
    """

    uri: str
    media_key: MediaKey | None
    client_directives: str | None


@dataclass(frozen=True, slots=True)
class AbandonConnection(Action):
    """Close the QUIC connection to ``uri``'s origin: it is taken as dead (no answer)."""

    uri: str
    reason: str


@dataclass(frozen=True, slots=True)
class CloseMedia(Action):
    """Stop sending and receiving media (the call moved to another device)."""


@dataclass(frozen=True, slots=True)
class CloseByways(Action):
    """End every byway of the call; after a ``SendEvent`` in the same list, flush it first."""


@dataclass(frozen=True, slots=True)
class ReopenMedia(Action):
    """Top the reverse media byways up again (the provider reported media-panic)."""


@dataclass(frozen=True, slots=True)
class ClaimCall(Action):
    """``POST {uri}`` with ``{"handler": handler}``: answer, pull or take the call."""

    uri: str
    handler: str


@dataclass(frozen=True, slots=True)
class RefuseDirective(Action):
    """The directive cannot be followed: update the handler, then ``POST {uri}`` with ``{}``."""

    uri: str
    problem: str


@dataclass(frozen=True, slots=True)
class FetchDescription(Action):
    """``GET {uri}`` and feed the result to :meth:`Call.description_received`."""

    uri: str


@dataclass(frozen=True, slots=True)
class Ring(Action):
    """Alert the user: an inbound call (caller id) or a 3PCC outbound call to take."""

    direction: CallDirection
    peer: str


@dataclass(frozen=True, slots=True)
class StopRinging(Action):
    pass


@dataclass(frozen=True, slots=True)
class Ringback(Action):
    """Play (or stop) locally generated ringback for an outbound call."""

    on: bool


@dataclass(frozen=True, slots=True)
class StateChanged(Action):
    old: CallState
    new: CallState


@dataclass(frozen=True, slots=True)
class BywaysChanged(Action):
    """The byways went up, down or are being re-established (``reason`` says why)."""

    state: BywayState
    reason: str | None
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class PeerConnectivity(Action):
    """The far end lost (``reconnecting=True``) or regained its connectivity."""

    reconnecting: bool


@dataclass(frozen=True, slots=True)
class CallEnded(Action):
    """The call is over; ``status`` is the provider's final state."""

    status: CallStatus
    reason: str
    local: bool


@dataclass(frozen=True, slots=True)
class ProtocolViolation(Action):
    """The provider sent something out of place; log it, nothing else changes."""

    message: str


DirectiveCheck = Callable[[str | None], str | None]


def _always_followable(_directive: str | None) -> str | None:
    return None


_FINAL_REASONS = {
    CallStatus.DECLINED: "declined",
    CallStatus.FAILED: "failed",
    CallStatus.NOANSWER: "no answer",
    CallStatus.ENDED: "call ended",
}


@dataclass(slots=True)
class _Timers:
    next_ping: float | None = None
    last_pong: float = 0.0
    last_media_rx: float | None = None  # None: media not expected yet
    unacked_since: float | None = None
    retry_at: float | None = None
    opening_since: float | None = None
    attempts: int = 0
    ping_nonce: int = 0
    outstanding_nonces: list[str] = field(default_factory=list)


class Call:
    """One call.  Construct it from the call description, then :meth:`start` it."""

    def __init__(
        self,
        description: CallDescription,
        *,
        own_handler: str,
        media_timeout: float = DEFAULT_MEDIA_TIMEOUT,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        directive_check: DirectiveCheck = _always_followable,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.uri = description.uri
        self.first_uri = description.uri
        """The call's name on this phone (registry, phone machine, call log): the URI it was
        first known by, which a ``migrate`` to another URI (``uri``, current) does not change."""
        self.direction = description.direction
        self.from_ = description.from_
        self.to = description.to
        self.status = description.state
        self.handler = description.handler
        self.own_handler = own_handler
        self.media_key = description.media_key
        self.client_directives = description.client_directives
        self.media_timeout = media_timeout
        self.retry_backoff = max(retry_backoff, DEFAULT_RETRY_BACKOFF)
        self._directive_check = directive_check
        self._wall = wall_clock
        self._rng = rng or random.Random()
        self.state = self._initial_state()
        self.byways = BywayState.CLOSED
        self.media_open = False
        self.peer_reconnecting = False
        self.ended: CallEnded | None = None
        self._timers = _Timers()
        self._refusals = 0
        self._started = False
        self._was_up = False

    # ------------------------------------------------------------ queries

    @property
    def peer(self) -> str:
        """The other party's number: the callee of an outbound call, the caller of an inbound."""
        return self.to if self.direction is CallDirection.OUTBOUND else self.from_

    @property
    def handled_here(self) -> bool:
        return self.handler == self.own_handler

    def next_deadline(self) -> float | None:
        """The earliest ``now`` at which :meth:`handle_timer` has something to do."""
        t = self._timers
        candidates: list[float] = []
        if self.byways is BywayState.UP:
            if t.next_ping is not None:
                candidates.append(t.next_ping)
            candidates.append(t.last_pong + PONG_TIMEOUT)
            if self.media_open:
                if t.last_media_rx is not None and self.state is CallState.ACTIVE:
                    candidates.append(t.last_media_rx + self.media_timeout)
                if t.unacked_since is not None:
                    candidates.append(t.unacked_since + ACK_TIMEOUT)
        elif self.byways is BywayState.WAITING and t.retry_at is not None:
            candidates.append(t.retry_at)
        elif self.byways is BywayState.OPENING and t.opening_since is not None:
            candidates.append(t.opening_since + OPEN_TIMEOUT)
        return min(candidates) if candidates else None

    # ------------------------------------------------------------ start

    def _initial_state(self) -> CallState:
        if self.status.is_final:
            return CallState.ENDED
        if self.handler == self.own_handler:
            if self.status is CallStatus.ANSWERED:
                return CallState.ACTIVE
            if self.direction is CallDirection.OUTBOUND:
                return (
                    CallState.ALERTING
                    if self.status is CallStatus.ALERTING
                    else CallState.PROCEEDING
                )
            # Inbound, claimed by us but not answered: a restart between our
            # POST and our "answered".  Offer it again rather than guess.
            return CallState.RINGING
        if self.handler is None and self.status is not CallStatus.ANSWERED:
            return CallState.RINGING
        return CallState.REMOTE

    def start(self, now: float) -> list[Action]:
        """Open the byways and alert the user as the call's initial state needs."""
        if self._started:
            raise LocalProtocolError("the call was already started")
        self._started = True
        actions: list[Action] = []
        if self.state is CallState.ENDED:
            reason = _FINAL_REASONS.get(self.status, "call ended")
            self.ended = CallEnded(self.status, reason, local=False)
            actions.append(self.ended)
            return actions
        self._byway(BywayTrigger.OPEN, now, None, actions)
        if self.handled_here:
            self._check_directive(actions)
        if self.state is CallState.RINGING:
            actions.append(Ring(self.direction, self.peer))
            if self.direction is CallDirection.INBOUND:
                # Inbound draft 4.1: every device that alerts tells the provider so.
                actions.append(self._event(Proceeding))
                actions.append(self._event(Alerting))
        elif self.state is CallState.ALERTING:
            actions.append(Ringback(on=True))
        return actions

    # ------------------------------------------------------------ local actions

    def answer(self, now: float) -> list[Action]:
        """The user answers an inbound call, or lifts to start a 3PCC outbound one."""
        actions = self._call(Trigger.ANSWER, now)
        actions.append(ClaimCall(self.uri, self.own_handler))
        return actions

    def pull(self, now: float) -> list[Action]:
        """Take a call handled by another of the user's devices (call pull, push, 3PCC move)."""
        actions = self._call(Trigger.PULL, now)
        actions.append(ClaimCall(self.uri, self.own_handler))
        return actions

    def decline(self, now: float) -> list[Action]:
        self._check_local(Trigger.DECLINE)
        actions: list[Action] = [self._event(Declined)]
        self.status = CallStatus.DECLINED
        actions.extend(self._call(Trigger.DECLINE, now, reason="declined", local=True))
        return actions

    def hangup(self, now: float) -> list[Action]:
        """End the call (cancel before answer).  Harmless once the call is over."""
        if self.state is CallState.ENDED:
            return []
        self._check_local(Trigger.HANGUP)
        actions: list[Action] = [self._event(End)]
        self.status = CallStatus.ENDED
        actions.extend(self._call(Trigger.HANGUP, now, reason="hung up", local=True))
        return actions

    # ------------------------------------------------------------ provider input

    def receive_event(self, event: Event, now: float) -> list[Action]:
        """One event from a reverse signalling byway."""
        actions: list[Action] = []
        if event.direction is not Direction.S2C:
            actions.append(ProtocolViolation(f"received a {event.type!r} event marked c2s"))
            return actions
        if isinstance(event, StateEvent):
            self._remote_status(event.status, now, actions, reason=event.reason)
        elif isinstance(event, HandlerChanged):
            self.handler = event.handler
            trigger = Trigger.HANDLER_HERE if self.handled_here else Trigger.HANDLER_AWAY
            actions.extend(self._call(trigger, now))
        elif isinstance(event, Pong):
            if event.nonce is None or event.nonce in self._timers.outstanding_nonces:
                self._timers.last_pong = now
                self._timers.outstanding_nonces.clear()
        elif isinstance(event, Ping):
            actions.append(self._event(Pong, nonce=event.nonce))
        elif isinstance(event, Migrate):
            if event.uri is not None:
                self.uri = event.uri
            self._byway(BywayTrigger.FAULT, now, "migrate requested by the provider", actions)
        elif isinstance(event, Reconnecting | Reconnected):
            reconnecting = isinstance(event, Reconnecting)
            if reconnecting != self.peer_reconnecting:
                self.peer_reconnecting = reconnecting
                actions.append(PeerConnectivity(reconnecting))
        elif isinstance(event, MediaPanic):
            if self.media_open:
                actions.append(ReopenMedia())
        elif isinstance(event, UnknownEvent):
            pass  # profile section 7: unknown types are ignored
        return actions

    def description_received(self, description: CallDescription, now: float) -> list[Action]:
        """A fresh call description (``GET {call}``, or ``POST {call}`` with an empty body)."""
        actions: list[Action] = []
        if description.uri != self.uri:
            actions.append(ProtocolViolation(f"description is for {description.uri}"))
            return actions
        claiming = self.state in (CallState.ANSWERING, CallState.PULLING)
        if claiming and description.handler == self.own_handler:
            # Our POST's reply was lost (or is late): the GET shows it worked.
            return self.claim_succeeded(description, now)
        if claiming:
            # The POST is still under way: it, not this GET, settles who holds the call.
            self._remote_status(description.state, now, actions, reason=None)
            return actions
        self._take_media_parameters(description)
        if description.handler != self.handler:
            self.handler = description.handler
            if self.handler is not None:
                trigger = Trigger.HANDLER_HERE if self.handled_here else Trigger.HANDLER_AWAY
                actions.extend(self._call(trigger, now))
        self._remote_status(description.state, now, actions, reason=None)
        if self.state is not CallState.ENDED and self.handled_here:
            self._check_directive(actions)
        return actions

    def claim_succeeded(self, description: CallDescription, now: float) -> list[Action]:
        """Our ``POST {call}`` with our handler returned this description."""
        actions: list[Action] = []
        if self.state not in (CallState.ANSWERING, CallState.PULLING):
            if self.state is CallState.ENDED:
                return actions
            raise LocalProtocolError(f"no claim is under way in state {self.state.value}")
        if description.handler != self.own_handler:
            return self.claim_failed(
                now, f"the provider gave the call to {description.handler or 'nobody'}"
            )
        self.handler = description.handler
        self._take_media_parameters(description)
        problem = self._directive_check(self.client_directives)
        if problem is not None:
            return self._refuse(problem, now)
        status = description.state
        if status.is_final:
            self._remote_status(status, now, actions, reason=None)
            return actions
        self.status = status
        if status is CallStatus.ANSWERED:
            trigger = Trigger.CLAIMED_ANSWERED
        elif self.direction is CallDirection.INBOUND:
            # Taking an unanswered inbound call, by answer or by pull, answers it.
            actions.append(self._event(Answered))
            self.status = CallStatus.ANSWERED
            trigger = Trigger.CLAIMED_ANSWERED
        elif status is CallStatus.ALERTING:
            trigger = Trigger.CLAIMED_ALERTING
        else:
            trigger = Trigger.CLAIMED_SETUP
        actions.extend(self._call(trigger, now))
        return actions

    def claim_failed(self, now: float, reason: str) -> list[Action]:
        """Our ``POST {call}`` failed (error status, or the connection died)."""
        actions: list[Action] = [ProtocolViolation(f"could not take the call: {reason}")]
        actions.extend(self._call(Trigger.CLAIM_FAILED, now))
        return actions

    def call_gone(self, now: float) -> list[Action]:
        """The call URI answered 404: the call is over (profile section 10)."""
        self.status = CallStatus.ENDED
        return self._call(Trigger.GONE, now, reason="call ended", local=False)

    # ------------------------------------------------------------ byway input

    def signalling_up(self, now: float) -> list[Action]:
        """The forward signalling PUT got its response headers."""
        actions: list[Action] = []
        if self.byways is not BywayState.OPENING:
            return actions
        reestablished = self._timers.attempts > 0 or self._was_up
        self._byway(BywayTrigger.SIGNALLING_UP, now, None, actions)
        return actions if not reestablished else [*actions, FetchDescription(self.uri)]

    def signalling_sent(self, now: float) -> None:
        """The requests of the byways being opened have left on a connection: their
        answer is due within :data:`OPEN_TIMEOUT` (else the connection is abandoned)."""
        if self.byways is BywayState.OPENING:
            self._timers.opening_since = now

    def byway_fault(self, now: float, reason: str) -> list[Action]:
        """A signalling byway was reset or failed while the connection lives."""
        actions: list[Action] = []
        self._byway(BywayTrigger.FAULT, now, reason, actions)
        return actions

    def connection_lost(self, now: float, reason: str = "connection lost") -> list[Action]:
        actions: list[Action] = []
        self._byway(BywayTrigger.CONNECTION_LOST, now, reason, actions)
        return actions

    # The three media notifications run on the 20 ms path: no actions, no allocation.

    def media_received(self, now: float) -> None:
        if self.media_open:
            self._timers.last_media_rx = now

    def media_sent(self, now: float) -> None:
        if self.media_open and self._timers.unacked_since is None:
            self._timers.unacked_since = now

    def ack_received(self, now: float) -> None:
        self._timers.unacked_since = None

    def handle_timer(self, now: float) -> list[Action]:
        """Run every timer that is due at ``now``."""
        actions: list[Action] = []
        t = self._timers
        if self.byways is BywayState.WAITING:
            if t.retry_at is not None and now >= t.retry_at:
                self._byway(BywayTrigger.RETRY_DUE, now, None, actions)
            return actions
        if self.byways is BywayState.OPENING:
            if t.opening_since is not None and now - t.opening_since >= OPEN_TIMEOUT:
                reason = f"no answer to the byways for {OPEN_TIMEOUT:g} s"
                actions.append(AbandonConnection(self.uri, reason))
                self._byway(BywayTrigger.CONNECTION_LOST, now, reason, actions)
            return actions
        if self.byways is not BywayState.UP:
            return actions
        if now - t.last_pong >= PONG_TIMEOUT:
            self._byway(BywayTrigger.FAULT, now, "no pong for 15 s", actions)
            return actions
        if self.media_open:
            if (
                self.state is CallState.ACTIVE
                and t.last_media_rx is not None
                and now - t.last_media_rx >= self.media_timeout
            ):
                reason = f"no media for {self.media_timeout:g} s"
                self._byway(BywayTrigger.FAULT, now, reason, actions)
                return actions
            if t.unacked_since is not None and now - t.unacked_since >= ACK_TIMEOUT:
                self._byway(BywayTrigger.FAULT, now, "no ack for 1 s of sent media", actions)
                return actions
        if t.next_ping is not None and now >= t.next_ping:
            t.ping_nonce += 1
            nonce = str(t.ping_nonce)
            t.outstanding_nonces.append(nonce)
            del t.outstanding_nonces[:-3]
            actions.append(self._event(Ping, nonce=nonce))
            t.next_ping = now + PING_INTERVAL
        return actions

    # ------------------------------------------------------------ internals

    def _event(self, cls: type[Event], **members: str | None) -> SendEvent:
        event = cls(
            direction=Direction.C2S,
            call=self.uri,
            timestamp=format_timestamp(self._wall()),
            **members,  # type: ignore[arg-type]  # (type-specific members: all strings)
        )
        return SendEvent(event)

    def _take_media_parameters(self, description: CallDescription) -> None:
        if description.media_key is not None:
            self.media_key = description.media_key
        if description.client_directives is not None:
            self.client_directives = description.client_directives

    def _check_directive(self, actions: list[Action]) -> None:
        problem = self._directive_check(self.client_directives)
        if problem is not None:
            actions.append(RefuseDirective(self.uri, problem))

    def _refuse(self, problem: str, now: float) -> list[Action]:
        self._refusals += 1
        if self._refusals > MAX_DIRECTIVE_REFUSALS:
            return self.hangup(now)
        return [RefuseDirective(self.uri, problem)]

    def _remote_status(
        self, status: CallStatus, now: float, actions: list[Action], *, reason: str | None
    ) -> None:
        if self.state is CallState.ENDED:
            return
        trigger = {
            CallStatus.PROCEEDING: Trigger.REMOTE_PROCEEDING,
            CallStatus.ALERTING: Trigger.REMOTE_ALERTING,
            CallStatus.ANSWERED: Trigger.REMOTE_ANSWERED,
        }.get(status, Trigger.REMOTE_FINAL)
        if (self.state, trigger) not in CALL_TRANSITIONS:
            actions.append(
                ProtocolViolation(
                    f"{status.value!r} does not fit a call in state {self.state.value}"
                )
            )
            return
        self.status = status
        final_reason = reason or _FINAL_REASONS.get(status, "call ended")
        actions.extend(self._call(trigger, now, reason=final_reason, local=False))

    def _check_local(self, trigger: Trigger) -> None:
        if (self.state, trigger) not in CALL_TRANSITIONS:
            raise LocalProtocolError(
                f"cannot {trigger.name.lower()} a call that is {self.state.value}"
            )

    def _call(
        self, trigger: Trigger, now: float, *, reason: str = "call ended", local: bool = False
    ) -> list[Action]:
        old = self.state
        if trigger in LOCAL_TRIGGERS:
            self._check_local(trigger)
        new = CALL_TRANSITIONS.get((old, trigger))
        if new is None:
            return [ProtocolViolation(f"{trigger.name.lower()} does not fit state {old.value}")]
        actions: list[Action] = []
        if new is old:
            return actions
        self.state = new
        # Leaving a state.
        if old is CallState.RINGING:
            actions.append(StopRinging())
        if old is CallState.ALERTING:
            actions.append(Ringback(on=False))
        actions.append(StateChanged(old, new))
        # Entering a state.
        if new is CallState.RINGING:
            actions.append(Ring(self.direction, self.peer))
        elif new is CallState.ALERTING:
            actions.append(Ringback(on=True))
        elif new is CallState.REMOTE and self.media_open:
            self._close_media(actions)
        elif new is CallState.ENDED:
            if self.media_open:
                self.media_open = False
            self._byway(BywayTrigger.CLOSE, now, None, actions)
            self.ended = CallEnded(self.status, reason, local)
            actions.append(self.ended)
        if new is CallState.ACTIVE:
            # The no-media timer runs only once the call is answered here.
            self._timers.last_media_rx = now
        if new in (CallState.PROCEEDING, CallState.ALERTING, CallState.ACTIVE):
            self._ensure_media(now, actions)
        return actions

    def _ensure_media(self, now: float, actions: list[Action]) -> None:
        if self.media_open or self.byways is not BywayState.UP or not self.handled_here:
            return
        self.media_open = True
        self._timers.last_media_rx = now
        self._timers.unacked_since = None
        actions.append(OpenMedia(self.uri, self.media_key, self.client_directives))

    def _close_media(self, actions: list[Action]) -> None:
        self.media_open = False
        self._timers.last_media_rx = None
        self._timers.unacked_since = None
        actions.append(CloseMedia())

    def _byway(
        self, trigger: BywayTrigger, now: float, reason: str | None, actions: list[Action]
    ) -> None:
        old = self.byways
        new = BYWAY_TRANSITIONS.get((old, trigger))
        if new is None:
            return  # e.g. a fault reported for byways already closed
        t = self._timers
        self.byways = new
        t.opening_since = None  # OPENING: set once the requests are sent
        if new is BywayState.CLOSED:
            if old is not BywayState.CLOSED:
                actions.append(CloseByways())
                actions.append(BywaysChanged(new, reason))
            return
        if trigger in (BywayTrigger.FAULT, BywayTrigger.CONNECTION_LOST) and self.media_open:
            # The media engine keeps buffering (profile section 10); only the
            # transport goes away.
            self.media_open = False
            t.last_media_rx = None
            t.unacked_since = None
        if new is BywayState.OPENING:
            migration = trigger is not BywayTrigger.OPEN
            if migration:
                actions.append(CloseByways())
            actions.append(OpenSignalling(self.uri, migration=migration))
            actions.append(BywaysChanged(new, reason))
        elif new is BywayState.UP:
            t.attempts = 0
            t.retry_at = None
            t.last_pong = now
            t.outstanding_nonces.clear()
            t.next_ping = now + PING_INTERVAL
            self._was_up = True
            actions.append(BywaysChanged(new, None))
            if self.state in (CallState.PROCEEDING, CallState.ALERTING, CallState.ACTIVE):
                self._ensure_media(now, actions)
        elif new is BywayState.WAITING:
            delay = self._retry_delay(t.attempts)
            t.attempts += 1
            t.retry_at = now + delay
            if old is not BywayState.WAITING:
                actions.append(CloseByways())
                actions.append(BywaysChanged(new, reason, retry_in=delay))

    def _retry_delay(self, attempt: int) -> float:
        """Back-off before retry ``attempt`` (0-based): ``retry-backoff`` doubled per failure
        up to 64 s (core draft, TG parameters), lengthened by up to :data:`RETRY_JITTER` of
        itself so that the phones of a provider that restarts do not all come back at once.
        Jitter never shortens the wait below what the provider asked for.
        """
        policy = BackoffPolicy(self.retry_backoff, MAX_RETRY_BACKOFF, RETRY_JITTER)
        return policy.delay(attempt, self._rng.random())
