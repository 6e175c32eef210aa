"""RFC 3389 comfort noise: the payload codec and a noise source at the signalled level.

A CN payload is one byte of noise level (bit 7 zero, the level in -dBov,
0..127) followed by zero or more reflection coefficients (one byte each,
quantised as in RFC 3389 section 3.2).  This phone sends the level only and
plays white noise; coefficients it receives are kept in :class:`ComfortNoise`
but not used for shaping.  A malformed payload raises :class:`CNError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ript.media.tones import NoiseGenerator, rms_dbov

__all__ = [
    "CNError",
    "CnPlayer",
    "ComfortNoise",
    "comfort_noise_source",
    "decode_cn",
    "encode_cn",
    "from_pcm",
]

MAX_LEVEL = 127
LEVEL_STEP_DB = 2
KEPT_LEVELS = 8


class CNError(ValueError):
    """A comfort-noise payload or level is not valid under RFC 3389."""


@dataclass(frozen=True, slots=True)
class ComfortNoise:
    """A CN payload: ``level`` in -dBov (0 loud .. 127 silent) and raw reflection coefficients."""

    level: int
    coefficients: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise CNError(f"comfort-noise level must be 0..127 (-dBov), got {self.level}")
        if len(self.coefficients) > 255:
            raise CNError(f"at most 255 reflection coefficients, got {len(self.coefficients)}")


def encode_cn(noise: ComfortNoise) -> bytes:
    """The RFC 3389 payload for ``noise``."""
    return bytes((noise.level,)) + noise.coefficients


def decode_cn(payload: bytes) -> ComfortNoise:
    """Parse an RFC 3389 payload; raises :class:`CNError` if it is empty or bit 7 is set."""
    if not payload:
        raise CNError("comfort-noise payload is empty: it must hold at least the noise level byte")
    if payload[0] & 0x80:
        raise CNError(f"comfort-noise level byte 0x{payload[0]:02x} has its reserved top bit set")
    return ComfortNoise(payload[0], bytes(payload[1:]))


def from_pcm(pcm: bytes) -> ComfortNoise:
    """The CN description (level only) of the background noise in ``pcm``."""
    return ComfortNoise(min(MAX_LEVEL, max(0, round(-rms_dbov(pcm)))))


def comfort_noise_source(
    noise: ComfortNoise, rate: int = 48000, frame_ms: int = 20, seed: int | None = None
) -> NoiseGenerator:
    """A generator of ``frame_ms`` PCM frames of white noise at ``noise.level``."""
    return NoiseGenerator(-float(noise.level), rate, frame_ms, seed)


class CnPlayer:
    """Plays received comfort noise: :meth:`level` takes a CN payload, ``frame()`` the noise.

    The noise source of a level is made once (a second of white noise) and kept,
    so a CN update at the same level, which is most of them, costs a lookup.
    Levels are taken in steps of :data:`LEVEL_STEP_DB` (a smaller change of
    background noise is not heard) and at most :data:`KEPT_LEVELS` sources are
    kept.  A malformed payload raises :class:`CNError` and changes nothing.
    """

    __slots__ = ("_frame_ms", "_rate", "_sources")

    def __init__(self, rate: int, frame_ms: int) -> None:
        self._rate = rate
        self._frame_ms = frame_ms
        self._sources: dict[int, NoiseGenerator] = {}

    def level(self, payload: bytes) -> NoiseGenerator:
        """The noise source for the level a CN payload gives (its coefficients are not used)."""
        level = decode_cn(payload).level // LEVEL_STEP_DB * LEVEL_STEP_DB
        source = self._sources.get(level)
        if source is None:
            if len(self._sources) >= KEPT_LEVELS:
                self._sources.clear()
            source = comfort_noise_source(ComfortNoise(level), self._rate, self._frame_ms)
            self._sources[level] = source
        return source
