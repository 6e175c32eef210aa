"""The phone: the state machine of :mod:`riptphone.app` joined to the provider, calls and handset.

:class:`Phone` owns everything the daemon does between the handset and the
provider, on one asyncio loop:

* the connection: :meth:`Phone.connect` discovers the TG, keeps the one
  handler (profile section 4) and enrols a certificate, retrying with backoff
  while the provider cannot be reached (the phone shows ``offline`` and why);
  then it starts the push channel (profile section 9);
* the :class:`~riptphone.app.machine.PhoneMachine`, fed by the handset
  (:mod:`riptphone.handset`), the control socket (the same inputs, profile
  section 11), the calls and the push channel; this module carries out the
  actions it returns (place, answer, pull... a call; tones; the ringer; the
  screen; the call log);
* the calls: one :class:`~riptphone.calls.runner.CallRunner` per call this
  line has (placed here, offered by a tap, or found with ``GET {tg}/calls``
  after the push channel comes up), whose call-machine actions are turned
  into the phone machine's call inputs.

``dial`` is checked locally before anything is sent (the dial plan, then the
TG's outbound destinations), so a number the line may not call never reaches
the provider.  Every state change is published on the control socket as a
``state`` line, a screen change as a ``screen`` line, every call change as a
``call`` line and every refusal as an ``error`` line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from ript.protocol.advertisement import format_advertisement, phone_advertisement
from ript.protocol.call import (
    Action,
    BywaysChanged,
    BywayState,
    Call,
    CallEnded,
    CallState,
    PeerConnectivity,
    Ring,
    StateChanged,
)
from ript.protocol.csr import build_csr, key_from_pem, key_to_pem, make_key
from ript.protocol.descriptions import (
    CallDescription,
    CallDirection,
    DescriptionError,
    PushBinding,
    TrunkGroup,
)
from ript.protocol.numbers import NumberError, is_e164
from ript.protocol.passport import create_passport
from ript.protocol.taps import Tap, TapType
from riptphone.app import calllog
from riptphone.app import outputs as out
from riptphone.app.inputs import (
    BUTTON_NAMES,
    KEYS,
    Button,
    CallFailed,
    CallGone,
    CallOffered,
    CallProgress,
    CallRemote,
    Dial,
    HookOff,
    HookOn,
    Input,
    Key,
    Offline,
    Online,
    PushStatus,
    Reconnecting,
    TapAnswer,
    TapDecline,
)
from riptphone.app.machine import PhoneMachine
from riptphone.calls.media import MediaSession, MediaStats
from riptphone.calls.runner import CallRunner
from riptphone.config import Config
from riptphone.control.server import ControlRefused
from riptphone.handset import Handset
from riptphone.hw.tone_player import TonePlayer
from riptphone.net.push import PushChannel
from riptphone.net.ript_client import RiptClient, RiptError
from riptphone.store import Identity, Registration, StateStore, StoreError
from riptphone.ui.model import Idle, Screen
from riptphone.ui.text import lines

log = logging.getLogger(__name__)

FIRST_RETRY = 1.0
MAX_RETRY = 60.0
CALL_LOG = "calllog"
QUALITY_EVERY_S = 2.0


class Phone:
    """One phone on one provider line; see the module docstring."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        client: RiptClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.client = client
        self._clock = clock
        self._wall = wall
        self.publish: Callable[[Mapping[str, Any]], None] = lambda _event: None
        entries = self._load_call_log()
        self.machine = PhoneMachine(
            config.dialplan.plan(),
            config.dialplan.interdigit_timeout_ms / 1000,
            log=entries,
            volume=config.audio.volume,
        )
        self.number = config.phone.number or None
        self.tg: TrunkGroup | None = None
        self.registration: Registration | None = None
        self.handset: Handset | None = None
        self.push: PushChannel | None = None
        self.push_state: Literal["up", "down", "none"] = "none"
        self.tones = TonePlayer(config.audio.playback)
        self.ringer = TonePlayer(config.audio.ringer or config.audio.playback)
        self.runners: dict[str, CallRunner] = {}
        self._key: ec.EllipticCurvePrivateKey | None = None
        self._cert_uri: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._clock_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._audio = asyncio.Lock()  # tones and call media take the earpiece in turn
        self._refusals: list[str] | None = None  # collects refusals for a control request
        self._placing: asyncio.Future[None] | None = None
        self._mute = False
        self._volume = config.audio.volume
        self.offline_reason: str | None = "not connected yet"
        self._quality_timer: asyncio.TimerHandle | None = None
        self._quality_seen: dict[str, _QualityWindow] = {}

    # ------------------------------------------------------------ the handset

    def attach_handset(self, handset: Handset) -> None:
        """Show screens on ``handset`` from now on (its inputs go to :meth:`feed`)."""
        self.handset = handset
        self._show(self.machine.screen)

    # ------------------------------------------------------------ going online

    async def connect(self) -> None:
        """Come online, retrying with doubling backoff; returns once the phone is registered."""
        delay = FIRST_RETRY
        self.feed(Offline("connecting to the provider", registering=True))
        while True:
            try:
                await self._connect_once()
                break
            except (RiptError, NumberError, ValueError) as exc:
                reason = self.offline_reason = str(exc)
                log.warning("event=offline reason=%r retry_in=%g", reason, delay)
                self.feed(Offline(reason, retry_in_s=round(delay)))
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
        self._start_push()
        if self.push is None:
            # No taps will come: look once for calls of this line (ours before a restart).
            self._spawn(self._catch_up())

    async def _connect_once(self) -> None:
        tg = await self.client.discover(self.config.provider.trunk_group or None)
        advertisement = format_advertisement(phone_advertisement())
        registration, done = await self.client.ensure_registration(
            self.store, tg, name=self.config.phone.name, advertisement=advertisement
        )
        log.info("event=registration done=%s handler=%s", done, registration.handler_uri)
        number = self.config.phone.number or _own_number(tg)
        await self._ensure_identity(tg, number)
        self.tg, self.registration, self.number = tg, registration, number
        self.machine.check_destination = functools.partial(_outside, tg)
        self.offline_reason = None
        self.feed(Online(number, self.config.phone.name))

    async def _ensure_identity(self, tg: TrunkGroup, number: str) -> None:
        loaded = await asyncio.to_thread(self.store.load_identity)
        identity = loaded.data
        if identity is not None and identity.cert_uri and identity.cert_chain_pem:
            self._key = key_from_pem(identity.key_pem)
            self._cert_uri = identity.cert_uri
            return
        key = key_from_pem(identity.key_pem) if identity is not None else make_key()
        chain, cert_uri = await self.client.enroll(tg, build_csr(key, number))
        identity = Identity(key_pem=key_to_pem(key), cert_chain_pem=chain, cert_uri=cert_uri)
        await asyncio.to_thread(self.store.save_identity, identity)
        log.info("event=enrolled cert=%s", cert_uri)
        self._key, self._cert_uri = key, cert_uri

    # ------------------------------------------------------------ push channel

    def _start_push(self) -> None:
        registration, tg = self.registration, self.tg
        if registration is None or tg is None or not registration.push:
            log.info("event=push state=none reason='the provider gave no push binding'")
            return
        try:
            binding = _binding(registration.push)
            channel = PushChannel(
                binding,
                registration.handler_id,
                tg.uri,
                self._on_tap,
                on_connected=self._catch_up,
                on_status=self._on_push_status,
                ca_file=self.config.provider.ca_file,
            )
        except (DescriptionError, ValueError, KeyError, TypeError) as exc:
            log.error("event=push_unusable reason=%r", str(exc))
            return
        self.push = channel
        self._on_push_status(channel.status)
        channel.start()

    def _on_push_status(self, status: object) -> None:
        value = str(status)
        state: Literal["up", "down", "none"] = (
            "up" if value == "up" else "down" if value == "down" else "none"
        )
        if state != self.push_state:
            self.push_state = state
            log.info("event=push state=%s", state)
            self.feed(PushStatus(state))

    async def _catch_up(self) -> None:
        """After every push (re)connection: a tap lost while away still rings."""
        tg = self.tg
        if tg is None:
            return
        try:
            calls = await self.client.list_calls(tg)
        except RiptError as exc:
            log.warning("event=list_calls_failed reason=%r", str(exc))
            return
        for description in calls.calls:
            if description.uri not in self.runners:
                await self._follow(description.uri)

    async def _on_tap(self, tap: Tap) -> None:
        log.info("event=tap type=%s call=%s", tap.type.value, tap.call)
        if tap.type is TapType.CALL:
            await self._follow(tap.call)
        elif tap.type is TapType.TAKE:
            runner = self.runners.get(tap.call) or await self._follow(tap.call)
            if runner is not None:
                runner.pull()
        elif tap.type is TapType.ANSWER:
            await self._follow(tap.call)
            self.feed(TapAnswer(tap.call))
        elif tap.type is TapType.DECLINE:
            await self._follow(tap.call)
            self.feed(TapDecline(tap.call))

    async def _follow(self, uri: str) -> CallRunner | None:
        """Start following a call of this line (a tap, or the list after reconnecting)."""
        runner = self.runners.get(uri)
        if runner is not None:
            return runner
        registration, tg = self.registration, self.tg
        if registration is None or tg is None or registration.handler_uri is None:
            return None
        try:
            description = await self.client.get_call(uri)
        except RiptError as exc:
            log.warning("event=call_unreadable call=%s reason=%r", uri, str(exc))
            return None
        if description is None:
            log.info("event=call_gone_before_followed call=%s", uri)
            return None
        own = registration.handler_uri
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
        if uri in self.runners:  # followed meanwhile (a tap and the list at once)
            return self.runners[uri]
        return self._start_call(description, resumed=resumed)

    # ------------------------------------------------------------ the machine

    def feed(self, value: Input) -> list[out.Action]:
        """Give the machine one input and carry out what it says."""
        actions = self.machine.handle(value, self._clock(), self._wall())
        self._carry_out(actions)
        self._arm_timer()
        return actions

    def _on_timer(self) -> None:
        self._timer = None
        self._carry_out(self.machine.handle_timer(self._clock()))
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.machine.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, deadline - self._clock()), self._on_timer)

    def _carry_out(self, actions: list[out.Action]) -> None:
        state_changed = any(isinstance(a, out.PhoneState) for a in actions)
        # Refusals last: a watcher sees where the phone went, then why.
        actions = sorted(actions, key=lambda a: isinstance(a, out.Refuse))
        for action in actions:
            if isinstance(action, out.PlaceCall):
                self._placing = self._spawn(self._place(action.e164))
            elif isinstance(action, out.Answer | out.Take):
                self._runner_do(action.uri, CallRunner.answer)
            elif isinstance(action, out.Pull):
                self._runner_do(action.uri, CallRunner.pull)
            elif isinstance(action, out.Decline):
                self._runner_do(action.uri, CallRunner.decline)
            elif isinstance(action, out.Hangup):
                self._runner_do(action.uri, CallRunner.hangup)
            elif isinstance(action, out.Tone):
                self._spawn(self._tone(None if action.kind == "off" else action.kind))
            elif isinstance(action, out.Ringer):
                if self.handset is not None:  # now, in order with the in-call LED below
                    self.handset.ring(action.on)
                self._spawn(self._ring(action.on))
            elif isinstance(action, out.SetMute):
                self._mute = action.muted
                self._apply_audio_settings()
            elif isinstance(action, out.SetVolume):
                self._volume = action.percent
                self._apply_audio_settings()
            elif isinstance(action, out.SendDigit):
                self._send_digit(action.key)
            elif isinstance(action, out.Show):
                self._show(action.screen)
                if not state_changed:
                    self.publish({"event": "screen", "screen": lines(self._clocked(action.screen))})
            elif isinstance(action, out.PhoneState):
                log.info("event=state state=%s", action.name)
                if self.handset is not None:
                    self.handset.in_call(action.name == "in-call")
                self.publish({"event": "state", **self.status()})
            elif isinstance(action, out.SaveCallLog):
                self._spawn(self._save_call_log(action.entries))
            elif isinstance(action, out.Refuse):
                log.info("event=refused error=%r", action.message)
                self.publish({"event": "error", "error": action.message})
                if self._refusals is not None:
                    self._refusals.append(action.message)

    def _runner_do(self, uri: str, method: Callable[[CallRunner], None]) -> None:
        runner = self.runners.get(uri)
        if runner is None:
            log.warning("event=no_such_call call=%s", uri)
            return
        method(runner)

    # ------------------------------------------------------------ placing a call

    async def _place(self, e164: str) -> None:
        tg, registration = self.tg, self.registration
        if tg is None or registration is None or registration.handler_uri is None:
            self._place_failed("cannot dial: the phone is not registered")
            return
        assert self._key is not None and self._cert_uri is not None and self.number is not None
        if not tg.outbound.destinations.allows(e164):
            self._place_failed(
                f"{e164} is outside the numbers this line may call ({tg.outbound.destinations})"
            )
            return
        passport = create_passport(self._key, self._cert_uri, self.number, e164, int(time.time()))
        try:
            description = await self.client.place_call(
                tg, handler=registration.handler_uri, destination=e164, passport=passport
            )
        except RiptError as exc:
            refused = exc.status in (403, 404)
            self._place_failed(
                f"the provider refused: {exc}" if refused else f"the call failed: {exc}"
            )
            return
        log.info("event=call_placed call=%s", description.uri)
        self._start_call(description)
        self.feed(CallProgress(description.uri, "calling"))

    def _place_failed(self, message: str) -> None:
        log.info("event=dial_failed error=%r", message)
        self.feed(CallFailed(message))
        raise ControlRefused(message)

    # ------------------------------------------------------------ calls

    def _start_call(self, description: CallDescription, *, resumed: bool = False) -> CallRunner:
        registration, tg = self.registration, self.tg
        assert registration is not None and registration.handler_uri is not None
        assert tg is not None
        call = Call(
            description,
            own_handler=registration.handler_uri,
            media_timeout=tg.media_timeout_ms / 1000,
            retry_backoff=tg.retry_backoff_ms / 1000,
        )
        runner = CallRunner(
            self.client,
            call,
            lambda action: self._on_call_action(runner, action),
            audio=self.config.audio,
            before_media=self._free_earpiece,
            on_media=self._media_started,
        )
        self.runners[call.uri] = runner
        self.publish({"event": "call", "call": _call_json(runner)})
        self._spawn(self._run_call(runner))
        if call.state is CallState.REMOTE:
            self.feed(_remote(call))
        elif resumed and call.state in _PHASES:
            # A call this phone carried before it restarted: show it, then take it up again.
            self.feed(_remote(call))
            self.feed(CallProgress(call.uri, _PHASES[call.state]))
        return runner

    async def _run_call(self, runner: CallRunner) -> None:
        try:
            await runner.run()
        except Exception:
            log.exception("event=call_failed call=%s", runner.call.uri)
        finally:
            self.runners.pop(runner.call.uri, None)
            if runner.call.ended is None:
                self.feed(CallGone(runner.call.uri, "call ended"))

    def _on_call_action(self, runner: CallRunner, action: Action) -> None:
        call = runner.call
        if isinstance(action, StateChanged):
            log.info("event=call_state call=%s state=%s", call.uri, action.new.value)
            self.publish({"event": "call", "call": _call_json(runner)})
            value = self._call_input(runner, action.new)
            if value is not None:
                self.feed(value)
        elif isinstance(action, Ring):
            self.publish({"event": "ring", "from": call.peer})
            self.feed(
                CallOffered(call.uri, call.peer, outbound=call.direction is CallDirection.OUTBOUND)
            )
        elif isinstance(action, BywaysChanged):
            log.info(
                "event=byways call=%s state=%s reason=%r",
                call.uri,
                action.state.value,
                action.reason,
            )
            if action.state is BywayState.UP:
                self.feed(Reconnecting(call.uri, False))
            elif action.reason is not None:  # re-establishing after a fault
                self.feed(Reconnecting(call.uri, True))
        elif isinstance(action, PeerConnectivity):
            self.feed(Reconnecting(call.uri, action.reconnecting))
        elif isinstance(action, CallEnded):
            log.info("event=call_ended call=%s reason=%r", call.uri, action.reason)
            self.feed(CallGone(call.uri, action.reason))

    def _call_input(self, runner: CallRunner, state: CallState) -> Input | None:
        call = runner.call
        if state is CallState.PROCEEDING:
            return CallProgress(call.uri, "calling")
        if state is CallState.ALERTING:
            return CallProgress(call.uri, "alerting")
        if state is CallState.ACTIVE:
            return CallProgress(call.uri, "in-call", codec=runner.codec)
        if state is CallState.REMOTE:
            return _remote(call)
        if state is CallState.RINGING:
            outbound = call.direction is CallDirection.OUTBOUND
            return CallOffered(call.uri, call.peer, outbound=outbound)
        return None  # answering, pulling: a moment; ended: CallEnded follows

    # ------------------------------------------------------------ audio

    async def _free_earpiece(self) -> None:
        """Called before a call's media starts: no tone may hold the playback device."""
        async with self._audio:
            await asyncio.to_thread(self.tones.play, None)
            await asyncio.to_thread(self.ringer.play, None)

    async def _tone(self, kind: str | None) -> None:
        if kind is not None and any(r.media is not None for r in self.runners.values()):
            return  # the call's audio has the earpiece
        async with self._audio:
            await asyncio.to_thread(self.tones.play, kind)

    async def _ring(self, on: bool) -> None:
        async with self._audio:
            await asyncio.to_thread(self.ringer.play, "ring" if on else None)

    def _apply_audio_settings(self) -> None:
        for runner in self.runners.values():
            if runner.media is not None:
                runner.media.set_muted(self._mute)
                runner.media.set_volume(self._volume)

    def _media_started(self, media: MediaSession) -> None:
        media.set_muted(self._mute)
        media.set_volume(self._volume)
        for runner in self.runners.values():
            if runner.media is media and runner.call.state is CallState.ACTIVE:
                self.feed(CallProgress(runner.call.uri, "in-call", codec=media.codec))
        if self._quality_timer is None:
            self._quality_timer = asyncio.get_running_loop().call_later(
                QUALITY_EVERY_S, self._measure_quality
            )

    def _measure_quality(self) -> None:
        """Every few seconds: the call's quality bars from what the chunks and acks show."""
        self._quality_timer = None
        measuring = False
        for runner in self.runners.values():
            media = runner.media
            if media is None or runner.call.state is not CallState.ACTIVE:
                continue
            measuring = True
            stats = media.stats()
            window = _QualityWindow.of(stats)
            before = self._quality_seen.get(runner.call.uri)
            self._quality_seen[runner.call.uri] = window
            if before is None:
                continue
            quality = window.quality_since(before)
            if quality is not None:
                self.feed(CallProgress(runner.call.uri, "in-call", media.codec, quality))
        if measuring:
            self._quality_timer = asyncio.get_running_loop().call_later(
                QUALITY_EVERY_S, self._measure_quality
            )
        else:
            self._quality_seen.clear()

    def _send_digit(self, key: str) -> None:
        for runner in self.runners.values():
            media = runner.media
            if media is not None:
                media.send_dtmf(key)
                self.publish({"event": "dtmf", "digit": key})
                return

    # ------------------------------------------------------------ screen and log

    def _clocked(self, screen: Screen) -> Screen:
        if isinstance(screen, Idle):
            return dataclasses.replace(screen, clock=time.strftime("%H:%M"))
        return screen

    def _show(self, screen: Screen) -> None:
        if self.handset is not None:
            self.handset.show(self._clocked(screen))
        if isinstance(screen, Idle) and self._clock_timer is None:
            # The idle screen's clock moves on the minute.
            loop = asyncio.get_running_loop()
            self._clock_timer = loop.call_later(60 - time.time() % 60, self._tick_clock)

    def _tick_clock(self) -> None:
        self._clock_timer = None
        self._show(self.machine.screen)

    def _load_call_log(self) -> tuple[calllog.CallLogEntry, ...]:
        loaded = self.store.load(CALL_LOG)
        if loaded.problem:
            log.warning("event=call_log_problem problem=%r", loaded.problem)
        if loaded.data is None:
            return ()
        try:
            entries, problems = calllog.from_json(json.dumps(loaded.data))
        except calllog.CallLogError as exc:
            log.warning("event=call_log_unreadable reason=%r", str(exc))
            return ()
        for problem in problems:
            log.warning("event=call_log_entry_dropped reason=%r", problem)
        return entries

    async def _save_call_log(self, entries: tuple[calllog.CallLogEntry, ...]) -> None:
        data = json.loads(calllog.to_json(entries))
        try:
            await asyncio.to_thread(self.store.save, CALL_LOG, data, secret=False)
        except (OSError, StoreError) as exc:
            log.error("event=call_log_not_saved reason=%r", str(exc))

    # ------------------------------------------------------------ ControlHandler

    def status(self) -> dict[str, Any]:
        runner = self._current()
        return {
            "state": self.machine.state,
            "registered": self.registration is not None and self.machine.state != "offline",
            "push": self.push_state,
            "number": self.number,
            "handler": self.registration.handler_uri if self.registration else None,
            "call": None if runner is None else _call_json(runner),
            "screen": lines(self._clocked(self.machine.screen)),
            "reason": self.offline_reason,
        }

    def _current(self) -> CallRunner | None:
        uri = self.machine.call_uri
        if uri is not None and uri in self.runners:
            return self.runners[uri]
        return None

    def _request(self, value: Input) -> list[out.Action]:
        """Feed a control-socket request; a refusal becomes ControlRefused."""
        self._refusals = []
        try:
            actions = self.feed(value)
        finally:
            refusals, self._refusals = self._refusals, None
        if refusals:
            raise ControlRefused(refusals[0])
        return actions

    def hook(self, state: Literal["off", "on"]) -> None:
        self._request(HookOff() if state == "off" else HookOn())

    async def key(self, key: str) -> None:
        if key in KEYS:
            value: Input = Key(key)
        elif key in BUTTON_NAMES:
            value = Button(key)
        else:
            raise ControlRefused(f"the phone has no button {key!r}")
        await self._settle(self._request(value))

    async def dial(self, number: str) -> None:
        await self._settle(self._request(Dial(number)))

    def pull(self) -> None:
        self._request(Button("pull"))

    async def _settle(self, actions: list[out.Action]) -> None:
        """Wait for a call placed by this request: its refusal is the request's answer."""
        placing = self._placing
        if placing is not None and any(isinstance(a, out.PlaceCall) for a in actions):
            await placing

    # ------------------------------------------------------------ the end

    async def close(self) -> None:
        """Hang up calls handled here, stop the push channel, the tones and the timers."""
        for runner in list(self.runners.values()):
            if runner.call.handled_here:
                runner.hangup()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2.0)
            if pending:
                log.warning("event=call_not_closed")
        if self.push is not None:
            await self.push.close()
        for timer in (self._timer, self._clock_timer, self._quality_timer):
            if timer is not None:
                timer.cancel()
        await asyncio.to_thread(self.tones.close)
        await asyncio.to_thread(self.ringer.close)

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, ControlRefused):
            log.error("event=task_failed reason=%r", str(exc), exc_info=exc)


def _binding(push: Mapping[str, Any]) -> PushBinding:
    return PushBinding(
        broker=push["broker"],
        topic=push["topic"],
        username=push.get("username"),
        password=push.get("password"),
    )


# Loss above each bound costs one bar (0.5 %, 2 %, 5 %, 10 %).
_LOSS_BARS = (0.005, 0.02, 0.05, 0.10)


@dataclass(frozen=True, slots=True)
class _QualityWindow:
    """The media counters that make the quality bars, read at one moment."""

    received: int
    lost_in: int
    sent: int
    lost_out: int
    rtt_ms: float | None

    @classmethod
    def of(cls, stats: MediaStats) -> _QualityWindow:
        return cls(
            stats.chunks_received,
            stats.chunks_lost,
            stats.chunks_sent,
            stats.chunks_unacked,
            stats.rtt_ms,
        )

    def quality_since(self, before: _QualityWindow) -> int | None:
        """0 (bad) to 4 (good) over the window: the worse loss of the two ways, and delay.

        Loss received is counted by the receiver; loss sent is what the far end
        never acknowledged.  None when nothing flowed in the window.
        """
        got, lost_in = self.received - before.received, self.lost_in - before.lost_in
        sent, lost_out = self.sent - before.sent, self.lost_out - before.lost_out
        if got + lost_in <= 0 and sent <= 0:
            return None
        loss = max(
            lost_in / (got + lost_in) if got + lost_in > 0 else 1.0,
            lost_out / sent if sent > 0 else 0.0,
        )
        bars = 4 - sum(loss > bound for bound in _LOSS_BARS)
        if self.rtt_ms is not None and self.rtt_ms > 400:  # a conversation stumbles past ~400 ms
            bars = min(bars, 2)
        return bars


_PHASES: dict[CallState, Literal["calling", "alerting", "in-call"]] = {
    CallState.PROCEEDING: "calling",
    CallState.ALERTING: "alerting",
    CallState.ACTIVE: "in-call",
}


def _remote(call: Call) -> CallRemote:
    return CallRemote(call.uri, call.peer, outbound=call.direction is CallDirection.OUTBOUND)


def _outside(tg: TrunkGroup, e164: str) -> str | None:
    if tg.outbound.destinations.allows(e164):
        return None
    return f"{e164} is outside the numbers this line may call ({tg.outbound.destinations})"


def _own_number(tg: TrunkGroup) -> str:
    """The first whole number among the TG's inbound destinations."""
    if tg.inbound is not None:
        for pattern in tg.inbound.destinations.patterns:
            if pattern.exact and is_e164(pattern.prefix):
                return pattern.prefix
    raise ValueError("the phone has no number: set [phone] number, the TG lists no inbound number")


def _call_json(runner: CallRunner) -> dict[str, Any]:
    """The ``call`` object of profile section 11; codec and transport stay null until media."""
    call = runner.call
    media = runner.media_info()
    return {
        "uri": call.uri,
        "direction": call.direction.value,
        "peer": call.peer,
        "state": call.status.value,
        "codec": None if media is None else media.codec,
        "transport": None if media is None else media.transport,
        "stats": {} if media is None else media.stats.to_json(),
    }
