"""Tests of QUIC varints (ript.protocol.varint) and the varint cases of chunks.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol.errors import LocalProtocolError, RemoteProtocolError
from ript.protocol.varint import (
    VARINT_MAX,
    VarintError,
    VarintRangeError,
    decode_varint,
    encode_varint,
    varint_size,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "vectors" / "chunks.json").read_text("utf-8")
)


@pytest.mark.parametrize("case", VECTORS["varints"], ids=lambda c: str(c["value"]))
def test_vector_both_ways(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    assert encode_varint(case["value"]) == raw
    assert decode_varint(raw) == (case["value"], len(raw))
    assert varint_size(case["value"]) == len(raw)


@pytest.mark.parametrize("case", VECTORS["varints_decode_only"], ids=lambda c: c["hex"])
def test_non_shortest_forms_decode(case: dict[str, Any]) -> None:
    raw = bytes.fromhex(case["hex"])
    assert decode_varint(raw) == (case["value"], len(raw))
    assert len(encode_varint(case["value"])) < len(raw)


@pytest.mark.parametrize("hex_", VECTORS["varints_truncated"])
def test_truncated_input_is_rejected(hex_: str) -> None:
    with pytest.raises(VarintError):
        decode_varint(bytes.fromhex(hex_))


def test_rfc9000_examples() -> None:
    assert decode_varint(bytes.fromhex("c2197c5eff14e88c")) == (151288809941952652, 8)
    assert decode_varint(bytes.fromhex("9d7f3e7d")) == (494878333, 4)
    assert decode_varint(bytes.fromhex("7bbd")) == (15293, 2)
    assert decode_varint(bytes.fromhex("25")) == (37, 1)
    assert decode_varint(bytes.fromhex("4025")) == (37, 2)


@pytest.mark.parametrize(
    ("value", "size"),
    [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4), (2**30, 8), (VARINT_MAX, 8)],
)
def test_shortest_form_boundaries(value: int, size: int) -> None:
    assert len(encode_varint(value)) == size
    assert varint_size(value) == size


@pytest.mark.parametrize("value", [-1, VARINT_MAX + 1, 2**64])
def test_encode_out_of_range(value: int) -> None:
    with pytest.raises(VarintRangeError, match="outside"):
        encode_varint(value)
    assert issubclass(VarintRangeError, LocalProtocolError)


def test_decode_at_offset_and_in_any_buffer() -> None:
    data = b"\xff" + encode_varint(300) + b"\x07"
    for buf in (data, bytearray(data), memoryview(data)):
        assert decode_varint(buf, 1) == (300, 3)
        assert decode_varint(buf, 3) == (7, 4)


@pytest.mark.parametrize("offset", [-1, 2, 5])
def test_decode_offset_outside_buffer(offset: int) -> None:
    with pytest.raises(VarintError, match=f"offset {offset}"):
        decode_varint(b"\x01\x02", offset)


def test_error_names_how_many_bytes_are_missing() -> None:
    with pytest.raises(VarintError, match="needs 4 bytes, only 2 remain"):
        decode_varint(b"\x00\x80\x01", 1)
    assert issubclass(VarintError, RemoteProtocolError)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, VARINT_MAX))
def test_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert decode_varint(raw) == (value, len(raw))
    assert decode_varint(b"xy" + raw + b"z", 2) == (value, 2 + len(raw))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, VARINT_MAX), st.sampled_from([1, 2, 4, 8]))
def test_any_long_enough_form_decodes(value: int, size: int) -> None:
    if value >= 1 << (8 * size - 2):
        return
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    raw = (value | (prefix << (8 * size - 2))).to_bytes(size, "big")
    assert decode_varint(raw) == (value, size)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=10), st.integers(-2, 12))
def test_random_bytes_raise_only_varint_error(data: bytes, offset: int) -> None:
    try:
        value, end = decode_varint(data, offset)
    except VarintError:
        return
    assert 0 <= value <= VARINT_MAX
    assert offset < end <= len(data)
