"""The daemon's log lines: ``key=value``, and syslog priorities when stderr is the journal.

Under systemd, stderr is a stream to journald and ``$JOURNAL_STREAM`` names it
(``device:inode``).  Then each line starts with its syslog priority (``<3>``
for an error, sd-daemon(3)), so ``journalctl -p err`` finds the errors, and
the time stamp is left to the journal.  Anywhere else the lines keep their
``ts=... level=...`` form.  Secrets never reach these lines: callers log
reasons, never tokens or keys.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# sd-daemon(3) / syslog(3) priorities.
PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}
PLAIN = "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
JOURNAL = "level=%(levelname)s logger=%(name)s %(message)s"


class JournalFormatter(logging.Formatter):
    """``<N>`` + the line, N the record's syslog priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL)

    def format(self, record: logging.LogRecord) -> str:
        priority = 7  # DEBUG and anything below it
        for level, value in sorted(PRIORITIES.items()):
            if record.levelno >= level:  # a custom level takes the standard one below it
                priority = value
        # Every line of a multi-line record (a traceback) keeps the priority.
        return "\n".join(f"<{priority}>{line}" for line in super().format(record).splitlines())


def to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd set up for this service."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def configure(
    level: str, stream: TextIO | None = None, environ: Mapping[str, str] | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) at ``level``; the handler."""
    out = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        JournalFormatter() if to_journal(out, environ) else logging.Formatter(PLAIN)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """Change the log level (SIGHUP applies ``[log] level`` this way)."""
    logging.getLogger().setLevel(level.upper())
