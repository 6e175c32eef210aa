"""The inbound draft's use cases (draft-rosenberg-dispatch-ript-inbound-00, section 4) end to end.

One user (account ``bob``) with two desk phones, "Desk A" and "Desk B": two
``ript-phone run`` daemons, ``ript-provider serve`` and the mosquitto it
spawns, all real processes talking HTTP/3 and MQTT over loopback (see
``scenario.py``).  The provider's admin interface plays the caller, the web
portal of third-party call control and the network's bad moments; the phones
are driven and watched only through their control sockets.  Each test asserts
what the draft says the user sees.

4.12 (the provider moves the call to a new URI mid-call) and 4.13-4.16 pass.
Every packet between the phones and the provider crosses the fault network
(:class:`faultnet.UdpProxy`, docs/fault-network.md): 4.13-4.16 fade Desk A's
network for real (every datagram of its sockets dropped, in both directions)
while Desk B talks on.  The push channel (MQTT over TCP) stays up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from faultnet import UdpProxy

from .procs import ECHO, call_states
from .scenario import (
    ACCOUNT,
    CALLER,
    Line,
    PhoneProc,
    call_in,
    is_ring,
    is_state,
    running_line,
)

pytestmark = pytest.mark.e2e

FADE = 4.5
"""Seconds a phone's network fades in 4.13: within the 5 s both ends buffer."""
GONE = 120.0
"""A fade that lasts until the test ends it (``net.clear()``)."""
SETTLE = 6.0
"""Seconds a phone gets to be idle again after a scenario (the ended screen stays 3 s)."""
CALLER_SHOWN = "+1 408 555 0100"
"""How the phones' screens show :data:`CALLER`."""


@pytest.fixture(scope="module")
def net() -> Iterator[UdpProxy]:
    with UdpProxy(("127.0.0.1", 9), seed=4) as proxy:  # upstream: set once the provider runs
        yield proxy


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory, net: UdpProxy) -> Iterator[Line]:
    with running_line(tmp_path_factory.mktemp("line"), net=net) as running:
        yield running


@pytest.fixture
def a(line: Line) -> PhoneProc:
    return line.phone("Desk A")


@pytest.fixture
def b(line: Line) -> PhoneProc:
    return line.phone("Desk B")


def settle(line: Line) -> None:
    """No call left, every phone running, handset down and idle.

    A phone that does not get back to idle (an expected failure left it stuck)
    is restarted, so that one scenario's failure does not spill into the next.
    """
    if line.net is not None:
        line.net.clear()  # a fade a scenario left behind ends
    line.hang_up_everything()
    for phone in line.phones.values():
        if phone.process is None:
            line.phone(phone.name)
            continue
        phone.hook("on")
    for phone in line.phones.values():
        try:
            phone.wait_state("idle", SETTLE)
        except AssertionError:
            assert phone.stop() == 0, phone.log_text()[-3000:]
            line.phone(phone.name)


@pytest.fixture(autouse=True)
def settled(line: Line) -> Iterator[None]:
    settle(line)
    yield
    settle(line)


# -- steps shared by the scenarios ----------------------------------------------------------


def ring_both(line: Line, a: PhoneProc, b: PhoneProc) -> str:
    """An inbound call from CALLER rings both phones; its URI."""
    uri = line.inbound(CALLER)
    for phone in (a, b):
        status = phone.wait_state("ringing")
        assert_call(status, uri, "inbound", CALLER)
    return uri


def answered_on(line: Line, a: PhoneProc, b: PhoneProc) -> str:
    """An inbound call answered on A (handset lifted), B showing remote-in-use; its URI."""
    uri = ring_both(line, a, b)
    a.hook("off")
    # The screen says in call as soon as A sent answered; the call's state follows once
    # the provider's answered event is back (one more round trip through the proxy).
    assert_call(answered_in(a, "in-call"), uri, "inbound", CALLER)
    assert_call(answered_in(b, "remote-in-use"), uri, "inbound", CALLER)
    return uri


def answered_in(phone: PhoneProc, state: str) -> dict[str, Any]:
    """Wait until the phone shows ``state`` for a call it knows is answered; its status."""

    def accept(status: dict[str, Any]) -> bool:
        call = status.get("call")
        return status["state"] == state and call is not None and call["state"] == "answered"

    return phone.wait_status(accept, f"{state}, answered")


def assert_call(
    status: dict[str, Any], uri: str, direction: str, peer: str, state: str | None = None
) -> None:
    call = status["call"]
    assert call is not None, status
    assert (call["uri"], call["direction"], call["peer"]) == (uri, direction, peer), call
    if state is not None:
        assert call["state"] == state, call


def media_flows(phone: PhoneProc) -> dict[str, Any]:
    """Wait until the phone's call has received media; its status."""
    return phone.wait_status(
        lambda s: bool(s.get("call")) and s["call"]["stats"].get("chunks_received", 0) > 10,
        "media received",
    )


def handled_by(line: Line, uri: str, phone: PhoneProc) -> None:
    handler = phone.handler
    line.wait_call(uri, lambda c: c is not None and c.get("handler") == handler, "handler")


# -- 4.1 - 4.11 -----------------------------------------------------------------------------


def test_4_1_inbound_call_forking_rings_every_phone(line: Line, a: PhoneProc, b: PhoneProc) -> None:
    with a.watch() as wa, b.watch() as wb:
        uri = line.inbound(CALLER)
        for phone, watch in ((a, wa), (b, wb)):
            rings = [e for e in watch.until(lambda e: e.get("event") == "ring")]
            assert rings[-1] == {"event": "ring", "from": CALLER}
            status = phone.wait_state("ringing")
            assert_call(status, uri, "inbound", CALLER)
            assert status["screen"][:2] == ["Incoming call", CALLER_SHOWN]
    # Both opened signalling byways and sent proceeding then alerting; the provider
    # echoes alerting to every byway, so both phones follow the call as alerting.
    line.wait_call(uri, lambda c: c is not None and c["state"] == "alerting", "alerting")
    for phone in (a, b):
        phone.wait_status(call_in("alerting"), "call alerting")
        assert phone.log_lines(f"event=byways call={uri} state=up"), phone.log_text()
    described = line.call(uri)
    assert described is not None and described.get("handler") is None  # nobody took it yet


def test_4_2_answer_on_one_phone_stops_the_other_ringing(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = ring_both(line, a, b)
    with b.watch() as wb:
        a.hook("off")
        # Each phone's call turns answered once the provider's answered event is back,
        # which may come after its screen changed (see answered_on).
        assert_call(answered_in(a, "in-call"), uri, "inbound", CALLER)
        wb.until(is_state("remote-in-use"))
        assert_call(answered_in(b, "remote-in-use"), uri, "inbound", CALLER)
    # B heard "answered" and stopped ringing; it never rang again.
    assert not [e for e in wb.seen if e.get("event") == "ring"], wb.seen
    handled_by(line, uri, a)
    described = line.call(uri)
    assert described is not None and described["state"] == "answered"
    media_flows(a)  # A's POST {call} got its directive and media runs


def test_4_3_remote_in_use_lasts_as_long_as_the_call(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    status = b.status()
    assert status["state"] == "remote-in-use"
    assert "PULL: take it here" in status["screen"], status["screen"]
    assert status["call"]["codec"] is None  # B follows the call, it carries no media
    with b.watch() as wb:
        wb.quiet(lambda e: e.get("event") == "state", 1.0)  # still in use a second later
        a.hook("on")  # the call ends on A
        wb.until(is_state("idle"))
    assert b.status()["call"] is None
    assert line.call(uri) is None


def test_4_4_call_pull_takes_the_call_to_the_other_phone(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    with a.watch() as wa:
        done = b.cli("pull")  # what the pull button does
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        assert_call(b.wait_state("in-call"), uri, "inbound", CALLER, "answered")
        wa.until(is_state("remote-in-use"))
    handled_by(line, uri, b)
    media_flows(b)
    status = a.status()
    assert_call(status, uri, "inbound", CALLER, "answered")
    assert status["state"] == "remote-in-use"


def test_4_5_call_push_moves_the_call_to_the_device_chosen(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    # The user on A asks the provider for the devices and picks Desk B by its name.
    names = [h.get("name") for h in line.admin("handlers", account=ACCOUNT)["handlers"]]
    assert sorted(n for n in names if n) == ["Desk A", "Desk B"]
    moved = line.admin_cli("move", uri.rsplit("/", 1)[1], "Desk B")
    assert (moved.returncode, moved.stderr) == (0, ""), moved.stderr
    assert_call(b.wait_state("in-call"), uri, "inbound", CALLER, "answered")
    assert_call(a.wait_state("remote-in-use"), uri, "inbound", CALLER, "answered")
    handled_by(line, uri, b)
    media_flows(b)
    assert b.log_lines(f"event=tap type=take call={uri}")


def test_4_6_select_device_answers_on_the_device_chosen(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = ring_both(line, a, b)
    handlers = line.admin("handlers", account=ACCOUNT)["handlers"]
    chosen = next(h for h in handlers if h.get("name") == "Desk B")
    line.admin("answer", call=uri, handler=chosen["name"])
    assert_call(b.wait_state("in-call"), uri, "inbound", CALLER, "answered")
    assert_call(a.wait_state("remote-in-use"), uri, "inbound", CALLER, "answered")
    handled_by(line, uri, b)
    assert chosen["uri"] == b.handler


def test_4_7_third_party_place_outbound_lift_to_start(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    with b.watch() as wb:
        uri = line.admin("place", account=ACCOUNT, handler="Desk A", to=ECHO)["call"]["uri"]
        status = a.wait_state("ringing")
        # Not an inbound call: an outbound call of this line, waiting to be taken.
        assert_call(status, uri, "outbound", ECHO, "proceeding")
        assert status["screen"][0] == "Call to place", status["screen"]
        assert "lift to call" in status["screen"], status["screen"]
        described = line.call(uri)
        assert described is not None and described.get("handler") is None
        with a.watch() as wa:
            a.hook("off")  # lifting takes it: POST {call}, then the far end is called
            wa.until(is_state("in-call"))
        wb.quiet(is_ring, 0.5)  # only the device chosen was told
    states = [e["state"] for e in wa.seen if e.get("event") == "state"]
    assert states[-1] == "in-call" and "calling" in states, states
    assert_call(a.status(), uri, "outbound", ECHO, "answered")
    handled_by(line, uri, a)
    media_flows(a)
    assert b.status()["state"] in ("idle", "remote-in-use")


def test_4_8_third_party_answer_or_decline_inbound(line: Line, a: PhoneProc, b: PhoneProc) -> None:
    # Answer, from the web page, on A (named by its handler-id).
    uri = ring_both(line, a, b)
    a_id = line.handler_id(a)
    line.admin("answer", call=uri, handler=a_id)
    # As in 4.2: each phone's call turns answered once the provider's event is back.
    assert_call(answered_in(a, "in-call"), uri, "inbound", CALLER)
    assert_call(answered_in(b, "remote-in-use"), uri, "inbound", CALLER)
    handled_by(line, uri, a)
    assert a.log_lines(f"event=tap type=answer call={uri}")
    settle(line)

    # Decline, from the web page, on B: the call is declined and rings nowhere.
    uri = ring_both(line, a, b)
    line.admin("decline", call=uri, handler="Desk B")
    line.wait_call(uri, lambda c: c is None, "declined and over")
    for phone in (a, b):
        status = phone.wait_status(lambda s: s["state"] in ("ended", "idle"), "ringing stops")
        assert status["state"] != "ringing"
    assert b.log_lines(f"event=tap type=decline call={uri}")


def test_4_9_third_party_hangup_ends_the_call_everywhere(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    with a.watch() as wa, b.watch() as wb:
        hung = line.admin_cli("hangup", uri, "--reason", "hung up from the browser")
        assert (hung.returncode, hung.stderr) == (0, ""), hung.stderr
        ended = wa.until(is_state("ended"))[-1]
        wb.until(is_state("idle"))
    assert ended["screen"][0].startswith("Call ended"), ended["screen"]
    assert call_states(wa.seen)[-1] == "ended", wa.seen
    assert b.status()["call"] is None  # the remote-in-use indication is gone
    assert line.call(uri) is None
    assert a.log_lines(f"event=call_ended call={uri}")


def test_4_10_third_party_move_of_a_call_in_progress(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    a.hook("off")
    a.dial(ECHO)
    status = a.wait_state("in-call")
    uri = status["call"]["uri"]
    assert_call(status, uri, "outbound", ECHO)
    media_flows(a)
    # B was told of the call dialled on A (many devices): it shows it in use elsewhere.
    assert_call(b.wait_state("remote-in-use"), uri, "outbound", ECHO)
    line.admin("move", call=uri, handler=b.handler)
    assert_call(b.wait_state("in-call"), uri, "outbound", ECHO, "answered")
    assert_call(a.wait_state("remote-in-use"), uri, "outbound", ECHO, "answered")
    handled_by(line, uri, b)
    media_flows(b)


def test_4_11_a_call_missed_while_offline_rings_after_reconnecting(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    assert b.stop() == 0  # B's push channel is down when the call comes
    uri = ring_both_but_b(line, a)
    # The tap queued for B is lost (a broker that lost its queue, a session that
    # expired): only GET {tg}/calls, after B's push channel is up again, finds it.
    line.forget_session(b)
    status = b.start("ringing")
    assert_call(status, uri, "inbound", CALLER)
    assert status["push"] == "up"
    assert not b.log_lines(f"event=tap type=call call={uri}"), "the lost tap came after all"
    # A call that was answered meanwhile does not ring: B shows it in use.
    a.hook("off")
    a.wait_state("in-call")
    b.wait_state("remote-in-use")


def ring_both_but_b(line: Line, a: PhoneProc) -> str:
    uri = line.inbound(CALLER)
    assert_call(a.wait_state("ringing"), uri, "inbound", CALLER)
    return uri


# -- 4.12 - 4.16: resilience in the middle of a call ----------------------------------------


def test_4_12_network_change_mid_call_keeps_the_call(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    before = media_flows(a)["call"]["stats"]["chunks_received"]
    # The network changes under the call: the provider moves it (migrate with a new
    # URI, the old one answering 404) and the phone re-establishes its byways there.
    event = line.admin("event", call=uri, type="migrate", rename=True)["event"]
    moved = event["uri"]
    assert moved != uri
    status = a.wait_status(
        lambda s: bool(s.get("call")) and s["call"]["uri"] == moved, "the call followed"
    )
    assert status["state"] == "in-call"
    a.wait_status(
        lambda s: (
            bool(s.get("call")) and s["call"]["stats"].get("chunks_received", 0) > before + 25
        ),
        "media again after the migration",
        timeout=8.0,
    )
    assert line.call(moved) is not None and line.call(uri) is None
    assert b.status()["state"] == "remote-in-use"


def test_4_13_fade_and_recover_mid_call(
    line: Line, net: UdpProxy, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    # The far end's side says the connection is being recovered: shown on screen.
    line.admin("event", call=uri, type="reconnecting")
    a.wait_status(lambda s: "reconnecting" in s["screen"][0], "reconnecting shown")
    # A's own network fades (the tunnel) for a few seconds: within the 5 s that
    # both ends buffer, so no media may be lost (profile section 10).
    a.fade(net, FADE)
    while net.blackholed:
        line.wait_call(uri, lambda c: c is not None, "call kept")
        time.sleep(0.1)
    line.admin("event", call=uri, type="reconnected")
    a.wait_status(lambda s: s["screen"][0].startswith("In call"), "reconnected shown")
    before = a.status()["call"]["stats"]["chunks_received"]
    status = a.wait_status(
        lambda s: (
            bool(s.get("call")) and s["call"]["stats"].get("chunks_received", 0) > before + 25
        ),
        "media after the fade",
    )
    assert status["state"] == "in-call"
    # Buffered on both sides, sent in a burst: no gap either way once the backlog is in.
    a.wait_status(
        lambda s: s["call"]["stats"]["chunks_lost"] == s["call"]["stats"]["chunks_unacked"] == 0,
        "no chunk lost either way",
    )
    assert a.log_lines(f"event=byways call={uri} state=opening")  # the fade was felt
    handled_by(line, uri, a)


def test_4_14_fade_and_move_to_another_device(
    line: Line, net: UdpProxy, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    a.fade(net, GONE)  # A loses the network for good
    line.admin("event", call=uri, type="reconnecting")
    line.admin("move", call=uri, handler="Desk B")  # the portal's "move" button
    assert_call(b.wait_state("in-call"), uri, "inbound", CALLER, "answered")
    handled_by(line, uri, b)
    media_flows(b)
    net.clear()  # A is back
    # A, back, learns from its re-established byway that the call is elsewhere.
    assert_call(a.wait_state("remote-in-use"), uri, "inbound", CALLER, "answered")
    handled_by(line, uri, b)


def test_4_15_fade_and_peer_hangup_shows_the_call_ended(
    line: Line, net: UdpProxy, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    a.fade(net, GONE)
    line.admin("event", call=uri, type="reconnecting")  # the peer is told
    # The fade broke A's byways (the provider tells it to re-establish them,
    # which A reads when it is back), then the peer gives up.
    line.admin("event", call=uri, type="migrate")
    line.admin("hangup", call=uri, reason="the far end hung up")
    line.wait_call(uri, lambda c: c is None, "call over")
    assert a.status()["state"] == "in-call"  # A has heard nothing yet
    net.clear()
    # Back, A's byways find the call gone (404): the call has ended.
    ended = a.wait_state("ended")
    assert ended["screen"][0].startswith("Call ended"), ended["screen"]
    assert a.log_lines(f"event=call_ended call={uri}")
    b.wait_state("idle")


def test_4_16_fade_and_server_drop_ends_the_call(
    line: Line, net: UdpProxy, a: PhoneProc, b: PhoneProc
) -> None:
    uri = answered_on(line, a, b)
    media_flows(a)
    a.fade(net, GONE)
    # The provider hears nothing from A and ends the call on its own.
    line.admin("event", call=uri, type="end", reason="no media from the device")
    line.wait_call(uri, lambda c: c is None, "call over")
    net.clear()
    ended = a.wait_state("ended")
    assert ended["screen"][0].startswith("Call ended"), ended["screen"]
    assert "no media from the device" in " ".join(ended["screen"]), ended["screen"]
    a.hook("on")
    assert a.wait_state("idle")["call"] is None


def test_4_12_the_media_numbering_goes_on_across_the_new_uri(
    line: Line, a: PhoneProc, b: PhoneProc
) -> None:
    """Both directions' chunk numbering carries on at the new URI: no restart, no gap.

    A provider whose media state stayed behind at the old URI would number its
    chunks from 0 again (the phone would count duplicates, or late chunks) and
    would drop the phone's truncated sequence numbers, which it cannot expand
    (no ack: ``chunks_unacked`` grows).  Chunks in flight at the switch may be
    lost (an echo, or an ack, arriving on the session the phone has just reset):
    a few at most, 100 ms of them on a loaded machine; nothing else.
    """
    uri = answered_on(line, a, b)
    before = media_flows(a)["call"]["stats"]
    sent_at = time.monotonic()
    moved = line.admin("event", call=uri, type="migrate", rename=True)["event"]["uri"]
    followed = a.wait_status(
        lambda s: bool(s.get("call")) and s["call"]["uri"] == moved, "the call followed"
    )["call"]["stats"]["chunks_received"]
    a.wait_status(
        lambda s: s["call"]["stats"]["chunks_received"] > followed, "media at the new URI"
    )
    print(f"\nmigrate to a new URI: media there {time.monotonic() - sent_at:.3f} s after the admin")
    after = a.wait_status(
        lambda s: (
            bool(s.get("call"))
            and s["call"]["uri"] == moved
            and s["call"]["stats"]["chunks_received"] > before["chunks_received"] + 100
        ),
        "100 chunks at the new URI",
    )
    stats = after["call"]["stats"]
    assert (stats["late"], stats["auth_failures"]) == (0, 0), stats
    # A chunk whose ack was lost at the switch is re-sent and comes twice: a few at most
    # (numbering from 0 again would make every chunk of the first seconds a duplicate).
    assert stats["duplicates"] <= 5, stats
    assert stats["chunks_lost"] <= 5, stats
    assert stats["chunks_unacked"] <= 5, stats
    assert stats["acks_received"] > before["acks_received"] + 100, stats
    # Still the same call on the phone: hanging up there ends it (at its new URI).
    a.hook("on")
    line.wait_call(moved, lambda c: c is None, "the call over at the provider")
    a.wait_state("idle", SETTLE)
