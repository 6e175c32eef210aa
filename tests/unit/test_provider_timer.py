"""The provider's deadline loop backs off when a tick fails instead of spinning."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time

import pytest

from riptprovider import server
from riptprovider.server import run_deadlines


class FailingCore:
    """A core whose database cannot be written until ``heal_at``."""

    def __init__(self, heal_at: float) -> None:
        self.heal_at = heal_at
        self.ticks = 0
        self.healed_ticks = 0

    def next_deadline(self) -> float | None:
        return time.monotonic() - 1.0 if self.healed_ticks == 0 else None  # always overdue

    def tick(self, now: float) -> None:
        self.ticks += 1
        if time.monotonic() < self.heal_at:
            raise sqlite3.OperationalError("disk I/O error")
        self.healed_ticks += 1


def test_a_failing_tick_backs_off_and_logs_a_line_per_try(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "TIMER_RETRY", server.BackoffPolicy(initial=0.1, maximum=0.4))
    core = FailingCore(heal_at=time.monotonic() + 1.0)

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(
            run_deadlines(core, time.monotonic, asyncio.Event())
        )
        await asyncio.sleep(1.5)
        task.cancel()

    with caplog.at_level(logging.INFO, logger="riptprovider.server"):
        asyncio.run(main())
    # 0.1, 0.2, 0.4, 0.4 ... : a handful of tries in a second, not tens of thousands.
    assert 3 <= core.ticks <= 10
    assert core.healed_ticks == 1
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "provider timer failed; retrying with back-off"
    assert sum("failed again" in m for m in messages) == core.ticks - 2
    assert messages[-1].startswith("provider timer works again after")
