"""The packet loss an Opus encoder is told to expect, from what the path really loses.

libopus only spends bits and CPU on in-band FEC (SILK's LBRR copy of the previous
frame) when its ``OPUS_SET_PACKET_LOSS_PERC`` hint is above zero, and with FEC on
and any loss expected it also stays out of its CELT-only mode.  A fixed hint makes
every call pay for FEC whether or not the path loses anything; on a clean path
that is about 3.7 times the encoder's CPU on tonal input (docs/performance.md,
"The codec, like with like") and bits taken from the voice.  WebRTC drives the
same hint from the loss its receiver reports; here the loss is what the far end's
acks show: a chunk re-sent because a later one was acked first was lost on the
way (or its ack was), either way a lossy path.

:class:`LossHint` takes the sender's running totals once per window (a second,
longer when under 20 chunks went out in it) and returns the hint in per cent: it
rises at once to the window's loss, so a lossy path is protected from the next
window on, and falls back slowly (a quarter of the way per window), so a burst
does not switch FEC off and on again.
Sans-IO: no clock of its own, the caller decides when a window ends.
"""

from __future__ import annotations

import math

__all__ = ["MAX_HINT_PCT", "MIN_WINDOW_SENT", "OFF_BELOW", "LossHint"]

MAX_HINT_PCT = 20
"""The largest hint given: beyond it libopus takes more bits for FEC than the voice
can spare at these bit rates (WebRTC caps its Opus hint at 20 % too)."""
OFF_BELOW = 0.005
"""A smoothed loss under this (half a per cent) is no loss: the hint goes to 0."""
MIN_WINDOW_SENT = 20
"""Chunks a window needs before it is closed; a sparser one (Opus DTX in silence sends one
chunk per ~400 ms) goes on into the next second: one lost chunk of two or three is no
loss rate, and it would turn FEC on at the 20 % cap for some twelve seconds."""
FALL = 0.25
"""Share of the way to a lower window loss taken per window (from 10 % to off in ~10 s)."""


class LossHint:
    """Expected loss, in per cent, from the totals of chunks sent and chunks re-sent."""

    __slots__ = ("_resent", "_sent", "_smoothed", "pct")

    def __init__(self) -> None:
        self._sent = 0
        self._resent = 0
        self._smoothed = 0.0
        self.pct = 0
        """The hint now (0: the path loses nothing, FEC has nothing to do)."""

    def update(self, sent: int, resent: int) -> int | None:
        """End a window at these totals; the new hint when it changed, else None.

        ``sent`` and ``resent`` are running totals (they only grow); a window in
        which fewer than :data:`MIN_WINDOW_SENT` chunks were sent (silence under DTX,
        held byways) is not closed: it goes on until that many have been sent.
        """
        new_sent = sent - self._sent
        if new_sent < MIN_WINDOW_SENT:
            return None
        new_resent = resent - self._resent
        self._sent, self._resent = sent, resent
        loss = min(1.0, max(0.0, new_resent / new_sent))
        if loss >= self._smoothed:
            self._smoothed = loss
        else:
            self._smoothed += (loss - self._smoothed) * FALL
        smoothed = self._smoothed
        pct = 0 if smoothed < OFF_BELOW else min(MAX_HINT_PCT, math.ceil(smoothed * 100 - 1e-9))
        if pct == self.pct:
            return None
        self.pct = pct
        return pct
