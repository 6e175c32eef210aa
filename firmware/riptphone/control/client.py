"""The client side of the control socket and the CLI commands built on it.

``ript-phone status | dial NUMBER | hangup | pull | key KEY | hook on|off | reset |
watch`` talk to the running daemon through its control socket (profile
section 11, served by :mod:`riptphone.control.server`).  The CLI wires them in with
:func:`add_subcommands` and :func:`run`; :func:`main` runs them alone.

The client is plain blocking sockets: a CLI does one thing and exits, so an
event loop would only add start-up time.  Errors (no daemon, permission
denied, a refused request) are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import IO, Any, Final

from riptphone.control.server import DEFAULT_PATH

REQUEST_TIMEOUT: Final = 10.0
"""Seconds to wait for a reply; the daemon answers at once or something is wrong."""

MAX_REPLY: Final = 1 << 20
"""Longest reply or watch line the client reads, in bytes."""

COMMANDS: Final = ("status", "dial", "hangup", "pull", "key", "hook", "reset", "watch")


class ControlClientError(Exception):
    """One sentence for the user: the daemon is unreachable or refused the request."""


class ControlConnection:
    """One connection to the control socket; use as a context manager."""

    def __init__(self, path: Path, *, timeout: float | None = REQUEST_TIMEOUT) -> None:
        self.path = Path(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(self.path))
        except FileNotFoundError:
            sock.close()
            raise ControlClientError(
                f"ript-phone is not running (no control socket at {self.path})"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise ControlClientError(
                f"ript-phone is not running (nobody answers on {self.path})"
            ) from None
        except PermissionError:
            sock.close()
            raise ControlClientError(
                f"permission denied on {self.path}; is your user in the socket's group?"
            ) from None
        except OSError as exc:
            sock.close()
            raise ControlClientError(
                f"cannot connect to {self.path}: {exc.strerror or exc}"
            ) from None
        self._sock = sock
        self._file = sock.makefile("rb")

    def __enter__(self) -> ControlConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        self._sock.close()

    def set_timeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send(self, request: Mapping[str, Any]) -> None:
        data = json.dumps(request, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise ControlClientError(
                f"lost the control socket {self.path}: {exc.strerror or exc}"
            ) from None

    def receive(self) -> dict[str, Any] | None:
        """The next line as an object, or ``None`` when the daemon closed the socket."""
        try:
            line = self._file.readline(MAX_REPLY + 1)
        except TimeoutError:
            raise ControlClientError(f"ript-phone did not answer on {self.path}") from None
        except OSError as exc:
            raise ControlClientError(
                f"lost the control socket {self.path}: {exc.strerror or exc}"
            ) from None
        if not line:
            return None
        if not line.endswith(b"\n"):
            if len(line) > MAX_REPLY:
                raise ControlClientError(f"ript-phone sent a line over {MAX_REPLY} bytes")
            return None  # a line cut off by the daemon closing
        try:
            obj = json.loads(line)
        except ValueError:
            raise ControlClientError("ript-phone sent a line that is not JSON") from None
        if not isinstance(obj, dict):
            raise ControlClientError("ript-phone sent a line that is not a JSON object")
        return obj

    def request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send one request and return its successful reply; raise on ``ok: false``."""
        self.send(request)
        reply = self.receive()
        if reply is None:
            raise ControlClientError(f"ript-phone closed {self.path} without answering")
        if reply.get("ok") is not True:
            error = reply.get("error")
            raise ControlClientError(
                error if isinstance(error, str) and error else "ript-phone refused the request"
            )
        return reply


def request(path: Path, req: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request on a fresh connection and return the ``ok`` reply."""
    with ControlConnection(path) as conn:
        return conn.request(req)


def watch(path: Path) -> Generator[dict[str, Any], None, None]:
    """Yield watch lines until the daemon closes the socket (or the caller stops)."""
    with ControlConnection(path) as conn:
        conn.request({"cmd": "watch"})
        conn.set_timeout(None)  # events come when they come
        while (event := conn.receive()) is not None:
            yield event


# -- human output ------------------------------------------------------------------


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def describe_call(call: object) -> str:
    """One line for a call object of the status reply (anything else is shown as it is)."""
    if not call:
        return "none"
    if not isinstance(call, Mapping):  # a daemon of another version: show, do not crash
        return _text(call)
    words = [_text(call.get("direction")), _text(call.get("peer")), _text(call.get("state"))]
    line = " ".join(words)
    codec, transport = call.get("codec"), call.get("transport")
    if codec or transport:
        line += f" ({_text(codec)} over {_text(transport)})"
    return line


def format_status(reply: Mapping[str, Any]) -> str:
    """The readable summary ``ript-phone status`` prints."""
    rows = [
        ("state", _text(reply.get("state"))),
        ("registered", _text(reply.get("registered"))),
        ("push", _text(reply.get("push"))),
        ("number", _text(reply.get("number"))),
        ("handler", _text(reply.get("handler"))),
        ("call", describe_call(reply.get("call"))),
    ]
    if reply.get("reason"):
        rows.append(("reason", _text(reply.get("reason"))))
    lines = [f"{name + ':':<12}{value}" for name, value in rows]
    screen = reply.get("screen")
    if isinstance(screen, list) and screen:
        lines.append(f"{'screen:':<12}| {screen[0]}")
        lines.extend(f"{'':<12}| {row}" for row in screen[1:])
    return "\n".join(lines)


def format_event(event: Mapping[str, Any]) -> str:
    """One readable line for a watch line."""
    name = event.get("event")
    if name == "state":
        text = f"state {_text(event.get('state'))}"
        call = event.get("call")
        if call:
            text += f"; call {describe_call(call)}"
    elif name == "ring":
        text = f"ringing from {_text(event.get('from'))}"
    elif name == "call":
        text = f"call {describe_call(event.get('call'))}"
    elif name == "dtmf":
        text = f"dtmf {_text(event.get('digit'))}"
        if event.get("direction") == "received":
            text += " from the far end"
    elif name == "signal":
        text = f"provider event {_text(event.get('type'))}"
    elif name == "error":
        text = f"error: {_text(event.get('error'))}"
    elif name == "screen":
        screen = event.get("screen")
        rows = screen if isinstance(screen, list) else []
        text = "screen " + " / ".join(str(row) for row in rows)
    else:
        text = json.dumps(event, separators=(",", ":"))
    return f"{time.strftime('%H:%M:%S')} {text}"


# -- the CLI -------------------------------------------------------------------------


def add_subcommands(subparsers: Any) -> None:
    """Add the control commands to an ``argparse`` subparsers object.

    Each command takes ``--socket PATH`` (default :data:`DEFAULT_PATH`);
    ``status`` and ``watch`` also take ``--json``.
    """

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text)
        parser.add_argument(
            "--socket",
            type=Path,
            default=DEFAULT_PATH,
            metavar="PATH",
            help=f"the daemon's control socket (default {DEFAULT_PATH})",
        )
        return parser

    status = command("status", "show the phone's state, registration, call and screen")
    status.add_argument("--json", action="store_true", help="print the daemon's raw reply")
    dial = command("dial", "dial a number as if typed on the keypad and sent")
    dial.add_argument("number", help="the number, e.g. +14085551234 or '408 555 1234'")
    command("hangup", "hang up (put the handset on hook)")
    command("pull", "take here the call in use on another device")
    key = command("key", "press a keypad key (0-9, *, #) or a named button")
    key.add_argument("key", help="0-9, *, # or a button name")
    hook = command("hook", "lift (off) or replace (on) the handset")
    hook.add_argument("state", choices=("off", "on"))
    reset = command(
        "reset", "factory reset: forget the login, the handler and the call log, log in anew"
    )
    reset.add_argument("--yes", action="store_true", help="do not ask (needed without a tty)")
    watch_cmd = command("watch", "print the phone's changes as they happen, until Ctrl-C")
    watch_cmd.add_argument("--json", action="store_true", help="print the raw watch lines")


def request_for(args: argparse.Namespace) -> dict[str, Any]:
    """The request a parsed command sends (``hangup`` is putting the handset on hook)."""
    command = args.command
    if command == "status":
        return {"cmd": "status"}
    if command == "dial":
        return {"cmd": "dial", "number": args.number}
    if command == "hangup":
        return {"cmd": "hook", "state": "on"}
    if command == "pull":
        return {"cmd": "pull"}
    if command == "key":
        return {"cmd": "key", "key": args.key}
    if command == "hook":
        return {"cmd": "hook", "state": args.state}
    if command == "reset":
        return {"cmd": "reset"}
    raise ValueError(f"{command!r} is not a one-request control command")


def run(args: argparse.Namespace, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Carry out a parsed control command; return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        if args.command == "watch":
            return _watch(args.socket, out, err, raw=args.json)
        if args.command == "reset" and not args.yes and not _confirm_reset(out, err):
            return 1
        reply = request(args.socket, request_for(args))
    except ControlClientError as exc:
        message = str(exc)
        prefix = "" if message.startswith("ript-phone ") else "ript-phone: "
        print(prefix + message, file=err)
        return 1
    if args.command == "status":
        if args.json:
            print(json.dumps(reply, separators=(",", ":")), file=out)
        else:
            print(format_status(reply), file=out)
    return 0


def _confirm_reset(out: IO[str], err: IO[str], stdin: IO[str] | None = None) -> bool:
    """Ask at a terminal; without one (a script), refuse: ``--yes`` says it on purpose."""
    stdin = sys.stdin if stdin is None else stdin
    if not stdin.isatty():
        print("ript-phone: reset needs --yes when not run at a terminal", file=err)
        return False
    print(
        "This forgets the phone's login, its handler and its call log. Type yes to go on: ",
        end="",
        file=out,
        flush=True,
    )
    answer = stdin.readline().strip().lower()
    if answer != "yes":
        print("ript-phone: reset cancelled", file=err)
        return False
    return True


def _watch(path: Path, out: IO[str], err: IO[str], *, raw: bool) -> int:
    events = watch(path)
    try:
        for event in events:
            if raw:
                print(json.dumps(event, separators=(",", ":")), file=out, flush=True)
            else:
                print(format_event(event), file=out, flush=True)
    except KeyboardInterrupt:
        return 0
    finally:
        events.close()
    print(f"ript-phone: the daemon closed the control socket {path}", file=err)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run one control command alone (the CLI proper wires in :func:`run`)."""
    parser = argparse.ArgumentParser(prog="ript-phone", description="Drive a running ript-phone.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_subcommands(subparsers)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
