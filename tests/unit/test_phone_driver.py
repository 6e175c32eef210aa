"""The driver of the phone machine and the control-socket commands (riptphone.driver,
riptphone.control.handler): requests answered from what they caused, screens, events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from phonefakes import OWN, THEM, FakeClient, FakePlayer, config
from riptphone.app.inputs import Dial, Input, LineOnline
from riptphone.app.machine import PhoneMachine
from riptphone.bus import Bus, Event
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.registry import CallRegistry
from riptphone.control.handler import PhoneControl
from riptphone.control.server import ControlRefused
from riptphone.driver import IDLE_TRIM_S, PhoneDriver
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.screen import ScreenOut
from riptphone.status import PhoneStatus
from riptphone.store import StateStore
from riptphone.tasks import Tasks
from riptphone.ui.model import Idle, Screen

WALL = 1_800_000_000.0  # 2027-01-15, a Friday
T = TypeVar("T")


class FakeHandset:
    def __init__(self) -> None:
        self.screens: list[Screen] = []
        self.lights: list[tuple[str, bool]] = []

    def show(self, screen: Screen) -> None:
        self.screens.append(screen)

    def ring(self, on: bool) -> None:
        self.lights.append(("ring", on))

    def in_call(self, on: bool) -> None:
        self.lights.append(("in_call", on))


class Rig:
    """The phone as daemon.build_phone joins it, with a fake client, handset and players."""

    def __init__(self, tmp_path: Path) -> None:
        cfg = config(tmp_path)
        store = StateStore(tmp_path / "state")
        self.client = FakeClient()
        inputs: Bus[Input] = Bus()
        events: Bus[Event] = Bus()
        self.events: list[dict[str, Any]] = []
        events.subscribe(lambda e: self.events.append(dict(e)))
        tasks = Tasks()
        self.line = Line(cfg, store, self.client, inputs.publish)  # type: ignore[arg-type]
        self.machine = PhoneMachine(
            cfg.dialplan.plan(), 5.0, check_destination=self.line.check_destination
        )
        self.registry = CallRegistry(
            self.client,  # type: ignore[arg-type]
            self.line,
            audio=cfg.audio,
            earpiece=Earpiece(FakePlayer(), FakePlayer()),  # type: ignore[arg-type]
            tasks=tasks,
            feed=inputs.publish,
            publish=events.publish,
            wall=lambda: WALL,
        )
        self.push = PushLine(self.line, self.registry, tasks, inputs.publish)
        self.handset = FakeHandset()
        self.screen = ScreenOut(self.handset, lambda: self.machine.screen, wall=lambda: WALL)
        self.status = PhoneStatus(self.machine, self.line, self.push, self.registry, self.screen)
        self.driver = PhoneDriver(
            self.machine,
            self.registry,
            screen=self.screen,
            handset=self.handset,
            status=self.status,
            store=store,
            tasks=tasks,
            publish=events.publish,
            wall=lambda: WALL,
            trim=self._trim,
        )
        self.trims = 0
        inputs.subscribe(self.driver.feed)
        self.control = PhoneControl(self.driver, self.status)
        self.tasks = tasks

    def _trim(self) -> None:
        self.trims += 1

    def errors(self) -> list[str]:
        return [e["error"] for e in self.events if e["event"] == "error"]


def run(tmp_path: Path, body: Callable[[Rig], Awaitable[T]]) -> T:
    async def main() -> T:
        rig = Rig(tmp_path)
        rig.driver.start()
        try:
            return await body(rig)
        finally:
            await rig.tasks.wait(1.0)
            rig.driver.close()

    return asyncio.run(main())


def test_a_request_is_refused_with_the_machines_refusal(tmp_path: Path) -> None:
    async def body(rig: Rig) -> tuple[str, list[str]]:
        with pytest.raises(ControlRefused) as info:
            await rig.control.dial(THEM)
        return str(info.value), rig.errors()

    message, errors = run(tmp_path, body)
    assert message.startswith("cannot dial")
    assert errors == [message]  # the same words a watcher saw


def test_a_call_that_cannot_be_placed_answers_the_dial(tmp_path: Path) -> None:
    async def body(rig: Rig) -> tuple[str, list[str], str]:
        rig.driver.feed(LineOnline(OWN, "desk"))  # the machine online, the line not (yet)
        with pytest.raises(ControlRefused) as info:
            await rig.control.dial(THEM)
        return str(info.value), rig.errors(), rig.machine.state

    message, errors, state = run(tmp_path, body)
    assert message == "cannot dial: the phone is not registered"
    assert message in errors
    assert state == "idle"


def test_a_handset_dial_that_fails_raises_nothing_in_the_background(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(rig: Rig) -> list[str]:
        rig.driver.feed(LineOnline(OWN, "desk"))
        outcome = rig.driver.handle(Dial(THEM))  # as the handset would: nobody awaits it
        assert outcome.refusal is None and outcome.placing is not None
        await rig.tasks.wait(1.0)
        assert outcome.placing.result() == "cannot dial: the phone is not registered"
        return rig.errors()

    with caplog.at_level(logging.ERROR):
        errors = run(tmp_path, body)
    assert errors == ["cannot dial: the phone is not registered"]
    assert "task_failed" not in caplog.text


def test_unknown_buttons_are_refused_before_the_machine(tmp_path: Path) -> None:
    async def body(rig: Rig) -> str:
        with pytest.raises(ControlRefused) as info:
            await rig.control.key("zz")
        return str(info.value)

    assert run(tmp_path, body) == "the phone has no button 'zz'"


def test_state_changes_publish_the_status_and_light_the_handset(tmp_path: Path) -> None:
    async def body(rig: Rig) -> tuple[list[dict[str, Any]], list[tuple[str, bool]]]:
        rig.driver.feed(LineOnline(OWN, "desk"))
        rig.control.hook("off")
        return [e for e in rig.events if e["event"] == "state"], rig.handset.lights

    states, lights = run(tmp_path, body)
    assert [s["state"] for s in states] == ["idle", "dialing"]
    last = states[-1]
    assert last["push"] == "none" and last["registered"] is False and last["call"] is None
    assert ("in_call", False) in lights


def test_the_heap_is_trimmed_once_the_phone_stays_idle(tmp_path: Path) -> None:
    """glibc keeps what each call's C state freed: RSS climbed in steps over a soak."""

    async def body(rig: Rig) -> list[int]:
        rig.driver.feed(LineOnline(OWN, "desk"))  # idle...
        rig.control.hook("off")  # ...but not for long: no trim
        seen = [rig.trims]
        rig.control.hook("on")
        await asyncio.sleep(IDLE_TRIM_S + 0.3)
        seen.append(rig.trims)
        return seen

    assert run(tmp_path, body) == [0, 1]


def test_the_idle_clock_comes_from_the_injected_wall_clock(tmp_path: Path) -> None:
    async def body(rig: Rig) -> tuple[list[Screen], dict[str, Any]]:
        rig.driver.feed(LineOnline(OWN, "desk"))
        return rig.handset.screens, dict(rig.control.status())

    screens, status = run(tmp_path, body)
    idle = [s for s in screens if isinstance(s, Idle)]
    clock = time.strftime("%H:%M", time.localtime(WALL))
    assert idle and all(s.clock == clock for s in idle)
    assert any(clock in line for line in status["screen"])


def test_a_key_for_the_login_reaches_it_and_is_no_refusal(tmp_path: Path) -> None:
    """After a refused login, `ript-phone key 5` restarts it as a finger on the keypad does."""
    seen: list[Input] = []

    async def body(rig: Rig) -> None:
        control = PhoneControl(rig.driver, rig.status, None, lambda v: seen.append(v) or True)
        await control.key("5")  # the machine (offline) refuses keys; the login took it
        not_for_login = PhoneControl(rig.driver, rig.status, None, lambda v: False)
        with pytest.raises(ControlRefused):
            await not_for_login.key("5")

    run(tmp_path, body)
    assert [type(v).__name__ for v in seen] == ["Key"]
