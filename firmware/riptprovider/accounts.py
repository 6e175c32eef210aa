"""The reference provider's accounts, read from a TOML table.

The caller loads the file with :mod:`tomllib` and passes the ``accounts``
table to :func:`load_accounts`::

    [accounts.alice]
    name = "Alice"
    numbers = ["+14085551002"]          # E.164; the first is the main number
    destinations = "*"                  # the TG's outbound destinations policy
    tokens = ["static-bearer-token"]    # static bearer tokens (secrets; the lab option)
    password = "scrypt$32768$8$1$...$..."   # verification page sign-in (hash-password)
    unreachable = ["+1999*"]            # destinations that answer 404
    inbound-ring-timeout = 60           # s before an unclaimed inbound call is noanswer

    [[accounts.alice.far-end]]          # first rule whose pattern matches wins
    match = "+1408952*"                 # "*", an E.164 number or a prefix ending in "*"
    outcome = "answer"                  # answer | decline | never-answer | busy
    answer-after = 2.0                  # s after alerting (0 = at once)
    reject-after = 1.0                  # s after alerting for decline
    noanswer-after = 30.0               # s after alerting before noanswer
    media = "echo"                      # echo | echo-in-order | tone | file | silence
    tone-hz = 440                       # with media = "tone"
    file = "/path/to/audio.wav"         # with media = "file"

A destination no rule matches gets :data:`DEFAULT_FAR_END` (answer at once,
echo).  Every problem raises :class:`AccountsError` naming the key at fault.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ript.protocol.numbers import NumberError, NumberPattern, NumberPolicy, is_e164
from riptprovider.passwords import PasswordHashError, check_password_hash


class AccountsError(ValueError):
    """The accounts table is not valid; the message names the key at fault."""


class Outcome(enum.StrEnum):
    """What the simulated far end does with an outbound call once it alerts."""

    ANSWER = "answer"
    DECLINE = "decline"
    NEVER_ANSWER = "never-answer"
    BUSY = "busy"


class MediaMode(enum.StrEnum):
    """What the simulated far end sends once the call is answered."""

    ECHO = "echo"
    ECHO_IN_ORDER = "echo-in-order"
    TONE = "tone"
    FILE = "file"
    SILENCE = "silence"


@dataclass(frozen=True, slots=True)
class FarEnd:
    """One far-end behaviour (times in seconds, counted from alerting)."""

    outcome: Outcome = Outcome.ANSWER
    answer_after: float = 0.0
    reject_after: float = 1.0
    noanswer_after: float = 30.0
    media: MediaMode = MediaMode.ECHO
    tone_hz: int = 440
    file: str | None = None


DEFAULT_FAR_END = FarEnd()


@dataclass(frozen=True, slots=True)
class FarEndRule:
    """A far-end behaviour for the destinations ``pattern`` matches."""

    pattern: NumberPattern
    far_end: FarEnd


@dataclass(frozen=True, slots=True)
class Account:
    """One provider account: one user, one TG."""

    id: str
    name: str
    numbers: tuple[str, ...]
    destinations: NumberPolicy = field(default_factory=NumberPolicy.any)
    tokens: tuple[str, ...] = field(default=(), repr=False)
    password: str | None = field(default=None, repr=False)
    """scrypt hash (:mod:`riptprovider.passwords`); None: no sign-in on the verification page."""
    unreachable: tuple[NumberPattern, ...] = ()
    far_end_rules: tuple[FarEndRule, ...] = ()
    inbound_ring_timeout: float = 60.0

    @property
    def main_number(self) -> str:
        return self.numbers[0]

    def far_end(self, destination: str) -> FarEnd:
        """The behaviour of the first rule matching ``destination``, else the default."""
        for rule in self.far_end_rules:
            if rule.pattern.matches(destination):
                return rule.far_end
        return DEFAULT_FAR_END

    def is_unreachable(self, destination: str) -> bool:
        return any(pattern.matches(destination) for pattern in self.unreachable)


_ACCOUNT_KEYS = frozenset(
    {"name", "numbers", "destinations", "tokens", "password", "unreachable", "far-end"}
    | {"inbound-ring-timeout"}
)
_RULE_KEYS = frozenset(
    {"match", "outcome", "answer-after", "reject-after", "noanswer-after", "media", "tone-hz"}
    | {"file"}
)


def _table(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise AccountsError(f"{where} must be a table, not {type(value).__name__}")
    return value


def _unknown(table: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise AccountsError(f"{where}.{extra[0]} is not a known key")


def _seconds(table: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 86400:
        raise AccountsError(f"{where}.{key} must be a number of seconds from 0 to 86400")
    return float(value)


def _strings(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise AccountsError(f"{where} must be a string or a list of strings")


def _pattern(text: str, where: str) -> NumberPattern:
    try:
        return NumberPattern.parse(text)
    except NumberError as exc:
        raise AccountsError(f"{where}: {exc}") from None


_E = TypeVar("_E", bound=enum.StrEnum)


def _choice(kind: type[_E], table: Mapping[str, Any], key: str, where: str) -> _E:
    value = table.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return kind(value)
    except ValueError:
        choices = " | ".join(member.value for member in kind)
        raise AccountsError(f"{where}.{key} must be one of {choices}, not {value!r}") from None


def _far_end_rule(value: object, where: str) -> FarEndRule:
    table = _table(value, where)
    _unknown(table, _RULE_KEYS, where)
    match = table.get("match")
    if not isinstance(match, str):
        raise AccountsError(f"{where}.match must be a number pattern string like '+1408*'")
    pattern = _pattern(match, f"{where}.match")
    outcome = _choice(Outcome, {"outcome": "answer", **table}, "outcome", where)
    media = _choice(MediaMode, {"media": "echo", **table}, "media", where)
    tone_hz = table.get("tone-hz", 440)
    if isinstance(tone_hz, bool) or not isinstance(tone_hz, int) or not 20 <= tone_hz <= 20000:
        raise AccountsError(f"{where}.tone-hz must be an integer from 20 to 20000")
    file = table.get("file")
    if media is MediaMode.FILE and not (isinstance(file, str) and file):
        raise AccountsError(f"{where}.file must name an audio file when media = 'file'")
    if file is not None and not isinstance(file, str):
        raise AccountsError(f"{where}.file must be a path string")
    far_end = FarEnd(
        outcome=outcome,
        answer_after=_seconds(table, "answer-after", where, 0.0),
        reject_after=_seconds(table, "reject-after", where, 1.0),
        noanswer_after=_seconds(table, "noanswer-after", where, 30.0),
        media=media,
        tone_hz=tone_hz,
        file=file,
    )
    return FarEndRule(pattern, far_end)


def _account(account_id: str, value: object) -> Account:
    where = f"accounts.{account_id}"
    if not account_id or not all(c.isascii() and (c.isalnum() or c in "-_") for c in account_id):
        raise AccountsError(f"{where}: an account id must be ASCII letters, digits, '-' or '_'")
    table = _table(value, where)
    _unknown(table, _ACCOUNT_KEYS, where)
    name = table.get("name", account_id)
    if not isinstance(name, str) or not name:
        raise AccountsError(f"{where}.name must be a non-empty string")
    numbers = _strings(table.get("numbers"), f"{where}.numbers")
    if not numbers:
        raise AccountsError(f"{where}.numbers must hold at least one number")
    for number in numbers:
        if not is_e164(number):
            raise AccountsError(f"{where}.numbers: {number!r} is not an E.164 number")
    try:
        destinations = NumberPolicy.from_json(table.get("destinations", "*"))
    except NumberError as exc:
        raise AccountsError(f"{where}.destinations: {exc}") from None
    tokens = _strings(table.get("tokens", []), f"{where}.tokens")
    if any(len(token) < 16 for token in tokens):
        raise AccountsError(f"{where}.tokens: every token must be at least 16 characters")
    password = table.get("password")
    if password is not None:
        if not isinstance(password, str):
            raise AccountsError(
                f"{where}.password must be a hash string (ript-provider hash-password)"
            )
        try:
            check_password_hash(password)
        except PasswordHashError as exc:
            raise AccountsError(f"{where}.password: {exc}") from None
    unreachable = tuple(
        _pattern(text, f"{where}.unreachable")
        for text in _strings(table.get("unreachable", []), f"{where}.unreachable")
    )
    rules_value = table.get("far-end", [])
    if not isinstance(rules_value, list):
        raise AccountsError(f"{where}.far-end must be an array of tables ([[...far-end]])")
    rules = tuple(
        _far_end_rule(rule, f"{where}.far-end[{i}]") for i, rule in enumerate(rules_value)
    )
    return Account(
        id=account_id,
        name=name,
        numbers=tuple(numbers),
        destinations=destinations,
        tokens=tuple(tokens),
        password=password,
        unreachable=unreachable,
        far_end_rules=rules,
        inbound_ring_timeout=_seconds(table, "inbound-ring-timeout", where, 60.0),
    )


def load_accounts(table: object) -> dict[str, Account]:
    """Read the ``accounts`` table (account id → account table); raise :class:`AccountsError`."""
    accounts = {key: _account(key, value) for key, value in _table(table, "accounts").items()}
    seen: dict[str, str] = {}
    for account in accounts.values():
        for token in account.tokens:
            # Never show the token itself: it is a secret.
            if token in seen:
                raise AccountsError(
                    f"accounts.{account.id}.tokens: a token is also one of {seen[token]}'s"
                )
            seen[token] = account.id
    return accounts
