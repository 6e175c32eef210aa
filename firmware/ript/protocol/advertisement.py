"""Advertisements and directives (profile section 4; draft sections 8.5, 8.7, 9.6, 9.8).

An *advertisement* lists what media a handler can send (``out`` ports, its
sources) and receive (``in`` ports, its sinks), with the codecs and parameter
bounds of each::

    1 in: opus; PCMU; PCMA; telephone-event; CN;
    1 out: opus,ptime=20; PCMU; PCMA; telephone-event; CN;

A *directive* tells one side what to send: from which of its sources, to
which of the peer's sinks, with which codecs and parameter upper bounds::

    1 to 1: opus,ptime=20; telephone-event; CN;

This module holds the value classes, the parser and serialiser of both forms,
:func:`check_directive` (does a directive stay within both advertisements?)
and :func:`negotiate` (the reference provider's rule for building one).

Values are normalised when built: parameter names are lower-cased and a
parameter whose value equals its default is dropped, because it means the
same as leaving it out.  So ``opus,sr=48000`` and ``opus`` parse to equal
:class:`Codec` values and ``parse(format(x)) == x`` holds for every value.
Codec names keep their spelling (``PCMU``, ``opus``) and compare
case-insensitively.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ript.protocol.errors import LocalProtocolError, RemoteProtocolError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_PORT_ID = 255
"""Media chunks carry source and sink ids in one byte (profile section 8)."""

PARAM_DEFAULTS: Mapping[str, int] = MappingProxyType(
    {
        # audio (draft 9.6)
        "sr": 48000,
        "ss": 16,
        "cbr": 0,
        "ch": 1,
        "ptime": 30,
        # video (draft 9.6); max-res, max-width, max-height, max-fps have none
        "fps": 30,
        "pr": INT64_MAX,
        "depth": 8,
        "tlay": 1,
        "slay": 1,
        # both; the draft's 2^64-1 does not fit a signed 64-bit value
        "br": INT64_MAX,
    }
)
"""The value a parameter has when it is left out.  Parameters not listed have no default."""

AUDIO_CODECS = frozenset({"opus", "pcmu", "pcma", "g722", "g729", "telephone-event", "cn"})
VIDEO_CODECS = frozenset({"h264", "av1", "vp8", "vp9"})
RIDE_ALONG_CODECS = ("telephone-event", "CN")
"""Audio codecs that travel beside the main codec of a stream, never alone."""
DEFAULT_PREFERENCE = ("opus", "PCMU", "PCMA")
PHONE_AUDIO_CODECS = ("opus", "PCMU", "PCMA", "telephone-event", "CN")

_SPACE = re.compile(r"[ \t\r\n]*")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._+\-]*")
_KEYWORD = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_INTEGER = re.compile(r"([+-]?)([0-9]+)")
_TOKEN = re.compile(r"[A-Za-z0-9._+\-]+")
_FULL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._+\-]*\Z")


class GrammarError(RemoteProtocolError):
    """An advertisement or directive does not follow the grammar of profile section 4."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at offset {offset}")
        self.offset = offset


class PortDirection(enum.StrEnum):
    """``in`` = a sink the entity receives into; ``out`` = a source it sends from."""

    IN = "in"
    OUT = "out"


class MediaKind(enum.Enum):
    AUDIO = "audio"
    VIDEO = "video"


def media_kind(codec_name: str) -> MediaKind | None:
    """Audio or video for the codecs this profile knows, else None."""
    lowered = codec_name.lower()
    if lowered in AUDIO_CODECS:
        return MediaKind.AUDIO
    if lowered in VIDEO_CODECS:
        return MediaKind.VIDEO
    return None


def _check_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LocalProtocolError(f"{what} must be an int, not {type(value).__name__}")
    if not INT64_MIN <= value <= INT64_MAX:
        raise LocalProtocolError(f"{what} {value} does not fit in signed 64 bits")
    return value


def _check_id(value: object, what: str) -> int:
    number = _check_int(value, what)
    if not 1 <= number <= MAX_PORT_ID:
        raise LocalProtocolError(f"{what} {number} is not in 1..{MAX_PORT_ID}")
    return number


@dataclass(frozen=True, slots=True)
class Codec:
    """One codec entry: a media subtype name and its parameter bounds.

    ``params`` is stored read-only with names lower-cased and default-valued
    entries dropped; insertion order is kept for serialising.
    """

    name: str
    params: Mapping[str, int]

    def __init__(self, name: str, params: Mapping[str, int] | None = None) -> None:
        if not isinstance(name, str) or _FULL_NAME.match(name) is None:
            raise LocalProtocolError(f"codec name {name!r} is not a media subtype name")
        kept: dict[str, int] = {}
        seen: set[str] = set()
        for pname, value in (params or {}).items():
            if not isinstance(pname, str) or _FULL_NAME.match(pname) is None:
                raise LocalProtocolError(f"parameter name {pname!r} is not valid")
            key = pname.lower()
            if key in seen:
                raise LocalProtocolError(f"parameter {key!r} given twice in codec {name!r}")
            seen.add(key)
            number = _check_int(value, f"parameter {key!r}")
            if PARAM_DEFAULTS.get(key) != number:
                kept[key] = number
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", MappingProxyType(kept))

    def __hash__(self) -> int:
        return hash((self.name, frozenset(self.params.items())))

    def __repr__(self) -> str:
        return f"Codec({self.name!r}, {dict(self.params)!r})"

    def matches(self, name: str) -> bool:
        """Whether this entry is for codec ``name`` (names are case-insensitive)."""
        return self.name.lower() == name.lower()

    def value(self, pname: str) -> int | None:
        """The parameter's value, its default when absent, None when it has neither."""
        key = pname.lower()
        value = self.params.get(key)
        return PARAM_DEFAULTS.get(key) if value is None else value

    effective = value

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}


def _check_codecs(codecs: object, what: str) -> tuple[Codec, ...]:
    if not isinstance(codecs, tuple) or not codecs:
        raise LocalProtocolError(f"{what} needs a non-empty tuple of codecs")
    for codec in codecs:
        if not isinstance(codec, Codec):
            raise LocalProtocolError(f"{what} holds {type(codec).__name__}, not a Codec")
    return codecs


def _first(codecs: Iterable[Codec], name: str) -> Codec | None:
    return next((c for c in codecs if c.matches(name)), None)


@dataclass(frozen=True, slots=True)
class MediaPort:
    """A source (``out``) or sink (``in``) of an advertisement and its codecs."""

    id: int
    direction: PortDirection
    codecs: tuple[Codec, ...]

    def __post_init__(self) -> None:
        _check_id(self.id, "port id")
        if self.direction not in ("in", "out"):
            raise LocalProtocolError(
                f"port direction must be 'in' or 'out', not {self.direction!r}"
            )
        object.__setattr__(self, "direction", PortDirection(self.direction))
        _check_codecs(self.codecs, f"port {self.id} {self.direction}")

    @property
    def kind(self) -> MediaKind | None:
        """Audio or video, from the first codec whose kind is known."""
        return next((k for c in self.codecs if (k := media_kind(c.name)) is not None), None)

    def codec(self, name: str) -> Codec | None:
        """The first entry for codec ``name``, if the port offers it."""
        return _first(self.codecs, name)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction.value,
            "codecs": [c.to_json() for c in self.codecs],
        }


@dataclass(frozen=True, slots=True)
class Advertisement:
    """A handler's (or provider's) media capabilities: one or more ports."""

    ports: tuple[MediaPort, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ports, tuple) or not self.ports:
            raise LocalProtocolError("an advertisement needs a non-empty tuple of ports")
        seen: set[tuple[int, PortDirection]] = set()
        for port in self.ports:
            if not isinstance(port, MediaPort):
                raise LocalProtocolError(f"an advertisement holds {type(port).__name__}")
            key = (port.id, port.direction)
            if key in seen:
                raise LocalProtocolError(f"port '{port.id} {port.direction}' given twice")
            seen.add(key)

    def sources(self) -> tuple[MediaPort, ...]:
        return tuple(p for p in self.ports if p.direction is PortDirection.OUT)

    def sinks(self) -> tuple[MediaPort, ...]:
        return tuple(p for p in self.ports if p.direction is PortDirection.IN)

    def port(self, direction: PortDirection | str, id: int) -> MediaPort | None:
        if direction not in ("in", "out"):
            raise LocalProtocolError(f"port direction must be 'in' or 'out', not {direction!r}")
        wanted = PortDirection(direction)
        return next((p for p in self.ports if p.direction is wanted and p.id == id), None)

    def to_json(self) -> dict[str, Any]:
        return {"ports": [p.to_json() for p in self.ports]}


@dataclass(frozen=True, slots=True)
class Stream:
    """One line of a directive: send from ``source`` to the peer's ``sink``."""

    source: int
    sink: int
    codecs: tuple[Codec, ...]

    def __post_init__(self) -> None:
        _check_id(self.source, "source id")
        _check_id(self.sink, "sink id")
        _check_codecs(self.codecs, f"stream {self.source} to {self.sink}")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sink": self.sink,
            "codecs": [c.to_json() for c in self.codecs],
        }


@dataclass(frozen=True, slots=True)
class Directive:
    """What one side must send.  May be empty (nothing in common); has no text form then."""

    streams: tuple[Stream, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.streams, tuple):
            raise LocalProtocolError("a directive needs a tuple of streams")
        seen: set[tuple[int, int]] = set()
        for stream in self.streams:
            if not isinstance(stream, Stream):
                raise LocalProtocolError(f"a directive holds {type(stream).__name__}")
            key = (stream.source, stream.sink)
            if key in seen:
                raise LocalProtocolError(f"stream '{stream.source} to {stream.sink}' given twice")
            seen.add(key)

    def __bool__(self) -> bool:
        return bool(self.streams)

    def to_json(self) -> dict[str, Any]:
        return {"streams": [s.to_json() for s in self.streams]}


# --------------------------------------------------------------------------- parsing


def _is_digit(char: str) -> bool:
    return len(char) == 1 and "0" <= char <= "9"


def _clip(token: str) -> str:
    return token if len(token) <= 24 else token[:20] + "..."


def _show(text: str, pos: int) -> str:
    """The token at ``pos`` as an error message shows it: a whole word, else one character."""
    if pos >= len(text):
        return "end of text"
    match = _TOKEN.match(text, pos)
    return repr(_clip(match.group() if match else text[pos]))


class _Scanner:
    """Recursive-descent reader over one text; every method skips white space first."""

    def __init__(self, text: object, what: str) -> None:
        if not isinstance(text, str):
            raise GrammarError(f"{what} must be text, not {type(text).__name__}", 0)
        self.text = text
        self.pos = 0

    def skip(self) -> int:
        match = _SPACE.match(self.text, self.pos)
        assert match is not None  # the pattern matches the empty string
        self.pos = match.end()
        return self.pos

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos : self.pos + 1]

    def fail(self, expected: str) -> GrammarError:
        return GrammarError(f"expected {expected}, found {_show(self.text, self.pos)}", self.pos)

    def char(self, char: str) -> None:
        if self.peek() != char:
            raise self.fail(repr(char))
        self.pos += 1

    def port_id(self, what: str) -> int:
        start = self.skip()
        match = _DIGITS.match(self.text, start)
        if match is None:
            raise self.fail(f"a {what} id")
        self.pos = match.end()
        digits = match.group().lstrip("0")
        # Length first: int() of thousands of digits is slow or refused.
        if len(digits) > 3 or not 1 <= int(digits or "0") <= MAX_PORT_ID:
            raise GrammarError(
                f"{what} id {_clip(match.group())} is not in 1..{MAX_PORT_ID}", start
            )
        return int(digits)

    def keyword(self, choices: Sequence[str]) -> str:
        start = self.skip()
        match = _KEYWORD.match(self.text, start)
        word = match.group() if match else ""
        if word.lower() not in choices:
            quoted = " or ".join(repr(c) for c in choices)
            raise self.fail(quoted)
        self.pos = start + len(word)
        return word.lower()

    def name(self, what: str) -> str:
        start = self.skip()
        match = _NAME.match(self.text, start)
        if match is None:
            if _is_digit(self.text[start : start + 1]):
                raise GrammarError(f"{what} must not start with a digit", start)
            raise self.fail(what)
        self.pos = match.end()
        return match.group()

    def integer(self) -> int:
        start = self.skip()
        match = _INTEGER.match(self.text, start)
        if match is None:
            raise self.fail("an integer")
        self.pos = match.end()
        sign, digits = match.groups()
        digits = digits.lstrip("0") or "0"
        value = int(sign + digits) if len(digits) <= 19 else INT64_MAX + 1
        if not INT64_MIN <= value <= INT64_MAX:
            raise GrammarError(
                f"integer {_clip(match.group())} does not fit in signed 64 bits", start
            )
        return value

    def codec(self) -> Codec:
        name = self.name("a codec name")
        params: dict[str, int] = {}
        while self.peek() == ",":
            self.pos += 1
            start = self.skip()
            pname = self.name("a parameter name").lower()
            if pname in params:
                raise GrammarError(f"parameter {pname!r} given twice in codec {name!r}", start)
            if self.peek() == "=":
                self.pos += 1
                params[pname] = self.integer()
            else:
                params[pname] = 1
        return Codec(name, params)

    def codecs(self, next_id: str) -> tuple[Codec, ...]:
        """``1*( codec ";" )``, the last ``;`` optional at the very end of the text."""
        codecs = [self.codec()]
        while True:
            following = self.peek()
            if following == "":
                break
            if following != ";":
                raise self.fail("',' or ';'")
            self.pos += 1
            following = self.peek()
            if following == "" or _is_digit(following):
                break
            if _NAME.match(following) is None:
                raise self.fail(f"a codec name or a {next_id} id")
            codecs.append(self.codec())
        return tuple(codecs)


def parse_advertisement(text: str) -> Advertisement:
    """Parse advertisement text; raise :class:`GrammarError` if it is malformed."""
    scanner = _Scanner(text, "an advertisement")
    if scanner.peek() == "":
        raise GrammarError("the advertisement is empty", scanner.pos)
    ports: list[MediaPort] = []
    seen: set[tuple[int, str]] = set()
    while scanner.peek() != "":
        start = scanner.pos
        port_id = scanner.port_id("port")
        direction = scanner.keyword(("in", "out"))
        if (port_id, direction) in seen:
            raise GrammarError(f"port '{port_id} {direction}' given twice", start)
        seen.add((port_id, direction))
        scanner.char(":")
        ports.append(MediaPort(port_id, PortDirection(direction), scanner.codecs("port")))
    return Advertisement(tuple(ports))


def parse_directive(text: str) -> Directive:
    """Parse directive text (never empty); raise :class:`GrammarError` if it is malformed."""
    scanner = _Scanner(text, "a directive")
    if scanner.peek() == "":
        raise GrammarError("the directive is empty", scanner.pos)
    streams: list[Stream] = []
    seen: set[tuple[int, int]] = set()
    while scanner.peek() != "":
        start = scanner.pos
        source = scanner.port_id("source")
        scanner.keyword(("to",))
        sink = scanner.port_id("sink")
        if (source, sink) in seen:
            raise GrammarError(f"stream '{source} to {sink}' given twice", start)
        seen.add((source, sink))
        scanner.char(":")
        streams.append(Stream(source, sink, scanner.codecs("source")))
    return Directive(tuple(streams))


# --------------------------------------------------------------------------- serialising


def format_codec(codec: Codec) -> str:
    """``name,p=v,...`` with every value written out (never the bare-name form)."""
    return "".join([codec.name, *(f",{k}={v}" for k, v in codec.params.items())])


def _codec_list(codecs: Iterable[Codec]) -> str:
    return " ".join(f"{format_codec(c)};" for c in codecs)


def format_advertisement(advertisement: Advertisement) -> str:
    """Canonical text: one port per line (``1 in: opus; PCMU;``), no final newline."""
    return "\n".join(
        f"{p.id} {p.direction.value}: {_codec_list(p.codecs)}" for p in advertisement.ports
    )


def format_directive(directive: Directive) -> str:
    """Canonical text: one stream per line (``1 to 1: opus,ptime=20;``), no final newline."""
    if not directive.streams:
        raise LocalProtocolError("an empty directive has no text form")
    return "\n".join(f"{s.source} to {s.sink}: {_codec_list(s.codecs)}" for s in directive.streams)


# --------------------------------------------------------------------------- checking


def _bound_problems(wanted: Codec, offered: Codec, where: str) -> list[str]:
    problems: list[str] = []
    for pname in dict.fromkeys([*wanted.params, *offered.params]):
        asked = wanted.value(pname)
        bound = offered.value(pname)
        # A parameter with no default that the directive leaves out sets no bound
        # (the draft's own example drops max-fps); nothing to compare.
        if asked is None:
            continue
        if bound is None:
            problems.append(f"{wanted.name} sets {pname}={asked}, which {where} does not advertise")
        elif asked > bound:
            how = f"{pname}={asked}" if pname in wanted.params else f"default {pname}={asked}"
            problems.append(f"{wanted.name} {how} is above the bound {bound} of {where}")
    return problems


def _codec_problems(wanted: Codec, port: MediaPort, where: str) -> list[str]:
    entries = [c for c in port.codecs if c.matches(wanted.name)]
    if not entries:
        return [f"{where} does not offer {wanted.name}"]
    # Entries of one name are alternatives (OR): one that fits is enough.
    first: list[str] = []
    for entry in entries:
        problems = _bound_problems(wanted, entry, where)
        if not problems:
            return []
        first = first or problems
    return first


def check_directive(
    directive: Directive, sender: Advertisement | None, receiver: Advertisement | None
) -> list[str]:
    """Why ``directive`` does not stay within both advertisements; empty if it does.

    ``sender`` is the advertisement of the side that sends (its ``out`` ports
    are the sources), ``receiver`` that of the side that receives (its ``in``
    ports are the sinks).  Pass None for a side whose advertisement is unknown:
    a phone checks a client directive against its own advertisement only.
    """
    problems: list[str] = []
    for stream in directive.streams:
        label = f"stream {stream.source} to {stream.sink}"
        sides: list[tuple[MediaPort, str]] = []
        if sender is not None:
            source = sender.port(PortDirection.OUT, stream.source)
            if source is None:
                problems.append(f"{label}: the sender has no source {stream.source}")
            else:
                sides.append((source, f"the sender's source {stream.source}"))
        if receiver is not None:
            sink = receiver.port(PortDirection.IN, stream.sink)
            if sink is None:
                problems.append(f"{label}: the receiver has no sink {stream.sink}")
            else:
                sides.append((sink, f"the receiver's sink {stream.sink}"))
        for codec in stream.codecs:
            for port, where in sides:
                problems.extend(f"{label}: {p}" for p in _codec_problems(codec, port, where))
    return problems


def directive_within(
    directive: Directive, sender: Advertisement | None, receiver: Advertisement | None
) -> bool:
    """True when :func:`check_directive` finds no problem."""
    return not check_directive(directive, sender, receiver)


# --------------------------------------------------------------------------- negotiating


def _meet(a: Codec, b: Codec) -> Codec:
    """The tightest bounds of two entries: each parameter both bound, at the lower value."""
    params: dict[str, int] = {}
    for pname in dict.fromkeys([*a.params, *b.params]):
        va, vb = a.value(pname), b.value(pname)
        if va is not None and vb is not None:
            params[pname] = min(va, vb)
    return Codec(a.name, params)


def _stream_codecs(
    source: MediaPort, sink: MediaPort, preference: Sequence[str]
) -> tuple[Codec, ...]:
    riders = {n.lower() for n in RIDE_ALONG_CODECS}
    for name in (*preference, *(c.name for c in source.codecs)):
        if name.lower() in riders:
            continue
        offered, accepted = source.codec(name), sink.codec(name)
        if offered is not None and accepted is not None:
            codecs = [_meet(offered, accepted)]
            break
    else:
        return ()
    if source.kind is MediaKind.AUDIO:
        for name in RIDE_ALONG_CODECS:
            offered, accepted = source.codec(name), sink.codec(name)
            if offered is not None and accepted is not None:
                codecs.append(_meet(offered, accepted))
    return tuple(codecs)


def _by_kind(ports: Iterable[MediaPort], kind: MediaKind) -> Iterator[MediaPort]:
    return iter(sorted((p for p in ports if p.kind is kind), key=lambda p: p.id))


def negotiate(
    sender: Advertisement,
    receiver: Advertisement,
    preference: Sequence[str] = DEFAULT_PREFERENCE,
) -> Directive:
    """The directive the reference provider gives ``sender`` for sending to ``receiver``.

    Sources and sinks are paired by media kind in id order: each source takes
    the lowest-numbered free sink of its kind that shares a codec with it.  The
    stream's main codec is the first of ``preference`` both ports offer, else
    the first of the source's own codecs the sink offers; every parameter
    both entries bound is set to the lower bound (defaults left out).  For
    audio, ``telephone-event`` and ``CN`` ride along when both ports offer
    them.  Returns an empty :class:`Directive` when nothing pairs: the caller
    decides what to do (the provider refuses the call rather than send it).
    """
    streams: list[Stream] = []
    for kind in MediaKind:
        free = list(_by_kind(receiver.sinks(), kind))
        for source in _by_kind(sender.sources(), kind):
            for sink in free:
                codecs = _stream_codecs(source, sink, preference)
                if codecs:
                    streams.append(Stream(source.id, sink.id, codecs))
                    free.remove(sink)
                    break
    streams.sort(key=lambda s: (s.source, s.sink))
    return Directive(tuple(streams))


def phone_advertisement(params: Mapping[str, int] | None = None) -> Advertisement:
    """The phone's advertisement: one audio sink and source, ``params`` on every codec."""
    codecs = tuple(Codec(name, params) for name in PHONE_AUDIO_CODECS)
    return Advertisement(
        (MediaPort(1, PortDirection.IN, codecs), MediaPort(1, PortDirection.OUT, codecs))
    )
