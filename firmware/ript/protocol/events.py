"""Signalling events (profile section 7) as typed, immutable objects.

An event on the wire is a JSON object::

    {"direction": "s2c", "timestamp": "2026-11-22T10:00:00.123Z",
     "call": "https://p.example/calls/0b6f...", "event": "alerting"}

:func:`event_from_json` turns a decoded JSON object into one of the classes
below; :meth:`Event.to_json` does the reverse.  Types this module does not know
become :class:`UnknownEvent` with every member kept, so that nothing is lost
and a newer peer's events can be logged and skipped.  Unknown *members* of a
known event are ignored (profile section 1: forward compatibility).

The byte-level streaming (``[`` ... ``,`` ... never ``]``) lives in
:mod:`ript.protocol.jsonstream`.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ript.protocol.errors import RemoteProtocolError


class EventError(RemoteProtocolError):
    """A decoded JSON value is not a valid RIPT event."""


class Direction(enum.StrEnum):
    """Who sent an event (or a media chunk): client to server or back."""

    C2S = "c2s"
    S2C = "s2c"


class CallStatus(enum.StrEnum):
    """The call-description ``state`` values of profile section 6."""

    PROCEEDING = "proceeding"
    ALERTING = "alerting"
    ANSWERED = "answered"
    DECLINED = "declined"
    FAILED = "failed"
    NOANSWER = "noanswer"
    ENDED = "ended"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATUSES


_FINAL_STATUSES = frozenset(
    {CallStatus.DECLINED, CallStatus.FAILED, CallStatus.NOANSWER, CallStatus.ENDED}
)


def format_timestamp(unix_seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, the form every event carries."""
    # Round to the microsecond first (a float holds no more), then truncate to
    # the millisecond: 548398471.777 is stored as ...776999... and must stay .777.
    millis = round(unix_seconds * 1_000_000) // 1000
    moment = _dt.datetime.fromtimestamp(millis // 1000, tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})?",
    re.ASCII,
)


def parse_timestamp(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp (any offset, up to 9 fraction digits)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise EventError(f"bad timestamp {text!r}: not RFC 3339 (like 2026-11-22T10:00:00.123Z)")
    whole, fraction, offset = match.groups()
    if offset is None:
        raise EventError(f"timestamp {text!r} has no UTC offset")
    # fromisoformat takes at most 6 fraction digits; finer ones do not matter here.
    iso = whole.upper() + (f".{fraction[:6]:0<6}" if fraction else "")
    iso += "+00:00" if offset in "Zz" else offset
    try:
        moment = _dt.datetime.fromisoformat(iso)
    except ValueError as exc:
        raise EventError(f"bad timestamp {text!r}: {exc}") from None
    return moment.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Members common to every event.  Subclasses set :attr:`TYPE`."""

    TYPE: ClassVar[str] = ""

    direction: Direction
    call: str
    timestamp: str
    seq: int | None = None
    """This project's extension member ``seq`` (docs/protocol.md section 6): the
    provider's number of the event within its call, so that the events it replays
    on a new reverse byway are applied once.  None: absent (unnumbered)."""

    @property
    def type(self) -> str:
        return self.TYPE

    def _extra(self) -> dict[str, Any]:
        return {}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "direction": self.direction.value,
            "timestamp": self.timestamp,
            "call": self.call,
            "event": self.type,
        }
        if self.seq is not None:
            doc["seq"] = self.seq
        for name, value in self._extra().items():
            # An extension member never overwrites a common one.
            doc.setdefault(name, value)
        return doc


@dataclass(frozen=True, slots=True, kw_only=True)
class StateEvent(Event):
    """An event that sets the call's state (proceeding ... end).

    ``reason`` is an optional, free-text extension member (``"reason"``) that
    says why a call failed or ended; peers that do not know it ignore it.
    """

    STATUS: ClassVar[CallStatus]
    reason: str | None = None

    @property
    def status(self) -> CallStatus:
        return self.STATUS

    def _extra(self) -> dict[str, Any]:
        return {} if self.reason is None else {"reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class Proceeding(StateEvent):
    TYPE: ClassVar[str] = "proceeding"
    STATUS: ClassVar[CallStatus] = CallStatus.PROCEEDING


@dataclass(frozen=True, slots=True, kw_only=True)
class Alerting(StateEvent):
    TYPE: ClassVar[str] = "alerting"
    STATUS: ClassVar[CallStatus] = CallStatus.ALERTING


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered(StateEvent):
    TYPE: ClassVar[str] = "answered"
    STATUS: ClassVar[CallStatus] = CallStatus.ANSWERED


@dataclass(frozen=True, slots=True, kw_only=True)
class Declined(StateEvent):
    TYPE: ClassVar[str] = "declined"
    STATUS: ClassVar[CallStatus] = CallStatus.DECLINED


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed(StateEvent):
    TYPE: ClassVar[str] = "failed"
    STATUS: ClassVar[CallStatus] = CallStatus.FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswer(StateEvent):
    TYPE: ClassVar[str] = "noanswer"
    STATUS: ClassVar[CallStatus] = CallStatus.NOANSWER


@dataclass(frozen=True, slots=True, kw_only=True)
class End(StateEvent):
    """``end``; the inbound draft's ``ended`` is read as a synonym."""

    TYPE: ClassVar[str] = "end"
    STATUS: ClassVar[CallStatus] = CallStatus.ENDED


@dataclass(frozen=True, slots=True, kw_only=True)
class Migrate(Event):
    """Server asks the client to re-establish its byways, optionally at a new URI."""

    TYPE: ClassVar[str] = "migrate"
    uri: str | None = None

    def _extra(self) -> dict[str, Any]:
        return {} if self.uri is None else {"uri": self.uri}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Event):
    TYPE: ClassVar[str] = "ping"
    nonce: str | None = None

    def _extra(self) -> dict[str, Any]:
        return {} if self.nonce is None else {"nonce": self.nonce}


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Event):
    TYPE: ClassVar[str] = "pong"
    nonce: str | None = None

    def _extra(self) -> dict[str, Any]:
        return {} if self.nonce is None else {"nonce": self.nonce}


@dataclass(frozen=True, slots=True, kw_only=True)
class HandlerChanged(Event):
    """The call now has another handler (answer, pull, push, 3PCC move)."""

    TYPE: ClassVar[str] = "handler-changed"
    handler: str

    def _extra(self) -> dict[str, Any]:
        return {"handler": self.handler}


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnecting(Event):
    """The far end lost connectivity and is reconnecting (UI only)."""

    TYPE: ClassVar[str] = "reconnecting"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnected(Event):
    TYPE: ClassVar[str] = "reconnected"


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaPanic(Event):
    """The server had media to send and no open reverse media byway."""

    TYPE: ClassVar[str] = "media-panic"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownEvent(Event):
    """An event type this implementation does not know, kept whole."""

    event_type: str
    members: Mapping[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.event_type

    def _extra(self) -> dict[str, Any]:
        return dict(self.members)


STATE_EVENTS: dict[CallStatus, type[StateEvent]] = {
    cls.STATUS: cls for cls in (Proceeding, Alerting, Answered, Declined, Failed, NoAnswer, End)
}

_KNOWN: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        Proceeding,
        Alerting,
        Answered,
        Declined,
        Failed,
        NoAnswer,
        End,
        Migrate,
        Ping,
        Pong,
        HandlerChanged,
        Reconnecting,
        Reconnected,
        MediaPanic,
    )
}
_KNOWN["ended"] = End

_COMMON = ("direction", "timestamp", "call", "event", "seq")

SEQ_LIMIT = 1 << 53
"""``seq`` values are below this: the integers every JSON parser holds exactly."""


def _optional(doc: Mapping[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventError(f"event member {name!r} must be a string, not {type(value).__name__}")
    return value


def _required(doc: Mapping[str, Any], name: str) -> str:
    value = _optional(doc, name)
    if value is None:
        raise EventError(f"event lacks the {name!r} member")
    return value


class ReplayFilter:
    """Which events of a call's reverse byways to apply: each numbered one once.

    The provider numbers the events it keeps (``seq``), starts every new reverse
    byway with the current state numbered as the latest event it sent, and then
    replays the events of the last seconds, which the phone may or may not have
    had (docs/protocol.md section 6, "Rules for the provider" and "Rules for the phone").
    Pass each event with ``first`` True for the first of a byway.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: int | None = None
        """The highest number applied (or stated by a byway's first event)."""

    def take(self, event: Event, *, first: bool = False) -> bool:
        """Whether to apply ``event``: unnumbered and first ones always, others once."""
        seq = event.seq
        if seq is None:
            return True
        if first:
            # The current state: everything up to ``seq`` is in it for a phone that has
            # heard nothing yet; a lower number than ours is a provider that numbers
            # anew (it restarted): follow it rather than skip its events.
            if self.last is None or seq < self.last:
                self.last = seq
            return True
        if self.last is not None and seq <= self.last:
            return False
        self.last = seq
        return True


def event_from_json(doc: object) -> Event:
    """Build the typed event for one decoded JSON value; raise :class:`EventError`."""
    if not isinstance(doc, dict):
        raise EventError(f"an event must be a JSON object, not {type(doc).__name__}")
    direction_text = _required(doc, "direction")
    try:
        direction = Direction(direction_text)
    except ValueError:
        raise EventError(f"direction must be 'c2s' or 's2c', not {direction_text!r}") from None
    timestamp = _required(doc, "timestamp")
    call = _required(doc, "call")
    kind = _required(doc, "event")
    parse_timestamp(timestamp)
    seq = doc.get("seq")
    if seq is not None and (type(seq) is not int or not 0 <= seq < SEQ_LIMIT):
        raise EventError(f"event member 'seq' must be an integer from 0 to 2^53-1, not {seq!r}")
    common: dict[str, Any] = {
        "direction": direction,
        "timestamp": timestamp,
        "call": call,
        "seq": seq,
    }

    cls = _KNOWN.get(kind)
    if cls is None:
        members = {k: v for k, v in doc.items() if k not in _COMMON}
        return UnknownEvent(**common, event_type=kind, members=members)
    if issubclass(cls, StateEvent):
        return cls(**common, reason=_optional(doc, "reason"))
    if cls is Migrate:
        return Migrate(**common, uri=_optional(doc, "uri"))
    if cls is Ping:
        return Ping(**common, nonce=_optional(doc, "nonce"))
    if cls is Pong:
        return Pong(**common, nonce=_optional(doc, "nonce"))
    if cls is HandlerChanged:
        return HandlerChanged(**common, handler=_required(doc, "handler"))
    return cls(**common)
