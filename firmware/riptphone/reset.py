"""Factory reset of the state directory, safe against a power cut in the middle.

A reset first writes the marker ``<state_dir>/reset-pending`` (atomically),
then does its work (the handler deleted at the provider, best effort), then
wipes the state directory (:func:`wipe`): every record of the store (tokens,
registration, identity, call log); the marker goes last.  The lab token file
(``<state_dir>/token``, docs/daemon.md) is the operator's, like the
configuration file, and stays: a lab phone registers again with it instead of
showing a login code.  A daemon that starts and finds the marker finishes the wipe before
anything else (:func:`finish_pending`), so a phone whose plug was pulled
half-way never comes up half-reset.  Blocking file I/O: call through
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging

from ript.atomic import atomic_write, sync_directory
from riptphone.store import StateStore

log = logging.getLogger("riptphone.reset")

MARKER = "reset-pending"


def mark(store: StateStore) -> None:
    """Say that a reset has begun; it lasts through a power cut."""
    atomic_write(store.directory / MARKER, b"reset\n", 0o600)


def pending(store: StateStore) -> bool:
    return (store.directory / MARKER).exists()


def wipe(store: StateStore) -> None:
    """Forget everything the phone knows; the marker is removed last."""
    store.wipe()
    with contextlib.suppress(FileNotFoundError):
        (store.directory / MARKER).unlink()
    sync_directory(store.directory)


def finish_pending(store: StateStore) -> bool:
    """At start: finish a reset a power cut interrupted; True if there was one."""
    if not pending(store):
        return False
    log.warning("event=reset_resumed reason=%r", "a factory reset was interrupted")
    wipe(store)
    return True
