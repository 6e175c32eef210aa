"""The signalling byway codec (profile section 7): an unending JSON array of events.

Both ``GET {call}/events`` responses and ``PUT {call}/events`` requests carry
``[`` right after the headers, then event objects separated by ``,``, white
space anywhere between tokens, and usually never a ``]``.  The bytes arrive
split at arbitrary points across QUIC frames, so this module holds:

* :class:`JsonArrayDecoder`, an incremental byte-level scanner that finds where
  each top-level object ends (tracking nesting, strings and escapes) and hands
  that slice to :func:`json.loads`; each byte is scanned once, whatever the
  split, and at most one event (16 KiB) is ever buffered;
* :class:`EventStreamReader`, the decoder plus
  :func:`ript.protocol.events.event_from_json`;
* :class:`EventStreamWriter`, the serialiser.

Errors between events name the offending byte; errors inside an event (bad
JSON, bad UTF-8, too long, cut off) name the event's first byte, so the offset
does not depend on how the stream was split.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ript.protocol.errors import LocalProtocolError, RemoteProtocolError
from ript.protocol.events import Event, EventError, event_from_json

MAX_EVENT_BYTES = 16 * 1024
"""Profile section 1: an event over 16 KiB is rejected."""

MAX_NESTING = 64
"""Deepest nesting of objects and arrays inside one event (the event itself is 1).

Real events nest one or two levels; the cap keeps :func:`json.loads`, which
recurses, far from Python's recursion limit.
"""

_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
_STRUCTURAL = re.compile(rb'[{}\[\]"]')
_STRING_STOP = re.compile(rb'["\\]')
# A \uD800-\uDFFF escape may leave an unpaired surrogate in a decoded string,
# which would later blow up any UTF-8 encode (a log line, a re-send).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")

_QUOTE = 0x22
_BACKSLASH = 0x5C
_OPENERS = {0x7B: 0x7D, 0x5B: 0x5D}  # '{' -> '}', '[' -> ']'


class EventStreamError(RemoteProtocolError):
    """A signalling byway body is not a well-formed JSON array of event objects."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class _State(enum.Enum):
    BEFORE_ARRAY = enum.auto()  # white space, then '['
    FIRST_ITEM = enum.auto()  # after '[': '{' or ']'
    NEXT_ITEM = enum.auto()  # after ',': '{'
    AFTER_ITEM = enum.auto()  # after '}': ',' or ']'
    IN_ITEM = enum.auto()
    CLOSED = enum.auto()  # after ']': white space only


def _show(byte: int) -> str:
    return repr(chr(byte)) if 0x20 < byte < 0x7F else f"0x{byte:02x}"


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class JsonArrayDecoder:
    """Incremental decoder of one unending JSON array whose items are objects."""

    def __init__(self, max_item_bytes: int = MAX_EVENT_BYTES) -> None:
        if max_item_bytes < 2:
            raise LocalProtocolError(f"max_item_bytes must be at least 2, not {max_item_bytes}")
        self._max = max_item_bytes
        self._state = _State.BEFORE_ARRAY
        self._consumed = 0
        self._ended = False
        self._error: EventStreamError | None = None
        # The item being scanned: where it began, its bytes from earlier feeds,
        # the closers it still owes (innermost last), and the string state.
        self._item_start = 0
        self._buffer = bytearray()
        self._closers = bytearray()
        self._in_string = False
        self._escape = False

    @property
    def closed(self) -> bool:
        """True once the closing ``]`` has been seen."""
        return self._state is _State.CLOSED

    @property
    def offset(self) -> int:
        """Bytes consumed so far, counted from the first byte ever fed."""
        return self._consumed

    def feed(self, data: bytes | bytearray | memoryview) -> list[dict[str, Any]]:
        """Consume ``data``; return every object it completed, in order."""
        if self._error is not None:
            self._fail(str(self._error), self._error.offset)
        data = bytes(data)
        if self._ended and data:
            self._fail(
                f"data fed after the end of the stream at byte {self._consumed}", self._consumed
            )
        items: list[dict[str, Any]] = []
        pos = 0
        size = len(data)
        while pos < size:
            if self._state is _State.IN_ITEM:
                pos = self._scan_item(data, pos, items)
                continue
            match = _NOT_SPACE.search(data, pos)
            if match is None:
                break
            pos = match.start()
            byte = data[pos]
            state = self._state
            if state is _State.BEFORE_ARRAY:
                if byte != 0x5B:
                    self._unexpected("'['", data, pos)
                self._state = _State.FIRST_ITEM
                pos += 1
            elif state is _State.FIRST_ITEM or state is _State.NEXT_ITEM:
                if byte == 0x7B:
                    self._start_item(pos)
                elif byte == 0x5D and state is _State.FIRST_ITEM:
                    self._state = _State.CLOSED
                    pos += 1
                else:
                    expected = "'{' or ']'" if state is _State.FIRST_ITEM else "'{'"
                    self._unexpected(expected, data, pos)
            elif state is _State.AFTER_ITEM:
                if byte == 0x2C:
                    self._state = _State.NEXT_ITEM
                elif byte == 0x5D:
                    self._state = _State.CLOSED
                else:
                    self._unexpected("',' or ']'", data, pos)
                pos += 1
            else:
                offset = self._consumed + pos
                self._fail(
                    f"data after the closing ']' at byte {offset}, got {_show(byte)}", offset
                )
        self._consumed += size
        return items

    def eof(self) -> None:
        """The transport ended the body; fine unless it stopped inside an event."""
        if self._error is not None:
            self._fail(str(self._error), self._error.offset)
        self._ended = True
        if self._state is _State.IN_ITEM:
            self._fail(
                f"stream ended inside an event at byte {self._consumed} "
                f"(the event began at byte {self._item_start})",
                self._item_start,
            )

    def _start_item(self, pos: int) -> None:
        self._state = _State.IN_ITEM
        self._item_start = self._consumed + pos
        self._buffer.clear()
        self._closers.clear()
        self._in_string = False
        self._escape = False

    def _scan_item(self, data: bytes, pos: int, items: list[dict[str, Any]]) -> int:
        """Scan from ``pos`` (inside an item); return where scanning stopped."""
        # Never look further than the item may reach, so an oversized item is
        # refused after at most max_item_bytes, however large this feed.
        stop = min(len(data), pos + self._max - len(self._buffer))
        closers = self._closers
        in_string = self._in_string
        escape = self._escape
        i = pos
        while True:
            if escape:
                if i >= stop:
                    break
                i += 1
                escape = False
            elif in_string:
                match = _STRING_STOP.search(data, i, stop)
                if match is None:
                    i = stop
                    break
                i = match.end()
                if data[i - 1] == _BACKSLASH:
                    escape = True
                else:
                    in_string = False
            else:
                match = _STRUCTURAL.search(data, i, stop)
                if match is None:
                    i = stop
                    break
                i = match.end()
                byte = data[i - 1]
                if byte == _QUOTE:
                    in_string = True
                elif byte in _OPENERS:
                    if len(closers) >= MAX_NESTING:
                        self._item_error(f"nests deeper than {MAX_NESTING} levels")
                    closers.append(_OPENERS[byte])
                elif not closers or closers.pop() != byte:
                    self._item_error(f"has a mismatched {_show(byte)}")
                elif not closers:
                    raw = data[pos:i]
                    if self._buffer:
                        self._buffer += raw
                        raw = bytes(self._buffer)
                        self._buffer.clear()
                    items.append(self._decode(raw))
                    self._state = _State.AFTER_ITEM
                    return i
        if i < len(data):
            self._item_error(f"is longer than {self._max} bytes")
        self._buffer += data[pos:i]
        self._in_string = in_string
        self._escape = escape
        return i

    def _decode(self, raw: bytes) -> dict[str, Any]:
        start = self._item_start
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._item_error(f"is not valid UTF-8 (at byte {start + exc.start})")
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            where = start + len(text[: exc.pos].encode("utf-8"))
            problem = exc.msg.removesuffix(" at")  # "Invalid control character at"
            self._item_error(f"is not valid JSON: {problem} at byte {where}")
        except (ValueError, RecursionError) as exc:
            self._item_error(f"is not valid JSON: {exc}")
        if not isinstance(value, dict):  # cannot happen: the slice is '{' ... '}'
            self._item_error("is not a JSON object")
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
            self._item_error("holds an unpaired UTF-16 surrogate")
        return value

    def _unexpected(self, expected: str, data: bytes, pos: int) -> NoReturn:
        offset = self._consumed + pos
        self._fail(f"expected {expected} at byte {offset}, got {_show(data[pos])}", offset)

    def _item_error(self, problem: str) -> NoReturn:
        self._fail(f"the event starting at byte {self._item_start} {problem}", self._item_start)

    def _fail(self, message: str, offset: int) -> NoReturn:
        error = EventStreamError(message, offset)
        self._error = error
        raise error


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """A well-formed JSON object in the stream that is not a valid event.

    The stream goes on; the caller logs ``error`` in one line and skips it.
    """

    error: str
    document: dict[str, Any]


class EventStreamReader:
    """Bytes of a signalling byway body in, typed events out."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._decoder = JsonArrayDecoder(max_event_bytes)

    @property
    def closed(self) -> bool:
        return self._decoder.closed

    @property
    def offset(self) -> int:
        return self._decoder.offset

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event | InvalidEvent]:
        """Every event completed by ``data``; raise :class:`EventStreamError` on bad framing."""
        out: list[Event | InvalidEvent] = []
        for document in self._decoder.feed(data):
            try:
                out.append(event_from_json(document))
            except EventError as exc:
                out.append(InvalidEvent(error=str(exc), document=document))
        return out

    def eof(self) -> None:
        self._decoder.eof()


class EventStreamWriter:
    """Serialiser of one signalling byway body: ``open()``, ``encode()``..., ``close()``."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self._max = max_event_bytes
        self._opened = False
        self._closed = False
        self._count = 0

    def open(self) -> bytes:
        """The ``[`` to send immediately after the headers."""
        if self._opened:
            raise LocalProtocolError("the event stream was already opened")
        self._opened = True
        return b"["

    def encode(self, event: Event) -> bytes:
        """One event, preceded by ``,`` unless it is the first."""
        return self.encode_object(event.to_json())

    def encode_object(self, obj: Mapping[str, Any]) -> bytes:
        """One raw JSON object, preceded by ``,`` unless it is the first."""
        if not self._opened or self._closed:
            raise LocalProtocolError("events can only be encoded between open() and close()")
        try:
            body = json.dumps(
                dict(obj), separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            # UnicodeEncodeError (an unpaired surrogate) is a ValueError too.
            raise LocalProtocolError(f"event cannot be written as JSON: {exc}") from None
        if len(body) > self._max:
            raise LocalProtocolError(
                f"event is {len(body)} bytes, more than the {self._max} a peer accepts"
            )
        self._count += 1
        return body if self._count == 1 else b"," + body

    def close(self) -> bytes:
        """The ``]`` that ends the body (signalling byways normally never send it)."""
        if not self._opened or self._closed:
            raise LocalProtocolError("close() needs an open, not yet closed, event stream")
        self._closed = True
        return b"]"
