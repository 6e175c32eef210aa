"""The shared utilities of ``ript``: the codec table, the atomic write, the back-off, TOML."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from ript.atomic import TEMP_MARK, atomic_write
from ript.backoff import Backoff, BackoffPolicy
from ript.media import codecs
from ript.media.tones import ToneGenerator, ToneSpec
from ript.protocol.chunks import PayloadType
from ript.tomlcheck import TomlError, check_keys, check_sections, read_toml


@pytest.mark.parametrize(
    ("name", "payload_type", "rate"),
    [
        ("opus", PayloadType.OPUS, 48000),
        ("PCMU", PayloadType.PCMU, 8000),
        ("pcma", PayloadType.PCMA, 8000),
    ],
)
def test_each_audio_codec_round_trips_a_tone(
    name: str, payload_type: PayloadType, rate: int
) -> None:
    codec = codecs.find(name)
    assert codec is not None and codec.audio
    assert codec.payload_type is payload_type and codec.clock_rate == rate
    assert codecs.by_payload_type(int(payload_type)) is codec
    assert codec.new_encoder is not None and codec.new_decoder is not None
    encoder, decoder = codec.new_encoder(20), codec.new_decoder(20)
    tone = ToneGenerator(ToneSpec(((1000, -10.0),)), rate)
    frames = [tone.frame() for _ in range(5)]
    assert all(len(f) == codec.frame_bytes(20) for f in frames)
    decoded = [decoder.decode(encoder.encode(f)) for f in frames]
    assert all(len(d) == codec.frame_bytes(20) for d in decoded)
    assert any(d != bytes(len(d)) for d in decoded)
    assert len(decoder.conceal()) == codec.frame_bytes(20)
    loud = codec.new_decoder(20)
    loud.set_gain(6.0)
    assert loud.decode(encoder.encode(frames[-1])) != decoded[-1]


def test_event_and_noise_codecs_carry_no_audio() -> None:
    for name in ("telephone-event", "CN"):
        codec = codecs.find(name)
        assert codec is not None and not codec.audio
    assert codecs.find("G729") is None
    assert {c.name.lower() for c in codecs.audio_codecs()} == {"opus", "pcmu", "pcma"}


def test_atomic_write_sets_the_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    old = os.umask(0)
    try:
        atomic_write(target, b"one", 0o600)
        atomic_write(target, b"two", 0o644)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    atomic_write(target, b"old")
    taken = tmp_path / f".f{TEMP_MARK}x"
    taken.write_bytes(b"")
    with pytest.raises(FileExistsError):
        atomic_write(target, b"new", temp=taken)
    assert target.read_bytes() == b"old"


def test_backoff_doubles_to_its_maximum_and_jitter_only_lengthens() -> None:
    policy = BackoffPolicy(2.0, 64.0, jitter=0.1)
    floors = [2, 4, 8, 16, 32, 64, 64]
    backoff = Backoff(policy, random.Random(3))
    for floor in floors:
        assert floor <= backoff.next_delay() <= floor * 1.1
    backoff.reset()
    assert backoff.attempts == 0 and 2.0 <= backoff.next_delay() <= 2.2
    assert BackoffPolicy(1.0, 60.0).delay(3, 0.99) == 8.0
    assert BackoffPolicy(1.0, 60.0).delay(10_000) == 60.0
    for bad in ((0.0, 1.0, 0.0), (2.0, 1.0, 0.0), (1.0, 2.0, 1.5)):
        with pytest.raises(ValueError):
            BackoffPolicy(*bad)


def test_toml_reader_names_the_fault(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"[a]\nx = 1\n")
    doc = read_toml(path)
    check_sections(doc, ["a", "b"])
    assert check_keys("a", doc["a"], ["x"]) == {"x": 1}
    with pytest.raises(TomlError, match=r"\[a\] x: unknown key \(known: y\)"):
        check_keys("a", doc["a"], ["y"])
    with pytest.raises(TomlError, match=r"\[a\]: unknown section"):
        check_sections(doc, ["b"])
    with pytest.raises(TomlError, match=r"\[a\]: must be a table"):
        check_keys("a", 3, ["x"])
    path.write_bytes(b"\xff")
    with pytest.raises(TomlError, match="not UTF-8"):
        read_toml(path)
    path.write_bytes(b"[a")
    with pytest.raises(TomlError, match="not valid TOML"):
        read_toml(path)
    with pytest.raises(TomlError, match="cannot read"):
        read_toml(tmp_path / "missing.toml")
