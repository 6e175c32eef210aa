"""The push channel of the line (riptphone.line.push): status as an enum, taps to the calls."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from phonefakes import (
    CALL_URI,
    HANDLER,
    FakeClient,
    FakePlayer,
    FakeRunner,
    call,
    config,
    registration,
)
from ript.protocol.descriptions import HandlerDescription, PushBinding
from ript.protocol.taps import Tap, TapType
from riptphone.app import inputs
from riptphone.bus import Bus
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.registry import CallRegistry
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.net.push import PushStatus
from riptphone.store import StateStore
from riptphone.tasks import Tasks

BINDING = PushBinding("mqtts://p.example", "ript/handlers/1", "h1", "secret")


class FakeChannel:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        self.status = PushStatus.DOWN
        self.started = self.closed = False

    def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


class Rig:
    def __init__(self, tmp_path: Path, *, factory: Any = FakeChannel) -> None:
        self.fed: list[inputs.Input] = []
        feed: Bus[inputs.Input] = Bus()
        feed.subscribe(self.fed.append)
        self.client = FakeClient()
        self.line = Line(config(tmp_path), StateStore(tmp_path / "s"), self.client, feed.publish)  # type: ignore[arg-type]
        tasks = Tasks()
        self.registry = CallRegistry(
            self.client,  # type: ignore[arg-type]
            self.line,
            audio=config(tmp_path).audio,
            earpiece=Earpiece(FakePlayer(), FakePlayer()),  # type: ignore[arg-type]
            tasks=tasks,
            feed=feed.publish,
            publish=lambda _e: None,
        )
        self.push = PushLine(self.line, self.registry, tasks, feed.publish, channel_factory=factory)
        self.tasks = tasks


def start(rig: Rig) -> None:
    async def main() -> None:
        rig.push.start()
        await rig.tasks.wait(1.0)

    asyncio.run(main())


def test_without_a_binding_there_is_no_channel(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.line.registration = registration(push=None)
    start(rig)
    assert rig.push.channel is None and rig.push.status is PushStatus.NONE
    assert rig.fed == []


def test_the_channel_opens_on_the_stored_binding(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    asyncio.run(rig.line.connect())
    rig.line.registration = registration(push=BINDING)
    rig.fed.clear()
    start(rig)
    channel = rig.push.channel
    assert isinstance(channel, FakeChannel) and channel.started
    assert channel.args[0] is BINDING  # the typed binding, from the store to the channel
    assert rig.line.tg is not None and channel.args[2] == rig.line.tg.uri
    assert rig.fed == [inputs.PushChanged("down")]
    rig.push.on_status(PushStatus.UP)
    rig.push.on_status(PushStatus.UP)
    assert rig.push.status is PushStatus.UP
    assert rig.fed == [inputs.PushChanged("down"), inputs.PushChanged("up")]


def test_an_unusable_binding_leaves_push_off(tmp_path: Path) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise ValueError("push: plain mqtt:// to 'p.example', which is not loopback")

    rig = Rig(tmp_path, factory=refuse)
    rig.line.registration = registration(push=BINDING)
    rig.line.tg = rig.client.tg
    start(rig)
    assert rig.push.channel is None and rig.push.status is PushStatus.NONE


def refetch_rig(tmp_path: Path, answer: PushBinding | None) -> tuple[Rig, list[str]]:
    """A started line whose ``GET {handler}`` answers ``answer`` as the push binding."""
    rig = Rig(tmp_path)
    asyncio.run(rig.line.connect())
    rig.line.registration = registration(push=BINDING)
    asked: list[str] = []

    async def get_handler(uri: str) -> HandlerDescription:
        asked.append(uri)
        return HandlerDescription("h1", "1 in: PCMU;", uri=uri, push=answer)

    rig.client.get_handler = get_handler  # type: ignore[attr-defined]
    return rig, asked


def test_a_refused_login_fetches_the_binding_and_reopens_on_a_new_password(
    tmp_path: Path,
) -> None:
    # The provider gave the handler a new password (its device list was wiped): the
    # phone must not keep knocking with the old one for ever.
    fresh = dataclasses.replace(BINDING, password="fresh")
    rig, asked = refetch_rig(tmp_path, fresh)

    async def main() -> None:
        rig.push.start()
        first = rig.push.channel
        rig.push.refused()
        rig.push.refused()  # refused again meanwhile: one GET
        await rig.tasks.wait(1.0)
        assert isinstance(first, FakeChannel) and first.closed
        rig.push.refused()  # within the minute: no GET
        await rig.tasks.wait(1.0)

    asyncio.run(main())
    assert asked == [HANDLER]
    channel = rig.push.channel
    assert isinstance(channel, FakeChannel) and channel.started and channel.args[0] == fresh
    assert rig.line.registration is not None and rig.line.registration.push == fresh
    saved = rig.line.store.load_registration().data
    assert saved is not None and saved.push == fresh


def test_a_refused_login_keeps_the_binding_the_provider_still_gives(tmp_path: Path) -> None:
    # Same binding, or the same one without its password (another device's view):
    # nothing to change; the channel goes on retrying.
    for answer in (BINDING, dataclasses.replace(BINDING, password=None)):
        rig, asked = refetch_rig(tmp_path, answer)

        async def main(rig: Rig = rig) -> None:
            rig.push.start()
            first = rig.push.channel
            rig.push.refused()
            await rig.tasks.wait(1.0)
            assert rig.push.channel is first and isinstance(first, FakeChannel)
            assert not first.closed

        asyncio.run(main())
        assert asked == [HANDLER]
        assert rig.line.registration is not None and rig.line.registration.push == BINDING


def tap(kind: TapType) -> Tap:
    return Tap(id="t1", type=kind, call=CALL_URI, ts=0)


def test_taps_take_answer_and_decline(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    runner = FakeRunner(call())
    rig.registry.runners[CALL_URI] = runner  # type: ignore[assignment]
    asyncio.run(rig.push.tap(tap(TapType.TAKE)))
    assert runner.pulled == 1
    asyncio.run(rig.push.tap(tap(TapType.ANSWER)))
    asyncio.run(rig.push.tap(tap(TapType.DECLINE)))
    assert rig.fed == [inputs.TapAnswer(CALL_URI), inputs.TapDecline(CALL_URI)]
