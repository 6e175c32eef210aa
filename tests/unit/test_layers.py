"""The layers of firmware/: what each package may import (docs/architecture.md).

* ``ript`` (shared by both programs) imports neither program, and does no I/O:
  no networking, threads, processes or hardware.  Its one native library is
  libopus (through opuslib, in ``ript/media/opus_codec.py``): computation, not I/O.
* ``riptphone`` and ``riptprovider`` import ``ript`` and themselves, never each other.
* ``riptdev`` (the demo, the self-check, the screen gallery) may import anything;
  nothing else imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
IO_LIBRARIES = {
    "asyncio",
    "socket",
    "ssl",
    "threading",
    "selectors",
    "subprocess",
    "aioquic",
    "paho",
    "alsaaudio",
    "opuslib",
    "gpiozero",
    "luma",
}
PROGRAMS = {"riptphone", "riptprovider", "riptdev"}
ALLOWED_NATIVE = {FIRMWARE / "ript" / "media" / "opus_codec.py": {"opuslib"}}


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every absolute import in ``path``, at any depth (lazy ones too)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def modules(package: str) -> list[Path]:
    return sorted((FIRMWARE / package).rglob("*.py"))


def _id(path: Path) -> str:
    return str(path.relative_to(FIRMWARE))


def test_the_packages_have_their_modules() -> None:
    protocol = {p.stem for p in (FIRMWARE / "ript" / "protocol").glob("*.py")}
    assert {"events", "jsonstream", "descriptions", "advertisement", "chunks", "call"} <= protocol
    assert (FIRMWARE / "ript" / "media" / "codecs.py").exists()
    for package in ("ript", "riptphone", "riptprovider", "riptdev"):
        assert modules(package), package


@pytest.mark.parametrize("path", modules("ript"), ids=_id)
def test_the_shared_core_imports_neither_program_nor_io(path: Path) -> None:
    roots = imported_roots(path)
    assert roots & PROGRAMS == set()
    assert roots & IO_LIBRARIES <= ALLOWED_NATIVE.get(path, set())


@pytest.mark.parametrize("path", modules("riptphone"), ids=_id)
def test_the_phone_does_not_import_the_provider_or_dev_tools(path: Path) -> None:
    assert imported_roots(path) & {"riptprovider", "riptdev"} == set()


@pytest.mark.parametrize("path", modules("riptprovider"), ids=_id)
def test_the_provider_does_not_import_the_phone_or_dev_tools(path: Path) -> None:
    assert imported_roots(path) & {"riptphone", "riptdev"} == set()


def test_the_checker_sees_lazy_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from riptprovider import core\n    import luma.emulator\n")
    assert imported_roots(source) == {"riptprovider", "luma"}


def test_one_name_per_concept() -> None:
    """No class name is defined twice in firmware/: the same name never means two things."""
    where: dict[str, list[str]] = {}
    for package in ("ript", "riptphone", "riptprovider", "riptdev"):
        for path in modules(package):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    where.setdefault(node.name, []).append(_id(path))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
