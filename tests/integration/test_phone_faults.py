"""Faults the phone meets in the field: a state store that cannot be written, a bad CA file.

Issue #14 rows 1 and 2: before, a failed save ended the phone's online task silently (and
left a ghost handler per attempt at the provider), and a missing or garbled ``ca_file`` was
a traceback with exit status 1.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from riptdev.processes import phone_config, stop_process, write_secret

from .procs import NUMBER, TOKEN, ProviderDb, ProviderProcess, provider_process

pytestmark = pytest.mark.e2e

RUN = ("-m", "riptphone", "run", "--config")


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> ProviderProcess:
    running = provider_process(tmp_path_factory.mktemp("provider"))
    yield running  # type: ignore[misc]
    stop_process(running.process)


def status(socket: Path) -> dict[str, object]:
    import json

    done = subprocess.run(
        [sys.executable, "-m", "riptphone", "status", "--json", "--socket", str(socket)],
        capture_output=True,
        text=True,
        check=False,
        timeout=15,
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def test_a_state_store_that_cannot_be_written_is_one_line_per_retry_and_no_ghost(
    tmp_path: Path, provider: ProviderProcess
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    write_secret(state / "token", TOKEN)
    socket = tmp_path / "control.sock"
    config = tmp_path / "phone.toml"
    config.write_text(phone_config(provider, state_dir=state, control_socket=socket, number=NUMBER))
    db = ProviderDb(provider)
    handlers_before = db.handlers()
    process = subprocess.Popen(
        # `ulimit -f 0`: any write that grows a file fails with EFBIG (Python ignores
        # SIGXFSZ), as on a full SD card.
        ["sh", "-c", 'ulimit -f 0 && exec "$0" "$@"', sys.executable, *RUN, str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # a pipe: its writes are not file writes
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(process.stderr.readline, "")),
        daemon=True,  # type: ignore[union-attr]
    )
    reader.start()
    try:
        deadline = time.monotonic() + 30
        shown: dict[str, object] = {}
        while time.monotonic() < deadline:
            shown = status(socket)
            if (
                shown.get("reason") == "cannot save state"
                and len([line for line in lines if "event=offline" in line]) >= 3
            ):
                break
            time.sleep(0.3)
        assert shown.get("state") == "offline" and shown.get("reason") == "cannot save state"
        assert process.poll() is None  # still running, still retrying
        offline = [line for line in lines if "event=offline" in line]
        assert len(offline) >= 3 and all("\n" not in line.rstrip("\n") for line in offline)
        # Every retry re-registered the same handler id: at most one new handler.
        assert len(db.handlers()) - len(handlers_before) <= 1
    finally:
        code = stop_process(process)
        db.close()
    assert code == 0  # SIGTERM is clean (it used to exit 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot read"), (b"this is not a certificate\n", "is not a PEM certificate file")],
)
def test_a_missing_or_garbled_ca_file_is_one_line_and_exit_2(
    tmp_path: Path, provider: ProviderProcess, content: bytes | None, message: str
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_bytes(content)
    config = tmp_path / "phone.toml"
    text = phone_config(
        provider, state_dir=tmp_path / "state", control_socket=tmp_path / "c.sock"
    ).replace(provider.ca_file, str(ca))
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "riptphone", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "[provider] ca_file" in lines[0] and message in lines[0], done.stderr
