"""What can be checked here of the image recipe and the packaging scripts (they run elsewhere).

The image itself is built on an arm64 host (provisioning/image/build.sh, docs/install.md);
here: every shell script passes shellcheck, the rpi-image-gen configuration and layer parse
and name each other, and the first-boot unit verifies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "provisioning" / "image"
SCRIPTS = [
    ROOT / "run",
    ROOT / ".ci" / "run",
    ROOT / "provisioning" / "deb" / "build.sh",
    IMAGE / "build.sh",
    *sorted((ROOT / "provisioning" / "deb").glob("*.post*")),
    *sorted((ROOT / "provisioning" / "deb").glob("*.prerm")),
]


def _missing(why: str) -> None:
    """Skip on a developer's machine without the tool; in CI a missing tool is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must have it: {why}")
    pytest.skip(why)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        _missing("shellcheck is not installed (./run installs it)")
    done = subprocess.run(["shellcheck", str(script)], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_config_names_the_layer_and_a_device() -> None:
    config = yaml.safe_load((IMAGE / "config" / "ript-phone.yaml").read_text())
    assert config["layer"]["app"] == "ript-phone"
    assert config["device"]["layer"] == "rpi5"
    assert config["include"]["file"].startswith("bookworm")  # the .deb's Python is bookworm's
    assert config["riptphone"]["sound_overlay"] == ""


def test_the_layer_installs_the_package_and_sets_up_the_board() -> None:
    text = (IMAGE / "layer" / "ript-phone.yaml").read_text()
    meta = dict(re.findall(r"^# (X-Env-[\w-]+): ?(.*)$", text, re.MULTILINE))
    assert meta["X-Env-Layer-Name"] == "ript-phone"
    assert meta["X-Env-VarPrefix"] == "riptphone"
    layer = yaml.safe_load(text.split("# METAEND", 1)[1])
    hooks = "\n".join(layer["mmdebstrap"]["customize-hooks"])
    assert "apt-get install -y /tmp/debs/ript-phone_" in hooks
    assert "dtparam=i2c_arm=on" in hooks
    assert "$IGconf_riptphone_sound_overlay" in hooks
    assert "/boot/firmware/ript-phone.toml" in hooks
    assert "enable-units" in hooks and "ript-phone-firstboot" in hooks
    for copied in re.findall(r"install -m 0644 (\S+) ", hooks):
        assert (IMAGE / copied).resolve().is_file(), copied


def test_the_first_boot_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        _missing("systemd-analyze is not installed (./run installs systemd)")
    unit = (ROOT / "systemd" / "ript-phone-firstboot.service").read_text()
    assert "riptphone.boot_file wifi" in unit
    copy = tmp_path / "ript-phone-firstboot.service"
    copy.write_text(unit.replace("/opt/ript-phone/bin/python3", sys.executable))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(copy)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_the_packages_lock_pins_every_runtime_dependency() -> None:
    """provisioning/deb/requirements.lock (build.sh --update-lock) follows pyproject.toml."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = (ROOT / "provisioning" / "deb" / "requirements.lock").read_text()
    pinned = {
        re.split(r"[=;\s]", line, maxsplit=1)[0].lower().replace("_", "-")
        for line in lock.splitlines()
        if line and not line.startswith("#")
    }
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=!~;\[\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name}: run provisioning/deb/build.sh --update-lock"
    assert all("==" in line for line in lock.splitlines() if line and not line.startswith("#"))
