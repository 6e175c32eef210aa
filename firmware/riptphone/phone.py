"""The phone: its parts, built by :func:`riptphone.daemon.build_phone`, run together.

* the line (:mod:`riptphone.line.registration`): registration, identity,
  coming online with back-off;
* the push channel and its taps (:mod:`riptphone.line.push`);
* the calls (:mod:`riptphone.calls.registry`);
* the driver of the phone machine (:mod:`riptphone.driver`), which carries
  out the machine's actions;
* the control-socket commands (:mod:`riptphone.control.handler`);
* the session (:mod:`riptphone.session`): login, online, logout, factory reset.

They reach one another through the buses of :mod:`riptphone.bus`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from riptphone.calls.earpiece import Earpiece
from riptphone.calls.registry import CallRegistry
from riptphone.control.handler import PhoneControl
from riptphone.driver import PhoneDriver
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.session import Session
from riptphone.tasks import Tasks

log = logging.getLogger("riptphone.phone")

CLOSE_WAIT_S = 2.0
"""How long closing waits for the calls to end (their ``end`` sent)."""


@dataclass(frozen=True, slots=True)
class Phone:
    """One phone on one provider line."""

    line: Line
    push: PushLine
    registry: CallRegistry
    driver: PhoneDriver
    control: PhoneControl
    earpiece: Earpiece
    tasks: Tasks
    session: Session

    def start(self) -> None:
        """Show the first screen (the handset may then start)."""
        self.driver.start()

    async def connect(self) -> None:
        """Log in if need be, come online (retrying while the provider cannot be reached),
        open push; log in again after a logout, start afresh after a factory reset.
        Runs until cancelled."""
        await self.session.run()

    async def close(self) -> None:
        """Hang up calls handled here, stop the push channel, the tones and the timers."""
        self.registry.hang_up_here()
        if not await self.tasks.wait(CLOSE_WAIT_S):
            log.warning("event=call_not_closed")
        await self.push.close()
        self.driver.close()
        self.registry.quality.close()
        await self.earpiece.close()
