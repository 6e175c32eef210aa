"""The one strict TOML reader both programs' configuration loaders use.

Strict: a file that is not UTF-8, not TOML, or that holds a key or section
the loader does not know is refused with one sentence naming it, so a typo
never silently becomes a default.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class TomlError(ValueError):
    """The file cannot be used; the message is one sentence naming the file, key or section."""


def read_toml(path: Path) -> dict[str, Any]:
    """The decoded document at ``path``; messages start with the path."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise TomlError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TomlError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(f"{path}: not valid TOML: {exc}") from None


def check_sections(doc: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse the first section of ``doc`` that is not ``known`` (in sorted order)."""
    names = list(known)
    unknown = sorted(set(doc) - set(names))
    if unknown:
        raise TomlError(f"[{unknown[0]}]: unknown section (known: {', '.join(names)})")


def check_keys(section: str, table: object, known: Iterable[str]) -> Mapping[str, Any]:
    """``table`` as a mapping, refusing a non-table or its first unknown key."""
    if not isinstance(table, Mapping):
        raise TomlError(f"[{section}]: must be a table of keys")
    names = sorted(known)
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise TomlError(f"[{section}] {unknown[0]}: unknown key (known: {', '.join(names)})")
    return table
