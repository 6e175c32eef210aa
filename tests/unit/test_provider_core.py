"""The reference provider's core: accounts, persistence, handlers, calls, events, timers."""

from __future__ import annotations

import json
import os
import sqlite3
import tomllib
from pathlib import Path

import pytest

from ript.protocol.advertisement import parse_directive
from ript.protocol.descriptions import (
    CallDescription,
    CallDirection,
    ClaimRequest,
    HandlerDescription,
    PlaceCallRequest,
    PushBinding,
)
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
    Migrate,
    NoAnswer,
    Ping,
    Pong,
    Proceeding,
    StateEvent,
    UnknownEvent,
    format_timestamp,
)
from ript.protocol.taps import TapType
from riptprovider.accounts import Account, AccountsError, MediaMode, Outcome, load_accounts
from riptprovider.core import (
    ProviderCore,
    RiptHttpError,
    Subscription,
)
from riptprovider.db import SCHEMA_VERSION, DbError, ProviderDb

ORIGIN = "https://provider.test"
# The spec's numbers, not the module's constants, so that a wrong constant fails.
ALERT_AFTER = 0.2
IDLE_END_AFTER = 30.0
ALICE_TOKEN = "alice-token-0123456789"
BOB_TOKEN = "bob-token-0123456789ab"
PHONE_AD = (
    "1 in: opus; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU; PCMA; telephone-event; CN;"
)
PCMU_AD = "1 in: PCMU;\n1 out: PCMU;"
JWS = "eyJhbGciOiJFUzI1NiJ9.eyJvcmlnIjp7fX0.c2lnbmF0dXJl"

ACCOUNTS_TOML = f"""
[accounts.alice]
name = "Alice"
numbers = ["+14085551002", "+14085551003"]
destinations = ["+1408*", "+1650*"]
tokens = ["{ALICE_TOKEN}"]
unreachable = ["+1408000*"]

[[accounts.alice.far-end]]
match = "+14089520001"
outcome = "decline"
reject-after = 2

[[accounts.alice.far-end]]
match = "+14089520002"
outcome = "never-answer"
noanswer-after = 30

[[accounts.alice.far-end]]
match = "+14089520003"
outcome = "busy"

[[accounts.alice.far-end]]
match = "+1408952*"
answer-after = 3
media = "tone"
tone-hz = 1000

[accounts.bob]
numbers = "+16505550100"
tokens = ["{BOB_TOKEN}"]
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def no_problem(token: str, destination: str) -> str | None:
    return None


@pytest.fixture
def accounts() -> dict[str, Account]:
    return load_accounts(tomllib.loads(ACCOUNTS_TOML)["accounts"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def core(tmp_path: Path, accounts: dict[str, Account], clock: Clock) -> ProviderCore:
    return ProviderCore(str(tmp_path / "provider.db"), accounts, ORIGIN, clock)


def alice(core: ProviderCore) -> Account:
    account = core.authenticate(ALICE_TOKEN)
    assert account is not None
    return account


def bob(core: ProviderCore) -> Account:
    account = core.authenticate(BOB_TOKEN)
    assert account is not None
    return account


def register(core: ProviderCore, handler_id: str = "h-1", ad: str = PHONE_AD) -> str:
    described = core.register_handler(alice(core), HandlerDescription(handler_id, ad, "Desk"))
    assert described.uri is not None
    return described.uri


def place(core: ProviderCore, handler: str, destination: str = "+14085550199") -> CallDescription:
    return core.place_call(alice(core), PlaceCallRequest(handler, destination, JWS), no_problem)


def status(exc: pytest.ExceptionInfo[RiptHttpError]) -> int:
    return exc.value.status


def c2s(cls: type[Event], call: str, **extra: object) -> Event:
    return cls(direction=Direction.C2S, call=call, timestamp=format_timestamp(0), **extra)


def kinds(subscription: Subscription) -> list[str]:
    return [event.type for event in subscription.drain()]


# ----------------------------------------------------------------------------- accounts


def test_accounts_are_read_with_defaults(accounts: dict[str, Account]) -> None:
    a, b = accounts["alice"], accounts["bob"]
    assert a.name == "Alice" and a.main_number == "+14085551002"
    assert a.destinations.allows("+16505550000") and not a.destinations.allows("+442079460000")
    assert b.name == "bob" and b.numbers == ("+16505550100",)
    assert b.destinations.allows("+442079460000")
    assert a.is_unreachable("+14080001234") and not a.is_unreachable("+14085550199")
    assert a.far_end("+14089520001").outcome is Outcome.DECLINE
    assert a.far_end("+14089520001").reject_after == 2.0
    tone = a.far_end("+14089529999")
    assert (tone.outcome, tone.answer_after, tone.media, tone.tone_hz) == (
        Outcome.ANSWER,
        3.0,
        MediaMode.TONE,
        1000,
    )
    assert a.far_end("+16505550000").media is MediaMode.ECHO
    assert ALICE_TOKEN not in repr(a)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[x]\nnumbers = ["14085551002"]\ntokens = []', "accounts.x.numbers"),
        ("[x]\nnumbers = []", "accounts.x.numbers"),
        ('[x]\nnumbers = "+14085551002"\nfoo = 1', "accounts.x.foo"),
        ('[x]\nnumbers = "+14085551002"\ndestinations = "1408"', "accounts.x.destinations"),
        ('[x]\nnumbers = "+14085551002"\ntokens = ["short"]', "accounts.x.tokens"),
        (
            '[x]\nnumbers = "+14085551002"\n[[x.far-end]]\nmatch = "*"\noutcome = "maybe"',
            "accounts.x.far-end[0].outcome",
        ),
        (
            '[x]\nnumbers = "+14085551002"\n[[x.far-end]]\nmatch = "*"\nanswer-after = -1',
            "accounts.x.far-end[0].answer-after",
        ),
        (
            '[x]\nnumbers = "+14085551002"\n[[x.far-end]]\nmatch = "*"\nmedia = "file"',
            "accounts.x.far-end[0].file",
        ),
        (
            '[x]\nnumbers = "+14085551002"\n[[x.far-end]]\nmedia = "echo"',
            "accounts.x.far-end[0].match",
        ),
        ('["bad id"]\nnumbers = "+14085551002"', "accounts.bad id"),
    ],
)
def test_bad_accounts_name_the_key(text: str, key: str) -> None:
    with pytest.raises(AccountsError) as exc:
        load_accounts(tomllib.loads(text))
    assert str(exc.value).startswith(key)


def test_a_token_shared_by_two_accounts_is_refused_without_showing_it() -> None:
    text = f'[a]\nnumbers = "+14085551002"\ntokens = ["{ALICE_TOKEN}"]\n'
    text += f'[b]\nnumbers = "+14085551003"\ntokens = ["{ALICE_TOKEN}"]\n'
    with pytest.raises(AccountsError) as exc:
        load_accounts(tomllib.loads(text))
    assert ALICE_TOKEN not in str(exc.value) and "accounts.b.tokens" in str(exc.value)


# ----------------------------------------------------------------------------- db


def test_db_file_is_private_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    ProviderDb(path).close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(DbError, match="schema version 99"):
        ProviderDb(path)


def test_issued_tokens_are_stored_hashed_and_expire(core: ProviderCore, clock: Clock) -> None:
    core.issue_token(bob(core), "issued-token-abcdefgh", lifetime=60)
    assert core.authenticate("issued-token-abcdefgh") == bob(core)
    raw = sqlite3.connect(core.db.path).execute("SELECT token_sha256 FROM tokens").fetchall()
    assert raw and "issued-token-abcdefgh" not in str(raw)
    clock.now += 61
    assert core.authenticate("issued-token-abcdefgh") is None
    assert core.authenticate("nobody") is None
    assert core.authenticate("") is None


# ----------------------------------------------------------------------------- TGs


def test_tg_document_comes_from_the_account(core: ProviderCore) -> None:
    tgs = core.provider_tgs(alice(core))
    assert [t.uri for t in tgs.tgs] == [f"{ORIGIN}/tgs/alice"]
    tg = core.trunk_group(alice(core)).to_json()
    assert tg["uri"] == f"{ORIGIN}/tgs/alice"
    assert tg["outbound"]["destinations"] == ["+1408*", "+1650*"]
    assert tg["inbound"]["destinations"] == ["+14085551002", "+14085551003"]
    assert (tg["retry-backoff"], tg["media-timeout"]) == (2000, 5000)


# ----------------------------------------------------------------------------- handlers


def test_register_echoes_with_uri_and_is_idempotent_by_handler_id(core: ProviderCore) -> None:
    first = core.register_handler(alice(core), HandlerDescription("h-1", PHONE_AD, "Desk"))
    assert first.uri is not None and first.uri.startswith(f"{ORIGIN}/tgs/alice/handlers/")
    assert (first.handler_id, first.advertisement, first.name, first.push) == (
        "h-1",
        PHONE_AD,
        "Desk",
        None,
    )
    again = core.register_handler(alice(core), HandlerDescription("h-1", PCMU_AD, "Kitchen"))
    assert again.uri == first.uri and again.advertisement == PCMU_AD and again.name == "Kitchen"
    assert [h.uri for h in core.handlers(alice(core))] == [first.uri]
    other = core.register_handler(bob(core), HandlerDescription("h-1", PHONE_AD))
    assert other.uri != first.uri and other.uri is not None and "/tgs/bob/" in other.uri


def test_register_refuses_a_bad_advertisement_and_a_bad_body(core: ProviderCore) -> None:
    with pytest.raises(RiptHttpError) as exc:
        core.register_handler(alice(core), HandlerDescription("h-1", "1 sideways: opus;"))
    assert status(exc) == 400 and "advertisement" in exc.value.message
    with pytest.raises(RiptHttpError) as exc:
        core.register_handler(alice(core), b'{"name": "no id"}')
    assert status(exc) == 400 and "handler-id" in exc.value.message
    assert core.handlers(alice(core)) == []


def test_handler_get_put_delete(core: ProviderCore) -> None:
    uri = register(core)
    assert core.get_handler(alice(core), uri).name == "Desk"
    with pytest.raises(RiptHttpError) as exc:
        core.get_handler(bob(core), uri)
    assert status(exc) == 404
    updated = core.update_handler(alice(core), uri, HandlerDescription("h-1", PCMU_AD, "New"))
    assert (updated.uri, updated.advertisement, updated.name) == (uri, PCMU_AD, "New")
    assert core.get_handler(alice(core), uri).advertisement == PCMU_AD
    with pytest.raises(RiptHttpError) as exc:
        core.update_handler(alice(core), uri, HandlerDescription("h-2", PCMU_AD))
    assert status(exc) == 400
    core.delete_handler(alice(core), uri)
    for action in (
        lambda: core.get_handler(alice(core), uri),
        lambda: core.delete_handler(alice(core), uri),
        lambda: core.update_handler(alice(core), uri, HandlerDescription("h-1", PCMU_AD)),
    ):
        with pytest.raises(RiptHttpError) as exc:
            action()
        assert status(exc) == 404


def test_push_binding_hook_fills_registration(core: ProviderCore) -> None:
    binding = PushBinding("mqtts://broker.test", "ript/alice/h-1", "alice", "secret")
    core.push_binder = lambda account, handler: binding
    described = core.register_handler(alice(core), HandlerDescription("h-1", PHONE_AD))
    assert described.push == binding
    assert described.uri is not None
    core.set_push_binding(alice(core), described.uri, None)
    assert core.get_handler(alice(core), described.uri).push is None


# ----------------------------------------------------------------------------- placing calls


def test_place_call_happy_path(core: ProviderCore, clock: Clock) -> None:
    handler = register(core)
    seen: list[tuple[str, str]] = []

    def check(token: str, destination: str) -> str | None:
        seen.append((token, destination))
        return None

    call = core.place_call(alice(core), PlaceCallRequest(handler, "+14085550199", JWS), check)
    assert seen == [(JWS, "+14085550199")]
    assert call.uri.startswith(f"{ORIGIN}/calls/") and len(call.uri) == len(ORIGIN) + 7 + 36
    assert (call.direction, call.from_, call.to, call.state, call.handler) == (
        CallDirection.OUTBOUND,
        "+14085551002",
        "+14085550199",
        CallStatus.PROCEEDING,
        handler,
    )
    assert call.client_directives == "1 to 1: opus; telephone-event; CN;"
    assert call.server_directives == "1 to 1: opus; telephone-event; CN;"
    assert call.media_key is not None
    assert (len(call.media_key.key), len(call.media_key.salt), call.media_key.tag_length) == (
        16,
        12,
        8,
    )
    assert core.get_call(alice(core), call.uri) == call
    # The description survives the JSON round trip the HTTP layer will do.
    assert CallDescription.from_bytes(call.to_bytes()) == call


def test_a_pcmu_only_handler_gets_pcmu(core: ProviderCore) -> None:
    call = place(core, register(core, ad=PCMU_AD))
    assert call.client_directives is not None and call.server_directives is not None
    for text in (call.client_directives, call.server_directives):
        (stream,) = parse_directive(text).streams
        assert [c.name for c in stream.codecs] == ["PCMU"]


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b'{"handler": 7}', 400, "handler"),
        (b"not json", 400, "call request"),
        (
            json.dumps(
                {
                    "handler": f"{ORIGIN}/tgs/alice/handlers/x",
                    "destination": "+1408",
                    "passport": JWS,
                }
            ).encode(),
            500,
            "not a registered handler",
        ),
    ],
)
def test_place_call_malformed_or_unknown_handler(
    core: ProviderCore, body: bytes, code: int, words: str
) -> None:
    register(core)
    with pytest.raises(RiptHttpError) as exc:
        core.place_call(alice(core), body, no_problem)
    assert status(exc) == code and words in exc.value.message


def test_place_call_refusals(core: ProviderCore) -> None:
    handler = register(core)
    cases: list[tuple[str, object, int, str]] = [
        ("+442079460000", no_problem, 403, "outbound destinations"),
        ("+14085550199", lambda t, d: "signature does not verify", 403, "signature"),
        ("+14080001234", no_problem, 404, "unreachable"),
        ("alice@example.org", no_problem, 404, "unreachable"),
    ]
    for destination, check, code, words in cases:
        with pytest.raises(RiptHttpError) as exc:
            core.place_call(alice(core), PlaceCallRequest(handler, destination, JWS), check)  # type: ignore[arg-type]
        assert (status(exc), words in exc.value.message) == (code, True), destination
    # Another account's handler is no handler of this account.
    with pytest.raises(RiptHttpError) as exc:
        core.place_call(bob(core), PlaceCallRequest(handler, "+14085550199", JWS), no_problem)
    assert status(exc) == 500
    assert core.list_calls(alice(core)).calls == ()


def test_a_handler_sharing_no_codec_is_refused(core: ProviderCore) -> None:
    handler = register(core, ad="1 in: G722;\n1 out: G722;")
    with pytest.raises(RiptHttpError) as exc:
        place(core, handler)
    assert status(exc) == 400 and "no codec" in exc.value.message


def test_get_call_of_another_account_or_unknown_is_404(core: ProviderCore) -> None:
    call = place(core, register(core))
    for account, uri in ((bob(core), call.uri), (alice(core), f"{ORIGIN}/calls/nope")):
        with pytest.raises(RiptHttpError) as exc:
            core.get_call(account, uri)
        assert status(exc) == 404


def test_list_calls_hides_keys_and_over_calls(core: ProviderCore, clock: Clock) -> None:
    handler = register(core)
    first = place(core, handler)
    second = place(core, handler, "+14089520003")  # busy: fails after alerting time
    listed = core.list_calls(alice(core)).calls
    assert [c.uri for c in listed] == [first.uri, second.uri]
    assert all(c.media_key is None for c in listed)
    clock.now += ALERT_AFTER
    core.tick(clock.now)
    assert [c.uri for c in core.list_calls(alice(core)).calls] == [first.uri]
    assert core.list_calls(bob(core)).calls == ()


# ----------------------------------------------------------------------------- claiming


def test_claim_with_another_handler_changes_key_and_fans_out(core: ProviderCore) -> None:
    desk = register(core, "h-1")
    kitchen = register(core, "h-2", PCMU_AD)
    call = place(core, desk)
    watcher = core.subscribe(alice(core), call.uri)
    assert kinds(watcher) == ["proceeding"]
    moved = core.claim_call(alice(core), call.uri, ClaimRequest(kitchen))
    assert moved.handler == kitchen and moved.client_directives == "1 to 1: PCMU;"
    assert moved.media_key is not None and call.media_key is not None
    assert moved.media_key.key != call.media_key.key and moved.media_key.salt != call.media_key.salt
    (event,) = watcher.drain()
    assert isinstance(event, HandlerChanged) and event.handler == kitchen
    assert event.direction is Direction.S2C
    # An empty claim: new directive from the current advertisement, same key, no event.
    core.update_handler(alice(core), kitchen, HandlerDescription("h-2", PHONE_AD))
    again = core.claim_call(alice(core), call.uri, b"")
    assert again.handler == kitchen and again.media_key == moved.media_key
    assert again.client_directives == "1 to 1: opus; telephone-event; CN;"
    assert watcher.drain() == []
    with pytest.raises(RiptHttpError) as exc:
        core.claim_call(alice(core), call.uri, ClaimRequest(f"{ORIGIN}/tgs/alice/handlers/gone"))
    assert status(exc) == 500


# ----------------------------------------------------------------------------- subscriptions


def test_subscription_gets_current_state_then_later_events(
    core: ProviderCore, clock: Clock
) -> None:
    call = place(core, register(core), "+14089529999")  # answers 3 s after alerting
    clock.now += ALERT_AFTER
    core.tick(clock.now)
    got: list[Event] = []
    first = core.subscribe(alice(core), call.uri, got.append)
    second = core.subscribe(alice(core), call.uri)
    assert [type(e) for e in got] == [Alerting] and got[0].call == call.uri
    assert kinds(second) == ["alerting"]
    core.set_far_end_reconnecting(call.uri, True)
    third = core.subscribe(alice(core), call.uri)
    assert kinds(third) == ["alerting", "reconnecting"]
    core.set_far_end_reconnecting(call.uri, False)
    core.unsubscribe(first)
    clock.now += 3
    core.tick(clock.now)
    assert kinds(second) == ["reconnecting", "reconnected", "answered"]
    assert [e.type for e in got] == ["alerting", "reconnecting", "reconnected"]
    assert first.closed and not second.closed
    with pytest.raises(RiptHttpError) as exc:
        core.subscribe(bob(core), call.uri)
    assert status(exc) == 404


# ----------------------------------------------------------------------------- far end


def test_far_end_answers_after_configured_time(core: ProviderCore, clock: Clock) -> None:
    call = place(core, register(core), "+14089529999")
    watcher = core.subscribe(alice(core), call.uri)
    assert core.next_deadline() == pytest.approx(clock.now + ALERT_AFTER)
    clock.now += ALERT_AFTER
    core.tick(clock.now)
    assert core.next_deadline() == pytest.approx(clock.now + 3)
    clock.now += 2.9
    core.tick(clock.now)
    assert kinds(watcher) == ["proceeding", "alerting"]
    clock.now += 0.1
    core.tick(clock.now)
    assert kinds(watcher) == ["answered"]
    assert core.get_call(alice(core), call.uri).state is CallStatus.ANSWERED
    assert core.next_deadline() is None  # answered, subscribed: nothing pending


def test_far_end_answer_at_once_passes_through_alerting(core: ProviderCore, clock: Clock) -> None:
    call = place(core, register(core))
    watcher = core.subscribe(alice(core), call.uri)
    clock.now += 5
    core.tick(clock.now)
    assert [type(e) for e in watcher.drain()] == [Proceeding, Alerting, Answered]


@pytest.mark.parametrize(
    "case",
    [
        ("+14089520001", Declined, ALERT_AFTER + 2, None),
        ("+14089520002", NoAnswer, ALERT_AFTER + 30, "no answer"),
        ("+14089520003", Failed, ALERT_AFTER, "busy"),
    ],
)
def test_far_end_refusals(
    core: ProviderCore, clock: Clock, case: tuple[str, type[StateEvent], float, str | None]
) -> None:
    destination, final, after, reason = case
    call = place(core, register(core), destination)
    watcher = core.subscribe(alice(core), call.uri)
    watcher.drain()
    start = clock.now
    clock.now = start + after - 0.01
    core.tick(clock.now)
    assert not any(isinstance(e, final) for e in watcher.drain())
    clock.now = start + after
    core.tick(clock.now)
    (last,) = [e for e in watcher.drain() if isinstance(e, final)]
    assert isinstance(last, StateEvent) and last.reason == reason
    assert core.get_call(alice(core), call.uri).state is final.STATUS


def test_thirty_seconds_without_a_subscriber_ends_the_call(
    core: ProviderCore, clock: Clock
) -> None:
    call = place(core, register(core))
    watcher = core.subscribe(alice(core), call.uri)
    clock.now += 100
    core.tick(clock.now)  # answered; held by the subscriber, so it lives on
    assert core.get_call(alice(core), call.uri).state is CallStatus.ANSWERED
    core.unsubscribe(watcher)
    assert core.next_deadline() == pytest.approx(clock.now + IDLE_END_AFTER)
    clock.now += IDLE_END_AFTER - 0.01
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.ANSWERED
    clock.now += 0.01
    core.tick(clock.now)
    with pytest.raises(RiptHttpError) as exc:
        core.get_call(alice(core), call.uri)
    assert status(exc) == 404
    assert core.db.call_state(call.uri) is CallStatus.ENDED


# ----------------------------------------------------------------------------- client events


def test_ping_gets_pong_with_the_nonce(core: ProviderCore) -> None:
    call = place(core, register(core))
    watcher = core.subscribe(alice(core), call.uri)
    watcher.drain()
    result = core.client_event(alice(core), call.uri, c2s(Ping, call.uri, nonce="n-42"))
    (pong,) = result.replies
    assert isinstance(pong, Pong) and pong.nonce == "n-42" and pong.direction is Direction.S2C
    assert result.problem is None and watcher.drain() == []


def test_outbound_client_may_only_end(core: ProviderCore) -> None:
    call = place(core, register(core))
    watcher = core.subscribe(alice(core), call.uri)
    watcher.drain()
    for cls in (Alerting, Answered, Declined):
        result = core.client_event(alice(core), call.uri, c2s(cls, call.uri))
        assert result.problem is not None and "only send end" in result.problem
    assert core.client_event(alice(core), call.uri, c2s(Migrate, call.uri)).problem is not None
    wrong = core.client_event(alice(core), call.uri, c2s(End, f"{ORIGIN}/calls/other"))
    assert wrong.problem is not None
    unknown = UnknownEvent(
        direction=Direction.C2S, call=call.uri, timestamp=format_timestamp(0), event_type="x"
    )
    assert core.client_event(alice(core), call.uri, unknown).problem is None
    assert core.get_call(alice(core), call.uri).state is CallStatus.PROCEEDING
    assert watcher.drain() == []
    ok = core.client_event(alice(core), call.uri, c2s(End, call.uri, reason="hung up"))
    assert ok.problem is None
    (end,) = watcher.drain()
    assert isinstance(end, End) and end.reason == "hung up" and watcher.closed
    with pytest.raises(RiptHttpError) as exc:
        core.client_event(alice(core), call.uri, c2s(End, call.uri))
    assert status(exc) == 404


def test_inbound_call_claimed_and_answered(core: ProviderCore, clock: Clock) -> None:
    desk = register(core, "h-1")
    kitchen = register(core, "h-2")
    pushed: list[tuple[str | None, TapType, str]] = []
    core.push_hook = lambda handler, tap, uri: pushed.append((handler.uri, tap, uri))
    call = core.inject_inbound(alice(core), "+16505550100")
    assert (call.direction, call.handler, call.state, call.from_, call.to) == (
        CallDirection.INBOUND,
        None,
        CallStatus.PROCEEDING,
        "+16505550100",
        "+14085551002",
    )
    assert call.media_key is None and call.client_directives is None
    assert [h.uri for h in core.forking_targets(call.uri)] == [desk, kitchen]
    assert pushed == [(desk, TapType.CALL, call.uri), (kitchen, TapType.CALL, call.uri)]
    assert [c.uri for c in core.list_calls(alice(core)).calls] == [call.uri]

    ringing = core.subscribe(alice(core), call.uri)
    assert kinds(ringing) == ["proceeding"]
    assert core.client_event(alice(core), call.uri, c2s(Alerting, call.uri)).problem is None
    early = core.client_event(alice(core), call.uri, c2s(Answered, call.uri))
    assert early.problem is not None and "POST" in early.problem
    back = core.client_event(alice(core), call.uri, c2s(Proceeding, call.uri))
    assert back.problem is not None
    taken = core.claim_call(alice(core), call.uri, ClaimRequest(desk))
    assert taken.handler == desk and taken.media_key is not None
    assert taken.client_directives == "1 to 1: opus; telephone-event; CN;"
    assert core.client_event(alice(core), call.uri, c2s(Answered, call.uri)).problem is None
    events = ringing.drain()
    assert [e.type for e in events] == ["alerting", "handler-changed", "answered"]
    assert isinstance(events[1], HandlerChanged) and events[1].handler == desk
    late = core.client_event(alice(core), call.uri, c2s(Declined, call.uri))
    assert late.problem is not None and "answered" in late.problem
    core.hangup(call.uri, "caller hung up")
    (end,) = ringing.drain()
    assert isinstance(end, End) and end.reason == "caller hung up"


def test_unclaimed_inbound_call_times_out(core: ProviderCore, clock: Clock) -> None:
    call = core.inject_inbound(alice(core), "+16505550100")
    clock.now += 59
    core.tick(clock.now)  # no byways yet, but the ring timeout governs: still ringing
    assert core.get_call(alice(core), call.uri).state is CallStatus.PROCEEDING
    clock.now += 1
    core.tick(clock.now)
    assert core.get_call(alice(core), call.uri).state is CallStatus.NOANSWER
    with pytest.raises(RiptHttpError) as exc:
        core.claim_call(alice(core), call.uri, ClaimRequest(register(core)))
    assert status(exc) == 409
    # The client closes the over call with end.
    assert core.client_event(alice(core), call.uri, c2s(End, call.uri)).problem is None
    assert core.db.call_state(call.uri) is CallStatus.ENDED


def test_inject_inbound_refuses_a_bad_caller(core: ProviderCore) -> None:
    with pytest.raises(RiptHttpError) as exc:
        core.inject_inbound(alice(core), "anonymous")
    assert status(exc) == 400


# ----------------------------------------------------------------------------- restart


def test_restart_keeps_handlers_and_calls_in_progress(
    tmp_path: Path, accounts: dict[str, Account], clock: Clock
) -> None:
    path = str(tmp_path / "provider.db")
    core = ProviderCore(path, accounts, ORIGIN, clock)
    binding = PushBinding("mqtts://broker.test", "ript/alice/h-1", "alice", "secret")
    core.push_binder = lambda account, handler: binding
    handler = register(core)
    answered = place(core, handler, "+14089529999")
    over = place(core, handler)
    core.client_event(alice(core), over.uri, c2s(End, over.uri))
    clock.now += 10
    core.tick(clock.now)
    assert core.get_call(alice(core), answered.uri).state is CallStatus.ANSWERED
    core.close()

    clock.now += 5
    again = ProviderCore(path, accounts, ORIGIN, clock)
    assert again.get_handler(alice(again), handler).push == binding
    assert again.register_handler(alice(again), HandlerDescription("h-1", PHONE_AD)).uri == handler
    kept = again.get_call(alice(again), answered.uri)
    assert kept.state is CallStatus.ANSWERED and kept.media_key == answered.media_key
    assert kept.client_directives == answered.client_directives
    with pytest.raises(RiptHttpError) as exc:
        again.get_call(alice(again), over.uri)
    assert status(exc) == 404
    assert [c.uri for c in again.list_calls(alice(again)).calls] == [answered.uri]
    # Clients get a fresh 30 s to find the restarted provider.
    assert again.next_deadline() == pytest.approx(clock.now + IDLE_END_AFTER)
    again.close()


def test_commits_are_durable_through_a_power_cut(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: a commit is on disk (the WAL synced) before it returns."""
    db = ProviderDb(tmp_path / "p.sqlite3")
    try:
        assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        db.close()


def test_ended_calls_and_their_keys_are_pruned_after_an_hour(
    core: ProviderCore, clock: Clock
) -> None:
    handler = register(core)
    ended: list[str] = []
    core.call_ended = ended.append
    call = place(core, handler)
    core.hangup(call.uri, "caller hung up")
    assert ended == [call.uri]  # told once, at the end
    clock.now += 3000  # within the hour: still readable
    core.tick(clock.now)
    assert core.db.call_state(call.uri) is CallStatus.ENDED
    clock.now += 700
    deadline = core.next_deadline()
    assert deadline is not None and deadline <= clock.now  # the timer wakes for the pruning
    core.tick(clock.now)
    assert core.db.call_state(call.uri) is None
    rows = sqlite3.connect(core.db.path).execute("SELECT count(*) FROM calls").fetchone()[0]
    assert rows == 0


def test_the_handlers_order_of_codecs_is_its_preference_and_its_ptime_is_kept(
    core: ProviderCore,
) -> None:
    ad = "1 in: PCMA,ptime=40; opus,ptime=40; CN;\n1 out: PCMA,ptime=40; opus,ptime=40; CN;"
    handler = register(core, ad=ad)
    call = core.place_call(
        alice(core), PlaceCallRequest(handler, "+14085550199", JWS), lambda *_: None
    )
    # PCMA before opus because the handler lists it first; ptime 40 fits the provider's 60.
    assert call.client_directives == "1 to 1: PCMA,ptime=40; CN;"
    assert call.server_directives == "1 to 1: PCMA,ptime=40; CN;"
