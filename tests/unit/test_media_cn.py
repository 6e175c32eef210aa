"""RFC 3389 comfort noise (ript.media.cn)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ript.media.cn import (
    CNError,
    ComfortNoise,
    comfort_noise_source,
    decode_cn,
    encode_cn,
    from_pcm,
)
from ript.media.tones import NoiseGenerator, rms_dbov


def test_payload_is_the_level_byte_then_coefficients() -> None:
    assert encode_cn(ComfortNoise(60)) == b"\x3c"
    assert decode_cn(b"\x3c") == ComfortNoise(60)
    assert decode_cn(b"\x50\x80\x7f") == ComfortNoise(80, b"\x80\x7f")
    assert encode_cn(ComfortNoise(80, b"\x80\x7f")) == b"\x50\x80\x7f"


def test_bad_payloads_are_refused() -> None:
    with pytest.raises(CNError, match="empty"):
        decode_cn(b"")
    with pytest.raises(CNError, match="reserved top bit"):
        decode_cn(b"\x80")
    with pytest.raises(CNError, match=r"0\.\.127"):
        ComfortNoise(128)


def test_level_measured_from_pcm_and_played_back() -> None:
    background = b"".join(NoiseGenerator(-52.0, 8000, seed=3).frame() for _ in range(10))
    noise = from_pcm(background)
    assert abs(noise.level - 52) <= 1
    source = comfort_noise_source(decode_cn(encode_cn(noise)), 48000, seed=1)
    played = b"".join(source.frame() for _ in range(10))
    assert len(played) == 10 * 1920
    assert rms_dbov(played) == pytest.approx(-noise.level, abs=0.6)
    assert from_pcm(bytes(320)) == ComfortNoise(127)


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_the_module_error(payload: bytes) -> None:
    try:
        noise = decode_cn(payload)
    except CNError:
        assert not payload or payload[0] & 0x80 or len(payload) > 256
    else:
        assert encode_cn(noise) == payload
