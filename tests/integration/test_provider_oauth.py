"""The provider's login over real HTTPS/1.1 (stdlib http.client, verification on) and HTTP/3.

The provider runs in process on loopback (UDP and TCP on one port number);
the OAuth endpoints and the verification page are reached with
``http.client`` trusting the provider's CA, RIPT resources with the phone's
own ``H3Client``, the admin commands through ``admin_main`` on the real
admin socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import json
import logging
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ript.protocol.oauth import (
    DEVICE_CODE_GRANT,
    FORM,
    DeviceAuthorization,
    ErrorResponse,
    ServerMetadata,
    TokenResponse,
    form_encode,
)
from riptphone.line.tokens import OAuthCredentials, OAuthServer, tokens_from
from riptphone.net.h3 import H3Client
from riptphone.net.https import HttpsClient
from riptphone.store import Tokens
from riptprovider import https
from riptprovider.accounts import load_accounts
from riptprovider.admin import admin_main, start_admin
from riptprovider.oauth import IssuerSettings
from riptprovider.passwords import hash_password, verify_password
from riptprovider.server import RunningServer, ServerConfig, serve

PASSWORD = "alice-demo-password"
ACCOUNTS = load_accounts(
    {
        "alice": {
            "name": "Alice",
            "numbers": ["+14085551002"],
            "password": hash_password(PASSWORD, n=2**10),
        }
    }
)
SETTINGS = IssuerSettings(access_token_lifetime=2, poll_interval=1, device_code_lifetime=60)
ROOT = "/.well-known/ript/v1"


@dataclass
class Env:
    server: RunningServer
    config: Path
    h3: H3Client

    @property
    def ca(self) -> str:
        return str(self.server.ca.ca_file)

    async def https(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        return await asyncio.to_thread(
            https_request, self.server.port, self.ca, method, path, body, headers or {}
        )

    async def form(self, path: str, fields: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return await self.https("POST", path, form_encode(fields), {"content-type": FORM})

    async def device(self, name: str = "Desk phone") -> DeviceAuthorization:
        status, _, body = await self.form(
            "/oauth/device", {"client_id": "ript-phone", "scope": "ript", "device_name": name}
        )
        assert status == 200, body
        return DeviceAuthorization.from_bytes(body)

    async def poll(self, code: DeviceAuthorization) -> tuple[int, bytes]:
        fields = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": code.device_code,
            "client_id": "ript-phone",
        }
        status, headers, body = await self.form("/oauth/token", fields)
        assert headers["cache-control"] == "no-store"
        return status, body

    async def refresh(self, token: str | None) -> tuple[int, bytes]:
        assert token is not None
        fields = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "ript-phone"}
        status, _, body = await self.form("/oauth/token", fields)
        return status, body

    async def ript(self, token: str) -> tuple[int, str | None]:
        url = f"https://localhost:{self.server.port}{ROOT}/providertgs"
        resp = await self.h3.request("GET", url, headers={"authorization": f"Bearer {token}"})
        return resp.status, resp.get("www-authenticate")


def https_request(  # noqa: PLR0917 - one request, said in order
    port: int, ca: str, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    context = ssl.create_default_context(cafile=ca)  # verification and host name check on
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def error_of(body: bytes) -> str:
    return ErrorResponse.from_bytes(body).error


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "provider.toml"
    path.write_text(
        '[server]\nstate_dir = "state"\n\n[accounts.alice]\nnumbers = ["+14085551002"]\n'
    )
    return path


def run(tmp_path: Path, body: Callable[[Env], Awaitable[None]]) -> None:
    config = write_config(tmp_path)

    async def main() -> None:
        server = await serve(
            ServerConfig(state_dir=tmp_path / "state", accounts=ACCOUNTS, oauth=SETTINGS)
        )
        admin = await start_admin(server)
        try:
            async with H3Client(ca_file=str(server.ca.ca_file)) as h3:
                await asyncio.wait_for(body(Env(server, config, h3)), 30)
        finally:
            await admin.close()
            await server.close()

    asyncio.run(main())


async def admin(config: Path, *argv: str) -> tuple[int, str]:
    """``ript-provider admin --config FILE ...`` in a thread: (status, stdout or stderr)."""
    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return admin_main(["--config", str(config), *argv])

    code = await asyncio.to_thread(call)
    return code, out.getvalue() if code == 0 else err.getvalue()


# ----------------------------------------------------------------------------- tests


def test_metadata_over_https_and_http3_on_one_port(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, headers, data = await env.https("GET", "/.well-known/ript-oauth")
        assert status == 200 and headers["content-type"] == "application/json"
        meta = ServerMetadata.from_bytes(data)
        origin = f"https://localhost:{env.server.port}"
        assert meta == ServerMetadata(origin, f"{origin}/oauth/device", f"{origin}/oauth/token")
        resp = await env.h3.request("GET", f"{origin}/.well-known/ript-oauth")
        assert resp.status == 200 and ServerMetadata.from_bytes(resp.body) == meta

        def handshake() -> tuple[str | None, str | None]:
            context = ssl.create_default_context(cafile=env.ca)
            context.set_alpn_protocols(["http/1.1"])
            with (
                socket.create_connection(("127.0.0.1", env.server.port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname="localhost") as tls,
            ):
                return tls.selected_alpn_protocol(), tls.version()

        alpn, version = await asyncio.to_thread(handshake)
        assert alpn == "http/1.1" and version in ("TLSv1.2", "TLSv1.3")

    run(tmp_path, body)


def test_device_flow_admin_approve_ript_expiry_and_refresh_rotation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secrets_seen: list[str] = []

    async def body(env: Env) -> None:
        code = await env.device()
        assert code.interval == 1 and code.expires_in == 60
        assert code.verification_uri == f"https://localhost:{env.server.port}/device"
        assert code.verification_uri_complete == (
            f"HTTPS://LOCALHOST:{env.server.port}/D/{code.user_code.replace('-', '')}"
        )
        status, data = await env.poll(code)
        assert (status, error_of(data)) == (400, "authorization_pending")
        rc, out = await admin(env.config, "approve", code.user_code.lower(), "--account", "alice")
        assert rc == 0, out
        assert json.loads(out) == {"ok": True, "code": code.user_code, "approved": "alice"}
        await asyncio.sleep(1.0)
        status, data = await env.poll(code)
        assert status == 200, data
        tokens = TokenResponse.from_bytes(data)
        assert tokens.expires_in == 2 and tokens.refresh_token
        secrets_seen.extend([code.device_code, tokens.access_token, tokens.refresh_token])

        assert await env.ript(tokens.access_token) == (200, None)
        await asyncio.sleep(2.1)
        status, challenge = await env.ript(tokens.access_token)
        assert (status, challenge) == (401, 'Bearer error="invalid_token"')

        status, data = await env.refresh(tokens.refresh_token)
        assert status == 200, data
        second = TokenResponse.from_bytes(data)
        assert second.refresh_token not in (None, tokens.refresh_token)
        secrets_seen.extend([second.access_token, second.refresh_token or ""])
        assert (await env.ript(second.access_token))[0] == 200
        # The rotated refresh token again before ``second`` was used: a lost answer,
        # honoured; ``second`` is superseded by ``third``.
        status, data = await env.refresh(tokens.refresh_token)
        assert status == 200, data
        third = TokenResponse.from_bytes(data)
        assert third.refresh_token not in (None, tokens.refresh_token, second.refresh_token)
        secrets_seen.extend([third.access_token, third.refresh_token or ""])
        status, data = await env.refresh(third.refresh_token)  # the device goes on
        assert status == 200, data
        fourth = TokenResponse.from_bytes(data)
        secrets_seen.extend([fourth.access_token, fourth.refresh_token or ""])
        # Now the first one again is a replay: invalid_grant, and the login is over.
        status, data = await env.refresh(tokens.refresh_token)
        assert (status, error_of(data)) == (400, "invalid_grant")
        assert (await env.ript(fourth.access_token))[0] == 401
        status, data = await env.refresh(fourth.refresh_token)
        assert (status, error_of(data)) == (400, "invalid_grant")

    with caplog.at_level(logging.DEBUG):
        run(tmp_path, body)
    logged = caplog.text
    assert "login" in logged and secrets_seen
    for secret in secrets_seen:
        assert secret not in logged


def test_deny_and_admin_errors_are_one_line(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        code = await env.device()
        rc, out = await admin(env.config, "deny", code.user_code.replace("-", "").lower())
        assert rc == 0 and json.loads(out)["denied"] is True
        await asyncio.sleep(1.0)
        status, data = await env.poll(code)
        assert (status, error_of(data)) == (400, "access_denied")
        for argv, problem in (
            (("deny", "BCDF-GHJK"), "not known or has expired"),
            (("approve", "BCDFGHJK", "--account", "alice"), "not known or has expired"),
            (("approve", "hello", "--account", "alice"), "not a code"),
            (("deny", code.user_code), "already answered"),
        ):
            rc, err = await admin(env.config, *argv)
            assert rc == 2 and err.count("\n") == 1 and problem in err, err
        other = await env.device()
        rc, err = await admin(env.config, "approve", other.user_code, "--account", "carol")
        assert rc == 2 and "no account 'carol'" in err

    run(tmp_path, body)


def test_endpoint_refusals_and_limits(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        status, data = (await env.form("/oauth/device", {"client_id": "nope", "scope": "ript"}))[
            ::2
        ]
        assert (status, error_of(data)) == (400, "invalid_client")
        status, data = (await env.form("/oauth/device", {"client_id": "ript-phone", "scope": "x"}))[
            ::2
        ]
        assert (status, error_of(data)) == (400, "invalid_scope")
        fields = {"grant_type": "password", "client_id": "ript-phone"}
        status, _, data = await env.form("/oauth/token", fields)
        assert (status, error_of(data)) == (400, "unsupported_grant_type")
        status, _, data = await env.https("POST", "/oauth/token", b"{}", {"content-type": "x/y"})
        assert (status, error_of(data)) == (400, "invalid_request")
        status, headers, _ = await env.https("GET", "/oauth/token")
        assert status == 405 and headers["allow"] == "POST"
        status, _, _ = await env.https("POST", "/oauth/token", b"a=" + b"x" * 70000, {})
        assert status == 413
        status, _, data = await env.https("GET", f"{ROOT}/providertgs")
        assert status == 404 and b"HTTP/3" in data  # RIPT resources are HTTP/3 only
        status, _, _ = await env.https("GET", "/device", headers={"x-big": "y" * 20000})
        assert status == 431
        # No bearer token at all: the plain challenge, no error code (RFC 6750 section 3).
        resp = await env.h3.request("GET", f"https://localhost:{env.server.port}{ROOT}/providertgs")
        assert (resp.status, resp.get("www-authenticate")) == (401, "Bearer")

        def keep_alive() -> list[int]:
            context = ssl.create_default_context(cafile=env.ca)
            conn = http.client.HTTPSConnection("localhost", env.server.port, context=context)
            statuses: list[int] = []
            started = time.monotonic()
            try:
                for _ in range(3):
                    conn.request("GET", "/.well-known/ript-oauth")
                    resp = conn.getresponse()
                    resp.read()
                    statuses.append(resp.status)
            except (OSError, http.client.HTTPException) as exc:
                # Which request, and how long in: a handshake past https.TLS_TIMEOUT (the
                # process starved) ends in SSLEOFError on the first one.
                raise AssertionError(
                    f"after {statuses} and {time.monotonic() - started:.1f} s: {exc!r}"
                ) from exc
            finally:
                conn.close()
            return statuses

        assert await asyncio.to_thread(keep_alive) == [200, 200, 200]

    run(tmp_path, body)


def test_listener_bounds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(https, "REQUEST_TIMEOUT", 0.5)
    monkeypatch.setattr(https, "MAX_CONNECTIONS", 2)

    async def body(env: Env) -> None:
        context = ssl.create_default_context(cafile=env.ca)

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", env.server.port), timeout=5)
            return context.wrap_socket(raw, server_hostname="localhost")

        def exchange(data: bytes) -> bytes:
            with connect() as tls:
                tls.sendall(data)
                answer = b""
                while piece := tls.recv(4096):
                    answer += piece
                return answer

        answer = await asyncio.to_thread(exchange, b"GARBAGE\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        # Headers that never end, a body that never comes: 408 after REQUEST_TIMEOUT.
        answer = await asyncio.to_thread(exchange, b"GET /device HTTP/1.1\r\nHost: x\r\n")
        assert answer.startswith(b"HTTP/1.1 408 ")
        started = await asyncio.to_thread(
            exchange, b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nab"
        )
        assert started.startswith(b"HTTP/1.1 408 ")

        def over_the_limit() -> bytes:
            with connect() as first, connect() as second:
                first.sendall(b"GET /device HTTP/1.1\r\nHost: x\r\n\r\n")
                assert first.recv(12) == b"HTTP/1.1 200"
                second.sendall(b"GET /device HTTP/1.1\r\nHost: x\r\n\r\n")
                assert second.recv(12) == b"HTTP/1.1 200"
                with connect() as third:  # two are open (kept alive): closed at once
                    third.sendall(b"GET /device HTTP/1.1\r\nHost: x\r\n\r\n")
                    try:
                        return third.recv(100)
                    except ConnectionError:
                        return b""

        assert await asyncio.to_thread(over_the_limit) == b""

    run(tmp_path, body)


def test_verification_page_without_a_browser(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        code = await env.device(name="<Desk & Co>")
        plain = code.user_code.replace("-", "")
        status, headers, page = await env.https("GET", f"/D/{plain}")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert f'value="{code.user_code}"'.encode() in page and b"<script" not in page
        assert b'name="viewport"' in page

        sign_in = {"step": "sign-in", "user_code": plain.lower(), "account": "alice"}
        status, _, page = await env.form("/device", {**sign_in, "password": "wrong"})
        assert status == 200 and b"The account or the password is wrong." in page
        status, _, page = await env.form("/device", {**sign_in, "password": PASSWORD})
        assert b"&lt;Desk &amp; Co&gt;" in page and b"<Desk" not in page
        match = re.search(rb'name="csrf" value="([^"]+)"', page)
        assert match is not None
        decide = {"step": "decide", "user_code": code.user_code, "decision": "approve"}
        status, _, page = await env.form("/device", {**decide, "csrf": "forged"})
        assert b"out of date" in page
        no_answer = {k: v for k, v in decide.items() if k != "decision"}
        status, _, page = await env.form("/device", {**no_answer, "csrf": match[1].decode()})
        assert status == 400 and b"neither Approve nor Deny" in page
        status, _, page = await env.form("/device", {**decide, "csrf": match[1].decode()})
        assert b"You can put your phone down" in page
        status, data = await env.poll(code)
        assert status == 200 and TokenResponse.from_bytes(data).access_token

    run(tmp_path, body)


def test_hash_password_command(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "riptprovider", "hash-password"]
    done = subprocess.run(
        command,
        check=False,
        input="alice-demo-password\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    stored = done.stdout.strip()
    assert "alice-demo-password" not in done.stdout + done.stderr
    assert stored.startswith("scrypt$32768$8$1$") and verify_password("alice-demo-password", stored)
    empty = subprocess.run(
        command, check=False, input="", capture_output=True, text=True, timeout=30
    )
    assert empty.returncode == 2 and empty.stderr == "ript-provider: the password is empty\n"


def test_a_phone_cut_before_it_saved_a_refresh_stays_logged_in(tmp_path: Path) -> None:
    """The power-cut bench's fresh logins: the provider rotated, the phone died before
    its save.  The phone's own refresh code against the real provider: the restarted
    phone (the tokens it had stored) refreshes and stays logged in, no invalid_grant."""

    class PowerCutError(Exception):
        pass

    async def body(env: Env) -> None:
        code = await env.device()
        rc, out = await admin(env.config, "approve", code.user_code, "--account", "alice")
        assert rc == 0, out
        status, data = await env.poll(code)
        assert status == 200, data
        stored = tokens_from(TokenResponse.from_bytes(data), time.time())
        server = OAuthServer(
            HttpsClient(Path(env.ca)), f"localhost:{env.server.port}", "ript-phone"
        )
        saved: list[Tokens] = []

        async def save(tokens: Tokens) -> None:
            saved.append(tokens)

        async def cut(tokens: Tokens) -> None:
            raise PowerCutError  # the provider committed the rotation; the phone is gone

        async def forget() -> None:
            saved.clear()

        before = OAuthCredentials(server, cut, forget, tokens=stored)
        with pytest.raises(PowerCutError):
            await before.refresh()
        after = OAuthCredentials(server, save, forget, tokens=stored)  # the restart
        assert await after.refresh()
        assert not after.ended.is_set() and after.logged_in
        fresh = saved[-1]
        assert fresh.refresh_token not in (None, stored.refresh_token)
        assert (await env.ript(await after.token()))[0] == 200
        assert await after.refresh()  # and it goes on with what it saved
        assert (await env.ript(saved[-1].access_token))[0] == 200

    run(tmp_path, body)
