"""The one retry policy both programs use: a delay doubling from ``initial`` to ``maximum``.

``jitter`` spreads devices that lost the same server at the same moment: the
n-th delay is ``min(initial * 2**n, maximum)`` lengthened by a random part of
up to ``jitter`` times itself.  Jitter only ever
lengthens a wait, so a server's ``retry-backoff`` is a floor a client keeps
(core draft, TG parameters).  Pure: the random source is injected.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float
    maximum: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff: need 0 < initial <= maximum")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff: jitter is a fraction from 0 to 1")

    def delay(self, attempt: int, draw: float = 0.0) -> float:
        """The wait before retry ``attempt`` (0-based); ``draw`` is uniform in [0, 1)."""
        base = self.initial * 2.0 ** min(attempt, 64)
        ceiling = min(base, self.maximum)
        return ceiling * (1 + self.jitter * draw)


class Backoff:
    """A :class:`BackoffPolicy` with its attempt count: :meth:`next_delay`, :meth:`reset`."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = self.policy.delay(self.attempts, self._rng.random())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
