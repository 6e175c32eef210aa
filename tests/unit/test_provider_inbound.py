"""The provider core's inbound side: forking, first claim wins, pull, 3PCC, admin events."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

import pytest

from ript.protocol.descriptions import (
    CallDescription,
    CallDirection,
    ClaimRequest,
    HandlerDescription,
    PlaceCallRequest,
)
from ript.protocol.events import (
    Alerting,
    Answered,
    CallStatus,
    Declined,
    Direction,
    End,
    Event,
    HandlerChanged,
    Migrate,
    ReplayFilter,
    format_timestamp,
)
from ript.protocol.taps import TapType
from riptprovider.accounts import Account, load_accounts
from riptprovider.core import ProviderCore, RiptHttpError, Subscription

ORIGIN = "https://provider.test"
ALERT_AFTER = 0.2  # the spec's figures, not the module's constants
RING_TIMEOUT = 60.0
AD = "1 in: opus; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU; PCMA; telephone-event; CN;"
CALLER = "+16505550100"
JWS = "eyJhbGciOiJFUzI1NiJ9.eyJvcmlnIjp7fX0.c2lnbmF0dXJl"
ACCOUNTS = """
[accounts.alice]
numbers = ["+14085551002"]
destinations = "+1408*"
tokens = ["alice-token-0123456789"]
unreachable = ["+1408000*"]

[[accounts.alice.far-end]]
match = "*"
answer-after = 1

[accounts.bob]
numbers = "+16505550111"
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


Tapped = list[tuple[str | None, TapType, str]]


@pytest.fixture
def accounts() -> dict[str, Account]:
    return load_accounts(tomllib.loads(ACCOUNTS)["accounts"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(tmp_path: Path, accounts: dict[str, Account], clock: Clock) -> ProviderCore:
    return ProviderCore(str(tmp_path / "p.db"), accounts, ORIGIN, clock)


def tapped(core: ProviderCore) -> Tapped:
    taps: Tapped = []
    core.push_hook = lambda handler, tap, uri: taps.append((handler.uri, tap, uri))
    return taps


def alice(core: ProviderCore) -> Account:
    return core.account("alice")


def register(core: ProviderCore, handler_id: str, name: str) -> str:
    described = core.register_handler(alice(core), HandlerDescription(handler_id, AD, name))
    assert described.uri is not None
    return described.uri


def c2s(cls: type[Event], call: str) -> Event:
    return cls(direction=Direction.C2S, call=call, timestamp=format_timestamp(0))


def drained(subscription: Subscription) -> list[Event]:
    return subscription.drain()


def status_of(exc: pytest.ExceptionInfo[RiptHttpError]) -> int:
    return exc.value.status


def answered_on(core: ProviderCore, handler: str) -> CallDescription:
    call = core.inject_inbound(alice(core), CALLER)
    core.claim_call(alice(core), call.uri, ClaimRequest(handler))
    assert core.client_event(alice(core), call.uri, c2s(Answered, call.uri)).problem is None
    return core.get_call(alice(core), call.uri)


def test_inbound_call_forks_a_call_tap_to_every_handler(core: ProviderCore) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    core.register_handler(core.account("bob"), HandlerDescription("h-9", AD, "Bob's"))
    taps = tapped(core)
    call = core.inject_inbound(alice(core), CALLER)
    assert taps == [(desk, TapType.CALL, call.uri), (kitchen, TapType.CALL, call.uri)]
    assert (call.direction, call.state, call.handler) == (
        CallDirection.INBOUND,
        CallStatus.PROCEEDING,
        None,
    )


def test_a_placed_call_is_tapped_to_the_accounts_other_handlers_only(
    core: ProviderCore,
) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    hall = register(core, "h-3", "Hall")
    core.register_handler(core.account("bob"), HandlerDescription("h-9", AD, "Bob's"))
    taps = tapped(core)
    placed = core.place_call(
        alice(core), PlaceCallRequest(kitchen, "+14089529999", JWS), lambda t, d: None
    )
    # Not the placing handler, not another account's: the user's other phones.
    assert sorted(taps) == sorted(
        [(desk, TapType.CALL, placed.uri), (hall, TapType.CALL, placed.uri)]
    )
    # What they fetch then (GET {call}) shows it handled by the placing phone.
    seen = core.get_call(alice(core), placed.uri)
    assert (seen.direction, seen.handler) == (CallDirection.OUTBOUND, kitchen)
    taps.clear()
    with pytest.raises(RiptHttpError):  # refused: no call, no taps
        core.place_call(
            alice(core), PlaceCallRequest(kitchen, "+14080000001", JWS), lambda t, d: None
        )
    assert taps == []


def test_first_claim_wins_and_the_others_see_it(core: ProviderCore) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    call = core.inject_inbound(alice(core), CALLER)
    at_desk = core.subscribe(alice(core), call.uri)
    at_kitchen = core.subscribe(alice(core), call.uri)
    core.client_event(alice(core), call.uri, c2s(Alerting, call.uri))
    taken = core.claim_call(alice(core), call.uri, ClaimRequest(desk))
    assert taken.handler == desk and taken.client_directives and taken.media_key is not None
    with pytest.raises(RiptHttpError) as exc:
        core.claim_call(alice(core), call.uri, ClaimRequest(kitchen))
    assert status_of(exc) == 409 and "being answered" in exc.value.message
    assert core.client_event(alice(core), call.uri, c2s(Answered, call.uri)).problem is None
    for byway in (at_desk, at_kitchen):
        events = drained(byway)
        assert [e.type for e in events] == ["proceeding", "alerting", "handler-changed", "answered"]
        changed = events[2]
        assert isinstance(changed, HandlerChanged) and changed.handler == desk
    assert core.get_call(alice(core), call.uri).handler == desk


def test_concurrent_claims_from_threads_have_one_winner(core: ProviderCore) -> None:
    handlers = [register(core, f"h-{i}", f"Phone {i}") for i in range(8)]
    call = core.inject_inbound(alice(core), CALLER)
    results: list[int] = []
    start = threading.Barrier(len(handlers))

    def claim(handler: str) -> None:
        start.wait()
        try:
            core.claim_call(alice(core), call.uri, ClaimRequest(handler))
            results.append(200)
        except RiptHttpError as exc:
            results.append(exc.status)

    threads = [threading.Thread(target=claim, args=(h,)) for h in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(results) == [200] + [409] * 7


def test_pull_moves_the_call_sends_handler_changed_and_retires_the_old_leg(
    core: ProviderCore,
) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    call = answered_on(core, desk)
    desk_leg = core.leg_token(call.uri)
    assert desk_leg is not None
    core.check_media_leg(alice(core), call.uri, desk_leg)
    watcher = core.subscribe(alice(core), call.uri)
    # The state, then the claim's handler-changed of a moment ago (kept for replay).
    assert [e.type for e in drained(watcher)] == ["answered", "handler-changed"]
    pulled = core.claim_call(alice(core), call.uri, ClaimRequest(kitchen))
    assert pulled.handler == kitchen and pulled.state is CallStatus.ANSWERED
    assert pulled.media_key is not None and pulled.media_key != call.media_key
    (event,) = drained(watcher)
    assert isinstance(event, HandlerChanged) and event.handler == kitchen
    kitchen_leg = core.leg_token(call.uri)
    assert kitchen_leg not in (None, desk_leg)
    with pytest.raises(RiptHttpError) as exc:
        core.check_media_leg(alice(core), call.uri, desk_leg)
    assert status_of(exc) == 409
    core.check_media_leg(alice(core), call.uri, kitchen_leg)
    core.check_media_leg(alice(core), call.uri, None)  # the provider itself (no device)
    # Pulling back works the same way.
    back = core.claim_call(alice(core), call.uri, ClaimRequest(desk))
    assert back.handler == desk
    with pytest.raises(RiptHttpError):
        core.check_media_leg(alice(core), call.uri, kitchen_leg)


def test_3pcc_place_taps_one_handler_and_starts_the_far_end_on_claim(
    core: ProviderCore, clock: Clock
) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    taps = tapped(core)
    call = core.place_for(alice(core), "Kitchen", "+14089529999")
    assert taps == [(kitchen, TapType.CALL, call.uri)]
    assert (call.direction, call.state, call.handler, call.from_, call.to) == (
        CallDirection.OUTBOUND,
        CallStatus.PROCEEDING,
        None,
        "+14085551002",
        "+14089529999",
    )
    clock.now += 10
    core.tick(clock.now)  # nobody took it: the far end has not heard of it yet
    assert core.get_call(alice(core), call.uri).state is CallStatus.PROCEEDING
    taken = core.claim_call(alice(core), call.uri, ClaimRequest(kitchen))
    assert taken.handler == kitchen and taken.state is CallStatus.PROCEEDING
    assert core.next_deadline() == pytest.approx(clock.now + ALERT_AFTER)
    clock.now += ALERT_AFTER
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.ALERTING
    clock.now += 1
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.ANSWERED
    # An outbound call in progress can be pulled too.
    assert core.claim_call(alice(core), call.uri, ClaimRequest(desk)).handler == desk


def test_3pcc_place_refusals_and_an_untaken_call_ends(core: ProviderCore, clock: Clock) -> None:
    register(core, "h-1", "Desk")
    for handler, to, status in (
        ("nobody", "+14089529999", 404),
        ("Desk", "+442079460000", 403),
        ("Desk", "+14080001234", 404),
        ("Desk", "bob@example.com", 404),
    ):
        with pytest.raises(RiptHttpError) as exc:
            core.place_for(alice(core), handler, to)
        assert status_of(exc) == status, (handler, to)
    call = core.place_for(alice(core), "h-1", "+14089529999")
    watcher = core.subscribe(alice(core), call.uri)
    drained(watcher)
    clock.now += RING_TIMEOUT
    core.tick(clock.now)
    (end,) = drained(watcher)
    assert isinstance(end, End) and end.reason
    with pytest.raises(RiptHttpError) as exc:
        core.get_call(alice(core), call.uri)
    assert status_of(exc) == 404


def test_move_answer_decline_send_taps_only(core: ProviderCore) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    taps = tapped(core)
    ringing = core.inject_inbound(alice(core), CALLER)
    taps.clear()
    core.answer_on(ringing.uri, "Kitchen")
    core.decline_on(ringing.uri.rsplit("/", 1)[1], "h-1")  # the UUID alone names it too
    assert taps == [(kitchen, TapType.ANSWER, ringing.uri), (desk, TapType.DECLINE, ringing.uri)]
    assert core.get_call(alice(core), ringing.uri).handler is None  # the phones act, not the core
    with pytest.raises(RiptHttpError) as exc:
        core.move_call(ringing.uri, "Desk")
    assert status_of(exc) == 409  # nobody holds it yet: answer it instead

    call = answered_on(core, desk)
    taps.clear()
    core.move_call(call.uri, kitchen)
    assert taps == [(kitchen, TapType.TAKE, call.uri)]
    assert core.get_call(alice(core), call.uri).handler == desk
    for operation, handler in (
        (core.move_call, "Desk"),  # already there
        (core.answer_on, "Kitchen"),  # not ringing
        (core.decline_on, "Kitchen"),
    ):
        with pytest.raises(RiptHttpError) as exc:
            operation(call.uri, handler)
        assert status_of(exc) == 409
    with pytest.raises(RiptHttpError) as exc:
        core.move_call(call.uri, "nobody")
    assert status_of(exc) == 404
    with pytest.raises(RiptHttpError) as exc:
        core.move_call(f"{ORIGIN}/calls/unknown", "Desk")
    assert status_of(exc) == 404


def test_declined_through_a_tap_then_ended(core: ProviderCore) -> None:
    register(core, "h-1", "Desk")
    call = core.inject_inbound(alice(core), CALLER)
    watcher = core.subscribe(alice(core), call.uri)
    core.decline_on(call.uri, "Desk")
    assert core.client_event(alice(core), call.uri, c2s(Declined, call.uri)).problem is None
    assert [e.type for e in drained(watcher)] == ["proceeding", "declined"]
    assert core.list_calls(alice(core)).calls == ()


def test_hangup_and_events_on_demand(core: ProviderCore) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    call = answered_on(core, desk)
    watchers = [core.subscribe(alice(core), call.uri) for _ in range(2)]
    for watcher in watchers:
        drained(watcher)
    new_uri = f"{ORIGIN}/calls/elsewhere"
    core.send_event(call.uri, "migrate", uri=new_uri)
    core.send_event(call.uri, "migrate")
    core.send_event(call.uri, "handler-changed", handler="Kitchen")
    core.send_event(call.uri, "handler-changed")
    with pytest.raises(RiptHttpError) as exc:
        core.send_event(call.uri, "ring")
    assert status_of(exc) == 400
    core.hangup(call.uri, "the caller hung up")
    for watcher in watchers:
        events = drained(watcher)
        assert [e.type for e in events] == [
            "migrate",
            "migrate",
            "handler-changed",
            "handler-changed",
            "end",
        ]
        first, second, changed, same, end = events
        assert isinstance(first, Migrate) and first.uri == new_uri
        assert isinstance(second, Migrate) and second.uri is None
        assert isinstance(changed, HandlerChanged) and changed.handler == kitchen
        assert isinstance(same, HandlerChanged) and same.handler == desk
        assert isinstance(end, End) and end.reason == "the caller hung up" and watcher.closed
    # The handler-changed events moved nothing: the call stayed on the desk until it ended.
    other = answered_on(core, desk)
    ended = core.send_event(other.uri, "end", reason="admin")
    assert isinstance(ended, End)
    with pytest.raises(RiptHttpError) as exc:
        core.find_call(other.uri)
    assert status_of(exc) == 404


def test_list_calls_gives_what_a_reconnecting_phone_needs(core: ProviderCore) -> None:
    desk = register(core, "h-1", "Desk")
    answered = answered_on(core, desk)
    ringing = core.inject_inbound(alice(core), CALLER)
    placed = core.place_for(alice(core), "Desk", "+14089529999")
    listed = {c.uri: c for c in core.list_calls(alice(core)).calls}
    assert list(listed) == [answered.uri, ringing.uri, placed.uri]
    assert (listed[answered.uri].handler, listed[answered.uri].state) == (
        desk,
        CallStatus.ANSWERED,
    )
    assert listed[ringing.uri].handler is None
    assert listed[placed.uri].direction is CallDirection.OUTBOUND
    assert all(c.media_key is None for c in listed.values())
    assert core.list_calls(core.account("bob")).calls == ()


def test_claimed_but_never_answered_inbound_call_times_out(
    core: ProviderCore, clock: Clock
) -> None:
    desk = register(core, "h-1", "Desk")
    call = core.inject_inbound(alice(core), CALLER)
    core.subscribe(alice(core), call.uri)  # the phone holds its byway, then dies mid-answer
    core.claim_call(alice(core), call.uri, ClaimRequest(desk))
    clock.now += RING_TIMEOUT - 1
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.PROCEEDING
    clock.now += 1
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.NOANSWER


def test_inbound_state_survives_a_restart(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    path = str(tmp_path / "p.db")
    core = ProviderCore(path, accounts, ORIGIN, clock)
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    answered = answered_on(core, desk)
    pulled = core.claim_call(alice(core), answered.uri, ClaimRequest(kitchen))
    ringing = core.inject_inbound(alice(core), CALLER)
    placed = core.place_for(alice(core), "Desk", "+14089529999")
    core.close()

    again = ProviderCore(path, accounts, ORIGIN, clock)
    taps = tapped(again)
    kept = again.get_call(alice(again), answered.uri)
    assert (kept.handler, kept.state, kept.media_key) == (
        kitchen,
        CallStatus.ANSWERED,
        pulled.media_key,
    )
    listed = [c.uri for c in again.list_calls(alice(again)).calls]
    assert listed == [answered.uri, ringing.uri, placed.uri]
    assert again.get_call(alice(again), placed.uri).handler is None
    assert [h.uri for h in again.forking_targets(ringing.uri)] == [desk, kitchen]
    again.answer_on(ringing.uri, "Kitchen")
    assert taps == [(kitchen, TapType.ANSWER, ringing.uri)]
    # First claim still wins after the restart.
    again.claim_call(alice(again), ringing.uri, ClaimRequest(desk))
    with pytest.raises(RiptHttpError):
        again.claim_call(alice(again), ringing.uri, ClaimRequest(kitchen))
    again.close()


def test_admin_lookups(core: ProviderCore) -> None:
    desk = register(core, "h-1", "Desk")
    register(core, "h-2", "Desk")
    assert core.find_handler(alice(core), desk).uri == desk
    assert core.find_handler(alice(core), "h-1").uri == desk
    with pytest.raises(RiptHttpError) as exc:
        core.find_handler(alice(core), "Desk")  # two of them: say so
    assert status_of(exc) == 409
    with pytest.raises(RiptHttpError) as exc:
        core.find_handler(core.account("bob"), "h-1")
    assert status_of(exc) == 404
    with pytest.raises(RiptHttpError) as exc:
        core.account("carol")
    assert status_of(exc) == 404


def test_a_placed_call_has_a_leg_that_a_pull_retires(core: ProviderCore) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    placed = core.place_call(
        alice(core), PlaceCallRequest(desk, "+14089529999", JWS), lambda t, d: None
    )
    leg = core.leg_token(placed.uri)
    assert leg is not None
    core.check_media_leg(alice(core), placed.uri, leg)
    core.claim_call(alice(core), placed.uri, ClaimRequest(kitchen))
    with pytest.raises(RiptHttpError) as exc:
        core.check_media_leg(alice(core), placed.uri, leg)
    assert status_of(exc) == 409


def test_migrate_with_rename_moves_the_call_to_a_fresh_uri(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    path = str(tmp_path / "m.db")
    core = ProviderCore(path, accounts, ORIGIN, clock)
    desk = register(core, "h-1", "Desk")
    call = answered_on(core, desk)
    watcher = core.subscribe(alice(core), call.uri)
    drained(watcher)
    with pytest.raises(RiptHttpError) as exc:
        core.send_event(call.uri, "migrate", uri=f"{ORIGIN}/calls/x", rename=True)
    assert status_of(exc) == 400
    leg = core.leg_token(call.uri)
    renamed: list[tuple[str, str]] = []
    core.call_renamed = lambda old, new: renamed.append((old, new))
    event = core.send_event(call.uri, "migrate", rename=True)
    assert isinstance(event, Migrate) and event.uri is not None and event.call == call.uri
    new_uri = event.uri
    assert new_uri.startswith(f"{ORIGIN}/calls/") and new_uri != call.uri
    (sent,) = drained(watcher)
    assert sent == event and watcher.closed
    with pytest.raises(RiptHttpError) as exc:
        core.get_call(alice(core), call.uri)
    assert status_of(exc) == 404
    moved = core.get_call(alice(core), new_uri)
    assert (moved.state, moved.handler, moved.media_key) == (
        CallStatus.ANSWERED,
        desk,
        call.media_key,
    )
    again = core.subscribe(alice(core), new_uri)
    assert [e.type for e in drained(again)] == ["answered"]
    # The leg goes along (its cookie is set again for the new path), and the server is told.
    assert leg is not None and core.leg_token(new_uri) == leg
    assert renamed == [(call.uri, new_uri)]
    core.close()
    restarted = ProviderCore(path, accounts, ORIGIN, clock)
    assert [c.uri for c in restarted.list_calls(alice(restarted)).calls] == [new_uri]
    restarted.close()


def test_reconnecting_and_reconnected_on_demand(core: ProviderCore) -> None:
    call = answered_on(core, register(core, "h-1", "Desk"))
    watcher = core.subscribe(alice(core), call.uri)
    drained(watcher)
    core.send_event(call.uri, "reconnecting")
    late = core.subscribe(alice(core), call.uri)
    assert [e.type for e in drained(late)] == ["answered", "reconnecting", "handler-changed"]
    core.send_event(call.uri, "reconnected")
    assert [e.type for e in drained(watcher)] == ["reconnecting", "reconnected"]


def test_the_leg_cookie_is_given_back_only_to_the_device_owning_the_handler(
    core: ProviderCore,
) -> None:
    desk = core.register_handler(alice(core), HandlerDescription("h-1", AD, "Desk"), "login:a")
    assert desk.uri is not None
    call = answered_on(core, desk.uri)
    leg = core.leg_token(call.uri)
    assert leg is not None
    assert core.leg_for(call.uri, "login:a") == leg
    assert core.leg_for(call.uri, "login:b") is None
    assert core.leg_for(f"{ORIGIN}/calls/unknown", "login:a") is None


def test_legs_and_the_s2c_numbering_survive_a_restart_of_the_provider(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    path = str(tmp_path / "r.db")
    core = ProviderCore(path, accounts, ORIGIN, clock)
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    call = answered_on(core, desk)
    desk_leg = core.leg_token(call.uri)
    assert call.media_key is not None and core.s2c_numbering(call.media_key) == 0
    core.reserve_s2c(call.media_key, 500)
    core.reserve_s2c(call.media_key, 400)  # never backwards
    core.claim_call(alice(core), call.uri, ClaimRequest())  # the call saved, same key
    core.close()  # (a kill saves nothing more: every change was written as it happened)
    core = ProviderCore(path, accounts, ORIGIN, clock)
    assert core.leg_token(call.uri) == desk_leg
    assert core.s2c_numbering(call.media_key) == 500
    # A pull: a new key numbers from 0 again, the desk's leg is refused from then on,
    # and that too is remembered.
    pulled = core.claim_call(alice(core), call.uri, ClaimRequest(kitchen))
    assert pulled.media_key is not None and pulled.media_key != call.media_key
    assert core.s2c_numbering(pulled.media_key) == 0
    core.reserve_s2c(call.media_key, 900)  # the old key's sender: no effect
    core.close()
    core = ProviderCore(path, accounts, ORIGIN, clock)
    assert core.s2c_numbering(pulled.media_key) == 0
    with pytest.raises(RiptHttpError) as exc:
        core.check_media_leg(alice(core), call.uri, desk_leg)
    assert status_of(exc) == 409
    assert core.leg_token(call.uri) not in (None, desk_leg)
    core.close()


def test_a_handler_reclaiming_its_own_call_gets_a_fresh_media_key(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    # A phone that restarted mid-call numbers its chunks from 0 again: under the old key
    # its nonces would repeat (docs/protocol.md 9.1), so its own claim re-keys the call.
    core = ProviderCore(str(tmp_path / "k.db"), accounts, ORIGIN, clock)
    desk = register(core, "h-1", "Desk")
    call = answered_on(core, desk)
    again = core.claim_call(alice(core), call.uri, ClaimRequest(desk))
    assert again.handler == desk
    assert again.media_key is not None and again.media_key != call.media_key
    kept = core.claim_call(alice(core), call.uri, ClaimRequest())  # new directives only
    assert kept.media_key == again.media_key
    core.close()


def test_media_without_the_leg_cookie_must_come_from_the_device_of_the_calls_handler(
    core: ProviderCore,
) -> None:
    desk_device = core.caller("alice-token-0123456789")
    core.issue_token(alice(core), "alice-kitchen-token-0123", None)
    kitchen_device = core.caller("alice-kitchen-token-0123")
    assert desk_device is not None and kitchen_device is not None
    assert desk_device.device != kitchen_device.device
    desk = core.register_handler(
        alice(core), HandlerDescription("h-1", AD, "Desk"), desk_device.device
    ).uri
    assert desk is not None
    call = answered_on(core, desk)
    leg = core.leg_token(call.uri)
    assert leg is not None
    core.check_media_leg(alice(core), call.uri, None, desk_device.device)  # a re-establishment
    core.check_media_leg(alice(core), call.uri, leg, kitchen_device.device)  # the leg's cookie
    # Another device of the account, without the cookie or with a made-up one, would take
    # the call's downlink (the newest session or GET gets the media): refused.
    for cookie in (None, "made-up"):
        with pytest.raises(RiptHttpError) as exc:
            core.check_media_leg(alice(core), call.uri, cookie, kitchen_device.device)
        assert status_of(exc) == 403


def test_a_new_reverse_byway_replays_the_events_of_the_last_seconds_numbered(
    core: ProviderCore, clock: Clock
) -> None:
    desk, kitchen = register(core, "h-1", "Desk"), register(core, "h-2", "Kitchen")
    call = answered_on(core, desk)
    first = core.subscribe(alice(core), call.uri)
    opening = drained(first)
    state = opening[0]
    assert state.type == "answered" and state.seq is not None
    # The claim's handler-changed, replayed after the state and numbered below it: a
    # phone on its first byway (ReplayFilter) applies the state and skips the rest.
    assert [(e.type, e.seq is not None and e.seq <= state.seq) for e in opening[1:]] == [
        ("handler-changed", True)
    ]
    core.unsubscribe(first)  # a blip: the byway is gone
    clock.now += 1
    moved = core.send_event(call.uri, "handler-changed", handler=kitchen)
    core.send_event(call.uri, "reconnecting")
    assert moved.seq is not None and moved.seq > state.seq
    clock.now += 2
    again = drained(core.subscribe(alice(core), call.uri))
    # The state numbered as the latest event, the far end's connectivity, then the
    # events not summed up by them: the phone applies those above what it had.
    assert [e.type for e in again] == [
        "answered",
        "reconnecting",
        "handler-changed",
        "handler-changed",
    ]
    assert again[0].seq == moved.seq + 1 and again[-1] == moved
    filtered = ReplayFilter()
    filtered.last = state.seq  # what the phone had before the blip
    applied = [e for i, e in enumerate(again) if filtered.take(e, first=i == 0)]
    assert [e.type for e in applied] == ["answered", "reconnecting", "handler-changed"]
    assert applied[-1] == moved
    # Kept 8 s: a byway opened later gets the state only.
    clock.now += 8
    assert [e.type for e in drained(core.subscribe(alice(core), call.uri))] == [
        "answered",
        "reconnecting",
    ]


def test_event_numbers_after_a_restart_are_above_those_before(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    path = str(tmp_path / "p.db")
    core = ProviderCore(path, accounts, ORIGIN, clock)
    call = answered_on(core, register(core, "h-1", "Desk"))
    before = drained(core.subscribe(alice(core), call.uri))[0].seq
    core.close()
    clock.now += 5
    restarted = ProviderCore(path, accounts, ORIGIN, clock)
    after = drained(restarted.subscribe(alice(restarted), call.uri))
    assert [e.type for e in after] == ["answered"]  # the events kept went with the process
    assert before is not None and after[0].seq is not None and after[0].seq > before
    restarted.close()
