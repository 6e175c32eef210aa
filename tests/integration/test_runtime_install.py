"""The runtime package installed alone, as on a phone: every module imports, both commands run.

``pip install`` of a copy of the checkout (not editable, no extras) into a fresh
virtualenv, then, from outside the checkout and with no ``PYTHONPATH``: every
module of the installed ``ript``, ``riptphone`` and ``riptprovider`` packages
(found by walking them) imports, ``ript-phone --help`` and ``ript-provider
--help`` run, and neither the developer tools (``riptdev``) nor the dev extra's
packages (luma.emulator, pytest) are there.  So a developer-only import in the
runtime (as ``luma.emulator`` at the top of ``riptphone/handset.py`` was) fails
here, not on a phone.  It takes a minute or so: pip builds the package and
installs its dependencies (from pip's cache when it is warm).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ("ript", "riptphone", "riptprovider")

# Run by the fresh virtualenv's interpreter: the modules it imported, where it found
# them, and what it did not find.
PROBE = """
import importlib, importlib.util, json, pkgutil, sys

imported, failed = {}, {}
for name in ("ript", "riptphone", "riptprovider"):
    package = importlib.import_module(name)
    imported[name] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, name + "."):
        if info.name.rsplit(".", 1)[-1] == "__main__":
            continue  # importing it runs the command; --help below runs it instead
        try:
            imported[info.name] = importlib.import_module(info.name).__file__
        except Exception as exc:
            failed[info.name] = f"{type(exc).__name__}: {exc}"
present = [
    name
    for name in ("riptdev", "luma.emulator", "pytest", "hypothesis")
    if importlib.util.find_spec(name) is not None
]
print(json.dumps({"imported": imported, "failed": failed, "present": present}))
"""


def _copy_checkout(dest: Path) -> Path:
    """What ``pip install`` needs of the checkout; riptdev too, which it must leave out."""
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "firmware", dest / "firmware", ignore=junk)
    assert (dest / "firmware" / "riptdev").is_dir()
    return dest


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(args)}: {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def test_the_runtime_installs_alone_and_imports_without_dev_tools(tmp_path: Path) -> None:
    source = _copy_checkout(tmp_path / "src")
    venv = tmp_path / "venv"
    bin_dir = venv / "bin"
    # No PYTHONPATH (pytest's firmware/ and tests/ are on its own sys.path only), no
    # virtualenv of the caller's: only what pip installed is importable.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    work = tmp_path / "elsewhere"  # not the checkout: its firmware/ must not be found
    work.mkdir()

    started = time.monotonic()
    _run([sys.executable, "-m", "venv", str(venv)], env, work, 120)
    _run([str(bin_dir / "pip"), "install", "-q", str(source)], env, work, 900)
    installed = time.monotonic() - started

    probe = json.loads(_run([str(bin_dir / "python"), "-c", PROBE], env, work, 300))
    assert probe["failed"] == {}, f"runtime modules that do not import: {probe['failed']}"
    assert probe["present"] == [], f"dev-only packages in a plain install: {probe['present']}"
    imported: dict[str, str] = probe["imported"]
    site = str(venv)
    outside = {name: path for name, path in imported.items() if not path.startswith(site)}
    assert outside == {}, f"imported from outside the virtualenv: {outside}"
    # The walk found the whole runtime: every module of the checkout's three packages.
    expected = {
        ".".join(path.relative_to(ROOT / "firmware").with_suffix("").parts).removesuffix(
            ".__init__"
        )
        for package in RUNTIME
        for path in (ROOT / "firmware" / package).rglob("*.py")
        if path.stem != "__main__"
    }
    assert set(imported) == expected
    assert {"riptphone.daemon", "riptphone.handset", "riptprovider.server"} <= set(imported)

    phone_help = _run([str(bin_dir / "ript-phone"), "--help"], env, work, 60)
    assert "run" in phone_help and "demo" not in phone_help and "selfcheck" not in phone_help
    provider_help = _run([str(bin_dir / "ript-provider"), "--help"], env, work, 60)
    assert "serve" in provider_help
    print(f"installed in {installed:.0f} s; {len(imported)} runtime modules imported")
