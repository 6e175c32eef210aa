"""A small HTTPS/1.1 server on loopback (h11) for the edges of the phone's HTTPS client.

It answers ``GET /.well-known/ript-oauth`` with an OAuth metadata document and
everything else with ``404``: enough for the client to meet a trusted server,
an untrusted one, an answer over its size limit and a server gone
(``tests/integration/test_oauth_login.py``).  The login itself is tested
against the reference provider (``tests/integration/test_login_e2e.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from pathlib import Path

import h11

from ript.protocol.oauth import ErrorResponse, ServerMetadata


@dataclass
class OAuthTestServer:
    """Serves ``https://localhost:{port}``; see the module docstring."""

    cert_file: Path
    key_file: Path
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.set_alpn_protocols(["http/1.1"])
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # ---------------------------------------------------------------- HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        method = target = ""
        body = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(event, h11.Request):
                    method, target = event.method.decode(), event.target.decode()
                elif isinstance(event, h11.Data):
                    body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return
            status, payload = self._answer(method, target, body)
            headers = [
                ("content-type", "application/json"),
                ("content-length", str(len(payload))),
                ("connection", "close"),
            ]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
            writer.write(conn.send(h11.Data(data=payload)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()
        except (h11.ProtocolError, OSError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _answer(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        del body
        base = f"https://localhost:{self.port}"
        if method == "GET" and target == "/.well-known/ript-oauth":
            return 200, ServerMetadata(
                base, f"{base}/oauth/device", f"{base}/oauth/token"
            ).to_bytes()
        return 404, ErrorResponse("not_found").to_bytes()
