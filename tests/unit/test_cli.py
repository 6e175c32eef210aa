"""The ``ript-phone`` command and the ``python -m riptdev`` developer tools, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ript_phone(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riptphone", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def riptdev(*args: str) -> subprocess.CompletedProcess[str]:
    # riptdev is not installed: it runs from the checkout with firmware/ on the path.
    path = os.pathsep.join(p for p in (str(ROOT / "firmware"), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "riptdev", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )


def test_selfcheck_plays_a_whole_call_through_the_protocol_core() -> None:
    done = riptdev("selfcheck")
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
    done = riptdev("demo", "--help")
    assert done.returncode == 0, done.stdout + done.stderr
    out = " ".join(done.stdout.split())
    assert "make a real call over HTTP/3 to the echo far end" in out
    for option in ("--seconds", "--number", "--sound-card"):
        assert option in out


def test_states_prints_the_phone_states_doc() -> None:
    done = riptdev("states")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "docs" / "phone-states.md").read_text()


def test_the_phone_command_has_no_dev_tools() -> None:
    for command in ("demo", "selfcheck"):
        done = ript_phone(command)
        assert done.returncode == 2
        assert f"invalid choice: '{command}'" in done.stderr


def test_unknown_command_is_one_clear_error() -> None:
    done = ript_phone("frobnicate")
    assert done.returncode == 2
    assert "invalid choice: 'frobnicate'" in done.stderr


# Loaded by the daemon only when needed, each for about 1 MB of memory it would
# otherwise hold for as long as it runs (docs/performance.md, "the phone's memory
# in a call"): the installed version (--version) and the TNAuthList's DER codec
# (enrolment; a phone with its certificate signs PASSporTs without it).
NOT_IN_THE_DAEMON = ("importlib.metadata", "pyasn1")


def test_the_daemon_does_not_load_what_it_needs_only_off_its_path() -> None:
    probe = (
        "import sys\n"
        "from riptphone import cli, daemon\n"
        "cli._parser().parse_args(['run', '--config', 'phone.toml'])\n"
        f"print(sorted(m for m in {NOT_IN_THE_DAEMON!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
