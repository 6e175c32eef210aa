"""The handset end to end: mock GPIO pins and luma's dummy display, the real provider.

``ript-provider serve`` runs as a subprocess (real HTTP/3 over loopback, its
echo far end).  The phone daemon runs in this process, because gpiozero's
mock pins only exist here: :func:`riptphone.daemon.serve` on a thread of its
own with its own loop, given a ``MockFactory`` (the keypad wired as a
:class:`hwmock.KeyMatrix`, the hook contact a mock pin) and luma's ``dummy``
device for the OLED.  The phone is driven only through the hardware: the hook
pin (normally-open wiring: low is off hook) and keys pressed on the matrix.
It is watched through its control socket (``status``, ``watch``), the dummy
display's image and, over HTTP/3, the provider's list of the account's calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from alsa.fileplugin import FilePluginAlsa, write_asoundrc
from hwmock import KeyMatrix, bounce, mock_factory, pin_setter
from riptdev.processes import (
    ProviderProcess,
    phone_config,
    stop_process,
    tone_found,
    tone_levels,
    tone_pcm,
    write_secret,
)
from riptphone.config import load_config
from riptphone.control.client import ControlClientError, ControlConnection, request
from riptphone.daemon import serve
from riptphone.hw.oled import dummy_display

from .procs import ECHO, NUMBER, TOKEN, WAIT, ProviderApi, provider_process

pytestmark = pytest.mark.e2e

KEY_HOLD = 0.1  # five times the keypad's 20 ms debounce
LONG_HOLD = 1.3  # past the 800 ms long press
HOOK_DEBOUNCE_MS = 150  # the longest allowed: a busy test machine must not make a bounce count
BOUNCE_STEP = 0.015  # each level is sampled (5 ms polls) but none is held for the debounce


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    running = provider_process(tmp_path_factory.mktemp("provider"))
    try:
        yield running
    finally:
        assert stop_process(running.process) == 0, running.log.read_text()


class LogLines(logging.Handler):
    """The daemon's log lines, kept to explain a failure."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("level=%(levelname)s logger=%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def text(self) -> str:
        return "\n".join(self.lines)


class HandsetPhone:
    """The daemon on its own thread and loop, with its pins and display exposed to the test."""

    def __init__(
        self, work: Path, provider: ProviderProcess, factory: Any, alsa: FilePluginAlsa | None
    ) -> None:
        state_dir = work / "state"
        state_dir.mkdir(parents=True, mode=0o700)
        write_secret(state_dir / "token", TOKEN + "\n")
        self.socket = work / "control.sock"
        text = phone_config(
            provider,
            state_dir=state_dir,
            control_socket=self.socket,
            capture=alsa.capture_device if alsa is not None else "null",
            playback=alsa.playback_device if alsa is not None else "null",
            number=NUMBER,
        )
        hardware_section = f'backend = "gpio"\nhook_debounce_ms = {HOOK_DEBOUNCE_MS}'
        text = text.replace('backend = "none"', hardware_section)
        path = work / "phone.toml"
        path.write_text(text)
        self.config = load_config(path)
        hardware = self.config.hardware
        assert (hardware.backend, hardware.hook_debounce_ms) == ("gpio", HOOK_DEBOUNCE_MS)
        assert hardware.hook_wiring == "normally-open"  # lifting the handset grounds the pin
        # The wiring exists before the daemon opens its pins, so it gets these.
        self.matrix = KeyMatrix(factory, hardware.keypad_rows, hardware.keypad_columns)
        self.hook_pin = factory.pin(hardware.hook_pin)
        self.device = dummy_display()
        self.factory = factory
        self.log = LogLines()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phone-daemon", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await serve(
                self.config,
                TOKEN,
                pin_factory=self.factory,
                display_device=self.device,
                stop=self._stop,
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by stop()
            self._failure = exc
        finally:
            self._ready.set()

    def start(self) -> None:
        logger = logging.getLogger("riptphone")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self.log)
        self._thread.start()
        assert self._ready.wait(WAIT)

    def stop(self) -> None:
        """Stop the daemon as SIGTERM would; re-raise what it failed with."""
        try:
            if self._loop is not None and self._stop is not None and self._thread.is_alive():
                self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(WAIT)
            assert not self._thread.is_alive(), "the daemon did not stop\n" + self.log.text()
        finally:
            logger = logging.getLogger("riptphone")
            logger.removeHandler(self.log)
            logger.setLevel(self._level)
        if self._failure is not None:
            raise AssertionError("the daemon failed\n" + self.log.text()) from self._failure

    # ------------------------------------------------------------ observing

    def status(self) -> dict[str, Any]:
        return request(self.socket, {"cmd": "status"})

    def wait_status(self, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        last: dict[str, Any] | str = "no control socket yet"
        while time.monotonic() < deadline:
            assert self._thread.is_alive(), "the daemon stopped\n" + self.log.text()
            try:
                status = self.status()
            except ControlClientError as exc:
                last = str(exc)
            else:
                if status["state"] == state:
                    return status
                last = status
            time.sleep(0.05)
        raise AssertionError(f"never {state}; last status {last}\n{self.log.text()}")

    def watch(self) -> ControlConnection:
        conn = ControlConnection(self.socket, timeout=WAIT)
        conn.request({"cmd": "watch"})
        return conn

    def read_until(
        self, conn: ControlConnection, done: Callable[[dict[str, Any]], bool]
    ) -> list[dict[str, Any]]:
        """Watch lines up to and including the first that ``done`` accepts."""
        seen: list[dict[str, Any]] = []
        while True:
            try:
                event = conn.receive()
            except ControlClientError:
                raise AssertionError(f"watch went quiet; seen {seen}\n{self.log.text()}") from None
            assert event is not None, f"the daemon closed the watch; seen {seen}"
            seen.append(event)
            if done(event):
                return seen

    def image(self) -> bytes:
        return bytes(self.device.image.tobytes())

    def wait_image(self, differs_from: bytes) -> bytes:
        """The display's frame once it is neither blank nor ``differs_from``."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            frame = self.image()
            if frame != differs_from and self.device.image.getbbox() is not None:
                return frame
            time.sleep(0.02)
        raise AssertionError("the display did not change\n" + self.log.text())

    def settled_image(self) -> bytes:
        """The display's frame once it is not blank and has stayed the same for 0.3 s."""
        deadline = time.monotonic() + WAIT
        frame, since = self.image(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.02)
            now = self.image()
            if now != frame:
                frame, since = now, time.monotonic()
            elif self.device.image.getbbox() is not None and time.monotonic() - since > 0.3:
                return frame
        raise AssertionError("the display never settled\n" + self.log.text())

    # ------------------------------------------------------------ the hardware

    def lift(self) -> list[bool]:
        """Off hook with a chattering contact (the daemon sees one change)."""
        return bounce(pin_setter(self.hook_pin), False, between=lambda: time.sleep(BOUNCE_STEP))

    def hang_up(self) -> list[bool]:
        return bounce(pin_setter(self.hook_pin), True, between=lambda: time.sleep(BOUNCE_STEP))

    def type(self, digits: str) -> None:
        for key in digits:
            self.press(key, KEY_HOLD)

    def press(self, key: str, hold: float) -> None:
        self.matrix.press(key)
        time.sleep(hold)
        self.matrix.release(key)
        time.sleep(KEY_HOLD)


@contextmanager
def handset_phone(
    work: Path, provider: ProviderProcess, alsa: FilePluginAlsa | None = None
) -> Iterator[HandsetPhone]:
    with mock_factory() as factory:
        phone = HandsetPhone(work, provider, factory, alsa)
        try:
            phone.start()
            yield phone
        finally:
            phone.stop()


def state_is(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == "state" and event.get("state") == state


def states(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["state"]) for e in events if e.get("event") == "state"]


def no_calls_left(api: ProviderApi) -> None:
    deadline = time.monotonic() + WAIT
    while api.calls() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.calls() == []


def test_lift_type_the_echo_number_talk_and_hang_up_with_the_hook(
    tmp_path: Path, provider: ProviderProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    rate = 48000  # Opus, as the provider's directive picks
    alsa = write_asoundrc(tmp_path / "alsa", tone_pcm(12, rate))  # the microphone: 1 kHz
    monkeypatch.setenv("ALSA_CONFIG_PATH", alsa.config_path)  # read at each PCM open
    api = ProviderApi(provider)
    with handset_phone(tmp_path / "phone", provider, alsa) as phone:
        idle = phone.wait_status("idle")
        assert idle["registered"] is True
        assert idle["number"] == NUMBER
        idle_frame = phone.settled_image()
        watch = phone.watch()
        try:
            levels = phone.lift()
            assert levels.count(False) > 1  # the contact really chattered
            lifted = phone.read_until(watch, state_is("dialing"))
            assert states(lifted) == ["dialing"]

            phone.type(ECHO.removeprefix("+"))  # no '#': the NANP digit map dials on the 11th
            placed = phone.read_until(watch, state_is("in-call"))
            # One hook change: a bounce that got through would show idle/dialing again.
            assert states(placed) == ["calling", "in-call"]
            call = phone.status()["call"]
            assert (call["peer"], call["direction"]) == (ECHO, "outbound")
            deadline = time.monotonic() + WAIT
            while call["state"] != "answered":
                assert time.monotonic() < deadline, call
                time.sleep(0.05)
                call = phone.status()["call"]
            assert [c.uri for c in api.calls()] == [call["uri"]]
            phone.wait_image(differs_from=idle_frame)  # the in-call screen replaced idle
            time.sleep(2.0)  # talk: the echo far end sends the microphone's tone back

            phone.hang_up()
            ended = phone.read_until(watch, state_is("idle"))
            assert states(ended) == ["ended", "idle"]
            assert phone.status()["call"] is None
            no_calls_left(api)
        finally:
            watch.close()
        log = phone.log.text()
    assert "event=media_started" in log and "no media" not in log
    played = alsa.playback_file.read_bytes()
    assert len(played) >= 2 * rate  # a second of audio at least (S16 mono)
    at_tone, other = tone_levels(played, rate)
    assert tone_found(at_tone, other), (at_tone, other)


def test_holding_hash_on_the_keypad_toggles_do_not_disturb(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    with handset_phone(tmp_path / "phone", provider) as phone:
        idle = phone.wait_status("idle")
        assert "do not disturb" not in idle["screen"]
        before = phone.settled_image()
        watch = phone.watch()
        try:
            phone.press("#", LONG_HOLD)
            shown = phone.read_until(watch, lambda e: "do not disturb" in e.get("screen", []))
            assert states(shown) == []  # still idle: a held '#' does not dial (redial)
            assert "do not disturb" in phone.status()["screen"]
            phone.wait_image(differs_from=before)  # the idle screen with its DND mark

            phone.press("#", LONG_HOLD)
            phone.read_until(watch, lambda e: "do not disturb" not in e.get("screen", ["dnd"]))
            status = phone.status()
            assert status["state"] == "idle"
            assert "do not disturb" not in status["screen"]
        finally:
            watch.close()


def test_holding_star_and_hash_on_hook_resets_the_phone(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    """The factory reset by the keypad: the handler deleted, the state wiped, registered anew.

    The lab token file is the operator's and stays, so the phone registers again with it
    (with OAuth it would show a login code: tests/integration/test_login_e2e.py).
    """
    api = ProviderApi(provider)
    with handset_phone(tmp_path / "phone", provider) as phone:
        handler = phone.wait_status("idle")["handler"]
        assert api.get_handler(handler) is not None
        phone.matrix.press("*", "#")
        try:
            deadline = time.monotonic() + 30
            while "event=factory_reset_done" not in phone.log.text():
                assert time.monotonic() < deadline, phone.log.text()
                time.sleep(0.1)
        finally:
            phone.matrix.release("*", "#")
        deadline = time.monotonic() + 30
        status = phone.status()
        while not (status["state"] == "idle" and status["handler"] not in (None, handler)):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = phone.status()
        assert api.get_handler(handler) is None  # deleted at the provider
        log = phone.log.text()
    assert "event=reset_hold_started" in log and "event=handler_deleted" in log
    assert "do not disturb" not in status["screen"]  # the held '#' was swallowed
    assert (tmp_path / "phone" / "state" / "token").exists()
