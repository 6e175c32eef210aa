"""Call-progress tones, DTMF tones and noise as 20 ms PCM frames, plus level helpers.

A tone is a sum of sine components with an on/off cadence (:class:`ToneSpec`).
:class:`ToneGenerator` precomputes one exact period of the waveform (all the
frequencies here are whole hertz, so ``rate / gcd(rate, gcd(freqs))`` samples
repeat exactly: 100 ms for the NANP tones, 1 s for DTMF pairs) and then hands
out slices of it, so frames are phase-continuous and each costs one slice.
The cadence is applied per frame (every interval is a multiple of the frame
length); the phase keeps running through the silent parts.

Levels are in dBov: 0 dBov is the RMS of a full-scale square wave (RFC 3389
section 3.1), so a sine whose own RMS is ``-x`` dBov has a peak of
``32768 * 10**(-x/20) * sqrt(2)``.  NANP levels given in dBm0 are converted with
0 dBm0 ≈ -3 dBov (G.711's digital milliwatt sits 3.17 dB below full scale).

:func:`goertzel`, :func:`rms_dbov` and :func:`active_level` measure PCM; the
last is the envelope's active-level field (profile section 8: -dBov, 0..127).
"""

from __future__ import annotations

import functools
import math
import random
import sys
from array import array
from dataclasses import dataclass
from operator import mul

__all__ = [
    "BUSY",
    "DIAL_TONE",
    "DTMF_FREQUENCIES",
    "RING",
    "RINGBACK",
    "NoiseGenerator",
    "ToneError",
    "ToneGenerator",
    "ToneSpec",
    "active_level",
    "dtmf_spec",
    "goertzel",
    "rms_dbov",
]

FULL_SCALE = 32768.0
SILENCE_DBOV = -127.0
"""The floor of every level here: RFC 3389 and the active-level field stop at -127 dBov."""

_BIG_ENDIAN = sys.byteorder == "big"


class ToneError(ValueError):
    """A tone, noise level, rate or frame length asked for is not one this module can make."""


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A tone: ``(frequency Hz, RMS level dBov)`` components and an on/off cadence in ms.

    ``cadence_ms`` alternates on and off durations (``(2000, 4000)`` = 2 s on, 4 s off);
    empty means continuous.
    """

    components: tuple[tuple[int, float], ...]
    cadence_ms: tuple[int, ...] = ()


# NANP call progress tones (ANSI T1.401 / Telcordia): dBm0 per component minus 3 dB.
DIAL_TONE = ToneSpec(((350, -16.0), (440, -16.0)))
RINGBACK = ToneSpec(((440, -22.0), (480, -22.0)), (2000, 4000))
BUSY = ToneSpec(((480, -27.0), (620, -27.0)), (500, 500))
RING = ToneSpec(((440, -10.0), (480, -10.0)), (2000, 4000))
"""The ringer's sound: the NANP ring cadence (2 s on, 4 s off) played loud."""

DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    key: (low, high)
    for low, row in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"), strict=True)
    for high, key in zip((1209, 1336, 1477, 1633), row, strict=True)
}
"""Key → (row Hz, column Hz), ITU-T Q.23."""


def dtmf_spec(key: str, low_dbov: float = -13.0, twist_db: float = 2.0) -> ToneSpec:
    """The continuous two-tone for a DTMF key; the high group is ``twist_db`` louder (Q.24)."""
    try:
        low, high = DTMF_FREQUENCIES[key.upper()]
    except KeyError:
        raise ToneError(f"{key!r} is not a DTMF key (0-9, *, #, A-D)") from None
    return ToneSpec(((low, low_dbov), (high, low_dbov + twist_db)))


def _check_rate(rate: int, frame_ms: int) -> int:
    if rate <= 0 or frame_ms <= 0 or (rate * frame_ms) % 1000:
        raise ToneError(f"{frame_ms} ms at {rate} Hz is not a whole number of samples")
    return rate * frame_ms // 1000


def _to_bytes(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples.tobytes()


@functools.lru_cache(maxsize=64)
def _period(spec: ToneSpec, rate: int) -> bytes:
    step = 0
    for freq, _level in spec.components:
        if freq <= 0 or 2 * freq >= rate:
            raise ToneError(f"a {freq} Hz component cannot be made at {rate} Hz")
        step = math.gcd(step, freq)
    length = rate // math.gcd(rate, step) if step else 1
    parts = [
        (FULL_SCALE * math.sqrt(2.0) * 10.0 ** (level / 20.0), 2.0 * math.pi * freq / rate)
        for freq, level in spec.components
    ]
    samples = array("h")
    for n in range(length):
        value = round(sum(amp * math.sin(w * n) for amp, w in parts))
        samples.append(max(-32768, min(32767, value)))
    return _to_bytes(samples)


class ToneGenerator:
    """Hands out a tone as consecutive ``frame_ms`` PCM frames, phase-continuous."""

    __slots__ = (
        "_buffer",
        "_cadence",
        "_cycle",
        "_frame_bytes",
        "_frame_ms",
        "_loop_bytes",
        "_offset",
        "_silence",
        "_time_ms",
    )

    def __init__(self, spec: ToneSpec, rate: int = 48000, frame_ms: int = 20) -> None:
        samples = _check_rate(rate, frame_ms)
        if any(d <= 0 or d % frame_ms for d in spec.cadence_ms) or len(spec.cadence_ms) % 2:
            raise ToneError(
                f"cadence {spec.cadence_ms} must be on/off pairs of whole {frame_ms} ms frames"
            )
        period = _period(spec, rate)
        self._frame_bytes = 2 * samples
        self._loop_bytes = len(period)
        # Repeat the period so that a frame starting anywhere in it is one plain slice.
        self._buffer = period * (1 + -(-self._frame_bytes // len(period)))
        self._silence = bytes(self._frame_bytes)
        self._cadence = spec.cadence_ms
        self._cycle = sum(spec.cadence_ms)
        self._frame_ms = frame_ms
        self._offset = 0
        self._time_ms = 0

    def _sounding(self) -> bool:
        if not self._cycle:
            return True
        t = self._time_ms % self._cycle
        for i, duration in enumerate(self._cadence):
            if t < duration:
                return i % 2 == 0
            t -= duration
        return False  # unreachable: t < cycle

    def frame(self) -> bytes:
        """The next frame: the tone, or silence during the off part of the cadence."""
        on = self._sounding()
        start = self._offset
        self._offset = (start + self._frame_bytes) % self._loop_bytes
        self._time_ms += self._frame_ms
        return self._buffer[start : start + self._frame_bytes] if on else self._silence

    def reset(self) -> None:
        """Start again at phase 0 and at the start of the cadence."""
        self._offset = 0
        self._time_ms = 0


class NoiseGenerator:
    """White noise at an RMS level in dBov (comfort noise), as ``frame_ms`` PCM frames.

    One second of noise is made once; each frame is a slice of it at a random
    offset, which for white noise is as good as fresh noise and costs a slice.
    ``level_dbov`` of -127 (or below) gives digital silence.
    """

    __slots__ = ("_buffer", "_frame_bytes", "_rng", "_span", "level_dbov")

    def __init__(
        self, level_dbov: float, rate: int = 48000, frame_ms: int = 20, seed: int | None = None
    ) -> None:
        samples = _check_rate(rate, frame_ms)
        if not -math.inf < level_dbov <= 0.0:
            raise ToneError(f"noise level must be a number of dBov at most 0, got {level_dbov}")
        self.level_dbov = max(level_dbov, SILENCE_DBOV)
        self._rng = random.Random(seed)
        self._frame_bytes = 2 * samples
        if self.level_dbov <= SILENCE_DBOV:
            self._buffer = bytes(self._frame_bytes)
            self._span = 1
            return
        # Uniform noise on [-a, a] has RMS a/sqrt(3).
        amp = min(32767.0, FULL_SCALE * 10.0 ** (self.level_dbov / 20.0) * math.sqrt(3.0))
        uniform = self._rng.uniform
        noise = array("h", (round(uniform(-amp, amp)) for _ in range(rate + samples)))
        self._buffer = _to_bytes(noise)
        self._span = rate

    def frame(self) -> bytes:
        """The next frame of noise."""
        start = 2 * self._rng.randrange(self._span)
        return self._buffer[start : start + self._frame_bytes]


def _pcm(pcm: bytes) -> array[int]:
    if len(pcm) % 2:
        raise ToneError(f"PCM must be whole 16-bit samples, got an odd length of {len(pcm)} bytes")
    samples = array("h", pcm)
    if _BIG_ENDIAN:
        samples.byteswap()
    return samples


def goertzel(pcm: bytes, rate: int, freq: float) -> float:
    """Mean-square power of ``pcm`` at ``freq`` Hz (a sine of peak A gives about A²/2).

    The generalised Goertzel filter, so ``freq`` need not fall on a DFT bin.
    """
    samples = _pcm(pcm)
    n = len(samples)
    if not n:
        return 0.0
    w = 2.0 * math.pi * freq / rate
    coeff = 2.0 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2.0 * power / (n * n)


def rms_dbov(pcm: bytes) -> float:
    """RMS level of ``pcm`` in dBov (0 = full-scale square wave), floored at -127."""
    samples = _pcm(pcm)
    if not samples:
        return SILENCE_DBOV
    mean_square = sum(map(mul, samples, samples)) / len(samples)
    if mean_square <= 0:
        return SILENCE_DBOV
    return max(SILENCE_DBOV, 10.0 * math.log10(mean_square / (FULL_SCALE * FULL_SCALE)))


def active_level(pcm: bytes) -> int:
    """The envelope's active-level value for ``pcm``: -dBov rounded, 0 (loud) .. 127 (silent)."""
    return min(127, max(0, round(-rms_dbov(pcm))))
