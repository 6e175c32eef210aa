"""Opus through real libopus (ript.media.opus_codec): spectrum, PLC, FEC, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.media.opus_codec import OpusCodecError, OpusDecoder, OpusEncoder
from ript.media.tones import ToneGenerator, ToneSpec, goertzel, rms_dbov

RATE = 48000
FRAME = 1920  # bytes: 960 samples of 20 ms at 48 kHz


def sine_frames(count: int, freq: int = 1000, rate: int = RATE) -> list[bytes]:
    gen = ToneGenerator(ToneSpec(((freq, -12.0),)), rate)
    return [gen.frame() for _ in range(count)]


def test_a_1khz_sine_survives_encode_and_decode() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    out = b"".join(dec.decode(enc.encode(f)) for f in sine_frames(25))
    steady = out[10 * FRAME :]  # past the codec's start-up
    p1k = goertzel(steady, RATE, 1000)
    assert p1k == pytest.approx((32768 * 10 ** (-12 / 20)) ** 2, rel=0.3)
    for other in (300, 700, 1500, 2000, 3000):
        assert goertzel(steady, RATE, other) < p1k / 1000
    assert rms_dbov(steady) == pytest.approx(-12.0, abs=1.0)


def test_16khz_works_too() -> None:
    enc, dec = OpusEncoder(16000, 24000), OpusDecoder(16000)
    out = b"".join(dec.decode(enc.encode(f)) for f in sine_frames(15, 700, 16000))
    steady = out[10 * 640 :]
    assert goertzel(steady, 16000, 700) > 1000 * goertzel(steady, 16000, 1400)


def test_plc_fills_a_lost_frame_with_the_right_length() -> None:
    enc, dec = OpusEncoder(fec=False), OpusDecoder()
    packets = [enc.encode(f) for f in sine_frames(12)]
    for p in packets[:10]:
        dec.decode(p)
    concealed = dec.conceal()
    assert len(concealed) == FRAME
    # PLC continues the tone instead of going silent.
    assert goertzel(concealed, RATE, 1000) > 100 * goertzel(concealed, RATE, 2500)
    assert len(dec.decode(packets[11])) == FRAME


def lose_frame_20(fec: bool) -> tuple[bytes, bytes]:
    """1 kHz for 400 ms, then 600 Hz; frame 20 (the first 600 Hz one) is lost.

    Returns (decode_fec of packet 21, PLC) from two decoders that saw packets 0..19.
    """
    enc = OpusEncoder(bitrate=32000, fec=fec, expected_loss_pct=20)
    packets = [enc.encode(f) for f in sine_frames(20, 1000) + sine_frames(10, 600)]
    with_fec, plain = OpusDecoder(), OpusDecoder()
    for p in packets[:20]:
        with_fec.decode(p)
        plain.decode(p)
    rebuilt = with_fec.decode_fec(packets[21])
    assert len(with_fec.decode(packets[21])) == FRAME  # and the next frame decodes as usual
    return rebuilt, plain.conceal()


def test_fec_rebuilds_a_lost_frame_from_the_next_packet() -> None:
    rebuilt, concealed = lose_frame_20(fec=True)
    assert len(rebuilt) == len(concealed) == FRAME
    # PLC can only continue what it heard (1 kHz); FEC carries the lost frame's 600 Hz.
    assert goertzel(concealed, RATE, 1000) > 100 * goertzel(concealed, RATE, 600)
    assert goertzel(rebuilt, RATE, 600) > 2 * goertzel(rebuilt, RATE, 1000)


def test_without_fec_decode_fec_falls_back_to_plc() -> None:
    rebuilt, concealed = lose_frame_20(fec=False)
    assert rebuilt == concealed
    assert goertzel(rebuilt, RATE, 1000) > 100 * goertzel(rebuilt, RATE, 600)


def test_wrong_frame_sizes_and_settings_are_refused() -> None:
    enc = OpusEncoder()
    with pytest.raises(
        OpusCodecError, match=r"must be 1920 bytes \(960 samples at 48000 Hz\), got 320"
    ):
        enc.encode(bytes(320))
    with pytest.raises(OpusCodecError, match="not 44100"):
        OpusEncoder(44100)
    with pytest.raises(OpusCodecError, match="not 25"):
        OpusDecoder(frame_ms=25)
    with pytest.raises(OpusCodecError, match="bitrate"):
        OpusEncoder(bitrate=100)
    with pytest.raises(OpusCodecError, match=r"1\.\.1275 bytes, got 0"):
        OpusDecoder().decode(b"")


def test_a_packet_of_another_duration_is_refused() -> None:
    ten_ms = OpusEncoder(frame_ms=10).encode(bytes(960))
    with pytest.raises(OpusCodecError, match="holds 480 samples, expected 960"):
        OpusDecoder().decode(ten_ms)


@settings(max_examples=200)
@given(st.binary(min_size=0, max_size=1400))
def test_any_bytes_decode_or_raise_the_module_error(packet: bytes) -> None:
    dec = OpusDecoder()
    try:
        pcm = dec.decode(packet)
    except OpusCodecError:
        return
    assert len(pcm) == FRAME
