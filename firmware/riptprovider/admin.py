"""The reference provider's local admin interface: a UNIX socket speaking JSON lines.

The running provider serves ``<state_dir>/admin.sock`` (mode 0600: only the
provider's own user may inject calls).  Each line a client writes is one JSON
request ``{"cmd": "...", ...}``; the provider answers each with one line,
``{"ok": true, ...}`` or ``{"ok": false, "error": "<one sentence>"}``, the same
shape as the phone's control socket.  The commands drive the inbound draft's
single-user features (``docs/provider-admin.md``):

``inbound`` {account, from}; ``place`` {account, handler, to} (3PCC);
``move`` / ``answer`` / ``decline`` {call, handler}; ``hangup`` {call};
``event`` {call, type: migrate | handler-changed | reconnecting |
reconnected | end, uri?, rename?, handler?, reason?}; ``calls`` {account};
``handlers`` {account}; ``approve`` {code, account} and ``deny`` {code}: answer a
device-flow login's user code (any case, dash optional) as the verification
page would, without a password.

A ``call`` is a call URI or the UUID at its end; a ``handler`` a handler
URI, its ``handler-id`` or its (unique) name.  Replies never carry secrets:
no media keys, no push passwords.

:func:`serve_admin` runs the server side in the provider's loop;
:func:`admin_main` (``ript-provider admin --config FILE COMMAND ...``) is the
client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import socket
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ript.protocol.descriptions import CallDescription, HandlerDescription
from riptprovider.config import ProviderConfigError, load_config
from riptprovider.core import ProviderCore, RiptHttpError
from riptprovider.oauth import SignInError

if TYPE_CHECKING:
    from riptprovider.server import RunningServer

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"
SOCKET_MODE = 0o600
MAX_LINE = 65536
"""Bytes of one request line; a longer one is refused and the connection closed."""
CLIENT_TIMEOUT = 10.0
EXIT_OK = 0
EXIT_ERROR = 2
EVENT_TYPES = ("migrate", "handler-changed", "reconnecting", "reconnected", "end")


class AdminError(Exception):
    """A request the admin interface refuses; the message is one sentence."""


def admin_socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


# ---------------------------------------------------------------------------- requests


def _text(request: Mapping[str, Any], key: str, *, optional: bool = False) -> str | None:
    value = request.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise AdminError(f"'{request.get('cmd')}' needs '{key}' as a non-empty string")
    return value


def _need(request: Mapping[str, Any], key: str) -> str:
    value = _text(request, key)
    assert value is not None
    return value


def _call_json(call: CallDescription) -> dict[str, Any]:
    return dataclasses.replace(call, media_key=None).to_json()


def _handler_json(handler: HandlerDescription) -> dict[str, Any]:
    doc: dict[str, Any] = {"uri": handler.uri, "handler-id": handler.handler_id}
    if handler.name is not None:
        doc["name"] = handler.name
    if handler.push is not None:
        doc["topic"] = handler.push.topic  # never the password
    return doc


def handle_request(core: ProviderCore, request: Mapping[str, Any]) -> dict[str, Any]:
    """Carry out one decoded request; the reply without ``ok``.  Raises :class:`AdminError`."""
    cmd = request.get("cmd")
    try:
        if cmd == "inbound":
            account = core.account(_need(request, "account"))
            return {"call": _call_json(core.inject_inbound(account, _need(request, "from")))}
        if cmd == "place":
            account = core.account(_need(request, "account"))
            handler, to = _need(request, "handler"), _need(request, "to")
            return {"call": _call_json(core.place_for(account, handler, to))}
        if cmd in ("move", "answer", "decline"):
            operation = {"move": core.move_call, "answer": core.answer_on}.get(cmd, core.decline_on)
            call = operation(_need(request, "call"), _need(request, "handler"))
            return {"call": _call_json(call)}
        if cmd == "hangup":
            uri = core.find_call(_need(request, "call")).uri
            core.hangup(uri, _text(request, "reason", optional=True) or "hung up by the admin")
            return {}
        if cmd == "event":
            event_type = _need(request, "type")
            if event_type not in EVENT_TYPES:
                raise AdminError(f"'type' must be one of {', '.join(EVENT_TYPES)}")
            rename = request.get("rename", False)
            if not isinstance(rename, bool):
                raise AdminError("'rename' must be true or false")
            event = core.send_event(
                _need(request, "call"),
                event_type,
                uri=_text(request, "uri", optional=True),
                rename=rename,
                handler=_text(request, "handler", optional=True),
                reason=_text(request, "reason", optional=True),
            )
            return {"event": event.to_json()}
        if cmd == "calls":
            account = core.account(_need(request, "account"))
            return {"calls": [_call_json(c) for c in core.list_calls(account).calls]}
        if cmd == "handlers":
            account = core.account(_need(request, "account"))
            return {"handlers": [_handler_json(h) for h in core.handlers(account)]}
        if cmd == "approve":
            account_id = _need(request, "account")
            code = core.issuer.admin_approve(_need(request, "code"), account_id)
            return {"code": code, "approved": account_id}
        if cmd == "deny":
            return {"code": core.issuer.admin_deny(_need(request, "code")), "denied": True}
    except RiptHttpError as exc:
        raise AdminError(exc.message) from None
    except SignInError as exc:
        raise AdminError(str(exc)) from None
    known = "inbound, place, move, answer, decline, hangup, event, calls, handlers, approve, deny"
    raise AdminError(f"unknown command {cmd!r}; known: {known}")


def answer_line(core: ProviderCore, line: bytes) -> bytes:
    """One request line in, one reply line out (with its newline); never raises."""
    try:
        try:
            request = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AdminError(f"the request is not JSON: {exc}") from None
        if not isinstance(request, dict):
            raise AdminError("the request must be a JSON object")
        reply: dict[str, Any] = {"ok": True, **handle_request(core, request)}
    except AdminError as exc:
        reply = {"ok": False, "error": str(exc)}
    except Exception:
        log.exception("admin request failed")
        reply = {"ok": False, "error": "internal error (see the provider's log)"}
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


# ---------------------------------------------------------------------------- server


class AdminServer:
    """A serving admin socket; :meth:`close` stops it and removes the file."""

    def __init__(self, server: asyncio.Server, path: Path) -> None:
        self._server = server
        self.path = path

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _clear_stale(path: Path) -> None:
    """Remove a socket file a dead provider left; refuse one a live provider serves."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AdminError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        path.unlink()
    else:
        raise AdminError(f"another provider already serves {path}")
    finally:
        probe.close()


async def serve_admin(
    core: ProviderCore, path: Path, *, on_change: Callable[[], None] | None = None
) -> AdminServer:
    """Serve the admin socket at ``path`` (mode 0600) in the running loop.

    ``on_change`` runs after every request (the server's ``wake``, so that
    its timer sees deadlines an admin request moved).
    """
    _clear_stale(path)

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as exc:
                    line = exc.partial
                    if not line.strip():
                        return
                except asyncio.LimitOverrunError:
                    writer.write(b'{"ok":false,"error":"the request line is too long"}\n')
                    await writer.drain()
                    return
                if line.strip():
                    writer.write(answer_line(core, line))
                    await writer.drain()
                    if on_change is not None:
                        on_change()
                if not line.endswith(b"\n"):
                    return
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.fspath(path))
        # bind() made the file 0777 & ~umask; nobody can connect before listen().
        os.chmod(path, SOCKET_MODE)
        sock.listen(16)
        sock.setblocking(False)
        server = await asyncio.start_unix_server(client, sock=sock, limit=MAX_LINE)
    except OSError as exc:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        raise AdminError(f"cannot serve the admin socket {path}: {exc.strerror or exc}") from None
    log.info("admin socket listening at %s", path)
    return AdminServer(server, path)


async def start_admin(server: RunningServer) -> AdminServer:
    """Serve ``<state_dir>/admin.sock`` for a :class:`~riptprovider.server.RunningServer`."""
    assert server.core is not None
    return await serve_admin(
        server.core, admin_socket_path(server.config.state_dir), on_change=server.wake
    )


# ---------------------------------------------------------------------------- client


def request_admin(path: Path, request: Mapping[str, Any]) -> dict[str, Any]:
    """Send one request to the admin socket and return the decoded reply (blocking)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CLIENT_TIMEOUT)
        try:
            sock.connect(os.fspath(path))
        except OSError as exc:
            raise AdminError(
                f"cannot reach the provider's admin socket {path}: {exc.strerror or exc} "
                "(is the provider running?)"
            ) from None
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = bytearray()
            while not data.endswith(b"\n"):
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        except OSError as exc:
            raise AdminError(f"the admin socket {path}: {exc.strerror or exc}") from None
    try:
        reply = json.loads(bytes(data))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise AdminError(f"the provider answered no JSON line on {path}") from None
    if not isinstance(reply, dict):
        raise AdminError(f"the provider answered no JSON object on {path}")
    return reply


def add_admin_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``admin`` with its commands to ``ript-provider``'s subparsers."""
    admin = subparsers.add_parser(
        "admin", help="talk to the running provider: inject calls, 3PCC, events"
    )
    admin.add_argument(
        "--config", "-c", required=True, type=Path, metavar="FILE", help="the TOML file"
    )
    commands = admin.add_subparsers(dest="admin_command", required=True, metavar="ADMIN_COMMAND")
    sub = commands.add_parser("inbound", help="an inbound call from a number to an account")
    sub.add_argument("account")
    sub.add_argument("caller", metavar="FROM")
    sub = commands.add_parser("place", help="3PCC: an outbound call for a handler to pick up")
    sub.add_argument("account")
    sub.add_argument("handler")
    sub.add_argument("to", metavar="TO")
    for name, what in (
        ("move", "push the call to a handler (take tap)"),
        ("answer", "3PCC: answer the ringing call on a handler (answer tap)"),
        ("decline", "3PCC: decline the ringing call on a handler (decline tap)"),
    ):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("call")
        sub.add_argument("handler")
    sub = commands.add_parser("hangup", help="end the call (end event to every device)")
    sub.add_argument("call")
    sub.add_argument("--reason")
    sub = commands.add_parser("event", help="send an event to every device following a call")
    sub.add_argument("call")
    sub.add_argument("type", choices=EVENT_TYPES)
    sub.add_argument("--uri", help="migrate: send this URI (the call stays where it is)")
    sub.add_argument(
        "--rename", action="store_true", help="migrate: move the call to a fresh URI and send it"
    )
    sub.add_argument("--handler", help="handler-changed: the handler to name")
    sub.add_argument("--reason", help="end: the reason")
    for name, what in (("calls", "the account's live calls"), ("handlers", "its handlers")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("account")
    sub = commands.add_parser("approve", help="let in the phone showing USER_CODE (device login)")
    sub.add_argument("code", metavar="USER_CODE")
    sub.add_argument("--account", required=True, help="the account the phone logs in to")
    sub = commands.add_parser("deny", help="refuse the phone showing USER_CODE")
    sub.add_argument("code", metavar="USER_CODE")
    return admin


def _request_of(args: argparse.Namespace) -> dict[str, Any]:
    cmd: str = args.admin_command
    request: dict[str, Any] = {"cmd": cmd}
    if cmd == "inbound":
        request.update(account=args.account, **{"from": args.caller})
    elif cmd == "place":
        request.update(account=args.account, handler=args.handler, to=args.to)
    elif cmd in ("move", "answer", "decline"):
        request.update(call=args.call, handler=args.handler)
    elif cmd == "approve":
        request.update(code=args.code, account=args.account)
    elif cmd == "deny":
        request["code"] = args.code
    elif cmd in ("hangup", "event"):
        request["call"] = args.call
        for key in ("type", "uri", "handler", "reason"):
            value = getattr(args, key, None)
            if value is not None:
                request[key] = value
        if getattr(args, "rename", False):
            request["rename"] = True
    else:
        request["account"] = args.account
    return request


def run_admin(args: argparse.Namespace) -> int:
    """Send the parsed command; print the reply line; 0 on ``ok``, 2 otherwise."""
    try:
        config = load_config(args.config)
        reply = request_admin(admin_socket_path(config.state_dir), _request_of(args))
    except (ProviderConfigError, AdminError) as exc:
        print(f"ript-provider admin: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    if reply.get("ok") is not True:
        print(f"ript-provider admin: {reply.get('error', reply)}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    print(json.dumps(reply), flush=True)
    return EXIT_OK


def admin_main(argv: list[str] | None = None) -> int:
    """``ript-provider admin --config FILE COMMAND ...``; a leading ``admin`` is optional."""
    parser = argparse.ArgumentParser(prog="ript-provider")
    add_admin_parser(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["admin"]:
        words = words[1:]
    args = parser.parse_args(["admin", *words])
    return run_admin(args)
