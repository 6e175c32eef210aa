"""The provider's far end playing a WAV file: read once, converted, looped; else silence."""

from __future__ import annotations

import logging
import wave
from pathlib import Path

import pytest

from ript.media.tones import ToneGenerator, ToneSpec, goertzel
from riptprovider.far_end_audio import FarEndAudioError, file_frames, load_wav


def _wav(path: Path, rate: int, seconds: float, width: int = 2, channels: int = 1) -> Path:
    tone = ToneGenerator(ToneSpec(((1200, -12.0),)), rate)
    pcm = b"".join(tone.frame() for _ in range(int(seconds * 50)))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(pcm if (width, channels) == (2, 1) else pcm[: len(pcm) // 2 * 2])
    return path


def test_a_file_at_another_rate_is_converted_and_loops(tmp_path: Path) -> None:
    path = _wav(tmp_path / "a.wav", 16000, 0.1)
    pcm = load_wav(str(path), 48000)
    assert len(pcm) % 1920 == 0 and len(pcm) >= 1920
    frames = file_frames(path, 48000)
    got = [frames() for _ in range(len(pcm) // 1920 + 2)]
    assert all(len(f) == 1920 for f in got)
    assert got[len(pcm) // 1920] == got[0]  # back to the start
    assert goertzel(got[1], 48000, 1200) > 100 * goertzel(got[1], 48000, 440)


@pytest.mark.parametrize(
    ("width", "channels", "why"), [(1, 1, "16-bit mono"), (2, 2, "16-bit mono")]
)
def test_other_formats_are_refused_in_one_line(
    tmp_path: Path, width: int, channels: int, why: str
) -> None:
    path = _wav(tmp_path / "b.wav", 8000, 0.1, width, channels)
    with pytest.raises(FarEndAudioError, match=why):
        load_wav(str(path), 8000)


def test_an_unusable_file_plays_silence_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not.wav"
    path.write_bytes(b"RIFF garbage")
    with caplog.at_level(logging.WARNING):
        frames = file_frames(path, 8000)
    assert frames() == bytes(320)
    assert "cannot read the WAV file" in caplog.text
    with caplog.at_level(logging.WARNING):
        file_frames(tmp_path / "missing.wav", 8000)()
    assert "missing.wav" in caplog.text
