"""The phone's background tasks, kept in one place so closing can wait for them all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger("riptphone.tasks")

T = TypeVar("T")


class Tasks:
    """Tasks started on the running loop; a failure is logged, never lost."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # a task only weakly referenced by the loop may vanish
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("event=task_failed reason=%r", str(exc), exc_info=exc)

    async def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the running tasks; False when some did not end."""
        running = [t for t in self._tasks if not t.done()]
        if not running:
            return True
        _done, pending = await asyncio.wait(running, timeout=timeout)
        return not pending
