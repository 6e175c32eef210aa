"""Integer-ratio resampling of 16-bit mono PCM (48 kHz ↔ 16 kHz / 8 kHz) without numpy.

A windowed-sinc (Hamming) low-pass FIR, run as a decimator (keep every M-th
output) or as a polyphase interpolator (L phases of the same filter), with the
filter state carried across calls so consecutive 20 ms frames join without a
seam.  The cut-off sits at the lower rate's Nyquist frequency and the
transition band is about ``3.3 / taps`` of the higher rate wide (Hamming): with
the default 20 taps per phase that is 3.35-4.65 kHz for 8 kHz (so the voice band
up to 3.4 kHz passes and what aliases is down by about 50-60 dB) and
6.7-9.3 kHz for 16 kHz.  The filter delays the signal by about
``10 / low_rate`` seconds (1.25 ms at 8 kHz).

The inner loop is ``sum(map(mul, coefficients, window))``, which runs in C;
the cost per 20 ms frame is in docs/media-engine.md.  Frames must hold a whole
number of the ratio's input blocks, else :class:`ResampleError`.
"""

from __future__ import annotations

import math
import sys
from array import array
from operator import mul

__all__ = ["ResampleError", "Resampler"]

_BIG_ENDIAN = sys.byteorder == "big"


class ResampleError(ValueError):
    """A rate pair or a PCM frame the resampler cannot handle."""


def _lowpass(taps: int, cutoff: float) -> list[float]:
    """Hamming-windowed sinc, ``cutoff`` as a fraction of the sample rate, unity DC gain."""
    middle = (taps - 1) / 2.0
    h = []
    for n in range(taps):
        t = n - middle
        ideal = 2.0 * cutoff if t == 0 else math.sin(2.0 * math.pi * cutoff * t) / (math.pi * t)
        h.append(ideal * (0.54 - 0.46 * math.cos(2.0 * math.pi * n / (taps - 1))))
    total = sum(h)
    return [c / total for c in h]


class Resampler:
    """Stateful resampler from ``in_rate`` to ``out_rate`` (one must divide the other)."""

    __slots__ = (
        "_down",
        "_history",
        "_in_block",
        "_phases",
        "_ratio",
        "_taps",
        "in_rate",
        "out_rate",
    )

    def __init__(self, in_rate: int, out_rate: int, taps_per_phase: int = 20) -> None:
        if in_rate <= 0 or out_rate <= 0 or taps_per_phase < 2:
            raise ResampleError(f"cannot resample {in_rate} Hz to {out_rate} Hz")
        high, low = max(in_rate, out_rate), min(in_rate, out_rate)
        if high % low:
            raise ResampleError(f"{in_rate} Hz to {out_rate} Hz is not an integer ratio")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._ratio = high // low
        self._down = in_rate > out_rate
        self._in_block = self._ratio if self._down else 1
        cutoff = 0.5 / self._ratio  # the lower rate's Nyquist, as a fraction of the higher rate
        taps = taps_per_phase * self._ratio
        h = _lowpass(taps, cutoff) if self._ratio > 1 else [1.0]
        if self._down:
            # Reversed so that a plain slice of the input (oldest first) lines up.
            self._phases = [h[::-1]]
            self._taps = len(h)
        else:
            # Phase p of the interpolator uses taps p, p+L, ...; gain L restores the level.
            gain = float(self._ratio)
            self._phases = [
                [gain * c for c in h[p :: self._ratio][::-1]] for p in range(self._ratio)
            ]
            self._taps = len(self._phases[0])
        self._history = [0.0] * (self._taps - 1)

    @property
    def delay_samples(self) -> float:
        """The filter's group delay, in output samples."""
        taps = self._taps * (1 if self._down else self._ratio)
        delay_high = (taps - 1) / 2.0
        return delay_high / self._ratio if self._down else delay_high

    def process(self, pcm: bytes) -> bytes:
        """Resample one chunk of 16-bit little-endian PCM (state carries to the next call)."""
        if len(pcm) % (2 * self._in_block):
            raise ResampleError(
                f"PCM for {self.in_rate}->{self.out_rate} Hz must be whole blocks of "
                f"{self._in_block} samples, got {len(pcm)} bytes"
            )
        if self._ratio == 1:
            return pcm
        samples = array("h", pcm)
        if _BIG_ENDIAN:
            samples.byteswap()
        # float x float products are the cheapest that sum(map(mul, ...)) can do.
        x = self._history + list(map(float, samples))
        taps = self._taps
        if self._down:
            h = self._phases[0]
            step = self._ratio
            ys = [sum(map(mul, h, x[i : i + taps])) for i in range(0, len(x) - taps + 1, step)]
        else:
            phases = self._phases
            ys = []
            extend = ys.extend
            for i in range(len(x) - taps + 1):
                window = x[i : i + taps]
                extend([sum(map(mul, hp, window)) for hp in phases])
        self._history = x[len(x) - taps + 1 :] if taps > 1 else []
        out = array("h", [-32768 if y < -32768.0 else 32767 if y > 32767.0 else int(y) for y in ys])
        if _BIG_ENDIAN:
            out.byteswap()
        return out.tobytes()
