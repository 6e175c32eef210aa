"""Debouncing and long-press detection for contacts (sans-IO).

Inputs are raw samples ``(level, now)`` and plain clock readings; outputs are
values.  No threads, no GPIO: the hook, keypad and button adapters sample their
pins on their own threads and feed these, and tests feed them by hand with a
fake clock.

Rule: a new level counts once the contact has read it continuously for
``debounce_s``.  Between two samples the last level is assumed to hold, so
calling :meth:`Debouncer.poll` between samples only reports a change earlier,
never a different one: the same samples give the same transitions however the
polls are interleaved.  A long press is timed from the moment the contact first
read pressed (not from when the debounce confirmed it), so ``long_press_s`` is
what the user feels.
"""

from __future__ import annotations

import enum

__all__ = ["Debouncer", "Press", "PressDetector"]

# Clock readings are floats: without a little slack, 0.12 - 0.1 < 0.02 and a
# change held for exactly the debounce time would wait one more sample.
_SLACK_S = 1e-9


class Debouncer:
    """One contact's stable level.

    ``initial`` is the level assumed before the first sample; ``None`` means
    unknown, and then the first level to stay put for ``debounce_s`` is
    reported as a transition too (so an adapter can report the state at start).
    """

    def __init__(self, debounce_s: float, initial: bool | None = None) -> None:
        if debounce_s < 0:
            raise ValueError(f"debounce time must not be negative, not {debounce_s}")
        self.debounce_s = debounce_s
        self._stable = initial
        self._raw: bool | None = None
        self._since = 0.0
        self._stable_since = 0.0

    @property
    def stable(self) -> bool | None:
        """The debounced level (``None`` until known)."""
        return self._stable

    @property
    def since(self) -> float:
        """When the raw level last changed (the clock reading of that sample)."""
        return self._since

    @property
    def stable_since(self) -> float:
        """When the contact first read the current stable level (before the debounce)."""
        return self._stable_since

    @property
    def pending(self) -> bool:
        """Whether the raw level differs from the stable one (a change not yet confirmed)."""
        return self._raw is not None and self._raw != self._stable

    def feed(self, level: bool, now: float) -> bool | None:
        """Take one raw sample; return the new stable level if it changed, else ``None``.

        The previous raw level is settled first (it held until ``now``), so a
        sample that arrives late cannot hide a change that was already stable.
        Two stable changes in one call would need a poll in between; the first
        wins and the second is reported by the next call.
        """
        settled = self.poll(now)
        if settled is not None:
            self._raw = level
            if level != self._stable:
                self._since = now
            return settled
        if level != self._raw:
            self._raw = level
            self._since = now
        return self.poll(now)

    def poll(self, now: float) -> bool | None:
        """Report a change that became stable by ``now`` without a new sample."""
        if self._raw is None or self._raw == self._stable:
            return None
        if now - self._since >= self.debounce_s - _SLACK_S:
            self._stable = self._raw
            self._stable_since = self._since
            return self._stable
        return None

    def deadline(self) -> float | None:
        """When :meth:`poll` may next report something (``None``: not until a new sample)."""
        if self._raw is None or self._raw == self._stable:
            return None
        return self._since + self.debounce_s


class Press(enum.Enum):
    """What happened to a push-button contact."""

    DOWN = "down"
    LONG = "long"  # held for long_press_s: once per press, while still held
    UP = "up"  # released, no LONG was reported for this press
    LONG_UP = "long-up"  # released after a LONG


class PressDetector:
    """A debounced push-button: down, up, and one long press per hold."""

    def __init__(self, debounce_s: float, long_press_s: float) -> None:
        if long_press_s <= debounce_s:
            raise ValueError(
                f"the long-press time ({long_press_s} s) must exceed the debounce time "
                f"({debounce_s} s)"
            )
        self.long_press_s = long_press_s
        self._debouncer = Debouncer(debounce_s, initial=False)
        self._pressed_at: float | None = None
        self._long_sent = False

    @property
    def pressed(self) -> bool:
        """Whether the button is down (debounced)."""
        return self._pressed_at is not None

    def feed(self, pressed: bool, now: float) -> list[Press]:
        """Take one raw sample (True: the contact reads pressed); return what happened."""
        out = self._long(now)
        changed = self._debouncer.feed(pressed, now)
        out += self._apply(changed)
        out += self._long(now)
        return out

    def poll(self, now: float) -> list[Press]:
        """Report what became true by ``now`` without a new sample."""
        out = self._long(now)
        out += self._apply(self._debouncer.poll(now))
        out += self._long(now)
        return out

    def deadline(self) -> float | None:
        """When :meth:`poll` may next report something (``None``: not until a new sample)."""
        times = [self._debouncer.deadline()]
        if self._pressed_at is not None and not self._long_sent:
            times.append(self._pressed_at + self.long_press_s)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def _apply(self, changed: bool | None) -> list[Press]:
        if changed is None:
            return []
        if changed:
            # The press began when the contact first read pressed, before the debounce.
            self._pressed_at = self._debouncer.stable_since
            self._long_sent = False
            return [Press.DOWN]
        self._pressed_at = None
        return [Press.LONG_UP if self._long_sent else Press.UP]

    def _long(self, now: float) -> list[Press]:
        if self._pressed_at is None or self._long_sent:
            return []
        # A release not yet confirmed ends the hold when the contact opened, not now:
        # otherwise a late sample could turn a short press into a long one.
        held_until = self._debouncer.since if self._debouncer.pending else now
        if held_until - self._pressed_at >= self.long_press_s - _SLACK_S:
            self._long_sent = True
            return [Press.LONG]
        return []
