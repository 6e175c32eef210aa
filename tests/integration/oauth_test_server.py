"""A small OAuth device-flow server for the phone's tests: HTTPS/1.1 on loopback, h11.

It speaks the contract of docs/protocol.md section 2 (metadata, device
authorization, token endpoint with both grants, refresh-token rotation) with
the documents of :mod:`ript.protocol.oauth`, and lets a test decide what the
user does: :meth:`OAuthTestServer.approve`, :meth:`~OAuthTestServer.deny`, or
nothing (``authorization_pending``).  The access token it hands out is a
fixed string, so a reference provider configured with that static token
accepts it.  Until the provider serves these endpoints itself, this stands in.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import h11

from ript.protocol.oauth import (
    DEVICE_CODE_GRANT,
    REFRESH_GRANT,
    DeviceAuthorization,
    ErrorResponse,
    ServerMetadata,
    TokenResponse,
    form_decode,
)


@dataclass
class _Code:
    device_code: str
    user_code: str
    device_name: str
    status: str = "pending"  # pending, approved, denied, expired
    polls: int = 0


@dataclass
class OAuthTestServer:
    """Serves ``https://{host}:{port}``; see the module docstring."""

    cert_file: Path
    key_file: Path
    access_token: str
    host: str = "127.0.0.1"
    port: int = 0
    domain: str = ""  # what the phone calls the server (host:port), for the URLs
    interval: int = 1
    expires_in: int = 600
    token_lifetime: int = 3600
    slow_down_first: bool = False
    codes: list[_Code] = field(default_factory=list)
    refresh_tokens: dict[str, bool] = field(default_factory=dict)  # token -> still good
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        context.set_alpn_protocols(["http/1.1"])
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]
        if not self.domain:
            self.domain = f"localhost:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    # ---------------------------------------------------------------- the user

    def approve(self) -> None:
        self.codes[-1].status = "approved"

    def deny(self) -> None:
        self.codes[-1].status = "denied"

    def expire(self) -> None:
        self.codes[-1].status = "expired"

    def revoke_refresh_tokens(self) -> None:
        for token in self.refresh_tokens:
            self.refresh_tokens[token] = False

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
        form = form_decode(body) if method == "POST" else {}
        self.requests.append((method, target, form))
        base = f"https://{self.domain}"
        if method == "GET" and target == "/.well-known/ript-oauth":
            return 200, ServerMetadata(
                base, f"{base}/oauth/device", f"{base}/oauth/token"
            ).to_bytes()
        if method == "POST" and target == "/oauth/device":
            if form.get("scope") != "ript":
                return 400, ErrorResponse("invalid_scope").to_bytes()
            n = len(self.codes) + 1
            code = _Code(f"device-{n}", f"BCDF-GH{n:02d}", form.get("device_name", ""))
            self.codes.append(code)
            return 200, DeviceAuthorization(
                device_code=code.device_code,
                user_code=code.user_code,
                verification_uri=f"{base}/device",
                verification_uri_complete=f"HTTPS://{self.domain.upper()}/D/{code.user_code}",
                expires_in=self.expires_in,
                interval=self.interval,
            ).to_bytes()
        if method == "POST" and target == "/oauth/token":
            return self._token(form)
        return 404, ErrorResponse("not_found").to_bytes()

    def _token(self, form: dict[str, str]) -> tuple[int, bytes]:
        grant = form.get("grant_type")
        if grant == DEVICE_CODE_GRANT:
            code = next((c for c in self.codes if c.device_code == form.get("device_code")), None)
            if code is None:
                return 400, ErrorResponse("invalid_grant").to_bytes()
            code.polls += 1
            if self.slow_down_first and code.polls == 1:
                return 400, ErrorResponse("slow_down").to_bytes()
            if code.status == "pending":
                return 400, ErrorResponse("authorization_pending").to_bytes()
            if code.status == "denied":
                return 400, ErrorResponse("access_denied").to_bytes()
            if code.status == "expired":
                return 400, ErrorResponse("expired_token").to_bytes()
            code.status = "used"
            return 200, self._tokens()
        if grant == REFRESH_GRANT:
            token = form.get("refresh_token", "")
            if not self.refresh_tokens.get(token):
                return 400, ErrorResponse("invalid_grant", "used or unknown").to_bytes()
            self.refresh_tokens[token] = False  # rotated
            return 200, self._tokens()
        return 400, ErrorResponse("unsupported_grant_type").to_bytes()

    def _tokens(self) -> bytes:
        refresh = f"refresh-{len(self.refresh_tokens) + 1}"
        self.refresh_tokens[refresh] = True
        return TokenResponse(
            access_token=self.access_token,
            expires_in=self.token_lifetime,
            refresh_token=refresh,
            scope="ript",
        ).to_bytes()
