"""A thin asyncio HTTP/3 client on aioquic: one connection per origin, many streams.

:class:`H3Client` keeps one QUIC connection per origin (``https://host:port``),
opened lazily and opened again on the next request after it was lost.  On it:

* :meth:`H3Client.request` for small exchanges (whole body, size-limited);
* :meth:`H3Client.open_stream` for long-lived ones: the request body is sent
  over time through a bounded buffer (:meth:`H3Stream.send` waits while the
  bytes queued but not yet acknowledged by the peer exceed the bound), the
  response body is an async iterator;
* :meth:`H3Client.open_webtransport` for a WebTransport session (extended
  CONNECT, draft-ietf-webtrans-http3 as aioquic speaks it): HTTP/3 datagrams
  both ways, received ones handed to a callback as they arrive;
* :meth:`H3Client.ping` (QUIC PING) and :meth:`H3Client.peer_settings`.

aioquic's H3 layer hides stream resets, STOP_SENDING and connection loss; the
protocol class below looks at every QUIC event *before* H3 does and turns them
into :class:`StreamResetError` / :class:`ConnectionLostError` on the streams
concerned.  TLS verification is always on; an extra CA file may be added to the
system's trust anchors, nothing can turn verification off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Self, cast
from urllib.parse import urlsplit

import certifi
import pylsqpack
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import (
    H3_ALPN,
    ErrorCode,
    FrameType,
    H3Connection,
    HeadersState,
    QpackDecompressionFailed,
    Setting,
    StreamType,
    encode_frame,
    validate_response_headers,
)
from aioquic.h3.connection import H3Stream as _AioquicH3Stream
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.packet import QuicErrorCode
from aioquic.tls import AlertDescription, Epoch, SessionTicket
from cryptography import x509

from ript.protocol.varint import VarintError, decode_varint

log = logging.getLogger(__name__)

DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024
DEFAULT_MAX_SEND_BUFFER: Final = 64 * 1024
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_IDLE_TIMEOUT: Final = 60.0
MAX_DATAGRAM_FRAME_SIZE: Final = 65536
H3_REQUEST_CANCELLED: Final = int(ErrorCode.H3_REQUEST_CANCELLED)
H3_NO_ERROR: Final = int(ErrorCode.H3_NO_ERROR)
_MAX_CONTROL_FRAME: Final = 16 * 1024
ACK_DELAY: Final = 0.020
"""How long an ACK may wait for a packet of ours to ride on (aioquic's own: 1 ms).

Media byways send a packet each way every 20 ms, so an ACK that waits this long
almost never travels alone.  It stays under the 25 ms ``max_ack_delay`` aioquic
announces in its transport parameters, which the peer's loss timers allow for.
The provider does the same (riptprovider/server.py).
"""

# TLS alerts that mean "the certificate did not verify" (RFC 8446 section 6.2).
_CERT_ALERTS: Final = frozenset(
    int(a)
    for a in (
        AlertDescription.bad_certificate,
        AlertDescription.unsupported_certificate,
        AlertDescription.certificate_revoked,
        AlertDescription.certificate_expired,
        AlertDescription.certificate_unknown,
        AlertDescription.unknown_ca,
    )
)

# Header names HTTP/3 forbids (RFC 9114 section 4.2) or that this module sets itself.
_FORBIDDEN_HEADERS: Final = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)


# --------------------------------------------------------------------------- errors


class H3Error(Exception):
    """Base of every error this module raises."""


class InvalidRequestError(H3Error, ValueError):
    """The caller asked for a request this client cannot send (bad URL, bad header)."""


class TrustConfigError(H3Error, ValueError):
    """The configured extra CA file is missing or holds no PEM certificate."""


class ConnectionLostError(H3Error):
    """The QUIC connection to an origin closed (peer close, idle timeout, local close)."""

    def __init__(self, origin: str, reason: str, error_code: int | None = None) -> None:
        super().__init__(f"connection to {origin} lost: {reason}")
        self.origin = origin
        self.reason = reason
        self.error_code = error_code


class TLSVerificationError(ConnectionLostError):
    """The server's certificate did not verify (unknown CA, wrong name, expired)."""

    def __init__(self, origin: str, reason: str, error_code: int | None = None) -> None:
        H3Error.__init__(
            self, f"TLS certificate of {origin} was rejected: {reason or 'verification failed'}"
        )
        self.origin = origin
        self.reason = reason
        self.error_code = error_code


class StreamResetError(H3Error):
    """The peer reset the stream (RESET_STREAM) or asked us to stop sending (STOP_SENDING)."""

    def __init__(
        self, stream_id: int, code: int, *, stop_sending: bool = False, by_peer: bool = True
    ) -> None:
        what = "stopped sending on" if stop_sending else "reset"
        who = "peer" if by_peer else "this client"
        super().__init__(f"{who} {what} stream {stream_id} with error code 0x{code:x}")
        self.stream_id = stream_id
        self.code = code
        self.stop_sending = stop_sending
        self.by_peer = by_peer


class GoawayError(ConnectionLostError):
    """The server sent GOAWAY before processing this request: it is safe to retry it."""


class ResponseTooLargeError(H3Error):
    """A response body exceeded the caller's size limit; the stream was cancelled."""

    def __init__(self, url: str, limit: int) -> None:
        super().__init__(f"response body of {url} exceeds {limit} bytes")
        self.url = url
        self.limit = limit


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """Status and headers of a response; header names are lower case."""

    status: int
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True, slots=True)
class Response:
    """A whole response, as returned by :meth:`H3Client.request`."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of header ``name`` (case-insensitive), or ``default``."""
        return ResponseHead(self.status, self.headers).get(name, default)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    """The server's HTTP/3 SETTINGS frame (raw ids to values) and what they allow."""

    raw: Mapping[int, int]

    @property
    def extended_connect(self) -> bool:
        """RFC 9220 extended CONNECT (needed for WebTransport)."""
        return self.raw.get(Setting.ENABLE_CONNECT_PROTOCOL) == 1

    @property
    def h3_datagram(self) -> bool:
        """RFC 9297 HTTP datagrams."""
        return self.raw.get(Setting.H3_DATAGRAM) == 1

    @property
    def webtransport(self) -> bool:
        """WebTransport over HTTP/3 is usable: the setting plus what it depends on."""
        return (
            self.raw.get(Setting.ENABLE_WEBTRANSPORT) == 1
            and self.h3_datagram
            and self.extended_connect
        )


@dataclass(frozen=True, slots=True)
class _Target:
    origin: str  # https://host:port
    host: str
    port: int
    authority: str
    path: str  # path + query, never empty


def parse_url(url: str) -> tuple[str, str, int, str, str]:
    """Split an https URL into (origin, host, port, authority, path-with-query).

    Raises :class:`InvalidRequestError` for anything but an absolute https URL.
    """
    t = _target(url)
    return t.origin, t.host, t.port, t.authority, t.path


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise InvalidRequestError(f"URL {url!r} is not valid: {exc}") from None
    if parts.scheme != "https":
        raise InvalidRequestError(f"URL {url!r} must start with https://")
    host = parts.hostname
    if not host:
        raise InvalidRequestError(f"URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidRequestError(f"URL {url!r} must not carry user information")
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port == 443 else f"{shown}:{port}"
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return _Target(f"https://{shown}:{port}", host, port, authority, path)


# --------------------------------------------------------------------------- cookies


@dataclass(slots=True)
class _Cookie:
    name: str
    value: str
    path: str
    expires: float | None  # wall clock seconds, None = session cookie


MAX_COOKIE_AGE_S = 400 * 86400
"""The longest Max-Age kept (RFC 6265bis 5.6.2): the cookie lives no longer."""

MAX_COOKIES_PER_ORIGIN = 50
"""RFC 6265 6.1's minimum; past it the oldest stored cookie of the origin goes."""


class CookieJar:
    """Cookies per origin (RFC 6265 subset).

    Kept: name=value, Path (default: the request path's directory), Max-Age
    (wins over Expires), Expires.  Domain is ignored: every cookie is host-only
    and, stricter than RFC 6265, bound to the port too (the jar is keyed by
    origin).  Secure and HttpOnly need no handling: every request is https and
    there is no script.  Cookies live in memory only, at most
    :data:`MAX_COOKIES_PER_ORIGIN` per origin: a provider's session cookies
    scoped to a resource (RIPT's ``ript-leg``, one per call, no expiry) would
    otherwise pile up for the daemon's lifetime; :meth:`forget` drops them
    when the resource is gone.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._jars: dict[str, dict[tuple[str, str], _Cookie]] = {}

    def store(self, origin: str, request_path: str, set_cookie: str) -> None:
        """Apply one ``Set-Cookie`` header value received from ``origin``; ignore bad ones."""
        pair, _, attrs = set_cookie.partition(";")
        name, eq, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name:
            log.debug("cookie ignored origin=%s reason=no-name", origin)
            return
        path = _default_cookie_path(request_path)
        expires: float | None = None
        max_age_seen = False
        for attr in attrs.split(";"):
            key, _, val = attr.partition("=")
            key, val = key.strip().lower(), val.strip()
            if key == "path" and val.startswith("/"):
                path = val
            elif key == "max-age":
                try:
                    seconds = int(val)
                except ValueError:
                    continue
                max_age_seen = True
                # Capped (RFC 6265bis: 400 days): a longer one, up to hundreds of digits
                # from the provider, would overflow the float sum.
                seconds = min(seconds, MAX_COOKIE_AGE_S)
                expires = self._clock() + seconds if seconds > 0 else float("-inf")
            elif key == "expires" and not max_age_seen:
                try:
                    expires = parsedate_to_datetime(val).timestamp()
                except (TypeError, ValueError, IndexError):
                    continue
        jar = self._jars.setdefault(origin, {})
        if expires is not None and expires <= self._clock():
            jar.pop((name, path), None)
        else:
            jar.pop((name, path), None)  # a replaced cookie counts as the newest
            jar[(name, path)] = _Cookie(name, value, path, expires)
            while len(jar) > MAX_COOKIES_PER_ORIGIN:
                del jar[next(iter(jar))]  # dicts keep insertion order: the oldest first

    def header(self, origin: str, request_path: str) -> str | None:
        """The ``Cookie`` header value for a request, or None when no cookie applies."""
        jar = self._jars.get(origin)
        if not jar:
            return None
        now = self._clock()
        path = request_path.split("?", 1)[0] or "/"
        for key in [k for k, c in jar.items() if c.expires is not None and c.expires <= now]:
            del jar[key]
        matching = [c for c in jar.values() if _path_matches(path, c.path)]
        if not matching:
            return None
        matching.sort(key=lambda c: -len(c.path))  # longer paths first (RFC 6265 5.4)
        return "; ".join(f"{c.name}={c.value}" for c in matching)

    def forget(self, origin: str, path: str) -> int:
        """Drop the cookies of ``origin`` scoped to ``path`` or below it (a resource gone).

        Cookies of a parent path (``/`` for the whole origin) stay.  Returns how
        many were dropped.
        """
        jar = self._jars.get(origin)
        if not jar:
            return 0
        path = path.split("?", 1)[0] or "/"
        gone = [key for key, c in jar.items() if _path_matches(c.path, path)]
        for key in gone:
            del jar[key]
        if not jar:
            del self._jars[origin]
        return len(gone)

    def count(self, origin: str | None = None) -> int:
        """How many cookies the jar holds (for one origin, or for all)."""
        if origin is not None:
            return len(self._jars.get(origin, ()))
        return sum(len(jar) for jar in self._jars.values())

    def clear(self, origin: str | None = None) -> None:
        """Forget the cookies of one origin, or of all."""
        if origin is None:
            self._jars.clear()
        else:
            self._jars.pop(origin, None)


def _default_cookie_path(request_path: str) -> str:
    path = request_path.split("?", 1)[0]
    if not path.startswith("/") or path.count("/") == 1:
        return "/"
    return path[: path.rindex("/")]


def _path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


# --------------------------------------------------------------------------- ACKs


_PROBE_UID = -1
"""The uid of :meth:`_H3Protocol.probe`'s PINGs: no waiter has it (aioquic's are ``id()``s)."""


def delay_acks(quic: QuicConnection) -> None:
    """Let 1-RTT ACKs wait up to :data:`ACK_DELAY` (after the handshake, whose ACKs must not)."""
    # aioquic has no option for it: its delay is a private attribute, read per packet.
    quic._ack_delay = ACK_DELAY


def ack_waits_until(quic: QuicConnection, now: float) -> float | None:
    """When the 1-RTT ACK owed falls due, if it is owed and may still wait; else None."""
    space = quic._spaces.get(Epoch.ONE_RTT)
    if space is None or space.ack_at is None or space.ack_at <= now:
        return None
    due: float = space.ack_at
    return due


def ack_now(quic: QuicConnection, now: float) -> None:
    """Make an ACK owed due now, so the packet about to be built carries it."""
    space = quic._spaces.get(Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now


# --------------------------------------------------------------------------- streams


class _StreamState:
    """Receive-side state of one request stream, fed by the protocol."""

    __slots__ = (
        "chunks",
        "ended",
        "error",
        "head",
        "head_waiters",
        "limit",
        "on_complete",
        "protocol",
        "received",
        "send_error",
        "sent_fin",
        "stream_id",
        "wakeup",
    )

    def __init__(self, protocol: _H3Protocol, stream_id: int) -> None:
        loop = asyncio.get_running_loop()
        self.protocol = protocol
        self.stream_id = stream_id
        self.head: asyncio.Future[ResponseHead] = loop.create_future()
        self.head_waiters: list[asyncio.Future[None]] = []
        self.chunks: deque[bytes] = deque()
        self.ended = False
        self.error: H3Error | None = None
        self.send_error: H3Error | None = None
        self.sent_fin = False
        self.wakeup = asyncio.Event()
        # Called once when the response has ended or failed (H3Client.send_prepared):
        # the media byways' requests complete in a callback, without a task each.
        self.on_complete: Callable[[], None] | None = None
        # (url, bytes): the response body is cut (stream reset, ResponseTooLargeError) as
        # soon as it passes this, for requests no task reads (H3Client.send_prepared).
        self.limit: tuple[str, int] | None = None
        self.received = 0  # response body bytes so far (counted while ``limit`` is set)

    def _completed(self) -> None:
        callback = self.on_complete
        if callback is not None:
            self.on_complete = None
            try:
                callback()
            except Exception:
                # Called inside aioquic's handling of a packet: raised out of it, the
                # packet's other events would wait for the next packet, and its transmit
                # (ACK, requests started meanwhile) would not happen.
                log.exception("h3 completion callback failed stream_id=%d", self.stream_id)

    def on_headers(self, headers: list[tuple[bytes, bytes]], ended: bool) -> None:
        if not self.head.done():
            status = 0
            decoded: list[tuple[str, str]] = []
            for key, value in headers:
                if key == b":status":
                    status = int(value)
                elif not key.startswith(b":"):
                    decoded.append((key.decode("latin-1"), value.decode("latin-1")))
            if 100 <= status < 200:
                return  # interim response: the final one follows
            self.head.set_result(ResponseHead(status, tuple(decoded)))
            self._release_head_waiters()
        # else: trailers, not used by RIPT
        if ended:
            self.on_end()

    def _release_head_waiters(self) -> None:
        for waiter in self.head_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.head_waiters.clear()

    def on_data(self, data: bytes, ended: bool) -> None:
        if data:
            self.chunks.append(data)
            limit = self.limit
            if limit is not None:
                self.received += len(data)
                if self.received > limit[1]:
                    self._cut(*limit)
                    return
        if ended:
            self.ended = True
        self.wakeup.set()
        if ended:
            self.protocol.forget(self)
            self._completed()

    def _cut(self, url: str, size: int) -> None:
        """Past the limit: cut the stream now rather than hold a body that may never end."""
        self.chunks.clear()
        protocol = self.protocol
        protocol.abort(self.stream_id, H3_REQUEST_CANCELLED)
        self.fail(ResponseTooLargeError(url, size))
        protocol.forget(self)

    def on_end(self) -> None:
        self.ended = True
        self.wakeup.set()
        self.protocol.forget(self)
        self._completed()

    def fail(self, error: H3Error) -> None:
        if self.error is None and not self.ended:
            self.error = error
        if self.send_error is None:
            self.send_error = error
        if not self.head.done():
            self.head.set_exception(error)
            self.head.exception()  # mark retrieved: the caller may only iterate
            self._release_head_waiters()
        self.wakeup.set()
        self.protocol.wake_senders()
        self._completed()


class H3Stream:
    """One request stream: a streamed request body and a streamed response.

    Use as ``async with await client.open_stream(...) as stream``: leaving the
    block before the response ended cancels the stream (RESET_STREAM and
    STOP_SENDING with H3_REQUEST_CANCELLED).
    """

    def __init__(self, state: _StreamState, url: str, max_send_buffer: int) -> None:
        self._state = state
        self._url = url
        self._max_send_buffer = max_send_buffer

    @property
    def stream_id(self) -> int:
        """The QUIC stream id."""
        return self._state.stream_id

    @property
    def connection(self) -> _H3Protocol:
        """The connection the stream runs on (for ``resumed``, ``stream_count`` ...)."""
        return self._state.protocol

    @property
    def buffered(self) -> int:
        """Request bytes (with HTTP/3 framing) queued or in flight, not yet acknowledged."""
        return self._state.protocol.unacked(self._state.stream_id)

    @property
    def max_send_buffer(self) -> int:
        """The bound on :attr:`buffered` that :meth:`send` waits for."""
        return self._max_send_buffer

    def can_send(self, size: int) -> bool:
        """True when ``send`` of ``size`` bytes would not wait (for senders that drop)."""
        queued = self.buffered
        return queued == 0 or queued + size <= self._max_send_buffer

    async def send(self, data: bytes) -> None:
        """Send ``data`` as one DATA frame, first waiting while the buffer is over its bound.

        Raises :class:`StreamResetError` after STOP_SENDING or a reset, and
        :class:`ConnectionLostError` when the connection is gone.
        """
        state = self._state
        while True:
            if state.send_error is not None:
                raise state.send_error
            if state.sent_fin:
                raise InvalidRequestError(f"request body of {self._url} was already ended")
            if self.can_send(len(data)):
                break
            await state.protocol.wait_acked()
        state.protocol.send_data(state.stream_id, data, end_stream=False)

    def end(self, data: bytes = b"") -> None:
        """End the request body (FIN), optionally with a last piece of data (not bounded)."""
        state = self._state
        if state.send_error is not None:
            raise state.send_error
        if state.sent_fin:
            return
        state.sent_fin = True
        state.protocol.send_data(state.stream_id, data, end_stream=True)

    async def response_headers(self) -> ResponseHead:
        """Wait for the final response's status and headers."""
        state = self._state
        if not state.head.done():
            # A future of our own, set by the protocol in the same call as the head:
            # cancelling this wait leaves the head alone (as a shield would), and the
            # task wakes one loop iteration earlier than through a shield, in time to
            # reopen a media GET before the transmit that carries the ACK.
            waiter = asyncio.get_running_loop().create_future()
            state.head_waiters.append(waiter)
            try:
                await waiter
            finally:
                if state.head_waiters:  # emptied by the release: left only when cancelled
                    with contextlib.suppress(ValueError):
                        state.head_waiters.remove(waiter)
        return state.head.result()

    async def read(self) -> bytes | None:
        """The next piece of the response body, or None at its end."""
        state = self._state
        while True:
            if state.chunks:
                return state.chunks.popleft()
            if state.error is not None:
                raise state.error
            if state.ended:
                return None
            state.wakeup.clear()
            await state.wakeup.wait()

    async def read_all(self, limit: int = DEFAULT_MAX_RESPONSE_BYTES) -> bytes:
        """The rest of the response body; over ``limit`` bytes cancels the stream."""
        parts: list[bytes] = []
        size = 0
        while (chunk := await self.read()) is not None:
            size += len(chunk)
            if size > limit:
                self.reset()
                raise ResponseTooLargeError(self._url, limit)
            parts.append(chunk)
        return b"".join(parts)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while (chunk := await self.read()) is not None:
            yield chunk

    @property
    def finished(self) -> bool:
        """The response ended (or failed) and the request body was ended."""
        state = self._state
        return (state.ended or state.error is not None) and (
            state.sent_fin or state.send_error is not None
        )

    def reset(self, code: int = H3_REQUEST_CANCELLED) -> None:
        """Abort both directions: RESET_STREAM and STOP_SENDING with ``code``."""
        state = self._state
        if state.ended and (state.sent_fin or state.send_error is not None):
            return
        err = StreamResetError(state.stream_id, code, by_peer=False)
        state.protocol.abort(state.stream_id, code)
        state.fail(err)
        state.protocol.forget(state)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.finished:
            self.reset()


class WebTransportSession:
    """One WebTransport session: its CONNECT stream and the HTTP/3 datagrams on it.

    Received datagrams go to the ``on_datagram`` given to
    :meth:`H3Client.open_webtransport`, called in the loop as each arrives.
    :meth:`send_datagram` queues one datagram and lets the connection transmit
    on its next turn (no task, no copy).  :meth:`close` resets the CONNECT stream,
    which ends the session at the peer; the session also ends when the peer
    ends or resets the stream or the connection goes (:attr:`ended`).
    """

    def __init__(self, state: _StreamState, url: str) -> None:
        self._state = state
        self._url = url
        self._send = state.protocol.send_datagram
        self._stream_id = state.stream_id

    @property
    def url(self) -> str:
        return self._url

    @property
    def stream_id(self) -> int:
        """The CONNECT stream's id (which datagrams name, divided by four)."""
        return self._stream_id

    async def response_headers(self) -> ResponseHead:
        """The answer to the CONNECT: a 2xx opens the session."""
        return await asyncio.shield(self._state.head)

    @property
    def ended(self) -> bool:
        """The CONNECT stream ended or failed: no datagram will come or go any more."""
        state = self._state
        return state.ended or state.error is not None

    def send_datagram(self, data: bytes) -> None:
        """Queue one datagram (at most the peer's limit; the caller keeps it small).

        Raises :class:`ConnectionLostError` when the connection is gone.
        """
        self._send(self._stream_id, data)

    def close(self) -> None:
        """End the session: no more datagrams are delivered; the stream is reset."""
        state = self._state
        state.protocol.end_webtransport(self._stream_id)
        if state.ended and (state.sent_fin or state.send_error is not None):
            return
        state.protocol.abort(self._stream_id, H3_NO_ERROR)
        state.fail(StreamResetError(self._stream_id, H3_NO_ERROR, by_peer=False))
        state.ended = True
        state.sent_fin = True
        state.protocol.forget(state)


# --------------------------------------------------------------------------- connection


_STATUS_200_SECTION: Final = b"\x00\x00\xd9"
"""A QPACK field section of no dynamic table whose first line is static entry 25,
``:status: 200`` (RFC 9204 4.5.2 and appendix A): a final response, never interim."""


def _whole_response(data: bytes) -> tuple[bytes, bytes | None] | None:
    """``data`` as a HEADERS frame starting ``:status: 200`` and at most one DATA frame,
    exactly: (field section, body or None); None for anything else."""
    if data[:1] != b"\x01":  # HEADERS
        return None
    try:
        size, at = decode_varint(data, 1)
    except VarintError:
        return None
    end = at + size
    section = data[at:end]
    if not section.startswith(_STATUS_200_SECTION) or end > len(data):
        return None
    if end == len(data):
        return section, None
    if data[end] != 0:  # DATA
        return None
    try:
        size, at = decode_varint(data, end + 1)
    except VarintError:
        return None
    if at + size != len(data):
        return None
    return section, data[at:]


class _StaticQpackH3(H3Connection):
    """aioquic's HTTP/3 with no QPACK dynamic table offered to the peer (RFC 9204 section 3.2.3).

    A response whose headers refer to the dynamic table must be acknowledged on
    the QPACK decoder stream (section 4.4.1): one packet of its own for each media
    answer when nothing else is sent just then.  With capacity 0 the provider
    encodes with the static table and literals only: a few bytes more per
    response, and no acknowledgements.
    """

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings[Setting.QPACK_MAX_TABLE_CAPACITY] = 0
        settings[Setting.QPACK_BLOCKED_STREAMS] = 0
        return settings

    def _decode_headers(
        self, stream_id: int, frame_data: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        # aioquic's own, less its write of the decoder's output when there is none: with
        # no dynamic table there never is, and the empty write into the decoder stream
        # cost a QUIC stream lookup per response (two per 20 ms on media byways).
        try:
            if frame_data is None:
                decoder, headers = self._decoder.resume_header(stream_id)
            else:
                decoder, headers = self._decoder.feed_header(stream_id, frame_data)
        except pylsqpack.DecompressionFailed as exc:
            raise QpackDecompressionFailed() from exc
        decoder_stream = self._local_decoder_stream_id
        if decoder and decoder_stream is not None:
            self._decoder_bytes_sent += len(decoder)
            self._quic.send_stream_data(decoder_stream, decoder)
        return headers

    def _receive_request_or_push_data(
        self, stream: _AioquicH3Stream, data: bytes, stream_ended: bool
    ) -> list[H3Event]:
        # A media byway's answer, twice per 20 ms: a whole 200 response in one piece
        # (HEADERS, at most one DATA frame, FIN) on a stream that has received nothing.
        # Read here with the checks aioquic's generic frame loop makes for it (the
        # header validation, content-length), and the same events; anything else (other
        # statuses, pieces, more frames, a QUIC logger) takes aioquic's own way.
        whole = (
            _whole_response(data)
            if stream_ended
            and not stream.buffer
            and stream.frame_type is None  # not the rest of a WebTransport stream
            and not stream.blocked
            and stream.frame_size is None
            and stream.headers_recv_state is HeadersState.INITIAL
            and self._is_client
            and self._quic_logger is None
            else None
        )
        if whole is None:
            return super()._receive_request_or_push_data(stream, data, stream_ended)
        section, body = whole
        stream_id = stream.stream_id
        headers = self._decode_headers(stream_id, section)
        validate_response_headers(headers, stream)
        stream.headers_recv_state = HeadersState.AFTER_HEADERS
        stream.receiving_ended = True
        if body is None:
            self._check_content_length(stream)
            return [HeadersReceived(headers=headers, stream_id=stream_id, stream_ended=True)]
        stream.content_length += len(body)
        self._check_content_length(stream)
        return [
            HeadersReceived(headers=headers, stream_id=stream_id, stream_ended=False),
            DataReceived(data=body, stream_id=stream_id, stream_ended=True),
        ]

    def send_encoded(self, stream_id: int, frames: bytes) -> None:
        """A whole request encoded beforehand (:func:`_request_frames`): one write, with FIN.

        What :meth:`send_headers` and :meth:`send_data` do for it, in one call into
        QUIC instead of four (the HEADERS frame, the QPACK encoder stream's empty
        write, the DATA frame, the FIN): the request's state, as they leave it, so
        the response is read and the stream dropped as any other.  The phone sets no
        QUIC logger, so no frame_created events are written (as send_headers would).
        """
        stream = self._stream.get(stream_id)
        if stream is None:
            stream = self._stream[stream_id] = _AioquicH3Stream(stream_id)
        stream.headers_send_state = HeadersState.AFTER_HEADERS
        stream.sending_ended = True
        if stream.is_ended():  # as aioquic's send_data leaves it: both ways done, dropped
            self._stream.pop(stream_id)
        self._quic.send_stream_data(stream_id, frames, end_stream=True)


class _H3Protocol(QuicConnectionProtocol):
    """aioquic protocol for one origin: sees QUIC events before H3 swallows them."""

    def __init__(self, quic: QuicConnection, origin: str) -> None:
        super().__init__(quic)
        self.origin = origin
        self._h3 = _StaticQpackH3(quic, enable_webtransport=True)
        self._streams: dict[int, _StreamState] = {}
        self._lost: ConnectionLostError | None = None
        self._ack_waiters = 0
        self._acked = asyncio.Event()
        self._settings: asyncio.Future[PeerSettings] = asyncio.get_running_loop().create_future()
        self.resumed = False
        self.early_data_accepted = False
        self.handshake_done = False
        self.goaway_id: int | None = None
        # Our own reading of the peer's control stream, for GOAWAY (aioquic drops it).
        self._uni_buffers: dict[int, bytearray] = {}
        self._control_id: int | None = None
        self._ignored_uni: set[int] = set()
        self._wrote = False  # request data queued since the last transmit
        # Deferred requests (stream id, headers or encoded frames, end_stream) and the
        # timer that sends them.
        self._held: list[tuple[int, list[tuple[bytes, bytes]] | bytes, bool]] = []
        self._held_timer: asyncio.TimerHandle | None = None
        # WebTransport sessions' datagram receivers, by CONNECT stream id.
        self._datagram_sinks: dict[int, Callable[[bytes], None]] = {}

    # public, read-only views ---------------------------------------------------

    @property
    def lost(self) -> ConnectionLostError | None:
        """Why the connection is gone, or None while it is usable."""
        return self._lost

    @property
    def stream_count(self) -> int:
        """Request streams the client still tracks on this connection."""
        return len(self._streams)

    async def settings(self) -> PeerSettings:
        """The peer's SETTINGS (waits for the control stream's first frame)."""
        return await asyncio.shield(self._settings)

    # used by H3Stream / H3Client ----------------------------------------------

    @property
    def accepts_requests(self) -> bool:
        """Usable for new requests: not lost and no GOAWAY received."""
        return self._lost is None and self.goaway_id is None

    def check_usable(self) -> None:
        if self._lost is not None:
            raise self._lost

    def start_request(
        self,
        request: list[tuple[bytes, bytes]] | bytes,
        end_stream: bool,
        *,
        defer: bool = False,
    ) -> _StreamState:
        """Open a request: its headers, or a whole request encoded beforehand
        (:func:`_request_frames`, always ended: ``end_stream`` must be True)."""
        self.check_usable()
        stream_id = self._quic.get_next_available_stream_id()
        state = _StreamState(self, stream_id)
        state.sent_fin = end_stream
        self._streams[stream_id] = state
        if defer:
            # Held back until our next write (or ACK_DELAY): the stream is opened now,
            # with nothing on it, so later requests take the ids after this one.
            self._quic.send_stream_data(stream_id, b"", end_stream=False)
            self._held.append((stream_id, request, end_stream))
            if self._held_timer is None:
                self._held_timer = self._loop.call_later(ACK_DELAY, self._send_held)
            return state
        self._write_request(stream_id, request, end_stream)
        self._wrote = True
        self._transmit_soon()
        return state

    def _write_request(
        self, stream_id: int, request: list[tuple[bytes, bytes]] | bytes, end_stream: bool
    ) -> None:
        if isinstance(request, bytes):
            self._h3.send_encoded(stream_id, request)
        else:
            self._h3.send_headers(stream_id, request, end_stream=end_stream)

    def _send_held(self) -> None:
        self._held_timer = None
        if self._held:
            self._wrote = True
            self.transmit()

    def _release_held(self) -> None:
        # Into the packet being built: the held requests' headers (unless reset meanwhile).
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        held, self._held = self._held, []
        if self._lost is not None:
            return
        for stream_id, request, end_stream in held:
            if stream_id in self._streams:
                self._write_request(stream_id, request, end_stream)

    def start_webtransport(
        self, headers: list[tuple[bytes, bytes]], on_datagram: Callable[[bytes], None]
    ) -> _StreamState:
        """Send an extended CONNECT; datagrams of its session go to ``on_datagram``."""
        state = self.start_request(headers, end_stream=False)
        self._datagram_sinks[state.stream_id] = on_datagram
        return state

    def end_webtransport(self, stream_id: int) -> None:
        self._datagram_sinks.pop(stream_id, None)

    def send_datagram(self, stream_id: int, data: bytes) -> None:
        # The 20 ms path: queue the datagram; one transmit per loop turn sends all.
        if self._lost is not None:
            raise self._lost
        self._h3.send_datagram(stream_id, data)
        self._wrote = True  # the ACK owed rides along
        self._transmit_soon()

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        self.check_usable()
        self._h3.send_data(stream_id, data, end_stream)
        self._wrote = True
        self._transmit_soon()

    def abort(self, stream_id: int, code: int, *, receive: bool = True) -> None:
        if self._lost is not None:
            return
        self._quic.reset_stream(stream_id, code)
        if receive:
            with contextlib.suppress(ValueError):  # receiving part already finished
                self._quic.stop_stream(stream_id, code)
        # H3Connection does not learn of our reset and would keep its per-stream
        # state forever: mark the sending side ended so it can be dropped.
        h3_stream = self._h3._stream.get(stream_id)
        if h3_stream is not None:
            h3_stream.sending_ended = True
            if h3_stream.is_ended():
                del self._h3._stream[stream_id]
        self._wrote = True
        self._transmit_soon()

    def forget(self, state: _StreamState) -> None:
        # Keep tracking while the request body is still open: STOP_SENDING may follow.
        if (
            (state.ended or state.error is not None)
            and (state.sent_fin or state.send_error is not None)
            and self._streams.get(state.stream_id) is state
        ):
            del self._streams[state.stream_id]
            if self.goaway_id is not None and not self._streams:
                self._close_soon("drained after GOAWAY")

    def unacked(self, stream_id: int) -> int:
        # aioquic keeps sent data in the stream's send buffer until it is
        # acknowledged and exposes no counter: read the buffer's length.
        stream = self._quic._streams.get(stream_id)
        if stream is None:
            return 0
        return len(stream.sender._buffer)

    async def wait_acked(self) -> None:
        """Wait until some ACK arrived, or the connection/stream state changed."""
        self._ack_waiters += 1
        try:
            self._acked.clear()
            await self._acked.wait()
        finally:
            self._ack_waiters -= 1

    def wake_senders(self) -> None:
        if self._ack_waiters:
            self._acked.set()

    def probe(self) -> None:
        """Queue a PING and send it (its acknowledgement is not waited for)."""
        self._quic.send_ping(_PROBE_UID)
        self.transmit()

    async def ping_peer(self) -> None:
        self.check_usable()
        try:
            await self.ping()
        except ConnectionError:
            raise self._lost or ConnectionLostError(self.origin, "closed during ping") from None

    def close_now(self, reason: str = "closed by client") -> None:
        """Send CONNECTION_CLOSE and fail every stream without waiting for the drain period."""
        if self._lost is None:
            self.close(error_code=QuicErrorCode.NO_ERROR, reason_phrase="")
            self._mark_lost(ConnectionLostError(self.origin, reason))
        self._shutdown()

    # aioquic hooks -----------------------------------------------------------

    def transmit(self) -> None:
        # An ACK owed rides on the packet that carries our own data instead of
        # leaving alone when its delay (ACK_DELAY) runs out: aioquic writes an
        # ACK into a packet only once it is due.
        if self._wrote:
            self._wrote = False
            if self._held:
                self._release_held()
            ack_now(self._quic, self._loop.time())
        super().transmit()

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic's own version transmits at once, so every datagram in costs a
        # datagram out (an ACK, then the answer's request as another).  Here the
        # transmit waits for the end of this loop iteration's callbacks: what the
        # woken tasks send (a new GET after an answer) leaves in the same packet.
        now = self._loop.time()
        self._quic.receive_datagram(cast(bytes, data), addr, now=now)
        self._process_events()
        if not self._ack_can_wait(now):
            self._transmit_soon()
        # aioquic delivers ConnectionTerminated only after the closing/draining
        # period (3 PTO); fail streams as soon as the close is known.
        close = self._quic._close_event
        if close is not None and self._lost is None:
            self._terminated(close)
        self.wake_senders()

    def _ack_can_wait(self, now: float) -> bool:
        """Leave the transmit to the ACK's due time: True if nothing else must go now.

        In a call a packet comes in every 20 ms and what it needs back is an ACK,
        which waits for our next packet; the transmit after it found nothing to
        send, at 41-88 us a time (docs/performance.md, "the floor of the stack").
        It waits only when the packet asked for an ACK that may be delayed and we
        wrote nothing: the timer is armed for the ACK's due time, and whatever
        else the packet made due (a retransmission, flow-control credit, a
        PATH_RESPONSE) leaves with it, at most ACK_DELAY later.  A packet with no
        ACK owed (an ACK alone, which may declare data lost) transmits at once.
        """
        if self._wrote or not self.handshake_done or self._transmit_task is not None:
            return False
        if self._quic._close_pending:  # a CONNECTION_CLOSE of ours (a protocol error)
            return False
        due = ack_waits_until(self._quic, now)
        if due is None:
            return False
        if self._timer_at is None or due < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(due, self._handle_timer)
            self._timer_at = due
        return True

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        # Look first: H3Connection.handle_event drops these without a trace.
        if isinstance(event, qe.StreamReset):
            state = self._streams.get(event.stream_id)
            if state is not None:
                if not state.sent_fin and state.send_error is None:
                    # The request is dead: end our half too instead of leaving it open.
                    self.abort(event.stream_id, H3_REQUEST_CANCELLED, receive=False)
                state.fail(StreamResetError(event.stream_id, event.error_code))
                state.ended = True
                self.forget(state)
        elif isinstance(event, qe.StopSendingReceived):
            state = self._streams.get(event.stream_id)
            if state is not None and state.send_error is None:
                state.send_error = StreamResetError(
                    event.stream_id, event.error_code, stop_sending=True
                )
                self.wake_senders()
                self.forget(state)
        elif isinstance(event, qe.ConnectionTerminated):
            if self._lost is None:
                self._terminated(event)
            self._shutdown()
            return
        elif isinstance(event, qe.StreamDataReceived) and event.stream_id % 4 == 3:
            self._watch_peer_uni_stream(event.stream_id, event.data)
        elif isinstance(event, qe.HandshakeCompleted):
            delay_acks(self._quic)
            self.handshake_done = True
            self.resumed = event.session_resumed
            self.early_data_accepted = event.early_data_accepted
        for h3_event in self._h3.handle_event(event):
            self._h3_event(h3_event)
        if not self._settings.done() and self._h3.received_settings is not None:
            self._settings.set_result(PeerSettings(dict(self._h3.received_settings)))

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            state = self._streams.get(event.stream_id)
            if state is not None:
                state.on_headers(event.headers, event.stream_ended)
        elif isinstance(event, DataReceived):
            state = self._streams.get(event.stream_id)
            if state is not None:
                # A WebTransport session's stream carries nothing we read (no capsule
                # is used): keep only its end, so a peer cannot fill memory through it.
                data = b"" if event.stream_id in self._datagram_sinks else event.data
                state.on_data(data, event.stream_ended)
        elif isinstance(event, DatagramReceived):
            sink = self._datagram_sinks.get(event.stream_id)
            if sink is not None:
                sink(event.data)
            # else: a datagram of a session we closed, or of none: dropped
        # Server pushes (aioquic's client allows push ids up to 8) belong to no
        # request of ours and are ignored.

    def _watch_peer_uni_stream(self, stream_id: int, data: bytes) -> None:
        """Find the peer's control stream and read its frames, to see GOAWAY."""
        if stream_id in self._ignored_uni or self._control_id not in (None, stream_id):
            return
        buf = self._uni_buffers.setdefault(stream_id, bytearray())
        buf += data
        if len(buf) > _MAX_CONTROL_FRAME:
            # A control frame this large is not GOAWAY; aioquic judges its validity.
            self._ignored_uni.add(stream_id)
            del self._uni_buffers[stream_id]
            return
        consumed = 0
        try:
            if self._control_id is None:
                stream_type, consumed = decode_varint(buf)
                if stream_type != StreamType.CONTROL:
                    self._ignored_uni.add(stream_id)
                    del self._uni_buffers[stream_id]
                    return
                self._control_id = stream_id
                self._uni_buffers = {stream_id: buf}
            while True:
                frame_type, at = decode_varint(buf, consumed)
                length, at = decode_varint(buf, at)
                if at + length > len(buf):
                    break  # incomplete frame: wait for more data
                payload = bytes(buf[at : at + length])
                consumed = at + length
                if frame_type == FrameType.GOAWAY:
                    self._goaway(decode_varint(payload)[0])
        except VarintError:
            pass  # incomplete frame: wait for more data
        del buf[:consumed]

    def _close_soon(self, reason: str) -> None:
        # Not from inside aioquic's event loop over this connection's events.
        asyncio.get_running_loop().call_soon(self.close_now, reason)

    def _goaway(self, last_id: int) -> None:
        self.goaway_id = last_id
        log.info("h3 goaway origin=%s stream_id=%d", self.origin, last_id)
        for state in [s for s in self._streams.values() if s.stream_id >= last_id]:
            self.abort(state.stream_id, H3_REQUEST_CANCELLED)
            state.fail(GoawayError(self.origin, "server sent GOAWAY, request not processed"))
            state.ended = True
            state.sent_fin = True
            self.forget(state)
        if not self._streams:
            self._close_soon("drained after GOAWAY")

    def _terminated(self, event: qe.ConnectionTerminated) -> None:
        code = event.error_code
        reason = event.reason_phrase or f"error code 0x{code:x}"
        error: ConnectionLostError
        if (
            not self.handshake_done
            and QuicErrorCode.CRYPTO_ERROR <= code < QuicErrorCode.CRYPTO_ERROR + 256
            and code - QuicErrorCode.CRYPTO_ERROR in _CERT_ALERTS
        ):
            error = TLSVerificationError(self.origin, event.reason_phrase, code)
        elif code == QuicErrorCode.NO_ERROR and not event.reason_phrase:
            error = ConnectionLostError(self.origin, "closed by peer", code)
        else:
            error = ConnectionLostError(self.origin, reason, code)
        self._mark_lost(error)

    def _mark_lost(self, error: ConnectionLostError) -> None:
        self._lost = error
        log.info("h3 connection lost origin=%s reason=%s", self.origin, error.reason)
        for state in list(self._streams.values()):
            state.fail(error)
        self._streams.clear()
        self._datagram_sinks.clear()
        if not self._settings.done():
            self._settings.set_exception(error)
            self._settings.exception()
        waiter = self._connected_waiter
        if waiter is not None and not waiter.done():
            self._connected_waiter = None
            waiter.set_exception(error)
            # aioquic awaits this future through shield(): a connect that already timed
            # out leaves nobody to read it, and asyncio would log a traceback per retry.
            waiter.exception()
        for ping in self._ping_waiters.values():
            if not ping.done():
                ping.set_exception(ConnectionError())
                ping.exception()  # the same: a ping whose caller gave up
        self._ping_waiters.clear()
        self.wake_senders()

    def _shutdown(self) -> None:
        # Stop aioquic's timer and socket: after our close nothing is left to do.
        if self._held_timer is not None:
            self._held_timer.cancel()
            self._held_timer = None
        self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()
        self._closed.set()


# --------------------------------------------------------------------------- client


@dataclass(slots=True)
class _Origin:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    protocol: _H3Protocol | None = None
    ticket: SessionTicket | None = None
    connections_opened: int = 0


HeaderInput = Mapping[str, str] | Sequence[tuple[str, str]] | None


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request whose headers were checked and encoded once (:meth:`H3Client.prepare`)."""

    method: str
    url: str
    target: _Target
    headers: tuple[tuple[bytes, bytes], ...]
    field_section: bytes
    """The headers as a QPACK field section of the static table and literals only."""


_CONTENT_LENGTH_LINE: Final = b"\x54"
"""QPACK literal field line naming static entry 4, ``content-length`` (RFC 9204 4.5.4)."""


def _static_field_section(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``headers`` encoded without the QPACK dynamic table, for any number of requests.

    The connection's encoder would refer to its dynamic table once it has seen the
    same headers twice: the peer must then acknowledge each request's field section
    on its decoder stream (RFC 9204 4.4.1), a few bytes for the phone to take in per
    media request; and it would encode them again for each.  A field section with a
    Required Insert Count of 0 needs neither and is valid on any connection.
    """
    _, section = pylsqpack.Encoder().encode(0, list(headers))  # no table: none allowed
    if section[:2] != b"\x00\x00":  # pragma: no cover - the encoder was given no table
        raise AssertionError("a static QPACK field section refers to a dynamic table")
    return section


def _request_frames(section: bytes, body: bytes | None) -> bytes:
    """A request's HEADERS frame (``section`` and, with ``body``, its content-length) and
    DATA frame: the bytes :meth:`H3Connection.send_headers` and ``send_data`` would write."""
    if not body:
        return encode_frame(FrameType.HEADERS, section)
    length = b"%d" % len(body)
    section += _CONTENT_LENGTH_LINE + bytes((len(length),)) + length  # < 128: no Huffman
    return encode_frame(FrameType.HEADERS, section) + encode_frame(FrameType.DATA, body)


class H3Client:
    """HTTP/3 client: one lazily opened, automatically reopened connection per origin.

    ``ca_file`` adds a PEM file of trust anchors to the system's; verification
    itself cannot be turned off.  Use as ``async with H3Client(...) as client``.
    """

    def __init__(
        self,
        *,
        ca_file: str | Path | None = None,
        user_agent: str = "ript-phone",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        cookie_clock: Callable[[], float] = time.time,
    ) -> None:
        self._cadata = _load_ca_file(ca_file) if ca_file is not None else None
        self._system_cafile, self._system_capath = _system_trust()
        self._user_agent = user_agent
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._max_response_bytes = max_response_bytes
        self._max_send_buffer = max_send_buffer
        self._origins: dict[str, _Origin] = {}
        self.cookies = CookieJar(cookie_clock)
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every connection; open streams fail with ConnectionLostError."""
        self._closed = True
        for entry in self._origins.values():
            if entry.protocol is not None:
                entry.protocol.close_now()
                entry.protocol = None

    def forget_cookies(self, url: str) -> int:
        """Drop the cookies scoped to ``url``'s path or below (the resource is gone)."""
        target = _target(url)
        return self.cookies.forget(target.origin, target.path)

    # connections --------------------------------------------------------------

    async def connection(self, url_or_origin: str) -> _H3Protocol:
        """The live connection for an origin, opening one if needed."""
        target = _target(url_or_origin)
        return await self._connection(target)

    def connections_opened(self, url_or_origin: str) -> int:
        """How many QUIC connections this client has opened to the origin so far."""
        entry = self._origins.get(_target(url_or_origin).origin)
        return 0 if entry is None else entry.connections_opened

    def probe(self, url_or_origin: str) -> None:
        """Send a PING on the origin's connection now, if it has one (answer not awaited).

        A path that was cut sees no packet from us but QUIC's probes, whose timer doubles
        at each: after a few seconds of silence the next one can be seconds away, and a
        request sent meanwhile waits for it.  A PING acknowledged once the path is back
        makes aioquic take that request's packet for lost and send it again at once.
        """
        entry = self._origins.get(_target(url_or_origin).origin)
        proto = None if entry is None else entry.protocol
        if proto is not None and proto.accepts_requests:
            proto.probe()

    def abandon(self, url_or_origin: str, reason: str) -> None:
        """Close the origin's connection now: it is taken as dead (a provider that restarted
        answers nothing on it, and sends no reset aioquic would understand).  Its streams
        fail with :class:`ConnectionLostError`; the next request opens a new connection."""
        entry = self._origins.get(_target(url_or_origin).origin)
        if entry is not None and entry.protocol is not None:
            entry.protocol.close_now(reason)
            entry.protocol = None

    async def _connection(self, target: _Target) -> _H3Protocol:
        if self._closed:
            raise ConnectionLostError(target.origin, "client is closed")
        entry = self._origins.setdefault(target.origin, _Origin())
        proto = entry.protocol
        if proto is not None and proto.accepts_requests:
            return proto
        async with entry.lock:
            proto = entry.protocol
            if proto is not None and proto.accepts_requests:
                return proto
            entry.protocol = None
            proto = await self._connect(target, entry)
            entry.protocol = proto
            return proto

    async def _connect(self, target: _Target, entry: _Origin) -> _H3Protocol:
        loop = asyncio.get_running_loop()
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=list(H3_ALPN),
            idle_timeout=self._idle_timeout,
            max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
            server_name=target.host,
            verify_mode=ssl.CERT_REQUIRED,  # never anything else
        )
        # aioquic trusts certifi only when no CA is given, and only the given
        # ones otherwise: give it the system bundle plus the configured file.
        config.load_verify_locations(
            cafile=self._system_cafile, capath=self._system_capath, cadata=self._cadata
        )
        if entry.ticket is not None and entry.ticket.is_valid:
            config.session_ticket = entry.ticket

        def keep_ticket(ticket: SessionTicket) -> None:
            entry.ticket = ticket

        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            raise ConnectionLostError(target.origin, f"cannot resolve host: {exc}") from None
        found = infos[0][4]
        addr: NetworkAddress = found
        if len(found) == 2:
            addr = ("::ffff:" + str(found[0]), int(found[1]), 0, 0)
        quic = QuicConnection(configuration=config, session_ticket_handler=keep_ticket)
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", 0, 0, 0))
        except OSError:
            sock.close()
            raise
        _, proto = await loop.create_datagram_endpoint(
            lambda: _H3Protocol(quic, target.origin), sock=sock
        )
        entry.connections_opened += 1
        try:
            proto.connect(addr)
            async with asyncio.timeout(self._connect_timeout):
                await proto.wait_connected()
        except TimeoutError:
            proto.close_now("handshake timed out")
            raise ConnectionLostError(
                target.origin, f"no handshake within {self._connect_timeout:g} s"
            ) from None
        except ConnectionLostError:
            proto.close_now()
            raise
        except ConnectionError:
            proto.close_now()
            raise proto.lost or ConnectionLostError(target.origin, "handshake failed") from None
        except asyncio.CancelledError:
            # The caller gave up (a request timeout, a wait_for): nobody can use this
            # connection any more (it was never stored).  Close it now rather than leave
            # its handshake to QUIC's idle timeout, when aioquic would fail a waiter
            # nobody reads ("Future exception was never retrieved").
            proto.close_now("connect cancelled")
            raise
        log.info(
            "h3 connected origin=%s resumed=%s early_data=%s",
            target.origin,
            proto.resumed,
            proto.early_data_accepted,
        )
        return proto

    # requests -----------------------------------------------------------------

    def _headers(
        self, method: str, target: _Target, headers: HeaderInput, cookies: bool
    ) -> list[tuple[bytes, bytes]]:
        if not method or not method.isascii() or not method.isalpha() or not method.isupper():
            raise InvalidRequestError(f"HTTP method {method!r} must be upper-case letters")
        out = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", target.authority.encode()),
            (b":path", target.path.encode()),
            (b"user-agent", self._user_agent.encode()),
        ]
        items: Iterable[tuple[str, str]] = ()
        if headers is not None:
            items = headers.items() if isinstance(headers, Mapping) else headers
        for name, value in items:
            key = name.lower()
            if not key or key.startswith(":") or key in _FORBIDDEN_HEADERS:
                raise InvalidRequestError(f"header {name!r} may not be set by the caller")
            if any(c in value for c in "\r\n\0"):
                raise InvalidRequestError(f"header {name!r} has a line break or NUL in its value")
            if key == "user-agent":
                out[4] = (b"user-agent", value.encode("latin-1"))
                continue
            out.append((key.encode("ascii"), value.encode("latin-1")))
        if cookies:
            cookie = self.cookies.header(target.origin, target.path)
            if cookie is not None:
                out.append((b"cookie", cookie.encode("latin-1")))
        return out

    def _store_cookies(self, target: _Target, head: ResponseHead) -> None:
        for value in head.get_all("set-cookie"):
            self.cookies.store(target.origin, target.path, value)

    async def open_stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderInput = None,
        send_cookies: bool = True,
        end_stream: bool = False,
        max_send_buffer: int | None = None,
        defer: bool = False,
    ) -> H3Stream:
        """Send the request headers and return the stream; the body follows with ``send``.

        ``end_stream=True`` sends no body (a GET).  ``send_cookies=False``
        leaves the origin's cookies off; Set-Cookie headers of the response are
        stored as soon as they arrive.  ``defer=True`` (with ``end_stream``) lets
        the headers wait up to :data:`ACK_DELAY` for the next request to share its
        packet instead of leaving in one of their own: for a held GET whose answer
        is not due yet.
        """
        if defer and not end_stream:
            raise InvalidRequestError("only a request without a body can be deferred")
        target = _target(url)
        bound = self._max_send_buffer if max_send_buffer is None else max_send_buffer
        if bound <= 0:
            raise InvalidRequestError(f"max_send_buffer must be positive, not {bound}")
        hdrs = self._headers(method, target, headers, send_cookies)
        proto = await self._connection(target)
        state = proto.start_request(hdrs, end_stream, defer=defer)
        stream = H3Stream(state, url, bound)
        state.head.add_done_callback(lambda fut: self._cookies_from(target, fut))
        return stream

    def _cookies_from(self, target: _Target, fut: asyncio.Future[ResponseHead]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._store_cookies(target, fut.result())

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderInput = None,
        body: bytes | None = None,
        cookies: bool = True,
        max_response_bytes: int | None = None,
    ) -> Response:
        """Send a whole request and read the whole response (at most the size limit).

        Raises :class:`ResponseTooLargeError`, :class:`StreamResetError`,
        :class:`ConnectionLostError` or :class:`TLSVerificationError`.
        """
        limit = self._max_response_bytes if max_response_bytes is None else max_response_bytes
        hdr_list: list[tuple[str, str]] = []
        if headers is not None:
            hdr_list = list(headers.items() if isinstance(headers, Mapping) else headers)
        if body is not None:
            hdr_list.append(("content-length", str(len(body))))
        stream = await self.open_stream(
            method, url, headers=hdr_list, send_cookies=cookies, end_stream=not body
        )
        async with stream:
            if body:
                stream.end(body)
            head = await stream.response_headers()
            data = await stream.read_all(limit)
            return Response(head.status, head.headers, data)

    def prepare(
        self, method: str, url: str, *, headers: HeaderInput = None, send_cookies: bool = True
    ) -> PreparedRequest:
        """A request's headers, checked and encoded once, for :meth:`send_prepared`.

        The origin's cookies are those of now: prepare again to pick up new ones.
        """
        target = _target(url)
        encoded = tuple(self._headers(method, target, headers, send_cookies))
        return PreparedRequest(method, url, target, encoded, _static_field_section(encoded))

    def send_prepared(
        self,
        request: PreparedRequest,
        body: bytes | None,
        on_complete: Callable[[H3Stream, int, bytes, H3Error | None], None],
        *,
        defer: bool = False,
    ) -> H3Stream | None:
        """Start ``request`` (with ``body``, or none) without a task; None if not possible now.

        For the 20 ms path (media byways): no coroutine, no header checks, no
        task per request.  Only on an open connection: None tells the caller to
        use :meth:`request` (which connects).  When the response has ended (at
        most the client's size limit: past it the stream is reset at once) or
        failed, ``on_complete(stream, status, body, error)`` is called in the
        loop, once, inside the connection's event handling (what it raises is
        logged there); ``error`` is an
        :class:`H3Error` (and ``status`` 0) when it failed, including by
        :meth:`H3Stream.reset`.  ``defer`` as for :meth:`open_stream` (no body only).
        """
        if self._closed:
            return None
        entry = self._origins.get(request.target.origin)
        proto = None if entry is None else entry.protocol
        if proto is None or not proto.accepts_requests:
            return None
        # Headers, body and FIN in one write, the headers encoded once (prepare).
        frames = _request_frames(request.field_section, body)
        state = proto.start_request(frames, end_stream=True, defer=defer and not body)
        stream = H3Stream(state, request.url, self._max_send_buffer)
        limit = self._max_response_bytes
        target = request.target

        def completed() -> None:
            error = state.error
            head = state.head
            if error is None and not head.done():
                error = StreamResetError(state.stream_id, H3_REQUEST_CANCELLED)
            if error is not None:
                on_complete(stream, 0, b"", error)
                return
            result = head.result()
            chunks = state.chunks
            data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            if len(data) > limit:
                on_complete(stream, 0, b"", ResponseTooLargeError(request.url, limit))
                return
            if result.headers:
                self._store_cookies(target, result)
            on_complete(stream, result.status, data, None)

        state.on_complete = completed
        state.limit = (request.url, limit)
        return stream

    async def open_webtransport(
        self,
        url: str,
        on_datagram: Callable[[bytes], None],
        *,
        headers: HeaderInput = None,
        send_cookies: bool = True,
    ) -> WebTransportSession:
        """Send ``CONNECT`` with ``:protocol webtransport`` to ``url``; the session.

        Await :meth:`WebTransportSession.response_headers` for the answer: a 2xx
        opens it.  Check :meth:`peer_settings` first: a server that does not
        announce WebTransport may close the connection over such a request.
        """
        target = _target(url)
        hdrs = self._headers("CONNECT", target, headers, send_cookies)
        hdrs.insert(1, (b":protocol", b"webtransport"))  # pseudo-headers come first
        proto = await self._connection(target)
        state = proto.start_webtransport(hdrs, on_datagram)
        state.head.add_done_callback(lambda fut: self._cookies_from(target, fut))
        return WebTransportSession(state, url)

    async def ping(self, url_or_origin: str) -> None:
        """Send a QUIC PING on the origin's connection and wait for its acknowledgement."""
        proto = await self.connection(url_or_origin)
        await proto.ping_peer()

    async def peer_settings(self, url_or_origin: str) -> PeerSettings:
        """The origin's HTTP/3 SETTINGS (WebTransport, H3 datagrams, extended CONNECT)."""
        proto = await self.connection(url_or_origin)
        return await proto.settings()


def _system_trust() -> tuple[str | None, str | None]:
    paths = ssl.get_default_verify_paths()
    cafile = paths.cafile if paths.cafile and Path(paths.cafile).is_file() else None
    capath = paths.capath if paths.capath and Path(paths.capath).is_dir() else None
    if cafile is None and capath is None:
        cafile = certifi.where()  # aioquic's own default; it depends on certifi
    return cafile, capath


def _load_ca_file(path: str | Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrustConfigError(f"CA file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion is no ValueError
        certs = []
    if not certs:
        raise TrustConfigError(f"CA file {str(path)!r} holds no PEM certificate")
    return data


__all__ = [
    "ConnectionLostError",
    "CookieJar",
    "GoawayError",
    "H3Client",
    "H3Error",
    "H3Stream",
    "InvalidRequestError",
    "PeerSettings",
    "Response",
    "ResponseHead",
    "ResponseTooLargeError",
    "StreamResetError",
    "TLSVerificationError",
    "TrustConfigError",
    "WebTransportSession",
    "parse_url",
]
