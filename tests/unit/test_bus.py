"""The phone's buses (riptphone.bus): synchronous, in order, nothing when none listens."""

from __future__ import annotations

from riptphone.bus import Bus


def test_delivers_in_order_until_unsubscribed() -> None:
    bus: Bus[int] = Bus()
    bus.publish(0)  # nobody listening: dropped
    got: list[tuple[str, int]] = []
    stop_a = bus.subscribe(lambda v: got.append(("a", v)))
    bus.subscribe(lambda v: got.append(("b", v)))
    bus.publish(1)
    stop_a()
    stop_a()  # twice is harmless
    bus.publish(2)
    assert got == [("a", 1), ("b", 1), ("b", 2)]
