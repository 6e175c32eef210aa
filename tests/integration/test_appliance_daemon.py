"""The daemon as systemd runs it: sd_notify on a real NOTIFY_SOCKET, the watchdog, SIGHUP
reloading the configuration during a call, and journald priorities.

The test plays systemd's part: it binds the notification socket, reads READY, STATUS,
WATCHDOG, RELOADING and STOPPING, and restarts a daemon whose watchdog pings stop, as
``WatchdogSec=`` with ``Restart=on-failure`` would.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alsa.fileplugin import write_asoundrc
from riptdev.processes import tone_pcm

from .procs import (
    ECHO,
    PhoneProcess,
    ProviderProcess,
    provider_process,
    state_is,
)

pytestmark = pytest.mark.e2e

WATCHDOG_S = 2.0


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderProcess]:
    running = provider_process(tmp_path_factory.mktemp("provider"))
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(10)


class Manager:
    """systemd's end of NOTIFY_SOCKET: every notification the daemon sent, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []
        self._cursor = 0  # messages before it were matched (or passed) by wait_for

    def read(self, timeout: float = 0.2) -> list[str]:
        self.sock.settimeout(timeout)
        got = []
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
                self.sock.settimeout(0.01)
        except TimeoutError:
            pass
        self.messages += got
        return got

    def wait_for(self, prefix: str, timeout: float = 30.0) -> str:
        """The next notification (after the last one matched) holding ``prefix``."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(self._cursor, len(self.messages)):
                message = self.messages[index]
                if message.startswith(prefix) or f"\n{prefix}" in message:
                    self._cursor = index + 1
                    return message
            if time.monotonic() >= deadline:
                break
            self.read()
        raise AssertionError(f"no {prefix!r} within {timeout} s; got {self.messages[-5:]}")

    def close(self) -> None:
        self.sock.close()


def systemd_phone(
    work: Path, provider: ProviderProcess, manager: Manager, **kw: object
) -> PhoneProcess:
    env = {"NOTIFY_SOCKET": str(manager.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
    return PhoneProcess(work, provider, env=env, **kw)  # type: ignore[arg-type]


def test_ready_status_watchdog_and_a_wedged_loop_restarted(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    manager = Manager(tmp_path / "notify")
    phone = systemd_phone(tmp_path / "phone", provider, manager)
    try:
        phone.start()
        ready = manager.wait_for("READY=1")
        assert phone.socket.exists()  # READY only once the control socket serves
        assert "STATUS=" in ready
        manager.wait_for("STATUS=idle")
        # Pings every WatchdogSec/2 from the loop.
        before = sum(m == "WATCHDOG=1" for m in manager.messages)
        time.sleep(2.5)
        manager.read()
        assert sum(m == "WATCHDOG=1" for m in manager.messages) - before >= 2
        # The loop wedges (the process stops being scheduled): the pings stop, and the
        # manager restarts it once WatchdogSec has passed without one.
        assert phone.process is not None
        phone.process.send_signal(signal.SIGSTOP)
        manager.read()
        silent_since = time.monotonic()
        while time.monotonic() - silent_since < WATCHDOG_S * 1.5:
            assert "WATCHDOG=1" not in manager.read(0.2)
        phone.process.kill()  # systemd: SIGABRT, then SIGKILL, then Restart=on-failure
        phone.process.wait(10)
        phone.process = None
        phone.start()
        manager.wait_for("READY=1")
        manager.wait_for("WATCHDOG=1")
        assert phone.stop() == 0
        manager.wait_for("STOPPING=1")
    finally:
        phone.stop()
        manager.close()


def test_sighup_applies_a_volume_change_during_a_call_without_dropping_it(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    manager = Manager(tmp_path / "notify")
    alsa = write_asoundrc(tmp_path / "alsa", tone_pcm(20, 48000))
    phone = systemd_phone(tmp_path / "phone", provider, manager, alsa=alsa)
    try:
        phone.start()
        with phone.watching() as watch:
            watch.lift()
            assert phone.cli("dial", ECHO).returncode == 0
            watch.until(state_is("in-call"))
            call = phone.status()["call"]
            received = call["stats"].get("chunks_received", 0)
            text = phone.config.read_text()
            phone.config.write_text(
                text.replace("[audio]\n", "[audio]\nvolume = 40\n").replace(
                    '[provider]\ndomain = "', '[provider]\ndomain = "x'
                )
            )
            assert phone.process is not None
            phone.process.send_signal(signal.SIGHUP)
            manager.wait_for("RELOADING=1")
            manager.wait_for("READY=1")
            deadline = time.monotonic() + 20
            while "event=reloaded" not in phone.log_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            after = phone.status()
            assert after["state"] == "in-call"  # the call goes on
            assert after["call"]["uri"] == call["uri"]
            assert after["call"]["stats"]["chunks_received"] > received
            assert phone.cli("hangup").returncode == 0
            watch.until(state_is("idle"))
    finally:
        assert phone.stop() == 0
        manager.close()
    log = phone.log_text()
    assert "event=reloaded applied=[audio]volume" in log
    # The domain needs a restart: said in one line, and the running value stays.
    assert "event=reload_needs_restart keys=[provider]domain" in log
    assert phone.process is None


def test_a_broken_file_on_reload_changes_nothing(tmp_path: Path, provider: ProviderProcess) -> None:
    manager = Manager(tmp_path / "notify")
    phone = systemd_phone(tmp_path / "phone", provider, manager)
    try:
        phone.start()
        phone.config.write_text(phone.config.read_text() + "\n[nonsense]\n")
        assert phone.process is not None
        phone.process.send_signal(signal.SIGHUP)
        manager.wait_for("READY=1")  # after RELOADING: still running, still ready
        deadline = time.monotonic() + 20
        while "event=reload_refused" not in phone.log_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert phone.status()["state"] == "idle"
    finally:
        assert phone.stop() == 0  # SIGHUP no longer kills the daemon (it exited 129)
        manager.close()
    assert "unknown section" in phone.log_text()


def test_log_lines_carry_syslog_priorities_on_the_journal_stream(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    work = tmp_path / "phone"
    work.mkdir()
    # The daemon's stderr is its log file (PhoneProcess.log); name that file as the journal.
    log_file = work / "run-1.log"
    log_file.touch()
    info = os.stat(log_file)
    phone = PhoneProcess(work, provider, env={"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
    try:
        phone.start()
    finally:
        assert phone.stop() == 0
    lines = [line for line in phone.log_text().splitlines() if line]
    assert lines and all(line.startswith("<") for line in lines), lines[:3]
    assert any(line.startswith("<6>level=INFO") and "event=started" in line for line in lines)
