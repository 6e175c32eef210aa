"""The MQTT broker goes away while the phone is idle, and a call comes meanwhile (issue 13 item 3).

Real processes: ``ript-provider serve`` with its supervised mosquitto, one
``ript-phone run``.  The test kills mosquitto (SIGTERM: it saves its sessions
and queued taps; SIGKILL: a crash, it loses what it had not saved); the
provider notices and starts it again on the same port.  Its binary is a
wrapper (:func:`scenario.hold_wrapper`) that waits while a file exists, so the
outage lasts as long as the test needs, whatever the machine's load.

The phone learns of the call twice once the broker is back: the tap the
provider's publisher queued during the outage (delivered when the phone's
session survived), and its ``GET {tg}/calls`` after reconnecting.  It must ring
once, and not at all for a call that ended during the outage.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .scenario import (
    CALLER,
    LINE_TOML,
    Line,
    PhoneProc,
    hold_wrapper,
    is_state,
    running_line,
)

pytestmark = pytest.mark.e2e

BACK = 45.0
"""Seconds for the phone to learn of the call once the broker is back: its push
back-off (1 s doubling, jittered) and the provider's restart back-off add up."""
QUIET = 3.0
"""Seconds in which a second ring would have come (a tap follows within ~1 ms)."""
SETTLE = 6.0


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Line, Path]]:
    work = tmp_path_factory.mktemp("outage")
    script, hold = hold_wrapper(work / "bin")
    config = LINE_TOML + f'mosquitto = "{script}"\n'
    with running_line(work, config) as line:
        yield line, hold


@pytest.fixture
def line(held: tuple[Line, Path]) -> Line:
    return held[0]


@pytest.fixture
def a(line: Line) -> PhoneProc:
    return line.phone("Desk A")


@pytest.fixture(autouse=True)
def settled(line: Line, a: PhoneProc) -> Iterator[None]:
    yield
    line.hang_up_everything()
    a.hook("on")
    a.wait_state("idle", SETTLE)


@contextmanager
def broker_outage(held: tuple[Line, Path], phone: PhoneProc, signum: int) -> Iterator[None]:
    """mosquitto down (``signum``) and held down for the block; up again after it."""
    line, hold = held
    starts = line.broker_starts()
    hold.touch()
    try:
        line.kill_broker(signum)
        phone.wait_status(lambda s: s["push"] == "down", "the phone sees the broker gone")
        yield
    finally:
        hold.unlink(missing_ok=True)
    line.wait_broker_started(starts)


def is_ring_event(event: dict[str, Any]) -> bool:
    return event.get("event") == "ring"


def back_and_caught_up(line: Line, phone: PhoneProc, listed: int, logins: int) -> None:
    """Wait until the phone has listed its calls again and the publisher has sent its queue."""
    phone.wait_status(
        lambda s: s["push"] == "up" and len(phone.log_lines("event=calls_listed")) > listed,
        "push up and the calls listed again",
        timeout=BACK,
    )
    phone.wait_status(
        lambda s: line.publisher_logins() > logins, "the publisher back", timeout=BACK
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "crashed"])
def test_a_call_during_a_broker_outage_rings_once_when_it_is_back(
    held: tuple[Line, Path], line: Line, a: PhoneProc, signum: int
) -> None:
    listed = len(a.log_lines("event=calls_listed"))
    logins = line.publisher_logins()
    with a.watch() as wa:
        with broker_outage(held, a, signum):
            uri = line.inbound(CALLER)
            # Nothing can tell the phone yet: no tap reaches it, and it has no reason
            # to list its calls.
            assert a.status()["state"] == "idle"
        rings = wa.until(is_ring_event, BACK)
        assert rings[-1] == {"event": "ring", "from": CALLER}
        back_and_caught_up(line, a, listed, logins)
        if signum == signal.SIGTERM:
            # The broker kept the phone's session: the tap queued by the publisher
            # during the outage arrives too, late; it finds the call followed already.
            a.wait_status(
                lambda s: bool(a.log_lines(f"event=tap type=call call={uri}")),
                "the late tap",
                timeout=BACK,
            )
        wa.quiet(is_ring_event, QUIET)
    assert [e for e in wa.seen if is_ring_event(e)] == [{"event": "ring", "from": CALLER}]
    assert len([e for e in wa.seen if is_state("ringing")(e)]) == 1, wa.seen
    status = a.wait_state("ringing")
    assert status["call"]["uri"] == uri
    a.hook("off")
    status = a.wait_state("in-call")
    assert status["call"]["uri"] == uri
    handler = a.handler
    line.wait_call(uri, lambda c: c is not None and c.get("handler") == handler, "answered on A")


def test_a_call_over_before_the_broker_is_back_does_not_ring(
    held: tuple[Line, Path], line: Line, a: PhoneProc
) -> None:
    listed = len(a.log_lines("event=calls_listed"))
    logins = line.publisher_logins()
    with a.watch() as wa:
        with broker_outage(held, a, signal.SIGTERM):
            uri = line.inbound(CALLER)
            line.admin("hangup", call=uri, reason="the caller gave up")
            line.wait_call(uri, lambda c: c is None, "call over")
        back_and_caught_up(line, a, listed, logins)
        # The tap came after all (the broker kept it); the phone looked and found the
        # call over.
        a.wait_status(
            lambda s: bool(a.log_lines(f"event=call_gone_before_followed call={uri}")),
            "the late tap looked up",
            timeout=BACK,
        )
        wa.quiet(is_ring_event, QUIET)
    assert not [e for e in wa.seen if is_ring_event(e) or is_state("ringing")(e)], wa.seen
    assert a.status()["state"] == "idle"


def test_the_provider_starts_a_crashed_broker_again_on_the_same_port(
    held: tuple[Line, Path], line: Line, a: PhoneProc
) -> None:
    port, pid = line.broker_port, line.mosquitto_pid
    with broker_outage(held, a, signal.SIGKILL):
        pass
    assert line.mosquitto_pid != pid
    a.wait_status(lambda s: s["push"] == "up", "push up again", timeout=BACK)
    devices = (line.state_dir / "push" / "devices.json").read_text()
    assert f'"port": {port}' in devices
    # And taps flow again: a new call rings at once.
    with a.watch() as wa:
        uri = line.inbound(CALLER)
        wa.until(is_ring_event)
    assert a.wait_state("ringing")["call"]["uri"] == uri
