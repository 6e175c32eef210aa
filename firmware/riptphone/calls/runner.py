"""Runs one :class:`ript.protocol.call.Call` against the provider.

The call machine does no I/O; this module is its I/O.  One task per call
owns the machine: everything that happens (an event on the reverse
signalling byway, the byways coming up or failing, the user hanging up, a
timer) is put on one queue as a function of ``now`` returning actions, so
the machine is only ever touched from that task, in order.  The actions are
carried out here (open and close the signalling byways, send events, fetch
the description, claim the call) and the ones the phone cares about
(``StateChanged``, ``CallEnded``, ``Ring``...) are passed to ``report``.

``OpenMedia`` starts a :class:`riptphone.calls.media.MediaSession` on the
``[audio]`` devices (PCMU or Opus over a WebTransport session when the
provider gives one, else over the media byways: :mod:`riptphone.calls.transport`);
``CloseMedia``, ``CloseByways`` and the end of the call stop it.  Every
re-establishment of the byways opens the leg's transport anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ript.protocol.call import (
    AbandonConnection,
    Action,
    BywaysChanged,
    BywayState,
    Call,
    ClaimCall,
    CloseByways,
    CloseMedia,
    FetchDescription,
    OpenMedia,
    OpenSignalling,
    ProtocolViolation,
    SendEvent,
)
from ript.protocol.errors import LocalProtocolError
from ript.protocol.events import Event, Pong, ReplayFilter
from riptphone.calls.codec import MediaError, codec_settings
from riptphone.calls.media import NO_ACTIVITY, MediaInfo, MediaSession
from riptphone.calls.transport import open_transport
from riptphone.config import AudioConfig
from riptphone.hw.audio import AudioError
from riptphone.net.h3 import ConnectionLostError, GoawayError
from riptphone.net.ript_client import RiptClient, RiptError, SignallingByways

log = logging.getLogger(__name__)

MEDIA_LOOK_S = 0.25
"""While media flows the runner hands its traffic to the machine at least this often, so
the 1 s no-ack timer fires within 1.25 s of the last ack (the session never wakes it)."""
PROBE_EVERY_S = 0.25
"""How often the connection is PINGed while the call's byways are opening (see _probe)."""

Step = Callable[[float], list[Action]]
"""One input for the machine: given ``now``, feed it and return its actions."""


class CallRunner:
    """Owns one :class:`Call`: start it with :meth:`run`, stop it with :meth:`hangup`."""

    def __init__(
        self,
        client: RiptClient,
        call: Call,
        report: Callable[[Action], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        audio: AudioConfig | None = None,
        before_media: Callable[[], Awaitable[None]] | None = None,
        on_media: Callable[[MediaSession], None] | None = None,
        on_dtmf: Callable[[str], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        self.client = client
        self._on_dtmf = on_dtmf
        self._on_event = on_event
        self._replays = ReplayFilter()
        """Each event the provider numbers is applied once, replayed or not (protocol.md 6)."""
        self._before_media = before_media
        self._on_media = on_media
        self.audio = audio if audio is not None else AudioConfig()
        self.media: MediaSession | None = None
        self._last_media: MediaSession | None = None  # its numbering goes on after a restart
        self.call = call
        self._report = report
        self._clock = clock
        self._inputs: asyncio.Queue[Step] = asyncio.Queue()
        self._byways: SignallingByways | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: list[Event] = []  # events to send once the byways exist
        self._media_failed = False  # log a session that cannot start once, not per attempt
        self._tasks: set[asyncio.Task[None]] = set()

    def media_info(self) -> MediaInfo | None:
        """Codec, transport and stats of the running or last media session; None before media.

        The last session's figures stay after it stops, so the call's final ``call``
        line on the control socket still says what flowed.
        """
        media = self.media if self.media is not None else self._last_media
        if media is None:
            return None
        return MediaInfo(media.codec.lower(), media.transport, media.stats())

    def hangup(self) -> None:
        """Hang up (or cancel); harmless once the call is over."""
        self._inputs.put_nowait(self.call.hangup)

    def answer(self) -> None:
        """Answer the call ringing here, or start a 3PCC call offered here."""
        self._inputs.put_nowait(functools.partial(self._local, self.call.answer, "answer"))

    def decline(self) -> None:
        """Decline the call ringing here."""
        self._inputs.put_nowait(functools.partial(self._local, self.call.decline, "decline"))

    def pull(self) -> None:
        """Take the call here from another device (call pull, push, 3PCC move)."""
        self._inputs.put_nowait(functools.partial(self._local, self.call.pull, "pull"))

    @property
    def codec(self) -> str | None:
        """The codec of the media flowing now, or None."""
        return None if self.media is None else self.media.codec

    def _local(self, act: Callable[[float], list[Action]], what: str, now: float) -> list[Action]:
        # The user acted on a state the call has just left (it was answered
        # elsewhere a moment ago): say so rather than fail the runner.
        try:
            return act(now)
        except LocalProtocolError as exc:
            log.info("event=not_now call=%s action=%s reason=%r", self.call.uri, what, str(exc))
            return []

    async def run(self) -> None:
        """Drive the call until it is over, then close its byways."""
        try:
            await self._carry_out(self.call.start(self._clock()))
            while self.call.ended is None:
                self._note_media()
                deadline = self.call.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                if self.media is not None:
                    timeout = MEDIA_LOOK_S if timeout is None else min(timeout, MEDIA_LOOK_S)
                try:
                    step = await asyncio.wait_for(self._inputs.get(), timeout)
                except TimeoutError:
                    step = self.call.handle_timer
                self._note_media()
                await self._carry_out(step(self._clock()))
        finally:
            self._stop_media()
            self._close_byways()

    def _note_media(self) -> None:
        """Hand the media session's traffic to the call machine (whose timers watch it).

        Here, in the runner's task, so the machine is only ever touched by its owner.
        """
        media = self.media
        if media is None:
            return
        activity = media.take_activity()
        if activity is NO_ACTIVITY:
            return
        call = self.call
        if activity.received_at is not None:
            call.media_received(activity.received_at)
        if activity.acked:
            call.ack_received(self._clock())
        if activity.sent_unacked_at is not None:
            call.media_sent(activity.sent_unacked_at)

    # ------------------------------------------------------------ actions

    async def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendEvent):
                await self._send(action.event)
            elif isinstance(action, OpenSignalling):
                await self._open(action.uri, action.migration)
            elif isinstance(action, CloseByways):
                if _reestablishing(actions):
                    self._hold_media()  # the leg goes on: only its transport goes
                else:
                    self._stop_media()
                self._close_byways()
            elif isinstance(action, AbandonConnection):
                log.info("event=connection_abandoned call=%s reason=%r", action.uri, action.reason)
                self.client.abandon_connection(action.uri, action.reason)
            elif isinstance(action, CloseMedia):
                self._stop_media()
            elif isinstance(action, FetchDescription):
                self._spawn(self._fetch(action.uri))
            elif isinstance(action, ClaimCall):
                self._spawn(self._claim(action.uri, action.handler))
            elif isinstance(action, OpenMedia):
                await self._start_media(action)
            elif isinstance(action, ProtocolViolation):
                log.warning(
                    "event=protocol_violation call=%s message=%r", self.call.uri, action.message
                )
            else:
                self._report(action)

    async def _send(self, event: Event) -> None:
        if self._byways is None:
            self._pending.append(event)
            return
        try:
            await self._byways.send(event)
        except RiptError as exc:
            self._pending.append(event)
            self._fault(str(exc), lost=connection_gone(exc))

    async def _open(self, uri: str, migration: bool) -> None:
        self._close_byways()
        try:
            byways = await self.client.open_signalling(uri, migration=migration)
        except RiptError as exc:
            self._fault(str(exc), lost=True)
            return
        self._byways = byways
        self.call.signalling_sent(self._clock())  # here, in the task that owns the machine
        pending, self._pending = self._pending, []
        for event in pending:
            await self._send(event)
        self._reader = asyncio.get_running_loop().create_task(self._read(byways))

    async def _read(self, byways: SignallingByways) -> None:
        try:
            prober = asyncio.get_running_loop().create_task(self._probe(self.call.uri))
            try:
                await byways.wait_up()
            finally:
                prober.cancel()
            self._inputs.put_nowait(self.call.signalling_up)
            first = True
            async for event in byways.events():
                # A new reverse byway replays what the provider sent lately: a phone
                # that had it already (numbered at or below the last it had) skips it.
                if self._replays.take(event, first=first):
                    self._inputs.put_nowait(functools.partial(self._receive, event))
                else:
                    log.debug("event=event_seen_before call=%s seq=%s", self.call.uri, event.seq)
                first = False
        except RiptError as exc:
            if byways is not self._byways:
                return  # an old pair we closed ourselves
            if exc.status == 404:
                self._inputs.put_nowait(self.call.call_gone)
            else:
                self._fault(str(exc), lost=connection_gone(exc))

    async def _probe(self, uri: str) -> None:
        """PING the connection every :data:`PROBE_EVERY_S` while the byways are not up.

        After a fade, the PUT that reopens the byways waits for QUIC's next probe,
        which has backed off to seconds by then (1.2-4.8 s after 4 s without an
        answer): past the 5 s the byways get (OPEN_TIMEOUT), the connection is
        abandoned and the media sent at the fade's start ages past the 8 s it is
        kept for.  A steady PING finds the path within one interval of its return.
        """
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            self.client.probe_connection(uri)

    def _receive(self, event: Event, now: float) -> list[Action]:
        if self._on_event is not None and not isinstance(event, Pong):
            self._on_event(event)  # (not the keepalive's pongs: one every 5 s)
        return self.call.receive_event(event, now)

    def _fault(self, reason: str, *, lost: bool = False) -> None:
        log.info("event=byway_fault call=%s reason=%r", self.call.uri, reason)
        if lost:
            self._inputs.put_nowait(lambda now: self.call.connection_lost(now, reason))
        else:
            self._inputs.put_nowait(lambda now: self.call.byway_fault(now, reason))

    def _close_byways(self) -> None:
        byways, self._byways = self._byways, None
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if byways is None:
            return
        # End the forward PUT gracefully so a last "end" event is delivered,
        # then drop the reverse GET.
        with contextlib.suppress(Exception):
            if not byways.forward.finished:
                byways.forward.end()
        with contextlib.suppress(Exception):
            if not byways.reverse.finished:
                byways.reverse.reset()

    async def _start_media(self, action: OpenMedia) -> None:
        media = self.media
        if (
            media is not None
            and media.key == action.media_key
            and media.directives == action.client_directives
        ):
            # The same leg again (signalling re-established): keep its streams, and give
            # a held session its new transport (its backlog follows on the first acks).
            if media.held:
                transport = await open_transport(self.client, action.uri)
                if self.media is media:
                    media.resume(transport)
                    log.info(
                        "event=media_resumed call=%s transport=%s",
                        self.call.uri,
                        media.transport,
                    )
                else:
                    transport.stop()
            return
        self._stop_media()
        if self._before_media is not None:
            await self._before_media()
        transport = await open_transport(self.client, action.uri)
        try:
            media = MediaSession(
                transport,
                media_key=action.media_key,
                client_directives=action.client_directives,
                capture_device=self.audio.capture,
                playback_device=self.audio.playback,
                clock=self._clock,
                previous=self._last_media,
                settings=codec_settings(self.audio),
                on_dtmf=self._on_dtmf,
            )
            media.start()
        except (MediaError, AudioError) as exc:
            transport.stop()
            if not self._media_failed:
                self._media_failed = True
                log.warning("event=media_failed call=%s reason=%r", self.call.uri, str(exc))
            return
        self.media = self._last_media = media
        if self._on_media is not None:
            self._on_media(media)
        log.info(
            "event=media_started call=%s codec=%s ptime=%d transport=%s",
            self.call.uri,
            media.codec,
            media.plan.ptime,
            media.transport,
        )

    def _hold_media(self) -> None:
        if self.media is not None:
            self.media.hold()

    def _stop_media(self) -> None:
        media, self.media = self.media, None
        if media is not None:
            media.stop()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, uri: str) -> None:
        try:
            description = await self.client.get_call(uri)
        except RiptError as exc:
            log.info("event=fetch_failed call=%s reason=%r", uri, str(exc))
            return
        if description is None:
            self._inputs.put_nowait(self.call.call_gone)
        else:
            self._inputs.put_nowait(lambda now: self.call.description_received(description, now))

    async def _claim(self, uri: str, handler: str) -> None:
        try:
            description = await self.client.claim_call(uri, handler)
        except RiptError as exc:
            reason = str(exc)
            self._inputs.put_nowait(lambda now: self.call.claim_failed(now, reason))
            return
        self._inputs.put_nowait(lambda now: self.call.claim_succeeded(description, now))


def _reestablishing(actions: list[Action]) -> bool:
    """The byways close to be opened again (a migration now, or after a back-off)."""
    return any(
        (isinstance(a, OpenSignalling) and a.migration)
        or (isinstance(a, BywaysChanged) and a.state is BywayState.WAITING)
        for a in actions
    )


def connection_gone(exc: BaseException) -> bool:
    """Whether a byway failed because its QUIC connection is gone (closed by the provider,
    timed out), not just the byway: then the reconnection waits ``retry-backoff`` (draft
    TG parameters), where a byway reset on a live connection is re-opened at once.  A
    GOAWAY is the provider asking to move on: a new connection at once is what it wants.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionLostError):
            return not isinstance(cause, GoawayError)
        cause = cause.__cause__
    return False
