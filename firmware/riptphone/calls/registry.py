"""The calls of this line: one :class:`~riptphone.calls.runner.CallRunner` per call.

A call is placed here (:meth:`CallRegistry.place`), offered by a tap, or
found with ``GET {tg}/calls`` (:meth:`CallRegistry.follow`); a call this
phone carried before a restart is claimed again.  Each runner's call-machine
actions become the phone machine's call inputs (:mod:`riptphone.calls.actions`)
and ``call``/``ring``/``dtmf``/``signal`` events for control-socket watchers.  The
registry also applies mute and volume to the media, sends DTMF, keeps the
tones off the earpiece while a call's media has it, and runs the quality bars.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ript.protocol.call import (
    Action,
    BywaysChanged,
    Call,
    CallEnded,
    CallState,
    Ring,
    StateChanged,
)
from ript.protocol.descriptions import CallDescription
from riptphone.app.inputs import CallFailed, CallGone, CallProgress, Input
from riptphone.calls.actions import call_inputs, started_inputs
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.media import MediaSession
from riptphone.calls.quality import QualityMeter
from riptphone.calls.runner import CallRunner
from riptphone.calls.stats import call_json
from riptphone.config import AudioConfig
from riptphone.line.registration import Line, NotRegisteredError
from riptphone.net.ript_client import RiptClient, RiptError
from riptphone.tasks import Tasks

log = logging.getLogger("riptphone.calls")


class CallRegistry:
    """The calls this line has, by URI; see the module docstring.

    :attr:`runners` is keyed by each call's ``first_uri`` (the name the phone
    machine knows it by); :meth:`find` also knows a call by the URI a
    ``migrate`` moved it to.
    """

    def __init__(
        self,
        client: RiptClient,
        line: Line,
        *,
        audio: AudioConfig,
        earpiece: Earpiece,
        tasks: Tasks,
        feed: Callable[[Input], object],
        publish: Callable[[Mapping[str, Any]], None],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.line = line
        self.audio = audio
        self.earpiece = earpiece
        self._tasks = tasks
        self._feed = feed
        self._publish = publish
        self._wall = wall
        self.runners: dict[str, CallRunner] = {}
        self.quality = QualityMeter(self.runners.values, feed)
        self._mute = False
        self._volume = audio.volume

    # ------------------------------------------------------------ finding calls

    def find(self, uri: str) -> CallRunner | None:
        """The runner of a call by its first or its current URI."""
        runner = self.runners.get(uri)
        if runner is not None:
            return runner
        for runner in self.runners.values():
            if runner.call.uri == uri:
                return runner
        return None

    async def follow(self, uri: str) -> CallRunner | None:
        """Start following a call of this line (a tap, or the list after reconnecting)."""
        runner = self.find(uri)
        if runner is not None:
            return runner
        own = self.line.handler_uri
        if own is None or self.line.tg is None:
            return None
        try:
            description = await self.client.get_call(uri)
        except RiptError as exc:
            log.warning("event=call_unreadable call=%s reason=%r", uri, str(exc))
            return None
        if description is None:
            log.info("event=call_gone_before_followed call=%s", uri)
            return None
        resumed = description.handler == own and not description.state.is_final
        if resumed:
            # Ours before a restart: claim it again for a fresh media key and full chunk
            # numbering (docs/protocol.md 9.1), rather than reuse state we no longer have.
            try:
                description = await self.client.claim_call(uri, own)
            except RiptError as exc:
                log.warning("event=reclaim_failed call=%s reason=%r", uri, str(exc))
                return None
            log.info("event=call_reclaimed call=%s state=%s", uri, description.state.value)
        runner = self.find(uri)
        if runner is not None:  # followed meanwhile (a tap and the list at once)
            return runner
        return self.start(description, resumed=resumed)

    async def catch_up(self) -> None:
        """After every push (re)connection: a tap lost while away still rings."""
        tg = self.line.tg
        if tg is None:
            return
        try:
            calls = await self.client.list_calls(tg)
        except RiptError as exc:
            log.warning("event=list_calls_failed reason=%r", str(exc))
            return
        log.info("event=calls_listed count=%d", len(calls.calls))
        # follow() skips a call already followed (its tap came first, or comes later
        # and finds it here): one call, one runner, one ring.
        for description in calls.calls:
            if self.find(description.uri) is None:
                await self.follow(description.uri)

    async def place(self, e164: str) -> str | None:
        """Place a call to ``e164``; None once placed, else why not (fed as ``CallFailed``)."""
        tg, own = self.line.tg, self.line.handler_uri
        if tg is None or own is None:
            return self._place_failed("cannot dial: the phone is not registered")
        problem = self.line.check_destination(e164)
        if problem is not None:
            return self._place_failed(problem)
        try:
            passport = self.line.passport(e164, int(self._wall()))
        except NotRegisteredError as exc:
            return self._place_failed(str(exc))
        try:
            description = await self.client.place_call(
                tg, handler=own, destination=e164, passport=passport
            )
        except RiptError as exc:
            refused = exc.status in (403, 404)
            return self._place_failed(
                f"the provider refused: {exc}" if refused else f"the call failed: {exc}"
            )
        log.info("event=call_placed call=%s", description.uri)
        self.start(description)
        self._feed(CallProgress(description.uri, "calling"))
        return None

    def _place_failed(self, message: str) -> str:
        log.info("event=dial_failed error=%r", message)
        self._feed(CallFailed(message))
        return message

    # ------------------------------------------------------------ running calls

    def start(self, description: CallDescription, *, resumed: bool = False) -> CallRunner:
        """Run the call ``description`` (followed, placed, or ``resumed`` after a restart)."""
        tg, own = self.line.tg, self.line.handler_uri
        assert tg is not None and own is not None
        call = Call(
            description,
            own_handler=own,
            media_timeout=tg.media_timeout_ms / 1000,
            retry_backoff=tg.retry_backoff_ms / 1000,
        )
        runner = CallRunner(
            self.client,
            call,
            lambda action: self.on_call_action(runner, action),
            audio=self.audio,
            before_media=self.earpiece.free,
            on_media=self._media_started,
            on_dtmf=self._dtmf_received,
            on_event=lambda event: self._publish(
                {"event": "signal", "call": call.first_uri, "type": event.type, "seq": event.seq}
            ),
        )
        self.runners[call.first_uri] = runner
        self._publish({"event": "call", "call": call_json(runner)})
        self._tasks.spawn(self._run(runner))
        for value in started_inputs(call, resumed=resumed):
            self._feed(value)
        return runner

    async def _run(self, runner: CallRunner) -> None:
        try:
            await runner.run()
        except Exception:
            log.exception("event=call_failed call=%s", runner.call.uri)
        finally:
            self.runners.pop(runner.call.first_uri, None)
            self.client.forget_call(runner.call.first_uri, runner.call.uri)
            if runner.call.ended is None:
                self._feed(CallGone(runner.call.first_uri, "call ended"))

    def on_call_action(self, runner: CallRunner, action: Action) -> None:
        """One action of a runner's call machine: log it, tell watchers, feed the machine."""
        call = runner.call
        if isinstance(action, StateChanged):
            log.info("event=call_state call=%s state=%s", call.uri, action.new.value)
            self._publish({"event": "call", "call": call_json(runner)})
        elif isinstance(action, Ring):
            self._publish({"event": "ring", "from": call.peer})
        elif isinstance(action, CallEnded):
            log.info("event=call_ended call=%s reason=%r", call.uri, action.reason)
        elif isinstance(action, BywaysChanged):
            log.info(
                "event=byways call=%s state=%s reason=%r",
                call.uri,
                action.state.value,
                action.reason,
            )
        for value in call_inputs(call, action, runner.codec):
            self._feed(value)

    def get(self, uri: str | None) -> CallRunner | None:
        return None if uri is None else self.find(uri)

    def answer(self, uri: str) -> None:
        self._do(uri, CallRunner.answer)

    def pull(self, uri: str) -> None:
        self._do(uri, CallRunner.pull)

    def decline(self, uri: str) -> None:
        self._do(uri, CallRunner.decline)

    def hangup(self, uri: str) -> None:
        self._do(uri, CallRunner.hangup)

    def _do(self, uri: str, method: Callable[[CallRunner], None]) -> None:
        runner = self.find(uri)
        if runner is None:
            log.warning("event=no_such_call call=%s", uri)
            return
        method(runner)

    def hang_up_here(self) -> None:
        """At the end: hang up every call this phone carries."""
        for runner in list(self.runners.values()):
            if runner.call.handled_here:
                runner.hangup()

    # ------------------------------------------------------------ media

    def media_playing(self) -> bool:
        """Whether some call's media has the earpiece."""
        return any(r.media is not None for r in self.runners.values())

    async def tone(self, kind: str | None) -> None:
        """A local tone, unless a call's audio has the earpiece; None stops it."""
        if kind is not None and self.media_playing():
            return
        await self.earpiece.tone(kind)

    def set_mute(self, muted: bool) -> None:
        self._mute = muted
        self._apply_audio_settings()

    def set_volume(self, percent: int) -> None:
        self._volume = percent
        self._apply_audio_settings()

    def _apply_audio_settings(self) -> None:
        for runner in self.runners.values():
            if runner.media is not None:
                runner.media.set_muted(self._mute)
                runner.media.set_volume(self._volume)

    def _media_started(self, media: MediaSession) -> None:
        media.set_muted(self._mute)
        media.set_volume(self._volume)
        for runner in list(self.runners.values()):
            if runner.media is media and runner.call.state is CallState.ACTIVE:
                self._feed(CallProgress(runner.call.first_uri, "in-call", codec=media.codec))
        self.quality.start()

    def send_digit(self, key: str) -> None:
        """DTMF on the first call with media (there is one at most)."""
        for runner in self.runners.values():
            media = runner.media
            if media is not None:
                media.send_dtmf(key)
                self._publish({"event": "dtmf", "digit": key, "direction": "sent"})
                return

    def _dtmf_received(self, digit: str) -> None:
        """A key pressed at the far end (an RFC 4733 telephone-event): told to watchers."""
        log.info("event=dtmf_received")  # not the digit: keys are often PINs or card numbers
        self._publish({"event": "dtmf", "digit": digit, "direction": "received"})
