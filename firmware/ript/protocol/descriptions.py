"""The JSON documents of RIPT's web resources (profile sections 3, 4 and 6).

Each document is an immutable dataclass with ``from_bytes``/``from_json`` to
read it and ``to_json``/``to_bytes`` to write it:

* :class:`ProviderTgs` -- ``GET {root}/providertgs``;
* :class:`TrunkGroup` -- ``GET {tg}``, with :class:`OutboundPolicy` and
  :class:`InboundPolicy`;
* :class:`HandlerDescription` with its :class:`PushBinding` -- ``{tg}/handlers``;
* :class:`CallDescription` with its :class:`MediaKey`, :class:`CallList`
  (``GET {tg}/calls``), :class:`PlaceCallRequest` (``POST {tg}/calls``) and
  :class:`ClaimRequest` (``POST {call}``).

Readers are strict about what they use and ignore members they do not know
(forward compatibility).  Every error is a :class:`DescriptionError` whose
message names the document and the member, for example ``TG document:
'retry-backoff' must be an integer number of milliseconds, not a string``.

Advertisements and directives stay plain strings here; their grammar lives in
:mod:`ript.protocol.advertisement`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Self
from urllib.parse import SplitResult, urlsplit

from ript.protocol.errors import RemoteProtocolError
from ript.protocol.events import CallStatus
from ript.protocol.numbers import NumberError, NumberPolicy, is_e164
from ript.protocol.strictjson import JsonBodyError, json_type_name, load_json

MAX_BODY_BYTES = 64 * 1024
MAX_JSON_INTEGER = 2**53 - 1  # the largest integer every JSON parser keeps exactly
MIN_RETRY_BACKOFF_MS = 2000
MAX_RETRY_BACKOFF_MS = 64000
MAX_HANDLER_ID_CHARS = 256
MEDIA_CIPHER = "AES_128_GCM"
MEDIA_KEY_BYTES = 16
MEDIA_SALT_BYTES = 12

Buffer = bytes | bytearray | memoryview

_URI_CHARS = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class DescriptionError(RemoteProtocolError):
    """A RIPT JSON document is malformed; the message names the member."""


# --- JSON plumbing -----------------------------------------------------------


def _load(data: Buffer, what: str) -> object:
    """Decode one JSON body (UTF-8, at most 64 KiB, no duplicate members)."""
    try:
        return load_json(data, limit=MAX_BODY_BYTES)
    except JsonBodyError as exc:
        raise DescriptionError(f"{what}: {exc}") from None


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class _Members:
    """Typed access to the members of one JSON object, with errors that name them."""

    __slots__ = ("doc", "path", "what")

    def __init__(self, doc: object, what: str, path: str = "") -> None:
        self.what = what
        self.path = path
        if not isinstance(doc, dict):
            where = f"{path!r}" if path else "the document"
            raise DescriptionError(
                f"{what}: {where} must be a JSON object, not {json_type_name(doc)}"
            )
        self.doc: dict[str, Any] = doc

    def name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> NoReturn:
        raise DescriptionError(f"{self.what}: {self.name(key)!r} {problem}")

    def has(self, key: str) -> bool:
        """Whether an optional member is there; ``null`` counts as absent."""
        return self.doc.get(key) is not None

    def _text(self, key: str) -> str:
        value = self.doc[key]
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {json_type_name(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(key, "holds an unpaired surrogate, which is not Unicode text")
        return value

    def optional_str(self, key: str) -> str | None:
        return self._text(key) if self.has(key) else None

    def string(self, key: str) -> str:
        if key not in self.doc:
            self.fail(key, "is missing")
        return self._text(key)

    def nonempty_str(self, key: str) -> str:
        value = self.string(key)
        if not value:
            self.fail(key, "must not be empty")
        return value

    def optional_int(self, key: str, meaning: str) -> int | None:
        if not self.has(key):
            return None
        value = self.doc[key]
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer {meaning}, not {json_type_name(value)}")
        if abs(value) > MAX_JSON_INTEGER:
            self.fail(key, f"is out of range (at most {MAX_JSON_INTEGER})")
        return value

    def _checked_uri(self, key: str, value: str) -> str:
        try:
            origin_of(value)
        except DescriptionError as exc:
            self.fail(key, f"is not usable: {exc}")
        return value

    def optional_uri(self, key: str) -> str | None:
        value = self.optional_str(key)
        return None if value is None else self._checked_uri(key, value)

    def uri(self, key: str) -> str:
        return self._checked_uri(key, self.string(key))

    def obj(self, key: str) -> _Members:
        return _Members(self.doc[key], self.what, self.name(key))

    def policy(self, key: str) -> NumberPolicy | None:
        if not self.has(key):
            return None
        try:
            return NumberPolicy.from_json(self.doc[key])
        except NumberError as exc:
            self.fail(key, f"is not a valid number policy: {exc}")

    def items(self, key: str) -> Iterator[tuple[int, _Members]]:
        if key not in self.doc:
            self.fail(key, "is missing")
        value = self.doc[key]
        if not isinstance(value, list):
            self.fail(key, f"must be an array, not {json_type_name(value)}")
        for index, item in enumerate(value):
            yield index, _Members(item, self.what, f"{self.name(key)}[{index}]")


# --- URIs --------------------------------------------------------------------


def _split_uri(uri: object, schemes: tuple[str, ...]) -> SplitResult:
    if not isinstance(uri, str):
        raise DescriptionError(f"a URI must be a string, not {json_type_name(uri)}")
    if not _URI_CHARS.fullmatch(uri):
        raise DescriptionError(
            f"{uri!r} is not a URI: it must be printable ASCII without spaces "
            "(percent-encode other characters)"
        )
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise DescriptionError(f"{uri!r} is not a URI: {exc}") from None
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)
    if parts.scheme not in schemes or not uri.lower().startswith(parts.scheme + "://"):
        raise DescriptionError(f"{uri!r} is not an absolute {wanted} URI")
    if not parts.hostname:
        raise DescriptionError(f"{uri!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise DescriptionError(f"{uri!r} carries user information, which is not allowed")
    if port == 0:
        raise DescriptionError(f"{uri!r} has port 0")
    return parts


def origin_of(uri: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an absolute ``https://`` URI, host lowercased, port 443 default.

    Raises :class:`DescriptionError` when ``uri`` is not such a URI.
    """
    parts = _split_uri(uri, ("https",))
    assert parts.hostname is not None
    return parts.scheme, parts.hostname, parts.port or 443


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses: where plain MQTT is allowed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- providertgs ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TgRef:
    """One entry of the providertgs list."""

    uri: str
    name: str | None = None
    description: str | None = None

    @classmethod
    def _read(cls, members: _Members) -> TgRef:
        return cls(
            uri=members.uri("uri"),
            name=members.optional_str("name"),
            description=members.optional_str("description"),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uri": self.uri}
        if self.name is not None:
            doc["name"] = self.name
        if self.description is not None:
            doc["description"] = self.description
        return doc


@dataclass(frozen=True, slots=True)
class ProviderTgs:
    """``GET {root}/providertgs``: the TGs this user may use (at least one)."""

    WHAT: ClassVar[str] = "providertgs document"
    tgs: tuple[TgRef, ...]

    def __post_init__(self) -> None:
        if not self.tgs:
            raise DescriptionError(f"{self.WHAT}: 'tgs' must list at least one TG")

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        members = _Members(doc, cls.WHAT)
        return cls(tuple(TgRef._read(item) for _, item in members.items("tgs")))

    def to_json(self) -> dict[str, Any]:
        return {"tgs": [tg.to_json() for tg in self.tgs]}

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())

    def select(self, name: str | None) -> TgRef:
        """The TG the config names (by name, or by URI), else the first one."""
        if name is None:
            return self.tgs[0]
        for tg in self.tgs:
            if name in (tg.name, tg.uri):
                return tg
        choices = ", ".join(repr(tg.name if tg.name is not None else tg.uri) for tg in self.tgs)
        raise DescriptionError(
            f"{self.WHAT}: no TG is named {name!r}; the provider offers {choices}"
        )


# --- TG document ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The TG's ``outbound`` member: who may call (``origins``) and whom (``destinations``).

    ``origins`` is the PEM text of the RFC 8226 certificate whose
    TelephoneNumberRange lists the numbers the provider vouches for; it is kept
    as text here and read by the certificate code.  Absent when the provider
    does not act as an authentication service.
    """

    origins: str | None = None
    destinations: NumberPolicy = field(default_factory=NumberPolicy.any)

    @classmethod
    def _read(cls, members: _Members) -> OutboundPolicy:
        origins = members.optional_str("origins")
        if origins is not None and not origins.strip():
            members.fail("origins", "must hold a certificate, not be empty")
        return cls(
            origins=origins,
            destinations=members.policy("destinations") or NumberPolicy.any(),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {}
        if self.origins is not None:
            doc["origins"] = self.origins
        doc["destinations"] = self.destinations.to_json()
        return doc


@dataclass(frozen=True, slots=True)
class InboundPolicy:
    """The TG's ``inbound`` member: this user's numbers and the callers accepted."""

    destinations: NumberPolicy
    origins: NumberPolicy = field(default_factory=NumberPolicy.any)

    @classmethod
    def _read(cls, members: _Members) -> InboundPolicy:
        destinations = members.policy("destinations")
        if destinations is None:
            members.fail("destinations", "is missing")
        return cls(
            destinations=destinations,
            origins=members.policy("origins") or NumberPolicy.any(),
        )

    def to_json(self) -> dict[str, Any]:
        return {"destinations": self.destinations.to_json(), "origins": self.origins.to_json()}


@dataclass(frozen=True, slots=True)
class TrunkGroup:
    """``GET {tg}``: the TG document.

    ``retry_backoff_ms`` is the first wait before reconnecting; it doubles per
    failed retry up to 64 s (:meth:`backoff_ms`).  ``media_timeout_ms`` is how
    long without media acks before the call's byways are re-established.
    """

    WHAT: ClassVar[str] = "TG document"
    uri: str
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    inbound: InboundPolicy | None = None
    retry_backoff_ms: int = MIN_RETRY_BACKOFF_MS
    media_timeout_ms: int = 5000

    def __post_init__(self) -> None:
        try:
            origin_of(self.uri)
        except DescriptionError as exc:
            raise DescriptionError(f"{self.WHAT}: 'uri' is not usable: {exc}") from None
        if not MIN_RETRY_BACKOFF_MS <= self.retry_backoff_ms <= MAX_JSON_INTEGER:
            raise DescriptionError(f"{self.WHAT}: 'retry-backoff' must be at least 2000 ms")
        if not 0 < self.media_timeout_ms <= MAX_JSON_INTEGER:
            raise DescriptionError(f"{self.WHAT}: 'media-timeout' must be positive")

    @classmethod
    def from_bytes(cls, data: Buffer, *, fetched_from: str | None = None) -> Self:
        return cls.from_json(_load(data, cls.WHAT), fetched_from=fetched_from)

    @classmethod
    def from_json(cls, doc: object, *, fetched_from: str | None = None) -> Self:
        """Read a TG document; ``fetched_from`` stands in for a missing ``uri`` member."""
        members = _Members(doc, cls.WHAT)
        uri = members.optional_uri("uri") or fetched_from
        if uri is None:
            members.fail("uri", "is missing")
        if "outbound" not in members.doc:
            members.fail("outbound", "is missing (a TG document must have one)")
        outbound = OutboundPolicy._read(members.obj("outbound"))
        inbound = InboundPolicy._read(members.obj("inbound")) if members.has("inbound") else None
        backoff = members.optional_int("retry-backoff", "number of milliseconds")
        timeout = members.optional_int("media-timeout", "number of milliseconds")
        if timeout is not None and timeout <= 0:
            members.fail("media-timeout", "must be a positive number of milliseconds")
        return cls(
            uri=uri,
            outbound=outbound,
            inbound=inbound,
            # The draft (9.3) says values under 2000 are rounded up, not refused.
            retry_backoff_ms=max(MIN_RETRY_BACKOFF_MS, backoff or MIN_RETRY_BACKOFF_MS),
            media_timeout_ms=5000 if timeout is None else timeout,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uri": self.uri, "outbound": self.outbound.to_json()}
        if self.inbound is not None:
            doc["inbound"] = self.inbound.to_json()
        doc["retry-backoff"] = self.retry_backoff_ms
        doc["media-timeout"] = self.media_timeout_ms
        return doc

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())

    @property
    def supports_inbound(self) -> bool:
        return self.inbound is not None

    def backoff_ms(self, attempt: int) -> int:
        """Wait before retry number ``attempt`` (0 = the first retry): doubling, capped at 64 s.

        A negative ``attempt`` counts as 0.
        """
        attempt = max(attempt, 0)
        if self.retry_backoff_ms >= MAX_RETRY_BACKOFF_MS or attempt >= 6:
            return MAX_RETRY_BACKOFF_MS
        return min(self.retry_backoff_ms << attempt, MAX_RETRY_BACKOFF_MS)

    def retry_delays(self) -> Iterator[int]:
        """Endless waits between reconnection attempts, in milliseconds."""
        attempt = 0
        while True:
            yield self.backoff_ms(attempt)
            attempt += 1


# --- Handlers --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushBinding:
    """Where the handler's shoulder taps arrive (profile section 9).

    ``broker`` is ``mqtts://host[:port]`` (port 8883 by default); plain
    ``mqtt://`` (port 1883) only for a loopback host.  The password is a secret
    and never appears in ``repr``.
    """

    broker: str
    topic: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        problem = _push_problem(self.broker, self.topic)
        if problem:
            raise DescriptionError(f"push binding: {problem[0]!r} {problem[1]}")

    @property
    def tls(self) -> bool:
        return self.broker.lower().startswith("mqtts:")

    @property
    def host(self) -> str:
        host = urlsplit(self.broker).hostname
        assert host is not None
        return host

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.tls else 1883)

    @classmethod
    def from_json(cls, doc: object) -> PushBinding:
        """The binding from its JSON object (as :meth:`to_json` writes it)."""
        return cls._read(_Members(doc, "push binding"))

    @classmethod
    def _read(cls, members: _Members) -> PushBinding:
        broker = members.string("broker")
        topic = members.string("topic")
        problem = _push_problem(broker, topic)
        if problem:
            members.fail(*problem)
        return cls(
            broker=broker,
            topic=topic,
            username=members.optional_str("username"),
            password=members.optional_str("password"),
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"broker": self.broker, "topic": self.topic}
        if self.username is not None:
            doc["username"] = self.username
        if self.password is not None:
            doc["password"] = self.password
        return doc


def _push_problem(broker: str, topic: str) -> tuple[str, str] | None:
    """The member at fault and what is wrong with it, or None."""
    try:
        parts = _split_uri(broker, ("mqtts", "mqtt"))
    except DescriptionError as exc:
        return "broker", f"is not usable: {exc}"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return "broker", f"must hold only scheme, host and port, not {broker!r}"
    if parts.scheme == "mqtt" and not is_loopback(parts.hostname or ""):
        return "broker", f"uses plain mqtt:// to {parts.hostname!r}, which is not loopback"
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        return "topic", f"must be a non-empty MQTT topic name without wildcards, not {topic!r}"
    if len(topic.encode("utf-8", "surrogatepass")) > 65535:
        return "topic", "is longer than MQTT allows (65535 bytes)"
    return None


@dataclass(frozen=True, slots=True)
class HandlerDescription:
    """A handler as registered (``POST {tg}/handlers``) and as echoed back.

    ``uri`` and ``push`` are None in the phone's request and set in the
    provider's reply.  ``advertisement`` is kept as text (see
    :mod:`ript.protocol.advertisement`).
    """

    WHAT: ClassVar[str] = "handler description"
    handler_id: str
    advertisement: str
    name: str | None = None
    uri: str | None = None
    push: PushBinding | None = None

    def __post_init__(self) -> None:
        problem = _handler_id_problem(self.handler_id)
        if problem:
            raise DescriptionError(f"{self.WHAT}: 'handler-id' {problem}")
        if self.uri is not None:
            try:
                origin_of(self.uri)
            except DescriptionError as exc:
                raise DescriptionError(f"{self.WHAT}: 'uri' is not usable: {exc}") from None

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        members = _Members(doc, cls.WHAT)
        handler_id = members.string("handler-id")
        problem = _handler_id_problem(handler_id)
        if problem:
            members.fail("handler-id", problem)
        push = PushBinding._read(members.obj("push")) if members.has("push") else None
        return cls(
            handler_id=handler_id,
            advertisement=members.string("advertisement"),
            name=members.optional_str("name"),
            uri=members.optional_uri("uri"),
            push=push,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"handler-id": self.handler_id}
        if self.name is not None:
            doc["name"] = self.name
        doc["advertisement"] = self.advertisement
        if self.uri is not None:
            doc["uri"] = self.uri
        if self.push is not None:
            doc["push"] = self.push.to_json()
        return doc

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())


def _handler_id_problem(handler_id: str) -> str | None:
    if not handler_id:
        return "must not be empty"
    if len(handler_id) > MAX_HANDLER_ID_CHARS:
        return f"is longer than {MAX_HANDLER_ID_CHARS} characters"
    if _CONTROL.search(handler_id):
        return "must not contain control characters"
    return None


# --- Calls ---------------------------------------------------------------------


class CallDirection(enum.StrEnum):
    """Whether the call was placed by this user (outbound) or to them (inbound)."""

    OUTBOUND = "outbound"
    INBOUND = "inbound"


@dataclass(frozen=True, slots=True)
class MediaKey:
    """The call description's ``media-key``: AES-128-GCM keying for this handler's leg.

    ``key`` and ``salt`` are secrets and never appear in ``repr``.
    """

    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    tag_length: int
    cipher: str = MEDIA_CIPHER

    def __post_init__(self) -> None:
        if self.cipher != MEDIA_CIPHER:
            raise DescriptionError(f"media-key: 'cipher' must be {MEDIA_CIPHER!r}")
        if not isinstance(self.key, bytes) or len(self.key) != MEDIA_KEY_BYTES:
            raise DescriptionError(f"media-key: 'key' must be {MEDIA_KEY_BYTES} bytes")
        if not isinstance(self.salt, bytes) or len(self.salt) != MEDIA_SALT_BYTES:
            raise DescriptionError(f"media-key: 'salt' must be {MEDIA_SALT_BYTES} bytes")
        tag_length = self.tag_length
        if (
            not isinstance(tag_length, int)
            or isinstance(tag_length, bool)
            or not 4 <= tag_length <= 16
        ):
            raise DescriptionError("media-key: 'tag-length' must be 4 to 16")

    @classmethod
    def _read(cls, members: _Members) -> MediaKey:
        cipher = members.string("cipher")
        if cipher != MEDIA_CIPHER:
            members.fail("cipher", f"must be {MEDIA_CIPHER!r}, not {cipher!r}")
        key = _base64_member(members, "key", MEDIA_KEY_BYTES)
        salt = _base64_member(members, "salt", MEDIA_SALT_BYTES)
        tag_length = members.optional_int("tag-length", "number of bytes")
        if tag_length is None:
            members.fail("tag-length", "is missing")
        if not 4 <= tag_length <= 16:
            members.fail("tag-length", f"must be 4 to 16 bytes, not {tag_length}")
        return cls(key=key, salt=salt, tag_length=tag_length, cipher=cipher)

    def to_json(self) -> dict[str, Any]:
        return {
            "cipher": self.cipher,
            "key": base64.b64encode(self.key).decode("ascii"),
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "tag-length": self.tag_length,
        }


def _base64_member(members: _Members, key: str, size: int) -> bytes:
    text = members.string(key)
    try:
        value = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        members.fail(key, "must be standard base64 (RFC 4648 section 4, with padding)")
    if len(value) != size:
        members.fail(key, f"must decode to {size} bytes, not {len(value)}")
    return value


@dataclass(frozen=True, slots=True)
class CallDescription:
    """A call as ``POST {tg}/calls``, ``GET {call}`` and ``POST {call}`` return it.

    ``handler`` is None for an inbound call no handler has taken yet.
    ``from_``/``to`` are usually E.164 numbers but are kept as the provider
    sent them (the draft also allows ``number@domain``).  ``media_key`` is
    present when media is sealed (profile section 8).
    """

    WHAT: ClassVar[str] = "call description"
    uri: str
    direction: CallDirection
    from_: str
    to: str
    state: CallStatus
    handler: str | None = None
    client_directives: str | None = None
    server_directives: str | None = None
    media_key: MediaKey | None = None

    def __post_init__(self) -> None:
        for name, value in (("uri", self.uri), ("handler", self.handler)):
            if value is not None:
                try:
                    origin_of(value)
                except DescriptionError as exc:
                    raise DescriptionError(f"{self.WHAT}: {name!r} is not usable: {exc}") from None

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        return cls._read(_Members(doc, cls.WHAT), with_key=True)

    @classmethod
    def _read(cls, members: _Members, *, with_key: bool) -> Self:
        direction_text = members.string("direction")
        try:
            direction = CallDirection(direction_text)
        except ValueError:
            members.fail("direction", f"must be 'outbound' or 'inbound', not {direction_text!r}")
        state_text = members.string("state")
        try:
            state = CallStatus(state_text)
        except ValueError:
            choices = ", ".join(status.value for status in CallStatus)
            members.fail("state", f"must be one of {choices}, not {state_text!r}")
        media_key = None
        if with_key and members.has("media-key"):
            media_key = MediaKey._read(members.obj("media-key"))
        return cls(
            uri=members.uri("uri"),
            direction=direction,
            from_=members.nonempty_str("from"),
            to=members.nonempty_str("to"),
            state=state,
            handler=members.optional_uri("handler"),
            client_directives=members.optional_str("clientDirectives"),
            server_directives=members.optional_str("serverDirectives"),
            media_key=media_key,
        )

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"uri": self.uri}
        if self.handler is not None:
            doc["handler"] = self.handler
        doc["direction"] = self.direction.value
        doc["from"] = self.from_
        doc["to"] = self.to
        doc["state"] = self.state.value
        if self.client_directives is not None:
            doc["clientDirectives"] = self.client_directives
        if self.server_directives is not None:
            doc["serverDirectives"] = self.server_directives
        if self.media_key is not None:
            doc["media-key"] = self.media_key.to_json()
        return doc

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())


@dataclass(frozen=True, slots=True)
class CallList:
    """``GET {tg}/calls``: this user's calls that have not ended.

    Entries carry no media key; a ``media-key`` member in an entry is ignored
    (``GET`` the call, or claim it, for its key).
    """

    WHAT: ClassVar[str] = "call list"
    calls: tuple[CallDescription, ...] = ()

    def __post_init__(self) -> None:
        if any(call.media_key is not None for call in self.calls):
            raise DescriptionError(f"{self.WHAT}: entries must not carry a media-key")

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        members = _Members(doc, cls.WHAT)
        return cls(
            tuple(CallDescription._read(item, with_key=False) for _, item in members.items("calls"))
        )

    def to_json(self) -> dict[str, Any]:
        return {"calls": [call.to_json() for call in self.calls]}

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())


@dataclass(frozen=True, slots=True)
class PlaceCallRequest:
    """The body of ``POST {tg}/calls``.

    ``destination`` is an E.164 number, or ``user@domain`` for a private trunk
    (draft 9.8); ``passport`` is a compact JWS (RFC 8225), checked here only
    for its shape.
    """

    WHAT: ClassVar[str] = "call request"
    handler: str
    destination: str
    passport: str

    def __post_init__(self) -> None:
        try:
            origin_of(self.handler)
        except DescriptionError as exc:
            raise DescriptionError(f"{self.WHAT}: 'handler' is not usable: {exc}") from None
        problem = _destination_problem(self.destination)
        if problem:
            raise DescriptionError(f"{self.WHAT}: 'destination' {problem}")
        if not _COMPACT_JWS.fullmatch(self.passport):
            raise DescriptionError(
                f"{self.WHAT}: 'passport' must be a compact JWS (three base64url parts)"
            )

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        members = _Members(doc, cls.WHAT)
        handler = members.uri("handler")
        destination = members.string("destination")
        problem = _destination_problem(destination)
        if problem:
            members.fail("destination", problem)
        passport = members.string("passport")
        if not _COMPACT_JWS.fullmatch(passport):
            members.fail("passport", "must be a compact JWS (three base64url parts)")
        return cls(handler=handler, destination=destination, passport=passport)

    def to_json(self) -> dict[str, Any]:
        return {"handler": self.handler, "destination": self.destination, "passport": self.passport}

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())


def _destination_problem(destination: str) -> str | None:
    if is_e164(destination):
        return None
    user, at, domain = destination.partition("@")
    if at and user and domain and "@" not in domain and _URI_CHARS.fullmatch(destination):
        return None
    return f"{destination!r} must be an E.164 number (+ and up to 15 digits) or user@domain"


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """The body of ``POST {call}``: make ``handler`` the call's handler.

    With ``handler`` None it asks for a new directive; an empty body and
    ``{}`` both mean that.
    """

    WHAT: ClassVar[str] = "call claim"
    handler: str | None = None

    def __post_init__(self) -> None:
        if self.handler is not None:
            try:
                origin_of(self.handler)
            except DescriptionError as exc:
                raise DescriptionError(f"{self.WHAT}: 'handler' is not usable: {exc}") from None

    @classmethod
    def from_bytes(cls, data: Buffer) -> Self:
        if isinstance(data, bytes | bytearray | memoryview) and not bytes(data).strip():
            return cls()
        return cls.from_json(_load(data, cls.WHAT))

    @classmethod
    def from_json(cls, doc: object) -> Self:
        members = _Members(doc, cls.WHAT)
        return cls(handler=members.optional_uri("handler"))

    def to_json(self) -> dict[str, Any]:
        return {} if self.handler is None else {"handler": self.handler}

    def to_bytes(self) -> bytes:
        return _dump(self.to_json())
