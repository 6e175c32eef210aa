"""Tests of phone numbers, TG number patterns and dial plans (ript.protocol.numbers)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.protocol.errors import RiptProtocolError
from ript.protocol.numbers import (
    DialMatch,
    DialPlan,
    NumberError,
    NumberPattern,
    NumberPolicy,
    country_code_of,
    format_for_display,
    is_e164,
    tn_of,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "documents.json"
PROPERTY = settings(max_examples=200, deadline=None)
NANP = DialPlan.nanp()
NANP_408 = DialPlan.nanp("408")
UK = DialPlan.generic("44")


def numbers_vectors() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(VECTORS.read_text("utf-8"))["numbers"]
    return result


def plan_of(spec: dict[str, Any]) -> DialPlan:
    if spec["preset"] == "nanp":
        return DialPlan.nanp(spec.get("area_code", ""))
    if spec["preset"] == "generic":
        return DialPlan.generic(spec["country_code"])
    return DialPlan(country_code=spec["country_code"], digit_map=tuple(spec["digit_map"]))


# --- vectors -------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", numbers_vectors()["e164"], ids=lambda c: repr(c["text"]))
def test_vector_e164(case: dict[str, Any]) -> None:
    assert is_e164(case["text"]) is case["valid"]
    if case["valid"]:
        assert tn_of(case["text"]) == case["tn"]
    else:
        with pytest.raises(NumberError, match=r"is not an E\.164 number"):
            tn_of(case["text"])


@pytest.mark.parametrize("case", numbers_vectors()["policies"], ids=str)
def test_vector_policy(case: dict[str, Any]) -> None:
    policy = NumberPolicy.from_json(case["policy"])
    assert policy.allows(case["number"]) is case["allows"]
    expected = case["policy"] if isinstance(case["policy"], str) else list(case["policy"])
    assert policy.to_json() == expected


@pytest.mark.parametrize("case", numbers_vectors()["bad_policies"], ids=str)
def test_vector_bad_policy(case: dict[str, Any]) -> None:
    with pytest.raises(NumberError) as info:
        NumberPolicy.from_json(case["policy"])
    assert case["error"] in str(info.value)


@pytest.mark.parametrize("case", numbers_vectors()["normalise"], ids=str)
def test_vector_normalise(case: dict[str, Any]) -> None:
    plan = plan_of(case["plan"])
    assert plan.is_emergency(case["dialled"]) is case.get("emergency", False)
    if "error" in case:
        with pytest.raises(NumberError) as info:
            plan.normalise(case["dialled"])
        assert case["error"] in str(info.value)
    else:
        assert plan.normalise(case["dialled"]) == case["e164"]


@pytest.mark.parametrize("case", numbers_vectors()["digit_map"], ids=str)
def test_vector_digit_map(case: dict[str, Any]) -> None:
    assert plan_of(case["plan"]).match(case["digits"]).value == case["match"]


@pytest.mark.parametrize("case", numbers_vectors()["bad_digit_maps"], ids=str)
def test_vector_bad_digit_map(case: dict[str, Any]) -> None:
    with pytest.raises(NumberError) as info:
        DialPlan(country_code="1", digit_map=tuple(case["digit_map"]))
    assert case["error"] in str(info.value)


@pytest.mark.parametrize("case", numbers_vectors()["display"], ids=str)
def test_vector_display(case: dict[str, Any]) -> None:
    assert format_for_display(case["e164"], plan_of(case["plan"])) == case["shown"]


# --- E.164 ---------------------------------------------------------------------------------------


def test_is_e164_refuses_non_strings_and_trailing_newline() -> None:
    assert not is_e164(14085551002)
    assert not is_e164(None)
    assert not is_e164("+14085551002\n")


@pytest.mark.parametrize(
    ("number", "code"),
    [
        ("+14085551002", "1"),
        ("+74951234567", "7"),
        ("+201234567", "20"),
        ("+442079460000", "44"),
        ("+8613800000000", "86"),
        ("+35891234567", "358"),
        ("+2125221234", "212"),
        ("+8525551234", "852"),
        ("+971501234567", "971"),
    ],
)
def test_country_code_of(number: str, code: str) -> None:
    assert country_code_of(number) == code


def test_country_code_of_refuses_non_e164() -> None:
    with pytest.raises(NumberError, match=r"not an E\.164 number"):
        country_code_of("4085551002")


# --- patterns ------------------------------------------------------------------------------------


def test_pattern_parse_and_str() -> None:
    assert NumberPattern.parse("*") == NumberPattern("")
    assert NumberPattern.parse("+1408*") == NumberPattern("+1408")
    assert NumberPattern.parse("+14085551002") == NumberPattern("+14085551002", exact=True)
    assert [str(NumberPattern.parse(t)) for t in ("*", "+1408*", "+14085551002")] == [
        "*",
        "+1408*",
        "+14085551002",
    ]


def test_pattern_refuses_non_string() -> None:
    with pytest.raises(NumberError, match="must be a string, not int"):
        NumberPattern.parse(1408)


@pytest.mark.parametrize(
    ("prefix", "exact"), [("1408", False), ("+0", False), ("+1408", True), ("+", False)]
)
def test_pattern_constructor_checks(prefix: str, exact: bool) -> None:
    if exact and prefix == "+1408":
        assert NumberPattern(prefix, exact=True).matches("+1408")
        return
    with pytest.raises(NumberError, match="is not a valid number pattern"):
        NumberPattern(prefix, exact=exact)


def test_star_does_not_match_what_is_not_e164() -> None:
    assert not NumberPattern("").matches("4711@pbx.example")
    assert NumberPolicy.any().allows("+1")


def test_policy_needs_a_pattern() -> None:
    with pytest.raises(NumberError, match="at least one pattern"):
        NumberPolicy(())


def test_policy_str() -> None:
    assert str(NumberPolicy.from_json(["+1408*", "+44*"])) == "+1408*, +44*"


# --- dial plans ----------------------------------------------------------------------------------


def test_nanp_preset_fields() -> None:
    assert NANP.country_code == "1"
    assert NANP.national_prefix == "1"
    assert NANP.international_prefix == "011"
    assert NANP.national_number_lengths == (10,)
    assert NANP.local_number_lengths == ()
    assert NANP.emergency == ("911",)
    assert NANP_408.local_number_lengths == (7,)
    assert NANP_408.area_code == "408"


def test_generic_preset_fields() -> None:
    assert UK.national_number_lengths == tuple(range(4, 14))
    assert DialPlan.generic("358").national_number_lengths == tuple(range(4, 13))
    assert UK.emergency == ("112",)
    assert DialPlan.generic("44", emergency=("999", "112")).is_emergency("999")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"country_code": "0"}, "country code '0' must be 1 to 3 digits"),
        ({"country_code": "1234"}, "country code '1234' must be 1 to 3 digits"),
        ({"country_code": ""}, "country_code '' must be a string of digits"),
        ({"country_code": "1", "national_prefix": "+"}, "national_prefix '\\+' must be"),
        ({"country_code": "1", "international_prefix": ""}, "international_prefix '' must be"),
        ({"country_code": "1", "area_code": "4o8"}, "area_code '4o8' must be"),
        ({"country_code": "44", "national_number_lengths": (14,)}, "must be 1 to 13"),
        ({"country_code": "44", "national_number_lengths": (0,)}, "must be 1 to 13"),
        ({"country_code": "44", "national_number_lengths": (True,)}, "must be 1 to 13"),
        ({"country_code": "1", "area_code": "408", "local_number_lengths": (12,)}, "does not fit"),
        ({"country_code": "1", "emergency": ("9-1-1",)}, "emergency number '9-1-1' must be"),
        ({"country_code": "1", "digit_map": "x."}, "digit_map must be a list"),
        ({"country_code": "1", "digit_map": (5,)}, "digit-map entry 5 must be a string"),
    ],
)
def test_dial_plan_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(NumberError, match=message):
        DialPlan(**kwargs)


def test_dial_plan_accepts_lists_from_config() -> None:
    plan = DialPlan(country_code="49", national_number_lengths=[10, 11], digit_map=["0x."])  # type: ignore[arg-type]
    assert plan.national_number_lengths == (10, 11)
    assert plan.match("0301") is DialMatch.PARTIAL
    assert plan == DialPlan(country_code="49", national_number_lengths=(10, 11), digit_map=("0x.",))


@pytest.mark.parametrize("area_code", ["40", "4080", "108", "a08"])
def test_nanp_refuses_bad_area_code(area_code: str) -> None:
    with pytest.raises(NumberError, match="is not a NANP area code"):
        DialPlan.nanp(area_code)


def test_generic_refuses_bad_country_code() -> None:
    with pytest.raises(NumberError, match="country code"):
        DialPlan.generic("0")


def test_emergency_is_refused_by_normalise_and_named() -> None:
    with pytest.raises(NumberError) as info:
        NANP.normalise("911")
    assert str(info.value) == (
        "'911' is an emergency number: this phone cannot reach emergency services, "
        "use another phone"
    )
    assert NANP.is_emergency("911#")
    assert not NANP.is_emergency("9110")
    assert not NANP.is_emergency("112")


def test_too_short_message() -> None:
    with pytest.raises(NumberError) as info:
        NANP.normalise("12")
    assert str(info.value) == "'12' is too short to be a phone number"


def test_separators_are_shown_as_typed() -> None:
    with pytest.raises(NumberError, match=r"'\(408\) 555-10' is too short"):
        NANP.normalise(" (408) 555-10 ")


def test_dial_plan_without_national_lengths() -> None:
    plan = DialPlan(country_code="44")
    assert plan.normalise("00442079460000") == "+442079460000"
    with pytest.raises(NumberError, match="is too short"):
        plan.normalise("2079460000")


def test_match_handles_sets_with_keys_and_single_digits() -> None:
    plan = DialPlan(country_code="1", digit_map=("[*#5]x", "[13-4]x.#"))
    assert plan.match("*1") is DialMatch.COMPLETE
    assert plan.match("#") is DialMatch.PARTIAL
    assert plan.match("2") is DialMatch.NO_MATCH
    assert plan.match("3") is DialMatch.PARTIAL
    assert plan.match("4999#") is DialMatch.COMPLETE
    assert plan.match("1#") is DialMatch.COMPLETE
    assert plan.match("5x") is DialMatch.NO_MATCH


def test_match_refuses_characters_that_are_not_keys() -> None:
    assert NANP.match("911 ") is DialMatch.NO_MATCH
    assert NANP.match("+1") is DialMatch.NO_MATCH


def test_errors_are_protocol_errors() -> None:
    assert issubclass(NumberError, RiptProtocolError)


# --- properties ----------------------------------------------------------------------------------

e164s = st.from_regex(r"\+[1-9][0-9]{0,14}", fullmatch=True)
patterns = st.one_of(
    st.just(NumberPattern("")),
    e164s.map(lambda n: NumberPattern(n, exact=True)),
    e164s.map(NumberPattern),
)
keys = st.text(st.sampled_from("0123456789*#"), max_size=16)
digit_map_text = st.text(st.sampled_from("0123456789*#xX[]-.T "), min_size=0, max_size=12)


@PROPERTY
@given(patterns)
def test_pattern_round_trip(pattern: NumberPattern) -> None:
    assert NumberPattern.parse(str(pattern)) == pattern


@PROPERTY
@given(st.lists(patterns, min_size=1, max_size=4))
def test_policy_round_trip(items: list[NumberPattern]) -> None:
    policy = NumberPolicy(tuple(items))
    assert NumberPolicy.from_json(policy.to_json()) == policy
    assert NumberPolicy.from_json(json.loads(json.dumps(policy.to_json()))) == policy


@PROPERTY
@given(st.one_of(st.text(max_size=20), st.from_regex(r"[+*0-9]{0,17}", fullmatch=True)))
def test_pattern_parse_raises_only_number_error(text: str) -> None:
    with contextlib.suppress(NumberError):
        pattern = NumberPattern.parse(text)
        assert str(pattern) == text


@PROPERTY
@given(e164s, e164s)
def test_prefix_pattern_matches_exactly_the_numbers_it_starts(prefix: str, number: str) -> None:
    assert NumberPattern(prefix).matches(number) is number.startswith(prefix)
    assert NumberPattern(prefix, exact=True).matches(number) is (number == prefix)
    assert NumberPattern("").matches(number)


@PROPERTY
@given(st.text(max_size=25), st.sampled_from([NANP, NANP_408, UK]))
def test_normalise_raises_only_number_error_and_gives_e164(text: str, plan: DialPlan) -> None:
    try:
        number = plan.normalise(text)
    except NumberError as exc:
        assert str(exc)
    else:
        assert is_e164(number)


@PROPERTY
@given(
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.sampled_from([NANP, NANP_408, UK]),
    st.sampled_from(["", " ", "-", "."]),
)
def test_normalise_keeps_international_numbers(number: str, plan: DialPlan, sep: str) -> None:
    spaced = number[:2] + sep + number[2:]
    assert plan.normalise(spaced) == number
    international = plan.international_prefix + number[1:]
    assert plan.normalise(international) == number


@PROPERTY
@given(st.from_regex(r"[2-9][0-9]{2}[2-9][0-9]{6}", fullmatch=True))
def test_nanp_national_numbers(national: str) -> None:
    assert NANP.normalise(national) == "+1" + national
    assert NANP.normalise("1" + national) == "+1" + national
    if national[1:3] != "11":
        assert NANP.match(national) is DialMatch.COMPLETE
        assert NANP.match("1" + national) is DialMatch.COMPLETE
    assert format_for_display("+1" + national, NANP) == (
        f"({national[:3]}) {national[3:6]}-{national[6:]}"
    )


@PROPERTY
@given(keys, st.sampled_from("0123456789*#"), st.sampled_from([NANP, NANP_408, UK]))
def test_match_is_monotonic(digits: str, key: str, plan: DialPlan) -> None:
    result = plan.match(digits)
    longer = plan.match(digits + key)
    if result is not DialMatch.PARTIAL:
        # Nothing complete or impossible becomes possible again with more keys.
        assert longer is DialMatch.NO_MATCH
    if longer is not DialMatch.NO_MATCH:
        assert result is DialMatch.PARTIAL


@PROPERTY
@given(st.lists(digit_map_text, min_size=1, max_size=3), keys)
def test_digit_maps_raise_only_number_error(entries: list[str], digits: str) -> None:
    try:
        plan = DialPlan(country_code="1", digit_map=tuple(entries))
    except NumberError:
        return
    assert isinstance(plan.match(digits), DialMatch)


@PROPERTY
@given(st.text(max_size=20), st.sampled_from([NANP, UK]))
def test_display_never_fails(text: str, plan: DialPlan) -> None:
    shown = format_for_display(text, plan)
    if not is_e164(text):
        assert shown == text
    else:
        assert (
            shown.replace(" ", "")
            .replace("(", "")
            .replace(")", "")
            .replace("-", "")
            .endswith(text[-4:])
        )
