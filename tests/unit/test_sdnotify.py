"""sd_notify on a real NOTIFY_SOCKET: readiness, status, watchdog from the loop, stop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from riptphone.sdnotify import Notifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's end: a datagram socket the notifier writes to."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    sock.settimeout(0.05)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except TimeoutError:
        pass
    return messages


def test_ready_status_and_stopping(manager: socket.socket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.getsockname()})
    assert notifier.enabled
    notifier.ready("idle,  registered\n")
    notifier.status("idle, registered")  # unchanged: not sent again
    notifier.status("in-call")
    notifier.stopping()
    assert received(manager) == [
        "READY=1\nSTATUS=idle, registered",
        "STATUS=in-call",
        "STOPPING=1",
    ]
    notifier.close()


def test_the_abstract_namespace(tmp_path: Path) -> None:
    name = f"ript-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.send("READY=1") is False
    asyncio.run(asyncio.wait_for(notifier.run_watchdog(), 1))  # returns at once


def test_a_vanished_manager_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert notifier.send("READY=1") is False
    assert notifier.send("STATUS=x") is False
    assert len([r for r in caplog.records if "sd_notify_failed" in r.getMessage()]) == 1


def test_the_watchdog_pings_from_the_loop_and_stops_when_the_loop_is_wedged(
    manager: socket.socket,
) -> None:
    notifier = Notifier(
        {
            "NOTIFY_SOCKET": manager.getsockname(),
            "WATCHDOG_USEC": "200000",
            "WATCHDOG_PID": str(os.getpid()),
        }
    )
    assert notifier.watchdog_s == pytest.approx(0.2)

    async def main() -> tuple[list[str], list[str]]:
        task = asyncio.get_running_loop().create_task(notifier.run_watchdog())
        await asyncio.sleep(0.35)  # turning: a ping every 0.1 s
        turning = received(manager)
        time.sleep(0.5)  # the loop wedged: no ping can go
        wedged = received(manager)
        task.cancel()
        return turning, wedged

    turning, wedged = asyncio.run(main())
    assert turning.count("WATCHDOG=1") >= 3
    assert wedged == []


def test_the_watchdog_is_for_this_process_only(manager: socket.socket) -> None:
    other = Notifier(
        {"NOTIFY_SOCKET": manager.getsockname(), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}
    )
    assert other.watchdog_s is None
