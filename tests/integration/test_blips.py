"""Network blips in the middle of a call, through the fault network (issue #13, items 2 and 3).

The provider and one phone are real processes (``scenario.Line``); every packet
between them crosses :class:`faultnet.UdpProxy`, which drops them all for a
while (a blackhole), or moves the phone to a new source port (NAT rebinding).
The far end is the provider's echo, so the phone's chunks come back to it: the
phone's counters say what was lost on the way in (``chunks_lost``, sequence
gaps) and on the way out (``chunks_unacked``), and the provider's
``event=media_ended`` line says what it missed of the phone's chunks (``lost``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from faultnet import UdpProxy

from .procs import ECHO
from .scenario import LINE_TOML, Line, PhoneProc, running_line

pytestmark = pytest.mark.e2e

TONE = "+14089528888"
"""A far end that sends a tone without pause: the provider's chunks fall into the blackhole."""
BLIPS_TOML = LINE_TOML.replace(
    "[push]",
    f'[[accounts.bob.far-end]]\nmatch = "{TONE}"\noutcome = "answer"\nanswer-after = 0.3\n'
    'media = "tone"\n\n[push]',
)
OUTAGE_MAX = 20
"""Seconds a 12 s blackhole may cut the path for at most, recovery included."""
BACK = 20.0
"""Seconds the call gets to have media flowing again after a blip ends (a loaded machine)."""


@pytest.fixture(scope="module")
def net() -> Iterator[UdpProxy]:
    with UdpProxy(("127.0.0.1", 9), seed=13) as proxy:  # upstream: set once the provider runs
        yield proxy


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory, net: UdpProxy) -> Iterator[Line]:
    with running_line(tmp_path_factory.mktemp("blips"), BLIPS_TOML, net=net) as running:
        yield running


@pytest.fixture
def phone(line: Line, net: UdpProxy) -> Iterator[PhoneProc]:
    net.clear()
    phone = line.phone("Desk")
    yield phone
    net.clear()
    line.hang_up_everything()
    phone.hook("on")
    phone.wait_state("idle", BACK)


def stats(status: dict[str, Any]) -> dict[str, Any]:
    call = status.get("call") or {}
    found: dict[str, Any] = call.get("stats") or {}
    return found


def in_call(phone: PhoneProc, far_end: str = ECHO) -> tuple[str, dict[str, Any]]:
    """Dial ``far_end``, wait for a second of media both ways; the call URI and its stats."""
    phone.hook("off")
    phone.dial(far_end)
    status = phone.wait_state("in-call")
    status = phone.wait_status(
        lambda s: stats(s).get("chunks_received", 0) > 50 and stats(s).get("acks_received", 0) > 50,
        "media both ways",
    )
    return status["call"]["uri"], stats(status)


def flowing_after(phone: PhoneProc, net: UdpProxy, uri: str) -> dict[str, Any]:
    """Wait for the blackhole to end, then for a second of new media; the stats then."""
    while net.blackholed:
        phone.assert_running()
        time.sleep(0.05)
    ended_at = time.monotonic()
    # Frames played, not chunks received: the backlog arrives in one burst, but the
    # earpiece plays one frame per 20 ms, so 50 more is a second of media flowing again.
    back = stats(phone.status())["frames_played"]
    status = phone.wait_status(
        lambda s: stats(s).get("frames_played", 0) > back + 50,
        "media flowing again",
        timeout=BACK,
    )
    assert status["state"] == "in-call" and status["call"]["uri"] == uri, status
    assert time.monotonic() - ended_at < BACK
    return stats(status)


def provider_media(line: Line, uri: str) -> dict[str, int]:
    """The counters of the provider's ``event=media_ended`` line for ``uri`` (after hang-up)."""
    pattern = re.compile(rf"event=media_ended call={re.escape(uri)} (.*)")
    deadline = time.monotonic() + BACK
    while time.monotonic() < deadline:
        found = pattern.findall(line.provider.log.read_text(errors="replace"))
        if found:
            return {k: int(v) for k, v in (kv.split("=") for kv in found[-1].split())}
        time.sleep(0.1)
    raise AssertionError(f"the provider logged no media_ended for {uri}")


@pytest.mark.parametrize("far_end", [ECHO, TONE], ids=["echo", "tone"])
def test_a_3_s_blackhole_mid_call_loses_no_chunk_either_way(
    line: Line, phone: PhoneProc, net: UdpProxy, far_end: str
) -> None:
    uri, before = in_call(phone, far_end)
    assert before["chunks_lost"] == 0
    dropped = net.stats()["up"]["dropped"] + net.stats()["down"]["dropped"]
    net.blackhole(3.0)
    flowing_after(phone, net, uri)
    assert net.stats()["up"]["dropped"] + net.stats()["down"]["dropped"] > dropped + 20
    # The phone re-sent its backlog and the provider acked it all; the provider's echo of
    # it (or its tone sent into the blackhole, re-sent) filled every gap on the way in.
    settled = stats(
        phone.wait_status(
            lambda s: stats(s).get("chunks_unacked", -1) == 0 and stats(s)["chunks_lost"] == 0,
            "every chunk acked and no gap in what came back",
            timeout=BACK,
        )
    )
    assert settled["chunks_resent"] >= 40, settled  # at least the second before the fault
    assert settled["chunks_given_up"] == 0, settled
    phone.hook("on")
    phone.wait_state("idle", BACK)
    provider = provider_media(line, uri)
    assert provider["lost"] == 0, provider  # every chunk of the phone reached it
    assert provider["received"] >= settled["chunks_sent"] - 5, (provider, settled)
    if far_end == TONE:  # the tone went on into the blackhole: the provider re-sent it
        assert provider["resent"] >= 100 and provider["given_up"] == 0, provider


def test_a_12_s_blackhole_migrates_the_call_which_survives_and_counts_its_losses(
    line: Line, phone: PhoneProc, net: UdpProxy
) -> None:
    uri, _ = in_call(phone, TONE)
    net.blackhole(12.0)
    flowing_after(phone, net, uri)  # the call kept, in call, media again
    # The fault was felt and the byways re-established (a migration).
    opening = rf"event=byways call={re.escape(uri)} state=opening reason='([^']*)'"
    reasons = re.findall(opening, phone.log_text())
    assert any(r.startswith(("no ack", "no media", "no pong")) for r in reasons), reasons
    # 12 s is longer than the 8 s both ends keep: the oldest are lost, and said so.  The
    # path is down a few seconds longer than the blackhole (QUIC's probe timer backs off).
    settled = stats(
        phone.wait_status(
            # Settled: every chunk below the highest acked one is acked or given up for good
            # (a give-up that a late ack contradicts is taken back: given_up <= unacked).
            lambda s: 0 < stats(s).get("chunks_unacked", -1) == stats(s).get("chunks_given_up"),
            "every chunk of the phone acked but those given up",
            timeout=BACK,
        )
    )
    assert 100 <= settled["chunks_given_up"] <= OUTAGE_MAX * 50, settled
    assert 100 <= settled["chunks_lost"] <= OUTAGE_MAX * 50, settled  # the tone's gap
    stopped_before = len(phone.log_lines("event=media_stopped"))
    phone.hook("on")
    phone.wait_state("idle", BACK)
    provider = provider_media(line, uri)
    # Both ends count the same loss: what the phone gave up for good is the provider's gap,
    # except the chunks that reached the provider but whose every ack fell into the
    # blackhole (the phone never learnt of them): at most the chunks the provider holds
    # and the phone has no ack of.  Never fewer: a gap at the provider is never acked.
    spared = settled["chunks_given_up"] - provider["lost"]
    assert 0 <= spared <= provider["received"] - settled["acks_received"], (provider, settled)
    # The other way, both ends' counters at the call's end (the phone's media_stopped line):
    # the provider's give-ups are the phone's gaps but for the tone chunks the phone got
    # whose acks fell into the blackhole, at most what it received that has no ack.
    deadline = time.monotonic() + BACK
    while len(phone.log_lines("event=media_stopped")) == stopped_before:
        assert time.monotonic() < deadline, "the phone logged no media_stopped"
        time.sleep(0.05)
    pattern = r"event=media_stopped .* received=(\d+) acks=\d+ lost=(\d+)"
    stopped = re.findall(pattern, phone.log_text())
    received, lost = (int(n) for n in stopped[-1])
    spared = provider["given_up"] - lost
    assert 0 <= spared <= received - provider["acked"], (provider, received, lost)


def test_nat_rebinding_keeps_the_call_on_the_new_path(
    line: Line, phone: PhoneProc, net: UdpProxy
) -> None:
    uri, _ = in_call(phone, TONE)
    ports = net.source_ports()
    opened = len(phone.log_lines(f"event=byways call={uri} state=opening"))
    net.rebind()  # from now on the provider sees the phone at a new source port
    assert not set(net.source_ports()) & set(ports)
    back = stats(phone.status())["chunks_received"]
    status = phone.wait_status(
        lambda s: stats(s).get("chunks_received", 0) > back + 100, "two seconds of media"
    )
    assert status["state"] == "in-call" and status["call"]["uri"] == uri
    # The provider validated the new path and moved the connection to it (QUIC connection
    # migration): no re-establishment of the byways, and what was in flight was re-sent.
    assert len(phone.log_lines(f"event=byways call={uri} state=opening")) == opened
    settled = stats(
        phone.wait_status(
            lambda s: stats(s).get("chunks_unacked", -1) == 0 and stats(s)["chunks_lost"] == 0,
            "no gap either way",
            timeout=BACK,
        )
    )
    assert settled["chunks_resent"] <= 10, settled  # at most a round trip's worth


def test_a_cut_connection_waits_retry_backoff_then_reconnects_on_a_new_one(
    line: Line, phone: PhoneProc, net: UdpProxy
) -> None:
    uri, _ = in_call(phone, TONE)
    ports = set(net.source_ports())
    provider_log = len(line.provider.log.read_text(errors="replace"))
    net.cut()  # the flow is dead: the phone hears nothing more on its connection
    flowing_after(phone, net, uri)  # (no blackhole: waits only for media again)
    log = phone.log_text()
    assert f"event=connection_abandoned call={uri}" in log, log[-3000:]
    # Given up, the phone waited retry-backoff (2 s, the TG's default and floor) before
    # opening the byways again, on a new connection (a new socket: a new source port).
    stamps = [
        (
            m.group(2),
            time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
            + int(m.group(1)[20:]) / 1000,
        )
        for m in re.finditer(rf"ts=(\S+ \S+) .*event=byways call={re.escape(uri)} state=(\w+)", log)
    ]
    states = [state for state, _ in stamps]
    waiting = states.index("waiting")
    assert states[waiting + 1 : waiting + 3] == ["opening", "up"], states
    assert stamps[waiting + 1][1] - stamps[waiting][1] >= 2.0 - 0.002, stamps
    assert not set(net.source_ports()) & ports
    settled = stats(
        phone.wait_status(
            lambda s: stats(s).get("chunks_unacked", -1) <= stats(s).get("chunks_given_up", 0),
            "every chunk of the phone acked but those given up",
            timeout=BACK,
        )
    )
    assert settled["chunks_resent"] > 0, settled  # the backlog went on the new connection
    # What the provider saw of it (protocol.md 9.1): the re-opened PUT {call}/events came
    # without the ript-leg cookie, its answer set it, and the media (the WebTransport
    # session) came only after it, with that cookie.
    seen = re.findall(
        rf"(event=forward_byway|webtransport session open) call={re.escape(uri)} "
        r"(?:stream=\d+ )?leg_cookie=(\w+)(?: set_cookie=(\w+))?",
        line.provider.log.read_text(errors="replace")[provider_log:],
    )
    assert seen and seen[0] == ("event=forward_byway", "none", "yes"), seen
    assert ("webtransport session open", "current", "") in seen, seen
    assert all(kind == "current" for what, kind, _ in seen if what.startswith("webtransport")), seen


def test_an_event_sent_during_a_blip_reaches_the_phone_once_after_it(
    line: Line, phone: PhoneProc, net: UdpProxy
) -> None:
    uri, _ = in_call(phone, TONE)
    with phone.watch() as watch:

        def handler_changed(event: dict[str, Any]) -> bool:
            return event.get("event") == "signal" and event.get("type") == "handler-changed"

        before = line.admin("event", call=uri, type="handler-changed")["event"]
        watch.until(handler_changed)
        opened = len(phone.log_lines(f"event=byways call={uri} state=opening"))
        net.blackhole(3.0)
        time.sleep(1.0)
        # Sent into the blackhole, on a reverse byway the phone then gives up ("no ack"):
        # the provider keeps it and replays it on the new byway, after the current state,
        # together with the one before, which the phone had: that one it skips.
        during = line.admin("event", call=uri, type="handler-changed")["event"]
        assert during["seq"] > before["seq"]
        flowing_after(phone, net, uri)
        assert len(phone.log_lines(f"event=byways call={uri} state=opening")) > opened
        watch.until(lambda e: handler_changed(e) and e.get("seq") == during["seq"], wait=BACK)
        watch.quiet(handler_changed, 2.0)  # and no second time, from any byway
    seqs = [e["seq"] for e in watch.seen if handler_changed(e)]
    assert seqs == [before["seq"], during["seq"]], watch.seen


def test_loss_on_the_path_turns_opus_fec_on(line: Line, phone: PhoneProc, net: UdpProxy) -> None:
    # A clean path: the encoder expects no loss (no FEC data, its cheap mode).  With 10 %
    # of the packets dropped each way, the re-sent chunks tell it within a few seconds.
    uri, before = in_call(phone)
    assert before["loss_hint_pct"] == 0, before
    net.set(loss=0.1)
    lossy = stats(
        phone.wait_status(
            lambda s: stats(s).get("loss_hint_pct", 0) >= 3, "the loss hint to rise", timeout=BACK
        )
    )
    assert lossy["chunks_resent"] > 0, lossy
    assert phone.status()["call"]["uri"] == uri
