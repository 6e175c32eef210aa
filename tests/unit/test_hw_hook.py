"""The hook switch on a gpiozero mock pin: debounced, both wirings, on its own thread."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory, MockPin

from riptphone.hw.events import HookChanged, HwEvent
from riptphone.hw.hook import Hook

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from hwmock import mock_factory  # noqa: E402

PIN = 17
WIRINGS = ["normally-open", "normally-closed"]


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    with mock_factory() as f:
        yield f


def set_off_hook(pin: MockPin, wiring: str, off_hook: bool) -> None:
    """Move the handset: the contact closes (pin low) when lifted if normally open."""
    closed = off_hook if wiring == "normally-open" else not off_hook
    if closed:
        pin.drive_low()
    else:
        pin.drive_high()


class Recorder:
    def __init__(self) -> None:
        self.events: list[HwEvent] = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def __call__(self, event: HwEvent) -> None:
        with self.changed:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self.changed.notify_all()


@pytest.mark.parametrize("wiring", WIRINGS)
def test_a_bouncing_contact_gives_one_event_each_way(factory: MockFactory, wiring: str) -> None:
    pin = factory.pin(PIN)
    rec = Recorder()
    with Hook(PIN, rec, wiring=wiring, debounce_ms=50) as hook:
        set_off_hook(pin, wiring, False)
        t = 0.0
        for _ in range(60):  # on hook at start: reported once stable
            hook.sample(t)
            t += 0.001
        assert rec.events == [HookChanged(off_hook=False)]
        assert hook.off_hook is False
        for move in (True, False):
            # 20 ms of chatter, the contact changing between every two samples, then steady.
            for i in range(20):
                set_off_hook(pin, wiring, move if i % 2 == 0 else not move)
                hook.sample(t)
                t += 0.001
            set_off_hook(pin, wiring, move)
            for _ in range(200):
                hook.sample(t)
                t += 0.001
            assert hook.off_hook is move
        assert rec.events == [
            HookChanged(off_hook=False),
            HookChanged(off_hook=True),
            HookChanged(off_hook=False),
        ]


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("debounce_ms", [20, 50, 150])
def test_the_contact_must_stay_put_for_the_debounce_time(
    factory: MockFactory, wiring: str, debounce_ms: int
) -> None:
    pin = factory.pin(PIN)
    rec = Recorder()
    with Hook(PIN, rec, wiring=wiring, debounce_ms=debounce_ms) as hook:
        set_off_hook(pin, wiring, False)
        hook.sample(0.0)
        hook.sample(1.0)
        assert rec.events == [HookChanged(off_hook=False)]
        # Lifted for one millisecond less than the debounce time: nothing.
        set_off_hook(pin, wiring, True)
        hook.sample(2.0)
        hook.sample(2.0 + (debounce_ms - 2) / 1000)
        set_off_hook(pin, wiring, False)
        hook.sample(2.0 + (debounce_ms - 1) / 1000)
        hook.sample(3.0)
        assert rec.events == [HookChanged(off_hook=False)]
        # Lifted for exactly the debounce time: one event.
        set_off_hook(pin, wiring, True)
        hook.sample(4.0)
        assert hook.sample(4.0 + debounce_ms / 1000) == [HookChanged(off_hook=True)]
        assert rec.events[-1] == HookChanged(off_hook=True)


def test_the_thread_reports_the_initial_state_and_one_event_for_a_bouncing_lift(
    factory: MockFactory,
) -> None:
    pin = factory.pin(PIN)
    pin.drive_high()  # normally open, on hook
    clock = [100.0]
    lock = threading.Lock()

    def now() -> float:
        with lock:
            return clock[0]

    def advance_until(done: object, timeout_s: float = 10.0) -> None:
        # Time moves only here, so whatever the thread sampled mid-bounce never looked stable.
        give_up = time.monotonic() + timeout_s
        while not done() and time.monotonic() < give_up:  # type: ignore[operator]
            with lock:
                clock[0] += 0.01
            time.sleep(0.002)

    rec = Recorder()
    hook = Hook(PIN, rec, debounce_ms=50, poll_ms=1, clock=now)
    try:
        hook.start()
        advance_until(lambda: len(rec.events) >= 1)
        assert rec.events == [HookChanged(off_hook=False)]
        for i in range(200):
            if i % 2:
                pin.drive_high()
            else:
                pin.drive_low()
            if i % 20 == 0:
                time.sleep(0.001)  # let the thread sample mid-bounce
        pin.drive_low()
        advance_until(lambda: len(rec.events) >= 2)
        advance_until(lambda: False, timeout_s=0.2)  # and nothing more comes
    finally:
        hook.close()
    assert rec.events == [HookChanged(off_hook=False), HookChanged(off_hook=True)]
    assert rec.threads == {f"hook-gpio{PIN}"}


def test_close_releases_the_pin(factory: MockFactory) -> None:
    Hook(PIN, Recorder()).close()
    Hook(PIN, Recorder()).close()  # would raise GPIOPinInUse if the first still held it


def test_bad_wiring_is_refused(factory: MockFactory) -> None:
    with pytest.raises(ValueError, match="normally-open"):
        Hook(PIN, Recorder(), wiring="open")


def test_a_failing_pin_ends_the_thread_with_one_error_line(
    factory: MockFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from riptphone.hw.poller import PollThread

    def step(now: float) -> None:
        raise OSError("GPIO chip went away")

    thread = PollThread("hook-test", 0.001, step)
    thread.start()
    deadline = time.monotonic() + 10
    while thread.running and time.monotonic() < deadline:
        time.sleep(0.005)
    thread.stop()
    assert isinstance(thread.error, OSError)
    assert [r.getMessage() for r in caplog.records] == ["hook-test stopped: GPIO chip went away"]
