"""Log lines carry syslog priorities when stderr is the journal (JOURNAL_STREAM), else key=value."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from riptphone import logs


@pytest.fixture(autouse=True)
def _restore_root() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(tmp_path: Path, environ: dict[str, str] | None) -> list[str]:
    path = tmp_path / "stderr"
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"} if environ is None else environ
        logs.configure("debug", stream, env)
        log = logging.getLogger("riptphone.test")
        log.error("event=boom reason=%r", "disk full")
        log.warning("event=offline")
        log.info("event=started")
        log.debug("event=detail")
        try:
            raise ValueError("x")
        except ValueError:
            log.exception("event=crash")
        stream.flush()
    return path.read_text().splitlines()


def test_journal_lines_start_with_their_priority(tmp_path: Path) -> None:
    lines = emit(tmp_path, None)
    assert lines[0] == "<3>level=ERROR logger=riptphone.test event=boom reason='disk full'"
    assert lines[1].startswith("<4>level=WARNING")
    assert lines[2].startswith("<6>level=INFO")
    assert lines[3].startswith("<7>level=DEBUG")
    crash = lines[4:]
    assert crash[0].startswith("<3>") and len(crash) > 2
    assert all(line.startswith("<3>") for line in crash)  # the traceback stays at err


def test_elsewhere_lines_keep_key_value_with_a_time(tmp_path: Path) -> None:
    lines = emit(tmp_path, {})
    assert (
        lines[0].startswith("ts=") and " level=ERROR logger=riptphone.test event=boom" in lines[0]
    )
    assert not any(line.startswith("<") for line in lines)


def test_another_streams_journal_variable_is_not_ours(tmp_path: Path) -> None:
    lines = emit(tmp_path, {"JOURNAL_STREAM": "1:2"})
    assert lines[0].startswith("ts=")


def test_the_level_changes_live(tmp_path: Path) -> None:
    logs.configure("warning", (tmp_path / "x").open("w"), {})
    assert not logging.getLogger("a").isEnabledFor(logging.INFO)
    logs.set_level("debug")
    assert logging.getLogger("a").isEnabledFor(logging.DEBUG)
