"""The ``ript-phone`` command, run as a user would."""

from __future__ import annotations

import subprocess
import sys


def ript_phone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riptphone", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_selfcheck_plays_a_whole_call_through_the_protocol_core() -> None:
    done = ript_phone("selfcheck")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "'408 952 9999' -> +14089529999" in out
    assert "PASSporT of" in out and "verified by the provider" in out
    for state in ("proceeding", "alerting", "active"):
        assert f"-> call {state}" in out
    assert "counted as an authentication failure, not played" in out
    assert "byways re-established; call still active" in out
    assert '"event": "end"' in out
    assert out.rstrip().splitlines()[-1].startswith("self-check passed: ")
    assert done.stderr == ""


def test_demo_help_says_it_makes_a_real_call() -> None:
    done = ript_phone("demo", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "make a real call over HTTP/3 to the echo far end" in out
    for option in ("--seconds", "--number", "--sound-card"):
        assert option in out


def test_unknown_command_is_one_clear_error() -> None:
    done = ript_phone("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
