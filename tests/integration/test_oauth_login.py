"""First boot over OAuth: the HTTPS/1.1 client, the device flow, and the real daemon.

An in-test OAuth server (:mod:`integration.oauth_test_server`, HTTPS/1.1 on
loopback with a test CA) speaks docs/protocol.md section 2 and hands out the
reference provider's static token, so the real provider accepts what the
phone got by logging in.  The daemon (``python -m riptphone run``) starts with
no token at all: it shows the login code on its control socket, registers
once the "user" approves, and a factory reset brings the code back.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from integration.h3_test_server import make_pki
from integration.oauth_test_server import OAuthTestServer
from integration.test_daemon import BOB, TOKEN, WAIT, Daemon, Provider
from riptphone.control.client import format_status
from riptphone.line.login import DeviceLogin
from riptphone.line.tokens import OAuthServer
from riptphone.net.https import HttpsClient, HttpsError
from riptphone.store import StateStore

pytestmark = pytest.mark.timeout(120)


def test_https_client_speaks_to_a_trusted_server_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)

    async def main() -> None:
        server = OAuthTestServer(pki.cert_file, pki.key_file, "tok")
        await server.start()
        try:
            url = f"https://localhost:{server.port}/.well-known/ript-oauth"
            trusted = HttpsClient(pki.ca_file, timeout=5)
            response = await trusted.request("GET", url)
            assert response.status == 200 and response.content_type == "application/json"
            assert b'"token_endpoint"' in response.body
            with pytest.raises(HttpsError) as info:
                await HttpsClient(None, timeout=5).request("GET", url)
            assert info.value.kind == "tls"
            with pytest.raises(HttpsError) as info:
                await HttpsClient(pki.ca_file, timeout=5, max_body=10).request("GET", url)
            assert info.value.kind == "protocol" and "more than 10 bytes" in str(info.value)
            with pytest.raises(HttpsError) as info:
                await trusted.request("GET", "http://localhost/")
            assert info.value.kind == "protocol"
        finally:
            await server.close()
        with pytest.raises(HttpsError) as info:
            await HttpsClient(pki.ca_file, timeout=5).request("GET", url)
        assert info.value.kind == "connect"

    asyncio.run(main())


def test_the_device_flow_against_a_server(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    fed: list[Any] = []

    async def main() -> None:
        server = OAuthTestServer(pki.cert_file, pki.key_file, "tok", slow_down_first=True)
        await server.start()
        try:
            https = HttpsClient(pki.ca_file, timeout=5)
            login = DeviceLogin(
                OAuthServer(https, server.domain, "ript-phone"), "Desk phone", fed.append
            )
            # A tiny clock: the interval (1 s, then 6 s after slow_down) is waited by a
            # sleep that only advances the clock, so the test takes no time.
            now = [0.0]

            async def sleep(seconds: float) -> None:
                now[0] += seconds
                if now[0] > 12:
                    server.approve()
                await asyncio.sleep(0)

            login._clock = lambda: now[0]
            login._sleep = sleep
            done = await asyncio.wait_for(login.run(), 10)
            assert done.response.access_token == "tok"
            assert done.response.refresh_token == "refresh-1"
        finally:
            await server.close()
        device = [r for r in server.requests if r[1] == "/oauth/device"]
        assert device[0][2] == {
            "client_id": "ript-phone",
            "scope": "ript",
            "device_name": "Desk phone",
        }
        polls = [r for r in server.requests if r[1] == "/oauth/token"]
        assert len(polls) == 3  # slow_down at 1 s, pending at 7 s, tokens at 13+ s

    asyncio.run(main())
    shown = [f for f in fed if type(f).__name__ == "Provisioning"]
    assert shown and shown[0].user_code == "BCDF-GH01"
    assert shown[0].url.startswith("HTTPS://LOCALHOST:")


class OAuthThread:
    """The OAuth test server on its own loop and thread, at the provider's port over TCP."""

    def __init__(self, provider: Provider) -> None:
        ca = provider.server.ca
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = OAuthTestServer(
            ca.server_cert_file,
            ca.server_key_file,
            TOKEN,
            port=provider.server.port,
            domain=f"localhost:{provider.server.port}",
        )
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[Provider]:
    running = Provider(tmp_path / "provider")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
def oauth(provider: Provider) -> Iterator[OAuthTestServer]:
    running = OAuthThread(provider)
    try:
        yield running.server
    finally:
        running.close()


def wait_for(daemon: Daemon, check: Any) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = daemon.status()
        if check(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"never reached; last status {status}")


def test_first_boot_shows_the_code_then_registers_and_a_reset_starts_over(
    tmp_path: Path, provider: Provider, oauth: OAuthTestServer
) -> None:
    daemon = Daemon(tmp_path, provider, token=None)
    daemon.start()
    try:
        status = daemon.wait_status("provisioning")
        screen = status["screen"]
        url = f"HTTPS://LOCALHOST:{provider.server.port}/D/BCDF-GH01"
        assert screen[0] == "Not set up. Visit"
        assert "".join(screen[1:-2]) == url  # the whole QR URL, to type it in
        assert screen[-2] == "code BCDF-GH01"
        assert "code BCDF-GH01" in format_status(status)  # what `ript-phone status` prints
        assert status["registered"] is False
        assert oauth.codes[0].device_name == "Desk phone"

        oauth.approve()
        status = daemon.wait_status("idle")
        assert status["registered"] is True and status["handler"]
        handler = status["handler"]
        tokens = daemon.state_dir / "tokens.json"
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
        assert len(provider.core.handlers(BOB)) == 1

        done = subprocess.run(
            [sys.executable, "-m", "riptphone", "reset", "--yes", "--socket", str(daemon.socket)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        status = wait_for(daemon, lambda s: "code BCDF-GH02" in s["screen"])
        assert status["state"] == "provisioning"
        assert StateStore(daemon.state_dir).load_registration().data is None
        assert provider.core.handlers(BOB) == []  # deleted at the provider
        assert not (daemon.state_dir / "reset-pending").exists()

        oauth.approve()
        status = daemon.wait_status("idle")
        assert status["handler"] != handler  # a new phone as far as the provider knows
    finally:
        code, err = daemon.stop()
    assert code == 0
    assert "event=factory_reset_done" in err
    for secret in (TOKEN, "refresh-1", "refresh-2", "device-1"):
        assert secret not in err


def test_a_reset_without_a_tty_needs_yes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "riptphone", "reset", "--socket", str(tmp_path / "none.sock")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=WAIT,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 1
    assert "needs --yes" in done.stderr
