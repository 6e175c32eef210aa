"""The call log: newest first, 50 calls, and a strict reading of the stored form."""

from __future__ import annotations

import json

import pytest

from ript.protocol.numbers import DialPlan
from riptphone.app import calllog
from riptphone.app.calllog import CallLogEntry, CallLogError, from_json, to_json
from riptphone.app.inputs import CallGone, CallOffered, CallProgress, HookOff, HookOn, LineOnline
from riptphone.app.machine import PhoneMachine
from riptphone.app.outputs import SaveCallLog

T0 = 1_796_000_000.0  # 2026-11-30T00:53:20Z


def entries() -> tuple[CallLogEntry, ...]:
    return (
        CallLogEntry("in", "+14155550100", T0 + 120, 0, answered=False, peer_name="Alice"),
        CallLogEntry("out", "+14089529999", T0 + 60, 73, answered=True),
        CallLogEntry("in", "anonymous", T0, 5, answered=True, peer_name="Bob Example"),
    )


def test_round_trip() -> None:
    text = to_json(entries())
    assert from_json(text) == (entries(), [])
    assert from_json(text.encode()) == (entries(), [])


def test_the_stored_form() -> None:
    doc = json.loads(to_json(entries()[1:2]))
    assert doc == {
        "version": 1,
        "calls": [
            {
                "direction": "out",
                "peer": "+14089529999",
                "time": "2026-11-30T00:54:20Z",
                "seconds": 73,
                "answered": True,
            }
        ],
    }


def test_missed_is_an_unanswered_inbound_call() -> None:
    assert [e.missed for e in entries()] == [True, False, False]
    assert not CallLogEntry("out", "+1", T0, 0, answered=False).missed


def test_add_keeps_the_newest_fifty() -> None:
    log: tuple[CallLogEntry, ...] = ()
    for n in range(60):
        log = calllog.add(log, CallLogEntry("out", f"+1408555{n:04d}", T0 + n, n, answered=True))
    assert len(log) == calllog.MAX_ENTRIES
    assert log[0].peer == "+14085550059" and log[-1].peer == "+14085550010"


def test_a_long_stored_log_is_cut_with_a_reason() -> None:
    calls = json.loads(to_json(entries()))["calls"] * 20
    kept, problems = from_json(json.dumps({"version": 1, "calls": calls}))
    assert len(kept) == calllog.MAX_ENTRIES
    assert problems == ["calls 50 to 59 dropped: the log keeps 50 calls"]


GOOD = json.loads(to_json(entries()[:1]))["calls"][0]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"direction": "sideways"}, '"direction" must be "in" or "out", not \'sideways\''),
        ({"peer": ""}, '"peer" must be 1 to 128 printable characters'),
        ({"peer": "+1\n"}, '"peer" must be 1 to 128 printable characters'),
        ({"peer": 14155550100}, '"peer" must be a string, not a number'),
        ({"peer_name": "x" * 129}, '"peer_name" must be 1 to 128 printable characters'),
        ({"time": "yesterday"}, '"time" \'yesterday\' is not like "2026-12-06T17:26:29Z"'),
        ({"time": 1796000000}, '"time" must be a string, not a number'),
        ({"seconds": -1}, '"seconds" -1 is not 0 to 864000'),
        ({"seconds": 1.5}, '"seconds" must be a whole number, not a number'),
        ({"seconds": True}, '"seconds" must be a whole number, not a boolean'),
        ({"answered": "yes"}, '"answered" must be true or false, not a string'),
        ({"colour": "red"}, "unexpected member 'colour'"),
    ],
)
def test_a_corrupted_entry_is_dropped_with_a_reason(change: dict[str, object], reason: str) -> None:
    bad = {**GOOD, **change}
    good = json.loads(to_json(entries()[1:]))["calls"]
    kept, problems = from_json(json.dumps({"version": 1, "calls": [good[0], bad, good[1]]}))
    assert kept == entries()[1:]
    assert problems == [f"call 1 dropped: {reason}"]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ([1, 2], "must be an object, not an array"),
        (None, "must be an object, not null"),
        ({k: v for k, v in GOOD.items() if k != "answered"}, "no 'answered' member"),
    ],
)
def test_an_entry_that_is_not_one_is_dropped(item: object, reason: str) -> None:
    kept, problems = from_json(json.dumps({"version": 1, "calls": [item, GOOD]}))
    assert kept == entries()[:1]
    assert problems == [f"call 0 dropped: {reason}"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the call log is not JSON"),
        (b"\xff", "the call log is not UTF-8"),
        (b"[]", "the call log must be a JSON object, not an array"),
        (b'{"version": 2, "calls": []}', "the call log's version must be 1, not 2"),
        (b'{"version": true, "calls": []}', "the call log's version must be 1, not True"),
        (b'{"version": 1}', 'the call log\'s "calls" must be an array, not null'),
        (b'{"version": 1, "calls": [], "x": 1}', "the call log has an unexpected member 'x'"),
        (b'{"version": 1, "version": 1, "calls": []}', "member 'version' appears twice"),
        (b'{"version": 1, "calls": [NaN]}', "the call log is not JSON"),
    ],
)
def test_bytes_that_are_not_a_call_log(data: bytes, message: str) -> None:
    with pytest.raises(CallLogError) as info:
        from_json(data)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_cut_of_a_stored_log_is_an_error_not_a_crash() -> None:
    data = to_json(entries()).encode()
    for cut in range(len(data.rstrip())):
        with pytest.raises(CallLogError):
            from_json(data[:cut])


def test_the_machine_saves_the_log_and_starts_from_a_stored_one() -> None:
    stored, _ = from_json(to_json(entries()))
    machine = PhoneMachine(DialPlan.nanp(), 4.0, log=stored)
    assert machine.last_dialled == "+14089529999"
    machine.handle(LineOnline("+14085551000", "desk"), 1.0)
    machine.handle(CallOffered("https://p/calls/9", "+14155550123", "Carol"), 2.0, wall=T0 + 600)
    machine.handle(HookOff(), 3.0)
    machine.handle(CallProgress("https://p/calls/9", "in-call"), 4.0)
    actions = machine.handle(HookOn(), 16.5)
    [save] = [a for a in actions if isinstance(a, SaveCallLog)]
    assert save.entries[1:] == entries()
    assert save.entries[0] == CallLogEntry(
        "in", "+14155550123", T0 + 600, 12, answered=True, peer_name="Carol"
    )
    again, problems = from_json(to_json(save.entries))
    assert (again, problems) == (save.entries, [])
    # Late news of a call already logged changes nothing.
    late = machine.handle(CallGone("https://p/calls/9", "call ended", talk_seconds=13), 17.0)
    assert not any(isinstance(a, SaveCallLog) for a in late)
