"""Tests of the screens as text lines (riptphone.ui.text)."""

from __future__ import annotations

import typing
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riptdev import gallery
from riptphone.ui import text as t
from riptphone.ui.model import (
    Boot,
    Calling,
    CallSummary,
    Dialling,
    Error,
    Idle,
    InCall,
    NotConnected,
    NotProvisioned,
    RemoteInUse,
    Ringing,
    Screen,
)

SCREEN_TYPES: tuple[type, ...] = typing.get_args(Screen)
PROPERTY = settings(max_examples=200, deadline=None)


def assert_short(lines: list[str]) -> None:
    assert lines, "no lines"
    for line in lines:
        assert line, lines
        assert len(line) <= t.LINE_WIDTH, (line, len(line))
        assert line == line.strip(), line
        assert not any(unicodedata.category(c)[0] == "C" for c in line), line


@pytest.mark.parametrize("screen_type", SCREEN_TYPES, ids=lambda c: c.__name__)
def test_any_value_of_every_screen_type_gives_short_non_empty_lines(screen_type: type) -> None:
    @PROPERTY
    @given(st.from_type(screen_type))
    def check(screen: Screen) -> None:
        assert_short(t.lines(screen))

    check()


@pytest.mark.parametrize("variant", gallery.VARIANTS, ids=lambda v: v.name)
def test_gallery_variants_give_short_lines(variant: gallery.Variant) -> None:
    assert_short(t.lines(variant.screen))


def test_idle_lines() -> None:
    assert t.lines(Idle("+14085551002", "", "14:05", push="up")) == [
        "+1 408 555 1002",
        "Idle  14:05",
        "registered, push up",
    ]
    assert t.lines(
        Idle("+14085551002", "Front desk", "9:41", registered=False, missed=3, dnd=True)
    ) == [
        "+1 408 555 1002",
        "Front desk",
        "Idle  9:41",
        "not registered",
        "do not disturb",
        "3 missed calls",
    ]


def test_call_lines() -> None:
    assert t.lines(Ringing("+14085551002", "Alice Liddell")) == [
        "Incoming call",
        "Alice Liddell",
        "+1 408 555 1002",
        "lift to answer",
    ]
    assert t.lines(InCall("+14085551002", 201, codec="OPUS", quality=3, muted=True)) == [
        "In call  03:21",
        "+1 408 555 1002",
        "OPUS  q 3/4",
        "MUTED",
    ]
    assert t.lines(Calling("+14085551002", alerting=True))[0] == "Ringing…"
    assert t.lines(RemoteInUse("+14085551002", "Kitchen"))[0] == "On Kitchen"
    assert t.lines(RemoteInUse("+14085551002"))[-1] == t.PULL_HINT
    assert t.lines(CallSummary("+14085551002", "busy", 61)) == [
        "Call ended  01:01",
        "+1 408 555 1002",
        "busy",
    ]
    assert t.lines(Ringing(""))[1] == "unknown"


def test_dialling_lines() -> None:
    assert t.lines(Dialling("")) == ["Dial tone", "type a number"]
    assert t.lines(Dialling("4085551002", preview="+14085551002")) == [
        "Dialling",
        "4085551002",
        "= +1 408 555 1002",
        "# to dial",
    ]
    long = t.lines(Dialling("0114420794609581234567890"))
    assert long[1] == "…" + "0114420794609581234567890"[-(t.LINE_WIDTH - 1) :]


def test_other_lines() -> None:
    assert t.lines(Boot("0.1.0")) == ["ript-phone", "0.1.0", "starting…"]
    assert t.lines(NotConnected("no network", retry_in_s=30)) == [
        "Offline",
        "no network",
        "retry in 30 s",
    ]
    assert t.lines(NotConnected("x", registering=True, retry_in_s=600))[::2] == [
        "Registering…",
        "retry in 10 min",
    ]
    error = t.lines(Error("no audio device: hw:1,0 not found. Check [audio] device."))
    assert error[0] == "Error" and len(error) == 4


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1))
@PROPERTY
def test_the_verification_url_is_given_whole(url: str) -> None:
    lines = t.lines(NotProvisioned(url, "WDJB-MJHT", 600))
    assert lines[0] == "Not set up. Visit"
    assert "".join(lines[1:-2]) == url
    assert lines[-2:] == ["code WDJB-MJHT", "expires in 10 min"]


@pytest.mark.parametrize(
    ("number", "shown"),
    [
        ("+14085551002", "+1 408 555 1002"),
        ("+442079460958", "+44 20 7946 0958"),
        ("+4915112345678", "+49 1511 2345678"),
        ("+33612345678", "+33 6 12 34 56 78"),
        ("+447911123456", "+44 7911 123456"),
        ("+15551234567", "+1 555 123 4567"),
        ("+861065529988123", "+86 106 552 998 8123"),
        ("+3584", "+358 4"),
        ("+1", "+1"),
        ("4085551002", "4085551002"),
        ("sip:alice@example.com", "sip:alice@example.com"),
        ("Alice\n\u202eLiddell", "Alice Liddell"),
    ],
)
def test_format_number(number: str, shown: str) -> None:
    assert t.format_number(number) == shown


@given(st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True))
@PROPERTY
def test_grouping_keeps_every_digit(number: str) -> None:
    shown = t.format_number(number)
    assert shown.replace(" ", "") == number
    assert shown.startswith("+") and "  " not in shown


@given(st.text(max_size=100), st.integers(2, 40))
@PROPERTY
def test_shortening_keeps_both_ends_or_the_newest(text: str, width: int) -> None:
    for shorten in (t.shorten_end, t.shorten_middle, t.shorten_start):
        assert len(shorten(text, width)) <= width
    if len(text) <= width:
        assert t.shorten_middle(text, width) == text
        return
    head, tail = (
        t.shorten_middle(text, width).split(t.ELLIPSIS, 1)
        if t.ELLIPSIS not in text
        else (
            "",
            "",
        )
    )
    assert text.startswith(head) and text.endswith(tail)
    assert t.shorten_start(text, width) == t.ELLIPSIS + text[-(width - 1) :]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "00:00"), (59, "00:59"), (201, "03:21"), (3723, "1:02:03"), (-5, "00:00")],
)
def test_timer(seconds: int, shown: str) -> None:
    assert t.timer(seconds) == shown


def test_clean_drops_control_and_combining_characters() -> None:
    assert t.clean("A\x00li\u0301ce\r\n  L\u200b") == "Alíce L"
    assert t.ascii_only("Zoë Ünal 李") == "Zoe Unal ?"
