"""``python -m riptdev demo`` (``./run demo``) as a user runs it: real provider, daemon, calls.

The scripted demo runs as CI runs it (output captured); the interactive demo runs in a
pseudo-terminal, as at a newcomer's terminal: keys typed into it, its screen boxes read
back, Ctrl-C to end it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

WAIT = 30.0
DEMO = [sys.executable, "-m", "riptdev", "demo"]
# riptdev is not installed: ./run demo runs it from the checkout with firmware/ on the path.
FIRMWARE = str(Path(__file__).resolve().parents[2] / "firmware")
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(p for p in (FIRMWARE, os.environ.get("PYTHONPATH")) if p),
}


def assert_nothing_left(out: str) -> None:
    """The provider, its mosquitto and the phone are gone; so are the socket and the token."""
    work = re.search(r"work folder (\S+)", out)
    assert work is not None, out
    folder = Path(work.group(1))
    # Every process the demo started names a file in the work folder on its command line.
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes()
        except OSError:
            continue  # gone meanwhile
        assert str(folder).encode() not in args, f"left running: {args!r}"
    ports = re.search(r"provider ready on udp 127\.0\.0\.1:(\d+); push broker \S+:(\d+)", out)
    assert ports is not None, out
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", int(ports.group(1))))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", int(ports.group(2))))
    assert not (folder / "control.sock").exists()
    assert not (folder / "phone-state" / "token").exists()  # the phone logged in instead
    assert not (folder / "phone-state" / "tokens.json").exists()
    shutil.rmtree(folder)


def qr_from_text(text: str, tmp: Path) -> str:
    """Decode the demo's QR code printed as text (segno's compact terminal output) with zbarimg.

    Each character is two modules, one above the other; a block is a light module.
    """
    halves = {"█": (1, 1), "▀": (1, 0), "▄": (0, 1), " ": (0, 0)}
    lines = [line for line in text.splitlines() if line and set(line) <= set(halves)]
    width = max(len(line) for line in lines)
    image = Image.new("L", (width, 2 * len(lines)), 0)
    for y, line in enumerate(lines):
        for x, char in enumerate(line):
            top, bottom = halves[char]
            image.putpixel((x, 2 * y), 255 * top)
            image.putpixel((x, 2 * y + 1), 255 * bottom)
    png = tmp / "qr.png"
    image.resize((width * 8, len(lines) * 16), Image.Resampling.NEAREST).save(png)
    done = subprocess.run(
        ["zbarimg", "--quiet", "--raw", str(png)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stderr, text)
    return done.stdout.strip()


def test_scripted_demo_calls_the_echo_then_the_provider_calls_the_phone(tmp_path: Path) -> None:
    done = subprocess.run(
        [*DEMO, "--seconds", "2"],
        stdin=subprocess.DEVNULL,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert done.stderr == ""
    # First boot: the phone logs in; the QR code and the code it shows, approved by the admin.
    login = re.search(
        r"it shows this QR code and the code (\S+)\n(.*?)\n  (HTTPS://\S+)   code (\S+)\n"
        r"approving it as the provider's admin: ript-provider admin --config \S+ approve (\S+) "
        r"--account alice\n",
        out,
        re.DOTALL,
    )
    assert login is not None, out
    code, qr, url = login.group(1), login.group(2), login.group(3)
    assert login.group(4) == login.group(5) == code
    assert url.endswith("/D/" + code.replace("-", ""))
    if shutil.which("zbarimg"):
        assert qr_from_text(qr, tmp_path) == url
    # Driven like a user: lift, the number key by key (the digit map dials it), hang up.
    assert "hook off\n  state dialing" in out
    assert "typing 14089529999\n" in out
    assert "Dialling / 1408952999 / # to dial" in out
    assert "outbound call: dialing -> calling -> in-call -> ended -> idle" in out
    # Then the provider calls: a tap, the ring, the ringing screen; lifting answers.
    assert "inbound alice +14085550100" in out
    assert "ring from +14085550100" in out
    ringing = re.search(r"state ringing +(.*)", out)
    assert ringing is not None, out
    assert ringing.group(1) == "Incoming call / +1 408 555 0100 / lift to answer"
    assert "hook off (answer)" in out
    assert "inbound call:  ringing -> in-call -> ended -> idle" in out
    assert "codecs: OPUS, OPUS" in out
    tone = re.search(r"1000 Hz test tone found in the echo call's playback .*level (\S+) at", out)
    assert tone is not None, out
    assert float(tone.group(1)) > 1e6
    assert out.rstrip().splitlines()[-1].startswith("demo passed")
    assert_nothing_left(out)


def test_a_call_that_is_not_answered_fails_with_one_clear_line() -> None:
    done = subprocess.run(
        [*DEMO, "--number", "+14089520002"],
        stdin=subprocess.DEVNULL,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == (
        "riptdev demo: the call to +14089520002 ended without being answered "
        "(dialing -> calling -> ended)"
    )
    assert "call declined" in done.stdout
    assert "ring from" not in done.stdout  # no inbound call after a failed outbound one
    assert_nothing_left(done.stdout)


class Terminal:
    """``python -m riptdev demo --interactive`` on a pseudo-terminal: type keys, read the screen."""

    def __init__(self) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: the pty is its controlling terminal, as at a real one
            try:
                os.execve(sys.executable, [*DEMO, "--interactive"], ENV)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.reaped = False
        self.text = ""  # everything printed so far, '\r' dropped
        self.seen = 0  # how far wait_for has read

    def wait_for(self, pattern: str, wait: float = WAIT) -> re.Match[str]:
        """The first match of ``pattern`` after the previous one (screen boxes included)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + wait
        while True:
            match = regex.search(self.text, self.seen)
            if match is not None:
                self.seen = match.end()
                return match
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} within {wait:.0f} s in:\n{self.text}"
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the demo has exited and closed the terminal
                    data = b""
                if not data:
                    raise AssertionError(f"the demo exited before {pattern!r}:\n{self.text}")
                self.text += data.decode(errors="replace").replace("\r", "")

    def wait_for_each(self, *patterns: str, wait: float = WAIT) -> None:
        """Each of ``patterns`` after the previous match, in any order.

        For lines two processes print at about the same time: the demo's (a hint) and
        the phone's (its screen boxes) reach the terminal in either order.
        """
        start, end = self.seen, self.seen
        for pattern in patterns:
            self.seen = start
            end = max(end, self.wait_for(pattern, wait).end())
        self.seen = end

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def exit_status(self, wait: float = WAIT) -> int:
        """Read to the end and reap the demo; its exit status."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reaped = True
                self._drain()
                return os.waitstatus_to_exitcode(status)
            self._drain()
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"the demo did not exit within {wait:.0f} s:\n{self.text}")

    def _drain(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            if not data:
                return
            self.text += data.decode(errors="replace").replace("\r", "")

    def kill(self) -> None:
        """Stop the demo if it still runs (a failed test must not leave it behind)."""
        if self.reaped:
            return
        # Ctrl-C first: the demo then stops the provider and the phone it started.
        with contextlib.suppress(OSError):
            os.write(self.fd, b"\x03")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                self.reaped = True
                return
            self._drain()
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        self.reaped = True

    def close(self) -> None:
        self.kill()
        os.close(self.fd)


def box(*rows: str) -> str:
    """Consecutive rows of a screen box as the virtual handset prints it (each row may go on)."""
    return r"\n".join(rf"\| {re.escape(row)}[^|\n]*\|" for row in rows)


def test_interactive_demo_on_a_terminal_answers_dials_and_stops_on_ctrl_c() -> None:
    term = Terminal()
    try:
        term.wait_for(r"space or h +lift / replace the handset")  # the keys come first
        # First boot: the user is told where to log the phone in; here the admin does it.
        login = term.wait_for(
            r"open (HTTPS://\S+) in a browser and sign in as alice, password "
            r"alice-demo-password .*? or run: ript-provider admin --config (\S+) approve "
            r"(\S+) --account alice",
        )
        admin = [sys.executable, "-m", "riptprovider", "admin", "--config", login.group(2)]
        approved = subprocess.run(
            [*admin, "approve", login.group(3), "--account", "alice"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert approved.returncode == 0, approved.stderr
        term.wait_for(box("Incoming call", "+1 408 555 0100", "lift to answer"))
        term.type(" ")
        term.wait_for_each(
            box("+1 408 555 0100", "OPUS"),
            "in the call with \\+14085550100: press space to hang up",
        )
        term.type(" ")
        term.wait_for(box("Call ended"))
        term.wait_for("now call the echo: space, then 14089529999")
        term.type(" ")
        term.wait_for(box("Dial tone", "type a number"))
        term.type("14089529999")
        term.wait_for(box("Calling…", "+1 408 952 9999"))
        term.wait_for(box("In call", "+1 408 952 9999", "OPUS"))
        term.type(" ")
        term.wait_for(box("Call ended"))
        term.wait_for("call again")
        term.type("\x03")  # Ctrl-C, through the terminal's line discipline: SIGINT
        term.wait_for("stopped: the phone and the provider have exited")
        status = term.exit_status()
    finally:
        term.close()
    assert status == 0, term.text
    assert "Traceback" not in term.text
    assert_nothing_left(term.text)
