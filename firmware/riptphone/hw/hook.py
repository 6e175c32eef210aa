"""The hook switch: one contact on a GPIO pin, pulled up, closing to ground.

``normally-open`` wiring: the contact closes when the handset is lifted;
``normally-closed``: it opens when lifted.  The pin is sampled every
``poll_ms`` on the adapter's own thread and debounced in our code
(:mod:`riptphone.hw.debounce`); each debounced change calls ``on_event`` with a
:class:`~riptphone.hw.events.HookChanged` from that thread.  The state at start
is reported too, once it has been stable for the debounce time, so the phone
never has to guess whether the handset is already off hook.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from gpiozero import InputDevice

from riptphone.hw.debounce import Debouncer
from riptphone.hw.events import EventSink, HookChanged
from riptphone.hw.poller import Clock, PollThread

__all__ = ["WIRINGS", "Hook"]

WIRINGS = ("normally-open", "normally-closed")


class Hook:
    """The debounced hook switch on BCM ``pin``.

    ``pin_factory`` is gpiozero's (``None``: ``Device.pin_factory``); ``clock``
    is injectable so tests drive time by hand through :meth:`sample`.
    """

    def __init__(
        self,
        pin: int,
        on_event: EventSink,
        *,
        wiring: str = "normally-open",
        debounce_ms: int = 50,
        poll_ms: int = 5,
        clock: Clock = time.monotonic,
        pin_factory: Any = None,
    ) -> None:
        if wiring not in WIRINGS:
            raise ValueError(f"hook wiring must be one of {', '.join(WIRINGS)}, not {wiring!r}")
        self.wiring = wiring
        self._on_event = on_event
        self._debouncer = Debouncer(debounce_ms / 1000)
        # pull_up=True: the contact pulls the pin to ground, so "active" means closed.
        self._device = InputDevice(pin, pull_up=True, pin_factory=pin_factory)
        self._thread = PollThread(f"hook-gpio{pin}", poll_ms / 1000, self.sample, clock)

    @property
    def off_hook(self) -> bool | None:
        """The debounced state (``None`` until the contact has been stable once)."""
        stable = self._debouncer.stable
        return None if stable is None else self._off_hook(stable)

    def _off_hook(self, closed: bool) -> bool:
        return closed if self.wiring == "normally-open" else not closed

    def sample(self, now: float) -> list[HookChanged]:
        """Read the pin once; report (to ``on_event``) and return any debounced change."""
        changed = self._debouncer.feed(bool(self._device.is_active), now)
        if changed is None:
            return []
        event = HookChanged(off_hook=self._off_hook(changed))
        self._on_event(event)
        return [event]

    def start(self) -> None:
        """Start sampling on the adapter's thread."""
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def close(self) -> None:
        """Stop the thread and release the pin."""
        self.stop()
        self._device.close()

    def __enter__(self) -> Hook:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
