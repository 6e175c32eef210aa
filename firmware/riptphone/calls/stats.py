"""Every reading of a call's media figures: the ``call`` object and the quality window.

:meth:`riptphone.calls.media.MediaSession.stats` and
:meth:`riptphone.calls.runner.CallRunner.media_info` are read here and
nowhere else, so a change to what they return changes this module only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from riptphone.calls.media import MediaSession, MediaStats
from riptphone.calls.runner import CallRunner

# Loss above each bound costs one bar (0.5 %, 2 %, 5 %, 10 %).
_LOSS_BARS = (0.005, 0.02, 0.05, 0.10)
SLOW_RTT_MS = 400.0
"""A conversation stumbles past ~400 ms round trip: at most two bars then."""


@dataclass(frozen=True, slots=True)
class QualityWindow:
    """The media counters that make the quality bars, read at one moment."""

    received: int
    lost_in: int
    sent: int
    lost_out: int
    rtt_ms: float | None

    @classmethod
    def of(cls, stats: MediaStats) -> QualityWindow:
        return cls(
            stats.chunks_received,
            stats.chunks_lost,
            stats.chunks_sent,
            stats.chunks_unacked,
            stats.rtt_ms,
        )

    @classmethod
    def now(cls, media: MediaSession) -> QualityWindow:
        """The counters of ``media`` as they stand."""
        return cls.of(media.stats())

    def quality_since(self, before: QualityWindow) -> int | None:
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
        if self.rtt_ms is not None and self.rtt_ms > SLOW_RTT_MS:
            bars = min(bars, 2)
        return bars


def call_json(runner: CallRunner) -> dict[str, Any]:
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
