"""``python -m riptdev demo``: the provider and the phone on this machine, a call each way.

The demo starts the reference provider (``python -m riptprovider serve``, on
the example configuration with its ``[push]`` broker, so the provider runs
its own mosquitto) on a free UDP port and the phone daemon (``python -m
riptphone run``) against it, both as subprocesses of the running interpreter
so a checkout works without an install.

The phone starts as on its first boot, with no token: it logs in with the
OAuth device flow (the example configuration's ``[oauth]`` section and
alice's password hash), so the demo prints the QR code the phone shows, as
text, and its user code.  The scripted demo approves the code as the
provider's admin would (``ript-provider admin ... approve CODE --account
alice``); the interactive one asks the user to open the URL in a browser and
sign in as alice with the demo password (or to run that admin command).

Scripted (the default): the phone has no handset (``[hardware] backend =
"none"``) and the demo drives it through the control socket as a user would:
``hook off``, the echo number key by key (it dials on the dial plan's match),
a few seconds in the call, ``hook on``; then the provider calls the phone
(``ript-provider admin ... inbound``), the demo waits for it to ring, lifts
the handset to answer, and hangs up.  Every state and screen change is
printed from the control socket's ``watch``.

Interactive (``--interactive``): the phone has the virtual handset
(``backend = "virtual"``) and runs in the foreground: the keyboard is the
handset and its screens are printed as text boxes, while its log goes to a
file.  Once the phone has registered the provider calls it once; then the
user dials whatever they like.  Ctrl-C stops both processes.  The phone shares
the terminal, so the same Ctrl-C reaches it and it may stop (closing the
watch) before the demo acts on its own SIGINT: a phone whose log says it
stopped on SIGINT counts as the user's stop, not as one that stopped by itself.

Without ``--sound-card`` the phone's audio goes through alsa-lib's file
plugin (``ALSA_CONFIG_PATH``): the microphone is a file holding a 1 kHz tone
and the earpiece is a file; the scripted demo measures the tone in what the
echo call played, so the round trip is visible without a sound card.  Both
processes are stopped (SIGTERM, then wait) on success, failure and Ctrl-C
alike.

The processes are started with the building blocks of
:mod:`riptdev.processes`, which the end-to-end tests and the call benchmark
use too.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Final

import segno

from riptdev.processes import (
    OTHER_HZ,
    TONE_HZ,
    WAIT,
    ProcessError,
    ProviderProcess,
    phone_config,
    show_log,
    start_phone,
    start_provider,
    stop_process,
    tone_found,
    tone_levels,
    tone_pcm,
    wait_for_state,
)
from riptphone.control.client import ControlClientError, ControlConnection, request
from riptphone.hw.virtual import KEYMAP

ECHO_NUMBER: Final = "+14089529999"
ACCOUNT: Final = "alice"
"""The example configuration's account the phone registers as."""
DEMO_PASSWORD: Final = "alice-demo-password"
"""The password whose hash the example configuration gives alice (its comment says so)."""
LOGIN_WAIT: Final = 3600.0
"""Seconds the interactive demo waits for the user to log the phone in."""
CALLER: Final = "+14085550100"
"""Who calls the phone in the demo's inbound call."""
INBOUND_SECONDS: Final = 1.5
INTERACTIVE_CAPTURE_SECONDS: Final = 120.0

EXAMPLE_CONFIG: Final = (
    Path(__file__).resolve().parents[2] / "provisioning" / "ript-provider.example.toml"
)
SYSTEM_ALSA_CONF: Final = "/usr/share/alsa/alsa.conf"


class DemoError(ProcessError):
    """One sentence for the user: why the demo failed."""


def _alsa_quoted(path: Path) -> str:
    text = str(path)
    # alsa-lib expands %-sequences in file names and ALSA_CONFIG_PATH is split on ':'.
    if "%" in text or ":" in text or "\n" in text or '"' in text:
        raise DemoError(f"the work folder {text!r} holds a character alsa-lib mangles")
    return f'"{text}"'


def keypad_keys(number: str) -> str:
    """The keys a user types for ``number`` on a North American phone (the demo's dial plan).

    ``+1`` numbers are typed as 1 + ten digits (the NANP digit map dials them on the
    last key); other ``+`` numbers after the ``011`` international prefix.
    """
    if number.startswith("+1"):
        keys = number[1:]
    elif number.startswith("+"):
        keys = "011" + number[1:]
    else:
        keys = number
    if not keys or not all(key in "0123456789*#" for key in keys):
        raise DemoError(f"{number!r} cannot be typed on a keypad")
    return keys


def _screen_text(event: dict[str, Any]) -> str:
    screen = event.get("screen")
    rows = screen if isinstance(screen, list) else []
    return " / ".join(str(row) for row in rows if str(row).strip())


def _describe(event: dict[str, Any]) -> str:
    """One line for a watch event: states and screens aligned, the rest as they come."""
    name = event.get("event")
    if name == "state":
        return f"{'state ' + str(event.get('state')):<20}{_screen_text(event)}"
    if name == "screen":
        return f"{'':<20}{_screen_text(event)}"
    if name == "ring":
        return f"ring from {event.get('from')}"
    if name == "call":
        call = event.get("call")
        if isinstance(call, dict):
            return f"call {call.get('state')} (peer {call.get('peer')})"
        return "call ended"
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")


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
        self.interrupted = False  # the user pressed Ctrl-C (the interactive demo's handler)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # -- the processes ---------------------------------------------------------------

    def start_provider(self, *, new_session: bool = False) -> None:
        """Start the provider (with push and the login) on the example configuration."""
        if not EXAMPLE_CONFIG.is_file():
            raise DemoError(f"the provider's example configuration is missing: {EXAMPLE_CONFIG}")
        text = EXAMPLE_CONFIG.read_text()
        parsed = tomllib.loads(text)
        if "push" not in parsed:
            # The inbound call is announced by a shoulder tap: the demo needs a broker.
            text += '\n[push]\nbroker = "spawn"\n'
        if "oauth" not in parsed or "password" not in parsed["accounts"][ACCOUNT]:
            raise DemoError(f"{EXAMPLE_CONFIG} needs [oauth] and a password for {ACCOUNT}")
        self.provider = start_provider(self.work, text, new_session=new_session)
        broker = re.search(r"push: broker=(\S+)", self.provider.log.read_text(errors="replace"))
        self.say(
            f"provider ready on udp 127.0.0.1:{self.provider.port}; "
            f"push broker {broker.group(1) if broker else 'unknown'}"
        )

    def start_phone(
        self,
        *,
        capture_seconds: float,
        sound_card: bool,
        backend: str = "none",
        terminal: bool = False,
        approve: bool = True,
    ) -> None:
        """Start the daemon, log it in; return once it is registered with its push channel up.

        ``approve``: the demo approves the login code itself (as the provider's admin);
        otherwise it waits for the user to, in a browser.
        """
        assert self.provider is not None
        state_dir = self.work / "phone-state"
        state_dir.mkdir(mode=0o700, exist_ok=True)  # no token file: the phone logs in
        env = dict(os.environ)
        devices = {}
        if not sound_card:
            devices = {"capture": "demo_in", "playback": "demo_out"}
            asoundrc = self._write_asoundrc(capture_seconds)
            env["ALSA_CONFIG_PATH"] = f"{SYSTEM_ALSA_CONF}:{asoundrc}"
        config = self.work / "phone.toml"
        config.write_text(
            phone_config(
                self.provider,
                state_dir=state_dir,
                control_socket=self.socket,
                backend=backend,
                **devices,
            )
        )
        self.daemon = start_phone(config, self.daemon_log, env, terminal=terminal)
        wait_for_state(self.daemon, self.socket, self.daemon_log, "provisioning")
        self.log_in(approve=approve)
        status = wait_for_state(self.daemon, self.socket, self.daemon_log, "idle")
        status = self.wait_for_push(status)
        self.say(f"phone registered as {status.get('number')}, push {status.get('push')}")

    def log_in(self, *, approve: bool) -> None:
        """Show each code the phone shows (QR as text, user code) until it has logged in."""
        assert self.daemon is not None and self.provider is not None
        shown = ""
        wait = WAIT if approve else LOGIN_WAIT
        deadline = time.monotonic() + wait
        while True:
            status = request(self.socket, {"cmd": "status"})
            if status.get("state") not in ("provisioning", "offline"):
                return  # logged in: registering or idle
            login = shown_login(status)
            if login is not None and login[1] != shown:
                url, shown = login
                self.say(f"the phone is not set up: it shows this QR code and the code {shown}")
                self.say(qr_text(url))
                self.say(f"  {url}   code {shown}")
                if approve:
                    self.approve(shown)
                else:
                    self.say(
                        f"open {url} in a browser and sign in as {ACCOUNT}, password "
                        f"{DEMO_PASSWORD} (the provider's certificate is from its own CA, "
                        f"{self.provider.ca_file}: the browser warns first), or run: "
                        f"ript-provider admin --config {self.provider.config} approve {shown} "
                        f"--account {ACCOUNT}"
                    )
            if self.daemon.poll() is not None:
                show_log(self.daemon_log, "the phone")
                raise DemoError(f"the phone exited with status {self.daemon.returncode}")
            if time.monotonic() > deadline:
                raise DemoError(f"the phone was not logged in within {wait:.0f} s")
            time.sleep(0.2)

    def approve(self, code: str) -> None:
        """Approve the phone's login code for alice, as the provider's admin would."""
        assert self.provider is not None
        args = ["admin", "--config", str(self.provider.config), "approve", code]
        args += ["--account", ACCOUNT]
        self.say(f"approving it as the provider's admin: ript-provider {' '.join(args)}")
        done = subprocess.run(
            [sys.executable, "-m", "riptprovider", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(f"the provider did not approve the login: {done.stderr.strip()}")

    def wait_for_push(self, status: dict[str, Any]) -> dict[str, Any]:
        """Poll ``status`` until the push channel is up (an inbound call needs it)."""
        assert self.daemon is not None
        deadline = time.monotonic() + WAIT
        while status.get("push") != "up":
            if time.monotonic() > deadline:
                show_log(self.daemon_log, "the phone")
                raise DemoError(
                    f"the phone's push channel is {status.get('push')} after {WAIT:.0f} s"
                )
            if self.daemon.poll() is not None:
                show_log(self.daemon_log, "the phone")
                raise DemoError(f"the phone exited with status {self.daemon.returncode}")
            time.sleep(0.1)
            status = request(self.socket, {"cmd": "status"})
        return status

    def _write_asoundrc(self, seconds: float) -> Path:
        """The file-plugin PCMs: ``demo_in`` reads a 1 kHz tone, ``demo_out`` writes a file."""
        capture = self.work / "capture_in.raw"
        capture.write_bytes(tone_pcm(seconds))
        asoundrc = self.work / "asoundrc"
        asoundrc.write_text(
            'pcm.demo_out {\n    type file\n    slave.pcm "null"\n'
            f'    file {_alsa_quoted(self.playback)}\n    format "raw"\n}}\n'
            'pcm.demo_in {\n    type file\n    slave.pcm "null"\n'
            f"    file {_alsa_quoted(self.work / 'capture_copy.raw')}\n"
            f'    infile {_alsa_quoted(capture)}\n    format "raw"\n}}\n'
        )
        return asoundrc

    def call_in(self, caller: str) -> list[str]:
        """Have the provider call the phone from ``caller`` (``ript-provider admin inbound``)."""
        assert self.provider is not None
        args = ["admin", "--config", str(self.provider.config), "inbound", ACCOUNT, caller]
        self.say(f"the provider calls the phone: ript-provider {' '.join(args)}")
        done = subprocess.run(
            [sys.executable, "-m", "riptprovider", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        if done.returncode != 0:
            raise DemoError(f"the provider did not place the inbound call: {done.stderr.strip()}")
        return args

    # -- the scripted user ------------------------------------------------------------

    def control(self, request_: dict[str, Any], said: str) -> None:
        self.say(said)
        request(self.socket, request_)

    def outbound(self, number: str, seconds: float) -> list[str]:
        """Lift, type ``number``, stay ``seconds`` in the call, hang up; the states in order."""
        keys = keypad_keys(number)
        states: list[str] = []
        with ControlConnection(self.socket, timeout=WAIT) as watch:
            watch.request({"cmd": "watch"})
            self.control({"cmd": "hook", "state": "off"}, "hook off")
            self._read_until(watch, states, lambda s: s == "dialing")
            self.say(f"typing {keys}")
            for key in keys:
                request(self.socket, {"cmd": "key", "key": key})
            if request(self.socket, {"cmd": "status"}).get("state") == "dialing":
                # No digit-map match (a number abroad): '#' dials what was typed.
                self.control({"cmd": "key", "key": "#"}, "typing # to dial")
            self._read_until(watch, states, lambda s: s in ("in-call", "ended", "idle"))
            if states[-1] != "in-call":
                self.control({"cmd": "hook", "state": "on"}, "hook on")
                raise DemoError(
                    f"the call to {number} ended without being answered ({' -> '.join(states)})"
                )
            self.say(f"in the call; staying {seconds:g} s")
            time.sleep(seconds)
            self.control({"cmd": "hook", "state": "on"}, "hook on")
            self._read_until(watch, states, lambda s: s == "idle")
        return states

    def inbound(self, caller: str, seconds: float) -> list[str]:
        """The provider calls the phone; answer it, stay ``seconds``, hang up; the states."""
        states: list[str] = []
        with ControlConnection(self.socket, timeout=WAIT) as watch:
            watch.request({"cmd": "watch"})
            self.call_in(caller)
            self._read_until(watch, states, lambda s: s in ("ringing", "idle"))
            if states[-1] != "ringing":
                raise DemoError(f"the phone did not ring for the call from {caller}")
            self.control({"cmd": "hook", "state": "off"}, "hook off (answer)")
            self._read_until(watch, states, lambda s: s in ("in-call", "ended", "idle"))
            if states[-1] != "in-call":
                self.control({"cmd": "hook", "state": "on"}, "hook on")
                raise DemoError(f"the call from {caller} was not answered ({' -> '.join(states)})")
            self.say(f"in the call; staying {seconds:g} s")
            time.sleep(seconds)
            self.control({"cmd": "hook", "state": "on"}, "hook on")
            self._read_until(watch, states, lambda s: s == "idle")
        return states

    def _read_until(
        self, watch: ControlConnection, states: list[str], done: Callable[[str], bool]
    ) -> None:
        while True:
            try:
                event = watch.receive()
            except (OSError, ControlClientError) as exc:
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

    def echo_audio(self) -> Path:
        """Keep the echo call's playback before the next call's PCM open truncates it."""
        kept = self.work / "echo-call.raw"
        size, stable_since = -1, time.monotonic()
        deadline = time.monotonic() + 5
        # The media task closes the PCM (flushing the file) just after the call ends.
        while time.monotonic() < deadline:
            now_size = self.playback.stat().st_size if self.playback.exists() else 0
            if now_size != size:
                size, stable_since = now_size, time.monotonic()
            elif time.monotonic() - stable_since > 0.5:
                break
            time.sleep(0.1)
        kept.write_bytes(self.playback.read_bytes() if self.playback.exists() else b"")
        return kept

    # -- the end -------------------------------------------------------------------

    def stop(self) -> None:
        """SIGTERM both processes (phone first) and wait; kill what does not exit."""
        stop_process(self.daemon)
        if self.provider is not None:
            stop_process(self.provider.process)

    def codecs(self) -> list[str]:
        """The codec of each call that started media, in order (from the phone's log)."""
        text = self.daemon_log.read_text(errors="replace") if self.daemon_log.exists() else ""
        return re.findall(r"event=media_started .*?codec=(\S+)", text)


def shown_login(status: dict[str, Any]) -> tuple[str, str] | None:
    """The QR URL and the user code on the phone's screen (``status``), if it shows one."""
    screen = [str(row) for row in status.get("screen") or []]
    if status.get("state") != "provisioning" or screen[:1] != ["Not set up. Visit"]:
        return None
    for at, row in enumerate(screen):
        if row.startswith("code "):
            return "".join(screen[1:at]), row.removeprefix("code ")
    return None


def qr_text(url: str) -> str:
    """``url`` as a QR code in text (segno's compact terminal output: two rows a line)."""
    out = io.StringIO()
    segno.make(url, error="M", micro=False).terminal(out=out, border=2, compact=True)
    return out.getvalue().rstrip("\n")


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
        f"{TONE_HZ} Hz test tone {verdict} in the echo call's playback ({seconds:.1f} s of "
        f"audio): level {at_tone:.3g} at {TONE_HZ} Hz vs {other:.3g} at {OTHER_HZ} Hz"
    )


def _scripted(demo: Demo, *, seconds: float, number: str, sound_card: bool) -> None:
    demo.start_provider()
    demo.start_phone(capture_seconds=seconds + 10, sound_card=sound_card)
    demo.say("")
    demo.say(f"-- call 1: the phone calls {number}")
    out_states = demo.outbound(number, seconds)
    kept = None if sound_card else demo.echo_audio()
    demo.say("")
    demo.say(f"-- call 2: {CALLER} calls the phone")
    in_states = demo.inbound(CALLER, INBOUND_SECONDS)
    codecs = demo.codecs()
    demo.stop()
    demo.say("")
    demo.say("outbound call: " + " -> ".join(out_states))
    demo.say("inbound call:  " + " -> ".join(in_states))
    demo.say(f"codecs: {', '.join(codecs) if codecs else 'none (no media started)'}")
    if len(codecs) < 2:
        raise DemoError(f"media started for {len(codecs)} of the 2 calls (see {demo.daemon_log})")
    if kept is not None:
        rate = 48000 if codecs[0].upper() == "OPUS" else 8000
        found, report = _tone_report(kept, rate)
        demo.say(f"echo call's playback: {kept}")
        demo.say(report)
        if not found:
            raise DemoError("the test tone did not come back from the echo far end")
    demo.say("demo passed: a call out to the echo and a call in, over HTTP/3 and MQTT")


def _hint(state: str, call: object) -> str | None:
    """What to do next, for a newcomer, when the phone enters ``state``."""
    if state != "in-call" or not isinstance(call, dict):
        return None
    peer = call.get("peer")
    echo = " (the echo plays back what you say)" if peer == ECHO_NUMBER else ""
    return f"in the call with {peer}{echo}: press space to hang up"


def _interactive(demo: Demo, *, sound_card: bool) -> None:
    demo.say("ript-phone interactive demo: this terminal is the phone's handset and screen.")
    demo.say("the virtual handset's keys (they act at once, no Enter):")
    for keys, meaning in KEYMAP.items():
        demo.say(f"  {keys:<16} {meaning}")
    demo.say("  Ctrl-C           stop the demo")
    demo.say(f"starting the provider and the phone; logs in {demo.work}")
    demo.start_provider(new_session=True)
    demo.start_phone(
        capture_seconds=INTERACTIVE_CAPTURE_SECONDS,
        sound_card=sound_card,
        backend="virtual",
        terminal=True,
        approve=False,
    )
    if not sound_card:
        demo.say(f"no sound card: the earpiece writes {demo.playback} (--sound-card to hear)")
    assert demo.daemon is not None
    calls = 0  # calls seen so far (ringing or in a call, then back to idle)
    in_call = False
    with ControlConnection(demo.socket, timeout=WAIT) as watch:
        watch.request({"cmd": "watch"})
        watch.set_timeout(None)  # the user takes their time
        demo.say(f"{CALLER} is calling: when the phone rings, press space to answer")
        demo.call_in(CALLER)
        last = ""
        while (event := watch.receive()) is not None:
            if event.get("event") == "error":
                demo.say(f"(the phone says: {event.get('error')})")
            if event.get("event") != "state" or event.get("state") == last:
                continue
            last = str(event.get("state"))
            hint = _hint(last, event.get("call"))
            if hint:
                demo.say(hint)
            if last in ("ringing", "calling", "in-call"):
                in_call = True
            elif last == "idle" and in_call:
                in_call = False
                calls += 1
                demo.say(
                    f"now call the echo: space, then {keypad_keys(ECHO_NUMBER)} "
                    "(it dials on the last digit); Ctrl-C ends the demo"
                    if calls == 1
                    else "call again (space, then a number) or press Ctrl-C to end the demo"
                )
    status = demo.daemon.wait()
    if demo.interrupted or (status == 0 and stopped_on_sigint(demo.daemon_log)):
        # The user's Ctrl-C: the phone shares the terminal, so the same SIGINT reached it,
        # and it may have stopped (closing the watch) before this process raised its
        # KeyboardInterrupt.  Its log names the signal, so this does not hang on timing.
        raise KeyboardInterrupt
    raise DemoError(f"the phone stopped by itself (status {status}); its log: {demo.daemon_log}")


def stopped_on_sigint(log: Path) -> bool:
    """Whether the phone's log says it stopped on SIGINT (a Ctrl-C at its terminal)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    stops = re.findall(r"event=stopping signal=(\S+)", text)
    return bool(stops) and stops[-1] == "SIGINT"


def run(
    out: IO[str],
    *,
    seconds: float = 4.0,
    number: str = ECHO_NUMBER,
    sound_card: bool = False,
    interactive: bool = False,
) -> int:
    """Run the demo; 0 when both calls worked (or Ctrl-C ended the interactive demo).

    A failure is one line on stderr and status 1.
    """
    if not 0 < seconds <= 600:
        print("riptdev demo: --seconds must be above 0 and at most 600", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="ript-phone-demo-"))
    demo = Demo(work, out)
    demo.say(f"work folder {work}")
    terminal = _save_terminal() if interactive else None
    previous_sigint = signal.getsignal(signal.SIGINT)
    if interactive:

        def on_sigint(signum: int, frame: object) -> None:
            # Noted before raising: the watch may end (the phone stopped on the same
            # Ctrl-C) before the exception reaches the code that is running.
            demo.interrupted = True
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_sigint)
    try:
        if interactive:
            _interactive(demo, sound_card=sound_card)
        else:
            _scripted(demo, seconds=seconds, number=number, sound_card=sound_card)
        return 0
    except ProcessError as exc:  # a DemoError, or a process that did not start
        print(f"riptdev demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if interactive:
            # A second Ctrl-C must not interrupt the stopping.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                demo.stop()
            finally:
                signal.signal(signal.SIGINT, previous)
            demo.say("\nstopped: the phone and the provider have exited")
            return 0
        print("riptdev demo: interrupted", file=sys.stderr)
        return 1
    except (OSError, ControlClientError) as exc:
        print(f"riptdev demo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        _restore_terminal(terminal)
        if interactive:
            signal.signal(signal.SIGINT, previous_sigint)
        (work / "phone-state" / "tokens.json").unlink(missing_ok=True)  # no secret left behind


def _save_terminal() -> list[Any] | None:
    """The terminal's modes, so that they come back even if the daemon dies in cbreak mode."""
    try:
        return termios.tcgetattr(sys.stdin.fileno()) if sys.stdin.isatty() else None
    except (termios.error, ValueError, OSError):
        return None


def _restore_terminal(saved: list[Any] | None) -> None:
    if saved is not None:
        with contextlib.suppress(termios.error, ValueError, OSError):
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
