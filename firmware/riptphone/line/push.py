"""The line's push channel (profile section 9) and what its shoulder taps do to the calls.

:meth:`PushLine.start` opens the MQTT channel of the registration's push
binding (:class:`riptphone.net.push.PushChannel`); each (re)connection looks
for calls a lost tap would have offered (``GET {tg}/calls``), and without a
channel that look happens once.  A tap follows its call in the registry;
``take`` pulls it here, ``answer``/``decline`` go to the phone machine.  The
channel's status stays a :class:`~riptphone.net.push.PushStatus` here and in
``status``; the machine's input gets the word the screen shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ript.protocol.descriptions import DescriptionError
from ript.protocol.taps import Tap, TapType
from riptphone.app import inputs
from riptphone.calls.registry import CallRegistry
from riptphone.line.registration import Line
from riptphone.net.push import PushChannel, PushStatus
from riptphone.tasks import Tasks

log = logging.getLogger("riptphone.line.push")

SHOWN: dict[PushStatus, inputs.PushState] = {
    PushStatus.UP: "up",
    PushStatus.DOWN: "down",
    PushStatus.NONE: "none",
}
"""The push line of the phone machine's screen for each channel status."""

ChannelFactory = Callable[..., PushChannel]


class PushLine:
    """The push channel of one registration, and the taps it brings."""

    def __init__(
        self,
        line: Line,
        registry: CallRegistry,
        tasks: Tasks,
        feed: Callable[[inputs.Input], object],
        *,
        ca_file: str | Path | None = None,
        channel_factory: ChannelFactory = PushChannel,
    ) -> None:
        self.line = line
        self.registry = registry
        self._tasks = tasks
        self._feed = feed
        self._ca_file = ca_file
        self._factory = channel_factory
        self.channel: PushChannel | None = None
        self.status = PushStatus.NONE

    def start(self) -> None:
        """Once online: open the channel; without one, look once for this line's calls."""
        self.channel = self._open()
        if self.channel is None:
            # No taps will come: look once for calls of this line (ours before a restart).
            self._tasks.spawn(self.registry.catch_up())
            return
        self.on_status(self.channel.status)
        self.channel.start()

    def _open(self) -> PushChannel | None:
        registration, tg = self.line.registration, self.line.tg
        if registration is None or tg is None or registration.push is None:
            log.info("event=push state=none reason='the provider gave no push binding'")
            return None
        try:
            return self._factory(
                registration.push,
                registration.handler_id,
                tg.uri,
                self.tap,
                on_connected=self.registry.catch_up,
                on_status=self.on_status,
                ca_file=self._ca_file,
            )
        except (DescriptionError, ValueError) as exc:
            log.error("event=push_unusable reason=%r", str(exc))
            return None

    def on_status(self, status: PushStatus) -> None:
        """The channel went up or down: the idle screen and ``status`` show it."""
        if status is not self.status:
            self.status = status
            log.info("event=push state=%s", status.value)
            self._feed(inputs.PushChanged(SHOWN[status]))

    async def tap(self, tap: Tap) -> None:
        """One shoulder tap: follow its call, and take, answer or decline it when asked."""
        log.info("event=tap type=%s call=%s", tap.type.value, tap.call)
        if tap.type is TapType.CALL:
            await self.registry.follow(tap.call)
        elif tap.type is TapType.TAKE:
            runner = self.registry.get(tap.call) or await self.registry.follow(tap.call)
            if runner is not None:
                runner.pull()
        elif tap.type is TapType.ANSWER:
            await self.registry.follow(tap.call)
            self._feed(inputs.TapAnswer(tap.call))
        elif tap.type is TapType.DECLINE:
            await self.registry.follow(tap.call)
            self._feed(inputs.TapDecline(tap.call))

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
