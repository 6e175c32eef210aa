"""Tones, DTMF pairs, noise and the level helpers (ript.media.tones)."""

from __future__ import annotations

import math
from array import array

import pytest

from ript.media import tones
from ript.media.tones import (
    BUSY,
    DIAL_TONE,
    RING,
    RINGBACK,
    NoiseGenerator,
    ToneError,
    ToneGenerator,
    ToneSpec,
    active_level,
    dtmf_spec,
    goertzel,
    rms_dbov,
)


def sine(freq: float, rate: int, n: int, peak: float, phase: float = 0.0) -> bytes:
    w = 2 * math.pi * freq / rate
    return array("h", [round(peak * math.sin(w * i + phase)) for i in range(n)]).tobytes()


def frames(gen: ToneGenerator, count: int) -> list[bytes]:
    return [gen.frame() for _ in range(count)]


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_dial_tone_is_350_plus_440_and_nothing_else(rate: int) -> None:
    pcm = b"".join(frames(ToneGenerator(DIAL_TONE, rate), 5))  # 100 ms: whole cycles of both
    assert len(pcm) == 2 * rate // 10
    p350, p440 = goertzel(pcm, rate, 350), goertzel(pcm, rate, 440)
    # -16 dBov per component: mean square (32768 * 10**(-16/20))**2.
    expected = (32768 * 10 ** (-16 / 20)) ** 2
    assert p350 == pytest.approx(expected, rel=0.05)
    assert p440 == pytest.approx(expected, rel=0.05)
    for other in (300, 400, 480, 620, 1000):
        assert goertzel(pcm, rate, other) < expected / 1000


def test_frames_are_phase_continuous() -> None:
    pcm = b"".join(frames(ToneGenerator(dtmf_spec("7"), 48000), 60))  # 1.2 s, past the loop
    low, high = tones.DTMF_FREQUENCIES["7"]
    peak_low = 32768 * math.sqrt(2) * 10 ** (-13 / 20)
    peak_high = 32768 * math.sqrt(2) * 10 ** (-11 / 20)
    n = len(pcm) // 2
    reference = array("h", sine(low, 48000, n, peak_low))
    other = array("h", sine(high, 48000, n, peak_high))
    got = array("h", pcm)
    assert max(abs(g - a - b) for g, a, b in zip(got, reference, other, strict=True)) <= 2


def test_cadences_ringback_busy_ring() -> None:
    for spec, on_frames, off_frames in ((RINGBACK, 100, 200), (BUSY, 25, 25), (RING, 100, 200)):
        gen = ToneGenerator(spec, 8000)
        levels = [rms_dbov(f) for f in frames(gen, 2 * (on_frames + off_frames))]
        sounding = [level > -60 for level in levels]
        assert sounding == ([True] * on_frames + [False] * off_frames) * 2
    ring = ToneGenerator(RING, 8000).frame()
    ringback = ToneGenerator(RINGBACK, 8000).frame()
    assert rms_dbov(ring) > rms_dbov(ringback) + 10


def test_busy_tone_frequencies() -> None:
    pcm = b"".join(frames(ToneGenerator(BUSY, 8000), 5))
    assert goertzel(pcm, 8000, 480) > 1000 * goertzel(pcm, 8000, 350)
    assert goertzel(pcm, 8000, 620) > 1000 * goertzel(pcm, 8000, 440)


@pytest.mark.parametrize("key", list("0123456789*#ABCD"))
def test_dtmf_pairs(key: str) -> None:
    low, high = tones.DTMF_FREQUENCIES[key]
    pcm = b"".join(frames(ToneGenerator(dtmf_spec(key), 8000), 5))
    p_low, p_high = goertzel(pcm, 8000, low), goertzel(pcm, 8000, high)
    assert p_high > p_low  # twist: the high group is louder
    for freq in (697, 770, 852, 941, 1209, 1336, 1477, 1633):
        if freq not in (low, high):
            assert goertzel(pcm, 8000, freq) < p_low / 100


def test_reset_starts_again() -> None:
    gen = ToneGenerator(BUSY, 8000)
    first = gen.frame()
    gen.frame()
    gen.reset()
    assert gen.frame() == first


def test_bad_tones_are_refused() -> None:
    with pytest.raises(ToneError, match="not a DTMF key"):
        dtmf_spec("E")
    with pytest.raises(ToneError, match="cannot be made at 8000 Hz"):
        ToneGenerator(ToneSpec(((5000, -10.0),)), 8000)
    with pytest.raises(ToneError, match="whole 20 ms frames"):
        ToneGenerator(ToneSpec(((440, -10.0),), (30, 20)), 8000)
    with pytest.raises(ToneError, match="whole number of samples"):
        ToneGenerator(DIAL_TONE, 8000, frame_ms=0)
    with pytest.raises(ToneError, match="noise level"):
        NoiseGenerator(3.0)


@pytest.mark.parametrize("level", [-20.0, -45.0, -70.0])
def test_noise_has_the_asked_level_and_is_white(level: float) -> None:
    gen = NoiseGenerator(level, 8000, seed=7)
    pcm = b"".join(gen.frame() for _ in range(25))
    assert rms_dbov(pcm) == pytest.approx(level, abs=0.6)
    # White: similar power at low and high frequencies (within a factor of 10 on 0.5 s).
    low = sum(goertzel(pcm, 8000, f) for f in (300, 500, 700))
    high = sum(goertzel(pcm, 8000, f) for f in (2900, 3100, 3300))
    assert 0.1 < low / high < 10


def test_noise_at_127_is_silence() -> None:
    assert NoiseGenerator(-127.0, 8000).frame() == bytes(320)


def test_level_helpers() -> None:
    full_square = array("h", [32767, -32768] * 80).tobytes()
    assert rms_dbov(full_square) == pytest.approx(0.0, abs=0.01)
    assert active_level(full_square) == 0
    full_sine = sine(1000, 8000, 160, 32767)
    assert rms_dbov(full_sine) == pytest.approx(-3.01, abs=0.05)
    assert rms_dbov(bytes(320)) == -127.0
    assert active_level(bytes(320)) == 127
    assert active_level(sine(1000, 8000, 160, 327.68 * math.sqrt(2))) == 40
    assert rms_dbov(b"") == -127.0
    with pytest.raises(ToneError, match="odd length"):
        rms_dbov(b"\x01")


def test_goertzel_measures_a_sine_off_bin() -> None:
    pcm = sine(1004.3, 8000, 800, 10000)
    assert goertzel(pcm, 8000, 1004.3) == pytest.approx(10000**2 / 2, rel=0.01)
    assert goertzel(b"", 8000, 1000) == 0.0


def test_no_tone_clips() -> None:
    for spec in (DIAL_TONE, RINGBACK, BUSY, RING, *(dtmf_spec(k) for k in "1D*#")):
        pcm = b"".join(frames(ToneGenerator(spec, 16000), 50))
        assert max(map(abs, array("h", pcm))) < 32000
