"""Packet-loss concealment for G.711: repeat the last pitch period, fading out (cheap).

In the spirit of ITU-T G.711 Appendix I, much simplified so that a frame
costs nothing while no chunk is lost:

* every decoded frame is remembered by reference (:meth:`PitchRepeat.good`:
  two assignments, no copy);
* on the first lost frame of a run, the pitch period of the last two frames is
  found by autocorrelation (lags of 2.5 to 15 ms: 66 to 400 Hz), searched
  coarse then fine (about 1 300 multiplications, once per run of losses:
  0.2-0.3 ms of Python on the development x86 machine; each lost frame then
  costs about 80 µs);
* each lost frame repeats that period from where the last one stopped (so the
  waveform is continuous), at full level for the first 10 ms of the loss, then
  20 % softer per 10 ms, and silence from 60 ms on, as Appendix I does: a
  longer repeat turns into a buzz;
* the first good frame after a loss is played as it is (Appendix I cross-fades
  it in; the fade-out already makes the join quiet).

16-bit little-endian mono PCM in and out; pure, no I/O.
"""

from __future__ import annotations

import sys
from array import array
from operator import mul

__all__ = ["PitchRepeat"]

FULL_MS = 10
"""Lost audio played at full level before the fade starts (Appendix I)."""
FADE_MS = 50
"""Fade to silence after FULL_MS: 20 % per 10 ms."""
MIN_PITCH_HZ = 66
MAX_PITCH_HZ = 400


class PitchRepeat:
    """Conceals lost frames of ``frame_samples`` samples at ``rate`` Hz; see the module doc."""

    __slots__ = (
        "_frame_bytes",
        "_last",
        "_lost_samples",
        "_max_lag",
        "_min_lag",
        "_period",
        "_phase",
        "_prev",
        "_rate",
        "_silence",
    )

    def __init__(self, rate: int, frame_samples: int) -> None:
        self._rate = rate
        self._frame_bytes = 2 * frame_samples
        self._silence = bytes(self._frame_bytes)
        self._prev = self._silence
        self._last = self._silence
        self._min_lag = rate // MAX_PITCH_HZ
        self._max_lag = rate // MIN_PITCH_HZ
        self._period: array[int] = array("h")
        self._phase = 0
        self._lost_samples = 0

    def good(self, pcm: bytes) -> None:
        """A frame was decoded: remember it (by reference) and end any loss run."""
        self._prev = self._last
        self._last = pcm
        self._lost_samples = 0

    def conceal(self) -> bytes:
        """One frame standing in for a lost one."""
        if self._lost_samples == 0:
            self._start_run()
        start = self._lost_samples
        n = self._frame_bytes // 2
        self._lost_samples += n
        full = self._rate * FULL_MS // 1000
        end = full + self._rate * FADE_MS // 1000
        if start >= end or not self._period:
            return self._silence
        period = self._period
        size = len(period)
        out = array("h", bytes(self._frame_bytes))
        phase = self._phase
        for i in range(n):
            t = start + i
            gain = 1.0 if t < full else max(0.0, 1.0 - (t - full) / (end - full))
            out[i] = int(period[phase] * gain)
            phase += 1
            if phase == size:
                phase = 0
        self._phase = phase
        if sys.byteorder == "big":  # pragma: no cover - the phone and CI are little-endian
            out.byteswap()
        return out.tobytes()

    def _start_run(self) -> None:
        history = array("h", self._prev + self._last)
        if sys.byteorder == "big":  # pragma: no cover
            history.byteswap()
        lag = self._pitch(history)
        if lag == 0:
            self._period = array("h")
            return
        self._period = history[len(history) - lag :]
        self._phase = 0

    def _pitch(self, history: array[int]) -> int:
        """The lag (samples) that best repeats the end of ``history``; 0 if it is silent.

        Coarse then fine, to stay cheap on a small board: the correlation is first
        searched on every 4th sample (a quarter of the lags, a quarter of the window),
        then refined at full resolution within 3 samples of the coarse winner.
        """
        size = len(history)
        window = min(size - self._max_lag, self._max_lag)
        if window <= 0:
            return 0
        if not any(history[size - window :]):
            return 0
        coarse = self._best(history, window, range(self._min_lag, self._max_lag + 1, 4), 4)
        low, high = max(self._min_lag, coarse - 3), min(self._max_lag, coarse + 3)
        return self._best(history, window, range(low, high + 1), 2)

    @staticmethod
    def _best(history: array[int], window: int, lags: range, step: int) -> int:
        size = len(history)
        tail = history[size - window :: step]
        best_lag, best = lags[0], float("-inf")
        for lag in lags:
            base = size - window - lag
            score = sum(map(mul, tail, history[base : base + window : step]))
            if score > best:
                best, best_lag = score, lag
        return best_lag
