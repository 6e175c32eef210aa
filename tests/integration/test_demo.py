"""``ript-phone demo`` as a user runs it: a real provider, a real daemon, a real call."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path


def test_demo_makes_a_call_whose_audio_makes_the_round_trip() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "riptphone", "demo", "--seconds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "call states: calling -> in-call -> ended -> idle" in out
    assert "codec: OPUS" in out
    tone = re.search(r"1000 Hz test tone found in the playback .*level (\S+) at 1000 Hz", out)
    assert tone is not None, out
    assert float(tone.group(1)) > 1e6
    assert out.rstrip().splitlines()[-1].startswith("demo passed")

    # Both children are gone: the provider's UDP port is free again, and the
    # daemon's control socket (removed on a clean exit) with it.
    port = re.search(r"provider ready on udp 127\.0\.0\.1:(\d+)", out)
    assert port is not None, out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", int(port.group(1))))
    work = re.search(r"work folder (\S+)", out)
    assert work is not None, out
    assert not (Path(work.group(1)) / "control.sock").exists()
    assert not (Path(work.group(1)) / "phone-state" / "token").exists()
    assert Path(work.group(1), "playback.raw").stat().st_size > 0
    shutil.rmtree(work.group(1))


def test_a_call_that_is_not_answered_fails_with_one_clear_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "riptphone", "demo", "--number", "+14089520002"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "ript-phone demo: the call to +14089520002 ended without being answered "
        "(calling -> ended -> idle)"
    )
    assert "call declined" in done.stdout
    port = re.search(r"provider ready on udp 127\.0\.0\.1:(\d+)", done.stdout)
    assert port is not None, done.stdout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", int(port.group(1))))
    work = re.search(r"work folder (\S+)", done.stdout)
    assert work is not None, done.stdout
    shutil.rmtree(work.group(1))
