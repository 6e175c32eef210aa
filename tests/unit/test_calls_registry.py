"""The call registry (riptphone.calls): call actions as machine inputs, placing, media settings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from phonefakes import (
    CALL_URI,
    HANDLER,
    OWN,
    THEM,
    FakeClient,
    FakeMedia,
    FakePlayer,
    FakeRunner,
    call,
    config,
    registration,
    trunk_group,
)
from ript.protocol.call import (
    BywaysChanged,
    BywayState,
    CallEnded,
    CallState,
    PeerConnectivity,
    Ring,
    StateChanged,
)
from ript.protocol.descriptions import CallDirection
from ript.protocol.events import CallStatus, Direction, Migrate
from riptphone.app.inputs import (
    CallFailed,
    CallGone,
    CallOffered,
    CallProgress,
    CallReconnecting,
    CallRemote,
    Input,
)
from riptphone.calls.actions import call_inputs, started_inputs
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.quality import QualityMeter
from riptphone.calls.registry import CallRegistry
from riptphone.line.registration import Line
from riptphone.net.ript_client import RiptError
from riptphone.store import StateStore
from riptphone.tasks import Tasks

STAMP = "2026-11-22T10:00:00.000Z"
INBOUND = call()
OUTBOUND = call(direction=CallDirection.OUTBOUND)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (StateChanged(CallState.RINGING, CallState.ANSWERING), []),
        (
            StateChanged(CallState.PROCEEDING, CallState.ALERTING),
            [CallProgress(CALL_URI, "alerting")],
        ),
        (
            StateChanged(CallState.ANSWERING, CallState.ACTIVE),
            [CallProgress(CALL_URI, "in-call", "opus")],
        ),
        (
            StateChanged(CallState.ACTIVE, CallState.REMOTE),
            [CallRemote(CALL_URI, THEM, outbound=False)],
        ),
        (StateChanged(CallState.REMOTE, CallState.RINGING), [CallOffered(CALL_URI, THEM)]),
        (StateChanged(CallState.ACTIVE, CallState.ENDED), []),
        (Ring(CallDirection.INBOUND, THEM), [CallOffered(CALL_URI, THEM)]),
        (BywaysChanged(BywayState.UP, None), [CallReconnecting(CALL_URI, False)]),
        (BywaysChanged(BywayState.WAITING, "lost"), [CallReconnecting(CALL_URI, True)]),
        (BywaysChanged(BywayState.OPENING, None), []),
        (PeerConnectivity(True), [CallReconnecting(CALL_URI, True)]),
        (CallEnded(CallStatus.ENDED, "hung up", local=False), [CallGone(CALL_URI, "hung up")]),
    ],
)
def test_call_actions_become_machine_inputs(action: Any, expected: list[Input]) -> None:
    assert call_inputs(INBOUND, action, codec="opus") == expected


def test_an_outbound_offer_is_to_take() -> None:
    assert call_inputs(OUTBOUND, Ring(CallDirection.OUTBOUND, THEM)) == [
        CallOffered(CALL_URI, THEM, outbound=True)
    ]


def test_a_resumed_call_shows_then_goes_on() -> None:
    ours = call(direction=CallDirection.OUTBOUND, handler=HANDLER)
    assert ours.state is CallState.PROCEEDING
    assert started_inputs(ours, resumed=False) == []
    assert started_inputs(ours, resumed=True) == [
        CallRemote(CALL_URI, THEM, outbound=True),
        CallProgress(CALL_URI, "calling"),
    ]
    elsewhere = call(handler="https://p.example/handlers/2", state=CallStatus.ANSWERED)
    assert started_inputs(elsewhere, resumed=False) == [CallRemote(CALL_URI, THEM, outbound=False)]


class Rig:
    """A registry on a fake client, recording what it feeds and publishes."""

    def __init__(self, tmp_path: Path, *, online: bool = True) -> None:
        self.fed: list[Input] = []
        self.events: list[dict[str, Any]] = []
        self.client = FakeClient()
        self.line = Line(config(tmp_path), StateStore(tmp_path / "s"), self.client, self.fed.append)  # type: ignore[arg-type]
        if online:
            asyncio.run(self.line.connect())
            self.fed.clear()
        self.tones, self.ringer = FakePlayer(), FakePlayer()
        self.registry = CallRegistry(
            self.client,  # type: ignore[arg-type]
            self.line,
            audio=config(tmp_path).audio,
            earpiece=Earpiece(self.tones, self.ringer),  # type: ignore[arg-type]
            tasks=Tasks(),
            feed=self.fed.append,
            publish=lambda e: self.events.append(dict(e)),
            wall=lambda: 1_800_000_000.0,
        )

    def add(self, runner: FakeRunner) -> FakeRunner:
        self.registry.runners[runner.call.uri] = runner  # type: ignore[assignment]
        return runner


def test_a_state_change_is_published_and_fed(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    runner = rig.add(FakeRunner(call(), FakeMedia()))
    rig.registry.on_call_action(runner, StateChanged(CallState.ANSWERING, CallState.ACTIVE))  # type: ignore[arg-type]
    assert rig.fed == [CallProgress(CALL_URI, "in-call", "opus")]
    (event,) = rig.events
    assert event["event"] == "call"
    assert event["call"]["uri"] == CALL_URI and event["call"]["codec"] == "opus"
    rig.registry.on_call_action(runner, Ring(CallDirection.INBOUND, THEM))  # type: ignore[arg-type]
    assert rig.events[-1] == {"event": "ring", "from": THEM}


def place(rig: Rig, number: str) -> str | None:
    return asyncio.run(rig.registry.place(number))


def test_placing_while_offline_fails_with_the_reason(tmp_path: Path) -> None:
    rig = Rig(tmp_path, online=False)
    reason = "cannot dial: the phone is not registered"
    assert place(rig, THEM) == reason
    assert rig.fed == [CallFailed(reason)]
    assert rig.client.placed == []


def test_placing_outside_the_line_is_refused_before_sending(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.line.tg = trunk_group(outbound="+1408*")
    reason = place(rig, "+442079460000")
    assert reason is not None and "outside the numbers this line may call" in reason
    assert rig.client.placed == []


@pytest.mark.parametrize(
    ("status", "prefix"), [(403, "the provider refused: "), (500, "the call failed: ")]
)
def test_the_providers_refusal_is_the_reason(tmp_path: Path, status: int, prefix: str) -> None:
    rig = Rig(tmp_path)
    rig.client.place_error = RiptError("no", status)
    reason = place(rig, THEM)
    assert reason is not None and reason.startswith(prefix)
    assert rig.fed == [CallFailed(reason)]
    assert rig.client.placed[0]["handler"] == registration().handler_uri
    assert rig.client.placed[0]["destination"] == THEM


def test_mute_volume_and_digits_go_to_the_media(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.add(FakeRunner(call(uri="https://p.example/calls/0")))  # no media: untouched
    media = FakeMedia()
    rig.add(FakeRunner(call(), media))
    rig.registry.set_mute(True)
    rig.registry.set_volume(80)
    rig.registry.send_digit("5")
    assert (media.muted, media.volume, media.digits) == (True, 80, ["5"])
    assert rig.events == [{"event": "dtmf", "digit": "5", "direction": "sent"}]


def test_tones_keep_off_the_earpiece_while_a_call_has_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    asyncio.run(rig.registry.tone("dial"))
    rig.add(FakeRunner(call(), FakeMedia()))
    asyncio.run(rig.registry.tone("busy"))
    asyncio.run(rig.registry.tone(None))  # stopping is always allowed
    asyncio.run(rig.registry.earpiece.free())
    assert rig.tones.played == ["dial", None, None]
    assert rig.ringer.played == [None]


def test_following_needs_the_line_online(tmp_path: Path) -> None:
    rig = Rig(tmp_path, online=False)
    assert asyncio.run(rig.registry.follow(CALL_URI)) is None
    rig = Rig(tmp_path)
    assert asyncio.run(rig.registry.follow(CALL_URI)) is None  # gone at the provider
    known = rig.add(FakeRunner(call()))
    assert asyncio.run(rig.registry.follow(CALL_URI)) is known


def test_a_call_moved_to_a_new_uri_is_the_same_call(tmp_path: Path) -> None:
    """After a migrate with ``uri``: found by either URI, its inputs still name the first."""
    rig = Rig(tmp_path)
    moved = call()
    runner = rig.add(FakeRunner(moved))
    new_uri = "https://p.example/calls/moved-here"
    moved.receive_event(
        Migrate(direction=Direction.S2C, call=CALL_URI, timestamp=STAMP, uri=new_uri), 1.0
    )
    assert (moved.uri, moved.first_uri) == (new_uri, CALL_URI)
    assert rig.registry.find(new_uri) is runner and rig.registry.get(CALL_URI) is runner
    assert asyncio.run(rig.registry.follow(new_uri)) is runner  # a tap: no second runner
    rig.registry.on_call_action(runner, StateChanged(CallState.ANSWERING, CallState.ACTIVE))  # type: ignore[arg-type]
    assert rig.fed == [CallProgress(CALL_URI, "in-call", None)]
    assert rig.events[-1]["call"]["uri"] == new_uri  # the control socket shows where it is


class EndingRunner(FakeRunner):
    """A runner whose call is over as soon as it runs."""

    async def run(self) -> None:
        self.call.state = CallState.ENDED


def test_a_call_that_ends_here_drops_its_cookies_under_both_uris(tmp_path: Path) -> None:
    """The provider's ript-leg cookie has no expiry: one per call would pile up (soak)."""
    rig = Rig(tmp_path)
    moved = call()
    runner = rig.add(EndingRunner(moved))
    new_uri = "https://p.example/calls/moved-here"
    moved.receive_event(
        Migrate(direction=Direction.S2C, call=CALL_URI, timestamp=STAMP, uri=new_uri), 1.0
    )
    asyncio.run(rig.registry._run(runner))  # type: ignore[arg-type]
    assert rig.client.forgotten == [CALL_URI, new_uri]
    assert rig.registry.runners == {}


def counters(received: int, lost: int, sent: int) -> dict[str, Any]:
    return {"chunks_received": received, "chunks_lost": lost, "chunks_sent": sent, "rtt_ms": 20}


def test_quality_bars_from_the_second_reading() -> None:
    fed: list[Input] = []
    media = FakeMedia()
    active = call()
    active.state = CallState.ACTIVE
    runners = [FakeRunner(active, media)]

    async def measure() -> bool:
        meter = QualityMeter(lambda: runners, fed.append)  # type: ignore[arg-type,return-value]
        media.counters = counters(100, 0, 100)
        meter.measure()  # opens the window
        media.counters = counters(190, 10, 200)
        meter.measure()
        running = meter.running
        meter.close()
        return running

    assert asyncio.run(measure())
    assert fed == [CallProgress(CALL_URI, "in-call", "opus", 1)]


def test_a_lost_audio_device_is_said_at_once_and_its_return_too() -> None:
    fed: list[Input] = []
    media = FakeMedia()
    active = call()
    active.state = CallState.ACTIVE
    runners = [FakeRunner(active, media)]

    async def measure() -> None:
        meter = QualityMeter(lambda: runners, fed.append)  # type: ignore[arg-type,return-value]
        media.counters = counters(100, 0, 100)
        media.audio = "no audio device (earpiece: No such device)"
        meter.measure()  # the first reading: no bars yet, but the device is gone
        media.counters = counters(200, 0, 200)
        meter.measure()  # bars, still no device
        media.counters = counters(300, 0, 300)
        meter.measure()  # bars again (every reading that has some), still no device
        media.audio = None
        meter.measure()  # no new chunks (no bars), the device is back: keep the last bars
        meter.close()

    asyncio.run(measure())
    assert fed == [
        CallProgress(CALL_URI, "in-call", "opus", None, True),
        CallProgress(CALL_URI, "in-call", "opus", 4, True),
        CallProgress(CALL_URI, "in-call", "opus", 4, True),
        CallProgress(CALL_URI, "in-call", "opus", 4, False),
    ]


def test_quality_keeps_nothing_of_a_call_that_ended_while_another_goes_on() -> None:
    """Its readings were pruned only once no call was active: bounded per call now."""
    media = FakeMedia()
    media.counters = counters(100, 0, 100)
    first, second = call(), call(uri="https://p.example/calls/2")
    first.state = second.state = CallState.ACTIVE
    runners = [FakeRunner(first, media), FakeRunner(second, media)]

    async def measure() -> QualityMeter:
        meter = QualityMeter(lambda: runners, lambda _: None)  # type: ignore[arg-type,return-value]
        meter.measure()
        media.counters = counters(200, 0, 200)
        meter.measure()
        first.state = CallState.ENDED
        meter.measure()
        meter.close()
        return meter

    meter = asyncio.run(measure())
    assert set(meter._seen) == set(meter._shown) == {second.first_uri}


def test_quality_stops_without_an_active_call() -> None:
    async def measure() -> bool:
        meter = QualityMeter(lambda: [FakeRunner(call(), FakeMedia())], print)  # type: ignore[arg-type,return-value]
        meter.start()
        meter.measure()
        return meter.running

    assert not asyncio.run(measure())


def test_own_number_is_the_callers_id(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    assert rig.line.number == OWN
