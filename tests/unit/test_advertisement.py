"""Tests of ript.protocol.advertisement: grammar, values, checks and negotiation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ript.protocol.advertisement import (
    INT64_MAX,
    INT64_MIN,
    PARAM_DEFAULTS,
    Advertisement,
    Codec,
    Directive,
    GrammarError,
    MediaKind,
    MediaPort,
    PortDirection,
    Stream,
    check_directive,
    directive_within,
    format_advertisement,
    format_codec,
    format_directive,
    media_kind,
    negotiate,
    parse_advertisement,
    parse_directive,
    phone_advertisement,
)
from ript.protocol.errors import LocalProtocolError, RemoteProtocolError

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "advertisements.json").read_text("utf-8")
)

PHONE_TEXT = (
    "1 in: opus; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU; PCMA; telephone-event; CN;"
)
PROVIDER_TEXT = "1 in: opus,ptime=20; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU;"

IN, OUT = PortDirection.IN, PortDirection.OUT


def adv(text: str) -> Advertisement:
    return parse_advertisement(text)


def directive(text: str) -> Directive:
    return parse_directive(text)


# --------------------------------------------------------------------------- draft examples


def test_draft_ip_phone_example() -> None:
    parsed = adv(
        "1 in: opus; PCMU; PCMA;\n                                  2 out: opus; PCMU; PCMA;"
    )
    codecs = (Codec("opus"), Codec("PCMU"), Codec("PCMA"))
    assert parsed == Advertisement((MediaPort(1, IN, codecs), MediaPort(2, OUT, codecs)))
    assert parsed.sinks() == (MediaPort(1, IN, codecs),)
    assert parsed.sources() == (MediaPort(2, OUT, codecs),)
    assert format_advertisement(parsed) == "1 in: opus; PCMU; PCMA;\n2 out: opus; PCMU; PCMA;"


def test_draft_camera_example() -> None:
    text = "1 out: H264,max-width=3840,max-height=2160; AV1,max-width=1920,max-height=1080;"
    parsed = adv(text)
    port = parsed.port(OUT, 1)
    assert port is not None
    assert port.codecs == (
        Codec("H264", {"max-width": 3840, "max-height": 2160}),
        Codec("AV1", {"max-width": 1920, "max-height": 1080}),
    )
    assert port.kind is MediaKind.VIDEO
    assert format_advertisement(parsed) == text


def test_draft_video_phone_example() -> None:
    parsed = adv(
        """           1 in: opus;
           2 out: opus;
           3 in: H264,max-width=1280,max-height=720,max-fps=60;
           3 out: H264,max-width=1280,max-height=720,max-fps=60;"""
    )
    assert [(p.id, p.direction) for p in parsed.ports] == [(1, IN), (2, OUT), (3, IN), (3, OUT)]
    h264 = Codec("H264", {"max-width": 1280, "max-height": 720, "max-fps": 60})
    assert parsed.port("in", 3) == MediaPort(3, IN, (h264,))
    assert parsed.port(OUT, 3) == MediaPort(3, OUT, (h264,))
    assert parsed.port(OUT, 1) is None
    assert h264.value("max-fps") == 60


def test_draft_client_directive_without_final_semicolon() -> None:
    parsed = directive(
        "1 to 1: opus;\n                              2 to 2:  H264,max-width=1280,max-height=720"
    )
    assert parsed == Directive(
        (
            Stream(1, 1, (Codec("opus"),)),
            Stream(2, 2, (Codec("H264", {"max-width": 1280, "max-height": 720}),)),
        )
    )
    assert format_directive(parsed) == "1 to 1: opus;\n2 to 2: H264,max-width=1280,max-height=720;"


def test_profile_directive_example() -> None:
    parsed = directive("1 to 1: opus,ptime=20;")
    assert parsed.streams == (Stream(1, 1, (Codec("opus", {"ptime": 20}),)),)
    assert parsed.streams[0].codecs[0].value("ptime") == 20
    assert format_directive(parsed) == "1 to 1: opus,ptime=20;"


def test_phone_advertisement_is_the_profile_text() -> None:
    assert format_advertisement(phone_advertisement()) == PHONE_TEXT
    assert adv(PHONE_TEXT) == phone_advertisement()
    tuned = phone_advertisement({"ptime": 20, "sr": 48000})
    assert format_advertisement(tuned).splitlines()[0] == (
        "1 in: opus,ptime=20; PCMU,ptime=20; PCMA,ptime=20; telephone-event,ptime=20; CN,ptime=20;"
    )


# --------------------------------------------------------------------------- white space


@pytest.mark.parametrize(
    "text",
    [
        "1 in: opus; PCMU;",
        "1 in:opus;PCMU;",
        "1in:opus;PCMU",
        "  1 in : opus ; PCMU ;  ",
        "1\tin\t:\topus\t;\tPCMU\t;",
        "\r\n1\r\nin\r\n:\r\nopus\r\n;\r\nPCMU\r\n;\r\n",
        "1 IN: opus; PCMU;",
        "01 In: opus; PCMU",
    ],
)
def test_white_space_and_case_variants(text: str) -> None:
    assert adv(text) == Advertisement((MediaPort(1, IN, (Codec("opus"), Codec("PCMU"))),))


@pytest.mark.parametrize(
    "text",
    [
        "1 to 2: opus,ptime=20;",
        "1to2:opus,ptime=20",
        " 1 TO 2 : opus , ptime = 20 ; ",
        "1 to2:\n\topus,\n\tptime=+020;\n",
    ],
)
def test_directive_white_space_variants(text: str) -> None:
    assert directive(text) == Directive((Stream(1, 2, (Codec("opus", {"ptime": 20}),)),))


def test_bare_parameter_means_one() -> None:
    codec = adv("1 in: opus,cbr;").ports[0].codecs[0]
    assert codec.params == {"cbr": 1}
    assert codec.value("cbr") == 1


def test_signed_integers_at_the_limits() -> None:
    codec = adv(f"1 out: x,lo={INT64_MIN},hi=+{INT64_MAX},z=-0;").ports[0].codecs[0]
    assert dict(codec.params) == {"lo": INT64_MIN, "hi": INT64_MAX, "z": 0}
    assert format_codec(codec) == f"x,lo={INT64_MIN},hi={INT64_MAX},z=0"


def test_default_valued_parameters_are_dropped() -> None:
    parsed = adv(f"1 out: opus,sr=48000,ss=16,cbr=0,ch=1,ptime=30,br={INT64_MAX},fps=30,x=7;")
    codec = parsed.ports[0].codecs[0]
    assert dict(codec.params) == {"x": 7}
    assert format_advertisement(parsed) == "1 out: opus,x=7;"
    assert codec == Codec("opus", {"x": 7})


# --------------------------------------------------------------------------- grammar errors


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("1 in opus;", "expected ':', found 'opus'", 5),
        ("1 on: opus;", "expected 'in' or 'out', found 'on'", 2),
        ("1 into: opus;", "expected 'in' or 'out', found 'into'", 2),
        ("1 in: 9opus;", "a codec name must not start with a digit", 6),
        ("1 in: opus,sr=9223372036854775808;", "integer 9223372036854775808 does not fit", 14),
        ("1 in: opus,sr=-9223372036854775809;", "does not fit in signed 64 bits", 14),
        ("0 in: opus;", "port id 0 is not in 1..255", 0),
        ("256 in: opus;", "port id 256 is not in 1..255", 0),
        ("1 out: opus;\n1 out: PCMU;", "port '1 out' given twice", 13),
        ("1 in: ;", "expected a codec name, found ';'", 6),
        ("1 in:", "expected a codec name, found end of text", 5),
        ("1 in: opus; 2 out: ;", "expected a codec name, found ';'", 19),
        ("garbage", "expected a port id, found 'garbage'", 0),
        ("%%%", "expected a port id, found '%'", 0),
        ("", "the advertisement is empty", 0),
        (" \n ", "the advertisement is empty", 3),
        ("1 in: opus PCMU;", "expected ',' or ';', found 'PCMU'", 11),
        ("1 in: opus;;", "expected a codec name or a port id, found ';'", 11),
        ("1 in: opus,sr=1,SR=2;", "parameter 'sr' given twice in codec 'opus'", 16),
        ("1 in: opus,;", "expected a parameter name, found ';'", 11),
        ("1 in: opus,2x;", "a parameter name must not start with a digit", 11),
        ("1 in: opus,sr=;", "expected an integer, found ';'", 14),
        ("1 in: opus,sr=x;", "expected an integer, found 'x'", 14),
        ("1 in: opus\u00e9;", "expected ',' or ';'", 10),
        ("1 in: opus;\u00a0", "expected a codec name or a port id", 11),
    ],
)
def test_advertisement_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_advertisement(text)
    assert message in str(caught.value)
    assert str(caught.value).endswith(f" at offset {offset}")
    assert caught.value.offset == offset


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("1 to 1 opus;", "expected ':'", 7),
        ("1 in: opus;", "expected 'to', found 'in'", 2),
        ("1 to 1: 9opus;", "a codec name must not start with a digit", 8),
        ("1 to 0: opus;", "sink id 0 is not in 1..255", 5),
        ("0 to 1: opus;", "source id 0 is not in 1..255", 0),
        ("1 to 1: opus;\n1 to 1: PCMU;", "stream '1 to 1' given twice", 14),
        ("1 to 1:", "expected a codec name", 7),
        ("1 to 1: opus;;", "expected a codec name or a source id, found ';'", 13),
        ("", "the directive is empty", 0),
        ("1 to x: opus;", "expected a sink id, found 'x'", 5),
        ("1 to 1: opus,ptime=1" + "0" * 40 + ";", "integer 10000000000000000000... does", 19),
    ],
)
def test_directive_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(GrammarError) as caught:
        parse_directive(text)
    assert message in str(caught.value)
    assert caught.value.offset == offset


def test_grammar_error_is_a_remote_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match=r"^expected ':', found 'opus' at offset 7$"):
        parse_directive("1 to 1 opus;")


@pytest.mark.parametrize("value", [None, 5, b"1 in: opus;", ["1 in: opus;"]])
def test_non_text_is_refused(value: Any) -> None:
    with pytest.raises(GrammarError, match=r"^an advertisement must be text"):
        parse_advertisement(value)
    with pytest.raises(GrammarError, match=r"^a directive must be text"):
        parse_directive(value)


def test_huge_numbers_are_refused_quickly() -> None:
    with pytest.raises(GrammarError, match=r"port id 11111111111111111111\.\.\. is not in"):
        parse_advertisement("1" * 100_000 + " in: opus;")
    with pytest.raises(GrammarError, match="does not fit"):
        parse_advertisement("1 in: opus,sr=" + "9" * 100_000 + ";")
    assert adv("1 in: opus,sr=" + "0" * 10_000 + "8000;").ports[0].codecs[0].params == {"sr": 8000}


# --------------------------------------------------------------------------- value classes


def test_codec_values_and_defaults() -> None:
    codec = Codec("opus", {"PTime": 20, "sr": 48000, "max-fps": 30})
    assert dict(codec.params) == {"ptime": 20, "max-fps": 30}
    assert codec.value("ptime") == 20
    assert codec.value("PTIME") == 20
    assert codec.effective("sr") == 48000
    assert codec.value("br") == INT64_MAX
    assert codec.value("max-width") is None
    assert codec.matches("OPUS")
    assert not codec.matches("PCMU")
    assert codec == Codec("opus", {"max-fps": 30, "ptime": 20})
    assert hash(codec) == hash(Codec("opus", {"max-fps": 30, "ptime": 20}))
    assert codec != Codec("opus", {"ptime": 20})
    assert repr(codec) == "Codec('opus', {'ptime': 20, 'max-fps': 30})"
    with pytest.raises(TypeError):
        codec.params["x"] = 1  # type: ignore[index]


def test_defaults_table() -> None:
    assert dict(PARAM_DEFAULTS) == {
        "sr": 48000,
        "ss": 16,
        "cbr": 0,
        "ch": 1,
        "ptime": 30,
        "fps": 30,
        "pr": 2**63 - 1,
        "depth": 8,
        "tlay": 1,
        "slay": 1,
        "br": 2**63 - 1,
    }


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("9opus", {}, "not a media subtype name"),
        ("", {}, "not a media subtype name"),
        ("op us", {}, "not a media subtype name"),
        ("opus", {"sr": 1, "SR": 2}, "given twice"),
        ("opus", {"1x": 1}, "parameter name '1x' is not valid"),
        ("opus", {"sr": True}, "must be an int, not bool"),
        ("opus", {"sr": 2**63}, "does not fit in signed 64 bits"),
        ("opus", {"sr": "8000"}, "must be an int, not str"),
    ],
)
def test_bad_codec_values(name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        Codec(name, params)


def test_bad_ports_and_advertisements() -> None:
    opus = (Codec("opus"),)
    with pytest.raises(LocalProtocolError, match=r"not in 1\.\.255"):
        MediaPort(0, IN, opus)
    with pytest.raises(LocalProtocolError, match=r"not in 1\.\.255"):
        MediaPort(256, IN, opus)
    with pytest.raises(LocalProtocolError, match="non-empty tuple of codecs"):
        MediaPort(1, IN, ())
    with pytest.raises(LocalProtocolError, match="'in' or 'out'"):
        MediaPort(1, "sideways", opus)  # type: ignore[arg-type]
    assert MediaPort(1, "out", opus).direction is OUT  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="non-empty tuple of ports"):
        Advertisement(())
    with pytest.raises(LocalProtocolError, match="port '1 in' given twice"):
        Advertisement((MediaPort(1, IN, opus), MediaPort(1, IN, opus)))
    with pytest.raises(LocalProtocolError, match="'in' or 'out'"):
        Advertisement((MediaPort(1, IN, opus),)).port("up", 1)


def test_directive_values() -> None:
    opus = (Codec("opus"),)
    assert not Directive()
    assert Directive((Stream(1, 1, opus),))
    with pytest.raises(LocalProtocolError, match="no text form"):
        format_directive(Directive())
    with pytest.raises(LocalProtocolError, match="stream '1 to 2' given twice"):
        Directive((Stream(1, 2, opus), Stream(1, 2, opus)))
    with pytest.raises(LocalProtocolError, match="sink id 300 is not in"):
        Stream(1, 300, opus)
    with pytest.raises(LocalProtocolError, match="non-empty tuple of codecs"):
        Stream(1, 1, ())


def test_media_kinds() -> None:
    assert media_kind("PCMU") is MediaKind.AUDIO
    assert media_kind("telephone-event") is MediaKind.AUDIO
    assert media_kind("av1") is MediaKind.VIDEO
    assert media_kind("x-unknown") is None
    assert MediaPort(1, IN, (Codec("x"), Codec("VP8"))).kind is MediaKind.VIDEO
    assert MediaPort(1, IN, (Codec("x"),)).kind is None


# --------------------------------------------------------------------------- directive checks


def test_check_directive_accepts_a_fitting_directive() -> None:
    phone, provider = adv(PHONE_TEXT), adv(PROVIDER_TEXT)
    good = directive("1 to 1: opus,ptime=20; telephone-event; CN;")
    assert check_directive(good, phone, provider) == []
    assert directive_within(good, phone, provider)
    assert check_directive(directive("1 to 1: Opus,ptime=-5;"), phone, provider) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("2 to 1: PCMU;", "stream 2 to 1: the sender has no source 2"),
        ("1 to 2: PCMU;", "stream 1 to 2: the receiver has no sink 2"),
        ("1 to 1: G729;", "stream 1 to 1: the sender's source 1 does not offer G729"),
        ("1 to 1: opus,ptime=21;", "opus ptime=21 is above the bound 20 of the receiver's sink 1"),
        ("1 to 1: opus;", "opus default ptime=30 is above the bound 20 of the receiver's sink 1"),
        ("1 to 1: PCMU,max-fps=5;", "PCMU sets max-fps=5, which the sender's source 1 does not"),
        ("1 to 1: PCMU,sr=96000;", "PCMU sr=96000 is above the bound 48000 of the sender's"),
    ],
)
def test_check_directive_problems(text: str, problem: str) -> None:
    problems = check_directive(directive(text), adv(PHONE_TEXT), adv(PROVIDER_TEXT))
    assert any(problem in p for p in problems), problems
    assert not directive_within(directive(text), adv(PHONE_TEXT), adv(PROVIDER_TEXT))


def test_check_directive_reports_every_problem() -> None:
    problems = check_directive(
        directive("1 to 1: opus,ptime=40; G729;\n3 to 3: PCMU;"),
        adv(PHONE_TEXT),
        adv(PROVIDER_TEXT),
    )
    assert problems == [
        "stream 1 to 1: opus ptime=40 is above the bound 30 of the sender's source 1",
        "stream 1 to 1: opus ptime=40 is above the bound 20 of the receiver's sink 1",
        "stream 1 to 1: the sender's source 1 does not offer G729",
        "stream 1 to 1: the receiver's sink 1 does not offer G729",
        "stream 3 to 3: the sender has no source 3",
        "stream 3 to 3: the receiver has no sink 3",
    ]


def test_check_directive_with_one_side_unknown() -> None:
    phone = adv(PHONE_TEXT)
    assert check_directive(directive("1 to 9: opus,ptime=20;"), phone, None) == []
    assert check_directive(directive("2 to 1: opus;"), phone, None) == [
        "stream 2 to 1: the sender has no source 2"
    ]
    assert check_directive(directive("9 to 1: opus;"), None, phone) == []
    assert check_directive(directive("1 to 1: opus;"), None, None) == []


def test_check_directive_entries_of_one_name_are_alternatives() -> None:
    sender = adv("1 out: H264,max-width=3840,fps=30; H264,max-width=1920,fps=60;")
    receiver = adv("1 in: H264,max-width=3840,fps=60;")
    assert check_directive(directive("1 to 1: H264,max-width=1920,fps=60;"), sender, receiver) == []
    assert check_directive(directive("1 to 1: H264,max-width=3840;"), sender, receiver) == []
    assert check_directive(directive("1 to 1: H264,max-width=3840,fps=60;"), sender, receiver) == [
        "stream 1 to 1: H264 fps=60 is above the bound 30 of the sender's source 1"
    ]


def test_param_without_default_left_out_of_a_directive_sets_no_bound() -> None:
    sender = adv("1 out: H264,max-width=1280,max-height=720,max-fps=60;")
    receiver = adv("1 in: H264;")
    assert check_directive(directive("1 to 1: H264;"), sender, receiver) == []
    assert check_directive(directive("1 to 1: H264,max-width=640;"), sender, receiver) == [
        "stream 1 to 1: H264 sets max-width=640, which the receiver's sink 1 does not advertise"
    ]


# --------------------------------------------------------------------------- negotiation


def test_negotiate_phone_and_provider() -> None:
    phone, provider = adv(PHONE_TEXT), adv(PROVIDER_TEXT)
    client = negotiate(phone, provider)
    assert format_directive(client) == "1 to 1: opus,ptime=20; telephone-event; CN;"
    server = negotiate(provider, phone)
    assert format_directive(server) == "1 to 1: opus;"


def test_negotiate_preference_order_and_fallback() -> None:
    sender, receiver = adv("1 out: PCMA; PCMU; G722;"), adv("1 in: G722; PCMU; PCMA;")
    assert format_directive(negotiate(sender, receiver)) == "1 to 1: PCMU;"
    assert format_directive(negotiate(sender, receiver, ("pcma",))) == "1 to 1: PCMA;"
    assert format_directive(negotiate(sender, receiver, ())) == "1 to 1: PCMA;"
    assert format_directive(negotiate(adv("1 out: G722;"), receiver)) == "1 to 1: G722;"


def test_negotiate_takes_the_lower_bound_of_each_parameter() -> None:
    sender = adv("1 out: opus,sr=16000,ch=2,br=64,x=3; CN,ptime=10;")
    receiver = adv("1 in: opus,sr=24000,ptime=60,br=32,ch=2; telephone-event; CN;")
    result = negotiate(sender, receiver)
    assert result.streams == (
        Stream(1, 1, (Codec("opus", {"sr": 16000, "ch": 2, "br": 32}), Codec("CN", {"ptime": 10}))),
    )


def test_negotiate_returns_an_empty_directive_when_nothing_is_common() -> None:
    assert negotiate(adv("1 out: G729;"), adv("1 in: opus;")) == Directive()
    assert negotiate(adv("1 out: telephone-event; CN;"), adv("1 in: telephone-event;")) == (
        Directive()
    )
    assert negotiate(adv("1 in: opus;"), adv("1 out: opus;")) == Directive()
    assert negotiate(adv("1 out: x-foo;"), adv("1 in: x-foo;")) == Directive()


def test_negotiate_pairs_ports_by_kind_and_id() -> None:
    sender = adv("2 out: H264,max-width=1920,max-height=1080;\n1 out: opus;\n3 out: opus;")
    receiver = adv("1 in: opus;\n3 in: H264,max-width=1280,max-height=720,max-fps=60;\n2 in: PCMU;")
    assert format_directive(negotiate(sender, receiver)) == (
        "1 to 1: opus;\n2 to 3: H264,max-width=1280,max-height=720;"
    )
    # A source skips a sink it shares nothing with and takes the next free one.
    sender = adv("1 out: opus;\n2 out: PCMU;")
    receiver = adv("1 in: G729;\n2 in: PCMU; opus;")
    assert format_directive(negotiate(sender, receiver)) == "1 to 2: opus;"


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("case", VECTORS["parse"], ids=lambda c: repr(c["text"])[:40])
def test_vector_parse(case: dict[str, Any]) -> None:
    if case["kind"] == "advertisement":
        parsed_adv = parse_advertisement(case["text"])
        assert parsed_adv.to_json() == case["parsed"]
        assert format_advertisement(parsed_adv) == case["canonical"]
        assert parse_advertisement(case["canonical"]) == parsed_adv
    else:
        assert case["kind"] == "directive"
        parsed_dir = parse_directive(case["text"])
        assert parsed_dir.to_json() == case["parsed"]
        assert format_directive(parsed_dir) == case["canonical"]
        assert parse_directive(case["canonical"]) == parsed_dir


@pytest.mark.parametrize("case", VECTORS["errors"], ids=lambda c: repr(c["text"])[:40])
def test_vector_errors(case: dict[str, Any]) -> None:
    parse = parse_advertisement if case["kind"] == "advertisement" else parse_directive
    with pytest.raises(GrammarError) as caught:
        parse(case["text"])
    assert case["error"] in str(caught.value)
    assert caught.value.offset == case["offset"]


def _maybe_adv(text: str | None) -> Advertisement | None:
    return None if text is None else parse_advertisement(text)


@pytest.mark.parametrize("case", VECTORS["checks"], ids=lambda c: repr(c["directive"])[:40])
def test_vector_checks(case: dict[str, Any]) -> None:
    problems = check_directive(
        parse_directive(case["directive"]), _maybe_adv(case["sender"]), _maybe_adv(case["receiver"])
    )
    assert (problems == []) is case["ok"], problems
    if "problem" in case:
        assert any(case["problem"] in p for p in problems), problems


@pytest.mark.parametrize("case", VECTORS["negotiations"], ids=lambda c: repr(c["sender"])[:40])
def test_vector_negotiations(case: dict[str, Any]) -> None:
    sender, receiver = parse_advertisement(case["sender"]), parse_advertisement(case["receiver"])
    result = negotiate(sender, receiver)
    if case["directive"] is None:
        assert result == Directive()
    else:
        assert format_directive(result) == case["directive"]
    assert check_directive(result, sender, receiver) == []


def test_vectors_cover_every_section() -> None:
    assert {c["kind"] for c in VECTORS["parse"]} == {"advertisement", "directive"}
    assert {c["kind"] for c in VECTORS["errors"]} == {"advertisement", "directive"}
    assert {c["ok"] for c in VECTORS["checks"]} == {True, False}
    assert len(VECTORS["negotiations"]) >= 5


# --------------------------------------------------------------------------- properties

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
names = st.builds(
    str.__add__,
    st.sampled_from(_LETTERS),
    st.text(alphabet=_LETTERS + "0123456789._+-", max_size=8),
)
pnames = st.one_of(st.sampled_from(sorted(PARAM_DEFAULTS)), names.map(str.lower))
values = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.integers(-5, 100_000),
    st.sampled_from(sorted(set(PARAM_DEFAULTS.values()))),
)
codecs = st.builds(Codec, names, st.dictionaries(pnames, values, max_size=4))
codec_tuples = st.lists(codecs, min_size=1, max_size=4).map(tuple)
ids = st.integers(1, 255)


@st.composite
def advertisements(draw: st.DrawFn) -> Advertisement:
    keys = draw(
        st.lists(
            st.tuples(ids, st.sampled_from(PortDirection)), min_size=1, max_size=5, unique=True
        )
    )
    return Advertisement(tuple(MediaPort(i, d, draw(codec_tuples)) for i, d in keys))


@st.composite
def directives(draw: st.DrawFn) -> Directive:
    keys = draw(st.lists(st.tuples(ids, ids), min_size=1, max_size=5, unique=True))
    return Directive(tuple(Stream(s, k, draw(codec_tuples)) for s, k in keys))


_SPACES = st.text(alphabet=" \t\r\n", max_size=3)


def _noisy_codecs(data: st.DataObject, codec_list: tuple[Codec, ...]) -> list[str]:
    """Tokens of a codec list with random case and value spelling; ';' ends each entry."""
    tokens: list[str] = []
    for codec in codec_list:
        tokens.append(codec.name)
        for pname, value in codec.params.items():
            tokens += [",", data.draw(st.sampled_from([pname, pname.upper()]))]
            if value == 1 and data.draw(st.booleans()):
                continue
            sign = "+" if value >= 0 and data.draw(st.booleans()) else ""
            zeros = "0" * data.draw(st.integers(0, 2)) if value >= 0 else ""
            tokens += ["=", f"{sign}{zeros}{value}"]
        tokens.append(";")
    return tokens


def _join_noisily(data: st.DataObject, tokens: list[str]) -> str:
    if data.draw(st.booleans()) and tokens[-1] == ";":
        tokens = tokens[:-1]  # the one place the final ';' may be left out
    return "".join(data.draw(_SPACES) + t for t in tokens) + data.draw(_SPACES)


@settings(max_examples=100, deadline=None)
@given(advertisements())
def test_advertisement_round_trip(value: Advertisement) -> None:
    text = format_advertisement(value)
    assert parse_advertisement(text) == value
    assert format_advertisement(parse_advertisement(text)) == text


@settings(max_examples=100, deadline=None)
@given(directives())
def test_directive_round_trip(value: Directive) -> None:
    text = format_directive(value)
    assert parse_directive(text) == value
    assert format_directive(parse_directive(text)) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), advertisements())
def test_any_white_space_parses_the_same(data: st.DataObject, value: Advertisement) -> None:
    tokens: list[str] = []
    for port in value.ports:
        word = data.draw(st.sampled_from([port.direction.value, port.direction.value.upper()]))
        tokens += [str(port.id), word, ":", *_noisy_codecs(data, port.codecs)]
    assert parse_advertisement(_join_noisily(data, tokens)) == value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), directives())
def test_any_white_space_parses_the_same_directive(data: st.DataObject, value: Directive) -> None:
    tokens: list[str] = []
    for stream in value.streams:
        word = data.draw(st.sampled_from(["to", "TO", "To"]))
        tokens += [str(stream.source), word, str(stream.sink), ":"]
        tokens += _noisy_codecs(data, stream.codecs)
    assert parse_directive(_join_noisily(data, tokens)) == value


_GRAMMAR_TEXT = st.text(alphabet="0123456789 \t\n:;,=+-inoutAZaz_.\u00e9\u0663", max_size=40)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), _GRAMMAR_TEXT))
def test_random_text_raises_only_grammar_error(text: str) -> None:
    for parse in (parse_advertisement, parse_directive):
        try:
            parsed = parse(text)
        except GrammarError as exc:
            assert 0 <= exc.offset <= len(text)
        else:
            assert parsed


_AUDIO = ["opus", "PCMU", "PCMA", "G722", "telephone-event", "CN"]
_VIDEO = ["H264", "AV1", "VP8"]
_PARAMS = st.dictionaries(
    st.sampled_from(["sr", "ptime", "ch", "br", "fps", "max-width", "gain"]),
    st.integers(-10, 10_000),
    max_size=3,
)


@st.composite
def media_ports(draw: st.DrawFn, port_id: int, direction: PortDirection) -> MediaPort:
    pool = draw(st.sampled_from([_AUDIO, _VIDEO]))
    names_drawn = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    return MediaPort(port_id, direction, tuple(Codec(n, draw(_PARAMS)) for n in names_drawn))


@st.composite
def media_advertisements(draw: st.DrawFn) -> Advertisement:
    keys = draw(
        st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from(PortDirection)),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    return Advertisement(tuple(draw(media_ports(i, d)) for i, d in keys))


@settings(max_examples=150, deadline=None)
@given(media_advertisements(), media_advertisements())
def test_negotiated_directives_stay_within_both_advertisements(
    sender: Advertisement, receiver: Advertisement
) -> None:
    result = negotiate(sender, receiver)
    assert check_directive(result, sender, receiver) == []
    sinks = [s.sink for s in result.streams]
    assert len(sinks) == len(set(sinks))
    if not result:
        return
    # Raise ptime of the first stream's main codec above every entry's bound: rejected.
    first = result.streams[0]
    main = first.codecs[0]
    source, sink = sender.port(OUT, first.source), receiver.port(IN, first.sink)
    assert source is not None and sink is not None
    bounds = [c.value("ptime") for p in (source, sink) for c in p.codecs if c.matches(main.name)]
    raised = Codec(main.name, {**main.params, "ptime": max(b for b in bounds if b is not None) + 1})
    bad = Directive(
        (Stream(first.source, first.sink, (raised, *first.codecs[1:])), *result.streams[1:])
    )
    problems = check_directive(bad, sender, receiver)
    assert any(f"{main.name} ptime=" in p and "is above the bound" in p for p in problems), problems
    assert not directive_within(bad, sender, receiver)
