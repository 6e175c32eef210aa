"""The phone's HTTPS/1.1 client at its edges, against an in-test server; ``reset``'s --yes.

An in-test OAuth server (:mod:`integration.oauth_test_server`, HTTPS/1.1 on
loopback with a test CA) lets the client meet what the reference provider
never does: an untrusted certificate, an answer over the size limit, a
server gone.  The login itself, against the real provider and the real
daemon, is :mod:`integration.test_login_e2e`.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integration.h3_test_server import make_pki
from integration.oauth_test_server import OAuthTestServer
from integration.test_daemon import WAIT
from riptphone.net.https import HttpsClient, HttpsError

pytestmark = pytest.mark.timeout(120)


def test_https_client_speaks_to_a_trusted_server_only(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)

    async def main() -> None:
        server = OAuthTestServer(pki.cert_file, pki.key_file)
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
