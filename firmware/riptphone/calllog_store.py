"""The call log in the state store: read once at start, written whenever the machine says."""

from __future__ import annotations

import asyncio
import json
import logging

from riptphone.app import calllog
from riptphone.store import StateStore, StoreError

log = logging.getLogger("riptphone.calllog")

CALL_LOG = "calllog"
"""The store record's name."""


def load_call_log(store: StateStore) -> tuple[calllog.CallLogEntry, ...]:
    """The saved entries, newest first; what cannot be read is logged and left out."""
    loaded = store.load(CALL_LOG)
    if loaded.problem:
        log.warning("event=call_log_problem problem=%r", loaded.problem)
    if loaded.data is None:
        return ()
    try:
        entries, problems = calllog.from_json(json.dumps(loaded.data))
    except calllog.CallLogError as exc:
        log.warning("event=call_log_unreadable reason=%r", str(exc))
        return ()
    for problem in problems:
        log.warning("event=call_log_entry_dropped reason=%r", problem)
    return entries


async def save_call_log(store: StateStore, entries: tuple[calllog.CallLogEntry, ...]) -> None:
    """Write the whole log (on a worker thread); a failure is logged, the phone goes on."""
    data = json.loads(calllog.to_json(entries))
    try:
        await asyncio.to_thread(store.save, CALL_LOG, data, secret=False)
    except (OSError, StoreError) as exc:
        log.error("event=call_log_not_saved reason=%r", str(exc))
