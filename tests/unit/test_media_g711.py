"""G.711 μ-law / A-law against ITU-T G.711 tables and over the whole 16-bit range."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ript.media import g711

ALL_SAMPLES = array("h", range(-32768, 32768)).tobytes()


def samples(pcm: bytes) -> list[int]:
    return array("h", pcm).tolist()


def test_ulaw_known_values_from_g711_table_2() -> None:
    # G.711 table 2a/2b: code words are sent inverted; 0x00 and 0x80 are the extremes
    # (decision value 8031 at 14 bits = 32124 at 16 bits), 0xFF is +0 and 0x7F is -0.
    assert g711.ulaw_decode_sample(0x00) == -32124
    assert g711.ulaw_decode_sample(0x80) == 32124
    assert g711.ulaw_decode_sample(0xFF) == 0
    assert g711.ulaw_decode_sample(0x7F) == 0
    assert g711.ulaw_encode_sample(0) == 0xFF
    assert g711.ulaw_encode_sample(3) == 0xFF  # below one 14-bit step
    # -1 stays -1 after the arithmetic shift to 14 bits: on the 0/-2 decision boundary.
    assert g711.ulaw_encode_sample(-1) == 0x7E
    assert g711.ulaw_encode_sample(32767) == 0x80
    assert g711.ulaw_encode_sample(-32768) == 0x00
    # Segment 0 step is 2 at 14 bits (8 at 16): 0xFE decodes to +8, 0x7E to -8.
    assert g711.ulaw_decode_sample(0xFE) == 8
    assert g711.ulaw_decode_sample(0x7E) == -8


def test_alaw_known_values_and_even_bit_inversion() -> None:
    # G.711 table 1a/1b: the smallest positive code is 1000 0000 before even-bit
    # inversion, i.e. 0xD5 on the line; the largest is 0xFF -> 0xAA.
    assert g711.alaw_encode_sample(0) == 0xD5
    assert g711.alaw_encode_sample(-1) == 0x55
    assert g711.alaw_decode_sample(0xD5) == 8
    assert g711.alaw_decode_sample(0x55) == -8
    assert g711.alaw_decode_sample(0xAA) == 32256
    assert g711.alaw_decode_sample(0x2A) == -32256
    assert g711.alaw_encode_sample(32767) == 0xAA
    assert g711.alaw_encode_sample(-32768) == 0x2A
    # Silence encodes to alternating bits, not zeros (why the even bits are inverted).
    assert g711.alaw_encode(bytes(8)) == b"\xd5" * 4


def test_every_code_survives_decode_then_encode() -> None:
    codes = bytes(range(256))
    assert g711.alaw_encode(g711.alaw_decode(codes)) == codes
    # -0 (0x7F) re-encodes as +0 (0xFF): both decode to 0.
    assert g711.ulaw_encode(g711.ulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_round_trip_error_is_within_half_a_step_over_the_whole_range() -> None:
    original = samples(ALL_SAMPLES)
    for encode, decode, clip in (
        (g711.ulaw_encode, g711.ulaw_decode, 32124),
        (g711.alaw_encode, g711.alaw_decode, 32256),
    ):
        back = samples(decode(encode(ALL_SAMPLES)))
        for x, y in zip(original, back, strict=True):
            if abs(x) <= clip:
                # Steps double per segment, so half a step is about |x|/32; the shift to
                # 14 or 13 bits and the smallest step add at most 16 more.
                assert abs(x - y) <= abs(x) / 32 + 16, (x, y)
                assert abs(x - y) <= 512 + 4, (x, y)  # half the top step (1024)
            else:
                assert abs(y) == clip and (y > 0) == (x > 0)


def test_frame_functions_match_the_reference_quantiser() -> None:
    for encode, one in (
        (g711.ulaw_encode, g711.ulaw_encode_sample),
        (g711.alaw_encode, g711.alaw_encode_sample),
    ):
        assert encode(ALL_SAMPLES) == bytes(one(s) for s in range(-32768, 32768))
    for decode, one_d in (
        (g711.ulaw_decode, g711.ulaw_decode_sample),
        (g711.alaw_decode, g711.alaw_decode_sample),
    ):
        assert samples(decode(bytes(range(256)))) == [one_d(c) for c in range(256)]


def test_encoders_are_monotonic_in_level() -> None:
    back = samples(g711.ulaw_decode(g711.ulaw_encode(ALL_SAMPLES)))
    assert back == sorted(back)
    back = samples(g711.alaw_decode(g711.alaw_encode(ALL_SAMPLES)))
    assert back == sorted(back)


def test_a_20ms_frame_is_160_bytes_and_back() -> None:
    pcm = array("h", [(i * 397) % 20000 - 10000 for i in range(160)]).tobytes()
    assert len(g711.ulaw_encode(pcm)) == 160
    assert len(g711.alaw_decode(g711.alaw_encode(pcm))) == 320


def test_odd_length_pcm_is_refused() -> None:
    with pytest.raises(g711.G711Error, match="odd length of 3 bytes"):
        g711.ulaw_encode(b"\x00\x01\x02")
    with pytest.raises(g711.G711Error):
        g711.alaw_encode(b"\x00")


@given(st.binary(max_size=400))
def test_any_payload_decodes_to_two_bytes_per_code(payload: bytes) -> None:
    assert len(g711.ulaw_decode(payload)) == 2 * len(payload)
    assert len(g711.alaw_decode(payload)) == 2 * len(payload)


@given(st.binary(max_size=400))
def test_any_bytes_encode_or_raise_the_module_error(pcm: bytes) -> None:
    try:
        out = g711.ulaw_encode(pcm)
    except g711.G711Error:
        assert len(pcm) % 2
    else:
        assert len(out) == len(pcm) // 2
