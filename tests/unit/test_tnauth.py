"""TNAuthList (RFC 8226): DER byte for byte, every rejection, coverage, and the vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol.errors import RemoteProtocolError
from ript.protocol.tnauth import (
    TnAuthError,
    TnEntry,
    TnOne,
    TnRange,
    TnSpc,
    check_tn,
    covers,
    decode_tn_auth_list,
    encode_tn_auth_list,
    tn_from_e164,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "passport.json"

# SEQUENCE(15) { [2] constructed(13) { IA5String(11) "14085551002" } }
ONE_DER = bytes.fromhex("30 0f a2 0d 16 0b 31 34 30 38 35 35 35 31 30 30 32")


# --- encoding ----------------------------------------------------------------------------------


def test_one_entry_byte_for_byte() -> None:
    assert encode_tn_auth_list([TnOne("14085551002")]) == ONE_DER
    assert decode_tn_auth_list(ONE_DER) == [TnOne("14085551002")]


def test_range_byte_for_byte() -> None:
    der = encode_tn_auth_list([TnRange("14085551000", 100)])
    # SEQUENCE { [1] { SEQUENCE { IA5String "14085551000", INTEGER 100 } } }
    assert der == bytes.fromhex("3014 a112 3010 160b3134303835353531303030 020164")


def test_range_count_needing_a_sign_byte() -> None:
    der = encode_tn_auth_list([TnRange("1", 128)])
    assert der.endswith(bytes.fromhex("02020080"))
    assert decode_tn_auth_list(der) == [TnRange("1", 128)]


def test_spc_byte_for_byte() -> None:
    assert encode_tn_auth_list([TnSpc("1234")]) == bytes.fromhex("3008 a006 160431323334")


def test_several_entries_keep_their_order() -> None:
    entries: list[TnEntry] = [TnSpc("X"), TnOne("1"), TnRange("20", 2), TnOne("*67#")]
    assert decode_tn_auth_list(encode_tn_auth_list(entries)) == entries


def test_encode_rejects_an_empty_list() -> None:
    with pytest.raises(TnAuthError, match="at least one entry"):
        encode_tn_auth_list([])


def test_encode_rejects_non_entries() -> None:
    with pytest.raises(TnAuthError, match="not a TN entry"):
        encode_tn_auth_list(["14085551002"])  # type: ignore[list-item]


# --- entry validation --------------------------------------------------------------------------


@pytest.mark.parametrize("tn", ["", "+14085551002", "1234567890123456", "1-2", "١٢٣", " 1"])
def test_bad_numbers_rejected(tn: str) -> None:
    with pytest.raises(TnAuthError, match="must be 1 to 15 characters"):
        TnOne(tn)
    with pytest.raises(TnAuthError, match="range start"):
        TnRange(tn, 2)


def test_number_must_be_text() -> None:
    with pytest.raises(TnAuthError, match="must be a string, not int"):
        TnOne(14085551002)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [1, 0, -3, True, 2.0, "5"])
def test_bad_range_counts_rejected(count: Any) -> None:
    with pytest.raises(TnAuthError, match="range count must be an integer of at least 2"):
        TnRange("14085551000", count)


def test_spc_must_be_ascii() -> None:
    with pytest.raises(TnAuthError, match="ASCII"):
        TnSpc("é")


def test_check_tn_accepts_the_whole_alphabet() -> None:
    assert check_tn("0123456789#*") == "0123456789#*"
    assert check_tn("9" * 15) == "9" * 15


@pytest.mark.parametrize(
    ("e164", "tn"), [("+14085551002", "14085551002"), ("+4", "4"), ("+" + "9" * 15, "9" * 15)]
)
def test_tn_from_e164(e164: str, tn: str) -> None:
    assert tn_from_e164(e164) == tn


@pytest.mark.parametrize(
    "bad", ["14085551002", "+", "+0140", "+1408-555", "+" + "1" * 16, "+١٢٣", "", " +1"]
)
def test_tn_from_e164_rejects(bad: str) -> None:
    with pytest.raises(TnAuthError, match=r"not an E\.164 number"):
        tn_from_e164(bad)


# --- decoding rejections -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("der_hex", "message"),
    [
        ("", "empty \\(0 bytes\\)"),
        ("3000", "holds no entry"),
        ("30810fa20d160b3134303835353531303032", "BER but not DER"),
        ("300fa20d160b313430383535353130303200", "1 trailing bytes at offset 17"),
        ("300d820b3134303835353531303032", "unexpected tag 128:0:2"),
        ("300fa30d160b3134303835353531303032", "unexpected tag"),
        ("300fa20d160b31343038353535313030", "not a DER SEQUENCE OF TNEntry"),
        ("3003a20116", "not a DER SEQUENCE OF TNEntry"),
        ("300aa1083006160131020101", "range count 1 is below 2"),
        ("3010a20e160c2b3134303835353531303032", "'\\+14085551002' must be 1 to 15"),
        ("3008a2061604313233ff", "not a DER SEQUENCE OF TNEntry"),
    ],
)
def test_decode_rejections(der_hex: str, message: str) -> None:
    with pytest.raises(TnAuthError, match=message):
        decode_tn_auth_list(bytes.fromhex(der_hex))


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(TnAuthError, match="must be bytes, not str"):
        decode_tn_auth_list("300f")  # type: ignore[arg-type]


def test_decode_rejects_huge_input() -> None:
    with pytest.raises(TnAuthError, match="exceeds"):
        decode_tn_auth_list(b"\x30" * 20000)


def test_decode_accepts_bytearray_and_memoryview() -> None:
    assert decode_tn_auth_list(bytearray(ONE_DER)) == [TnOne("14085551002")]
    assert decode_tn_auth_list(memoryview(ONE_DER)) == [TnOne("14085551002")]


# --- coverage ----------------------------------------------------------------------------------


def test_one_covers_only_itself() -> None:
    entries = [TnOne("14085551002")]
    assert covers(entries, "14085551002")
    assert not covers(entries, "14085551003")
    assert not covers(entries, "4085551002")


def test_range_covers_start_to_start_plus_count_minus_one() -> None:
    entries = [TnRange("14085551000", 100)]
    assert covers(entries, "14085551000")
    assert covers(entries, "14085551099")
    assert not covers(entries, "14085550999")
    assert not covers(entries, "14085551100")


def test_range_stays_within_one_number_length() -> None:
    entries = [TnRange("9998", 5)]
    assert covers(entries, "9999")
    assert not covers(entries, "10000")  # 9998 + 2, but five digits
    assert not covers(entries, "10001")


def test_range_keeps_leading_zeros() -> None:
    entries = [TnRange("0100", 3)]
    assert covers(entries, "0102")
    assert not covers(entries, "102")


def test_spc_and_symbol_ranges_cover_no_number() -> None:
    assert not covers([TnSpc("14085551002")], "14085551002")
    assert not covers([TnRange("*100", 5)], "*101")
    assert covers([TnOne("*100")], "*100")


def test_any_entry_may_cover() -> None:
    entries: list[TnEntry] = [TnSpc("A"), TnOne("1"), TnRange("500", 10)]
    assert covers(entries, "505")
    assert covers(entries, "1")
    assert not covers(entries, "2")
    assert not covers([], "1")


def test_covers_rejects_a_non_canonical_number() -> None:
    with pytest.raises(TnAuthError, match="no '\\+'"):
        covers([TnOne("14085551002")], "+14085551002")


# --- properties --------------------------------------------------------------------------------

_tns = st.text(alphabet="0123456789#*", min_size=1, max_size=15)
_entries = st.one_of(
    st.builds(TnOne, _tns),
    st.builds(TnRange, _tns, st.integers(min_value=2, max_value=2**70)),
    st.builds(TnSpc, st.text(alphabet=st.characters(max_codepoint=127), max_size=40)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_entries, min_size=1, max_size=8))
def test_der_round_trip(entries: list[TnEntry]) -> None:
    assert decode_tn_auth_list(encode_tn_auth_list(entries)) == entries


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="0123456789", min_size=1, max_size=12),
    st.integers(min_value=2, max_value=10**6),
    st.integers(min_value=0, max_value=10**12),
)
def test_range_coverage_matches_arithmetic(start: str, count: int, candidate: int) -> None:
    tn = str(candidate).zfill(len(start))
    expected = len(tn) == len(start) and int(start) <= candidate < int(start) + count
    assert covers([TnRange(start, count)], tn) == expected


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_tnauth_error(data: bytes) -> None:
    try:
        entries = decode_tn_auth_list(data)
    except TnAuthError:
        return
    # Whatever decodes must be canonical: it re-encodes to the same bytes.
    assert encode_tn_auth_list(entries) == data


@settings(max_examples=300, deadline=None)
@given(st.lists(_entries, min_size=1, max_size=3), st.data())
def test_mutated_der_raises_only_tnauth_error(entries: list[TnEntry], data: st.DataObject) -> None:
    der = bytearray(encode_tn_auth_list(entries))
    position = data.draw(st.integers(min_value=0, max_value=len(der) - 1))
    der[position] = data.draw(st.integers(min_value=0, max_value=255))
    try:
        decoded = decode_tn_auth_list(bytes(der))
    except TnAuthError:
        return
    assert encode_tn_auth_list(decoded) == bytes(der)


def test_error_is_a_remote_protocol_error() -> None:
    assert issubclass(TnAuthError, RemoteProtocolError)


# --- vectors -----------------------------------------------------------------------------------


def _entry(doc: dict[str, Any]) -> TnEntry:
    if "one" in doc:
        return TnOne(doc["one"])
    if "spc" in doc:
        return TnSpc(doc["spc"])
    return TnRange(doc["range"]["start"], doc["range"]["count"])


def load_vectors() -> dict[str, Any]:
    with VECTORS.open(encoding="utf-8") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


@pytest.mark.parametrize("case", load_vectors()["tn_auth_list"], ids=lambda c: str(c["name"]))
def test_vector(case: dict[str, Any]) -> None:
    entries = [_entry(item) for item in case["entries"]]
    der = bytes.fromhex(case["der_hex"])
    assert encode_tn_auth_list(entries) == der
    assert decode_tn_auth_list(der) == entries


@pytest.mark.parametrize(
    "case", load_vectors()["tn_auth_list_invalid"], ids=lambda c: str(c["name"])
)
def test_invalid_vector(case: dict[str, Any]) -> None:
    with pytest.raises(TnAuthError):
        decode_tn_auth_list(bytes.fromhex(case["der_hex"]))


def test_vectors_include_the_profile_example() -> None:
    one = [c for c in load_vectors()["tn_auth_list"] if c["name"] == "one"]
    assert one[0]["der_hex"] == ONE_DER.hex()
    assert len(load_vectors()["tn_auth_list_invalid"]) >= 10
