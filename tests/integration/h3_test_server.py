"""A small in-process aioquic HTTP/3 server for the h3 client's tests.

It listens on 127.0.0.1 with a throwaway CA and a ``localhost`` certificate
made with ``cryptography`` in a temporary directory, and answers:

* ``/echo``                 200, body = request body, ``x-method`` = method
* ``/cookie/set?c=...``      200 with one ``Set-Cookie`` per ``c`` query value
* ``/cookie/echo``           200, body = the request's Cookie header
* ``GET /stream?n=&ms=&size=``  n chunks of ``size`` bytes, ``ms`` apart
* ``PUT /count``             200 when the body ends, body = byte count
* ``GET /reset?after=&code=``  ``after`` bytes, then RESET_STREAM(code)
* ``PUT /stop?code=``        STOP_SENDING(code) on the request body, no response

Switches: :meth:`TestServer.close_connections` (CONNECTION_CLOSE now),
:meth:`TestServer.send_goaway`,
:attr:`TestServer.paused` (hold every incoming datagram, replay on resume).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, ProtocolError, encode_frame
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic import events as qe
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.tls import SessionTicket
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from riptprovider.tls import ca_certificate


@dataclass(frozen=True)
class Pki:
    """Paths of the throwaway CA certificate and the server's chain and key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path, name: str = "localhost") -> Pki:
    """A CA and a server certificate for ``name`` (and 127.0.0.1), as PEM files."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "h3 test CA")])
    ca = ca_certificate(
        ca_key, "h3 test CA", now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


@dataclass
class _Request:
    stream_id: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class _ServerProtocol(QuicConnectionProtocol):
    def __init__(self, quic: QuicConnection, server: TestServer, **kw: Any) -> None:
        super().__init__(quic, **kw)
        self.server = server
        self.h3 = H3Connection(quic, enable_webtransport=True)
        self.requests: dict[int, _Request] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.resumed = False
        server.connections.append(self)

    def quic_event_received(self, event: qe.QuicEvent) -> None:
        if isinstance(event, qe.HandshakeCompleted):
            self.resumed = event.session_resumed
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            hdrs = {k.decode(): v.decode() for k, v in event.headers}
            url = urlsplit(hdrs.get(":path", "/"))
            req = _Request(
                event.stream_id, hdrs.get(":method", ""), url.path, parse_qs(url.query), hdrs
            )
            self.requests[event.stream_id] = req
            self.server.requests_seen.append((req.method, req.path, hdrs))
            if event.stream_ended:
                req.ended.set()
            task = asyncio.get_running_loop().create_task(self._handle(req))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif isinstance(event, DataReceived):
            pending = self.requests.get(event.stream_id)
            if pending is not None:
                pending.body += event.data
                if event.stream_ended:
                    pending.ended.set()

    def _respond(self, sid: int, status: int, body: bytes, extra: list[tuple[str, str]]) -> None:
        headers = [(b":status", str(status).encode())]
        headers += [(k.encode(), v.encode()) for k, v in extra]
        self.h3.send_headers(sid, headers)
        self.h3.send_data(sid, body, end_stream=True)
        self.transmit()

    async def _handle(self, req: _Request) -> None:
        sid = req.stream_id
        q = req.query
        try:
            if req.path == "/echo":
                await req.ended.wait()
                self._respond(sid, 200, bytes(req.body), [("x-method", req.method)])
            elif req.path == "/cookie/set":
                self._respond(sid, 200, b"ok", [("set-cookie", c) for c in q.get("c", [])])
            elif req.path == "/cookie/echo":
                self._respond(sid, 200, req.headers.get("cookie", "").encode(), [])
            elif req.path == "/stream":
                n, ms, size = (
                    int(q.get(k, [d])[0]) for k, d in (("n", 3), ("ms", 10), ("size", 8))
                )
                self.h3.send_headers(sid, [(b":status", b"200")])
                for i in range(n):
                    await asyncio.sleep(ms / 1000)
                    self.h3.send_data(sid, bytes([i % 256]) * size, end_stream=i == n - 1)
                    self.transmit()
            elif req.path == "/count":
                await req.ended.wait()
                self._respond(sid, 200, str(len(req.body)).encode(), [])
            elif req.path == "/stop":
                self._quic.stop_stream(sid, int(q["code"][0]))
                self.transmit()
            elif req.path == "/reset":
                after, code = int(q["after"][0]), int(q["code"][0])
                self.h3.send_headers(sid, [(b":status", b"200")])
                self.h3.send_data(sid, b"x" * after, end_stream=False)
                self.transmit()
                await asyncio.sleep(0.01)
                self._quic.reset_stream(sid, code)
                self.transmit()
            else:
                self._respond(sid, 404, b"not found", [])
        except ProtocolError:
            pass  # the client cancelled the stream: H3 refuses further frames
        finally:
            self.requests.pop(sid, None)


class _PausableServer(QuicServer):
    def __init__(self, owner: TestServer, **kw: Any) -> None:
        super().__init__(**kw)
        self.owner = owner

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.owner.paused:
            self.owner.held.append((data if isinstance(data, bytes) else data.encode(), addr))
            return
        super().datagram_received(data, addr)


class TestServer:
    """Run with ``async with TestServer(tmp) as server``; ``server.url(path)``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path | None = None, cert_name: str = "localhost") -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory()
            directory = Path(self._tmp.name)
        self.pki = make_pki(directory, cert_name)
        self.connections: list[_ServerProtocol] = []
        self.requests_seen: list[tuple[str, str, dict[str, str]]] = []
        self.held: list[tuple[bytes, Any]] = []
        self._paused = False
        self._tickets: dict[bytes, SessionTicket] = {}
        self._server: _PausableServer | None = None
        self.port = 0

    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if not value and self._server is not None:
            held, self.held = self.held, []
            for data, addr in held:
                self._server.datagram_received(data, addr)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.port}"

    async def __aenter__(self) -> TestServer:
        config = QuicConfiguration(
            is_client=False, alpn_protocols=list(H3_ALPN), max_datagram_frame_size=65536
        )
        config.load_cert_chain(self.pki.cert_file, self.pki.key_file)
        loop = asyncio.get_running_loop()
        factory: Callable[..., _ServerProtocol] = lambda quic, **kw: _ServerProtocol(  # noqa: E731
            quic, self, **kw
        )
        _, proto = await loop.create_datagram_endpoint(
            lambda: _PausableServer(
                self,
                configuration=config,
                create_protocol=factory,
                session_ticket_fetcher=lambda label: self._tickets.pop(label, None),
                session_ticket_handler=lambda t: self._tickets.__setitem__(t.ticket, t),
            ),
            local_addr=("127.0.0.1", 0),
        )
        self._server = proto
        assert proto._transport is not None
        self.port = proto._transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.connections:
            for task in list(conn.tasks):
                task.cancel()
        await asyncio.sleep(0)
        if self._tmp is not None:
            self._tmp.cleanup()

    def send_goaway(self, last_stream_id: int) -> None:
        """Send GOAWAY(last_stream_id) on every connection's control stream."""
        for conn in self.connections:
            control = conn.h3._local_control_stream_id
            assert control is not None
            frame = encode_frame(FrameType.GOAWAY, encode_uint_var(last_stream_id))
            conn._quic.send_stream_data(control, frame)
            conn.transmit()

    def close_connections(self, error_code: int = 0, reason: str = "") -> None:
        """Close every connection now with CONNECTION_CLOSE (``error_code``)."""
        for conn in self.connections:
            conn.close(error_code=error_code, reason_phrase=reason)
