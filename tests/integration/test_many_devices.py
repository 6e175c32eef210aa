"""Many devices, both directions (issue 13 item 4): a call dialled on one phone shows on the others.

The provider taps the account's other handlers with the URI of a call placed
with ``POST {tg}/calls``; each fetches ``GET {call}``, sees another handler
holds it, shows it as in use elsewhere and follows its events, and can pull it,
as it can an inbound call answered elsewhere.  Real processes: the provider,
its mosquitto, and two ``ript-phone run`` daemons on one account
(``scenario.py``), driven and watched through their control sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .procs import ECHO
from .scenario import Line, PhoneProc, is_ring, is_state, running_line

pytestmark = pytest.mark.e2e

SETTLE = 6.0
"""Seconds a phone gets to be idle again after a test (the ended screen stays 3 s)."""


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    with running_line(tmp_path_factory.mktemp("devices")) as running:
        yield running


@pytest.fixture
def a(line: Line) -> PhoneProc:
    return line.phone("Desk A")


@pytest.fixture
def b(line: Line) -> PhoneProc:
    return line.phone("Desk B")


@pytest.fixture(autouse=True)
def settled(line: Line, a: PhoneProc, b: PhoneProc) -> Iterator[None]:
    yield
    line.hang_up_everything()
    for phone in (a, b):
        phone.hook("on")
    for phone in (a, b):
        phone.wait_state("idle", SETTLE)


def outbound_call(status: dict[str, Any]) -> tuple[str, str, str]:
    call = status["call"]
    assert call is not None, status
    return call["uri"], call["direction"], call["peer"]


def media_flows(phone: PhoneProc) -> dict[str, Any]:
    return phone.wait_status(
        lambda s: bool(s.get("call")) and s["call"]["stats"].get("chunks_received", 0) > 10,
        "media received",
    )


def dial_on(a: PhoneProc) -> str:
    """A dials the echo number and is in the call; its URI."""
    a.hook("off")
    a.dial(ECHO)
    uri, direction, peer = outbound_call(a.wait_state("in-call"))
    assert (direction, peer) == ("outbound", ECHO)
    return uri


def test_a_call_dialled_on_one_phone_shows_in_use_on_the_other_until_it_ends(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    with b.watch() as wb:
        uri = dial_on(a)
        status = b.wait_state("remote-in-use")
        assert outbound_call(status) == (uri, "outbound", ECHO)
        assert "PULL: take it here" in status["screen"], status["screen"]
        assert status["call"]["codec"] is None  # B follows the call; A carries the media
        # B follows the call's events: it sees the far end answer.
        b.wait_status(
            lambda s: s["call"] is not None and s["call"]["state"] == "answered", "answered"
        )
        assert b.log_lines(f"event=tap type=call call={uri}")
        assert not a.log_lines(f"event=tap type=call call={uri}")  # not the placing phone
        media_flows(a)
        a.hook("on")  # the call ends on A
        wb.until(is_state("idle"))
    assert not [e for e in wb.seen if is_ring(e)], wb.seen  # B never rang
    assert b.status()["call"] is None
    assert line.call(uri) is None


def test_a_call_dialled_on_one_phone_can_be_pulled_to_the_other_and_back(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = dial_on(a)
    media_flows(a)
    b.wait_state("remote-in-use")
    with a.watch() as wa:
        done = b.cli("pull")  # what B's pull button does
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        assert outbound_call(b.wait_state("in-call")) == (uri, "outbound", ECHO)
        wa.until(is_state("remote-in-use"))
    handler = b.handler
    line.wait_call(uri, lambda c: c is not None and c.get("handler") == handler, "held by B")
    before = b.status()["call"]["stats"].get("chunks_received", 0)
    b.wait_status(
        lambda s: s["call"]["stats"].get("chunks_received", 0) > before + 10, "media on B"
    )
    assert outbound_call(a.status()) == (uri, "outbound", ECHO)
    # And back: A pulls it again (the call was A's to begin with).
    with b.watch() as wb:
        a.pull()
        a.wait_state("in-call")
        wb.until(is_state("remote-in-use"))
    handler = a.handler
    line.wait_call(uri, lambda c: c is not None and c.get("handler") == handler, "held by A")
    # Hung up on A: both phones are idle, the call is over.
    with b.watch() as wb:
        a.hook("on")
        wb.until(is_state("idle"))
    assert line.call(uri) is None


def test_a_call_ended_before_the_other_phone_looked_does_not_show(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    # B is told of A's call; by the time it looks (GET {call}) it may be over: then it
    # shows nothing, and in any case it ends idle, never ringing.
    with b.watch() as wb:
        a.hook("off")
        a.dial(ECHO)
        status = a.wait_status(lambda s: s["state"] in ("calling", "in-call"), "dialled")
        uri, _, _ = outbound_call(status)
        a.hook("on")
        line.wait_call(uri, lambda c: c is None, "call over")
        b.wait_status(
            lambda s: bool(b.log_lines(f"event=tap type=call call={uri}")), "the tap handled"
        )
        b.wait_state("idle")
    assert not [e for e in wb.seen if is_ring(e)], wb.seen
