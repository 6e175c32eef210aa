"""The call state machine: every transition-table pair, the timers, and random walks."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol import call as c
from ript.protocol.call import (
    BYWAY_TRANSITIONS,
    CALL_TRANSITIONS,
    AbandonConnection,
    Action,
    BywaysChanged,
    BywayState,
    Call,
    CallEnded,
    CallState,
    ClaimCall,
    CloseByways,
    CloseMedia,
    FetchDescription,
    OpenMedia,
    OpenSignalling,
    PeerConnectivity,
    ProtocolViolation,
    RefuseDirective,
    ReopenMedia,
    Ring,
    Ringback,
    SendEvent,
    StateChanged,
    StopRinging,
    Trigger,
)
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
    Failed,
    HandlerChanged,
    MediaPanic,
    Migrate,
    NoAnswer,
    Ping,
    Pong,
    Proceeding,
    Reconnected,
    Reconnecting,
    UnknownEvent,
)

CALL = "https://p.example/calls/0b6f3e2a-1c57-4a55-9d0e-5f8a8d6f2a10"
OURS = "https://p.example/tgs/7/handlers/desk"
OTHER = "https://p.example/tgs/7/handlers/mobile"
ME = "+14085551002"
THEM = "+14089529999"
KEY = MediaKey(cipher="AES_128_GCM", key=bytes(range(16)), salt=bytes(range(12)), tag_length=8)
KEY2 = MediaKey(cipher="AES_128_GCM", key=bytes(16), salt=bytes(12), tag_length=8)


def desc(
    *,
    direction: CallDirection = CallDirection.OUTBOUND,
    handler: str | None = OURS,
    state: CallStatus = CallStatus.PROCEEDING,
    uri: str = CALL,
    key: MediaKey | None = KEY,
    directive: str | None = "1 to 1: opus,ptime=20;",
) -> CallDescription:
    outbound = direction is CallDirection.OUTBOUND
    return CallDescription(
        uri=uri,
        handler=handler,
        direction=direction,
        from_=ME if outbound else THEM,
        to=THEM if outbound else ME,
        state=state,
        client_directives=directive,
        server_directives="1 to 1: opus;",
        media_key=key,
    )


def s2c(cls: type[Event], **members: Any) -> Event:
    return cls(direction=Direction.S2C, call=CALL, timestamp="2026-11-22T10:00:00.000Z", **members)


def make(d: CallDescription | None = None, **kw: Any) -> Call:
    return Call(
        d or desc(),
        own_handler=OURS,
        wall_clock=lambda: 1_800_000_000.0,
        rng=random.Random(7),
        **kw,
    )


def of(actions: list[Action], kind: type[Action]) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list[Action]) -> list[str]:
    return [a.event.type for a in actions if isinstance(a, SendEvent)]


def up(call: Call, now: float = 0.0) -> list[Action]:
    return call.signalling_up(now)


# ---------------------------------------------------------------- scenarios


def test_outbound_call_from_dial_to_hangup() -> None:
    call = make()
    assert call.state is CallState.PROCEEDING
    acts = call.start(0.0)
    assert of(acts, OpenSignalling) == [OpenSignalling(CALL, migration=False)]
    assert not of(acts, OpenMedia)  # media waits for the PUT's response headers
    acts = up(call, 0.1)
    assert of(acts, OpenMedia) == [OpenMedia(CALL, KEY, "1 to 1: opus,ptime=20;")]
    assert not of(acts, FetchDescription)  # first establishment: nothing to resync
    acts = call.receive_event(s2c(Alerting), 0.5)
    assert call.state is CallState.ALERTING
    assert of(acts, Ringback) == [Ringback(on=True)]
    acts = call.receive_event(s2c(Answered), 3.0)
    assert call.state is CallState.ACTIVE
    assert of(acts, Ringback) == [Ringback(on=False)]
    assert of(acts, StateChanged) == [StateChanged(CallState.ALERTING, CallState.ACTIVE)]
    acts = call.hangup(10.0)
    assert sent(acts) == ["end"]
    assert acts.index(of(acts, SendEvent)[0]) < acts.index(of(acts, CloseByways)[0])
    assert call.state is CallState.ENDED
    assert of(acts, CallEnded) == [CallEnded(CallStatus.ENDED, "hung up", local=True)]
    assert call.next_deadline() is None
    assert call.hangup(11.0) == []


def test_sent_events_carry_the_call_direction_and_a_timestamp() -> None:
    call = make()
    call.start(0.0)
    up(call)
    ev = of(call.hangup(1.0), SendEvent)[0].event
    assert ev.direction is Direction.C2S
    assert ev.call == CALL
    assert ev.timestamp == "2027-01-15T08:00:00.000Z"


@pytest.mark.parametrize(
    ("event", "status", "reason"),
    [
        (Declined, CallStatus.DECLINED, "declined"),
        (Failed, CallStatus.FAILED, "failed"),
        (NoAnswer, CallStatus.NOANSWER, "no answer"),
        (End, CallStatus.ENDED, "call ended"),
    ],
)
def test_outbound_call_refused_by_the_far_end(
    event: type[Event], status: CallStatus, reason: str
) -> None:
    call = make()
    call.start(0.0)
    up(call)
    acts = call.receive_event(s2c(event), 1.0)
    assert call.state is CallState.ENDED
    assert of(acts, CallEnded) == [CallEnded(status, reason, local=False)]
    assert of(acts, CloseByways)
    assert call.status is status


def test_end_reason_from_the_provider_is_kept() -> None:
    call = make()
    call.start(0.0)
    acts = call.receive_event(s2c(Failed, reason="number disconnected"), 1.0)
    assert of(acts, CallEnded)[0].reason == "number disconnected"


def test_inbound_call_rings_and_is_answered_here() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    assert call.state is CallState.RINGING
    acts = call.start(0.0)
    assert of(acts, Ring) == [Ring(CallDirection.INBOUND, THEM)]
    assert sent(acts) == ["proceeding", "alerting"]  # inbound draft 4.1
    up(call, 0.2)
    acts = call.answer(2.0)
    assert of(acts, StopRinging)
    assert of(acts, ClaimCall) == [ClaimCall(CALL, OURS)]
    assert call.state is CallState.ANSWERING
    acts = call.claim_succeeded(desc(direction=CallDirection.INBOUND, key=KEY2), 2.1)
    assert sent(acts) == ["answered"]
    assert call.state is CallState.ACTIVE
    assert of(acts, OpenMedia) == [OpenMedia(CALL, KEY2, "1 to 1: opus,ptime=20;")]
    # The provider echoes our answer; nothing changes.
    assert call.receive_event(s2c(Answered), 2.2) == []


def test_inbound_answered_before_signalling_is_up_opens_media_when_it_is() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    call.start(0.0)
    call.answer(0.5)
    acts = call.claim_succeeded(desc(direction=CallDirection.INBOUND), 0.6)
    assert not of(acts, OpenMedia)
    assert of(up(call, 0.7), OpenMedia)


def test_inbound_answered_elsewhere_stops_ringing_and_shows_remote_in_use() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    call.start(0.0)
    up(call)
    acts = call.receive_event(s2c(HandlerChanged, handler=OTHER), 1.0)
    acts += call.receive_event(s2c(Answered), 1.0)
    assert of(acts, StopRinging) == [StopRinging()]
    assert call.state is CallState.REMOTE
    assert not of(acts, OpenMedia)
    acts = call.receive_event(s2c(End), 30.0)
    assert call.state is CallState.ENDED
    assert not sent(acts)


def test_a_late_tap_for_an_answered_call_does_not_ring() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=OTHER, state=CallStatus.ANSWERED))
    acts = call.start(0.0)
    assert call.state is CallState.REMOTE
    assert not of(acts, Ring)
    assert not sent(acts)


def test_a_tap_for_an_ended_call_reports_it_over() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None, state=CallStatus.ENDED))
    acts = call.start(0.0)
    assert acts == [CallEnded(CallStatus.ENDED, "call ended", local=False)]
    assert call.next_deadline() is None


def test_pull_and_being_pulled() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call)
    assert call.media_open
    acts = call.receive_event(s2c(HandlerChanged, handler=OTHER), 5.0)
    assert of(acts, CloseMedia) == [CloseMedia()]
    assert call.state is CallState.REMOTE
    assert not call.media_open
    assert call.next_deadline() == 5.0  # only the ping is left (0 + 5)
    acts = call.pull(6.0)
    assert of(acts, ClaimCall) == [ClaimCall(CALL, OURS)]
    assert call.state is CallState.PULLING
    acts = call.claim_succeeded(desc(state=CallStatus.ANSWERED, key=KEY2), 6.1)
    assert call.state is CallState.ACTIVE
    assert not sent(acts)  # the call was already answered
    assert of(acts, OpenMedia) == [OpenMedia(CALL, KEY2, "1 to 1: opus,ptime=20;")]


def test_pulling_an_unanswered_inbound_call_answers_it() -> None:
    # Another device took the ringing call but had not answered when this one pulled it.
    call = make(desc(direction=CallDirection.INBOUND, handler=OTHER, state=CallStatus.ALERTING))
    call.start(0.0)
    assert call.state is CallState.REMOTE
    call.pull(1.0)
    acts = call.claim_succeeded(
        desc(direction=CallDirection.INBOUND, state=CallStatus.ALERTING), 1.1
    )
    assert sent(acts) == ["answered"]
    assert call.state is CallState.ACTIVE
    assert call.status is CallStatus.ANSWERED


def test_a_failed_claim_returns_to_ringing_and_rings_again() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    call.start(0.0)
    call.answer(1.0)
    acts = call.claim_failed(1.5, "HTTP 500")
    assert call.state is CallState.RINGING
    assert of(acts, Ring)
    assert of(acts, ProtocolViolation)[0].message == "could not take the call: HTTP 500"


def test_a_claim_answered_with_another_handler_is_a_failure() -> None:
    call = make(desc(handler=OTHER, state=CallStatus.ANSWERED))
    call.start(0.0)
    call.pull(1.0)
    call.claim_succeeded(desc(handler=OTHER, state=CallStatus.ANSWERED), 1.1)
    assert call.state is CallState.REMOTE


def test_a_get_during_a_claim_does_not_settle_it() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    call.start(0.0)
    call.answer(1.0)
    acts = call.description_received(
        desc(direction=CallDirection.INBOUND, handler=None, state=CallStatus.ALERTING), 1.1
    )
    assert call.state is CallState.ANSWERING
    assert not of(acts, ProtocolViolation)
    # ...but one that shows our handler means our POST went through.
    call.description_received(desc(direction=CallDirection.INBOUND), 1.2)
    assert call.state is CallState.ACTIVE


def test_third_party_outbound_call_waits_to_be_taken() -> None:
    offered = desc(direction=CallDirection.OUTBOUND, handler=None)
    call = make(offered)
    acts = call.start(0.0)
    assert call.state is CallState.RINGING
    assert of(acts, Ring) == [Ring(CallDirection.OUTBOUND, THEM)]
    assert not sent(acts)  # the provider, not this phone, progresses an outbound call
    up(call)
    call.answer(4.0)
    acts = call.claim_succeeded(desc(direction=CallDirection.OUTBOUND), 4.1)
    assert call.state is CallState.PROCEEDING
    assert not sent(acts)
    assert of(acts, OpenMedia)
    acts = call.receive_event(s2c(Alerting), 4.5)
    assert of(acts, Ringback) == [Ringback(on=True)]


def test_decline() -> None:
    call = make(desc(direction=CallDirection.INBOUND, handler=None))
    call.start(0.0)
    acts = call.decline(1.0)
    assert sent(acts) == ["declined"]
    assert of(acts, StopRinging)
    assert of(acts, CallEnded) == [CallEnded(CallStatus.DECLINED, "declined", local=True)]


@pytest.mark.parametrize(
    ("build", "action"),
    [
        (lambda: desc(state=CallStatus.ANSWERED), "answer"),
        (lambda: desc(state=CallStatus.ANSWERED), "pull"),
        (lambda: desc(state=CallStatus.ANSWERED), "decline"),
        (lambda: desc(direction=CallDirection.INBOUND, handler=None), "pull"),
        (lambda: desc(direction=CallDirection.INBOUND, handler=None), "hangup"),
        (lambda: desc(handler=OTHER, state=CallStatus.ANSWERED), "hangup"),
    ],
)
def test_local_actions_that_do_not_fit_raise_and_change_nothing(
    build: Callable[[], CallDescription], action: str
) -> None:
    call = make(build())
    call.start(0.0)
    before = (call.state, call.status)
    with pytest.raises(LocalProtocolError, match="cannot"):
        getattr(call, action)(1.0)
    assert (call.state, call.status) == before


def test_out_of_place_remote_events_are_reported_not_obeyed() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    acts = call.receive_event(s2c(Alerting), 1.0)
    assert call.state is CallState.ACTIVE
    assert call.status is CallStatus.ANSWERED
    assert of(acts, ProtocolViolation)
    acts = call.receive_event(
        Proceeding(direction=Direction.C2S, call=CALL, timestamp="2026-11-22T10:00:00.000Z"), 1.0
    )
    assert of(acts, ProtocolViolation)[0].message == "received a 'proceeding' event marked c2s"


def test_unknown_events_are_ignored() -> None:
    call = make()
    call.start(0.0)
    ev = s2c(UnknownEvent, event_type="hold", members={"x": 1})
    assert call.receive_event(ev, 1.0) == []


def test_provider_ping_is_answered() -> None:
    call = make()
    call.start(0.0)
    acts = call.receive_event(s2c(Ping, nonce="abc"), 1.0)
    pong = of(acts, SendEvent)[0].event
    assert isinstance(pong, Pong)
    assert pong.nonce == "abc"


# ---------------------------------------------------------------- timers


def test_ping_every_five_seconds_and_pongs_keep_the_byways() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call, 0.0)
    for i in range(1, 6):
        now = 5.0 * i
        assert call.next_deadline() == pytest.approx(now)
        call.media_received(now)
        acts = call.handle_timer(now)
        pings = [a.event for a in of(acts, SendEvent)]
        assert len(pings) == 1
        assert isinstance(pings[0], Ping)
        assert pings[0].nonce == str(i)
        call.receive_event(s2c(Pong, nonce=str(i)), now + 0.05)
    assert call.byways is BywayState.UP


def test_missing_pongs_re_establish_the_byways() -> None:
    call = make()
    call.start(0.0)
    up(call, 0.0)
    call.handle_timer(5.0)
    call.handle_timer(10.0)
    call.receive_event(s2c(Pong, nonce="999"), 11.0)  # a stale nonce does not count
    assert call.handle_timer(14.9) == []
    acts = call.handle_timer(15.0)
    assert of(acts, OpenSignalling) == [OpenSignalling(CALL, migration=True)]
    assert of(acts, BywaysChanged)[0].reason == "no pong for 15 s"
    assert call.byways is BywayState.OPENING
    acts = up(call, 15.1)
    assert of(acts, OpenMedia)
    assert of(acts, FetchDescription) == [FetchDescription(CALL)]


def test_no_media_for_the_media_timeout_re_establishes() -> None:
    call = make(desc(state=CallStatus.ANSWERED), media_timeout=5.0)
    call.start(0.0)
    up(call, 0.0)
    for t in (1.0, 2.0, 3.0):
        call.media_received(t)
    call.receive_event(s2c(Pong), 4.0)
    assert not of(call.handle_timer(7.9), OpenSignalling)  # only the 5 s ping so far
    acts = call.handle_timer(8.0)
    assert of(acts, BywaysChanged)[0].reason == "no media for 5 s"
    assert of(acts, CloseByways)
    assert not call.media_open
    assert call.state is CallState.ACTIVE  # a fault never ends the call


def test_no_media_before_answer_is_not_a_fault() -> None:
    call = make()
    call.start(0.0)
    up(call, 0.0)
    call.receive_event(s2c(Alerting), 0.5)
    for t in range(1, 30):
        call.receive_event(s2c(Pong), float(t))
        acts = call.handle_timer(float(t))
        assert not of(acts, OpenSignalling), t


def test_sent_media_without_acks_for_one_second_re_establishes() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call, 0.0)
    call.media_sent(0.02)
    call.media_received(0.03)
    call.ack_received(0.05)
    call.media_sent(0.5)
    call.media_sent(0.52)
    call.media_received(1.4)
    assert call.next_deadline() == pytest.approx(1.5)
    assert call.handle_timer(1.49) == []
    acts = call.handle_timer(1.5)
    assert of(acts, BywaysChanged)[0].reason == "no ack for 1 s of sent media"


def test_connection_loss_backs_off_and_doubles() -> None:
    call = make(desc(state=CallStatus.ANSWERED), retry_backoff=3.0)
    call.start(0.0)
    up(call, 0.0)
    acts = call.connection_lost(10.0)
    assert call.byways is BywayState.WAITING
    first = of(acts, BywaysChanged)[0].retry_in
    assert first is not None
    # retry-backoff is a floor (core draft): jitter only lengthens the wait, by up to 10 %.
    assert 3.0 <= first <= 3.3
    deadline = call.next_deadline()
    assert deadline == pytest.approx(10.0 + first)
    assert call.handle_timer(deadline - 0.01) == []
    now = deadline
    delays = []
    for _ in range(7):
        acts = call.handle_timer(now)
        assert of(acts, OpenSignalling) == [OpenSignalling(CALL, migration=True)]
        call.connection_lost(now + 0.1)
        nxt = call.next_deadline()
        assert nxt is not None
        delays.append(nxt - (now + 0.1))
        now = nxt
    floors = [6.0, 12.0, 24.0, 48.0, 64.0, 64.0, 64.0]
    for delay, floor in zip(delays, floors, strict=True):
        assert floor - 1e-6 <= delay <= floor * 1.1 + 1e-6
    call.handle_timer(now)
    acts = up(call, now + 0.2)
    assert of(acts, FetchDescription)
    assert of(acts, OpenMedia)


def test_retry_backoff_below_two_seconds_is_raised() -> None:
    call = make(retry_backoff=0.5)
    assert call.retry_backoff == 2.0


def test_migrate_moves_the_call_to_its_new_uri() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call)
    new = "https://p2.example/calls/0b6f3e2a-1c57-4a55-9d0e-5f8a8d6f2a10"
    acts = call.receive_event(s2c(Migrate, uri=new), 3.0)
    assert of(acts, OpenSignalling) == [OpenSignalling(new, migration=True)]
    assert call.uri == new
    acts = up(call, 3.1)
    assert of(acts, OpenMedia)[0].uri == new
    assert of(call.hangup(4.0), SendEvent)[0].event.call == new
    assert call.first_uri == CALL  # the phone's name for the call stays


def test_byways_that_get_no_answer_abandon_the_connection() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call)
    call.receive_event(s2c(Migrate), 2.0)  # re-establishing on a connection that is dead
    assert call.byways is BywayState.OPENING
    assert call.next_deadline() is None  # connecting: the connect's own timeout runs
    call.signalling_sent(3.0)  # the PUT left
    assert call.next_deadline() == pytest.approx(3.0 + c.OPEN_TIMEOUT)
    assert call.handle_timer(3.0 + c.OPEN_TIMEOUT - 0.01) == []
    acts = call.handle_timer(3.0 + c.OPEN_TIMEOUT)
    reason = f"no answer to the byways for {c.OPEN_TIMEOUT:g} s"
    assert of(acts, AbandonConnection) == [AbandonConnection(CALL, reason)]
    assert call.byways is BywayState.WAITING  # then the retry-backoff, as for a lost connection
    assert of(acts, BywaysChanged)[0].reason == reason
    assert of(acts, CloseByways)
    assert call.state is CallState.ACTIVE


def test_a_call_uri_that_answers_404_is_over() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    up(call)
    call.connection_lost(1.0)
    acts = call.call_gone(20.0)
    assert call.state is CallState.ENDED
    assert of(acts, CallEnded) == [CallEnded(CallStatus.ENDED, "call ended", local=False)]
    assert call.next_deadline() is None


def test_peer_reconnecting_is_reported_once_per_change() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    assert of(call.receive_event(s2c(Reconnecting), 1.0), PeerConnectivity) == [
        PeerConnectivity(True)
    ]
    assert call.receive_event(s2c(Reconnecting), 1.5) == []
    assert of(call.receive_event(s2c(Reconnected), 2.0), PeerConnectivity) == [
        PeerConnectivity(False)
    ]


def test_media_panic_tops_up_the_media_byways() -> None:
    call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    assert call.receive_event(s2c(MediaPanic), 0.5) == []  # no media yet
    up(call)
    assert call.receive_event(s2c(MediaPanic), 1.0) == [ReopenMedia()]


def test_a_directive_that_cannot_be_followed_is_refused_then_the_call_given_up() -> None:
    problems: list[str | None] = ["no such source 2"] * 10
    call = make(
        desc(direction=CallDirection.INBOUND, handler=None),
        directive_check=lambda _d: problems[0],
    )
    call.start(0.0)
    call.answer(1.0)
    answered_desc = desc(direction=CallDirection.INBOUND)
    for _ in range(c.MAX_DIRECTIVE_REFUSALS):
        acts = call.claim_succeeded(answered_desc, 1.1)
        assert acts == [RefuseDirective(CALL, "no such source 2")]
        assert call.state is CallState.ANSWERING
    acts = call.description_received(answered_desc, 1.2)
    assert call.state is CallState.ENDED
    assert sent(acts) == ["end"]


# ---------------------------------------------------------------- the whole table


REMOTE_EVENT: dict[Trigger, Callable[[], Event]] = {
    Trigger.REMOTE_PROCEEDING: lambda: s2c(Proceeding),
    Trigger.REMOTE_ALERTING: lambda: s2c(Alerting),
    Trigger.REMOTE_ANSWERED: lambda: s2c(Answered),
    Trigger.REMOTE_FINAL: lambda: s2c(End),
    Trigger.HANDLER_HERE: lambda: s2c(HandlerChanged, handler=OURS),
    Trigger.HANDLER_AWAY: lambda: s2c(HandlerChanged, handler=OTHER),
}


def reach(state: CallState, trigger: Trigger) -> Call:
    """A started call in ``state``, built the way a user would get there."""
    inbound_unanswered = desc(direction=CallDirection.INBOUND, handler=None)
    offered_outbound = desc(direction=CallDirection.OUTBOUND, handler=None)
    # CLAIMED_SETUP/ALERTING only exist for outbound calls; use one for those.
    outbound_claim = trigger in (Trigger.CLAIMED_SETUP, Trigger.CLAIMED_ALERTING)
    if state is CallState.PROCEEDING:
        call = make(desc())
    elif state is CallState.ALERTING:
        call = make(desc(state=CallStatus.ALERTING))
    elif state is CallState.RINGING:
        call = make(inbound_unanswered)
    elif state is CallState.ANSWERING:
        call = make(offered_outbound if outbound_claim else inbound_unanswered)
    elif state is CallState.ACTIVE:
        call = make(desc(state=CallStatus.ANSWERED))
    elif state is CallState.REMOTE:
        call = make(desc(handler=OTHER, state=CallStatus.ALERTING))
    elif state is CallState.PULLING:
        call = make(desc(handler=OTHER, state=CallStatus.PROCEEDING))
    else:
        call = make(desc(state=CallStatus.ANSWERED))
    call.start(0.0)
    call.signalling_up(0.0)
    if state is CallState.ANSWERING:
        call.answer(0.1)
    elif state is CallState.PULLING:
        call.pull(0.1)
    elif state is CallState.ENDED:
        call.hangup(0.1)
    assert call.state is state
    return call


def fire(call: Call, trigger: Trigger) -> list[Action]:
    if trigger in REMOTE_EVENT:
        return call.receive_event(REMOTE_EVENT[trigger](), 1.0)
    if trigger is Trigger.GONE:
        return call.call_gone(1.0)
    if trigger is Trigger.ANSWER:
        return call.answer(1.0)
    if trigger is Trigger.DECLINE:
        return call.decline(1.0)
    if trigger is Trigger.PULL:
        return call.pull(1.0)
    if trigger is Trigger.HANGUP:
        return call.hangup(1.0)
    if trigger is Trigger.CLAIM_FAILED:
        return call.claim_failed(1.0, "HTTP 503")
    status = {
        Trigger.CLAIMED_SETUP: CallStatus.PROCEEDING,
        Trigger.CLAIMED_ALERTING: CallStatus.ALERTING,
        Trigger.CLAIMED_ANSWERED: CallStatus.ANSWERED,
    }[trigger]
    return call.claim_succeeded(desc(direction=call.direction, state=status), 1.0)


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(s, t) for s in CallState for t in Trigger],
    ids=lambda v: v.name,
)
def test_every_pair_of_the_call_table(state: CallState, trigger: Trigger) -> None:
    call = reach(state, trigger)
    expected = CALL_TRANSITIONS.get((state, trigger))
    if expected is not None:
        acts = fire(call, trigger)
        assert call.state is expected
        assert not of(acts, ProtocolViolation) or trigger is Trigger.CLAIM_FAILED
        changes = of(acts, StateChanged)
        assert changes == ([] if expected is state else [StateChanged(state, expected)])
    elif trigger in c.LOCAL_TRIGGERS:
        with pytest.raises(LocalProtocolError):
            fire(call, trigger)
        assert call.state is state
    elif trigger in (
        Trigger.CLAIMED_SETUP,
        Trigger.CLAIMED_ALERTING,
        Trigger.CLAIMED_ANSWERED,
    ):
        with pytest.raises(LocalProtocolError, match="no claim"):
            fire(call, trigger)
    else:
        acts = fire(call, trigger)
        assert call.state is state
        assert of(acts, ProtocolViolation)


def reach_byways(state: BywayState) -> Call:
    call = make(desc(state=CallStatus.ANSWERED))
    if state is BywayState.CLOSED:
        return call  # not started yet
    call.start(0.0)
    if state is BywayState.UP:
        call.signalling_up(0.0)
    elif state is BywayState.WAITING:
        call.connection_lost(0.0)
    assert call.byways is state
    return call


def fire_byway(call: Call, trigger: c.BywayTrigger) -> list[Action]:
    if trigger is c.BywayTrigger.OPEN:
        return call.start(1.0)
    if trigger is c.BywayTrigger.SIGNALLING_UP:
        return call.signalling_up(1.0)
    if trigger is c.BywayTrigger.FAULT:
        return call.byway_fault(1.0, "stream reset")
    if trigger is c.BywayTrigger.CONNECTION_LOST:
        return call.connection_lost(1.0)
    if trigger is c.BywayTrigger.RETRY_DUE:
        deadline = call.next_deadline()
        return call.handle_timer(deadline if deadline is not None else 1.0)
    return call.hangup(1.0)


@pytest.mark.parametrize(
    ("state", "trigger"),
    [(s, t) for s in BywayState for t in c.BywayTrigger],
    ids=lambda v: v.name,
)
def test_every_pair_of_the_byway_table(state: BywayState, trigger: c.BywayTrigger) -> None:
    call = reach_byways(state)
    if trigger is c.BywayTrigger.OPEN and state is not BywayState.CLOSED:
        with pytest.raises(LocalProtocolError, match="already started"):
            fire_byway(call, trigger)
        return
    if trigger is c.BywayTrigger.RETRY_DUE and state is not BywayState.WAITING:
        # Only a waiting call has a retry timer; the tick does something else.
        fire_byway(call, trigger)
        assert (state, trigger) not in BYWAY_TRANSITIONS
        return
    acts = fire_byway(call, trigger)
    expected = BYWAY_TRANSITIONS.get((state, trigger), state)
    assert call.byways is expected
    if expected is BywayState.OPENING and state is not BywayState.CLOSED:
        assert of(acts, OpenSignalling) == [OpenSignalling(CALL, migration=True)]
    if expected is BywayState.WAITING and state is not BywayState.WAITING:
        assert of(acts, CloseByways)


# ---------------------------------------------------------------- random walks

INPUTS = st.lists(
    st.sampled_from(
        [
            "proceeding",
            "alerting",
            "answered",
            "end",
            "declined",
            "here",
            "away",
            "gone",
            "answer",
            "decline",
            "pull",
            "hangup",
            "claim_ok",
            "claim_fail",
            "up",
            "fault",
            "lost",
            "media_rx",
            "media_tx",
            "ack",
            "pong",
            "migrate",
            "panic",
            "tick",
        ]
    ),
    max_size=60,
)

START = st.sampled_from(
    [
        desc(),
        desc(state=CallStatus.ANSWERED),
        desc(direction=CallDirection.INBOUND, handler=None),
        desc(direction=CallDirection.OUTBOUND, handler=None),
        desc(handler=OTHER, state=CallStatus.ANSWERED),
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=START, inputs=INPUTS, steps=st.lists(st.floats(0.0, 7.0), min_size=60, max_size=60))
def test_random_walks_keep_the_invariants(
    start: CallDescription, inputs: list[str], steps: list[float]
) -> None:
    call = make(start)
    ringing = False
    acts = call.start(0.0)
    now = 0.0

    def apply(actions: list[Action]) -> None:
        nonlocal ringing
        for a in actions:
            if isinstance(a, Ring):
                assert not ringing, "rang twice"
                ringing = True
            elif isinstance(a, StopRinging):
                assert ringing, "stopped a ringer that was silent"
                ringing = False

    apply(acts)
    for name, step in zip(inputs, steps, strict=False):
        now += step
        simple = {
            "proceeding": Proceeding,
            "alerting": Alerting,
            "answered": Answered,
            "end": End,
            "declined": Declined,
        }
        try:
            if name in simple:
                acts = call.receive_event(s2c(simple[name]), now)
            elif name in ("here", "away"):
                handler = OURS if name == "here" else OTHER
                acts = call.receive_event(s2c(HandlerChanged, handler=handler), now)
            elif name == "gone":
                acts = call.call_gone(now)
            elif name in ("answer", "decline", "pull", "hangup"):
                acts = getattr(call, name)(now)
            elif name == "claim_ok":
                acts = call.claim_succeeded(desc(direction=call.direction, state=call.status), now)
            elif name == "claim_fail":
                acts = call.claim_failed(now, "HTTP 500")
            elif name == "up":
                acts = call.signalling_up(now)
            elif name == "fault":
                acts = call.byway_fault(now, "reset")
            elif name == "lost":
                acts = call.connection_lost(now)
            elif name == "media_rx":
                call.media_received(now)
                acts = []
            elif name == "media_tx":
                call.media_sent(now)
                acts = []
            elif name == "ack":
                call.ack_received(now)
                acts = []
            elif name == "pong":
                acts = call.receive_event(s2c(Pong), now)
            elif name == "migrate":
                acts = call.receive_event(s2c(Migrate), now)
            elif name == "panic":
                acts = call.receive_event(s2c(MediaPanic), now)
            else:
                deadline = call.next_deadline()
                acts = call.handle_timer(deadline if deadline is not None else now)
        except LocalProtocolError:
            continue
        apply(acts)
        # Invariants.
        if call.media_open:
            assert call.handled_here
            assert call.byways is BywayState.UP
            assert call.state in (CallState.PROCEEDING, CallState.ALERTING, CallState.ACTIVE)
        if call.state is CallState.ENDED:
            assert call.byways is BywayState.CLOSED
            assert call.next_deadline() is None
            assert call.ended is not None
            assert not ringing
        assert ringing == (call.state is CallState.RINGING)
        if of(acts, OpenMedia):
            assert call.media_open
