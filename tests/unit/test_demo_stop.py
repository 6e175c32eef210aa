"""How the interactive demo tells the user's Ctrl-C from a phone that stopped by itself.

The phone shares the demo's terminal, so a Ctrl-C reaches both; when the phone stops
(and closes the watch) before the demo has acted on its own SIGINT, the phone's log
line ``event=stopping signal=SIGINT`` is what says the stop was the user's.
"""

from __future__ import annotations

from pathlib import Path

from riptdev.demo import stopped_on_sigint

STARTED = "ts=x level=INFO logger=riptphone.daemon event=started socket=s provider=p\n"


def test_a_phone_stopped_by_ctrl_c_is_the_users_stop(tmp_path: Path) -> None:
    log = tmp_path / "phone.log"
    log.write_text(
        STARTED + "ts=x level=INFO logger=riptphone.daemon event=stopping signal=SIGINT\n"
    )
    assert stopped_on_sigint(log)


def test_a_phone_stopped_otherwise_is_not(tmp_path: Path) -> None:
    log = tmp_path / "phone.log"
    assert not stopped_on_sigint(log)  # no log at all
    log.write_text(STARTED)
    assert not stopped_on_sigint(log)  # crashed: no stopping line
    log.write_text(
        STARTED + "ts=x level=INFO logger=riptphone.daemon event=stopping signal=SIGTERM\n"
    )
    assert not stopped_on_sigint(log)  # someone else's SIGTERM
    # A log appended to across runs: the last stop counts.
    log.write_text(
        STARTED
        + "ts=x event=stopping signal=SIGINT\n"
        + STARTED
        + "ts=x event=stopping signal=SIGTERM\n"
    )
    assert not stopped_on_sigint(log)
