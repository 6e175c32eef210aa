"""Playback volume as decoder gain: libopus's OPUS_SET_GAIN and gain folded into G.711 tables."""

from __future__ import annotations

import pytest

from ript.media.g711 import ulaw_decode, ulaw_decoder, ulaw_encode
from ript.media.opus_codec import OpusCodecError, OpusDecoder, OpusEncoder
from ript.media.tones import ToneGenerator, ToneSpec, rms_dbov

TONE = ToneSpec(((1000, -20.0),))


@pytest.mark.parametrize("gain", [-12.0, -6.0, 3.0])
def test_opus_decoder_gain_changes_the_level_by_that_many_db(gain: float) -> None:
    tone = ToneGenerator(TONE, 48000)
    encoder, plain, louder = OpusEncoder(48000), OpusDecoder(48000), OpusDecoder(48000)
    louder.set_gain(gain)
    for _ in range(25):  # past the encoder's start-up
        packet = encoder.encode(tone.frame())
        a, b = plain.decode(packet), louder.decode(packet)
    assert rms_dbov(b) - rms_dbov(a) == pytest.approx(gain, abs=0.2)


def test_opus_gain_out_of_range() -> None:
    with pytest.raises(OpusCodecError, match=r"-128\.\.128 dB"):
        OpusDecoder(48000).set_gain(200.0)


@pytest.mark.parametrize("gain", [-21.0, -6.0, 0.0, 6.0])
def test_ulaw_decoder_gain(gain: float) -> None:
    payload = ulaw_encode(ToneGenerator(TONE, 8000).frame())
    level = rms_dbov(ulaw_decoder(gain)(payload)) - rms_dbov(ulaw_decode(payload))
    assert level == pytest.approx(gain, abs=0.1)


def test_ulaw_gain_clips_at_full_scale_instead_of_wrapping() -> None:
    loud = ulaw_encode(ToneGenerator(ToneSpec(((1000, -1.0),)), 8000).frame())
    out = ulaw_decoder(20.0)(loud)
    samples = [int.from_bytes(out[i : i + 2], "little", signed=True) for i in range(0, len(out), 2)]
    assert max(samples) == 32767
    assert min(samples) == -32768
