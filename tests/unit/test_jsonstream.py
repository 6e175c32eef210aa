"""Tests of the signalling byway codec (ript.protocol.jsonstream)."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol import events as ev
from ript.protocol.errors import LocalProtocolError, RemoteProtocolError
from ript.protocol.jsonstream import (
    MAX_EVENT_BYTES,
    MAX_NESTING,
    EventStreamError,
    EventStreamReader,
    EventStreamWriter,
    InvalidEvent,
    JsonArrayDecoder,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "event-streams.json"
CALL = "https://p.example/calls/0b6f8e2a-6d4e-4c1e-9a57-2f1d3c4b5a69"
TS = "2026-11-22T10:00:00.123Z"


def doc(event: str, direction: str = "s2c", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"direction": direction, "timestamp": TS, "call": CALL, "event": event}
    out.update(extra)
    return out


def compact(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def feed_chunks(decoder: JsonArrayDecoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def outcome(data: bytes, chunks: list[bytes]) -> tuple[str, Any]:
    """What decoding ``chunks`` ends in: the items, or the error's offset and text."""
    assert b"".join(chunks) == data
    decoder = JsonArrayDecoder()
    try:
        items = feed_chunks(decoder, chunks)
        decoder.eof()
    except EventStreamError as exc:
        return ("error", (exc.offset, str(exc)))
    return ("ok", (items, decoder.closed, decoder.offset))


def raises_offset(data: bytes, **kwargs: Any) -> EventStreamError:
    decoder = JsonArrayDecoder(**kwargs)
    with pytest.raises(EventStreamError) as info:
        decoder.feed(data)
    return info.value


P = doc("proceeding")
A = doc("alerting", reason="ringing at the far end")
REALISTIC = (
    b"[\r\n"
    + compact(P)
    + b",\n"
    + json.dumps(A, indent=2).encode()
    + b" ,\t"
    + compact(doc("x-roster", roster=[{"n": 'Zoë "}{][,\\', "m": [1, -2.5e-3, None, True]}]))
    + b","
    + compact(doc("end", reason="beendet – ☎ 😀"))
    + b',{"direction":"c2s","timestamp":"'
    + TS.encode()
    + b'","call":"x","event":"ping","nonce":"\\u00e9\\"\\\\\\ud83d\\ude00"}'
    + b"  \n"
)
REALISTIC_ITEMS = json.loads(REALISTIC + b"]")


# --- the decoder, unit by unit ----------------------------------------------------------------


class TestDecoderBasics:
    def test_one_event(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b"[" + compact(P)) == [P]
        assert not decoder.closed
        assert decoder.offset == 1 + len(compact(P))

    def test_returns_only_completed_objects(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b'[{"a":1},{"b":') == [{"a": 1}]
        assert decoder.feed(b"2}") == [{"b": 2}]
        assert decoder.feed(b"") == []

    def test_realistic_stream_in_one_piece(self) -> None:
        assert JsonArrayDecoder().feed(REALISTIC) == REALISTIC_ITEMS
        assert len(REALISTIC_ITEMS) == 5

    def test_white_space_before_open_and_between_tokens(self) -> None:
        data = b' \t\r\n[ \n{ "a" :\t[ 1 , 2 ] }\r\n,\t\n{"b":{}}  ] \r\n\t'
        decoder = JsonArrayDecoder()
        assert decoder.feed(data) == [{"a": [1, 2]}, {"b": {}}]
        assert decoder.closed

    def test_empty_array(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b"[ ]") == []
        assert decoder.closed
        decoder.eof()

    def test_nothing_fed_is_not_closed(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b"") == []
        assert not decoder.closed
        assert decoder.offset == 0

    def test_structural_characters_inside_strings(self) -> None:
        item = {"s": '{ } [ ] , " \\ :', "t": "\\", "u": '"'}
        assert JsonArrayDecoder().feed(b"[" + compact(item) + b"]") == [item]

    def test_escapes(self) -> None:
        data = b'[{"e":"\\u00e9\\"\\\\\\/\\b\\f\\n\\r\\t\\ud83d\\ude00"}'
        assert JsonArrayDecoder().feed(data) == [{"e": 'é"\\/\b\f\n\r\t😀'}]

    def test_raw_unicode(self) -> None:
        item = {"r": "Zürich ☎ 😀 日本"}
        assert JsonArrayDecoder().feed(b"[" + compact(item)) == [item]

    def test_nested_arrays_and_objects(self) -> None:
        item = {"a": [[{"b": [{}, []]}], {"c": {"d": [None, False, 1.5e10]}}]}
        assert JsonArrayDecoder().feed(b"[" + compact(item)) == [item]

    def test_duplicate_names_keep_the_last(self) -> None:
        assert JsonArrayDecoder().feed(b'[{"a":1,"a":2}') == [{"a": 2}]

    def test_accepts_bytearray_and_memoryview(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(bytearray(b'[{"a":')) == []
        assert decoder.feed(memoryview(b"1}")) == [{"a": 1}]

    def test_white_space_after_close(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b'[{"a":1}]') == [{"a": 1}]
        assert decoder.feed(b" \r\n\t") == []
        assert decoder.closed
        assert decoder.offset == 13

    def test_max_item_bytes_must_be_sane(self) -> None:
        with pytest.raises(LocalProtocolError):
            JsonArrayDecoder(max_item_bytes=1)


class TestDecoderErrors:
    def test_error_type_is_remote(self) -> None:
        assert issubclass(EventStreamError, RemoteProtocolError)

    def test_garbage_between_events(self) -> None:
        err = raises_offset(b'[{"a":1}x')
        assert err.offset == 8
        assert str(err) == "expected ',' or ']' at byte 8, got 'x'"

    def test_missing_open_bracket(self) -> None:
        err = raises_offset(b'  {"a":1}')
        assert (err.offset, str(err)) == (2, "expected '[' at byte 2, got '{'")

    def test_byte_order_mark_is_refused(self) -> None:
        err = raises_offset(b"\xef\xbb\xbf[")
        assert (err.offset, str(err)) == (0, "expected '[' at byte 0, got 0xef")

    @pytest.mark.parametrize(
        ("data", "offset"),
        [
            (b"[1]", 1),
            (b'[ "x"]', 2),
            (b"[[]]", 1),
            (b"[true]", 1),
            (b"[null]", 1),
            (b'[{"a":1}, 2]', 10),
        ],
    )
    def test_top_level_items_must_be_objects(self, data: bytes, offset: int) -> None:
        err = raises_offset(data)
        assert err.offset == offset
        assert str(err).startswith("expected '{'")

    @pytest.mark.parametrize(
        ("data", "offset"),
        [(b"[,", 1), (b'[{"a":1},]', 9), (b'[{"a":1},,', 9), (b'[{"a":1} {"b":2}', 9)],
    )
    def test_commas(self, data: bytes, offset: int) -> None:
        assert raises_offset(data).offset == offset

    def test_data_after_close(self) -> None:
        err = raises_offset(b'[{"a":1}] \n{')
        assert (err.offset, str(err)) == (11, "data after the closing ']' at byte 11, got '{'")

    def test_offset_counts_earlier_feeds(self) -> None:
        decoder = JsonArrayDecoder()
        decoder.feed(b"[" + compact(P))
        with pytest.raises(EventStreamError) as info:
            decoder.feed(b" ,  ?")
        assert info.value.offset == 1 + len(compact(P)) + 4
        assert "got '?'" in str(info.value)

    @pytest.mark.parametrize(
        ("data", "needle"),
        [
            (b'[{"a": tru}]', "not valid JSON: Expecting value at byte 7"),
            (b"[{a:1}]", "not valid JSON"),
            (b'[{"a":1,}]', "not valid JSON"),
            (b'[{"a":01}]', "not valid JSON"),
            (b'[{"a":"x\ny"}]', "Invalid control character at byte 8"),
            (b'[{"a":NaN}]', "NaN is not a JSON value"),
            (b'[{"a":-Infinity}]', "-Infinity is not a JSON value"),
            (b'[{"a":"\\x"}]', "not valid JSON"),
            (b'[{"a":"\\u12"}]', "not valid JSON"),
            (b'[{"a":"\xff"}]', "not valid UTF-8 (at byte 7)"),
            (b'[{"a":"\xc3"}]', "not valid UTF-8"),
            (b'[{"a":"\xed\xa0\x80"}]', "not valid UTF-8"),
            (b'[{"a":"\\ud800"}]', "unpaired UTF-16 surrogate"),
            (b'[{"a":["\\udc00x"]}]', "unpaired UTF-16 surrogate"),
            (b'[{"\\ud83d":1}]', "unpaired UTF-16 surrogate"),
            (b'[{"a":[1}]', "mismatched '}'"),
            (b'[{"a":{]}]', "mismatched ']'"),
            (b'[{"a":' + b"1" * 5000 + b"}]", "not valid JSON"),
        ],
    )
    def test_bad_item_reports_its_first_byte(self, data: bytes, needle: str) -> None:
        err = raises_offset(data)
        assert err.offset == 1
        assert str(err).startswith("the event starting at byte 1 ")
        assert needle in str(err)

    def test_escaped_backslash_before_quote_is_not_an_escape(self) -> None:
        # '\\\\' ends the string; the following '"' opens a new one which never ends.
        decoder = JsonArrayDecoder()
        assert decoder.feed(b'[{"a":"\\\\"}') == [{"a": "\\"}]

    def test_bad_second_item_reports_its_own_start(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b'[{"a":1},\n') == [{"a": 1}]
        with pytest.raises(EventStreamError) as info:
            decoder.feed(b' {"b":tru')
            decoder.feed(b"e,}")
        assert info.value.offset == 11

    def test_valid_surrogate_pair_is_fine(self) -> None:
        assert JsonArrayDecoder().feed(b'[{"a":"\\ud83d\\ude00","b":"\\\\ud800"}') == [
            {"a": "😀", "b": "\\ud800"}
        ]

    def test_nesting_limit(self) -> None:
        ok = b"[" + b'{"a":' * (MAX_NESTING - 1) + b"{}" + b"}" * (MAX_NESTING - 1)
        assert len(JsonArrayDecoder().feed(ok)) == 1
        too_deep = b"[" + b'{"a":' * MAX_NESTING + b"[]"
        err = raises_offset(too_deep)
        assert err.offset == 1
        assert f"nests deeper than {MAX_NESTING} levels" in str(err)

    def test_dead_after_error(self) -> None:
        decoder = JsonArrayDecoder()
        with pytest.raises(EventStreamError) as first:
            decoder.feed(b"[x")
        with pytest.raises(EventStreamError) as again:
            decoder.feed(b'{"a":1}')
        assert (again.value.offset, str(again.value)) == (first.value.offset, str(first.value))
        with pytest.raises(EventStreamError) as at_eof:
            decoder.eof()
        assert at_eof.value.offset == 1

    def test_items_completed_before_an_error_in_earlier_feeds_are_kept(self) -> None:
        decoder = JsonArrayDecoder()
        assert decoder.feed(b'[{"a":1}') == [{"a": 1}]
        with pytest.raises(EventStreamError):
            decoder.feed(b",{")
            decoder.feed(b"]")


class TestSizeLimit:
    @staticmethod
    def item_of(size: int) -> bytes:
        item = b'{"p":"' + b"x" * (size - 8) + b'"}'
        assert len(item) == size
        return item

    def test_default_is_16_kib(self) -> None:
        assert MAX_EVENT_BYTES == 16 * 1024

    def test_exactly_the_limit_is_accepted(self) -> None:
        item = self.item_of(MAX_EVENT_BYTES)
        assert JsonArrayDecoder().feed(b"[" + item + b"]") == [json.loads(item)]

    def test_one_byte_over_is_refused(self) -> None:
        err = raises_offset(b"[" + self.item_of(MAX_EVENT_BYTES + 1) + b"]")
        assert err.offset == 1
        assert str(err) == f"the event starting at byte 1 is longer than {MAX_EVENT_BYTES} bytes"

    def test_refused_as_soon_as_the_limit_is_passed(self) -> None:
        decoder = JsonArrayDecoder(max_item_bytes=100)
        assert decoder.feed(b'[ {"p":"' + b"y" * 94) == []  # exactly 100 bytes of item
        with pytest.raises(EventStreamError) as info:
            decoder.feed(b"y")
        assert info.value.offset == 2

    def test_small_limit_split_across_feeds(self) -> None:
        decoder = JsonArrayDecoder(max_item_bytes=10)
        assert decoder.feed(b'[{"a":') == []
        assert decoder.feed(b'"bc"}') == [{"a": "bc"}]  # 10 bytes
        with pytest.raises(EventStreamError):
            decoder.feed(b',{"a":"bcd"}')

    def test_huge_feed_is_not_buffered(self) -> None:
        decoder = JsonArrayDecoder()
        with pytest.raises(EventStreamError) as info:
            decoder.feed(b'[{"p":"' + b"z" * 10_000_000)
        assert info.value.offset == 1
        assert len(decoder._buffer) == 0

    def test_limit_is_per_event(self) -> None:
        item = self.item_of(MAX_EVENT_BYTES)
        data = b"[" + b",".join([item] * 4) + b"]"
        assert len(JsonArrayDecoder().feed(data)) == 4


class TestEof:
    @pytest.mark.parametrize(
        "data",
        [b"", b" \n", b"[", b"[ ", b'[{"a":1}', b'[{"a":1} ,', b'[{"a":1}]', b"[]\n"],
    )
    def test_cut_between_items_is_fine(self, data: bytes) -> None:
        decoder = JsonArrayDecoder()
        decoder.feed(data)
        decoder.eof()
        assert decoder.offset == len(data)

    @pytest.mark.parametrize("tail", [b"{", b'{"a', b'{"a":"\\', b'{"a":1', b'{"a":[1]'])
    def test_cut_inside_an_item_is_an_error(self, tail: bytes) -> None:
        decoder = JsonArrayDecoder()
        decoder.feed(b'[{"b":2},  ' + tail)
        with pytest.raises(EventStreamError) as info:
            decoder.eof()
        assert info.value.offset == 11
        end = 11 + len(tail)
        assert str(info.value) == (
            f"stream ended inside an event at byte {end} (the event began at byte 11)"
        )

    def test_feed_after_eof(self) -> None:
        decoder = JsonArrayDecoder()
        decoder.feed(b"[")
        decoder.eof()
        assert decoder.feed(b"") == []
        with pytest.raises(EventStreamError):
            decoder.feed(b"{}")


# --- the same result whatever the split ---------------------------------------------------------


def reference_item_ends(data: bytes) -> list[int]:
    """Byte positions just after each top-level item, found with json.raw_decode."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    ends: list[int] = []
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos == len(text):
            return ends
        _, pos = decoder.raw_decode(text, pos)
        ends.append(len(text[:pos].encode("utf-8")))


def test_realistic_stream_split_at_every_byte() -> None:
    ends = reference_item_ends(REALISTIC)
    assert len(ends) == len(REALISTIC_ITEMS)
    for i in range(len(REALISTIC) + 1):
        decoder = JsonArrayDecoder()
        first = decoder.feed(REALISTIC[:i])
        second = decoder.feed(REALISTIC[i:])
        assert first + second == REALISTIC_ITEMS, i
        # An item is returned by the feed that completes it, not later.
        assert len(first) == sum(end <= i for end in ends), i
        assert decoder.offset == len(REALISTIC)


def test_realistic_stream_one_byte_at_a_time() -> None:
    decoder = JsonArrayDecoder()
    items = feed_chunks(decoder, [REALISTIC[i : i + 1] for i in range(len(REALISTIC))])
    assert items == REALISTIC_ITEMS
    assert decoder.offset == len(REALISTIC)
    decoder.eof()


def test_long_stream_in_odd_chunks() -> None:
    objects = [doc("ping", direction="c2s", nonce=str(n)) for n in range(2000)]
    data = b"[" + b",".join(compact(o) for o in objects)
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert feed_chunks(JsonArrayDecoder(), chunks) == objects


# --- hypothesis ---------------------------------------------------------------------------------

KNOWN_TYPES = {
    "proceeding",
    "alerting",
    "answered",
    "declined",
    "failed",
    "noanswer",
    "end",
    "ended",
    "migrate",
    "ping",
    "pong",
    "handler-changed",
    "reconnecting",
    "reconnected",
    "media-panic",
}
COMMON = {"direction", "timestamp", "call", "event"}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
texts = st.text(max_size=30)
optional_texts = st.none() | texts


@st.composite
def events(draw: st.DrawFn) -> ev.Event:
    common: dict[str, Any] = {
        "direction": draw(st.sampled_from(list(ev.Direction))),
        "timestamp": ev.format_timestamp(draw(st.integers(0, 4_000_000_000_000)) / 1000),
        "call": draw(texts),
    }
    kind = draw(st.integers(0, 5))
    if kind == 0:
        cls = draw(st.sampled_from(list(ev.STATE_EVENTS.values())))
        return cls(**common, reason=draw(optional_texts))
    if kind == 1:
        return ev.Migrate(**common, uri=draw(optional_texts))
    if kind == 2:
        cls2 = draw(st.sampled_from([ev.Ping, ev.Pong]))
        return cls2(**common, nonce=draw(optional_texts))
    if kind == 3:
        return ev.HandlerChanged(**common, handler=draw(texts))
    if kind == 4:
        cls3 = draw(st.sampled_from([ev.Reconnecting, ev.Reconnected, ev.MediaPanic]))
        return cls3(**common)
    event_type = draw(texts.filter(lambda t: t not in KNOWN_TYPES))
    members = draw(
        st.dictionaries(texts.filter(lambda k: k not in COMMON), json_values, max_size=4)
    )
    return ev.UnknownEvent(**common, event_type=event_type, members=members)


def random_cuts(draw: st.DrawFn, length: int) -> list[int]:
    return draw(st.lists(st.integers(0, length), max_size=12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), max_size=8), st.data())
def test_written_events_read_back_whatever_the_split(
    written: list[ev.Event], data: st.DataObject
) -> None:
    writer = EventStreamWriter()
    body = writer.open() + b"".join(writer.encode(e) for e in written)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=12))
    reader = EventStreamReader()
    got: list[ev.Event | InvalidEvent] = []
    for chunk in split_at(body, cuts):
        got.extend(reader.feed(chunk))
    assert got == written
    reader.eof()
    assert not reader.closed
    assert reader.feed(b"") == []


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=5), max_size=6),
    st.integers(0, 3),
    st.booleans(),
    st.data(),
)
def test_any_objects_with_any_white_space(
    objects: list[dict[str, Any]], indent: int, close: bool, data: st.DataObject
) -> None:
    body = json.dumps(objects, indent=indent or None, ensure_ascii=data.draw(st.booleans()))
    raw = body.encode("utf-8")
    if not close:
        raw = raw[: raw.rindex(b"]")]
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    decoder = JsonArrayDecoder()
    assert feed_chunks(decoder, split_at(raw, cuts)) == objects
    assert decoder.closed is close


TOKENS = [
    b"[", b"]", b"{", b"}", b",", b":", b'"', b"\\", b'"a"', b"1", b"-0.5e3", b"true", b"nul",
    b" ", b"\n", b"\\u", b"d800", b"00e9", b"\xc3", b"\xa9", b"\xff", b"x",
]  # fmt: skip
token_soup = st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.binary(max_size=200).map(lambda b: b"[" + b),
        token_soup,
        token_soup.map(lambda b: b"[" + b),
    ),
    st.data(),
)
def test_random_bytes_raise_only_stream_errors_and_split_does_not_matter(
    raw: bytes, data: st.DataObject
) -> None:
    whole = outcome(raw, [raw])
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    assert outcome(raw, split_at(raw, cuts)) == whole
    assert outcome(raw, [raw[i : i + 1] for i in range(len(raw))]) == whole
    if whole[0] == "error":
        offset, _ = whole[1]
        assert 0 <= offset <= len(raw)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | token_soup)
def test_reader_on_random_bytes_raises_only_stream_errors(raw: bytes) -> None:
    reader = EventStreamReader()
    try:
        reader.feed(b"[" + raw)
        reader.eof()
    except EventStreamError:
        pass


# --- reader -----------------------------------------------------------------------------------


class TestReader:
    def test_typed_events(self) -> None:
        reader = EventStreamReader()
        out = reader.feed(b"[" + compact(P) + b"," + compact(A))
        assert out == [
            ev.Proceeding(direction=ev.Direction.S2C, call=CALL, timestamp=TS),
            ev.Alerting(
                direction=ev.Direction.S2C, call=CALL, timestamp=TS, reason="ringing at the far end"
            ),
        ]
        assert reader.offset == 2 + len(compact(P)) + len(compact(A))

    def test_ended_is_end(self) -> None:
        (event,) = EventStreamReader().feed(b"[" + compact(doc("ended")))
        assert isinstance(event, ev.End)
        assert event.to_json()["event"] == "end"

    def test_unknown_type_is_kept(self) -> None:
        (event,) = EventStreamReader().feed(
            b"[" + compact(doc("x-new", extra={"deep": [1, {"x": None}]}, n=3))
        )
        assert isinstance(event, ev.UnknownEvent)
        assert event.type == "x-new"
        assert event.members == {"extra": {"deep": [1, {"x": None}]}, "n": 3}

    def test_invalid_events_do_not_stop_the_stream(self) -> None:
        no_call = {k: v for k, v in P.items() if k != "call"}
        bad_direction = doc("alerting", direction="sideways")
        reader = EventStreamReader()
        out = reader.feed(
            b"[" + compact(no_call) + b"," + compact(bad_direction) + b",{}," + compact(P)
        )
        assert out[0] == InvalidEvent(error="event lacks the 'call' member", document=no_call)
        assert isinstance(out[1], InvalidEvent)
        assert "direction must be 'c2s' or 's2c'" in out[1].error
        assert out[1].document == bad_direction
        assert isinstance(out[2], InvalidEvent)
        assert out[2].document == {}
        assert isinstance(out[3], ev.Proceeding)

    def test_framing_errors_still_raise(self) -> None:
        reader = EventStreamReader()
        with pytest.raises(EventStreamError):
            reader.feed(b"[{}]]")
        assert reader.closed

    def test_eof_inside_event(self) -> None:
        reader = EventStreamReader()
        reader.feed(b'[{"event"')
        with pytest.raises(EventStreamError):
            reader.eof()

    def test_size_limit_is_passed_on(self) -> None:
        reader = EventStreamReader(max_event_bytes=20)
        with pytest.raises(EventStreamError):
            reader.feed(b"[" + compact(P))


# --- writer -----------------------------------------------------------------------------------


class TestWriter:
    def test_body_is_a_json_array_prefix(self) -> None:
        writer = EventStreamWriter()
        p = ev.Proceeding(direction=ev.Direction.S2C, call=CALL, timestamp=TS)
        e = ev.End(direction=ev.Direction.C2S, call=CALL, timestamp=TS, reason="Tschüss ☎")
        assert writer.open() == b"["
        first = writer.encode(p)
        second = writer.encode(e)
        assert first == compact(p.to_json())
        assert second == b"," + compact(e.to_json())
        assert "Tschüss ☎".encode() in second  # not \u-escaped
        assert first == (
            b'{"direction":"s2c","timestamp":"2026-11-22T10:00:00.123Z",'
            b'"call":"' + CALL.encode() + b'","event":"proceeding"}'
        )
        third = writer.encode_object({"event": "x", "n": [1, 2]})
        assert third == b',{"event":"x","n":[1,2]}'
        end = writer.close()
        assert end == b"]"
        assert json.loads(b"[" + first + second + third + end) == [
            p.to_json(),
            e.to_json(),
            {"event": "x", "n": [1, 2]},
        ]

    def test_order_is_enforced(self) -> None:
        writer = EventStreamWriter()
        with pytest.raises(LocalProtocolError):
            writer.encode_object({})
        with pytest.raises(LocalProtocolError):
            writer.close()
        writer.open()
        with pytest.raises(LocalProtocolError):
            writer.open()
        writer.close()
        with pytest.raises(LocalProtocolError):
            writer.encode_object({})
        with pytest.raises(LocalProtocolError):
            writer.close()

    @pytest.mark.parametrize(
        "obj",
        [{"n": float("nan")}, {"n": float("inf")}, {"s": "\ud800"}, {"o": object()}, {(1, 2): 3}],
    )
    def test_unwritable_objects(self, obj: dict[Any, Any]) -> None:
        writer = EventStreamWriter()
        writer.open()
        with pytest.raises(LocalProtocolError):
            writer.encode_object(obj)
        # A refused object does not count: the next one still has no comma.
        assert writer.encode_object({}) == b"{}"

    def test_oversized_event_is_refused(self) -> None:
        writer = EventStreamWriter()
        writer.open()
        fits = {"p": "x" * (MAX_EVENT_BYTES - 8)}
        assert len(writer.encode_object(fits)) == MAX_EVENT_BYTES
        with pytest.raises(LocalProtocolError):
            writer.encode_object({"p": "x" * (MAX_EVENT_BYTES - 7)})


# --- vectors ----------------------------------------------------------------------------------


def load_vectors() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return cases


def vector_bytes(case: dict[str, Any]) -> bytes:
    if "stream_hex" in case:
        return bytes.fromhex(case["stream_hex"])
    text: str = case["stream"]
    return text.encode("utf-8")


def split_strategies(data: bytes) -> list[list[bytes]]:
    rng = random.Random(len(data))
    strategies = [[data], [data[i : i + 1] for i in range(len(data))]]
    positions = range(len(data) + 1) if len(data) < 2000 else rng.sample(range(len(data)), 60)
    strategies += [[data[:i], data[i:]] for i in positions]
    for _ in range(10):
        cuts = rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randint(1, 40)))
        strategies.append(split_at(data, cuts))
    return strategies


def test_vector_file_covers_good_and_bad_streams() -> None:
    cases = load_vectors()
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names))
    assert sum("error_offset" in c for c in cases) >= 20
    assert sum("events" in c for c in cases) >= 15


@pytest.mark.parametrize("case", load_vectors(), ids=lambda c: str(c["name"]))
def test_vector(case: dict[str, Any]) -> None:
    data = vector_bytes(case)
    assert ("stream" in case) != ("stream_hex" in case)
    for chunks in split_strategies(data):
        reader = EventStreamReader()
        if "error_offset" in case:
            with pytest.raises(EventStreamError) as info:
                for chunk in chunks:
                    reader.feed(chunk)
            assert info.value.offset == case["error_offset"]
            continue
        got: list[ev.Event | InvalidEvent] = []
        for chunk in chunks:
            got.extend(reader.feed(chunk))
        documents = [g.document if isinstance(g, InvalidEvent) else g.to_json() for g in got]
        types = [None if isinstance(g, InvalidEvent) else g.type for g in got]
        assert types == case["event_types"]
        # to_json() writes "end" for "ended"; everything else comes back member for member.
        expected = [
            {**e, "event": t} if t is not None else e
            for e, t in zip(case["events"], case["event_types"], strict=True)
        ]
        assert documents == expected
        assert JsonArrayDecoder().feed(data) == case["events"]
        assert reader.closed is case["closed"]
        if "eof_error_offset" in case:
            with pytest.raises(EventStreamError) as info:
                reader.eof()
            assert info.value.offset == case["eof_error_offset"]
        else:
            reader.eof()
