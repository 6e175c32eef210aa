"""The provider's HTTPS/1.1 listener: TCP beside the QUIC socket, for the login (profile section 2).

Phones and browsers reach the OAuth endpoints and the verification page over
HTTPS/1.1 on the same host and port number as the provider's HTTP/3 (UDP),
with the same certificate (TLS 1.2 or 1.3, ALPN ``http/1.1``).  Every request
is answered by a handler ``(WebRequest) -> WebReply`` (``server.py`` passes
:meth:`riptprovider.login_web.LoginWeb.answer` and a 404 for anything else;
RIPT resources are HTTP/3 only).

The HTTP/1.1 parsing is **h11**: a small, pure-Python, sans-IO protocol
library with no dependencies of its own, strict about framing (it refuses
request smuggling shapes such as both ``Content-Length`` and chunked), and
with a bounded header buffer.  ``http.server`` is blocking and thread-based,
and aiohttp would pull a whole framework in for three resources.

Bounds, so that no client can hold more than a little memory or a socket for
long: :data:`MAX_CONNECTIONS` at once (more are closed at once),
:data:`MAX_HEADER` bytes of request line and headers, :data:`MAX_BODY` bytes
of body (``413``), :data:`TLS_TIMEOUT` for the handshake,
:data:`REQUEST_TIMEOUT` to receive a whole request once it started, and
:data:`IDLE_TIMEOUT` between requests of a kept-alive connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path

import h11

from riptprovider.login_web import WebReply, WebRequest

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
MAX_HEADER = 16384
MAX_BODY = 65536
TLS_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
READ_SIZE = 16384
SERVER_HEADER = "ript-provider"

WebHandler = Callable[[WebRequest], Awaitable[WebReply]]


class _RefusedError(Exception):
    """A request that cannot be read: answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """The server context: TLS 1.2+, ALPN ``http/1.1``, the provider's certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert_file, key_file)
    return context


class HttpsListener:
    """A serving HTTPS/1.1 listener; :meth:`close` stops it and drops its connections."""

    def __init__(self, handler: WebHandler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int, context: ssl.SSLContext) -> None:
        self._server = await asyncio.start_server(
            self._client,
            host,
            port,
            ssl=context,
            ssl_handshake_timeout=TLS_TIMEOUT,
            reuse_address=True,
        )

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._tasks) >= MAX_CONNECTIONS:
            log.warning("https: %d connections open; one more closed", MAX_CONNECTIONS)
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to answer
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("https: connection failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER)
        while True:
            try:
                request = await self._read_request(conn, reader)
            except _RefusedError as refused:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, writer, _plain(refused.status, refused.message), close=True)
                return
            if request is None:
                return
            try:
                reply = await self._handler(request)
            except Exception:
                log.exception("https: internal error answering %s %s", request.method, request.path)
                reply = _plain(500, "internal error")
            if request.method == "HEAD":
                reply = WebReply(reply.status, b"", reply.content_type, reply.headers)
            await _send(conn, writer, reply, close=False, head=request.method == "HEAD")
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            try:
                conn.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> WebRequest | None:
        """The next whole request, None when the client closed (or idled out) between requests."""
        head: h11.Request | None = None
        body = bytearray()
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        head_bytes = 0  # h11 checks its limit only between reads: count too
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _RefusedError(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                if deadline is None:
                    timeout = IDLE_TIMEOUT
                else:
                    timeout = deadline - loop.time()
                    if timeout <= 0:
                        raise _RefusedError(408, "the request took too long")
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), timeout)
                except TimeoutError:
                    if deadline is None and head is None and not conn.trailing_data[0]:
                        return None  # idle keep-alive connection: just close it
                    raise _RefusedError(408, "the request took too long") from None
                if deadline is None:
                    deadline = loop.time() + REQUEST_TIMEOUT
                if head is None:
                    head_bytes += len(data)
                    if head_bytes > MAX_HEADER + 4:
                        raise _RefusedError(431, f"the request head exceeds {MAX_HEADER} bytes")
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                head = event
                length = _content_length(event)
                if length is not None and length > MAX_BODY:
                    raise _RefusedError(413, f"the request body exceeds {MAX_BODY} bytes")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _RefusedError(413, f"the request body exceeds {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return _web_request(head, bytes(body))
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _web_request(head: h11.Request, body: bytes) -> WebRequest:
    target = head.target.decode("ascii", "replace")
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for name, value in head.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return WebRequest(head.method.decode("ascii", "replace"), path, query, headers, body)


def _plain(status: int, message: str) -> WebReply:
    return WebReply(status, (message + "\n").encode(), "text/plain; charset=utf-8")


async def _send(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    reply: WebReply,
    *,
    close: bool,
    head: bool = False,
) -> None:
    headers = [("server", SERVER_HEADER)]
    if reply.content_type is not None:
        headers.append(("content-type", reply.content_type))
    headers += list(reply.headers)
    if not head:
        headers.append(("content-length", str(len(reply.body))))
    if close:
        headers.append(("connection", "close"))
    try:
        reason = HTTPStatus(reply.status).phrase.encode()
    except ValueError:
        reason = b""
    response = h11.Response(status_code=reply.status, headers=headers, reason=reason)
    data = conn.send(response) or b""
    if reply.body:
        data += conn.send(h11.Data(data=reply.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    writer.write(data)
    await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT)
