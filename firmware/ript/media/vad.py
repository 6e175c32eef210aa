"""Voice activity detection: frame energy against a tracked noise floor, with hangover.

Cheap enough for the 20 ms path of a small board: one pass of
multiply-and-add over the frame's samples (through a memoryview, so nothing is
copied), one ``log10``, a few comparisons.  A frame is speech when it is louder
than the noise floor by :data:`MARGIN_DB` and louder than :data:`FLOOR_DBOV`;
the floor follows the quietest frames at once and rises slowly (so it
tracks a fan or a car but not a voice); after the last speech frame the
detector stays active for ``hangover_ms`` so word endings and short pauses
are not clipped.  Pure: PCM in, a decision out.
"""

from __future__ import annotations

import math
import sys
from operator import mul

__all__ = ["EnergyVad"]

SILENCE_DBOV = -127.0
FLOOR_DBOV = -55.0
"""Quieter than this is never speech (a muted or unplugged microphone)."""
MARGIN_DB = 9.0
"""Speech is this much above the noise floor."""
FLOOR_RISE_DB_PER_S = 1.0
"""How fast the noise floor follows a louder background (a voice lasts far shorter)."""
FULL_SCALE_SQUARED = 32768.0 * 32768.0


class EnergyVad:
    """Speech or not, frame by frame; :attr:`level_dbov` is the last frame's level."""

    __slots__ = ("_hang", "_hangover", "_rise", "active", "floor_dbov", "level_dbov")

    def __init__(self, frame_ms: int, hangover_ms: int = 200) -> None:
        if frame_ms <= 0 or hangover_ms < 0:
            raise ValueError(f"frame_ms must be positive, hangover_ms not negative: {frame_ms}")
        self._hangover = hangover_ms // frame_ms
        self._hang = 0
        self._rise = FLOOR_RISE_DB_PER_S * frame_ms / 1000
        self.floor_dbov = FLOOR_DBOV
        self.level_dbov = SILENCE_DBOV
        self.active = False

    def __call__(self, pcm: bytes) -> bool:
        """Feed one frame of 16-bit little-endian mono PCM; True while speech (or hangover)."""
        samples = memoryview(pcm).cast("h")
        count = len(samples)
        if sys.byteorder == "big":  # pragma: no cover - the phone and CI are little-endian
            samples = memoryview(bytes(reversed(pcm))).cast("h")
        energy = sum(map(mul, samples, samples))
        if count == 0 or energy == 0:
            level = SILENCE_DBOV
        else:
            level = max(SILENCE_DBOV, 10.0 * math.log10(energy / (count * FULL_SCALE_SQUARED)))
        self.level_dbov = level
        floor = self.floor_dbov
        speech = level > FLOOR_DBOV and level > floor + MARGIN_DB
        # The floor drops to any quieter frame at once and creeps up otherwise, speech or
        # not: slowly enough (1 dB/s) that a sentence barely moves it, fast enough that a
        # noisy room is background within seconds rather than speech for ever.
        if level < floor:
            self.floor_dbov = level
        else:
            self.floor_dbov = min(floor + self._rise, level)
        if speech:
            self._hang = self._hangover
            self.active = True
        elif self._hang:
            self._hang -= 1  # within the hangover after speech
            self.active = True
        else:
            self.active = False
        return self.active
