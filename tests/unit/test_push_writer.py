"""The provider's write-behind thread for the broker files (riptprovider.broker._Writer)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from riptprovider.broker import DeviceRegistry, _Writer


def test_a_waiter_that_gave_up_does_not_end_the_writer() -> None:
    # A registration waits at most 3 s for the broker, then cancels its future; the
    # write it waited for still finishes, and later changes must still be written.
    release = threading.Event()
    flushes: list[float] = []

    def flush() -> None:
        release.wait(5)
        flushes.append(time.monotonic())

    writer = _Writer(flush)
    try:
        writer.request()
        gave_up = writer.settled()
        gave_up.cancel()  # as asyncio.wait_for(wrap_future(...)) does on its timeout
        release.set()
        writer.request()
        later = writer.settled()
        later.result(timeout=5)  # before the fix: the thread died, this never resolved
        assert flushes  # (the two changes may share one flush)
        writer.request()
        writer.settled().result(timeout=5)  # and it goes on
    finally:
        writer.close()


def test_a_reload_the_broker_did_not_confirm_is_done_again_before_settling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MosquittoBroker.reload returns False when mosquitto never logged the reload (its
    # signal lost): the users written are not live, so the registrations waiting on
    # settled() must not be told they are; the files are written and reloaded again.
    monkeypatch.setattr(_Writer, "RETRY_S", 0.01)
    answers = [False, True]
    calls: list[bool] = []

    def reload() -> bool:
        calls.append(answers[len(calls)] if len(calls) < len(answers) else True)
        return calls[-1]

    push = tmp_path / "push"
    registry = DeviceRegistry(
        push / "devices.json", push / "passwd", push / "acl", "mqtts://127.0.0.1:1", reload
    )
    registry.write_behind()
    try:
        registry.add_device("handler-1", "alice")
        registry.settled().result(timeout=5)
        assert calls == [False, True]  # before the fix: settled after the unconfirmed [False]
        assert "handler-1:" in (push / "passwd").read_text()
    finally:
        registry.close()
