"""The phone daemon as a subprocess against the reference provider, driven by its control socket.

The provider runs in-process on its own thread and loop (real HTTP/3 over
loopback); the daemon is ``python -m riptphone run --config F``, seen only
through its control socket, its exit status and its stderr.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import riptprovider.core
from alsa.fileplugin import write_asoundrc
from ript.media.tones import ToneGenerator, ToneSpec, goertzel
from riptphone.control.client import ControlClientError, ControlConnection, request
from riptphone.store import StateStore
from riptprovider.accounts import load_accounts
from riptprovider.core import ProviderCore
from riptprovider.server import RunningServer, ServerConfig, serve

TOKEN = "bob-token-9876543210"
NUMBER = "+14085551002"
ECHO = "+14089529999"
UNREACHABLE = "+14089520404"
ABROAD = "+442079460000"
ACCOUNTS = load_accounts(
    {
        "bob": {
            "name": "Bob",
            "numbers": [NUMBER],
            "destinations": "+1408*",
            "tokens": [TOKEN],
            "unreachable": [UNREACHABLE],
            "far-end": [{"match": "*", "outcome": "answer", "answer-after": 0.3}],
        }
    }
)
BOB = ACCOUNTS["bob"]
WAIT = 30.0  # a bound, not a delay: a phone starting on a loaded machine took over 15 s


class Provider:
    """The reference provider on a thread of its own."""

    def __init__(self, state_dir: Path, port: int = 0, *, webtransport: bool = True) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        config = ServerConfig(
            state_dir=state_dir, accounts=ACCOUNTS, port=port, webtransport=webtransport
        )
        self.server: RunningServer = asyncio.run_coroutine_threadsafe(
            serve(config), self.loop
        ).result(10)

    @property
    def core(self) -> ProviderCore:
        assert self.server.core is not None
        return self.server.core

    def close(self) -> None:
        if self.loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    running = Provider(tmp_path / "provider")
    try:
        yield running
    finally:
        running.close()


class Daemon:
    def __init__(self, tmp_path: Path, provider: Provider, *, token: str | None = TOKEN) -> None:
        self.state_dir = tmp_path / "phone"
        self.socket = tmp_path / "run" / "control.sock"
        self.config = tmp_path / "phone.toml"
        self.config.write_text(
            f"""
[provider]
domain = "localhost:{provider.server.port}"
ca_file = "{provider.server.ca.ca_file}"

[phone]
number = "{NUMBER}"
state_dir = "{self.state_dir}"
control_socket = "{self.socket}"

[hardware]
backend = "none"

[log]
level = "debug"
"""
        )
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        if token is not None:
            path = self.state_dir / "token"
            path.write_text(token + "\n")
            path.chmod(0o600)
        self.process: subprocess.Popen[str] | None = None
        self.env: dict[str, str] | None = None  # None: this process's environment

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "riptphone", "run", "--config", str(self.config)],
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def stop(self) -> tuple[int, str]:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=WAIT)
        return self.process.returncode, err

    def exited(self) -> tuple[int, str]:
        """Wait for the daemon to exit on its own."""
        assert self.process is not None
        _, err = self.process.communicate(timeout=WAIT)
        return self.process.returncode, err

    def status(self) -> dict[str, Any]:
        return request(self.socket, {"cmd": "status"})

    def wait_status(self, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        last: dict[str, Any] | str = "no socket yet"
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.stop()[1]
            try:
                last = self.status()
            except ControlClientError as exc:
                last = str(exc)
            else:
                if last["state"] == state:
                    return last
            time.sleep(0.05)
        raise AssertionError(f"the phone never became {state}; last status {last}")

    def watch(self) -> ControlConnection:
        conn = ControlConnection(self.socket, timeout=WAIT)
        conn.request({"cmd": "watch"})
        return conn


@pytest.fixture
def daemon(tmp_path: Path, provider: Provider) -> Iterator[Daemon]:
    running = Daemon(tmp_path, provider)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def read_until(conn: ControlConnection, done: Callable[[dict[str, Any]], bool]) -> list[Any]:
    """Watch lines up to and including the first one ``done`` accepts."""
    seen: list[Any] = []
    while True:
        event = conn.receive()
        assert event is not None, f"the daemon closed the socket; seen {seen}"
        seen.append(event)
        if done(event):
            return seen


def calls_eventually_none(provider: Provider) -> None:
    """The provider has no call left (it handles the phone's ``end`` on its own loop)."""
    deadline = time.monotonic() + WAIT
    while provider.core.list_calls(BOB).calls and time.monotonic() < deadline:
        time.sleep(0.02)
    assert provider.core.list_calls(BOB).calls == ()


def states(events: list[Any]) -> list[str]:
    return [e["state"] for e in events if e.get("event") == "state"]


def test_registers_once_and_keeps_the_handler_across_restarts(
    tmp_path: Path, provider: Provider, daemon: Daemon
) -> None:
    status = daemon.wait_status("idle")
    assert status["registered"] is True
    assert status["number"] == NUMBER
    handler = status["handler"]
    assert handler.startswith(f"https://localhost:{provider.server.port}/")
    assert [h.uri for h in provider.core.handlers(BOB)] == [handler]
    # The key, chain and certificate URI are kept (0600) for the next start.
    identity = StateStore(daemon.state_dir).load_identity().data
    assert identity is not None and identity.cert_uri is not None
    assert (daemon.state_dir / "identity.json").stat().st_mode & 0o777 == 0o600

    code, err = daemon.stop()
    assert code == 0
    assert "event=stopping signal=SIGTERM" in err  # the demo tells a Ctrl-C (SIGINT) by it
    assert "event=stopped" in err
    assert err.count("event=enrolled") == 1
    assert TOKEN not in err

    daemon.start()
    again = daemon.wait_status("idle")
    assert again["handler"] == handler
    assert len(provider.core.handlers(BOB)) == 1
    err = daemon.stop()[1]
    assert "done=kept" in err
    assert "event=enrolled" not in err  # the stored certificate is used again
    assert StateStore(daemon.state_dir).load_identity().data == identity


def test_a_call_to_the_echo_number_and_hanging_up(provider: Provider, daemon: Daemon) -> None:
    daemon.wait_status("idle")
    with daemon.watch() as watch:
        request(daemon.socket, {"cmd": "dial", "number": "408 952 9999"})
        seen = read_until(watch, lambda e: e.get("state") == "in-call")
        assert states(seen) == ["calling", "in-call"]
        calls = provider.core.list_calls(BOB).calls
        assert [c.to for c in calls] == [ECHO]
        status = daemon.status()
        assert status["call"]["peer"] == ECHO
        assert status["call"]["state"] == "answered"
        assert status["call"]["uri"] == calls[0].uri

        request(daemon.socket, {"cmd": "hook", "state": "on"})
        seen = read_until(watch, lambda e: e.get("state") == "idle")
        assert states(seen) == ["ended", "idle"]
    calls_eventually_none(provider)
    assert daemon.status()["call"] is None


def test_a_number_outside_the_trunk_group_fails_locally(provider: Provider, daemon: Daemon) -> None:
    daemon.wait_status("idle")
    with daemon.watch() as watch:
        with pytest.raises(ControlClientError, match=r"\+442079460000 is outside the numbers"):
            request(daemon.socket, {"cmd": "dial", "number": ABROAD})
        seen = read_until(watch, lambda e: e.get("event") == "error")
        assert "+1408*" in seen[-1]["error"]
        assert [e for e in seen if e.get("event") == "error"] == seen[-1:]
    assert provider.core.list_calls(BOB).calls == ()
    assert daemon.status()["state"] == "idle"


def test_an_unreachable_number_says_why_and_returns_to_idle(
    provider: Provider, daemon: Daemon
) -> None:
    daemon.wait_status("idle")
    with daemon.watch() as watch:
        with pytest.raises(ControlClientError, match=r"the provider refused: .*cannot be reached"):
            request(daemon.socket, {"cmd": "dial", "number": UNREACHABLE})
        seen = read_until(watch, lambda e: e.get("event") == "error")
        assert states(seen) == ["calling", "idle"]
    assert provider.core.list_calls(BOB).calls == ()
    assert daemon.status()["state"] == "idle"


def test_a_wrong_token_leaves_the_phone_offline_saying_why(
    tmp_path: Path, provider: Provider
) -> None:
    daemon = Daemon(tmp_path, provider, token="not-bobs-token")
    daemon.start()
    try:
        status = daemon.wait_status("offline")
        deadline = time.monotonic() + WAIT
        while status["reason"] != "login refused" and time.monotonic() < deadline:
            time.sleep(0.05)
            status = daemon.status()
        # The screen's words; the whole sentence is the detail (and the log line).
        assert status["reason"] == "login refused"
        assert "did not accept the phone's credentials" in status["detail"]
        assert "login refused" in status["screen"]
        assert status["registered"] is False
        with pytest.raises(ControlClientError, match="offline"):
            request(daemon.socket, {"cmd": "dial", "number": ECHO})
    finally:
        code, err = daemon.stop()
    assert code == 0
    assert "event=offline" in err
    assert "not-bobs-token" not in err


def test_a_bad_config_or_lab_token_is_one_line_and_exit_2(
    tmp_path: Path, provider: Provider
) -> None:
    # No token at all is not an error any more: the phone logs in (test_oauth_login.py).
    daemon = Daemon(tmp_path, provider, token=None)
    token = daemon.state_dir / "token"
    token.write_text(TOKEN)
    os.chmod(token, 0o644)
    daemon.start()
    code, err = daemon.exited()
    assert code == 2
    assert "must be mode 0600, not 644" in err

    daemon.config.write_text('[provider]\ndomain = "localhost"\nbogus = 1\n')
    daemon.start()
    code, err = daemon.exited()
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "bogus" in err


def test_sigterm_during_a_call_hangs_it_up(provider: Provider, daemon: Daemon) -> None:
    daemon.wait_status("idle")
    with daemon.watch() as watch:
        request(daemon.socket, {"cmd": "dial", "number": ECHO})
        read_until(watch, lambda e: e.get("state") == "in-call")
    assert len(provider.core.list_calls(BOB).calls) == 1
    code, err = daemon.stop()
    assert code == 0
    assert "event=call_ended" in err
    calls_eventually_none(provider)


def test_offline_while_the_provider_cannot_be_trusted_then_registers(tmp_path: Path) -> None:
    # The daemon trusts the CA of provider B; at first provider A (another
    # CA) answers on the port: TLS fails, the phone is offline and says why,
    # and keeps trying until B takes the port over.
    trusted = Provider(tmp_path / "provider-b")
    trusted.close()
    impostor = Provider(tmp_path / "provider-a")
    port = impostor.server.port
    trusted.server.port = port
    daemon = Daemon(tmp_path, trusted)
    daemon.start()
    later: Provider | None = None
    try:
        status = daemon.wait_status("offline")
        while status["reason"] == "not connected yet":
            time.sleep(0.05)
            status = daemon.status()
        assert status["state"] == "offline"
        assert status["registered"] is False
        assert status["reason"] == "provider not trusted"
        assert "TG discovery" in status["detail"]
        impostor.close()
        later = Provider(tmp_path / "provider-b", port)
        status = daemon.wait_status("idle")
        assert [h.uri for h in later.core.handlers(BOB)] == [status["handler"]]
        assert impostor.server.core is not None
        assert impostor.server.core.handlers(BOB) == []
    finally:
        code, err = daemon.stop()
        impostor.close()
        if later is not None:
            later.close()
    assert code == 0
    assert "event=offline" in err


def test_a_corrupted_registration_file_is_one_line_and_the_registration_survives(
    provider: Provider, daemon: Daemon
) -> None:
    handler = daemon.wait_status("idle")["handler"]
    assert daemon.stop()[0] == 0
    path = daemon.state_dir / "registration.json"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])  # what a power cut or a bad SD card leaves

    daemon.start()
    again = daemon.wait_status("idle")
    assert again["handler"] == handler
    assert len(provider.core.handlers(BOB)) == 1  # no second POST /handlers
    code, err = daemon.stop()
    assert code == 0
    lines = [line for line in err.splitlines() if "registration.json" in line]
    assert len(lines) == 1, lines
    assert "last-good" in lines[0]
    assert "done=kept" in err
    assert TOKEN not in err
    # The main file was restored whole from the copy.
    assert StateStore(daemon.state_dir).load_registration().problem is None


def test_an_answered_echo_call_carries_the_phones_audio_both_ways(
    tmp_path: Path, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The microphone is a file holding a 1 kHz tone; the echo far end returns what
    # the phone sends, so the earpiece's file must hold the tone again.  The TG's
    # media timeout is 1 s here, so a call without media would re-establish its
    # byways (and say "no media") within the 2.5 s it lasts.
    monkeypatch.setattr(riptprovider.core, "MEDIA_TIMEOUT_MS", 1000)
    rate = 48000  # the provider's directive for the phone's advertisement picks Opus
    tone = ToneGenerator(ToneSpec(((1000, -10.0),)), rate)
    alsa = write_asoundrc(tmp_path / "alsa", b"".join(tone.frame() for _ in range(200)))
    daemon = Daemon(tmp_path, provider)
    with daemon.config.open("a") as config:
        config.write(
            f'[audio]\ncapture = "{alsa.capture_device}"\nplayback = "{alsa.playback_device}"\n'
        )
    daemon.env = alsa.env()
    daemon.start()
    try:
        daemon.wait_status("idle")
        with daemon.watch() as watch:
            request(daemon.socket, {"cmd": "dial", "number": ECHO})
            read_until(watch, lambda e: e.get("state") == "in-call")
            time.sleep(2.5)
            request(daemon.socket, {"cmd": "hook", "state": "on"})
            read_until(watch, lambda e: e.get("state") == "idle")
    finally:
        code, err = daemon.stop()
    assert code == 0
    assert "event=media_started" in err and "codec=OPUS" in err
    assert "no media" not in err  # the media timer never fired: media flowed
    played = alsa.playback_file.read_bytes()
    assert len(played) >= 2 * rate  # at least a second of audio was played
    middle = played[len(played) // 3 : 2 * len(played) // 3]
    middle = middle[: len(middle) // 2 * 2]
    at_tone = goertzel(middle, rate, 1000)
    assert at_tone > 1e6  # the tone is ~1e8 here; silence or noise would be far below
    assert at_tone > 100 * goertzel(middle, rate, 440)
