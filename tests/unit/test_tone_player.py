"""TonePlayer through alsa-lib's file plugin: the right tone lands in the playback file."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from alsa.fileplugin import write_asoundrc
from ript.media.tones import goertzel
from riptphone.hw.tone_player import TonePlayer

RATE = 8000


def _played(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> bytes:
    alsa = write_asoundrc(tmp_path)
    monkeypatch.setenv("ALSA_CONFIG_PATH", alsa.config_path)
    player = TonePlayer(alsa.playback_device, rate=RATE)
    assert player.play(name)
    assert player.playing == name
    deadline = time.monotonic() + 10
    # The playback thread paces itself; wait for a few frames to be written.
    while time.monotonic() < deadline:
        if alsa.playback_file.exists() and alsa.playback_file.stat().st_size >= RATE:
            break
        time.sleep(0.02)
    player.play(None)
    assert player.playing is None
    return alsa.playback_file.read_bytes()


@pytest.mark.parametrize(
    ("name", "present", "absent"),
    [("dial", (350, 440), 480), ("busy", (480, 620), 350), ("ringback", (440, 480), 620)],
)
def test_each_tone_has_its_frequencies(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    present: tuple[int, int],
    absent: int,
) -> None:
    pcm = _played(tmp_path, monkeypatch, name)[: RATE * 2 // 2]  # the first 0.5 s: tone on
    quiet = goertzel(pcm, RATE, absent)
    for freq in present:
        assert goertzel(pcm, RATE, freq) > 100 * max(quiet, 1.0)


def test_stopping_twice_and_unknown_names(tmp_path: Path) -> None:
    player = TonePlayer("unused")
    assert player.play(None)
    player.close()
    with pytest.raises(ValueError, match="no tone called 'chirp'"):
        player.play("chirp")


def test_a_missing_device_is_logged_once_and_the_phone_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    player = TonePlayer("no_such_pcm_device", rate=RATE)
    with caplog.at_level(logging.WARNING):
        assert not player.play("dial")
        assert not player.play("dial")
        assert not player.play("busy")
    lines = [r for r in caplog.records if "tone_unavailable" in r.getMessage()]
    assert len(lines) == 1
    assert "no_such_pcm_device" in lines[0].getMessage()
    assert player.playing is None
