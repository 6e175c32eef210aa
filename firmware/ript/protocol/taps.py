"""Shoulder taps from the push channel (profile section 9).

A tap is a small JSON object the provider publishes to the handler's MQTT
topic::

    {"v": 1, "id": "5b0c...", "type": "call", "call": "https://p.example/calls/9f...",
     "ts": 1763805600123}

It is only a hint that something about a call changed; the phone then asks
the provider.  :func:`parse_tap` reads one payload; :class:`TapFilter` also
drops taps for calls outside the phone's TG origin and repeats of a tap already
seen (QoS 1 delivers at least once), and reports why instead of raising.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ript.protocol.descriptions import DescriptionError, origin_of
from ript.protocol.errors import RemoteProtocolError
from ript.protocol.strictjson import JsonBodyError, load_json

TAP_VERSION = 1
MAX_TAP_BYTES = 16 * 1024
MAX_TAP_ID_CHARS = 256
MAX_TIMESTAMP_MS = 2**53 - 1


class TapError(RemoteProtocolError):
    """A push payload is not a valid tap."""


class TapType(enum.StrEnum):
    """What the provider asks of the phone."""

    CALL = "call"  # a new call concerns this phone: GET it, act on direction and state
    TAKE = "take"  # move the call here: POST {call} with this handler
    ANSWER = "answer"  # 3PCC: answer the ringing call on this phone
    DECLINE = "decline"  # 3PCC: decline the ringing call on this phone


@dataclass(frozen=True, slots=True)
class Tap:
    """One valid tap.  ``ts`` is the provider's clock in Unix milliseconds."""

    id: str
    type: TapType
    call: str
    ts: int
    v: int = TAP_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.v, bool) or self.v != TAP_VERSION:
            raise TapError(f"tap: 'v' must be {TAP_VERSION}, not {self.v!r}")
        problem = _id_problem(self.id)
        if problem:
            raise TapError(f"tap: 'id' {problem}")
        if not isinstance(self.type, TapType):
            raise TapError(f"tap: 'type' must be a TapType, not {self.type!r}")
        _check_call(self.call)
        if isinstance(self.ts, bool) or not isinstance(self.ts, int):
            raise TapError("tap: 'ts' must be an integer number of milliseconds")
        if not 0 <= self.ts <= MAX_TIMESTAMP_MS:
            raise TapError(f"tap: 'ts' {self.ts} is out of range")

    def to_json(self) -> dict[str, Any]:
        return {
            "v": self.v,
            "id": self.id,
            "type": self.type.value,
            "call": self.call,
            "ts": self.ts,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def _id_problem(tap_id: object) -> str | None:
    if not isinstance(tap_id, str):
        return "must be a string"
    if not tap_id:
        return "must not be empty"
    if len(tap_id) > MAX_TAP_ID_CHARS:
        return f"is longer than {MAX_TAP_ID_CHARS} characters"
    try:
        tap_id.encode("utf-8")
    except UnicodeEncodeError:
        return "holds an unpaired surrogate"
    return None


def _check_call(call: object) -> None:
    if not isinstance(call, str):
        raise TapError("tap: 'call' must be a string")
    try:
        origin_of(call)
    except DescriptionError as exc:
        raise TapError(f"tap: 'call' is not usable: {exc}") from None


def parse_tap(payload: bytes) -> Tap:
    """Read one tap; raise :class:`TapError` saying what is wrong."""
    try:
        doc = load_json(payload, limit=MAX_TAP_BYTES, noun="payload")
    except JsonBodyError as exc:
        raise TapError(f"tap: {exc}") from None
    return tap_from_json(doc)


def tap_from_json(doc: object) -> Tap:
    """Build a :class:`Tap` from a decoded JSON value; unknown members are ignored."""
    if not isinstance(doc, dict):
        raise TapError("tap: the payload must be a JSON object")
    for key in ("v", "id", "type", "call", "ts"):
        if key not in doc:
            raise TapError(f"tap: {key!r} is missing")
    version = doc["v"]
    if isinstance(version, bool) or version != TAP_VERSION:
        raise TapError(f"tap: 'v' must be {TAP_VERSION}, not {version!r}")
    problem = _id_problem(doc["id"])
    if problem:
        raise TapError(f"tap: 'id' {problem}")
    type_text = doc["type"]
    try:
        tap_type = TapType(type_text)
    except ValueError:
        choices = ", ".join(t.value for t in TapType)
        raise TapError(f"tap: 'type' must be one of {choices}, not {type_text!r}") from None
    _check_call(doc["call"])
    ts = doc["ts"]
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise TapError("tap: 'ts' must be an integer number of milliseconds")
    return Tap(id=doc["id"], type=tap_type, call=doc["call"], ts=ts)


class RejectReason(enum.StrEnum):
    MALFORMED = "malformed"
    FOREIGN_ORIGIN = "foreign-origin"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class TapRejection:
    """Why :meth:`TapFilter.accept` dropped a payload; ``detail`` is one sentence for the log."""

    reason: RejectReason
    detail: str
    tap: Tap | None = None


class TapFilter:
    """Accepts each valid tap for a call on the TG's origin once.

    The ids of the last ``max_remembered`` accepted taps are kept (oldest
    forgotten first) to drop QoS 1 redeliveries.  Taps that are rejected are
    not remembered, so a forged tap cannot shadow a real one with the same id.
    """

    def __init__(self, tg_uri: str, max_remembered: int = 1024) -> None:
        try:
            self.origin = origin_of(tg_uri)
        except DescriptionError as exc:
            raise TapError(f"tap filter: the TG URI is not usable: {exc}") from None
        if isinstance(max_remembered, bool) or max_remembered < 1:
            raise TapError("tap filter: max_remembered must be at least 1")
        self._max = max_remembered
        self._seen: OrderedDict[str, None] = OrderedDict()

    def accept(self, payload: bytes) -> Tap | TapRejection:
        """The tap to act on, or a :class:`TapRejection`; never raises."""
        try:
            tap = parse_tap(payload)
        except TapError as exc:
            return TapRejection(RejectReason.MALFORMED, str(exc))
        call_origin = origin_of(tap.call)
        if call_origin != self.origin:
            scheme, host, port = call_origin
            return TapRejection(
                RejectReason.FOREIGN_ORIGIN,
                f"tap {tap.id!r} names a call at {scheme}://{host}:{port}, not the TG's origin",
                tap,
            )
        if tap.id in self._seen:
            return TapRejection(RejectReason.DUPLICATE, f"tap {tap.id!r} was already seen", tap)
        self._seen[tap.id] = None
        if len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return tap
