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

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

from ript.protocol.descriptions import DescriptionError
from ript.protocol.taps import Tap, TapType
from riptphone.app import inputs
from riptphone.calls.registry import CallRegistry
from riptphone.line.registration import Line
from riptphone.net.push import PushChannel, PushStatus
from riptphone.net.ript_client import RiptError, _kept_push
from riptphone.store import StoreError
from riptphone.tasks import Tasks

log = logging.getLogger("riptphone.line.push")

SHOWN: dict[PushStatus, inputs.PushState] = {
    PushStatus.UP: "up",
    PushStatus.DOWN: "down",
    PushStatus.NONE: "none",
}
"""The push line of the phone machine's screen for each channel status."""

ChannelFactory = Callable[..., PushChannel]

REFETCH_EVERY_S = 60.0
"""After a refused MQTT login, ``GET {handler}`` at most this often: the binding may have
changed (a provider whose device list was wiped gives a new password), and a desk phone
must pick it up by itself; a broker that refuses for another reason costs one GET a minute."""


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.line = line
        self.registry = registry
        self._tasks = tasks
        self._feed = feed
        self._ca_file = ca_file
        self._factory = channel_factory
        self.channel: PushChannel | None = None
        self.status = PushStatus.NONE
        self._clock = clock
        self._refetched_at: float | None = None
        self._refetching = False

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
                on_refused=self.refused,
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

    def refused(self) -> None:
        """The broker refused the channel's login: ask the provider for the binding again."""
        now = self._clock()
        if self._refetching or (
            self._refetched_at is not None and now - self._refetched_at < REFETCH_EVERY_S
        ):
            return
        self._refetching, self._refetched_at = True, now
        self._tasks.spawn(self._refetch())

    async def _refetch(self) -> None:
        """``GET {handler}``; a new binding is saved and the channel reopened on it."""
        try:
            registration = self.line.registration
            if registration is None or registration.push is None or not registration.handler_uri:
                return
            try:
                described = await self.line.client.get_handler(registration.handler_uri)
            except (RiptError, OSError) as exc:
                log.warning("event=push_refetch_failed reason=%r", str(exc))
                return
            if described is None:
                return  # the handler is gone: the line's next registration sorts it out
            push = _kept_push(described.push, registration.push)
            if (
                push is None
                or push == registration.push
                or self.line.registration is not registration
            ):
                return
            updated = dataclasses.replace(registration, push=push)
            try:
                await asyncio.to_thread(self.line.store.save_registration, updated)
            except StoreError as exc:  # still use it now; the next start asks again
                log.warning("event=push_binding_unsaved reason=%r", str(exc))
            self.line.registration = updated
            log.info("event=push_rebound handler=%s", registration.handler_uri)
            old, self.channel = self.channel, None
            if old is not None:
                await old.close()
            self.channel = self._open()
            if self.channel is not None:
                self.on_status(self.channel.status)
                self.channel.start()
        finally:
            self._refetching = False

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
