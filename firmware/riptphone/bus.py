"""The phone's buses: how its parts reach one another without holding one another.

The composition root (:func:`riptphone.daemon.serve`) creates two buses
before anything else and gives them to every part:

* ``inputs`` (:class:`~riptphone.app.inputs.Input`): the handset, the line,
  the push channel and the calls tell the phone machine what happened; the
  driver (:class:`riptphone.driver.PhoneDriver`) is its one subscriber;
* ``events`` (the control socket's event objects): the driver and the calls
  tell watchers what changed; the control server is its one subscriber.

A bus delivers synchronously, in subscription order, so an input is handled
before :meth:`Bus.publish` returns, exactly as a direct call would be.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Bus(Generic[T]):
    """Hands each published value to every subscriber, in order; none subscribed: dropped."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[T], object]] = []

    def subscribe(self, listener: Callable[[T], object]) -> Callable[[], None]:
        """Deliver to ``listener`` from now on; the result unsubscribes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, value: T) -> None:
        for listener in tuple(self._listeners):  # a listener may unsubscribe meanwhile
            listener(value)


Event = Mapping[str, Any]
"""One control-socket event (``{"event": "state", ...}``, profile section 11)."""
