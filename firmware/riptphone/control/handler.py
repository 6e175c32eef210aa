"""The control socket's commands (profile section 11) on the phone: the
:class:`~riptphone.control.server.ControlHandler` of the daemon.

``hook``, ``key``, ``dial``, ``pull`` and ``reset`` are the handset's own inputs; a
request is refused with the machine's refusal among the actions it caused,
and a request that places a call answers once the call is placed or with the
reason it could not be.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from riptphone.app.inputs import (
    BUTTON_NAMES,
    KEYS,
    Button,
    Dial,
    HookOff,
    HookOn,
    Input,
    Key,
    ResetRequested,
)
from riptphone.control.server import ControlRefused
from riptphone.driver import FeedResult, PhoneDriver


class PhoneControl:
    """The phone as the control server sees it."""

    def __init__(
        self,
        driver: PhoneDriver,
        status: Callable[[], Mapping[str, Any]],
        reset_done: Callable[[], Awaitable[None]] | None = None,
        login_input: Callable[[Input], bool] | None = None,
    ) -> None:
        self._driver = driver
        self._status = status
        self._reset_done = reset_done
        self._login_input = login_input

    def status(self) -> Mapping[str, Any]:
        return self._status()

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

    async def reset(self) -> None:
        """Factory reset; answers once the state directory is wiped and the login starts."""
        self._request(ResetRequested("control"))
        if self._reset_done is not None:
            await self._reset_done()

    def _request(self, value: Input) -> FeedResult:
        """Feed a request; the machine's refusal becomes :class:`ControlRefused`.

        The login sees it first, as it sees the handset's inputs on the bus: a key
        press after a refused login starts the login again, and is no refusal.
        """
        for_login = self._login_input(value) if self._login_input is not None else False
        outcome = self._driver.handle(value)
        if outcome.refusal is not None and not for_login:
            raise ControlRefused(outcome.refusal)
        return outcome

    @staticmethod
    async def _settle(outcome: FeedResult) -> None:
        """Wait for a call this request placed: why it could not be is the request's answer."""
        if outcome.placing is not None:
            reason = await outcome.placing
            if reason is not None:
                raise ControlRefused(reason)
