"""Every configured codec, as configured: the daemon against the reference provider's echo.

The daemon runs as ``python -m riptphone run`` with its audio through alsa-lib's
file plugin (a tone captured, the earpiece written to a file) and real libopus;
the provider is in-process on its own loop (real HTTP/3 over loopback).  Each
case sets ``[audio] codecs`` and ``ptime``, and checks what the phone
advertised, what the provider chose, how many chunks a second went out, and
that the tone came back through the echo.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import riptprovider.core
from alsa.fileplugin import FilePluginAlsa, write_asoundrc
from integration.test_daemon import BOB, ECHO, Daemon, Provider, provider, read_until
from ript.media.tones import NoiseGenerator, ToneGenerator, ToneSpec, goertzel, rms_dbov
from riptphone.control.client import request

__all__ = ["provider"]  # the fixture, shared with test_daemon

CALL_S = 2.5


@pytest.fixture(params=["webtransport", "byways"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Provider]:
    """The provider with WebTransport offered (datagrams) and without (media byways)."""
    running = Provider(tmp_path / "provider", webtransport=request.param == "webtransport")
    try:
        yield running
    finally:
        running.close()


def _phone(
    tmp_path: Path, provider: Provider, rate: int, audio: str
) -> tuple[Daemon, FilePluginAlsa]:
    tone = ToneGenerator(ToneSpec(((1000, -10.0),)), rate)
    alsa = write_asoundrc(tmp_path / "alsa", b"".join(tone.frame() for _ in range(250)))
    daemon = Daemon(tmp_path, provider)
    with daemon.config.open("a") as config:
        config.write(
            f'[audio]\ncapture = "{alsa.capture_device}"\nplayback = "{alsa.playback_device}"\n'
            + audio
        )
    daemon.env = alsa.env()
    return daemon, alsa


def _echo_call(daemon: Daemon, provider: Provider) -> tuple[list[Any], str, str]:
    """Dial the echo, talk CALL_S, hang up: (watch lines, daemon log, the client directive)."""
    daemon.start()
    try:
        daemon.wait_status("idle")
        with daemon.watch() as watch:
            request(daemon.socket, {"cmd": "dial", "number": ECHO})
            seen = read_until(watch, lambda e: e.get("state") == "in-call")
            uri = next(e["call"]["uri"] for e in seen if e.get("event") == "call")
            directive = provider.core.find_call(uri).client_directives
            time.sleep(CALL_S)
            request(daemon.socket, {"cmd": "hook", "state": "on"})
            seen += read_until(watch, lambda e: e.get("state") == "idle")
    except BaseException:
        print(daemon.stop()[1][-6000:])
        raise
    code, err = daemon.stop()
    assert code == 0, err
    assert directive is not None
    return seen, err, directive


def _heard_tone(alsa: FilePluginAlsa, rate: int) -> None:
    played = alsa.playback_file.read_bytes()
    assert len(played) >= 2 * rate  # at least a second of audio was played
    # The best second of the file: the earpiece also played the dial tone and ringback
    # before the answer, and on a loaded machine those can fill any fixed part of it.
    window, step = 2 * rate, 2 * rate // 10
    best = max(
        (played[at : at + window] for at in range(0, len(played) - window + 1, step)),
        key=lambda pcm: goertzel(pcm, rate, 1000),
    )
    at_tone = goertzel(best, rate, 1000)
    assert at_tone > 1e6, at_tone
    assert at_tone > 100 * goertzel(best, rate, 440)


@dataclass(frozen=True)
class Case:
    codecs: str
    ptime: int
    codec: str
    rate: int
    directive: str


CASES = [
    Case('["PCMA", "opus"]', 40, "pcma", 8000, "1 to 1: PCMA,ptime=40; telephone-event; CN;"),
    Case('["PCMU"]', 20, "pcmu", 8000, "1 to 1: PCMU,ptime=20; telephone-event; CN;"),
    Case('["opus", "PCMU"]', 60, "opus", 48000, "1 to 1: opus,ptime=60; telephone-event; CN;"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.codec for c in CASES])
def test_the_configured_codec_and_ptime_carry_the_call(
    tmp_path: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    codecs, ptime, codec, rate, directive = (
        case.codecs,
        case.ptime,
        case.codec,
        case.rate,
        case.directive,
    )
    monkeypatch.setattr(riptprovider.core, "MEDIA_TIMEOUT_MS", 1000)
    daemon, alsa = _phone(tmp_path, provider, rate, f"codecs = {codecs}\nptime = {ptime}\n")
    seen, err, chosen = _echo_call(daemon, provider)
    assert chosen == directive
    (handler,) = provider.core.handlers(BOB)
    names = [n.strip(" []\"'") for n in codecs.split(",")]
    first = f"{names[0]},ptime={ptime}"
    assert handler.advertisement.startswith(f"1 in: {first}; ")
    assert handler.advertisement.endswith("telephone-event; CN;")
    (call,) = [e["call"] for e in seen if e.get("event") == "call"][-1:]
    assert call["codec"] == codec
    stats = call["stats"]
    # One chunk per ptime while the call was up (CALL_S, plus the hang-up's few ms).
    per_second = 1000 / ptime
    assert 0.8 * per_second * CALL_S <= stats["chunks_sent"] <= 1.3 * per_second * CALL_S
    assert stats["chunks_received"] >= 0.8 * per_second * CALL_S
    assert stats["bad_frames"] == 0
    assert f"codec={codec.upper()} ptime={ptime}" in err
    assert "no media" not in err
    _heard_tone(alsa, rate)


def test_keys_in_a_call_travel_as_telephone_events_and_come_back_as_dtmf(
    tmp_path: Path, either: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = either
    # The echo far end returns the phone's telephone-event chunks: each key comes back
    # as one "received" dtmf line on the watch, and the provider noted the digits.
    monkeypatch.setattr(riptprovider.core, "MEDIA_TIMEOUT_MS", 1000)
    daemon, _ = _phone(tmp_path, provider, 8000, 'codecs = ["PCMU"]\n')
    daemon.start()
    try:
        daemon.wait_status("idle")
        with daemon.watch() as watch:
            request(daemon.socket, {"cmd": "dial", "number": ECHO})
            seen = read_until(watch, lambda e: e.get("state") == "in-call")
            uri = next(e["call"]["uri"] for e in seen if e.get("event") == "call")
            for key in "1#9":
                request(daemon.socket, {"cmd": "key", "key": key})
            received = []
            while len(received) < 3:
                event = watch.receive()
                assert event is not None
                if event.get("event") == "dtmf" and event.get("direction") == "received":
                    received.append(event["digit"])
            digits = provider.server._media[uri].digits
            request(daemon.socket, {"cmd": "hook", "state": "on"})
            read_until(watch, lambda e: e.get("state") == "idle")
    except BaseException:
        print(daemon.stop()[1][-6000:])
        raise
    code, err = daemon.stop()
    assert code == 0, err
    assert received == ["1", "#", "9"]
    assert digits == ["1", "#", "9"]
    assert err.count("event=dtmf_received") == 3


def test_silence_travels_as_comfort_noise_and_plays_as_noise(
    tmp_path: Path, either: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = either
    # The microphone: 1 s of voice, then a quiet room (-60 dBov).  With CN negotiated the
    # phone sends a CN chunk every 400 ms in the silence; the echo returns them and the
    # earpiece plays noise at that level where the voice was.
    monkeypatch.setattr(riptprovider.core, "MEDIA_TIMEOUT_MS", 1000)
    voice = ToneGenerator(ToneSpec(((1000, -10.0),)), 8000)
    room = NoiseGenerator(-60.0, 8000, 20, seed=4)
    mic = b"".join(voice.frame() for _ in range(50)) + b"".join(room.frame() for _ in range(400))
    alsa = write_asoundrc(tmp_path / "alsa", mic)
    daemon = Daemon(tmp_path, provider)
    with daemon.config.open("a") as config:
        config.write(
            f'[audio]\ncapture = "{alsa.capture_device}"\nplayback = "{alsa.playback_device}"\n'
            'codecs = ["PCMU"]\n'
        )
    daemon.env = alsa.env()
    seen, err, directive = _echo_call(daemon, provider)
    assert directive == "1 to 1: PCMU,ptime=20; telephone-event; CN;"
    (call,) = [e["call"] for e in seen if e.get("event") == "call"][-1:]
    assert call["transport"] == (
        "webtransport" if provider.server.config.webtransport else "byways"
    )
    stats = call["stats"]
    # 2.5 s: about 1 s of voice (plus 200 ms of hangover) frame by frame, then CN only.
    assert stats["chunks_sent"] < 0.65 * CALL_S * 50, stats
    assert stats["chunks_received"] >= 30
    # Acks flow through the silence both ways: ours of the echoed CN chunks travel alone
    # after 60 ms, and every chunk we sent was acked (bar the last few in flight).
    assert stats["acks_received"] >= stats["chunks_sent"] - 3, stats
    assert stats["chunks_unacked"] <= 3, stats
    assert "no media" not in err and "no ack" not in err  # neither timer fired
    played = alsa.playback_file.read_bytes()
    tail = played[-2 * 8000 // 2 :]  # the last half second
    frames = [tail[i : i + 320] for i in range(0, len(tail) - 319, 320)]
    levels = sorted(rms_dbov(f) for f in frames)
    median = levels[len(levels) // 2]
    assert -66 < median < -54, levels  # comfort noise at the room's level: not silence
