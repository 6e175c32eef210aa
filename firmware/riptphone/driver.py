"""The driver of the phone machine: it feeds :class:`~riptphone.app.machine.PhoneMachine`
and carries out what the machine says.

Every input (handset, control socket, line, push, calls) goes through
:meth:`PhoneDriver.handle`, which also arms the machine's one timer.  The
actions become I/O here: calls placed, answered, pulled, declined or hung up
through the :class:`~riptphone.calls.registry.CallRegistry`; tones and the
ringer on the earpiece; the screen; the call log saved; and ``state``,
``screen`` and ``error`` events for control-socket watchers.  What a request
caused comes back as an :class:`FeedResult`, so the control socket answers from
it (:mod:`riptphone.control.handler`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from riptphone.app import outputs as out
from riptphone.app.inputs import Input
from riptphone.app.machine import PhoneMachine
from riptphone.calllog_store import save_call_log
from riptphone.calls.registry import CallRegistry
from riptphone.memtrim import release_freed_memory
from riptphone.screen import ScreenOut
from riptphone.store import StateStore
from riptphone.tasks import Tasks
from riptphone.ui.text import lines

log = logging.getLogger("riptphone.driver")


class HandsetLights(Protocol):
    """The handset's outputs besides its screen (:class:`riptphone.handset.Handset`)."""

    def ring(self, on: bool) -> None: ...

    def in_call(self, on: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one input caused: the machine's actions, and the call it started placing."""

    actions: list[out.Output]
    placing: asyncio.Task[str | None] | None = None
    """Ends with None once the call is placed, or the reason it could not be."""

    @property
    def refusal(self) -> str | None:
        """The first refusal among the actions, or None."""
        return next((a.message for a in self.actions if isinstance(a, out.Refuse)), None)


IDLE_TRIM_S = 0.5
"""Seconds the phone stays idle before the C heap's free pages go back
(:mod:`riptphone.memtrim`): by then the call's and the tones' audio have closed."""


class PhoneDriver:
    """Feeds one :class:`PhoneMachine` and carries out its actions; see the module docstring."""

    def __init__(
        self,
        machine: PhoneMachine,
        registry: CallRegistry,
        *,
        screen: ScreenOut,
        handset: HandsetLights,
        status: Callable[[], Mapping[str, Any]],
        store: StateStore,
        tasks: Tasks,
        publish: Callable[[Mapping[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_reset: Callable[[], object] = lambda: None,
        trim: Callable[[], object] = release_freed_memory,
    ) -> None:
        self.machine = machine
        self._trim = trim
        self._trim_timer: asyncio.TimerHandle | None = None
        self._on_reset = on_reset
        self.registry = registry
        self.screen = screen
        self.handset = handset
        self._status = status
        self._store = store
        self._tasks = tasks
        self._publish = publish
        self._clock = clock
        self._wall = wall
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Put the machine's first screen up."""
        self.screen.show(self.machine.screen)

    def feed(self, value: Input) -> list[out.Output]:
        """Give the machine one input and carry out what it says."""
        return self.handle(value).actions

    def handle(self, value: Input) -> FeedResult:
        """:meth:`feed`, telling what the input caused."""
        actions = self.machine.handle(value, self._clock(), self._wall())
        placing = self._carry_out(actions)
        self._arm_timer()
        return FeedResult(actions, placing)

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

    def _carry_out(self, actions: list[out.Output]) -> asyncio.Task[str | None] | None:
        """Do ``actions``; the task placing a call, if one of them places one."""
        placing = None
        state_changed = any(isinstance(a, out.PhoneState) for a in actions)
        # Refusals last: a watcher sees where the phone went, then why.
        for action in sorted(actions, key=lambda a: isinstance(a, out.Refuse)):
            if isinstance(action, out.PlaceCall):
                placing = self._tasks.spawn(self.registry.place(action.e164))
            elif isinstance(action, out.Show):
                self.screen.show(action.screen)
                if not state_changed:
                    screen = lines(self.screen.clocked(action.screen))
                    self._publish({"event": "screen", "screen": screen})
            elif isinstance(action, out.PhoneState):
                log.info("event=state state=%s", action.name)
                self.handset.in_call(action.name == "in-call")
                self._trim_when_idle(action.name == "idle")
                self._publish({"event": "state", **self._status()})
            elif isinstance(action, out.Refuse):
                log.info("event=refused error=%r", action.message)
                self._publish({"event": "error", "error": action.message})
            else:
                self._carry_out_io(action)
        return placing

    def _trim_when_idle(self, idle: bool) -> None:
        """Give glibc's freed C heap back once the phone has been idle a moment.

        Each call mallocs and frees C state (libopus, OpenSSL, aioquic, alsa-lib) that
        glibc keeps in its arenas; over a 1,000-call soak RSS climbed in steps with no
        live object to show for it (docs/performance.md, "Soak").  Idle means no call,
        no tone, no ringing: nothing on the 20 ms path waits for the trim (~15 ms at most).
        """
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        if idle:
            self._trim_timer = asyncio.get_running_loop().call_later(IDLE_TRIM_S, self._trim)

    def _carry_out_io(self, action: out.Output) -> None:
        registry = self.registry
        if isinstance(action, out.Answer | out.Take):
            registry.answer(action.uri)
        elif isinstance(action, out.Pull):
            registry.pull(action.uri)
        elif isinstance(action, out.Decline):
            registry.decline(action.uri)
        elif isinstance(action, out.Hangup):
            registry.hangup(action.uri)
        elif isinstance(action, out.Tone):
            self._tasks.spawn(registry.tone(None if action.kind == "off" else action.kind))
        elif isinstance(action, out.SetRinger):
            self.handset.ring(action.on)  # now, in order with the in-call LED
            self._tasks.spawn(registry.earpiece.ring(action.on))
        elif isinstance(action, out.SetMute):
            registry.set_mute(action.muted)
        elif isinstance(action, out.SetVolume):
            registry.set_volume(action.percent)
        elif isinstance(action, out.SendDigit):
            registry.send_digit(action.key)
        elif isinstance(action, out.SaveCallLog):
            self._tasks.spawn(save_call_log(self._store, action.entries))
        elif isinstance(action, out.ResetPhone):
            self._on_reset()

    def close(self) -> None:
        """Stop the machine's timer and the screen's clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._trim_when_idle(False)
        self.screen.close()
