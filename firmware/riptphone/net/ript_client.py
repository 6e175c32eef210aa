"""The RIPT client resources (profile sections 3-7) over :mod:`riptphone.net.h3`.

Each method is one request (or one pair of long-lived requests, for the
signalling byways) with the provider's answer turned into a typed value from
:mod:`ript.protocol.descriptions`, or a :class:`RiptError` that says in
one sentence what went wrong and carries the HTTP status.  Bearer tokens come
from a :class:`Credentials` object: on ``401`` the client asks it to refresh
once and retries (profile section 1).

What to do with the answers (register anew on 404, ring, migrate) is the
daemon's business, not this module's.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ript.protocol.descriptions import (
    CallDescription,
    CallList,
    ClaimRequest,
    DescriptionError,
    HandlerDescription,
    PlaceCallRequest,
    ProviderTgs,
    PushBinding,
    TrunkGroup,
)
from ript.protocol.events import Event
from ript.protocol.jsonstream import (
    EventStreamError,
    EventStreamReader,
    EventStreamWriter,
    InvalidEvent,
)
from riptphone.net.h3 import (
    H3Client,
    H3Error,
    H3Stream,
    PreparedRequest,
    Response,
    WebTransportSession,
)
from riptphone.store import Registration, StateStore, StoreError

JSON = "application/json"
PENDING_HANDLER = "pending-handler"
"""The store record of a first handler id not yet answered ``201``: ``{"handler_id": ...}``.

A power cut after the provider's ``201`` and before the registration is saved must not
make the next boot choose another id (the provider would keep a ghost handler).  A
record of its own, not a registration with a null URI: that would become the
registration's last-good copy, and a damaged registration would fall back to it.
"""
REQUEST_TIMEOUT = 10.0
"""Seconds a request may wait for its answer before its connection is given up.

A provider that restarted (a crash, a power cut) does not know the phone's QUIC
connection and stays silent on it; so does a dead path.  Without a bound, each request
waited for QUIC's idle timeout (60 s), and the phone could not call for that long.
Requests here are short (no held streams); ``POST /handlers`` waits up to 2 s for the
provider's broker.
"""


class RiptError(Exception):
    """A RIPT request failed; ``status`` is the HTTP status (None: no answer at all)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoTrunkGroupError(RiptError):
    """The provider offers this account no usable trunk group: the account has no phone line."""


class Credentials(Protocol):
    """Where bearer tokens come from (a static token, or the OAuth device flow)."""

    async def token(self) -> str: ...

    async def refresh(self) -> bool:
        """Get a new access token; False if that is not possible (log in again)."""
        ...


@dataclass(slots=True)
class StaticToken:
    """A fixed bearer token (tests, and providers that hand out long-lived device tokens)."""

    value: str

    async def token(self) -> str:
        return self.value

    async def refresh(self) -> bool:
        return False


def root_uri(domain: str) -> str:
    """The RIPT root URI of a provider domain (``host[:port]``), profile section 2."""
    return f"https://{domain}/.well-known/ript/v1"


_WHY = {
    400: "the provider found the request malformed",
    401: "the provider did not accept the phone's credentials",
    403: "the provider's policy does not allow it",
    404: "not found",
    405: "the provider does not allow that method there",
    409: "it no longer fits the call's state",
    413: "the request was too large for the provider",
    500: "the provider reported an internal error",
}


def _reason(response: Response, what: str) -> str:
    detail = response.body[:200].decode("utf-8", "replace").strip()
    why = _WHY.get(response.status, f"the provider answered {response.status}")
    return f"{what}: {why}" + (f" ({detail})" if detail else "")


class RiptClient:
    """The RIPT resources of one provider, for one phone."""

    def __init__(
        self,
        http: H3Client,
        domain: str,
        credentials: Credentials,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.http = http
        self.domain = domain
        self.root = root_uri(domain)
        self.credentials = credentials
        self.request_timeout = request_timeout

    # ------------------------------------------------------------ plumbing

    async def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {await self.credentials.token()}"}
        if extra:
            headers.update(extra)
        return headers

    async def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        body: bytes | None = None,
        content_type: str = JSON,
    ) -> Response:
        extra = {"content-type": content_type} if body is not None else None
        for attempt in range(2):
            headers = await self._headers(extra)
            try:
                connection = await self.http.connection(url)
                async with asyncio.timeout(self.request_timeout):
                    response = await self.http.request(method, url, headers=headers, body=body)
            except H3Error as exc:
                raise RiptError(f"{what}: {exc}") from exc
            except TimeoutError:
                # Silence, not an error: give the connection up (the next request opens
                # a new one) rather than wait for QUIC's idle timeout.  Not retried here:
                # the request may have been carried out.
                connection.close_now(f"no answer within {self.request_timeout:g} s")
                raise RiptError(f"{what}: no answer within {self.request_timeout:g} s") from None
            if response.status == 401 and attempt == 0 and await self.credentials.refresh():
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _expect(response: Response, what: str, *statuses: int) -> Response:
        if response.status not in statuses:
            raise RiptError(_reason(response, what), response.status)
        return response

    # ------------------------------------------------------------ discovery

    async def discover(self, tg_name: str | None = None) -> TrunkGroup:
        """``GET {root}/providertgs``, pick the TG (``tg_name`` or the first), ``GET`` it."""
        what = f"TG discovery at {self.domain}"
        response = self._expect(
            await self._request("GET", f"{self.root}/providertgs", what), what, 200
        )
        try:
            ref = ProviderTgs.from_bytes(response.body).select(tg_name or None)
        except DescriptionError as exc:
            raise NoTrunkGroupError(f"{what}: {exc}", response.status) from None
        return await self.trunk_group(ref.uri)

    async def trunk_group(self, uri: str) -> TrunkGroup:
        what = f"reading the TG {uri}"
        response = self._expect(await self._request("GET", uri, what), what, 200)
        try:
            return TrunkGroup.from_bytes(response.body, fetched_from=uri)
        except DescriptionError as exc:
            raise RiptError(f"{what}: {exc}", response.status) from None

    # ------------------------------------------------------------ handlers

    async def get_handler(self, uri: str) -> HandlerDescription | None:
        """The handler's description, or None when the provider no longer knows it (404)."""
        what = f"reading the handler {uri}"
        response = await self._request("GET", uri, what)
        if response.status == 404:
            return None
        self._expect(response, what, 200)
        return _handler(response, what)

    async def register_handler(
        self, tg: TrunkGroup, handler: HandlerDescription
    ) -> HandlerDescription:
        """``POST {tg}/handlers``: the reply, with the URI from ``Location``."""
        what = "registering the handler"
        response = self._expect(
            await self._request("POST", f"{tg.uri}/handlers", what, body=handler.to_bytes()),
            what,
            201,
        )
        registered = _handler(response, what)
        location = response.get("location")
        if location and registered.uri != location:
            raise RiptError(f"{what}: Location {location} differs from the body's uri")
        if registered.uri is None:
            raise RiptError(f"{what}: the reply has no handler URI", response.status)
        return registered

    async def update_handler(self, uri: str, handler: HandlerDescription) -> HandlerDescription:
        what = f"updating the handler {uri}"
        response = self._expect(
            await self._request("PUT", uri, what, body=handler.to_bytes()), what, 200
        )
        return _handler(response, what)

    async def delete_handler(self, uri: str) -> None:
        what = f"deleting the handler {uri}"
        response = await self._request("DELETE", uri, what)
        self._expect(response, what, 200, 204, 404)

    async def ensure_registration(
        self,
        store: StateStore,
        tg: TrunkGroup,
        *,
        name: str,
        advertisement: str,
        new_handler_id: str | None = None,
    ) -> tuple[Registration, str]:
        """Keep one handler for life (profile section 4); say what was done.

        A stored handler URI is checked with ``GET``: 200 keeps it (``PUT``
        when the advertisement changed), 404 registers anew with the same
        handler id.  Only a phone with no registration at all makes a new id, and
        saves it (:data:`PENDING_HANDLER`) before the ``POST``.  The result is saved
        before it is returned.
        """
        loaded = await asyncio.to_thread(store.load_registration)
        current = loaded.data
        if current is not None and current.tg_uri == tg.uri and current.handler_uri:
            existing = await self.get_handler(current.handler_uri)
            if existing is not None:
                if (
                    existing.advertisement == advertisement
                    and current.advertisement == advertisement
                ):
                    return current, "kept"
                desc = HandlerDescription(
                    handler_id=current.handler_id, name=name, advertisement=advertisement
                )
                updated = await self.update_handler(current.handler_uri, desc)
                kept = Registration(
                    handler_id=current.handler_id,
                    handler_uri=current.handler_uri,
                    tg_uri=tg.uri,
                    advertisement=advertisement,
                    push=_kept_push(_push(updated), current.push),
                )
                await asyncio.to_thread(store.save_registration, kept)
                return kept, "updated"
        if current is not None:
            handler_id = current.handler_id
        else:
            handler_id = await asyncio.to_thread(_pending_handler_id, store, new_handler_id)
        desc = HandlerDescription(handler_id=handler_id, name=name, advertisement=advertisement)
        registered = await self.register_handler(tg, desc)
        assert registered.uri is not None
        fresh = Registration(
            handler_id=handler_id,
            handler_uri=registered.uri,
            tg_uri=tg.uri,
            advertisement=advertisement,
            push=_push(registered),
        )
        await asyncio.to_thread(store.save_registration, fresh)
        with contextlib.suppress(StoreError):  # a leftover is only read with no registration
            await asyncio.to_thread(store.delete, PENDING_HANDLER)
        return fresh, "registered"

    # ------------------------------------------------------------ certificates

    async def enroll(self, tg: TrunkGroup, csr_pem: bytes) -> tuple[bytes, str]:
        """``POST {tg}/certs`` with a PEM CSR: the PEM chain and the certificate's URI."""
        what = "enrolling the phone's certificate"
        response = self._expect(
            await self._request(
                "POST", f"{tg.uri}/certs", what, body=csr_pem, content_type="application/pkcs10"
            ),
            what,
            201,
        )
        location = response.get("location")
        if not location or not location.startswith("https://"):
            raise RiptError(f"{what}: the reply has no certificate URI", response.status)
        if b"-----BEGIN CERTIFICATE-----" not in response.body:
            raise RiptError(f"{what}: the reply holds no PEM certificate", response.status)
        return response.body, location

    # ------------------------------------------------------------ calls

    async def place_call(
        self, tg: TrunkGroup, *, handler: str, destination: str, passport: str
    ) -> CallDescription:
        """``POST {tg}/calls``; a refusal is a :class:`RiptError` with the status."""
        what = f"calling {destination}"
        body = PlaceCallRequest(
            handler=handler, destination=destination, passport=passport
        ).to_bytes()
        response = await self._request("POST", f"{tg.uri}/calls", what, body=body)
        if response.status == 404:
            raise RiptError(f"{what}: the number cannot be reached", 404)
        self._expect(response, what, 201)
        return _call(response, what)

    async def get_call(self, uri: str) -> CallDescription | None:
        """The call's description, or None when it is over (404)."""
        what = "reading the call"
        response = await self._request("GET", uri, what)
        if response.status == 404:
            return None
        self._expect(response, what, 200)
        return _call(response, what)

    async def claim_call(self, uri: str, handler: str | None) -> CallDescription:
        """``POST {call}``: make ``handler`` the handler, or (None) ask for a new directive."""
        what = "taking the call" if handler else "asking for a new directive"
        body = ClaimRequest(handler=handler).to_bytes()
        response = self._expect(await self._request("POST", uri, what, body=body), what, 200)
        return _call(response, what)

    async def list_calls(self, tg: TrunkGroup) -> CallList:
        what = "listing the calls"
        response = self._expect(await self._request("GET", f"{tg.uri}/calls", what), what, 200)
        try:
            return CallList.from_bytes(response.body)
        except DescriptionError as exc:
            raise RiptError(f"{what}: {exc}", response.status) from None

    def forget_call(self, *call_uris: str) -> None:
        """A call is over here: drop the cookies scoped to it (its ``ript-leg``).

        The provider sets them without an expiry, one per call claimed or pulled;
        kept, they would pile up in the jar for as long as the daemon runs.
        """
        for uri in call_uris:
            with contextlib.suppress(H3Error):  # not an https URL: nothing was stored for it
                self.http.forget_cookies(uri)

    def probe_connection(self, call_uri: str) -> None:
        """PING the connection that carries ``call_uri`` (see :meth:`H3Client.probe`)."""
        self.http.probe(call_uri)

    def abandon_connection(self, call_uri: str, reason: str) -> None:
        """Drop the connection that carries ``call_uri``: it answers nothing any more."""
        self.http.abandon(call_uri, reason)

    async def open_signalling(self, call_uri: str, *, migration: bool) -> SignallingByways:
        """Open ``GET`` and ``PUT {call}/events``; see :class:`SignallingByways`."""
        url = f"{call_uri}/events"
        headers = await self._headers({"content-type": JSON})
        try:
            reverse = await self.http.open_stream("GET", url, headers=headers, end_stream=True)
            forward = await self.http.open_stream(
                "PUT", url, headers=headers, send_cookies=not migration
            )
        except H3Error as exc:
            raise RiptError(f"opening the signalling byways: {exc}") from exc
        byways = SignallingByways(reverse, forward)
        try:
            await forward.send(byways.writer.open())
        except H3Error as exc:
            byways.close()
            raise RiptError(f"opening the signalling byways: {exc}") from exc
        return byways

    async def media_webtransport(
        self, call_uri: str, on_datagram: Callable[[bytes], None]
    ) -> WebTransportSession | None:
        """The leg's WebTransport session on ``{call}/media`` (profile section 8).

        None when the provider's SETTINGS do not offer WebTransport; a refusal
        (any status but 2xx, after one refresh and retry on 401) or a failure
        raises :class:`RiptError`.  Sent with the origin's cookies, as the byways
        (the ``ript-leg`` cookie names this leg).
        """
        url = f"{call_uri}/media"
        try:
            settings = await self.http.peer_settings(url)
        except H3Error as exc:
            raise RiptError(f"media session: {exc}") from exc
        if not settings.webtransport:
            return None
        for attempt in range(2):
            headers = await self._headers()
            session: WebTransportSession | None = None
            try:
                session = await self.http.open_webtransport(url, on_datagram, headers=headers)
                status = (await session.response_headers()).status
            except H3Error as exc:
                if session is not None:
                    session.close()
                raise RiptError(f"media session: {exc}") from exc
            except BaseException:  # a timeout or cancellation: no half-open session left
                if session is not None:
                    session.close()
                raise
            if 200 <= status < 300:
                return session
            session.close()
            if attempt == 0 and status == 401 and await self.credentials.refresh():
                continue
            why = _WHY.get(status, f"the provider answered {status}")
            raise RiptError(f"media session on {url}: {why}", status)
        raise AssertionError("unreachable")  # pragma: no cover

    async def media_byways(self, call_uri: str) -> MediaByways:
        """The media byways of one call leg (``PUT``/``GET {call}/media``, profile section 7)."""
        return MediaByways(
            self.http, f"{call_uri}/media", await self._headers(), credentials=self.credentials
        )


PREPARED_FOR_S = 1.0
"""How long the media byways reuse their prepared headers before asking for the token again."""

Completion = Callable[[H3Stream, int, bytes, H3Error | None], None]
"""``(stream, status, body, error)``: how a request started without a task ends."""


class MediaByways:
    """One call leg's media byways: each :meth:`put` and :meth:`get` is one request.

    ``PUT`` carries framed chunks up and answers with the provider's acks;
    a held ``GET`` answers with the next framed chunks.  Both return
    ``(status, body)``; a transport failure raises :class:`RiptError`.
    :meth:`close` resets the GETs still waiting, so a stopped leg holds no streams.

    With ``credentials``, each request carries the access token of the moment
    (a leg outlives a refresh: a token captured at its start would go stale),
    and a ``401`` gets one refresh and one retry, as every other request.

    The 20 ms path uses :meth:`put_nowait` and :meth:`get_nowait`: the same
    requests started from a callback, without a task, with the headers the
    last :meth:`put` or :meth:`get` prepared (at most :data:`PREPARED_FOR_S`
    old, so a new token is picked up within a second).  They return None when
    that is not possible (nothing prepared yet, no open connection): the caller
    then uses the coroutines, which connect, refresh and prepare.
    """

    def __init__(
        self,
        http: H3Client,
        url: str,
        headers: dict[str, str],
        *,
        credentials: Credentials | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._http = http
        self._headers = headers
        self._credentials = credentials
        self._gets: set[H3Stream] = set()
        self._token: str | None = None  # the headers below are built once per token, not per chunk
        self._token_headers = headers
        self._clock = clock
        self._prepared: tuple[PreparedRequest, PreparedRequest] | None = None
        self._prepared_at = 0.0

    async def _current_headers(self) -> dict[str, str]:
        if self._credentials is not None:
            token = await self._credentials.token()
            if token != self._token:
                self._token = token
                self._token_headers = {**self._headers, "authorization": f"Bearer {token}"}
        headers = self._token_headers
        http, url = self._http, self.url
        self._prepared = (
            http.prepare("PUT", url, headers=headers),
            http.prepare("GET", url, headers=headers),
        )
        self._prepared_at = self._clock()
        return headers

    async def _retry(self, status: int) -> bool:
        if status == 401:
            self._prepared = None  # the token they carry was refused
        return status == 401 and self._credentials is not None and await self._credentials.refresh()

    def refused(self) -> None:
        """A ``401`` to a request started without a task: prepare anew (after a refresh)."""
        self._prepared = None

    def _ready(self) -> tuple[PreparedRequest, PreparedRequest] | None:
        prepared = self._prepared
        if prepared is None or self._clock() - self._prepared_at > PREPARED_FOR_S:
            return None
        return prepared

    def put_nowait(self, body: bytes, on_complete: Completion) -> H3Stream | None:
        """Start a ``PUT`` of ``body`` without a task; None: use :meth:`put` instead.

        A ``401`` comes to ``on_complete`` as it is (retry with :meth:`put`).
        """
        prepared = self._ready()
        if prepared is None:
            return None
        return self._http.send_prepared(prepared[0], body, on_complete)

    def get_nowait(self, on_complete: Completion) -> H3Stream | None:
        """Start a held ``GET`` (deferred, as :meth:`get`) without a task; None: use :meth:`get`."""
        prepared = self._ready()
        if prepared is None:
            return None
        return self._http.send_prepared(prepared[1], None, on_complete, defer=True)

    async def put(self, body: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                response = await self._http.request(
                    "PUT", self.url, headers=await self._current_headers(), body=body
                )
            except H3Error as exc:
                raise RiptError(f"media PUT: {exc}") from exc
            if attempt == 0 and await self._retry(response.status):
                continue
            return response.status, response.body
        raise AssertionError("unreachable")  # pragma: no cover

    async def get(self) -> tuple[int, bytes]:
        for attempt in range(2):
            status, body = await self._get_once()
            if attempt == 0 and await self._retry(status):
                continue
            return status, body
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self) -> tuple[int, bytes]:
        try:
            # Deferred: with GETS held, a reopened one is not needed before the
            # next PUT, whose packet it shares (one packet per 20 ms, not two).
            stream = await self._http.open_stream(
                "GET", self.url, headers=await self._current_headers(), end_stream=True, defer=True
            )
        except H3Error as exc:
            raise RiptError(f"media GET: {exc}") from exc
        self._gets.add(stream)
        try:
            head = await stream.response_headers()
            body = await stream.read_all()
        except H3Error as exc:
            raise RiptError(f"media GET: {exc}") from exc
        finally:
            self._gets.discard(stream)
        return head.status, body

    def close(self) -> None:
        for stream in list(self._gets):
            with contextlib.suppress(H3Error):
                stream.reset()
        self._gets.clear()


class SignallingByways:
    """The two long-lived requests of one call's signalling (profile section 7).

    :meth:`wait_up` returns once the forward ``PUT`` has its response headers
    (only then may media start); :meth:`events` yields the provider's events
    as they arrive; :meth:`send` writes one event on the forward byway.  A
    reset, a connection loss, a non-2xx status or a garbled stream all end
    :meth:`events` with a :class:`RiptError` (status 404: the call is over).
    """

    def __init__(self, reverse: H3Stream, forward: H3Stream) -> None:
        self.reverse = reverse
        self.forward = forward
        self.writer = EventStreamWriter()
        self.reader = EventStreamReader()
        self.invalid: list[InvalidEvent] = []

    async def wait_up(self) -> None:
        for stream, name in ((self.forward, "PUT"), (self.reverse, "GET")):
            try:
                head = await stream.response_headers()
            except H3Error as exc:
                raise RiptError(f"signalling {name}: {exc}") from exc
            if head.status == 404:
                raise RiptError("the call is over", 404)
            if not 200 <= head.status < 300:
                raise RiptError(
                    f"signalling {name}: the provider answered {head.status}", head.status
                )

    async def events(self) -> AsyncIterator[Event]:
        await self.wait_up()
        try:
            async for data in self.reverse:
                for item in self.reader.feed(data):
                    if isinstance(item, InvalidEvent):
                        self.invalid.append(item)
                        del self.invalid[:-16]
                        continue
                    yield item
        except H3Error as exc:
            raise RiptError(f"the reverse signalling byway ended: {exc}") from exc
        except EventStreamError as exc:
            raise RiptError(f"the provider's event stream is garbled: {exc}") from exc
        raise RiptError("the provider closed the reverse signalling byway")

    async def send(self, event: Event) -> None:
        try:
            await self.forward.send(self.writer.encode(event))
        except H3Error as exc:
            raise RiptError(f"the forward signalling byway failed: {exc}") from exc

    def close(self) -> None:
        for stream in (self.forward, self.reverse):
            if not stream.finished:
                with contextlib.suppress(H3Error):
                    stream.reset()


def _handler(response: Response, what: str) -> HandlerDescription:
    try:
        return HandlerDescription.from_bytes(response.body)
    except DescriptionError as exc:
        raise RiptError(f"{what}: {exc}", response.status) from None


def _call(response: Response, what: str) -> CallDescription:
    try:
        return CallDescription.from_bytes(response.body)
    except DescriptionError as exc:
        raise RiptError(f"{what}: {exc}", response.status) from None


def _push(handler: HandlerDescription) -> PushBinding | None:
    return handler.push


def _kept_push(answered: PushBinding | None, stored: PushBinding | None) -> PushBinding | None:
    """The push binding to keep after a ``PUT {handler}``.

    A provider hands the password out only when it makes it (docs/protocol.md,
    handlers): an answer without a binding, or with the same one minus its
    password, keeps the stored binding; a new password (or broker) replaces it.
    """
    if answered is None:
        return stored
    if (
        answered.password is None
        and stored is not None
        and (answered.broker, answered.topic, answered.username)
        == (stored.broker, stored.topic, stored.username)
    ):
        return stored
    return answered


def _handler_id_of(data: Mapping[str, Any]) -> str:
    value = data.get("handler_id")
    if not isinstance(value, str) or set(data) != {"handler_id"}:
        raise ValueError("not a pending handler id")
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError("not a pending handler id") from None
    if parsed.version != 4 or str(parsed) != value:
        raise ValueError("not a pending handler id")
    return value


def _pending_handler_id(store: StateStore, new_handler_id: str | None) -> str:
    """The first registration's handler id: the one saved by an earlier attempt, or a new
    one, saved before it is used (blocking: call through ``asyncio.to_thread``)."""
    loaded = store.load(PENDING_HANDLER, _handler_id_of)
    if loaded.data is not None:
        return _handler_id_of(loaded.data)
    handler_id = new_handler_id or Registration.new_handler_id()
    store.save(PENDING_HANDLER, {"handler_id": handler_id}, secret=False)
    return handler_id
