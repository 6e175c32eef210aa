"""G.711 packet-loss concealment (ript.media.plc) and its place in the G.711 decoder."""

from __future__ import annotations

import math
import time
from array import array

from ript.media import codecs
from ript.media.g711 import alaw_encode
from ript.media.plc import PitchRepeat
from ript.media.tones import ToneGenerator, ToneSpec


def _voice(frames: int, frame_samples: int = 160) -> list[bytes]:
    """A 200 Hz tone with its second harmonic: voiced speech at its simplest."""
    tone = ToneGenerator(ToneSpec(((200, -12.0), (400, -18.0))), 8000, frame_samples // 8)
    return [tone.frame() for _ in range(frames)]


def _snr_db(reference: bytes, guess: bytes) -> float:
    ref, got = array("h", reference), array("h", guess)
    signal = sum(x * x for x in ref)
    noise = sum((x - y) ** 2 for x, y in zip(ref, got, strict=True)) or 1
    return 10 * math.log10(signal / noise)


def test_a_lost_voiced_frame_continues_the_waveform() -> None:
    frames = _voice(10)
    plc = PitchRepeat(8000, 160)
    for pcm in frames[:5]:
        plc.good(pcm)
    guess = plc.conceal()
    assert len(guess) == 320
    # The repeat of the last pitch period follows the true signal closely (the first 10 ms
    # at full level, then the fade), far better than the silence it replaces (0 dB).
    assert _snr_db(frames[5][:160], guess[:160]) > 20
    assert _snr_db(frames[5], guess) > 3


def test_a_long_loss_fades_to_silence_within_60_ms() -> None:
    plc = PitchRepeat(8000, 160)
    for pcm in _voice(4):
        plc.good(pcm)
    run = [array("h", plc.conceal()) for _ in range(5)]
    levels = [max(abs(x) for x in frame) for frame in run]
    assert levels[0] > levels[1] > levels[2] > 0  # fading
    assert levels[3:] == [0, 0]  # from 60 ms on: silence, not a buzz
    plc.good(_voice(1)[0])  # a good frame ends the run: the next loss repeats again
    assert max(abs(x) for x in array("h", plc.conceal())) > 0


def test_silence_is_concealed_with_silence() -> None:
    plc = PitchRepeat(8000, 80)
    plc.good(bytes(160))
    assert plc.conceal() == bytes(160)
    assert PitchRepeat(8000, 160).conceal() == bytes(320)  # nothing heard yet


def test_the_g711_decoder_conceals_with_the_last_pitch_and_costs_little() -> None:
    pcma = codecs.find("PCMA")
    assert pcma is not None and pcma.new_decoder is not None
    decoder = pcma.new_decoder(20)
    frames = _voice(6)
    for pcm in frames[:5]:
        decoder.decode(alaw_encode(pcm))
    started = time.perf_counter()
    guess = decoder.conceal()
    cost = time.perf_counter() - started
    assert _snr_db(frames[5][:160], guess[:160]) > 15  # A-law's own noise included
    assert cost < 0.02  # one pitch search per run of losses (about 1 ms on x86)
