"""Opus through real libopus (ript.media.opus_codec): spectrum, PLC, FEC, errors.

The module calls opus_encode / opus_decode through its own ctypes prototypes;
opuslib's wrappers over the same states are the reference it must match byte for byte.
"""

from __future__ import annotations

import opuslib.api.ctl
import opuslib.api.encoder
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.media.opus_codec import OpusCodecError, OpusDecoder, OpusEncoder
from ript.media.tones import NoiseGenerator, ToneGenerator, ToneSpec, dtmf_spec, goertzel, rms_dbov

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


def lose_frame_20(fec: bool, enc: OpusEncoder | None = None) -> tuple[bytes, bytes]:
    """1 kHz for 400 ms, then 600 Hz; frame 20 (the first 600 Hz one) is lost.

    Returns (decode_fec of packet 21, PLC) from two decoders that saw packets 0..19.
    """
    enc = enc or OpusEncoder(bitrate=32000, fec=fec, expected_loss_pct=20)
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


def varied_frames() -> list[bytes]:
    """Something less tidy than one sine: tones that change, a DTMF pair, noise, silence."""
    frames = sine_frames(8, 440) + sine_frames(6, 1800)
    dtmf = ToneGenerator(dtmf_spec("5"), RATE)
    frames += [dtmf.frame() for _ in range(6)]
    noise = NoiseGenerator(-30.0, RATE, seed=12)
    frames += [noise.frame() for _ in range(6)]
    return [*frames, bytes(FRAME), bytes(FRAME), *sine_frames(6, 250)]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"fec": False, "expected_loss_pct": 0, "complexity": 3},
        {"bitrate": 12000, "dtx": True, "complexity": 10},
    ],
)
def test_encode_gives_the_same_packets_as_opuslibs_own_wrapper(options: dict[str, int]) -> None:
    ours, reference = OpusEncoder(**options), OpusEncoder(**options)
    frames = varied_frames()
    packets = [ours.encode(f) for f in frames]
    # opuslib's Encoder.encode over an identically set up state: the path this module replaced.
    expected = [bytes(reference._encoder.encode(f, reference.frame_samples)) for f in frames]
    assert packets == expected
    assert all(type(p) is bytes for p in packets)


def test_decode_conceal_and_fec_give_the_same_pcm_as_opuslibs_own_wrapper() -> None:
    enc = OpusEncoder(expected_loss_pct=20)
    packets = [enc.encode(f) for f in varied_frames()]
    ours, reference = OpusDecoder(), OpusDecoder()
    wrapper = reference._decoder  # opuslib.Decoder: returns PCM built through a list of ints

    def theirs(packet: bytes, fec: bool = False) -> bytes:
        return bytes(wrapper.decode(packet, reference.frame_samples, decode_fec=fec))

    got: list[bytes] = []
    expected: list[bytes] = []
    for i, packet in enumerate(packets):
        if i % 7 == 3:  # lost: rebuilt from the next packet's FEC
            got.append(ours.decode_fec(packets[i + 1]))
            expected.append(theirs(packets[i + 1], fec=True))
        elif i % 7 == 5:  # lost, nothing after it yet: concealed
            got.append(ours.conceal())
            expected.append(theirs(b""))
        else:
            got.append(ours.decode(packet))
            expected.append(theirs(packet))
    assert got == expected
    assert all(type(p) is bytes and len(p) == FRAME for p in got)
    assert len(set(got)) > len(got) // 2  # real audio, not one frame over and over


def test_returned_frames_and_packets_do_not_share_a_buffer() -> None:
    enc, dec = OpusEncoder(), OpusDecoder()
    p1 = enc.encode(sine_frames(1, 1000)[0])
    kept_p1 = bytes(bytearray(p1))
    p2 = enc.encode(NoiseGenerator(-10.0, RATE, seed=1).frame())
    assert p1 == kept_p1 != p2
    a = dec.decode(p1)
    kept_a = bytes(bytearray(a))
    b = dec.decode(p2)
    c = dec.conceal()
    assert a == kept_a
    assert a != b != c
    assert a is not b and b is not c


def packet_loss_setting(enc: OpusEncoder) -> int:
    return int(opuslib.api.encoder.encoder_ctl(enc._state, opuslib.api.ctl.get_packet_loss_perc))


def test_set_packet_loss_reaches_libopus_and_is_range_checked() -> None:
    enc = OpusEncoder(expected_loss_pct=10)
    assert packet_loss_setting(enc) == 10
    for pct in (0, 37, 100):
        enc.set_packet_loss(pct)
        assert packet_loss_setting(enc) == pct
    for bad in (-1, 101):
        with pytest.raises(OpusCodecError, match=rf"expected loss must be 0\.\.100 %, got {bad}"):
            enc.set_packet_loss(bad)
    assert packet_loss_setting(enc) == 100


def test_set_packet_loss_skips_the_ctl_when_nothing_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    enc = OpusEncoder(expected_loss_pct=10)
    calls: list[int] = []
    real = opuslib.api.encoder.encoder_ctl

    def counting(state: object, request: object, value: int) -> object:
        calls.append(value)
        return real(state, request, value)

    monkeypatch.setattr(opuslib.api.encoder, "encoder_ctl", counting)
    enc.set_packet_loss(10)
    enc.set_packet_loss(15)
    enc.set_packet_loss(15)
    enc.set_packet_loss(0)
    assert calls == [15, 0]


def test_set_packet_loss_turns_in_band_fec_on_and_off_mid_stream() -> None:
    # FEC is on in both; only the expected loss decides whether libopus spends bits on it.
    turned_on = OpusEncoder(fec=True, expected_loss_pct=0)
    turned_on.set_packet_loss(20)
    rebuilt, concealed = lose_frame_20(True, turned_on)
    assert goertzel(rebuilt, RATE, 600) > 2 * goertzel(rebuilt, RATE, 1000)
    assert goertzel(concealed, RATE, 1000) > 100 * goertzel(concealed, RATE, 600)

    turned_off = OpusEncoder(fec=True, expected_loss_pct=20)
    turned_off.set_packet_loss(0)
    rebuilt, concealed = lose_frame_20(True, turned_off)
    assert rebuilt == concealed  # no FEC in the packets: decode_fec falls back to PLC
