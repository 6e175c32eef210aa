"""Integer-ratio resampling (ript.media.resample)."""

from __future__ import annotations

import pytest

from ript.media.resample import ResampleError, Resampler
from ript.media.tones import ToneGenerator, ToneSpec, goertzel, rms_dbov


def tone(freq: int, rate: int, count: int, level: float = -12.0) -> list[bytes]:
    gen = ToneGenerator(ToneSpec(((freq, level),)), rate)
    return [gen.frame() for _ in range(count)]


@pytest.mark.parametrize(
    ("src", "dst"), [(48000, 8000), (8000, 48000), (48000, 16000), (16000, 48000)]
)
def test_a_voice_band_tone_keeps_its_level_and_frequency(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    out = [r.process(f) for f in tone(1000, src, 10)]
    assert all(len(o) == 2 * dst // 50 for o in out)
    steady = b"".join(out[2:])
    assert rms_dbov(steady) == pytest.approx(-12.0, abs=0.2)
    p = goertzel(steady, dst, 1000)
    assert p == pytest.approx((32768 * 10 ** (-12 / 20)) ** 2, rel=0.05)
    for other in (500, 1500, 2500):
        assert goertzel(steady, dst, other) < p / 1000


def test_frames_join_without_a_seam() -> None:
    # The same signal resampled whole and in 20 ms frames gives the same samples.
    frames = tone(440, 48000, 6)
    r = Resampler(48000, 8000)
    framewise = b"".join(r.process(f) for f in frames)
    whole = Resampler(48000, 8000).process(b"".join(frames))
    assert framewise == whole


def test_content_above_the_new_nyquist_is_filtered_out() -> None:
    r = Resampler(48000, 8000)
    out = b"".join(r.process(f) for f in tone(5000, 48000, 10))[640:]
    # 5 kHz would alias to 3 kHz at 8 kHz; the filter takes it down by over 50 dB.
    assert rms_dbov(out) < -12.0 - 50
    r = Resampler(8000, 48000)
    up = b"".join(r.process(f) for f in tone(1000, 8000, 10))[2 * 1920 :]
    # Interpolation images (7 kHz, 9 kHz) are suppressed.
    p = goertzel(up, 48000, 1000)
    assert goertzel(up, 48000, 7000) < p / 10000
    assert goertzel(up, 48000, 9000) < p / 10000


def test_same_rate_is_a_copy_and_bad_input_is_refused() -> None:
    assert Resampler(8000, 8000).process(b"\x01\x02") == b"\x01\x02"
    with pytest.raises(ResampleError, match="not an integer ratio"):
        Resampler(44100, 48000)
    with pytest.raises(ResampleError, match="whole blocks of 6 samples"):
        Resampler(48000, 8000).process(bytes(10))
    with pytest.raises(ResampleError, match="cannot resample"):
        Resampler(0, 8000)


def test_delay_is_reported() -> None:
    assert Resampler(48000, 8000).delay_samples == pytest.approx(119 / 2 / 6)
    assert Resampler(8000, 48000).delay_samples == pytest.approx(119 / 2)
