"""Building blocks for running ``ript-provider`` and ``ript-phone`` as real processes.

The demo (:mod:`riptdev.demo`), the end-to-end tests (``tests/integration``)
and the call benchmark (``tests/bench``) start their processes with these:
:func:`start_provider` (on a configuration text, with a free UDP port, returns
once the provider logged ``ready:``), :func:`phone_config` and
:func:`start_phone`, :func:`wait_for_state` (polls the phone's control socket),
:func:`stop_process`; and the test tone: :func:`tone_pcm` makes it,
:func:`tone_levels` and :func:`tone_found` measure it in what a call played.
Both programs run as ``python -m`` of the running interpreter, so a checkout
works without an install.  A process that exits early, or does not get ready
in time, is a :class:`ProcessError` (its log is copied to stderr first).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ript.media.tones import ToneGenerator, ToneSpec, goertzel
from riptphone.control.client import ControlClientError, request

TONE_HZ: Final = 1000
OTHER_HZ: Final = 440
WAIT: Final = 20.0
"""Seconds to wait for a process to be ready or a state to be reached."""


class ProcessError(Exception):
    """One sentence for the user: why a process did not start or reach a state."""


def free_udp_port() -> int:
    """A port number on 127.0.0.1 free a moment ago on UDP and on TCP.

    The provider listens on both (HTTP/3 and, for the login, HTTPS/1.1).
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` mode 0600 (created so, never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def show_log(log: Path, who: str) -> None:
    """Copy a child's log to stderr (when a start fails, that is where the reason is)."""
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    if text:
        print(f"--- {who}'s stderr ---\n{text}\n---", file=sys.stderr, flush=True)


def wait_for_line(
    process: subprocess.Popen[bytes], log: Path, needle: str, who: str, wait: float = WAIT
) -> str:
    """The first line of ``log`` holding ``needle``; ProcessError if the process exits first."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        if process.poll() is not None:
            show_log(log, who)
            raise ProcessError(f"{who} exited with status {process.returncode} before ready")
        time.sleep(0.05)
    show_log(log, who)
    raise ProcessError(f"{who} was not ready within {wait:.0f} s")


@dataclass(slots=True)
class ProviderProcess:
    """A running ``ript-provider serve``: its process, log, port and CA file."""

    process: subprocess.Popen[bytes]
    log: Path
    config: Path
    port: int
    ca_file: str

    @property
    def domain(self) -> str:
        return f"localhost:{self.port}"


def provider_command(config: Path, log_level: str = "info") -> list[str]:
    """The command line of ``ript-provider serve`` on ``config`` (this interpreter)."""
    return [
        sys.executable,
        "-m",
        "riptprovider",
        "serve",
        "--config",
        str(config),
        "--log-level",
        log_level,
    ]


def start_provider(
    work: Path,
    config_text: str,
    *,
    name: str = "provider",
    wait: float = WAIT,
    new_session: bool = False,
    log_level: str = "info",
) -> ProviderProcess:
    """Run ``ript-provider serve`` on ``config_text`` with a free port; return once ready.

    The ``port = N`` line of the text is replaced; the file is written 0600 (it holds
    tokens) as ``work/NAME.toml`` and the log goes to ``work/NAME.log``.  With
    ``new_session`` the provider does not share the terminal's process group, so a
    Ctrl-C typed there reaches only the caller, which then stops it.  ``log_level``
    is ``serve --log-level``.
    """
    port = free_udp_port()
    text, found = re.subn(r"(?m)^port = \d+", f"port = {port}", config_text)
    if found != 1:
        raise ProcessError("the provider's configuration needs exactly one 'port = N' line")
    config = work / f"{name}.toml"
    write_secret(config, text)
    log = work / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            provider_command(config, log_level),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=new_session,
        )
    try:
        line = wait_for_line(process, log, "ready:", "the provider", wait)
    except BaseException:  # Ctrl-C too: never leave the provider behind
        stop_process(process)
        raise
    match = re.search(r"ca_file=(\S+)", line)
    if match is None:
        stop_process(process)
        raise ProcessError(f"the provider's ready line names no ca_file: {line.strip()}")
    return ProviderProcess(process, log, config, port, match.group(1))


def phone_config(
    provider: ProviderProcess,
    *,
    state_dir: Path,
    control_socket: Path,
    capture: str = "default",
    playback: str = "default",
    level: str = "info",
    number: str | None = None,
    backend: str = "none",
) -> str:
    """The text of a phone configuration for ``provider`` (docs/configuration.md).

    ``backend`` is the ``[hardware]`` backend; ``"virtual"`` shows the screens as text.
    """
    phone_number = f'number = "{number}"\n' if number else ""
    display = 'virtual_display = "text"\n' if backend == "virtual" else ""
    return (
        f'[provider]\ndomain = "{provider.domain}"\nca_file = "{provider.ca_file}"\n\n'
        f'[phone]\n{phone_number}state_dir = "{state_dir}"\n'
        f'control_socket = "{control_socket}"\n\n'
        f'[hardware]\nbackend = "{backend}"\n{display}\n'
        f'[audio]\ncapture = "{capture}"\nplayback = "{playback}"\n\n'
        f'[log]\nlevel = "{level}"\n'
    )


def start_phone(
    config: Path, log: Path, env: dict[str, str] | None = None, *, terminal: bool = False
) -> subprocess.Popen[bytes]:
    """Run ``ript-phone run --config CONFIG``, its output to ``log`` (appended).

    With ``terminal`` the daemon shares this process's stdin and stdout (the virtual
    handset reads the keyboard and prints its screens there); only stderr, its log,
    goes to ``log``.
    """
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "riptphone", "run", "--config", str(config)],
            stdin=None if terminal else subprocess.DEVNULL,
            stdout=None if terminal else out,
            stderr=out,
            env=env,
        )


def wait_for_state(
    process: subprocess.Popen[bytes],
    control_socket: Path,
    log: Path,
    state: str = "idle",
    wait: float = WAIT,
) -> dict[str, Any]:
    """Poll ``status`` until the phone is in ``state``; its reply, or ProcessError."""
    deadline = time.monotonic() + wait
    last = "no control socket yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            show_log(log, "the phone")
            raise ProcessError(f"the phone exited with status {process.returncode}")
        try:
            status = request(control_socket, {"cmd": "status"})
        except ControlClientError as exc:
            last = str(exc)
        else:
            last = f"state {status.get('state')}"
            if status.get("state") == state:
                return status
        time.sleep(0.1)
    show_log(log, "the phone")
    raise ProcessError(f"the phone never became {state} within {wait:.0f} s ({last})")


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 10) -> int | None:
    """SIGTERM and wait; kill what does not exit within ``timeout``. The exit status."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def tone_pcm(seconds: float, rate: int = 48000, hz: int = TONE_HZ) -> bytes:
    """``seconds`` of a -10 dBFS sine at ``hz``, S16_LE mono: the microphone's file."""
    tone = ToneGenerator(ToneSpec(((hz, -10.0),)), rate)
    return b"".join(tone.frame() for _ in range(int(seconds * 50)))


def tone_levels(played: bytes, rate: int) -> tuple[float, float]:
    """Goertzel levels at the test tone and at another frequency, in the middle half."""
    middle = played[len(played) // 4 : 3 * len(played) // 4]
    middle = middle[: len(middle) // 2 * 2]
    return goertzel(middle, rate, TONE_HZ), goertzel(middle, rate, OTHER_HZ)


def tone_found(at_tone: float, other: float) -> bool:
    """The tone is there: loud (a -10 dBFS tone is ~1e8; silence far below) and clean."""
    return at_tone > 1e6 and at_tone > 100 * other
