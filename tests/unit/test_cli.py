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


def test_demo_runs_the_selfcheck_until_the_phone_can_reach_a_provider() -> None:
    done = ript_phone("demo", "--verbose")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-> OpenSignalling" in done.stdout
    assert "self-check passed" in done.stdout


def test_unknown_command_is_one_clear_error() -> None:
    done = ript_phone("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr
