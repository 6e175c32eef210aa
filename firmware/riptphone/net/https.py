"""A small HTTPS/1.1 client on asyncio streams and h11, for the OAuth login (profile section 2).

The identity provider's endpoints (metadata, device authorization, token) are
plain HTTPS, often on another host than the RIPT provider and rarely HTTP/3,
so they do not go through :mod:`riptphone.net.h3`.  One request a connection
(``Connection: close``): the phone polls every few seconds at most, so a
kept-alive connection would buy nothing and cost a socket to babysit.

* TLS: the system's trust anchors plus ``[provider] ca_file``, verification
  always on (certificate and host name), ALPN ``http/1.1``;
* a timeout on the whole exchange and a limit on the response body;
* every failure is an :class:`HttpsError` whose ``kind`` says what kind of
  trouble it was (``dns``, ``connect``, ``tls``, ``timeout``, ``protocol``),
  so that the phone can tell its user in plain words (:mod:`riptphone.line.reasons`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import h11

ErrorKind = Literal["dns", "connect", "tls", "timeout", "protocol"]

TIMEOUT_S = 15.0
MAX_BODY = 65536
USER_AGENT = "ript-phone"


class HttpsError(Exception):
    """An HTTPS exchange failed without an answer; one sentence, and the kind of failure."""

    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class HttpsResponse:
    """A whole response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True, slots=True)
class _Outgoing:
    method: str
    host: str
    port: int
    authority: str
    target: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's trust anchors plus ``ca_file``; verification on, ALPN http/1.1."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


class HttpsClient:
    """HTTPS/1.1 requests, one connection each; see the module docstring."""

    def __init__(
        self,
        ca_file: Path | None = None,
        *,
        timeout: float = TIMEOUT_S,
        max_body: int = MAX_BODY,
    ) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._context = tls_context(ca_file)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        timeout: float | None = None,
    ) -> HttpsResponse:
        """One request; raises :class:`HttpsError` when there is no usable answer."""
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or 443
        except ValueError:
            raise HttpsError(f"{url!r} is not a URL", "protocol") from None
        if parts.scheme != "https" or not parts.hostname:
            raise HttpsError(f"{url!r} is not an https URL", "protocol")
        host = parts.hostname
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = host if parts.port is None else f"{host}:{port}"
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                return await self._exchange(
                    _Outgoing(method, host, port, authority, target, dict(headers or {}), body)
                )
        except TimeoutError:
            raise HttpsError(f"{host} did not answer within {limit:g} s", "timeout") from None

    async def _exchange(self, out: _Outgoing) -> HttpsResponse:
        host, port = out.host, out.port
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self._context, server_hostname=host
            )
        except socket.gaierror as exc:
            raise HttpsError(f"{host} cannot be found: {exc.strerror}", "dns") from None
        except ssl.SSLCertVerificationError as exc:
            raise HttpsError(f"{host}'s certificate: {exc.verify_message}", "tls") from None
        except ssl.SSLError as exc:
            raise HttpsError(f"TLS with {host}:{port} failed: {exc.reason}", "tls") from None
        except OSError as exc:
            raise HttpsError(
                f"cannot connect to {host}:{port}: {exc.strerror or exc}", "connect"
            ) from None
        try:
            return await self._talk(reader, writer, out)
        finally:
            writer.close()
            # The answer is in (or not): how the TLS connection ended does not matter.
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    async def _talk(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: _Outgoing
    ) -> HttpsResponse:
        method, authority, body = out.method, out.authority, out.body
        conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=16384)
        sent = [
            ("host", authority),
            ("user-agent", USER_AGENT),
            ("connection", "close"),
            *((name.lower(), value) for name, value in out.headers.items()),
        ]
        if body or method in ("POST", "PUT"):
            sent.append(("content-length", str(len(body))))
        try:
            data = conn.send(h11.Request(method=method, target=out.target, headers=sent)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
            writer.write(data)
            await writer.drain()
            status = 0
            got: dict[str, str] = {}
            chunks: list[bytes] = []
            size = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    raw = await reader.read(65536)
                    conn.receive_data(raw)
                    continue
                if isinstance(event, h11.InformationalResponse):
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    got = {
                        bytes(k).decode("latin-1").lower(): bytes(v).decode("latin-1")
                        for k, v in event.headers
                    }
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > self.max_body:
                        raise HttpsError(
                            f"{authority} answered more than {self.max_body} bytes", "protocol"
                        )
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return HttpsResponse(status, got, b"".join(chunks))
                elif isinstance(event, h11.ConnectionClosed):
                    raise HttpsError(f"{authority} closed the connection early", "protocol")
        except h11.ProtocolError as exc:
            raise HttpsError(f"{authority} does not speak HTTP/1.1: {exc}", "protocol") from None
        except ssl.SSLError as exc:
            raise HttpsError(f"TLS with {authority} failed: {exc.reason}", "tls") from None
        except OSError as exc:
            raise HttpsError(
                f"the connection to {authority} failed: {exc.strerror or exc}", "connect"
            ) from None
