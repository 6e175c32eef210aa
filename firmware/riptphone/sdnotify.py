"""systemd's notification protocol (sd_notify(3)): readiness, status, watchdog, reload, stop.

The protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
by ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace); it is
documented as stable, and small enough that a dependency would cost more than
these lines.  Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.

The watchdog keep-alive is sent by :meth:`Notifier.run_watchdog`, a task on the
daemon's own asyncio loop: a loop that stops turning stops the pings, and
systemd restarts the daemon after ``WatchdogSec=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


def _address(name: str) -> str:
    # "@name" is Linux's abstract namespace: a leading NUL byte instead of the "@".
    return "\0" + name[1:] if name.startswith("@") else name


class Notifier:
    """Talks to the service manager named by ``environ`` (default: this process's)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._socket: socket.socket | None = None
        self._failed = False
        self._last_status: str | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, message: str) -> bool:
        """Send one notification (``"READY=1"``, or several lines); False if it could not go."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(message.encode("utf-8"), _address(self.address))
        except OSError as exc:
            if not self._failed:  # once: a missing manager must not flood the journal
                self._failed = True
                log.warning("event=sd_notify_failed socket=%s reason=%r", self.address, str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.send("READY=1")
            return
        self._last_status = _one_line(status)
        self.send(f"READY=1\nSTATUS={self._last_status}")

    def status(self, text: str) -> None:
        """``STATUS=``, only when it changed (``systemctl status`` shows the last one)."""
        line = _one_line(text)
        if line != self._last_status:
            self._last_status = line
            self.send(f"STATUS={line}")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (253+) match the reload with READY=1 that follows.
        self.send(
            f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
        )

    def stopping(self) -> None:
        self.send("STOPPING=1")

    async def run_watchdog(self) -> None:
        """Send ``WATCHDOG=1`` every half watchdog period, from the loop; forever."""
        if self.watchdog_s is None or self.address is None:
            return
        period = self.watchdog_s / 2
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(period)

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    return " ".join(text.split())
