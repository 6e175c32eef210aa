"""Tests of shoulder taps and the tap filter (ript.protocol.taps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol.errors import RemoteProtocolError
from ript.protocol.taps import (
    MAX_TAP_BYTES,
    RejectReason,
    Tap,
    TapError,
    TapFilter,
    TapRejection,
    TapType,
    parse_tap,
    tap_from_json,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "documents.json"
TG = "https://p.example/tgs/7"
CALL = "https://p.example/calls/0b6f8e2a-6d4e-4c1e-9a57-2f1d3c4b5a69"
PROPERTY = settings(max_examples=200, deadline=None)


def tap_payload(tap_id: str = "t1", call: Any = CALL, kind: str = "call", **extra: Any) -> bytes:
    doc: dict[str, Any] = {"v": 1, "id": tap_id, "type": kind, "call": call, "ts": 1763805600123}
    doc.update(extra)
    return json.dumps(doc).encode()


def vectors() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(VECTORS.read_text("utf-8"))
    return result


def payload_of(case: dict[str, Any]) -> bytes:
    if "body_hex" in case or "payload_hex" in case:
        return bytes.fromhex(case.get("body_hex", case.get("payload_hex", "")))
    if "body_text" in case or "payload_text" in case:
        return str(case.get("body_text", case.get("payload_text"))).encode()
    return json.dumps(case.get("body", case.get("payload"))).encode()


# --- vectors -------------------------------------------------------------------------------------


TAP_CASES = [case for case in vectors()["documents"] if case["document"] == "tap"]


def test_tap_vectors_have_good_and_bad() -> None:
    assert {"expect" in case for case in TAP_CASES} == {True, False}


@pytest.mark.parametrize("case", TAP_CASES, ids=lambda c: str(c["name"]))
def test_vector_tap(case: dict[str, Any]) -> None:
    if "error" in case:
        with pytest.raises(TapError) as info:
            parse_tap(payload_of(case))
        assert case["error"] in str(info.value)
        return
    tap = parse_tap(payload_of(case))
    assert tap.to_json() == case["expect"]
    assert parse_tap(tap.to_bytes()) == tap
    if "bytes_hex" in case:
        assert tap.to_bytes().hex() == case["bytes_hex"]


@pytest.mark.parametrize("scenario", vectors()["tap_filter"], ids=lambda s: str(s["name"]))
def test_vector_tap_filter(scenario: dict[str, Any]) -> None:
    tap_filter = TapFilter(scenario["tg"], scenario["max_remembered"])
    for step in scenario["steps"]:
        outcome = tap_filter.accept(payload_of(step))
        if step["expect"] == "accepted":
            assert isinstance(outcome, Tap), (step, outcome)
        else:
            assert isinstance(outcome, TapRejection), step
            assert outcome.reason.value == step["expect"], (step, outcome)


# --- parsing -------------------------------------------------------------------------------------


def test_parse_tap_values() -> None:
    tap = parse_tap(tap_payload("abc", kind="answer"))
    assert tap == Tap(id="abc", type=TapType.ANSWER, call=CALL, ts=1763805600123)
    assert tap.v == 1
    assert tap.to_bytes() == (
        b'{"v":1,"id":"abc","type":"answer","call":"' + CALL.encode() + b'","ts":1763805600123}'
    )


def test_tap_size_limit() -> None:
    pad = "x" * (MAX_TAP_BYTES - len(tap_payload(pad="")))
    assert len(tap_payload(pad=pad)) == MAX_TAP_BYTES
    assert parse_tap(tap_payload(pad=pad)).id == "t1"
    with pytest.raises(TapError, match="16385 bytes, over the limit of 16384"):
        parse_tap(tap_payload(pad=pad + "x"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not bytes", "the payload must be bytes, not str"),
        (b"[" * 10000, "nests too deeply"),
        (b'{"ts": NaN}', "NaN is not a JSON value"),
        (b'{"v":1,"ts":' + b"1" * 5000 + b"}", "number too long to read"),
        (
            b'{"call":"https://a.example/c/1","call":"https://b.example/c/2"}',
            "'call' appears twice",
        ),
        (tap_payload("x" * 257), "'id' is longer than 256 characters"),
        (tap_payload("\ud800"), "'id' holds an unpaired surrogate"),
        (tap_payload(ts=2**53), "'ts' 9007199254740992 is out of range"),
        (tap_payload(ts=True), "'ts' must be an integer"),
        (tap_payload(call=7), "tap: 'call' must be a string"),
        (tap_payload(call="https://u:p@p.example/c"), "carries user information"),
        (tap_payload(type=["call"]), "'type' must be one of call, take, answer, decline"),
    ],
)
def test_parse_tap_errors(payload: Any, message: str) -> None:
    with pytest.raises(TapError, match=message):
        parse_tap(payload)


def test_tap_from_json_needs_an_object() -> None:
    with pytest.raises(TapError, match="must be a JSON object"):
        tap_from_json("call")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"v": 2}, "'v' must be 1, not 2"),
        ({"v": True}, "'v' must be 1, not True"),
        ({"id": ""}, "'id' must not be empty"),
        ({"type": "call"}, "'type' must be a TapType"),
        ({"call": "http://p.example/c"}, "'call' is not usable"),
        ({"ts": -1}, "'ts' -1 is out of range"),
        ({"ts": 1.0}, "'ts' must be an integer"),
    ],
)
def test_tap_constructor_checks(kwargs: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"id": "a", "type": TapType.CALL, "call": CALL, "ts": 0}
    values.update(kwargs)
    with pytest.raises(TapError, match=message):
        Tap(**values)


def test_tap_error_is_remote_protocol_error() -> None:
    assert issubclass(TapError, RemoteProtocolError)


# --- filter --------------------------------------------------------------------------------------


def test_filter_reports_why() -> None:
    tap_filter = TapFilter(TG)
    assert tap_filter.origin == ("https", "p.example", 443)
    first = tap_filter.accept(tap_payload("a"))
    assert isinstance(first, Tap)
    again = tap_filter.accept(tap_payload("a"))
    assert again == TapRejection(RejectReason.DUPLICATE, "tap 'a' was already seen", first)
    foreign = tap_filter.accept(tap_payload("b", call="https://evil.example/calls/1"))
    assert isinstance(foreign, TapRejection)
    assert foreign.reason is RejectReason.FOREIGN_ORIGIN
    assert foreign.detail == (
        "tap 'b' names a call at https://evil.example:443, not the TG's origin"
    )
    assert foreign.tap is not None and foreign.tap.id == "b"
    broken = tap_filter.accept(b"{")
    assert isinstance(broken, TapRejection)
    assert broken.reason is RejectReason.MALFORMED
    assert broken.detail.startswith("tap: the payload is not JSON")
    assert broken.tap is None


def test_filter_forgets_oldest_first() -> None:
    tap_filter = TapFilter(TG, max_remembered=3)
    for tap_id in "abcd":
        assert isinstance(tap_filter.accept(tap_payload(tap_id)), Tap)
    # "a" was evicted when "d" came; "b", "c", "d" are still remembered.
    for tap_id in "bcd":
        assert isinstance(tap_filter.accept(tap_payload(tap_id)), TapRejection)
    assert isinstance(tap_filter.accept(tap_payload("a")), Tap)
    assert isinstance(tap_filter.accept(tap_payload("b")), Tap)


def test_filter_does_not_remember_rejected_taps() -> None:
    tap_filter = TapFilter(TG)
    assert isinstance(
        tap_filter.accept(tap_payload("x", call="https://evil.example/c")), TapRejection
    )
    assert isinstance(tap_filter.accept(tap_payload("x")), Tap)


@pytest.mark.parametrize(
    ("tg", "size", "message"),
    [
        ("http://p.example/tgs/7", 10, "the TG URI is not usable"),
        (TG, 0, "max_remembered must be at least 1"),
        (TG, True, "max_remembered must be at least 1"),
    ],
)
def test_filter_constructor_checks(tg: str, size: int, message: str) -> None:
    with pytest.raises(TapError, match=message):
        TapFilter(tg, size)


# --- properties ----------------------------------------------------------------------------------

uris = st.builds(
    lambda host, port, path: f"https://{host}{port}/{path}",
    st.sampled_from(["p.example", "P.EXAMPLE", "q.example", "[::1]"]),
    st.sampled_from(["", ":443", ":8443"]),
    st.from_regex(r"[a-z0-9/-]{0,20}", fullmatch=True),
)
taps = st.builds(
    Tap,
    st.text(min_size=1, max_size=40),
    st.sampled_from(TapType),
    uris,
    st.integers(0, 2**53 - 1),
)


@PROPERTY
@given(taps)
def test_tap_round_trip(tap: Tap) -> None:
    assert parse_tap(tap.to_bytes()) == tap
    assert tap_from_json(tap.to_json()) == tap


@PROPERTY
@given(st.binary(max_size=200))
def test_random_bytes_only_tap_error(data: bytes) -> None:
    try:
        parse_tap(data)
    except TapError as exc:
        assert str(exc).startswith("tap")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@PROPERTY
@given(taps, st.sampled_from(["v", "id", "type", "call", "ts"]), json_values)
def test_damaged_taps_are_rejected_not_raised(tap: Tap, member: str, value: Any) -> None:
    doc = tap.to_json()
    doc[member] = value
    try:
        payload = json.dumps(doc).encode()
    except (TypeError, ValueError):
        return
    outcome = TapFilter("https://p.example/tgs/7").accept(payload)
    assert isinstance(outcome, Tap | TapRejection)


@PROPERTY
@given(st.lists(st.one_of(taps.map(Tap.to_bytes), st.binary(max_size=60)), max_size=30))
def test_filter_accepts_each_id_once_and_only_from_its_origin(payloads: list[bytes]) -> None:
    tap_filter = TapFilter("https://p.example/tgs/7")
    accepted: list[str] = []
    for payload in payloads:
        outcome = tap_filter.accept(payload)
        if isinstance(outcome, Tap):
            assert outcome.id not in accepted
            assert outcome.call.lower().startswith(("https://p.example/", "https://p.example:443/"))
            accepted.append(outcome.id)
