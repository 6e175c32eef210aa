"""The reference provider's HTTP/3 server: RIPT requests mapped onto :class:`ProviderCore`.

One aioquic server on one asyncio loop.  Each request becomes a task that
authenticates the bearer token, routes the path, calls one core method and
writes the answer; :class:`~riptprovider.core.RiptHttpError` becomes its
status with the one-sentence message as a ``text/plain`` body.  The core's
timers are driven by one task sleeping until ``core.next_deadline()`` and
woken after every request (any request may move a deadline).

Signalling byways (``docs/protocol.md`` section 6):

* ``GET {call}/events`` answers ``200`` and ``[`` at once, then every event of
  the core subscription as it happens, and closes the array when the call
  ends.  A client reset or a lost connection unsubscribes.
* ``PUT {call}/events`` answers ``200`` as soon as the request headers arrive
  (the phone starts media only after them), then parses the request body as
  it arrives and hands each event to ``core.client_event``; replies (pongs)
  go out on the call's reverse byways held by this server.

The login (profile section 2) is :mod:`riptprovider.login_web` over the core's
:class:`~riptprovider.oauth.Issuer`, answered here without a bearer token and
also over HTTPS/1.1 on TCP at the same host and port (:mod:`riptprovider.https`),
which is how phones and browsers reach it.  RIPT resources accept static
tokens and issued access tokens; a presented token that is unknown, expired or
revoked answers ``401`` with ``WWW-Authenticate: Bearer error="invalid_token"``.

The TLS certificate and the CA that vouches for it and for the phones' STIR
certificates are :mod:`riptprovider.tls`.

Claims (``POST {call}``) set the ``ript-leg`` cookie (path: the call's) that
names the claiming handler's leg; a media request carrying the cookie of a
handler that has since lost the call (pull, push, 3PCC move) is refused with
``409``, and the media GETs held when the handler changes are answered ``409``
too, so the old device's lingering requests never swallow the new one's media.
A media request without the current leg's cookie must come from the device of
the call's current handler (``403`` otherwise): another device of the account
must claim the call before it gets its media.

Media (section 7): ``PUT {call}/media`` is answered with the acks of its
chunks; the far end's media (echo of the phone's chunks, or a generated tone
or silence per ``account.far_end(to)``) goes out as HTTP/3 datagrams on the
most recent WebTransport session of the call's handler when one is open, else
answers the most recent held ``GET {call}/media``, else raises
``media-panic``.  WebTransport (``[server] webtransport``, default on): an
extended CONNECT on ``{call}/media`` passes the same checks as the byways,
is answered ``200`` and held open; each datagram on it is a body of chunks,
and the provider's acks ride on its own datagrams (alone after
``ACK_HOLD``).  A session is forgotten when its stream ends or resets, its
connection goes, its call ends or changes handler, or a fifth one of the
same call opens (:data:`MAX_SESSIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, ErrorCode, H3Connection, ProtocolError
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived
from aioquic.h3.exceptions import H3Error
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from ript.backoff import BackoffPolicy
from ript.media import codecs
from ript.media.codecs import FRAME_MS
from ript.media.dtmf import DTMFError, DTMFReceiver
from ript.media.tones import ToneGenerator, ToneSpec
from ript.protocol.advertisement import GrammarError, parse_directive
from ript.protocol.chunks import (
    DATAGRAM_LIMIT,
    MEDIA_BODY_LIMIT,
    MediaChunk,
    PayloadType,
    frame,
    pack_datagrams,
)
from ript.protocol.csr import CHAIN_CONTENT_TYPE
from ript.protocol.descriptions import MediaKey
from ript.protocol.events import (
    Answered,
    CallStatus,
    Direction,
    End,
    Event,
    MediaPanic,
    format_timestamp,
)
from ript.protocol.jsonstream import (
    EventStreamError,
    EventStreamReader,
    EventStreamWriter,
    InvalidEvent,
)
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ACK_HOLD, ChunkReceiver, ChunkSender
from ript.protocol.passport import (
    PassportError,
    decode_passport_unverified,
    verify_passport,
)
from riptprovider.accounts import Account, FarEnd, MediaMode
from riptprovider.core import MAX_HANDLERS_PER_ACCOUNT, ProviderCore, RiptHttpError
from riptprovider.far_end_audio import file_frames
from riptprovider.https import HttpsListener, tls_context
from riptprovider.login_web import LoginWeb, WebReply, WebRequest, is_login_path
from riptprovider.oauth import IssuerSettings
from riptprovider.quic_acks import ack_now, delay_acks
from riptprovider.quic_limits import BoundedQuicServer, QuicLimits
from riptprovider.tls import ProviderCa, load_or_create_ca

log = logging.getLogger(__name__)

ROOT = "/.well-known/ript/v1"
MAX_JSON_BODY = 65536
"""Bytes of a JSON (or CSR) request body; larger answers 413 (profile section 1)."""
MAX_BUFFERED_BODY = 2 * 65536
"""Request body bytes held unread per request; past it the client gets STOP_SENDING."""
JSON = "application/json"
MEDIA = "application/octet-stream"
_GONE = (H3Error, ProtocolError, AssertionError)
"""What aioquic raises when writing to a stream the peer reset or that already ended."""
CHECK_EVERY = 50
"""Generated frames between checks that the call still exists (once a second)."""
PANIC_EVERY = 1.0
"""Seconds between two media-panic events of one call."""
TONE_DBOV = -16.0
_GENERATED = frozenset({MediaMode.TONE, MediaMode.FILE, MediaMode.SILENCE})
_ECHOES = frozenset({MediaMode.ECHO, MediaMode.ECHO_IN_ORDER})
_ECHO_SEQ_LIMIT = 1 << 63
"""The in-order echo's numbers stay below this: reservations are kept in SQLite (signed
64-bit), and the phone, which chooses the number echoed, could otherwise exceed it."""
LEG_COOKIE = "ript-leg"
"""Cookie naming the handler leg a media request belongs to (set by ``POST {call}``)."""
MAX_SESSIONS = 4
"""WebTransport sessions held per call; a newer one ends the oldest (a phone re-opens one
per re-establishment, and the old one's stream may not have ended yet)."""
NUMBERS_RESERVED = 500
"""Chunk sequence numbers reserved in the file at a time (10 s of media, or of acks)."""
MAX_DATAGRAM_FRAME = 65536
"""QUIC ``max_datagram_frame_size`` announced (needed for H3_DATAGRAM; we send <= 1000)."""
PUSH_LIVE_WAIT = 3.0
"""Seconds a registration's answer waits for the broker to take the new MQTT user."""
_IDLE_WAKE = 3600.0
"""Seconds the timer task sleeps when the core has no deadline (a request wakes it)."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where and how to run: ``port`` 0 picks a free one; ``origin`` defaults to localhost."""

    state_dir: Path
    accounts: Mapping[str, Account]
    host: str = "127.0.0.1"
    port: int = 0
    origin: str | None = None
    """``https://host[:port]`` used in every URI; None: ``https://localhost:{port}``."""
    clock: Callable[[], float] = time.time
    """Wall clock: timestamps on the wire and in the database, token and code expiry."""
    monotonic: Callable[[], float] = time.monotonic
    """Clock of deadlines (ring timeout, idle timer, far end): a wall-clock step moves none."""
    oauth: IssuerSettings = field(default_factory=IssuerSettings)
    """The ``[oauth]`` section: clients, lifetimes, polling interval."""
    webtransport: bool = True
    """Announce WebTransport in SETTINGS and accept sessions; False: media byways only."""
    max_handlers_per_account: int = MAX_HANDLERS_PER_ACCOUNT
    quic_limits: QuicLimits = field(default_factory=QuicLimits)
    """Concurrent QUIC connections, Retry under load (``[server] max_connections``...)."""


BIND_TRIES = 20
"""With port 0: tries to find a number free on both UDP and TCP."""


class _BodyTooLargeError(Exception):
    pass


class _InvalidTokenError(RiptHttpError):
    """401 for a bearer token that was presented but is unknown, expired or revoked."""


@dataclass(slots=True)
class _Request:
    stream_id: int
    method: str
    path: str
    headers: dict[str, str]
    chunks: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    """Request body pieces as they arrive; None once the body ended (or was reset)."""
    buffered: int = 0
    """Body bytes received and not yet taken by the handler (bounded: MAX_BUFFERED_BODY)."""
    refused: bool = False
    device: str | None = None
    """The device the bearer token speaks for (``core.Caller.device``), once authenticated."""

    async def take(self) -> bytes | None:
        """The next body piece, or None at its end."""
        chunk = await self.chunks.get()
        if chunk is not None:
            self.buffered -= len(chunk)
        return chunk

    async def body(self, limit: int = MAX_JSON_BODY) -> bytes:
        data = bytearray()
        while (chunk := await self.take()) is not None:
            data += chunk
            if len(data) > limit:
                raise _BodyTooLargeError
        return bytes(data)


class _Connection(QuicConnectionProtocol):
    """One QUIC connection: H3 events in, one task per request stream."""

    def __init__(self, quic: QuicConnection, server: RunningServer, **kw: Any) -> None:
        super().__init__(quic, **kw)
        self.server = server
        self.h3 = H3Connection(quic, enable_webtransport=server.config.webtransport)
        self.requests: dict[int, _Request] = {}
        self.sessions: dict[int, _WtSession] = {}
        """Open WebTransport sessions by CONNECT stream id (datagrams name their session)."""
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self._wrote = False  # response data queued since the last transmit
        server._connections.add(self)

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        # aioquic's own version transmits at once; here the transmit waits for the
        # end of this loop iteration, so the answers the woken tasks write (a PUT's
        # reply, the echo on a held GET) leave together, with the ACK, in one packet.
        self._quic.receive_datagram(cast(bytes, data), addr, now=self._loop.time())
        self._process_events()
        self._transmit_soon()

    def transmit(self) -> None:
        if self._wrote:
            self._wrote = False
            ack_now(self._quic, self._loop.time())
        super().transmit()

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        # H3Connection swallows resets and STOP_SENDING: look at them first.
        if isinstance(event, qe.StreamReset | qe.StopSendingReceived):
            self._stream_gone(event.stream_id)
        elif isinstance(event, qe.ConnectionTerminated):
            for stream_id in list(self.tasks):
                self._stream_gone(stream_id)
            self.server._connections.discard(self)
        elif isinstance(event, qe.HandshakeCompleted):
            delay_acks(self._quic)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _stream_gone(self, stream_id: int) -> None:
        request = self.requests.pop(stream_id, None)
        if request is not None:
            request.chunks.put_nowait(None)
        task = self.tasks.get(stream_id)
        if task is not None and request is not None and request.method == "GET":
            task.cancel()  # a held reverse byway: nobody reads it any more

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
            request = _Request(
                event.stream_id,
                headers.get(":method", ""),
                urlsplit(headers.get(":path", "/")).path,
                headers,
            )
            if event.stream_ended:
                request.chunks.put_nowait(None)
            self.requests[event.stream_id] = request
            task = asyncio.get_running_loop().create_task(self._run(request))
            self.tasks[event.stream_id] = task
            task.add_done_callback(self._forget)
        elif isinstance(event, DataReceived):
            pending = self.requests.get(event.stream_id)
            if pending is not None and not pending.refused:
                if event.data:
                    pending.buffered += len(event.data)
                    if pending.buffered > MAX_BUFFERED_BODY:
                        self._refuse_body(pending)
                        return
                    pending.chunks.put_nowait(event.data)
                if event.stream_ended:
                    pending.chunks.put_nowait(None)
        elif isinstance(event, DatagramReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                try:
                    self.server._media_datagram(session, event.data)
                except Exception:
                    # Nothing else catches here (a request's errors become a 500): one
                    # datagram's fault must not abort the rest of this packet's events.
                    self.server.datagram_errors += 1
                    if self.server.datagram_errors % 1000 == 1:
                        log.exception(
                            "a media datagram failed (%d so far)", self.server.datagram_errors
                        )
            # else: a datagram of no open session (one just ended): dropped, like a lost one

    def send_datagrams(self, stream_id: int, datagrams: list[bytes]) -> None:
        """HTTP/3 datagrams on a WebTransport session; one transmit this loop turn for all."""
        for datagram in datagrams:
            self.h3.send_datagram(stream_id, datagram)
        self._wrote = True
        self._transmit_soon()

    def _refuse_body(self, request: _Request) -> None:
        """A body nobody reads (a held GET's) or faster than it is read: stop the sender.

        Without this a client could fill the provider's memory through one request.
        """
        request.refused = True
        request.chunks.put_nowait(None)
        log.info(
            "refused a request body over %d unread bytes on %s %s",
            MAX_BUFFERED_BODY,
            request.method,
            request.path,
        )
        with contextlib.suppress(Exception):  # the stream may already be half closed
            self._quic.stop_stream(request.stream_id, ErrorCode.H3_EXCESSIVE_LOAD)
            self._transmit_soon()

    def _forget(self, task: asyncio.Task[None]) -> None:
        for stream_id, known in list(self.tasks.items()):
            if known is task:
                del self.tasks[stream_id]

    # ------------------------------------------------------------------ writing

    def send_headers(self, stream_id: int, status: int, headers: list[tuple[str, str]]) -> None:
        pairs = [(b":status", str(status).encode())]
        pairs += [(k.encode(), v.encode()) for k, v in headers]
        self.h3.send_headers(stream_id, pairs)
        self._wrote = True
        self._transmit_soon()  # one packet per loop iteration for all that was written

    def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        self.h3.send_data(stream_id, data, end_stream=end)
        self._wrote = True
        self._transmit_soon()

    def respond(
        self,
        stream_id: int,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        extra = list(headers or [])
        if content_type is not None:
            extra.append(("content-type", content_type))
        self.send_headers(stream_id, status, extra)
        self.send_data(stream_id, body, end=True)

    async def _run(self, request: _Request) -> None:
        sid = request.stream_id
        try:
            await self.server._handle(self, request)
        except RiptHttpError as exc:
            self._fail(sid, exc.status, exc.message, isinstance(exc, _InvalidTokenError))
        except _BodyTooLargeError:
            self._fail(sid, 413, f"the request body exceeds {MAX_JSON_BODY} bytes")
        except asyncio.CancelledError:
            pass
        except _GONE:
            pass  # the stream or connection went away while we answered
        except Exception:
            log.exception("internal error answering %s %s", request.method, request.path)
            self._fail(sid, 500, "internal error")
        finally:
            self.requests.pop(sid, None)
            self.server._wake.set()

    def _fail(self, stream_id: int, status: int, message: str, invalid: bool = False) -> None:
        # RFC 6750 section 3: the error code only when a token was presented.
        challenge = 'Bearer error="invalid_token"' if invalid else "Bearer"
        headers = [("www-authenticate", challenge)] if status == 401 else []
        # Headers already sent or the stream gone: there is nothing more to say.
        with contextlib.suppress(*_GONE):
            self.respond(stream_id, status, (message + "\n").encode(), "text/plain", headers)


class RunningServer:
    """A started provider: :attr:`port`, :attr:`origin`, :attr:`core`, :attr:`ca`; :meth:`close`."""

    def __init__(self, config: ServerConfig, ca: ProviderCa) -> None:
        self.config = config
        self.ca = ca
        self.port = 0
        self.origin = ""
        self.core: ProviderCore | None = None
        self._endpoint: BoundedQuicServer | None = None
        self._authenticated: weakref.WeakSet[_Connection] = weakref.WeakSet()
        """Connections that made a request with a valid token: never closed for room."""
        self._https: HttpsListener | None = None
        self.login: LoginWeb | None = None
        self._connections: set[_Connection] = set()
        self._reverse: dict[str, set[asyncio.Queue[Event]]] = {}
        self._media: dict[str, _Media] = {}
        self.sessions_opened = 0
        self.datagram_errors = 0
        """WebTransport sessions accepted since the start (tests and logs)."""
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Re-read the core's next deadline soon; callable from any thread.

        Whoever changes the core outside an HTTP request (the admin socket, the
        MQTT thread) calls this, else the timer task may sleep through the
        new deadline (an injected call's ring timeout, say).
        """
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def quic(self) -> BoundedQuicServer | None:
        """The QUIC listener: its connection count and what its limits did."""
        return self._endpoint

    @property
    def _core(self) -> ProviderCore:
        assert self.core is not None
        return self.core

    async def _start(self) -> None:
        config = self.config
        quic = QuicConfiguration(
            is_client=False,
            alpn_protocols=list(H3_ALPN),
            # H3_DATAGRAM (announced with WebTransport) needs the transport parameter.
            max_datagram_frame_size=MAX_DATAGRAM_FRAME if config.webtransport else None,
        )
        quic.load_cert_chain(self.ca.server_cert_file, self.ca.server_key_file)
        loop = asyncio.get_running_loop()
        self._loop = loop
        factory: Callable[..., _Connection] = lambda quic, **kw: _Connection(  # noqa: E731
            quic, self, **kw
        )
        tls = tls_context(self.ca.server_cert_file, self.ca.server_key_file)
        for attempt in range(BIND_TRIES):
            _, endpoint = await loop.create_datagram_endpoint(
                lambda: BoundedQuicServer(
                    configuration=quic,
                    create_protocol=factory,
                    limits=config.quic_limits,
                    trusted=self._authenticated.__contains__,
                ),
                local_addr=(config.host, config.port),
            )
            self._endpoint = endpoint
            assert endpoint._transport is not None
            self.port = int(endpoint._transport.get_extra_info("sockname")[1])
            https = HttpsListener(self._answer_https)
            try:
                # The same port number on TCP: the phone's OAuth client and browsers.
                await https.start(config.host, self.port, tls)
            except OSError:
                endpoint.close()
                self._endpoint = None
                if config.port != 0 or attempt == BIND_TRIES - 1:
                    raise
                continue  # the free UDP port is taken on TCP: pick another
            self._https = https
            break
        self.origin = (config.origin or f"https://localhost:{self.port}").rstrip("/")
        db_path = config.state_dir / "provider.sqlite3"
        self.core = ProviderCore(
            str(db_path),
            config.accounts,
            self.origin,
            config.clock,
            config.oauth,
            max_handlers_per_account=config.max_handlers_per_account,
            monotonic=config.monotonic,
        )
        self.login = LoginWeb(self.core.issuer)

        # However a call ends (a byway's end, the idle timer, the admin), its media state
        # goes; the core may be called from the admin thread, so hop into the loop.
        def call_ended(uri: str) -> None:
            loop.call_soon_threadsafe(self._end_media, uri)

        self.core.call_ended = call_ended

        # A migrate to a new URI (admin, any thread): the media state goes with the call.
        def call_renamed(old: str, new: str) -> None:
            loop.call_soon_threadsafe(self._rename_media, old, new)

        self.core.call_renamed = call_renamed
        self._timer = loop.create_task(self._run_timer())

    async def _answer_https(self, request: WebRequest) -> WebReply:
        """HTTPS/1.1 serves the login only; RIPT resources are HTTP/3 (profile section 1)."""
        reply = None if self.login is None else await self.login.answer(request)
        if reply is None:
            message = f"there is no resource at {request.path} over HTTP/1.1 (RIPT is HTTP/3)\n"
            reply = WebReply(404, message.encode(), "text/plain; charset=utf-8")
        return reply

    async def close(self) -> None:
        """Stop listening, drop every connection and close the core's database."""
        if self._timer is not None:
            self._timer.cancel()
        for call_uri in list(self._media):
            self._end_media(call_uri)
        for connection in list(self._connections):
            for task in list(connection.tasks.values()):
                task.cancel()
            connection.close()
        if self._endpoint is not None:
            self._endpoint.close()
        if self._https is not None:
            await self._https.close()
        await asyncio.sleep(0)
        if self.core is not None:
            self.core.close()

    async def _run_timer(self) -> None:
        await run_deadlines(self._core, self.config.monotonic, self._wake)

    # ------------------------------------------------------------------ routing

    async def _handle(self, conn: _Connection, request: _Request) -> None:
        method, path, sid = request.method, request.path, request.stream_id
        if is_login_path(path) and self.login is not None:
            query = urlsplit(request.headers.get(":path", "")).query
            web = WebRequest(method, path, query, request.headers, await request.body())
            reply = await self.login.answer(web)
            if reply is not None:
                return conn.respond(
                    sid, reply.status, reply.body, reply.content_type, list(reply.headers)
                )
        tg_prefix = "/tgs/"
        if method == "GET" and path.startswith(tg_prefix) and "/certs/" in path:
            # Certificates are public data: any verifier may dereference x5u.
            return self._get_cert(conn, sid, path)
        account = self._authenticate(request)
        self._authenticated.add(conn)
        core = self._core
        uri = self.origin + path
        if path == f"{ROOT}/providertgs":
            self._allow(method, "GET")
            return conn.respond(sid, 200, core.provider_tgs(account).to_bytes(), JSON)
        tg_path = f"/tgs/{account.id}"
        if path == tg_path:
            self._allow(method, "GET")
            return conn.respond(sid, 200, core.trunk_group(account).to_bytes(), JSON)
        if path == f"{tg_path}/handlers":
            self._allow(method, "POST")
            described = core.register_handler(account, await request.body(), request.device)
            # One line per accepted POST: how a test or an operator counts registrations
            # (a phone that re-registers on every boot, or leaves ghosts, shows here).
            log.info("event=handler_registered account=%s handler=%s", account.id, described.uri)
            await self._push_live()
            location = described.uri or ""
            return conn.respond(sid, 201, described.to_bytes(), JSON, [("location", location)])
        if path.startswith(f"{tg_path}/handlers/") and path.count("/") == 4:
            return await self._handler(conn, request, account, uri)
        if path == f"{tg_path}/certs":
            self._allow(method, "POST")
            serial, chain = self.ca.issue(account.id, account.numbers, await request.body())
            location = f"{self.origin}{tg_path}/certs/{serial}"
            return conn.respond(sid, 201, chain, CHAIN_CONTENT_TYPE, [("location", location)])
        if path == f"{tg_path}/calls":
            self._allow(method, "GET", "POST")
            if method == "GET":
                return conn.respond(sid, 200, core.list_calls(account).to_bytes(), JSON)
            body = await request.body()
            call = core.place_call(account, body, self._passport_check(account), request.device)
            headers = [("location", call.uri), *self._leg_cookie(call.uri)]
            return conn.respond(sid, 201, call.to_bytes(), JSON, headers)
        if path.startswith("/calls/"):
            parts = path.split("/")
            if len(parts) == 3:
                return await self._call(conn, request, account, uri)
            if len(parts) == 4 and parts[3] == "media":
                call_uri = uri.rsplit("/", 1)[0]
                self._allow(method, "GET", "PUT", "CONNECT")
                if method == "CONNECT":
                    self._check_webtransport(request)
                core.check_media_leg(
                    account, call_uri, _cookie(request, LEG_COOKIE), request.device
                )
                if method == "CONNECT":
                    return await self._media_session(conn, request, account, call_uri)
                if method == "GET":
                    return await self._media_get(conn, sid, account, call_uri)
                return await self._media_put(conn, request, account, call_uri)
            if len(parts) == 4 and parts[3] == "events":
                call_uri = uri.rsplit("/", 1)[0]
                self._allow(method, "GET", "PUT")
                if method == "GET":
                    return await self._reverse_byway(conn, sid, account, call_uri)
                return await self._forward_byway(conn, request, account, call_uri)
        raise RiptHttpError(404, f"there is no resource at {path}")

    async def _push_live(self) -> None:
        """Wait (without blocking the loop) until a new handler's MQTT user works at the broker.

        The answer then carries credentials the phone can log in with at once.  Past
        PUSH_LIVE_WAIT it goes anyway: the phone retries its MQTT login with back-off.
        """
        settled = self._core.push_settled
        if settled is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(settled()), PUSH_LIVE_WAIT)
        except TimeoutError:
            log.warning("push: the broker has not taken the new handler yet; answering anyway")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise RiptHttpError(
                405, f"{method} is not allowed here (allowed: {', '.join(allowed)})"
            )

    def _check_webtransport(self, request: _Request) -> None:
        """An extended CONNECT must ask for WebTransport, and this provider must offer it."""
        protocol = request.headers.get(":protocol")
        if protocol != "webtransport":
            raise RiptHttpError(
                400, f"CONNECT on a media resource needs :protocol webtransport, not {protocol!r}"
            )
        if not self.config.webtransport:
            raise RiptHttpError(
                501, "WebTransport is turned off on this provider: use the media byways"
            )

    def _authenticate(self, request: _Request) -> Account:
        value = request.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RiptHttpError(401, "a valid bearer token is required")
        caller = self._core.caller(token.strip())
        if caller is None:
            # Never echo the token: it is a secret.
            raise _InvalidTokenError(401, "the bearer token is unknown, expired or revoked")
        request.device = caller.device
        return caller.account

    async def _handler(
        self, conn: _Connection, request: _Request, account: Account, uri: str
    ) -> None:
        core, sid, method = self._core, request.stream_id, request.method
        self._allow(method, "GET", "PUT", "DELETE")
        device = request.device
        if method == "GET":
            conn.respond(sid, 200, core.get_handler(account, uri, device).to_bytes(), JSON)
        elif method == "PUT":
            body = await request.body()
            described = core.update_handler(account, uri, body, device)
            await self._push_live()
            conn.respond(sid, 200, described.to_bytes(), JSON)
        else:
            core.delete_handler(account, uri, device)
            conn.respond(sid, 204)

    async def _call(self, conn: _Connection, request: _Request, account: Account, uri: str) -> None:
        core, sid, method = self._core, request.stream_id, request.method
        if method == "GET":
            conn.respond(sid, 200, core.get_call(account, uri).to_bytes(), JSON)
        elif method == "POST":
            body = await request.body()
            call = core.claim_call(account, uri, body, request.device)
            if uri in self._media:
                self._media_state(account, uri)  # a new handler: new key, old GETs refused
            conn.respond(sid, 200, call.to_bytes(), JSON, self._leg_cookie(uri))
        else:
            conn.respond(
                sid,
                405,
                b"a call is ended with the end event\n",
                "text/plain",
                [("allow", "GET, POST")],
            )

    def _leg_kind(self, request: _Request, call_uri: str) -> str:
        """For log lines: the request's ``ript-leg`` cookie is ``none``, ``current`` or
        ``other`` (a retired or unknown leg); never its value."""
        leg = _cookie(request, LEG_COOKIE)
        if leg is None:
            return "none"
        return "current" if leg == self._core.leg_token(call_uri) else "other"

    def _leg_cookie(self, call_uri: str, device: str | None = None) -> list[tuple[str, str]]:
        """``Set-Cookie`` naming the call's current handler leg (none when the core has none).

        With ``device`` (a ``PUT {call}/events``): only when that device owns the handler.
        """
        core = self._core
        leg = core.leg_token(call_uri) if device is None else core.leg_for(call_uri, device)
        if leg is None:
            return []
        path = urlsplit(call_uri).path
        return [("set-cookie", f"{LEG_COOKIE}={leg}; Path={path}; Secure; HttpOnly")]

    # ------------------------------------------------------------------ certificates

    def _get_cert(self, conn: _Connection, sid: int, path: str) -> None:
        parts = path.split("/")  # "", "tgs", account, "certs", serial
        chain = self.ca.chain(parts[2], parts[4]) if len(parts) == 5 else None
        if chain is None:
            raise RiptHttpError(404, f"there is no certificate at {path}")
        conn.respond(sid, 200, chain, CHAIN_CONTENT_TYPE)

    def _passport_check(self, account: Account) -> Callable[[str, str], str | None]:
        def check(token: str, destination: str) -> str | None:
            try:
                x5u = decode_passport_unverified(token).x5u
            except PassportError as exc:
                return str(exc)
            # Only certificates this provider issued to this account: never fetch x5u.
            prefix = f"{self.origin}/tgs/{account.id}/certs/"
            chain = None
            if x5u.startswith(prefix):
                chain = self.ca.chain(account.id, x5u[len(prefix) :])
            if chain is None:
                return f"x5u {x5u} is not a certificate this provider issued to this account"
            try:
                verify_passport(
                    token,
                    chain,
                    now=int(self.config.clock()),
                    expected_dest=destination,
                    trusted_ca_pem=self.ca.ca_pem,
                )
            except PassportError as exc:
                return str(exc)
            return None

        return check

    # ------------------------------------------------------------------ signalling byways

    async def _reverse_byway(
        self, conn: _Connection, sid: int, account: Account, call_uri: str
    ) -> None:
        core = self._core
        queue: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def post(event: Event) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        subscription = core.subscribe(account, call_uri, post)
        byways = self._reverse.setdefault(call_uri, set())
        byways.add(queue)
        try:
            writer = EventStreamWriter()
            conn.send_headers(sid, 200, [("content-type", JSON)])
            conn.send_data(sid, writer.open())
            while True:
                event = await queue.get()
                if isinstance(event, Answered):
                    # Start the far end's generated media even before any media request.
                    with contextlib.suppress(RiptHttpError):
                        self._media_state(account, call_uri)
                if isinstance(event, End):
                    self._end_media(call_uri)
                    conn.send_data(sid, writer.encode(event) + writer.close(), end=True)
                    return
                conn.send_data(sid, writer.encode(event))
        finally:
            core.unsubscribe(subscription)
            byways.discard(queue)
            if not byways and self._reverse.get(call_uri) is byways:
                del self._reverse[call_uri]

    async def _forward_byway(
        self, conn: _Connection, request: _Request, account: Account, call_uri: str
    ) -> None:
        core, sid = self._core, request.stream_id
        core.get_call(account, call_uri)  # 404 before the 200 for a call that is gone
        # The PUT of a re-establishment comes without cookies: the leg's cookie comes back.
        cookie = self._leg_cookie(call_uri, request.device)
        # One line per byway (not per event): how a test or an operator sees a phone
        # re-establish as protocol.md 9.1 asks (no cookie here, media after, with it).
        log.info(
            "event=forward_byway call=%s leg_cookie=%s set_cookie=%s",
            call_uri,
            self._leg_kind(request, call_uri),
            "yes" if cookie else "no",
        )
        conn.send_headers(sid, 200, [("content-type", JSON), *cookie])
        reader = EventStreamReader()
        try:
            while (chunk := await request.take()) is not None:
                for event in reader.feed(chunk):
                    if isinstance(event, InvalidEvent):
                        log.info("skipped an invalid event on %s/events", call_uri)
                        continue
                    result = core.client_event(account, call_uri, event)
                    if result.problem is not None:
                        log.info(
                            "refused a %s event on %s: %s", event.type, call_uri, result.problem
                        )
                    for reply in result.replies:
                        self._publish(call_uri, reply)
                    self._wake.set()
            reader.eof()
        except EventStreamError as exc:
            log.info("broken forward byway of %s: %s", call_uri, exc)
        except RiptHttpError as exc:
            log.info("forward byway of %s closed: %s", call_uri, exc.message)
        conn.send_data(sid, b"", end=True)

    def _publish(self, call_uri: str, event: Event) -> None:
        """Write ``event`` on every reverse byway of the call this server holds."""
        for queue in self._reverse.get(call_uri, ()):
            queue.put_nowait(event)

    # ------------------------------------------------------------------ media byways

    def _rename_media(self, old: str, new: str) -> None:
        """The call moved to ``new``: its numbering, receive state and sessions go along."""
        media = self._media.pop(old, None)
        if media is not None:
            media.uri = new
            self._media[new] = media

    def _end_media(self, call_uri: str) -> None:
        media = self._media.pop(call_uri, None)
        if media is not None:
            _log_media(call_uri, media)
            if media.generator is not None:
                media.generator.cancel()
            media.end_sessions()
            for held in media.waiting:
                if not held.done():
                    held.future.set_exception(RiptHttpError(404, f"the call {call_uri} is over"))

    def _media_state(self, account: Account, call_uri: str) -> _Media:
        """The call's media state, re-keyed when the call's media key changed (new handler)."""
        # A 404 raises here.  The media state itself goes with call_ended, not here: a
        # request on a URI just renamed away would otherwise end the media moving along.
        call = self._core.get_call(account, call_uri)
        media = self._media.get(call_uri)
        if media is None or media.key != call.media_key:
            keys = None
            if call.media_key is not None:
                k = call.media_key
                keys = MediaKeys.from_material(k.key, k.salt, k.tag_length)
            if media is not None:
                # The key changes only with the handler: what is held belongs to the old one.
                _log_media(call_uri, media)
                if media.generator is not None:
                    media.generator.cancel()
                media.end_sessions()
                refusal = RiptHttpError(409, f"call {call_uri} is now handled by {call.handler}")
                for held in media.waiting:
                    if not held.done():
                        held.future.set_exception(refusal)
            media = _Media(call_uri, call.media_key, keys, [])
            if call.media_key is not None:
                self._resume_numbering(media, call.media_key)
            self._media[call_uri] = media
        far_end = account.far_end(call.to)
        answered = call.state is CallStatus.ANSWERED
        media.echo = answered and far_end.media in _ECHOES
        media.in_order = far_end.media is MediaMode.ECHO_IN_ORDER
        if answered and media.generator is None and far_end.media in _GENERATED:
            plan = _plan(call.server_directives, far_end)
            if plan is not None:
                media.generator = asyncio.get_running_loop().create_task(
                    self._generate(account, media, plan)
                )
        return media

    def _resume_numbering(self, media: _Media, key: MediaKey) -> None:
        """Number the call's chunks from the last reservation in the file on (0 for a new key).

        A restarted provider so never repeats a nonce under the call's key, and the
        phone, whose receive state lives on, takes the higher numbers (the ones skipped
        count as lost there).  Reservations are :data:`NUMBERS_RESERVED` at a time: one
        SQLite write per 10 s of a call.
        """
        core = self._core

        def reserve(number: int) -> int:
            ceiling = number + NUMBERS_RESERVED
            core.reserve_s2c(key, ceiling)
            return ceiling

        media.sender.resume_numbering(core.s2c_numbering(key), reserve)

    async def _media_put(
        self, conn: _Connection, request: _Request, account: Account, call_uri: str
    ) -> None:
        body = await request.body()
        media = self._media_state(account, call_uri)
        now = time.monotonic()
        result = media.receiver.receive(body, now)
        for ack in result.acks:
            media.sender.on_ack(ack, now)
        for chunk in result.media:
            if chunk.payload_type == PayloadType.TELEPHONE_EVENT:
                self._note_dtmf(media, call_uri, chunk.timestamp, chunk.payload)
        if media.echo:
            # The echo first: the held GET's task answers in the next loop iteration,
            # before the transmit the reply below schedules, so both share one packet.
            self._echo(media, call_uri, result.media, now)
        acks = media.sender.acks(media.receiver.take_pending_acks(now))
        conn.respond(request.stream_id, 200, frame(acks), MEDIA)
        if result.acks:
            self._resend(media, now)

    def _note_dtmf(self, media: _Media, call_uri: str, timestamp: int, payload: bytes) -> None:
        """A key pressed on the phone (RFC 4733): logged once per press, and kept on the call."""
        try:
            digit = media.dtmf.receive(timestamp, payload)
        except DTMFError as exc:
            log.info("event=dtmf_malformed call=%s reason=%r", call_uri, str(exc))
            return
        if digit is not None:
            media.digits.append(digit)
            # Not the digit itself at INFO: keys in a call are often PINs for an IVR.
            log.info("event=dtmf call=%s", call_uri)
            log.debug("event=dtmf call=%s digit=%s", call_uri, digit)

    async def _media_session(
        self, conn: _Connection, request: _Request, account: Account, call_uri: str
    ) -> None:
        """A WebTransport session on ``{call}/media``: answered 200, held until it ends."""
        media = self._media_state(account, call_uri)  # 404 when the call is over
        sid = request.stream_id
        session = _WtSession(conn, request, media)
        conn.send_headers(sid, 200, [])
        conn.sessions[sid] = session
        media.add_session(session)
        self.sessions_opened += 1
        log.info(
            "webtransport session open call=%s stream=%d leg_cookie=%s",
            call_uri,
            sid,
            self._leg_kind(request, call_uri),
        )
        try:
            # Nothing is read from the stream (no capsule is used): its end, a reset,
            # the connection's loss or end_sessions() end the session.
            while await request.take() is not None:
                pass
        finally:
            conn.sessions.pop(sid, None)
            media.drop_session(session)
            log.info("webtransport session closed call=%s stream=%d", call_uri, sid)
        conn.send_data(sid, b"", end=True)  # raises _GONE after a reset: nothing to say

    def _media_datagram(self, session: _WtSession, data: bytes) -> None:
        """One datagram of a session: a body of chunks, as a PUT's (acks leave on datagrams)."""
        media = session.media
        if self._media.get(media.uri) is not media:
            return  # the call ended or changed handler since the session opened
        now = time.monotonic()
        result = media.receiver.receive(data, now)
        for ack in result.acks:
            media.sender.on_ack(ack, now)
        if result.acks:
            self._resend(media, now)
        for chunk in result.media:
            if chunk.payload_type == PayloadType.TELEPHONE_EVENT:
                self._note_dtmf(media, session.call_uri, chunk.timestamp, chunk.payload)
        if media.echo:
            self._echo(media, media.uri, result.media, now)
        if media.receiver.has_pending_acks and media.ack_timer is None:
            # Acks ride on the next media datagram; alone once the oldest waited ACK_HOLD.
            loop = asyncio.get_running_loop()
            media.ack_timer = loop.call_later(ACK_HOLD, self._lone_acks, media)

    def _lone_acks(self, media: _Media) -> None:
        media.ack_timer = None
        if self._media.get(media.uri) is not media or not media.sessions:
            return
        if media.receiver.has_pending_acks:
            acks = media.sender.acks(media.receiver.take_pending_acks(time.monotonic()))
            session = media.sessions[-1]
            session.conn.send_datagrams(session.stream_id, pack_datagrams(acks))

    @staticmethod
    def _resend(media: _Media, now: float) -> None:
        """Chunks the phone's acks show lost (a blip's backlog, up to 8 s) sent again at once.

        On the newest session (packed into datagrams at chunk boundaries), else in the
        answers of held GETs, one body of at most 64 KiB each (the phone reads no more:
        profile section 1); what finds no GET (or a GET whose stream is gone) waits for
        the next acks, which ask again.
        """
        chunks = media.sender.resends(now)
        if not chunks:
            return
        if media.sessions:
            session = media.sessions[-1]
            session.conn.send_datagrams(session.stream_id, pack_datagrams(chunks, DATAGRAM_LIMIT))
            return
        bodies = pack_datagrams(chunks, MEDIA_BODY_LIMIT)
        bodies.reverse()  # popped from the end: oldest first
        while media.waiting and bodies:
            held = media.waiting.pop()
            if held.done():
                continue
            try:
                held.conn.respond(held.stream_id, 200, bodies[-1], MEDIA)
            except _GONE:
                held.future.set_exception(H3Error("the held GET's stream is gone"))
                continue  # that body goes on the next GET
            held.future.set_result(None)
            bodies.pop()

    def _send_frame(
        self,
        media: _Media,
        call_uri: str,
        stream: tuple[int, int, PayloadType | int],
        timestamp_ms: int,
        payload: bytes,
        *,
        now: float,
        seq: int | None = None,
    ) -> None:
        """Send one chunk on the newest session, else the newest open GET, else media-panic.

        ``seq``: the chunk's number (the in-order echo's); else the stream's next.
        """
        if media.sessions:
            session = media.sessions[-1]
            source, sink, payload_type = stream
            sealed = media.sender.media(
                source, sink, payload_type, timestamp_ms, payload, now=now, seq=seq
            )
            session.conn.send_datagrams(session.stream_id, _datagrams(media, sealed, now))
            return
        encoded: bytes | None = None
        while media.waiting:
            held = media.waiting.pop()
            if held.done():
                continue
            if encoded is None or seq is None:
                # A chunk numbered by the caller is sealed once: the next GET carries the
                # same bytes (one number, one nonce, one ciphertext).
                source, sink, payload_type = stream
                encoded = media.sender.media(
                    source, sink, payload_type, timestamp_ms, payload, now=now, seq=seq
                )
            try:
                # Answered here, not by the GET's task one loop iteration later: so the
                # answer shares the packet of the PUT's reply (see _HeldGet).
                held.conn.respond(held.stream_id, 200, frame([encoded]), MEDIA)
            except _GONE:
                held.future.set_exception(H3Error("the held GET's stream is gone"))
                continue  # that chunk is lost, as on the wire; the next GET takes the next
            held.future.set_result(None)
            return
        if now - media.last_panic >= PANIC_EVERY:
            # Once a second at most: a phone without GETs open would otherwise get 50/s.
            media.last_panic = now
            stamp = format_timestamp(self.config.clock())
            panic = MediaPanic(direction=Direction.S2C, call=call_uri, timestamp=stamp)
            self._publish(call_uri, panic)

    async def _generate(self, account: Account, media: _Media, plan: _Plan) -> None:
        """The far end's tone or silence: one frame every ptime while the call lasts.

        The call is ``media.uri`` at each step: a migrate to a new URI moves it.
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_ms = int(self.config.clock() * 1000)
        stream = (plan.source, plan.sink, plan.payload_type)
        count = 0
        try:
            while self._media.get(media.uri) is media:
                if count % CHECK_EVERY == 0:
                    self._core.get_call(account, media.uri)  # 404: the call is over
                now = loop.time()
                payload = plan.encode(plan.next_pcm())
                timestamp = first_ms + count * plan.ptime
                self._send_frame(media, media.uri, stream, timestamp, payload, now=now)
                count += 1
                await asyncio.sleep(max(0.0, start + count * plan.ptime / 1000 - loop.time()))
        except RiptHttpError:
            # Over (call_ended drops the media state), or renamed a moment before the media
            # state was moved: a later media request starts the generator again then.
            media.generator = None
        except Exception:
            log.exception("the far end's media generator for %s failed", media.uri)

    def _echo(
        self, media: _Media, call_uri: str, chunks: tuple[MediaChunk, ...], now: float
    ) -> None:
        """The echo far end: each chunk back at once, same stream, payload and timestamp.

        ``echo`` numbers them in the order they arrived, so two chunks the path swapped
        on the way in are played swapped at the phone.  ``echo-in-order`` gives each the
        phone's own number (past the numbering's start): the phone sees the round trip's
        reordering and loss as its own, which its jitter buffer undoes or conceals.
        """
        in_order = media.in_order
        first = media.sender.first_seq
        for chunk in chunks:
            stream = (chunk.source, chunk.sink, chunk.payload_type)
            seq = first + chunk.seq if in_order else None
            if seq is not None and seq >= _ECHO_SEQ_LIMIT:
                continue  # not a number the provider can reserve: this chunk is not echoed
            self._send_frame(
                media, call_uri, stream, chunk.timestamp, chunk.payload, now=now, seq=seq
            )

    async def _media_get(
        self, conn: _Connection, sid: int, account: Account, call_uri: str
    ) -> None:
        media = self._media_state(account, call_uri)
        held = _HeldGet(conn, sid, asyncio.get_running_loop().create_future())
        media.waiting.append(held)
        try:
            await held.future  # answered by _send_frame, or an error to answer with
        finally:
            if held in media.waiting:
                media.waiting.remove(held)


def _log_media(call_uri: str, media: _Media) -> None:
    """One line per leg's media at its end: what came from the phone, what went to it."""
    rx, tx = media.receiver.stats(), media.sender.stats()
    log.info(
        "event=media_ended call=%s received=%d lost=%d duplicates=%d sent=%d acked=%d "
        "unacked=%d resent=%d given_up=%d",
        call_uri,
        rx.received,
        rx.lost,
        rx.duplicates,
        tx.sent,
        tx.acked,
        tx.lost,
        tx.resent,
        tx.given_up,
    )


def _datagrams(media: _Media, chunk: bytes, now: float) -> list[bytes]:
    """``chunk`` with the acks owed, packed greedily into datagrams of at most 1000 bytes."""
    if not media.receiver.has_pending_acks:
        return [frame((chunk,))]  # a sealed chunk is at most 998 bytes: it fits alone
    acks = media.sender.acks(media.receiver.take_pending_acks(now))
    return pack_datagrams([chunk, *acks], DATAGRAM_LIMIT)


def _cookie(request: _Request, name: str) -> str | None:
    """The value of cookie ``name`` in the request's ``Cookie`` header, or None."""
    for pair in request.headers.get("cookie", "").split(";"):
        key, eq, value = pair.partition("=")
        if eq and key.strip() == name:
            return value.strip()
    return None


@dataclass(eq=False, slots=True)
class _HeldGet:
    """An open ``GET {call}/media``, answered in place by whoever has the next chunk.

    ``future`` is what the GET's task waits for: a result once answered, or the
    error (404, 409) to answer with.
    """

    conn: _Connection
    stream_id: int
    future: asyncio.Future[None]

    def done(self) -> bool:
        """Answered, refused, or given up by its task (a reset stream)."""
        return self.future.done()


@dataclass(slots=True)
class _WtSession:
    """One WebTransport session: its CONNECT stream, on one connection, for one call."""

    conn: _Connection
    request: _Request
    media: _Media

    @property
    def call_uri(self) -> str:
        """The call's URI now (a migrate to a new URI moves the session's media with it)."""
        return self.media.uri

    @property
    def stream_id(self) -> int:
        return self.request.stream_id

    def end(self) -> None:
        """End the session from our side: its task stops holding it and closes the stream."""
        self.request.chunks.put_nowait(None)


@dataclass(slots=True)
class _Media:
    """One call's media: chunk state, the open GETs (oldest first) and WebTransport sessions."""

    uri: str
    """The call's URI: a migrate to a new URI changes it (``RunningServer._rename_media``)."""
    key: MediaKey | None
    keys: MediaKeys | None
    waiting: list[_HeldGet]
    echo: bool = False
    generator: asyncio.Task[None] | None = None
    last_panic: float = float("-inf")
    dtmf: DTMFReceiver = field(default_factory=DTMFReceiver)
    digits: list[str] = field(default_factory=list)
    """Keys the phone pressed during the call, in order (RFC 4733 telephone-events)."""
    sessions: list[_WtSession] = field(default_factory=list)
    """Open sessions of the call's current handler, oldest first; media goes to the last."""
    ack_timer: asyncio.TimerHandle | None = None
    in_order: bool = False
    """With ``echo``: the echo keeps the phone's numbering (``echo-in-order``)."""
    sender: ChunkSender = field(init=False)
    receiver: ChunkReceiver = field(init=False)

    def __post_init__(self) -> None:
        self.sender = ChunkSender(Direction.S2C, self.keys)
        self.receiver = ChunkReceiver(Direction.C2S, self.keys)

    def add_session(self, session: _WtSession) -> None:
        self.sessions.append(session)
        while len(self.sessions) > MAX_SESSIONS:
            self.sessions.pop(0).end()

    def drop_session(self, session: _WtSession) -> None:
        with contextlib.suppress(ValueError):
            self.sessions.remove(session)

    def end_sessions(self) -> None:
        """The call ended or changed handler: its sessions end (their tasks close them)."""
        sessions, self.sessions = self.sessions, []
        for session in sessions:
            session.end()
        if self.ack_timer is not None:
            self.ack_timer.cancel()
            self.ack_timer = None


PTIMES = (10, 20, 40, 60)
"""Chunk lengths the generated far end sends: those both G.711 and Opus frames have."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the generated far end sends: one stream of the server directive, one codec."""

    source: int
    sink: int
    payload_type: PayloadType
    next_pcm: Callable[[], bytes]
    encode: Callable[[bytes], bytes]
    ptime: int = FRAME_MS


def _plan(directive_text: str | None, far_end: FarEnd) -> _Plan | None:
    """The first stream and codec of the server directive the generator can produce."""
    if not directive_text:
        return None
    try:
        directive = parse_directive(directive_text)
    except GrammarError:
        return None
    for stream in directive.streams:
        for codec in stream.codecs:
            entry = codecs.find(codec.name)
            if entry is None or entry.new_encoder is None:
                continue
            rate = entry.clock_rate
            # The longest chunk the directive allows (the phone advertises its [audio] ptime).
            bound = codec.value("ptime") or FRAME_MS
            ptime = max((p for p in PTIMES if p <= bound), default=FRAME_MS)
            if far_end.media is MediaMode.TONE:
                tone = ToneSpec(((far_end.tone_hz, TONE_DBOV),))
                next_pcm = ToneGenerator(tone, rate, ptime).frame
            elif far_end.media is MediaMode.FILE and far_end.file is not None:
                next_pcm = file_frames(far_end.file, rate, ptime)
            else:
                silence = bytes(entry.frame_bytes(ptime))
                next_pcm = itertools.repeat(silence).__next__
            encode = entry.new_encoder(ptime).encode
            return _Plan(stream.source, stream.sink, entry.payload_type, next_pcm, encode, ptime)
    return None


class _Deadlines(Protocol):
    def next_deadline(self) -> float | None: ...

    def tick(self, now: float) -> None: ...


TIMER_RETRY = BackoffPolicy(initial=1.0, maximum=30.0)
"""After a failed tick (a database that cannot be written): wait, doubling, then try again."""


async def run_deadlines(core: _Deadlines, clock: Callable[[], float], wake: asyncio.Event) -> None:
    """Run the core's deadlines (ring timeouts, idle calls) forever, woken early by ``wake``.

    A tick that fails leaves its deadline in the past; retrying at once would spin the
    loop (and the log) at full speed, so failures back off (TIMER_RETRY): one line with
    the traceback for the first, one short line for each retry, one when it works again.
    """
    failures = 0
    while True:
        deadline = core.next_deadline()
        delay = _IDLE_WAKE if deadline is None else max(0.0, deadline - clock())
        if failures:
            delay = max(delay, TIMER_RETRY.delay(failures - 1))
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), delay)
        try:
            core.tick(clock())
        except Exception as exc:
            failures += 1
            if failures == 1:
                log.exception("provider timer failed; retrying with back-off")
            else:
                log.error(
                    "provider timer failed again (%d times): %s; next try in %g s",
                    failures,
                    exc,
                    TIMER_RETRY.delay(failures - 1),
                )
            continue
        if failures:
            log.info("provider timer works again after %d failures", failures)
            failures = 0


async def serve(config: ServerConfig) -> RunningServer:
    """Start the provider on ``config.host``/``config.port`` in the running loop."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    server = RunningServer(config, load_or_create_ca(config.state_dir))
    try:
        await server._start()
    except BaseException:
        await server.close()  # e.g. a database of another schema: free the port again
        raise
    return server
