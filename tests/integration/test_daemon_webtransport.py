"""The phone daemon's media transport, end to end against the in-process reference provider.

Real HTTP/3 over loopback, real alsa-lib through its file plugin (the
microphone is a file holding a 1 kHz tone), real libopus; the echo far end
sends back what the phone sends.  Which transport carried the call is read
from the control socket's ``status.call.transport`` and counted at the
provider (``sessions_opened``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import riptprovider.core
from alsa.fileplugin import FilePluginAlsa, write_asoundrc
from ript.media.tones import ToneGenerator, ToneSpec, goertzel
from riptphone.control.client import request
from riptprovider.core import RiptHttpError
from riptprovider.server import RunningServer

from .test_daemon import ECHO, WAIT, Daemon, Provider, read_until

RATE = 48000  # the provider's directive for the phone's advertisement picks Opus


@pytest.fixture(autouse=True)
def quick_media_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A call whose media does not flow would re-establish (and say "no media") within 1 s.
    monkeypatch.setattr(riptprovider.core, "MEDIA_TIMEOUT_MS", 1000)


def provider_with(tmp_path: Path, *, webtransport: bool = True) -> Iterator[Provider]:
    running = Provider(tmp_path / "provider", webtransport=webtransport)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    yield from provider_with(tmp_path)


@pytest.fixture
def byways_provider(tmp_path: Path) -> Iterator[Provider]:
    yield from provider_with(tmp_path, webtransport=False)


def audio_daemon(tmp_path: Path, provider: Provider) -> tuple[Daemon, FilePluginAlsa]:
    tone = ToneGenerator(ToneSpec(((1000, -10.0),)), RATE)
    alsa = write_asoundrc(tmp_path / "alsa", b"".join(tone.frame() for _ in range(250)))
    daemon = Daemon(tmp_path, provider)
    with daemon.config.open("a") as config:
        config.write(
            f'[audio]\ncapture = "{alsa.capture_device}"\nplayback = "{alsa.playback_device}"\n'
        )
    daemon.env = alsa.env()
    return daemon, alsa


def wait_call(daemon: Daemon, done: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    call: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        call = daemon.status()["call"]
        if call is not None and done(call):
            return call
        time.sleep(0.05)
    raise AssertionError(f"{what}: never; last call {call}")


def received_over(least: int) -> Callable[[dict[str, Any]], bool]:
    # Both ways: on a loaded machine the acks of our chunks trail the chunks we receive.
    return lambda call: (
        min(call["stats"]["chunks_received"], call["stats"]["acks_received"]) >= least
    )


def echo_call(daemon: Daemon, during: Callable[[dict[str, Any]], None]) -> str:
    """Dial the echo number, let ``during`` look at the answered call, hang up; stderr."""
    daemon.start()
    failure: AssertionError | None = None
    try:
        daemon.wait_status("idle")
        with daemon.watch() as watch:
            request(daemon.socket, {"cmd": "dial", "number": ECHO})
            read_until(watch, lambda e: e.get("state") == "in-call")
            during(wait_call(daemon, received_over(50), "a second of echoed media"))
            request(daemon.socket, {"cmd": "hook", "state": "on"})
            read_until(watch, lambda e: e.get("state") == "idle")
    except AssertionError as exc:
        failure = exc
    finally:
        code, err = daemon.stop()
    if failure is not None:
        raise AssertionError(f"{failure}\n--- the phone's log:\n{err[-6000:]}") from failure
    assert code == 0, err
    return err


def assert_flowing(call: dict[str, Any], transport: str) -> None:
    assert (call["codec"], call["transport"]) == ("opus", transport)
    stats = call["stats"]
    assert stats["sealed"] is True
    assert stats["chunks_sent"] >= 50 and stats["chunks_received"] >= 50
    assert stats["acks_received"] >= 50
    assert (stats["auth_failures"], stats["malformed"], stats["put_failures"]) == (0, 0, 0)


def assert_tone_played(alsa: FilePluginAlsa) -> None:
    played = alsa.playback_file.read_bytes()
    assert len(played) >= 2 * RATE  # a second of audio at least
    middle = played[len(played) // 3 : 2 * len(played) // 3]
    middle = middle[: len(middle) // 2 * 2]
    at_tone = goertzel(middle, RATE, 1000)
    assert at_tone > 1e6 and at_tone > 100 * goertzel(middle, RATE, 440)


def test_audio_flows_both_ways_over_webtransport_and_again_after_a_migration(
    tmp_path: Path, provider: Provider
) -> None:
    daemon, alsa = audio_daemon(tmp_path, provider)
    server = provider.server

    def during(call: dict[str, Any]) -> None:
        assert_flowing(call, "webtransport")
        assert server.sessions_opened == 1
        # No media byway was used: no GET held, no PUT answered.
        media = server._media[call["uri"]]
        assert media.waiting == [] and len(media.sessions) == 1
        # The provider asks the phone to migrate: it re-establishes its byways, and
        # its media session with them (a new CONNECT on the same leg).
        before = call["stats"]["chunks_received"]
        provider.core.send_event(call["uri"], "migrate")
        again = wait_call(
            daemon,
            lambda c: c["stats"]["chunks_received"] >= before + 50,
            "a second of media after the migration",
        )
        assert_flowing(again, "webtransport")
        assert server.sessions_opened == 2
        assert len(server._media[call["uri"]].sessions) == 1  # the old one is forgotten

    err = echo_call(daemon, during)
    assert err.count("transport=webtransport") >= 2  # media started twice, both times so
    assert "transport=byways" not in err
    assert "no media" not in err
    assert_tone_played(alsa)


def test_a_provider_without_webtransport_gets_the_media_byways(
    tmp_path: Path, byways_provider: Provider
) -> None:
    daemon, alsa = audio_daemon(tmp_path, byways_provider)

    def during(call: dict[str, Any]) -> None:
        assert_flowing(call, "byways")
        assert byways_provider.server.sessions_opened == 0

    err = echo_call(daemon, during)
    assert "the provider does not offer WebTransport" in err
    assert_tone_played(alsa)


def test_a_refused_session_falls_back_to_the_media_byways(
    tmp_path: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider announces WebTransport but refuses this session (as one whose policy
    # forbids it would): the phone carries the call over the byways.
    refusals: list[str] = []

    def refuse(self: RunningServer, request: Any) -> None:
        refusals.append(request.path)
        raise RiptHttpError(403, "no WebTransport for this account")

    monkeypatch.setattr(RunningServer, "_check_webtransport", refuse)
    daemon, alsa = audio_daemon(tmp_path, provider)

    def during(call: dict[str, Any]) -> None:
        assert_flowing(call, "byways")
        assert provider.server.sessions_opened == 0

    err = echo_call(daemon, during)
    assert len(refusals) == 1 and refusals[0].endswith("/media")
    assert "transport=byways" in err and "policy does not allow it" in err
    assert_tone_played(alsa)
