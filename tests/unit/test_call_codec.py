"""The call's codec: the advertisement from ``[audio]``, the plan from a directive, the coders."""

from __future__ import annotations

import dataclasses
import math
from array import array
from pathlib import Path

import pytest

from ript.media.tones import ToneGenerator, ToneSpec, goertzel
from ript.protocol.advertisement import format_advertisement, parse_advertisement
from ript.protocol.chunks import PayloadType
from riptphone.calls.codec import (
    DESKTOP_COMPLEXITY,
    PI_COMPLEXITY,
    CallCodec,
    CodecSettings,
    MediaError,
    MediaPlan,
    board_complexity,
    choose,
    codec_settings,
    configured_advertisement,
)
from riptphone.config import ConfigError, load_config


def test_the_advertisement_follows_the_configured_codecs_and_ptime() -> None:
    text = format_advertisement(configured_advertisement(CodecSettings(("PCMA", "opus"), 40)))
    line = "PCMA,ptime=40; opus,ptime=40; telephone-event; CN;"
    assert text == f"1 in: {line}\n1 out: {line}"
    assert parse_advertisement(text) == configured_advertisement(
        CodecSettings(("PCMA", "opus"), 40)
    )


def test_the_default_advertisement_is_every_codec_at_20_ms() -> None:
    text = format_advertisement(configured_advertisement(CodecSettings()))
    line = "opus,ptime=20; PCMU,ptime=20; PCMA,ptime=20; telephone-event; CN;"
    assert text == f"1 in: {line}\n1 out: {line}"


@pytest.mark.parametrize(
    ("directive", "ptime", "plan"),
    [
        (
            "1 to 1: opus,ptime=20; telephone-event; CN;",
            20,
            MediaPlan(1, 1, "opus", 20, True, True),
        ),
        ("1 to 1: PCMA,ptime=40; telephone-event;", 60, MediaPlan(1, 1, "pcma", 40, True, False)),
        # Left out, ptime is bounded by 30: the largest frame within it is 20.
        ("1 to 1: opus;", 60, MediaPlan(1, 1, "opus", 20, False, False)),
        ("1 to 1: PCMU;", 10, MediaPlan(1, 1, "pcmu", 10, False, False)),
        ("2 to 3: G729; PCMU,ptime=60; CN;", 60, MediaPlan(2, 3, "pcmu", 60, False, True)),
    ],
)
def test_choose_reads_the_stream_codec_and_ptime(
    directive: str, ptime: int, plan: MediaPlan
) -> None:
    assert choose(directive, ptime) == plan


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        (None, "no client directive"),
        ("1 to 1: G729; telephone-event;", "names no stream in opus, pcmu, pcma"),
        ("1 to 1: PCMU,ptime=5;", "ptime 5, below 10 ms"),
        ("1 to: PCMU;", "unreadable"),
    ],
)
def test_a_directive_the_phone_cannot_follow_is_a_clear_error(
    directive: str | None, message: str
) -> None:
    with pytest.raises(MediaError, match=message):
        choose(directive)


def test_auto_complexity_is_low_on_a_raspberry_pi() -> None:
    assert board_complexity("aarch64", "") == PI_COMPLEXITY
    assert board_complexity("armv7l", "") == PI_COMPLEXITY
    assert board_complexity("x86_64", "Model\t: Raspberry Pi Zero 2 W Rev 1.0\n") == PI_COMPLEXITY
    assert board_complexity("x86_64", "model name\t: AMD EPYC\n") == DESKTOP_COMPLEXITY
    assert PI_COMPLEXITY < DESKTOP_COMPLEXITY


def _config(tmp_path: Path, audio: str) -> Path:
    path = tmp_path / "phone.toml"
    path.write_text(f'[provider]\ndomain = "p.example"\n[audio]\n{audio}\n')
    return path


def test_opus_complexity_is_a_number_or_auto(tmp_path: Path) -> None:
    auto = load_config(_config(tmp_path, 'opus_complexity = "auto"')).audio
    assert codec_settings(auto).opus_complexity == board_complexity()
    fixed = load_config(_config(tmp_path, "opus_complexity = 5\nptime = 40")).audio
    assert (codec_settings(fixed).opus_complexity, codec_settings(fixed).ptime) == (5, 40)
    with pytest.raises(ConfigError, match=r'opus_complexity: must be 0 to 10 or "auto", not 11'):
        load_config(_config(tmp_path, "opus_complexity = 11"))
    with pytest.raises(
        ConfigError, match=r"opus_complexity: must be 0 to 10 or \"auto\", not 'max'"
    ):
        load_config(_config(tmp_path, 'opus_complexity = "max"'))


@pytest.mark.parametrize(("name", "rate"), [("pcma", 8000), ("pcmu", 8000), ("opus", 48000)])
@pytest.mark.parametrize("ptime", [10, 20, 40, 60])
def test_each_codec_codes_a_tone_at_each_ptime(name: str, rate: int, ptime: int) -> None:
    codec = CallCodec(name, ptime, CodecSettings(opus_complexity=1))
    assert codec.payload_type is PayloadType[name.upper()]
    tone = ToneGenerator(ToneSpec(((1000, -10.0),)), rate, ptime)
    out = b"".join(codec.decode(codec.encode(tone.frame())) for _ in range(200 // ptime))
    assert len(out) == 2 * rate * (200 // ptime) * ptime // 1000
    tail = out[len(out) // 2 :]
    assert goertzel(tail, rate, 1000) > 100 * goertzel(tail, rate, 440)


def _snr(reference: bytes, guess: bytes) -> float:
    ref, got = array("h", reference), array("h", guess)
    signal = sum(x * x for x in ref) or 1
    noise = sum((x - y) ** 2 for x, y in zip(ref, got, strict=True)) or 1
    return 10 * math.log10(signal / noise)


def test_opus_fec_rebuilds_a_lost_frame_better_than_concealment() -> None:
    # A voiced sound (200 Hz and harmonics) through the call's Opus settings, on a path
    # that loses 10 %: in-band FEC.  Frame 12 is lost; its FEC copy rides in frame 13.
    spec = ToneSpec(((200, -14.0), (400, -18.0), (600, -22.0), (800, -26.0)))
    tone = ToneGenerator(spec, 48000, 20)
    sender = CallCodec("opus", 20, CodecSettings(opus_bitrate=24000, opus_complexity=5))
    assert sender.adapts_to_loss
    sender.expect_loss(10)
    packets = [sender.encode(tone.frame()) for _ in range(16)]
    clean = CallCodec("opus", 20)
    reference = [clean.decode(p) for p in packets]
    with_fec, with_plc = CallCodec("opus", 20), CallCodec("opus", 20)
    for p in packets[:12]:
        with_fec.decode(p)
        with_plc.decode(p)
    rebuilt = with_fec.recover(packets[13])
    concealed = with_plc.conceal()
    assert _snr(reference[12], rebuilt) > _snr(reference[12], concealed) + 3
    assert _snr(reference[12], rebuilt) > 5


def test_opus_sends_no_fec_data_before_the_path_shows_loss() -> None:
    # The same sound, but the encoder has not been told of any loss (a clean path, or
    # the call's first second): frame 13 carries no copy of frame 12.
    sender = CallCodec("opus", 20, CodecSettings(opus_bitrate=24000, opus_complexity=5))
    assert _lost_frame_is_only_concealed(sender)


def _lost_frame_is_only_concealed(sender: CallCodec) -> bool:
    """Frame 12 of a voiced sound lost: is "recovering" it from frame 13 plain PLC?"""
    spec = ToneSpec(((200, -14.0), (400, -18.0), (600, -22.0), (800, -26.0)))
    tone = ToneGenerator(spec, 48000, 20)
    packets = [sender.encode(tone.frame()) for _ in range(16)]
    with_next, with_plc = CallCodec("opus", 20), CallCodec("opus", 20)
    for p in packets[:12]:
        with_next.decode(p)
        with_plc.decode(p)
    return with_next.recover(packets[13]) == with_plc.conceal()


def test_opus_fec_false_sends_no_fec_data(tmp_path: Path) -> None:
    # [audio] opus_fec = false (baresip's default, for a like-with-like comparison):
    # the next packet carries no copy of a lost frame, so "recovering" it from there is
    # libopus's plain concealment, sample for sample.
    settings = codec_settings(load_config(_config(tmp_path, "opus_fec = false")).audio)
    assert settings.opus_fec is False
    sender = CallCodec("opus", 20, dataclasses.replace(settings, opus_complexity=5))
    sender.expect_loss(10)  # told of loss, but without FEC it has nothing to add
    assert _lost_frame_is_only_concealed(sender)
