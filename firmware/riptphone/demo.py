"""``ript-phone demo``: one real call from this machine to the reference provider and back.

The demo starts the reference provider (``python -m riptprovider serve``) on a
free UDP port and the phone daemon (``python -m riptphone run``) against it,
both as subprocesses of the running interpreter so a checkout works without an
install.  It dials the provider's echo far end through the control socket,
prints the watch lines, stays in the call, hangs up and prints a summary.

Without ``--sound-card`` the phone's audio goes through alsa-lib's file
plugin (``ALSA_CONFIG_PATH``): the microphone is a file holding a 1 kHz tone
and the earpiece is a file; the summary measures the tone in what was played,
so the round trip is visible without a sound card.  Both processes are
stopped (SIGTERM, then wait) on success, failure and Ctrl-C alike.

The building blocks (:func:`start_provider`, :func:`phone_config`,
:func:`start_phone`, :func:`wait_for_state`, :func:`stop_process`,
:func:`tone_pcm`, :func:`tone_levels`) are public: the end-to-end tests and the
call benchmark start their processes with them.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from riptphone.control_client import ControlClientError, ControlConnection, request
from riptphone.media.tones import ToneGenerator, ToneSpec, goertzel

ECHO_NUMBER: Final = "+14089529999"
TONE_HZ: Final = 1000
OTHER_HZ: Final = 440
WAIT: Final = 20.0
"""Seconds to wait for a process to be ready or a state to be reached."""

EXAMPLE_CONFIG: Final = (
    Path(__file__).resolve().parents[2] / "provisioning" / "ript-provider.example.toml"
)
SYSTEM_ALSA_CONF: Final = "/usr/share/alsa/alsa.conf"


class DemoError(Exception):
    """One sentence for the user: why the demo failed."""


# -- building blocks (the end-to-end tests and the call benchmark use them too) --------


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` mode 0600 (created so, never readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def _alsa_quoted(path: Path) -> str:
    text = str(path)
    # alsa-lib expands %-sequences in file names and ALSA_CONFIG_PATH is split on ':'.
    if "%" in text or ":" in text or "\n" in text or '"' in text:
        raise DemoError(f"the work folder {text!r} holds a character alsa-lib mangles")
    return f'"{text}"'


def show_log(log: Path, who: str) -> None:
    """Copy a child's log to stderr (when a start fails, that is where the reason is)."""
    text = log.read_text(errors="replace").strip() if log.exists() else ""
    if text:
        print(f"--- {who}'s stderr ---\n{text}\n---", file=sys.stderr, flush=True)


def wait_for_line(
    process: subprocess.Popen[bytes], log: Path, needle: str, who: str, wait: float = WAIT
) -> str:
    """The first line of ``log`` holding ``needle``; DemoError if the process exits first."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if needle in line:
                return line
        if process.poll() is not None:
            show_log(log, who)
            raise DemoError(f"{who} exited with status {process.returncode} before ready")
        time.sleep(0.05)
    show_log(log, who)
    raise DemoError(f"{who} was not ready within {wait:.0f} s")


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


def start_provider(
    work: Path, config_text: str, *, name: str = "provider", wait: float = WAIT
) -> ProviderProcess:
    """Run ``ript-provider serve`` on ``config_text`` with a free port; return once ready.

    The ``port = N`` line of the text is replaced; the file is written 0600 (it holds
    tokens) as ``work/NAME.toml`` and the log goes to ``work/NAME.log``.
    """
    port = free_udp_port()
    text, found = re.subn(r"(?m)^port = \d+", f"port = {port}", config_text)
    if found != 1:
        raise DemoError("the provider's configuration needs exactly one 'port = N' line")
    config = work / f"{name}.toml"
    write_secret(config, text)
    log = work / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "riptprovider", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        line = wait_for_line(process, log, "ready:", "the provider", wait)
    except DemoError:
        stop_process(process)
        raise
    match = re.search(r"ca_file=(\S+)", line)
    if match is None:
        stop_process(process)
        raise DemoError(f"the provider's ready line names no ca_file: {line.strip()}")
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
) -> str:
    """The text of a phone configuration for ``provider`` (docs/configuration.md)."""
    phone_number = f'number = "{number}"\n' if number else ""
    return (
        f'[provider]\ndomain = "{provider.domain}"\nca_file = "{provider.ca_file}"\n\n'
        f'[phone]\n{phone_number}state_dir = "{state_dir}"\n'
        f'control_socket = "{control_socket}"\n\n'
        f'[hardware]\nbackend = "none"\n\n'
        f'[audio]\ncapture = "{capture}"\nplayback = "{playback}"\n\n'
        f'[log]\nlevel = "{level}"\n'
    )


def start_phone(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run ``ript-phone run --config CONFIG``, its output to ``log`` (appended)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "riptphone", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
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
    """Poll ``status`` until the phone is in ``state``; its reply, or DemoError."""
    deadline = time.monotonic() + wait
    last = "no control socket yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            show_log(log, "the phone")
            raise DemoError(f"the phone exited with status {process.returncode}")
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
    raise DemoError(f"the phone never became {state} within {wait:.0f} s ({last})")


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


class Demo:
    """The two processes and the files of one demo run."""

    def __init__(self, work: Path, out: IO[str]) -> None:
        self.work = work
        self.out = out
        self.provider: ProviderProcess | None = None
        self.daemon: subprocess.Popen[bytes] | None = None
        self.daemon_log = work / "phone.log"
        self.socket = work / "control.sock"
        self.playback = work / "playback.raw"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def start_provider(self) -> str:
        """Start the provider on the example configuration; return alice's token."""
        if not EXAMPLE_CONFIG.is_file():
            raise DemoError(f"the provider's example configuration is missing: {EXAMPLE_CONFIG}")
        text = EXAMPLE_CONFIG.read_text()
        token = str(tomllib.loads(text)["accounts"]["alice"]["tokens"][0])
        self.provider = start_provider(self.work, text)
        self.say(f"provider ready on udp 127.0.0.1:{self.provider.port}")
        return token

    def start_phone(self, token: str, seconds: float, sound_card: bool) -> None:
        assert self.provider is not None
        state_dir = self.work / "phone-state"
        state_dir.mkdir(mode=0o700, exist_ok=True)
        write_secret(state_dir / "token", token + "\n")
        env = dict(os.environ)
        devices = {}
        if not sound_card:
            devices = {"capture": "demo_in", "playback": "demo_out"}
            env["ALSA_CONFIG_PATH"] = f"{SYSTEM_ALSA_CONF}:{self._write_asoundrc(seconds)}"
        config = self.work / "phone.toml"
        config.write_text(
            phone_config(self.provider, state_dir=state_dir, control_socket=self.socket, **devices)
        )
        self.daemon = start_phone(config, self.daemon_log, env)
        wait_for_state(self.daemon, self.socket, self.daemon_log, "idle")
        self.say("phone registered and idle")

    def _write_asoundrc(self, seconds: float) -> Path:
        """The file-plugin PCMs: ``demo_in`` reads a 1 kHz tone, ``demo_out`` writes a file."""
        capture = self.work / "capture_in.raw"
        capture.write_bytes(tone_pcm(seconds + 10))  # capture past the end is not meaningful
        asoundrc = self.work / "asoundrc"
        asoundrc.write_text(
            'pcm.demo_out {\n    type file\n    slave.pcm "null"\n'
            f'    file {_alsa_quoted(self.playback)}\n    format "raw"\n}}\n'
            'pcm.demo_in {\n    type file\n    slave.pcm "null"\n'
            f"    file {_alsa_quoted(self.work / 'capture_copy.raw')}\n"
            f'    infile {_alsa_quoted(capture)}\n    format "raw"\n}}\n'
        )
        return asoundrc

    # -- the call ------------------------------------------------------------------

    def call(self, number: str, seconds: float) -> list[str]:
        """Dial, stay ``seconds`` in the call, hang up; return the states in order."""
        states: list[str] = []
        with ControlConnection(self.socket, timeout=WAIT) as watch:
            watch.request({"cmd": "watch"})
            self.say(f"dialling {number}")
            request(self.socket, {"cmd": "dial", "number": number})
            self._read_until(watch, states, lambda s: s in ("in-call", "idle"))
            if states[-1] != "in-call":
                raise DemoError(
                    f"the call to {number} ended without being answered ({' -> '.join(states)})"
                )
            self.say(f"in the call; staying {seconds:g} s")
            time.sleep(seconds)
            self.say("hook on")
            request(self.socket, {"cmd": "hook", "state": "on"})
            self._read_until(watch, states, lambda s: s == "idle")
        return states

    def _read_until(
        self, watch: ControlConnection, states: list[str], done: Callable[[str], bool]
    ) -> None:
        while True:
            try:
                event = watch.receive()
            except OSError as exc:
                raise DemoError(f"no word from the phone within {WAIT:.0f} s ({exc})") from None
            if event is None:
                raise DemoError("the phone closed the control socket in the middle of the call")
            self.say("  " + _describe(event))
            if event.get("event") == "error":
                raise DemoError(f"the phone reported an error: {event.get('error')}")
            if event.get("event") == "state":
                state = str(event.get("state"))
                if not states or states[-1] != state:
                    states.append(state)
                if done(state):
                    return

    # -- the end -------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM both processes (phone first) and wait; kill what does not exit."""
        stop_process(self.daemon)
        if self.provider is not None:
            stop_process(self.provider.process)

    def codec(self) -> str:
        text = self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""
        match = re.search(r"event=media_started .*?codec=(\S+)", text)
        return match.group(1) if match else "none (no media started)"


def _describe(event: dict[str, Any]) -> str:
    name = event.get("event")
    if name == "state":
        text = f"state {event.get('state')}"
        call = event.get("call")
        if isinstance(call, dict) and call:
            text += f" (call {call.get('state')}, peer {call.get('peer')})"
        return text
    if name == "call":
        call = event.get("call")
        if isinstance(call, dict):
            return f"call {call.get('state')} (peer {call.get('peer')})"
        return "call ended"
    if name == "screen":
        screen = event.get("screen")
        rows = screen if isinstance(screen, list) else []
        return "screen: " + " / ".join(str(row) for row in rows)
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")


def _tone_report(playback: Path, rate: int) -> tuple[bool, str]:
    """Measure the test tone in the middle of the played audio."""
    played = playback.read_bytes() if playback.exists() else b""
    if len(played) < rate // 5:
        return False, f"the playback file {playback} holds only {len(played)} bytes"
    at_tone, other = tone_levels(played, rate)
    found = tone_found(at_tone, other)
    seconds = len(played) / 2 / rate
    verdict = "found" if found else "NOT found"
    return found, (
        f"{TONE_HZ} Hz test tone {verdict} in the playback ({seconds:.1f} s of audio): "
        f"level {at_tone:.3g} at {TONE_HZ} Hz vs {other:.3g} at {OTHER_HZ} Hz"
    )


def run(
    out: IO[str], *, seconds: float = 4.0, number: str = ECHO_NUMBER, sound_card: bool = False
) -> int:
    """Run the demo; 0 when the call made its round trip, 1 (one line on stderr) when not."""
    if not 0 < seconds <= 600:
        print("ript-phone demo: --seconds must be above 0 and at most 600", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ript-phone-demo-"))
    demo = Demo(work, out)
    demo.say(f"work folder {work}")
    try:
        token = demo.start_provider()
        demo.start_phone(token, seconds, sound_card)
        states = demo.call(number, seconds)
        codec = demo.codec()
        demo.stop()
        demo.say("")
        demo.say("call states: " + " -> ".join(states))
        demo.say(f"codec: {codec}")
        if not sound_card:
            rate = 48000 if codec.upper() == "OPUS" else 8000
            found, report = _tone_report(demo.playback, rate)
            demo.say(f"playback file: {demo.playback}")
            demo.say(report)
            if not found:
                raise DemoError("the test tone did not come back from the echo far end")
        demo.say("demo passed: a real call over HTTP/3 to the provider and back")
        return 0
    except DemoError as exc:
        print(f"ript-phone demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ript-phone demo: interrupted", file=sys.stderr)
        return 1
    except (OSError, ControlClientError) as exc:
        print(f"ript-phone demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        (work / "phone-state" / "token").unlink(missing_ok=True)  # no secret left behind
