"""The protocol core does no I/O: it imports no networking, threading or hardware library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL = Path(__file__).resolve().parents[2] / "firmware" / "riptphone" / "protocol"
FORBIDDEN = {
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


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


MODULES = sorted(PROTOCOL.glob("*.py"))


def test_the_protocol_package_has_its_modules() -> None:
    names = {p.stem for p in MODULES}
    assert {"events", "jsonstream", "descriptions", "advertisement", "chunks", "call"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_io_imports(path: Path) -> None:
    assert imported_roots(path) & FORBIDDEN == set()
