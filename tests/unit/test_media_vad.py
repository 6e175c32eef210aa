"""Voice activity detection (ript.media.vad): speech, silence, a noisy room, hangover, cost."""

from __future__ import annotations

import time
from array import array

import pytest

from ript.media.tones import NoiseGenerator, ToneGenerator, ToneSpec
from ript.media.vad import EnergyVad


def mix(a: bytes, b: bytes) -> bytes:
    return array("h", (x + y for x, y in zip(array("h", a), array("h", b), strict=True))).tobytes()


def _voice(level: float = -20.0) -> ToneGenerator:
    return ToneGenerator(ToneSpec(((200, level), (400, level - 6))), 8000, 20)


def test_speech_is_active_and_silence_ends_after_the_hangover() -> None:
    vad = EnergyVad(20, hangover_ms=200)
    voice = _voice()
    assert all(vad(voice.frame()) for _ in range(20))
    quiet = [vad(bytes(320)) for _ in range(15)]
    assert quiet[:10] == [True] * 10  # 200 ms of hangover: word endings are kept
    assert quiet[10:] == [False] * 5
    assert vad.level_dbov == -127.0


def test_a_noisy_room_becomes_background_and_a_voice_over_it_is_speech() -> None:
    vad = EnergyVad(20)
    room = NoiseGenerator(-45.0, 8000, 20, seed=3)
    decisions = [vad(room.frame()) for _ in range(1000)]  # 20 s of a fan
    assert not any(decisions[-250:])  # background after a few seconds, for good
    assert -48.0 < vad.floor_dbov < -42.0
    voice = _voice(-25.0)
    assert all(vad(mix(room.frame(), voice.frame())) for _ in range(10))


@pytest.mark.parametrize("frame_ms", [10, 20, 40, 60])
def test_a_quiet_microphone_is_never_speech(frame_ms: int) -> None:
    vad = EnergyVad(frame_ms)
    hiss = NoiseGenerator(-70.0, 8000, frame_ms, seed=1)
    vad(bytes(16 * frame_ms))
    assert not any(vad(hiss.frame()) for _ in range(50))


def test_a_frame_costs_little() -> None:
    vad = EnergyVad(20)
    frame = _voice().frame()
    started = time.perf_counter()
    for _ in range(500):
        vad(frame)
    per_frame = (time.perf_counter() - started) / 500
    assert per_frame < 200e-6  # about 10 µs on the development machine
