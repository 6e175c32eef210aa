"""The one atomic, power-safe file write both programs use.

A power cut (or SIGKILL) at any moment leaves either the old file or the new
one, never a mix or an empty file: the data goes to a temporary file in the
same directory, which is created with its final mode (a secret is never
readable by others, not even for a moment), written whole and ``fsync``-ed,
then renamed onto the target, and the directory is ``fsync``-ed so that the
rename itself survives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

TEMP_MARK = ".tmp-"
"""Temporary files are ``.<name><TEMP_MARK><hex>``: a reader of the directory can tell them."""


def temp_path(target: Path) -> Path:
    """A fresh temporary name beside ``target`` (never reused, so a leftover is never reopened)."""
    return target.with_name(f".{target.name}{TEMP_MARK}{secrets.token_hex(8)}")


def atomic_write(target: Path, data: bytes, mode: int = 0o600, *, temp: Path | None = None) -> None:
    """Put ``data`` at ``target`` with ``mode``; see the module docstring.

    ``temp``: the temporary file's name (default :func:`temp_path`); it must be in
    ``target``'s directory and must not exist.  The directory must exist.
    """
    temp = temp if temp is not None else temp_path(target)
    fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, mode & 0o600)
    try:
        try:
            os.fchmod(fd, mode)  # exact mode whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            # Data on the disk before the rename: otherwise a power cut after the
            # rename can leave the new name pointing at an empty or partial file.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    sync_directory(target.parent)


def sync_directory(directory: Path) -> None:
    """``fsync`` a directory: a rename or unlink in it lasts through a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
