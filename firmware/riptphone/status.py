"""The phone's ``status`` (profile section 11): one snapshot of the machine, line and call."""

from __future__ import annotations

from typing import Any

from riptphone.app.machine import PhoneMachine
from riptphone.calls.registry import CallRegistry
from riptphone.calls.stats import call_json
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.screen import ScreenOut
from riptphone.ui.text import lines


class PhoneStatus:
    """Calling it gives the ``status`` object; also the body of every ``state`` event."""

    def __init__(
        self,
        machine: PhoneMachine,
        line: Line,
        push: PushLine,
        registry: CallRegistry,
        screen: ScreenOut,
    ) -> None:
        self._machine = machine
        self._line = line
        self._push = push
        self._registry = registry
        self._screen = screen

    def __call__(self) -> dict[str, Any]:
        machine, line = self._machine, self._line
        runner = self._registry.get(machine.call_uri)
        return {
            "state": machine.state,
            "registered": line.registration is not None and machine.state != "offline",
            "push": self._push.status.value,
            "number": line.number,
            "handler": line.handler_uri,
            "call": None if runner is None else call_json(runner),
            "screen": lines(self._screen.clocked(machine.screen)),
            "reason": line.offline_reason,
            "detail": line.offline_detail,
        }
