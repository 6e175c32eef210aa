"""The units in systemd/: `systemd-analyze verify` clean, the phone's exposure at most 2.0.

`verify` needs the unit's programs to exist, so it runs on a copy whose ExecStart points at
this checkout's `ript-phone`/`ript-provider` instead of /opt/ript-phone/bin (nothing else
changes); the installed package is verified as it is by tests/integration/test_deb.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _systemd_analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        if os.environ.get("CI"):  # CI must check the units: ./run installs systemd
            pytest.fail("systemd-analyze is not installed")
        pytest.skip("systemd-analyze is not installed")


def exposure(unit: Path) -> tuple[float, list[str]]:
    """The overall exposure and the names of the settings marked exposed (✗)."""
    out = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert level is not None, out
    exposed = [m.group(1) for m in re.finditer(r"^✗ (\S+?)=", out, re.MULTILINE)]
    return float(level.group(1)), exposed


@pytest.mark.parametrize("name", ["ript-phone.service", "ript-provider.service"])
def test_the_unit_verifies_clean(name: str, tmp_path: Path) -> None:
    text = (UNITS / name).read_text()
    assert "/opt/ript-phone/bin/" in text
    copy = tmp_path / name
    copy.write_text(text.replace("/opt/ript-phone/bin/", f"{BIN}/"))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr.strip() == "" and done.stdout.strip() == "", (
        done.stdout + done.stderr
    )


def test_the_phone_is_exposed_at_most_2_0_and_says_why_for_each_item() -> None:
    unit = UNITS / "ript-phone.service"
    level, exposed = exposure(unit)
    assert level <= 2.0
    text = unit.read_text()
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for setting in exposed:
        # RestrictAddressFamilies=~AF_UNIX and the like name their family in the comment.
        assert setting.split("=")[0] in comments, f"{setting} is exposed without a comment"


def test_the_provider_is_hardened_too() -> None:
    level, _exposed = exposure(UNITS / "ript-provider.service")
    assert level <= 2.0


def test_the_phone_unit_has_what_the_daemon_relies_on() -> None:
    text = (UNITS / "ript-phone.service").read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitBurst=",
        "StateDirectory=ript-phone",
        "RuntimeDirectory=ript-phone",
        "ConfigurationDirectory=ript-phone",
        "User=ript-phone",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text
