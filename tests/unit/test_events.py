"""Tests of the typed signalling events (ript.protocol.events)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol import events as ev
from ript.protocol.errors import RemoteProtocolError

CALL = "https://p.example/calls/0b6f8e2a-6d4e-4c1e-9a57-2f1d3c4b5a69"
TS = "2026-11-22T10:00:00.123Z"
S2C = ev.Direction.S2C
C2S = ev.Direction.C2S


def doc(event: str, direction: str = "s2c", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": direction, "timestamp": TS, "call": CALL, "event": event}
    out.update(extra)
    return out


# Every event type with and without its optional members, and the wire form it has.
EXAMPLES: list[tuple[ev.Event, dict[str, Any]]] = [
    (ev.Proceeding(direction=S2C, call=CALL, timestamp=TS), doc("proceeding")),
    (ev.Alerting(direction=C2S, call=CALL, timestamp=TS), doc("alerting", "c2s")),
    (ev.Answered(direction=S2C, call=CALL, timestamp=TS), doc("answered")),
    (
        ev.Declined(direction=S2C, call=CALL, timestamp=TS, reason="busy"),
        doc("declined", reason="busy"),
    ),
    (
        ev.Failed(direction=S2C, call=CALL, timestamp=TS, reason="no route to +1408"),
        doc("failed", reason="no route to +1408"),
    ),
    (ev.NoAnswer(direction=S2C, call=CALL, timestamp=TS), doc("noanswer")),
    (ev.End(direction=C2S, call=CALL, timestamp=TS), doc("end", "c2s")),
    (
        ev.End(direction=S2C, call=CALL, timestamp=TS, reason="aufgelegt ☎"),
        doc("end", reason="aufgelegt ☎"),
    ),
    (ev.Migrate(direction=S2C, call=CALL, timestamp=TS), doc("migrate")),
    (
        ev.Migrate(direction=S2C, call=CALL, timestamp=TS, uri="https://p2.example/calls/1"),
        doc("migrate", uri="https://p2.example/calls/1"),
    ),
    (ev.Ping(direction=C2S, call=CALL, timestamp=TS), doc("ping", "c2s")),
    (ev.Ping(direction=C2S, call=CALL, timestamp=TS, nonce="n7"), doc("ping", "c2s", nonce="n7")),
    (ev.Pong(direction=S2C, call=CALL, timestamp=TS), doc("pong")),
    (ev.Pong(direction=S2C, call=CALL, timestamp=TS, nonce="n7"), doc("pong", nonce="n7")),
    (
        ev.HandlerChanged(direction=S2C, call=CALL, timestamp=TS, handler="https://p.example/h/2"),
        doc("handler-changed", handler="https://p.example/h/2"),
    ),
    (ev.Reconnecting(direction=S2C, call=CALL, timestamp=TS), doc("reconnecting")),
    (ev.Reconnected(direction=S2C, call=CALL, timestamp=TS), doc("reconnected")),
    (ev.MediaPanic(direction=S2C, call=CALL, timestamp=TS), doc("media-panic")),
    (
        ev.UnknownEvent(
            direction=S2C,
            call=CALL,
            timestamp=TS,
            event_type="x-roster",
            members={"roster": [{"name": "Zoë", "muted": False}], "n": 2, "z": None},
        ),
        doc("x-roster", roster=[{"name": "Zoë", "muted": False}], n=2, z=None),
    ),
]


@pytest.mark.parametrize(("event", "wire"), EXAMPLES, ids=lambda x: getattr(x, "type", ""))
def test_round_trip(event: ev.Event, wire: dict[str, Any]) -> None:
    assert event.to_json() == wire
    assert ev.event_from_json(wire) == event
    assert type(ev.event_from_json(wire)) is type(event)
    assert event.type == wire["event"]


def test_every_known_type_has_an_example() -> None:
    example_types = {event.type for event, _ in EXAMPLES}
    assert example_types >= {
        "proceeding",
        "alerting",
        "answered",
        "declined",
        "failed",
        "noanswer",
        "end",
        "migrate",
        "ping",
        "pong",
        "handler-changed",
        "reconnecting",
        "reconnected",
        "media-panic",
    }


def test_common_members_come_first_on_the_wire() -> None:
    wire = ev.Ping(direction=C2S, call=CALL, timestamp=TS, nonce="1").to_json()
    assert list(wire) == ["direction", "timestamp", "call", "event", "nonce"]


def test_ended_is_a_synonym_of_end() -> None:
    event = ev.event_from_json(doc("ended", reason="hung up"))
    assert event == ev.End(direction=S2C, call=CALL, timestamp=TS, reason="hung up")
    assert event.to_json()["event"] == "end"


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (ev.Proceeding, ev.CallStatus.PROCEEDING),
        (ev.Alerting, ev.CallStatus.ALERTING),
        (ev.Answered, ev.CallStatus.ANSWERED),
        (ev.Declined, ev.CallStatus.DECLINED),
        (ev.Failed, ev.CallStatus.FAILED),
        (ev.NoAnswer, ev.CallStatus.NOANSWER),
        (ev.End, ev.CallStatus.ENDED),
    ],
)
def test_state_events_set_a_status(cls: type[ev.StateEvent], status: ev.CallStatus) -> None:
    assert cls(direction=S2C, call=CALL, timestamp=TS).status is status
    assert ev.STATE_EVENTS[status] is cls


def test_final_statuses() -> None:
    final = {s for s in ev.CallStatus if s.is_final}
    assert final == {
        ev.CallStatus.DECLINED,
        ev.CallStatus.FAILED,
        ev.CallStatus.NOANSWER,
        ev.CallStatus.ENDED,
    }


def test_unknown_type_keeps_every_member() -> None:
    wire = doc("x-new", extra={"deep": [1, {"x": None}]}, n=3.5, flag=True)
    event = ev.event_from_json(wire)
    assert isinstance(event, ev.UnknownEvent)
    assert event.type == "x-new"
    assert event.event_type == "x-new"
    assert event.members == {"extra": {"deep": [1, {"x": None}]}, "n": 3.5, "flag": True}
    assert event.to_json() == wire


def test_unknown_members_of_known_events_are_ignored() -> None:
    event = ev.event_from_json(doc("alerting", colour="red", reason="ringing", uri="x"))
    assert event == ev.Alerting(direction=S2C, call=CALL, timestamp=TS, reason="ringing")
    event = ev.event_from_json(doc("ping", "c2s", reason="x"))
    assert event == ev.Ping(direction=C2S, call=CALL, timestamp=TS)


def test_null_optional_member_counts_as_absent() -> None:
    assert ev.event_from_json(doc("end", reason=None)) == ev.End(
        direction=S2C, call=CALL, timestamp=TS
    )
    assert ev.event_from_json(doc("migrate", uri=None)) == ev.Migrate(
        direction=S2C, call=CALL, timestamp=TS
    )


def test_timestamp_is_kept_as_sent() -> None:
    event = ev.event_from_json(doc("answered") | {"timestamp": "2026-11-22T12:00:00+02:00"})
    assert event.timestamp == "2026-11-22T12:00:00+02:00"


# --- validation -------------------------------------------------------------------------------


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in doc("alerting").items() if k != name}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "an event must be a JSON object, not list"),
        ("alerting", "an event must be a JSON object, not str"),
        (None, "an event must be a JSON object, not NoneType"),
        (without("direction"), "event lacks the 'direction' member"),
        (without("timestamp"), "event lacks the 'timestamp' member"),
        (without("call"), "event lacks the 'call' member"),
        (without("event"), "event lacks the 'event' member"),
        (doc("alerting", "up"), "direction must be 'c2s' or 's2c', not 'up'"),
        (doc("alerting", "S2C"), "direction must be 'c2s' or 's2c', not 'S2C'"),
        (doc("alerting") | {"direction": 1}, "event member 'direction' must be a string, not int"),
        (doc("alerting") | {"call": ["x"]}, "event member 'call' must be a string, not list"),
        (doc("alerting") | {"event": {}}, "event member 'event' must be a string, not dict"),
        (doc("alerting") | {"timestamp": 0}, "event member 'timestamp' must be a string, not int"),
        (doc("end", reason=3), "event member 'reason' must be a string, not int"),
        (doc("migrate", uri=False), "event member 'uri' must be a string, not bool"),
        (doc("ping", nonce=7), "event member 'nonce' must be a string, not int"),
        (doc("pong", nonce=[]), "event member 'nonce' must be a string, not list"),
        (doc("handler-changed"), "event lacks the 'handler' member"),
        (doc("handler-changed", handler=None), "event lacks the 'handler' member"),
        (doc("handler-changed", handler=2), "event member 'handler' must be a string, not int"),
    ],
)
def test_validation_errors(value: object, message: str) -> None:
    with pytest.raises(ev.EventError) as info:
        ev.event_from_json(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "timestamp", ["yesterday", "", "2026-11-22T25:00:00Z", "2026-13-01T00:00:00Z"]
)
def test_bad_timestamp(timestamp: str) -> None:
    with pytest.raises(ev.EventError) as info:
        ev.event_from_json(doc("alerting") | {"timestamp": timestamp})
    assert str(info.value).startswith(f"bad timestamp {timestamp!r}: ")


@pytest.mark.parametrize("timestamp", ["2026-11-22T10:00:00.123", "2026-11-22T10:00:00"])
def test_timestamp_without_offset(timestamp: str) -> None:
    with pytest.raises(ev.EventError) as info:
        ev.event_from_json(doc("alerting") | {"timestamp": timestamp})
    assert str(info.value) == f"timestamp {timestamp!r} has no UTC offset"


def test_error_is_a_remote_protocol_error() -> None:
    assert issubclass(ev.EventError, RemoteProtocolError)


# --- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "1970-01-01T00:00:00.000Z"),
        (0.9999, "1970-01-01T00:00:00.999Z"),
        (1795341600.123, "2026-11-22T10:00:00.123Z"),
        (1795341600, "2026-11-22T10:00:00.000Z"),
        (951782400.5, "2000-02-29T00:00:00.500Z"),
    ],
)
def test_format_timestamp(seconds: float, text: str) -> None:
    assert ev.format_timestamp(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1970-01-01T00:00:00.000Z", 0.0),
        ("2026-11-22T10:00:00.123Z", 1795341600.123),
        ("2026-11-22t10:00:00.123z", 1795341600.123),
        ("2026-11-22T10:00:00Z", 1795341600.0),
        ("2026-11-22T12:00:00.123+02:00", 1795341600.123),
        ("2026-11-22T05:00:00.123456-05:00", 1795341600.123456),
    ],
)
def test_parse_timestamp(text: str, seconds: float) -> None:
    assert ev.parse_timestamp(text) == pytest.approx(seconds, abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4_102_444_800_000))  # up to 2100; later, floats lose the millisecond
def test_timestamp_round_trip(millis: int) -> None:
    text = ev.format_timestamp(millis / 1000)
    assert len(text) == 24
    assert text.endswith("Z")
    assert text[19] == "."
    assert dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")  # exactly this shape
    assert round(ev.parse_timestamp(text) * 1000) == millis


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_timestamp_raises_only_event_error(text: str) -> None:
    with contextlib.suppress(ev.EventError):
        ev.parse_timestamp(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "direction": st.sampled_from(["c2s", "s2c", "x"]) | json_values,
            "timestamp": st.sampled_from([TS, "2026-11-22T10:00:00", "x"]) | json_values,
            "call": st.just(CALL) | json_values,
            "event": st.sampled_from(sorted(ev.STATE_EVENTS[s].TYPE for s in ev.CallStatus))
            | st.sampled_from(["ended", "migrate", "ping", "pong", "handler-changed", "x"])
            | json_values,
            "reason": json_values,
            "uri": json_values,
            "nonce": json_values,
            "handler": json_values,
        },
    )
    | json_values
)
def test_event_from_json_raises_only_event_error(value: Any) -> None:
    try:
        event = ev.event_from_json(value)
    except ev.EventError:
        return
    assert isinstance(event, ev.Event)
    assert ev.event_from_json(event.to_json()) == event


def test_seq_is_read_and_written_after_the_common_members() -> None:
    doc = {
        "direction": "s2c",
        "timestamp": "2026-11-22T10:00:00.123Z",
        "call": "https://p.example/calls/1",
        "event": "handler-changed",
        "seq": 12,
        "handler": "https://p.example/h/2",
    }
    event = ev.event_from_json(doc)
    assert event.seq == 12 and list(event.to_json()) == list(doc)
    unknown = ev.event_from_json({**doc, "event": "x-note"})
    assert unknown.seq == 12 and "seq" not in unknown._extra()
    assert "seq" not in ev.event_from_json({**doc, "seq": None}).to_json()
    for bad in (-1, 1.5, "12", True, 1 << 53):
        with pytest.raises(ev.EventError):
            ev.event_from_json({**doc, "seq": bad})


def test_the_replay_filter_applies_each_numbered_event_once() -> None:
    def at(seq: int | None) -> ev.Event:
        return ev.Reconnected(direction=S2C, call="c", timestamp="t", seq=seq)

    replays = ev.ReplayFilter()
    # A first byway: the state (numbered as the latest event), then replays it has in it.
    assert replays.take(at(5), first=True) and not replays.take(at(4)) and not replays.take(at(5))
    assert replays.take(at(6)) and replays.take(at(None)) and replays.take(at(None))
    # Re-established: the state (always), then what came after 6 once, the rest skipped.
    taken = [replays.take(e, first=i == 0) for i, e in enumerate(map(at, (9, 5, 6, 7, 8, 7)))]
    assert taken == [True, False, False, True, True, False]
    # A provider that numbers anew (restarted, clock stepped back): followed, not ignored.
    assert replays.take(at(2), first=True) and replays.take(at(3))
