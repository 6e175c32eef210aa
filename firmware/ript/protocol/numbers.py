"""Phone numbers: E.164 checks, TG number patterns and the phone's dial plan.

Three jobs, all pure:

* :func:`is_e164` and :func:`tn_of` check a number and give its RFC 8225
  canonical form (the digits without ``+``) for a PASSporT.
* :class:`NumberPattern` and :class:`NumberPolicy` read the ``destinations`` and
  ``origins`` members of a TG document (profile section 3) and say whether a
  number is allowed, so that a call the provider would refuse fails locally.
* :class:`DialPlan` turns what a user typed on the keypad into E.164
  (:meth:`DialPlan.normalise`) and tells, digit by digit, whether what was typed
  so far is a complete number (:meth:`DialPlan.match`, an MGCP-style digit map).

RIPT has no emergency routing in this profile: :meth:`DialPlan.normalise`
refuses emergency numbers and :meth:`DialPlan.is_emergency` lets the
application recognise them and tell the user to use another phone.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ript.protocol.errors import RiptProtocolError


class NumberError(RiptProtocolError):
    """A number, number pattern or dial plan is not valid."""


E164_MAX_DIGITS = 15
# The shortest numbers in service anywhere have 7 digits with their country
# code (+290 Saint Helena, +683 Niue); anything shorter is a typing mistake.
INTERNATIONAL_MIN_DIGITS = 7

_E164 = re.compile(r"\+[1-9][0-9]{0,14}")
_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}\*")
_DIGITS = re.compile(r"[0-9]+")
_SEPARATORS = str.maketrans("", "", " \t-.()")

# ITU-T E.164 country codes of one and two digits; every other code has three.
_CC_ONE = frozenset({"1", "7"})
_CC_TWO = frozenset(
    {"20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46"}
    | {"47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62"}
    | {"63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98"}
)


def is_e164(s: object) -> bool:
    """True for ``+`` then 1 to 15 ASCII digits, the first not 0."""
    return isinstance(s, str) and _E164.fullmatch(s) is not None


def tn_of(e164: str) -> str:
    """The RFC 8225 canonical telephone number: the E.164 digits without ``+``."""
    if not is_e164(e164):
        raise NumberError(f"{e164!r} is not an E.164 number (+ and up to 15 digits)")
    return e164[1:]


def country_code_of(e164: str) -> str:
    """The ITU-T country code of an E.164 number (``"1"``, ``"44"``, ``"358"`` ...)."""
    if not is_e164(e164):
        raise NumberError(f"{e164!r} is not an E.164 number (+ and up to 15 digits)")
    digits = e164[1:]
    if digits[:1] in _CC_ONE:
        return digits[:1]
    if digits[:2] in _CC_TWO:
        return digits[:2]
    return digits[:3]


# --- TG number patterns ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NumberPattern:
    """One ``destinations``/``origins`` string: ``*``, an E.164 number, or ``+1408*``.

    ``prefix`` is ``""`` for ``*``; ``exact`` is true for a whole number.  A
    prefix pattern matches every E.164 number that starts with its digits,
    including the number that is the prefix itself.
    """

    prefix: str
    exact: bool = False

    def __post_init__(self) -> None:
        if self.exact:
            ok = is_e164(self.prefix)
        else:
            ok = self.prefix == "" or _PREFIX.fullmatch(self.prefix + "*") is not None
        if not ok:
            raise NumberError(f"{str(self)!r} is not a valid number pattern")

    @classmethod
    def parse(cls, text: object) -> NumberPattern:
        if not isinstance(text, str):
            raise NumberError(f"a number pattern must be a string, not {type(text).__name__}")
        if text == "*":
            return cls("")
        if _PREFIX.fullmatch(text):
            return cls(text[:-1])
        if is_e164(text):
            return cls(text, exact=True)
        raise NumberError(
            f"{text!r} is not '*', an E.164 number or an E.164 prefix ending in '*' (like '+1408*')"
        )

    def matches(self, e164: str) -> bool:
        """Whether this pattern allows ``e164``; a string that is not E.164 never matches."""
        if not is_e164(e164):
            return False
        if self.exact:
            return e164 == self.prefix
        return e164.startswith(self.prefix)

    def __str__(self) -> str:
        return self.prefix if self.exact else self.prefix + "*"


@dataclass(frozen=True, slots=True)
class NumberPolicy:
    """One or more patterns; a number is allowed when any pattern matches it."""

    patterns: tuple[NumberPattern, ...]

    def __post_init__(self) -> None:
        if not self.patterns:
            raise NumberError("a number policy needs at least one pattern")

    @classmethod
    def any(cls) -> NumberPolicy:
        """The ``"*"`` policy, the default of every ``destinations``/``origins``."""
        return cls((NumberPattern(""),))

    @classmethod
    def from_json(cls, value: object) -> NumberPolicy:
        """Read a JSON string or non-empty list of strings."""
        if isinstance(value, str):
            return cls((NumberPattern.parse(value),))
        if isinstance(value, list):
            if not value:
                raise NumberError("the list of number patterns is empty")
            return cls(tuple(NumberPattern.parse(item) for item in value))
        raise NumberError(
            f"number patterns must be a string or a list of strings, not {type(value).__name__}"
        )

    def to_json(self) -> str | list[str]:
        if len(self.patterns) == 1:
            return str(self.patterns[0])
        return [str(pattern) for pattern in self.patterns]

    def allows(self, e164: str) -> bool:
        return any(pattern.matches(e164) for pattern in self.patterns)

    def __str__(self) -> str:
        return ", ".join(str(pattern) for pattern in self.patterns)


# --- Digit maps --------------------------------------------------------------


class DialMatch(enum.Enum):
    """How the digits typed so far relate to the dial plan's digit map."""

    COMPLETE = "complete"  # a full number, and no entry allows a longer one: dial now
    PARTIAL = "partial"  # more digits may follow (dial on '#' or the inter-digit timeout)
    NO_MATCH = "no-match"  # no entry can match, whatever follows


@dataclass(frozen=True, slots=True)
class _Element:
    symbols: frozenset[str]
    repeat: bool


_KEYS = frozenset("0123456789*#")
_ANY_DIGIT = frozenset("0123456789")


def _parse_digit_map_entry(entry: object) -> tuple[_Element, ...]:
    if not isinstance(entry, str):
        raise NumberError(f"digit-map entry {entry!r} must be a string")
    if not entry:
        raise NumberError("a digit-map entry is empty")
    elements: list[_Element] = []
    i = 0
    while i < len(entry):
        char = entry[i]
        if char in _KEYS:
            symbols = frozenset(char)
            i += 1
        elif char in "xX":
            symbols = _ANY_DIGIT
            i += 1
        elif char == "[":
            end = entry.find("]", i)
            if end < 0:
                raise NumberError(f"digit-map entry {entry!r}: '[' at offset {i} is never closed")
            symbols = _parse_set(entry, i + 1, end)
            i = end + 1
        elif char == ".":
            raise NumberError(
                f"digit-map entry {entry!r}: '.' at offset {i} does not follow a digit or a set"
            )
        else:
            raise NumberError(f"digit-map entry {entry!r}: {char!r} at offset {i} is not allowed")
        repeat = i < len(entry) and entry[i] == "."
        if repeat:
            i += 1
        elements.append(_Element(symbols, repeat))
    return tuple(elements)


def _parse_set(entry: str, start: int, end: int) -> frozenset[str]:
    symbols: set[str] = set()
    i = start
    while i < end:
        char = entry[i]
        if char not in _KEYS:
            raise NumberError(f"digit-map entry {entry!r}: {char!r} at offset {i} is not allowed")
        if i + 2 < end and entry[i + 1] == "-":
            last = entry[i + 2]
            if not (char.isdigit() and last in _ANY_DIGIT and char <= last):
                raise NumberError(f"digit-map entry {entry!r}: bad range at offset {i}")
            symbols.update(str(d) for d in range(int(char), int(last) + 1))
            i += 3
        else:
            symbols.add(char)
            i += 1
    if not symbols:
        raise NumberError(f"digit-map entry {entry!r}: empty set at offset {start - 1}")
    return frozenset(symbols)


def _closure(elements: tuple[_Element, ...], states: Iterable[int]) -> frozenset[int]:
    # A repeated element matches zero times too, so its position also means
    # "already past it".
    result: set[int] = set()
    for start in states:
        state = start
        while state not in result:
            result.add(state)
            if state < len(elements) and elements[state].repeat:
                state += 1
            else:
                break
    return frozenset(result)


def _run(elements: tuple[_Element, ...], digits: str) -> frozenset[int]:
    states = _closure(elements, (0,))
    for char in digits:
        after: set[int] = set()
        for state in states:
            if state < len(elements) and char in elements[state].symbols:
                after.add(state if elements[state].repeat else state + 1)
        states = _closure(elements, after)
        if not states:
            break
    return states


# --- Dial plans --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DialPlan:
    """How numbers are dialled where the phone stands.

    ``national_number_lengths`` are the lengths of a national significant number
    (without trunk prefix); ``local_number_lengths`` those of a number dialled
    without its area code, used only when ``area_code`` is set.  ``digit_map``
    entries are MGCP-style patterns over ``0-9 * # x [2-9] .`` (see :meth:`match`).
    """

    country_code: str
    national_prefix: str = ""
    international_prefix: str = "00"
    area_code: str = ""
    national_number_lengths: tuple[int, ...] = ()
    local_number_lengths: tuple[int, ...] = ()
    emergency: tuple[str, ...] = ()
    digit_map: tuple[str, ...] = ("x.",)
    _compiled: tuple[tuple[_Element, ...], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        for name in ("national_number_lengths", "local_number_lengths", "emergency", "digit_map"):
            value: Any = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, Sequence):
                raise NumberError(f"dial plan: {name} must be a list")
            object.__setattr__(self, name, tuple(value))
        self._check_digits("country_code", self.country_code, allow_empty=False)
        if not 1 <= len(self.country_code) <= 3 or self.country_code.startswith("0"):
            raise NumberError(
                f"dial plan: country code {self.country_code!r} must be 1 to 3 digits, "
                "not starting with 0"
            )
        self._check_digits("national_prefix", self.national_prefix, allow_empty=True)
        self._check_digits("international_prefix", self.international_prefix, allow_empty=False)
        self._check_digits("area_code", self.area_code, allow_empty=True)
        room = E164_MAX_DIGITS - len(self.country_code)
        for length in self.national_number_lengths:
            if isinstance(length, bool) or not isinstance(length, int) or not 1 <= length <= room:
                raise NumberError(
                    f"dial plan: national number length {length!r} must be 1 to {room}"
                )
        for length in self.local_number_lengths:
            if (
                isinstance(length, bool)
                or not isinstance(length, int)
                or not 1 <= length <= room - len(self.area_code)
            ):
                raise NumberError(f"dial plan: local number length {length!r} does not fit")
        for number in self.emergency:
            self._check_digits("emergency number", number, allow_empty=False)
        if not self.digit_map:
            raise NumberError("dial plan: the digit map needs at least one entry")
        compiled = tuple(_parse_digit_map_entry(entry) for entry in self.digit_map)
        object.__setattr__(self, "_compiled", compiled)

    @staticmethod
    def _check_digits(name: str, value: object, *, allow_empty: bool) -> None:
        if not isinstance(value, str) or not (
            (allow_empty and value == "") or _DIGITS.fullmatch(value)
        ):
            raise NumberError(f"dial plan: {name} {value!r} must be a string of digits")

    # -- presets --

    @classmethod
    def nanp(cls, area_code: str = "") -> DialPlan:
        """North American Numbering Plan: 1 + 10 digits, 011 abroad, 911.

        The digit map keeps N11 service codes (211 ... 911) out of the area and
        exchange code positions, so ``911`` is complete on its third digit.
        With an ``area_code``, 7-digit local numbers are also accepted; the
        phone then waits for ``#`` or the timeout after 7 digits, since 3 more
        may follow.
        """
        if area_code and not re.fullmatch(r"[2-9][0-9]{2}", area_code):
            raise NumberError(
                f"dial plan: {area_code!r} is not a NANP area code (3 digits, the first 2 to 9)"
            )
        npa = ("[2-9][02-9]x", "[2-9]1[02-9]")
        entries = ["911"]
        entries += [f"1{code}[2-9]xxxxxx" for code in npa]
        entries += [f"{code}[2-9]xxxxxx" for code in npa]
        entries.append("011x.")
        local: tuple[int, ...] = ()
        if area_code:
            entries += ["[2-9][02-9]xxxxx", "[2-9]1[02-9]xxxx"]
            local = (7,)
        return cls(
            country_code="1",
            national_prefix="1",
            international_prefix="011",
            area_code=area_code,
            national_number_lengths=(10,),
            local_number_lengths=local,
            emergency=("911",),
            digit_map=tuple(entries),
        )

    @classmethod
    def generic(
        cls,
        country_code: str,
        national_prefix: str = "0",
        international_prefix: str = "00",
        *,
        emergency: tuple[str, ...] = ("112",),
    ) -> DialPlan:
        """A plan without fixed lengths: national numbers of 4 digits up to what E.164 allows."""
        room = E164_MAX_DIGITS - len(country_code) if isinstance(country_code, str) else 0
        return cls(
            country_code=country_code,
            national_prefix=national_prefix,
            international_prefix=international_prefix,
            national_number_lengths=tuple(range(4, room + 1)),
            emergency=emergency,
            digit_map=("x.",),
        )

    # -- use --

    def is_emergency(self, dialled: str) -> bool:
        """Whether ``dialled`` (separators and a final ``#`` ignored) is an emergency number."""
        keys = dialled.translate(_SEPARATORS)
        if keys.endswith("#"):
            keys = keys[:-1]
        return keys in self.emergency

    def normalise(self, dialled: str) -> str:
        """The E.164 number for what was dialled, or :class:`NumberError` saying why not."""
        if not isinstance(dialled, str):
            raise NumberError(f"a dialled number must be text, not {type(dialled).__name__}")
        shown = dialled.strip()
        keys = dialled.translate(_SEPARATORS)
        if keys.endswith("#"):
            keys = keys[:-1]
        if not keys:
            raise NumberError("nothing was dialled")
        for offset, char in enumerate(keys):
            if char == "+":
                if offset == 0:
                    continue
                raise NumberError(f"{shown!r} has a '+' that is not at the start")
            if char in "*#":
                raise NumberError(
                    f"{shown!r} contains {char!r}: service codes cannot be dialled over RIPT"
                )
            if char not in _ANY_DIGIT:
                raise NumberError(f"{shown!r} contains {char!r}, which is not a digit")
        if keys in self.emergency:
            raise NumberError(
                f"{shown!r} is an emergency number: this phone cannot reach emergency "
                "services, use another phone"
            )
        if keys.startswith("+"):
            return self._international(shown, keys[1:])
        if keys.startswith(self.international_prefix):
            return self._international(shown, keys[len(self.international_prefix) :])
        national = self.national_number_lengths
        local = self.local_number_lengths if self.area_code else ()
        prefix = self.national_prefix
        # A national significant number never starts with the trunk prefix, so
        # a number that does is read only as prefix + national number.
        if prefix and keys.startswith(prefix):
            if len(keys) - len(prefix) in national:
                return "+" + self.country_code + keys[len(prefix) :]
        elif len(keys) in national:
            return "+" + self.country_code + keys
        elif len(keys) in local:
            return "+" + self.country_code + self.area_code + keys
        lengths = [*national, *local]
        lengths += [len(prefix) + n for n in national] if prefix else []
        if not lengths or len(keys) < min(lengths):
            raise NumberError(f"{shown!r} is too short to be a phone number")
        if len(keys) > max(lengths):
            raise NumberError(f"{shown!r} is too long to be a phone number")
        raise NumberError(f"{shown!r} does not fit the dial plan: dial {self._expected()}")

    def _expected(self) -> str:
        def counts(lengths: Iterable[int]) -> str:
            ordered = sorted(set(lengths))
            if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
                return f"{ordered[0]} to {ordered[-1]}"
            return " or ".join(str(n) for n in ordered)

        forms = [f"{counts(self.national_number_lengths)} digits"]
        if self.national_prefix:
            forms.append(
                f"{self.national_prefix} and {counts(self.national_number_lengths)} digits"
            )
        if self.area_code and self.local_number_lengths:
            forms.append(f"{counts(self.local_number_lengths)} digits in area {self.area_code}")
        forms.append(f"{self.international_prefix} and an international number")
        return ", ".join(forms[:-1]) + " or " + forms[-1]

    @staticmethod
    def _international(shown: str, digits: str) -> str:
        if digits.startswith("0"):
            raise NumberError(f"{shown!r} is not a phone number: no country code starts with 0")
        if len(digits) < INTERNATIONAL_MIN_DIGITS:
            raise NumberError(f"{shown!r} is too short to be a phone number")
        if len(digits) > E164_MAX_DIGITS:
            raise NumberError(
                f"{shown!r} is too long to be a phone number (at most 15 digits with the "
                "country code)"
            )
        return "+" + digits

    def match(self, digits: str) -> DialMatch:
        """Whether ``digits`` (keys typed so far) is a complete number under the digit map."""
        if not isinstance(digits, str) or any(char not in _KEYS for char in digits):
            return DialMatch.NO_MATCH
        full = False
        for elements in self._compiled:
            states = _run(elements, digits)
            if any(state < len(elements) for state in states):
                return DialMatch.PARTIAL
            full = full or len(elements) in states
        return DialMatch.COMPLETE if full else DialMatch.NO_MATCH


def format_for_display(e164: str, plan: DialPlan) -> str:
    """A number as the screen shows it: ``(408) 555-1002`` at home in NANP, else ``+CC rest``.

    Caller IDs from the network may be anything; a string that is not E.164 is
    returned unchanged, so the screen never fails.
    """
    if not is_e164(e164):
        return e164
    if plan.country_code == "1" and e164.startswith("+1") and len(e164) == 12:
        national = e164[2:]
        return f"({national[:3]}) {national[3:6]}-{national[6:]}"
    code = country_code_of(e164)
    rest = e164[1 + len(code) :]
    return f"+{code} {rest}" if rest else f"+{code}"
