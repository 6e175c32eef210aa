"""``ript-phone diagnose`` against a real provider: every section, reachability, no secret."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from riptdev.processes import phone_config, stop_process, write_secret
from riptphone.diagnose import redact

from .procs import TOKEN, provider_process

pytestmark = pytest.mark.e2e


def test_the_report_covers_everything_and_holds_no_secret(tmp_path: Path) -> None:
    provider = provider_process(tmp_path / "provider")
    try:
        state = tmp_path / "state"
        state.mkdir(mode=0o700)
        write_secret(state / "token", TOKEN)
        config = tmp_path / "phone.toml"
        config.write_text(
            phone_config(provider, state_dir=state, control_socket=tmp_path / "control.sock")
        )
        out = tmp_path / "report.txt"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "riptphone",
                "diagnose",
                "--config",
                str(config),
                "--out",
                str(out),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        stop_process(provider.process)
    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    report = out.read_text()
    for title in (
        "versions",
        "configuration",
        "state",
        "audio",
        "devices",
        "provider reachability",
        "log",
    ):
        assert f"== {title}\n" in report
    assert "ript-phone " in report and "aioquic " in report
    assert f"[provider] domain = '{provider.domain}'" in report
    assert "token 0 bytes" not in report and "  token " in report  # listed, never read out
    assert "DNS: 127.0.0.1" in report or "DNS: ::1" in report
    assert "QUIC (UDP): HTTP/3 handshake in" in report
    assert TOKEN not in report


def test_redaction() -> None:
    text = (
        "authorization: Bearer abc.def-ghi\n"
        '{"access_token": "s3cr3t", "refresh_token":"r3fr3sh"}\n'
        "password=hunter2 psk = wifi-pass\n"
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"
        "event=started handler=https://p.example/h/1\n"
    )
    clean = redact(text)
    for secret in ("abc.def-ghi", "s3cr3t", "r3fr3sh", "hunter2", "wifi-pass", "MHcCAQEE"):
        assert secret not in clean
    assert "event=started handler=https://p.example/h/1" in clean
