"""The Debian packages: built by provisioning/deb/build.sh, installed with dpkg on this machine,
checked (files, modes, user, units, the installed program), upgraded in place keeping the
phone's state, then purged.

Installing needs root and a machine where ript-phone is not already installed; CI is both.
Elsewhere the test builds and inspects the packages and skips the installation.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "provisioning" / "deb" / "build.sh"
VERSION = metadata.version("ript-phone")
SITE = "/opt/ript-phone/lib/python{0}.{1}/site-packages"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("dpkg-deb") is None or not Path("/usr/bin/python3").exists(),
        reason="needs dpkg-deb and Debian's python3",
    ),
]


def run(*command: str | Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], check=False, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    out = tmp_path_factory.mktemp("dist")
    # The fastest xz level: at the default level compressing the venv was most of the
    # build (over two minutes on a loaded machine); what is packed is the same.
    lines = run(BUILD, out, env={**os.environ, "DEB_XZ_LEVEL": "0"}).split()
    built = {Path(line).name.split("_")[0]: Path(line) for line in lines if line.endswith(".deb")}
    arch = run("dpkg", "--print-architecture").strip()
    assert set(built) == {"ript-phone", "ript-provider"}
    for name, path in built.items():
        assert path.name == f"{name}_{VERSION}_{arch}.deb"
    yield built


def test_the_packages_hold_what_they_should(packages: dict[str, Path]) -> None:
    phone = run("dpkg-deb", "--contents", packages["ript-phone"])
    for path in (
        "./opt/ript-phone/bin/ript-phone",
        "./opt/ript-phone/bin/ript-provider",
        "./opt/ript-phone/bin/python3",
        "./usr/bin/ript-phone -> /opt/ript-phone/bin/ript-phone",
        "./lib/systemd/system/ript-phone.service",
        "./etc/ript-phone/phone.toml",
        "./usr/share/doc/ript-phone/requirements.lock",
    ):
        assert path in phone, path
    assert "riptdev" not in phone  # dev tools never reach a phone
    # The bytecode ships compiled: the daemon cannot write it, and compiling at each start
    # costs memory and time (build.sh).
    site = SITE.format(*_python_version())
    for module in ("riptphone/__pycache__/daemon", "aioquic/quic/__pycache__/connection"):
        assert f".{site}/{module}.cpython-{''.join(_python_version())}.pyc" in phone, module
    assert "root/root" in phone.splitlines()[0]
    fields = run("dpkg-deb", "--field", packages["ript-phone"], "Package", "Version")
    assert fields.split() == ["Package:", "ript-phone", "Version:", VERSION]
    conffiles = run("dpkg-deb", "--info", packages["ript-phone"], "conffiles")
    assert conffiles.strip() == "/etc/ript-phone/phone.toml"
    provider = run("dpkg-deb", "--contents", packages["ript-provider"])
    assert "./lib/systemd/system/ript-provider.service" in provider
    assert "./opt/ript-phone/bin" not in provider  # the program comes with ript-phone
    depends = run("dpkg-deb", "--field", packages["ript-provider"], "Depends")
    assert f"ript-phone (= {VERSION})" in depends


def _python_version() -> tuple[str, str]:
    """Debian's python3's major and minor version, the one the package is built for."""
    major, minor = run("/usr/bin/python3", "-c", "import sys; print(*sys.version_info[:2])").split()
    return major, minor


def _installable() -> str | None:
    if os.geteuid() != 0:
        return "installing needs root"
    installed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "ript-phone"],
        check=False,
        capture_output=True,
        text=True,
    )
    if "installed" in installed.stdout:
        return "ript-phone is already installed on this machine"
    return None


def test_install_upgrade_and_purge(packages: dict[str, Path]) -> None:
    why = _installable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install the package: {why}")
        pytest.skip(why)
    try:
        run("dpkg", "-i", packages["ript-phone"], packages["ript-provider"])
        user = pwd.getpwnam("ript-phone")
        assert user.pw_dir == "/var/lib/ript-phone"
        groups = {g.gr_name for g in grp.getgrall() if "ript-phone" in g.gr_mem}
        assert groups <= {"audio", "gpio", "i2c", "spi"}
        if "audio" in {g.gr_name for g in grp.getgrall()}:
            assert "audio" in groups
        config = Path("/etc/ript-phone/phone.toml").stat()
        assert stat.S_IMODE(config.st_mode) == 0o640
        assert grp.getgrgid(config.st_gid).gr_name == "ript-phone"
        wants = Path("/etc/systemd/system/multi-user.target.wants")
        assert (wants / "ript-phone.service").is_symlink()
        assert (wants / "ript-provider.service").is_symlink()
        for program in ("/opt/ript-phone/bin/ript-phone", "/usr/bin/ript-phone"):
            assert run(program, "--version").strip() == f"ript-phone {VERSION}"
        assert run("/usr/bin/ript-provider", "--version").strip() == f"ript-provider {VERSION}"
        # The shipped bytecode is what Python uses: importing the daemon (as root, who could
        # rewrite a stale file) changes none of it, and tracebacks name the installed files.
        site = Path(SITE.format(*_python_version()))
        before = {p: p.stat().st_mtime_ns for p in site.rglob("*.pyc")}
        probe = "import riptphone.daemon as d; print(d.main.__code__.co_filename)"
        unset = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        shown = run("/opt/ript-phone/bin/python3", "-c", probe, env=env).strip()
        assert shown == str(site / "riptphone" / "daemon.py")
        assert {p: p.stat().st_mtime_ns for p in site.rglob("*.pyc")} == before
        # The installed unit verifies as it is, with its real paths.
        verify = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", "/lib/systemd/system/ript-phone.service"],
            check=False,
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0 and verify.stderr.strip() == "", verify.stderr
        # An upgrade (the same package again) keeps the phone's state and a changed conffile.
        state = Path("/var/lib/ript-phone")
        state.mkdir(mode=0o700, exist_ok=True)
        (state / "registration.json").write_text("{}")
        Path("/etc/ript-phone/phone.toml").write_text(
            Path("/etc/ript-phone/phone.toml").read_text() + "\n# changed here\n"
        )
        run("dpkg", "--force-confold", "-i", packages["ript-phone"])
        assert (state / "registration.json").read_text() == "{}"
        assert "# changed here" in Path("/etc/ript-phone/phone.toml").read_text()
    finally:
        subprocess.run(
            ["dpkg", "--purge", "ript-provider", "ript-phone"], check=False, capture_output=True
        )
    assert not Path("/opt/ript-phone").exists()
    assert not Path("/var/lib/ript-phone").exists()
    assert not Path("/etc/ript-phone").exists()
    assert not Path("/etc/systemd/system/multi-user.target.wants/ript-phone.service").exists()
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", "ript-phone"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert "installed" not in status.stdout or "not-installed" in status.stdout
