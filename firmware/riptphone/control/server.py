"""The phone's local control socket (profile section 11).

A UNIX stream socket speaking JSON lines lets scripts, tests and the
``ript-phone`` CLI do what the hardware does (lift the handset, press keys,
dial, take a call from another device) and watch the phone change state.  It
is not RIPT and never reaches the network.

This module is only the socket layer.  The daemon owns the phone's state
machine and plugs it in through :class:`ControlHandler`; it tells watchers
about changes with :meth:`ControlServer.publish`.  Requests (one per line)::

    {"cmd": "status"}
    {"cmd": "hook", "state": "off" | "on"}
    {"cmd": "key", "key": "0".."9" | "*" | "#" | "<button name>"}
    {"cmd": "dial", "number": "..."}
    {"cmd": "pull"}
    {"cmd": "reset"}
    {"cmd": "watch"}

Each gets exactly one reply line, ``{"ok": true, ...}`` or
``{"ok": false, "error": "<one sentence>"}``; after the reply to ``watch``
the server pushes one line per published event until the client closes.

Guarantees:

* A bad request (not UTF-8, not JSON, not an object, unknown command, a
  missing, extra or ill-typed member) gets an error naming what was wrong and
  the connection stays usable.  A line over :data:`MAX_LINE` bytes is
  answered, then the connection is closed, because the rest of it cannot be
  told apart from the next request.
* A handler exception other than :class:`ControlRefused` is logged here and
  answered with a generic sentence: no traceback ever reaches a client and no
  request can stop the server.
* :meth:`ControlServer.publish` never blocks and never waits for a client:
  each watcher has a bounded queue, and a watcher whose queue is full is
  dropped (after a last ``{"event": "error", ...}`` line when the socket
  still takes it).
* The socket file is mode 0660 from the moment a client can connect, in a
  directory created 0750 when missing; a stale file left by a crash is
  replaced, a live socket of another daemon is never stolen.

See docs/control-socket.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import inspect
import json
import logging
import os
import re
import socket
import stat
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self

from ript.protocol.strictjson import JsonBodyError, json_type_name, load_json

log = logging.getLogger(__name__)

DEFAULT_PATH: Final = Path("/run/ript-phone/control.sock")
"""Where the daemon serves the socket unless the configuration says otherwise."""

SOCKET_MODE: Final = 0o660
DIRECTORY_MODE: Final = 0o750

MAX_LINE: Final = 4096
"""Longest request line in bytes, newline excluded."""

WATCH_QUEUE: Final = 256
"""Lines a watcher may fall behind before it is dropped."""

MAX_CLIENTS: Final = 32
"""Connections served at once; more are answered with an error and closed."""

MAX_WATCHERS: Final = 24
"""Of those, connections that may ``watch``: the rest stay free for requests."""

IDLE_TIMEOUT: Final = 30.0
"""Seconds a connection may wait between requests before it is closed (watchers excepted):
idle clients must not hold the slots others need."""

DROP_GRACE: Final = 1.0
"""Seconds a dropped or closed connection gets to flush before it is aborted."""

COMMANDS: Final = ("status", "hook", "key", "dial", "pull", "reset", "watch")
EVENTS: Final = frozenset({"state", "ring", "call", "dtmf", "signal", "error", "screen"})

_KEY = re.compile(r"(?:[0-9*#]|[a-z][a-z0-9-]{0,31})\Z")
# What a person may type as a number: keypad symbols, a leading-plus E.164
# and the separators people write; the daemon normalises it (section 6).
_NUMBER = re.compile(r"[0-9*#+ ().-]{1,64}\Z")
_MEMBERS: Final[Mapping[str, frozenset[str]]] = {
    "status": frozenset(),
    "hook": frozenset({"state"}),
    "key": frozenset({"key"}),
    "dial": frozenset({"number"}),
    "pull": frozenset(),
    "reset": frozenset(),
    "watch": frozenset(),
}
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes including the NUL


def _line(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


_OK: Final = _line({"ok": True})
_TOO_SLOW: Final = _line({"event": "error", "error": "watch client too slow; closing"})


class ControlError(Exception):
    """The control socket cannot be served; one sentence naming the path and why."""


class ControlRefused(Exception):  # noqa: N818 - the name the daemon's brief uses
    """Raised by a handler when a well-formed request does not fit the phone's state now.

    Its message (one sentence, e.g. ``"cannot dial during a call"``) is sent to
    the client as the error.
    """


class ControlHandler(Protocol):
    """What the daemon implements to be driven through the socket.

    Each method may return an awaitable instead, which the server awaits.  They
    run on the event loop, one request at a time per connection, and raise
    :class:`ControlRefused` for requests that do not fit now.  Unknown button
    names are the handler's to refuse: only it knows the buttons.
    """

    def status(self) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """The status fields of profile section 11 (without ``ok``)."""
        ...

    def hook(self, state: Literal["off", "on"]) -> Awaitable[None] | None:
        """Lift (``off``) or replace (``on``) the handset."""
        ...

    def key(self, key: str) -> Awaitable[None] | None:
        """Press one keypad key or a named button."""
        ...

    def dial(self, number: str) -> Awaitable[None] | None:
        """Dial ``number`` as typed (not yet normalised) and send it."""
        ...

    def pull(self) -> Awaitable[None] | None:
        """Take the call in use on another device here."""
        ...

    def reset(self) -> Awaitable[None] | None:
        """Factory reset: forget the login, handler and call log; log in anew."""
        ...


class RequestError(ValueError):
    """One sentence saying why a request line is not an acceptable request."""


@dataclass(frozen=True, slots=True)
class Request:
    """One validated request; ``arg`` is the state, key or number, else ``None``."""

    cmd: str
    arg: str | None = None


def parse_request(line: bytes) -> Request:
    """Validate one request line (newline stripped); raise :class:`RequestError`."""
    try:
        doc = load_json(line, limit=MAX_LINE, noun="request")
    except JsonBodyError as exc:
        raise RequestError(str(exc)) from None
    if not isinstance(doc, dict):
        raise RequestError(f"the request must be a JSON object, not {json_type_name(doc)}")
    cmd = doc.get("cmd")
    if cmd is None:
        raise RequestError('the request has no "cmd" member')
    if not isinstance(cmd, str):
        raise RequestError(f'"cmd" must be a string, not {json_type_name(cmd)}')
    members = _MEMBERS.get(cmd)
    if members is None:
        raise RequestError(f"unknown command {_show(cmd)}; expected one of {', '.join(COMMANDS)}")
    extra = sorted(set(doc) - members - {"cmd"})
    if extra:
        raise RequestError(f"unexpected member {_show(extra[0])} in a {cmd} request")
    for name in sorted(members):
        if name not in doc:
            raise RequestError(f'a {cmd} request needs a "{name}" member')
    if cmd == "hook":
        state = doc["state"]
        if state not in ("off", "on"):
            raise RequestError(f'"state" must be "off" or "on", not {_show(state)}')
        return Request(cmd, state)
    if cmd == "key":
        key = doc["key"]
        if not isinstance(key, str) or not _KEY.match(key):
            raise RequestError(
                f'"key" must be 0-9, *, # or a button name such as "redial", not {_show(key)}'
            )
        return Request(cmd, key)
    if cmd == "dial":
        number = doc["number"]
        if not isinstance(number, str) or not _NUMBER.match(number):
            raise RequestError(
                '"number" must be 1 to 64 characters of digits, *, #, + and separators, '
                f"not {_show(number)}"
            )
        if not any(c.isdigit() or c in "*#" for c in number):
            raise RequestError(f'"number" has no digit to dial: {_show(number)}')
        return Request(cmd, number)
    return Request(cmd)


def _show(value: object) -> str:
    """A short, safe rendering of a client's value for an error sentence."""
    if isinstance(value, str):
        text = json.dumps(value[:40] + ("..." if len(value) > 40 else ""))
        return text
    return json_type_name(value)


def error_line(message: str) -> bytes:
    """The reply line for a failed request."""
    return _line({"ok": False, "error": message})


@dataclass(slots=True, eq=False)
class _Client:
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    queue: asyncio.Queue[bytes] | None = None
    get: asyncio.Future[Any] | None = None


class ControlServer:
    """Serves :class:`ControlHandler` on a UNIX socket at ``path``.

    ``group`` names the group that may use the socket (it and the directory,
    when created here, are given to it); without it the socket keeps the
    daemon's primary group.  Use ``async with`` or :meth:`start` /
    :meth:`close`.
    """

    def __init__(
        self,
        path: Path,
        handler: ControlHandler,
        *,
        group: str | None = None,
        watch_queue: int = WATCH_QUEUE,
        max_clients: int = MAX_CLIENTS,
        max_watchers: int = MAX_WATCHERS,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        if watch_queue < 1 or max_clients < 1 or max_watchers < 0 or idle_timeout <= 0:
            raise ValueError("control server limits must be positive")
        self._max_watchers = min(max_watchers, max_clients)
        self._idle_timeout = idle_timeout
        self.path = Path(path)
        self._handler = handler
        self._group = group
        self._watch_queue = watch_queue
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: set[_Client] = set()
        self._watchers: set[_Client] = set()
        self._inode: tuple[int, int] | None = None
        self._reapers: set[asyncio.Future[None]] = set()

    @property
    def clients(self) -> int:
        """Connections open now, watchers included."""
        return len(self._clients)

    @property
    def watchers(self) -> int:
        """Connections receiving watch lines now."""
        return len(self._watchers)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the socket file and begin serving; raise :class:`ControlError`."""
        if self._server is not None:
            raise RuntimeError("the control server is already started")
        self._loop = asyncio.get_running_loop()
        gid = self._group_id()
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise ControlError(f"the control socket path {self.path} is too long for a socket")
        self._make_directory(gid)
        await self._clear_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(self.path))
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)
            # bind() creates the file as 0777 & ~umask.  Tighten it (and give
            # it to the group) before listen(): until then every connect() is
            # refused, so nobody can slip in while the mode is still wide.
            # Changing the umask instead would be process-wide, racing any
            # thread that creates files meanwhile.
            os.chmod(self.path, SOCKET_MODE)
            if gid is not None:
                os.chown(self.path, -1, gid)
            sock.listen(16)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except OSError as exc:
            sock.close()
            self._unlink()
            raise ControlError(
                f"cannot serve the control socket at {self.path}: {exc.strerror or exc}"
            ) from None
        log.info("control socket listening at %s", self.path)

    def _group_id(self) -> int | None:
        if self._group is None:
            return None
        try:
            return grp.getgrnam(self._group).gr_gid
        except KeyError:
            raise ControlError(f"the control socket group {self._group!r} does not exist") from None

    def _make_directory(self, gid: int | None) -> None:
        """Create the missing directories above the socket, each 0750 (and the group's)."""
        missing: list[Path] = []
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        for directory in reversed(missing):
            try:
                directory.mkdir(mode=DIRECTORY_MODE)
                os.chmod(directory, DIRECTORY_MODE)  # mkdir's mode is filtered by the umask
                if gid is not None:
                    os.chown(directory, -1, gid)
            except FileExistsError:
                pass  # made by someone else meanwhile; checked below
            except OSError as exc:
                raise ControlError(
                    f"cannot create {directory} for the control socket: {exc.strerror or exc}"
                ) from None
        if not self.path.parent.is_dir():
            raise ControlError(
                f"cannot serve the control socket in {self.path.parent}: it is not a directory"
            )

    async def _clear_stale(self) -> None:
        """Remove a socket file nobody answers on; refuse a live one or a non-socket."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"cannot inspect {self.path}: {exc.strerror or exc}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            assert self._loop is not None
            await asyncio.wait_for(self._loop.sock_connect(probe, os.fspath(self.path)), 2.0)
        except ConnectionRefusedError:
            log.info("replacing the stale control socket at %s", self.path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        except TimeoutError:
            pass  # someone holds it but is too busy to accept: it is alive
        except OSError as exc:
            raise ControlError(f"cannot probe {self.path}: {exc.strerror or exc}") from None
        finally:
            probe.close()
        raise ControlError(f"another ript-phone is already serving the control socket {self.path}")

    def _unlink(self) -> None:
        """Remove the socket file if it is still the one this server made."""
        if self._inode is None:
            return
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.path)
        self._inode = None

    async def close(self) -> None:
        """Stop listening, close every connection and remove the socket file."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._unlink()
        clients = list(self._clients)
        for client in clients:
            if client.queue is not None and not client.writer.transport.is_closing():
                # Watchers get what was published before the close (a last
                # state change, say) ahead of the EOF.
                get = client.get
                if get is not None and get.done() and not get.cancelled():
                    client.writer.write(get.result())
                while not client.queue.empty():
                    client.writer.write(client.queue.get_nowait())
            self._close(client.writer)  # flushes what is buffered, then EOF
        me = asyncio.current_task()  # a handler may close the server from a request
        tasks = [c.task for c in clients if c.task is not None and c.task is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Every closed connection has a reaper giving it a grace period to
        # flush (one period for all of them, in parallel), then aborting it.
        await asyncio.gather(*self._reapers, return_exceptions=True)
        self._clients.clear()
        self._watchers.clear()
        await server.wait_closed()
        log.info("control socket at %s closed", self.path)

    # -- watch lines -----------------------------------------------------------

    def publish(self, event: Mapping[str, Any]) -> None:
        """Send ``event`` to every watcher; never blocks.  Call on the loop's thread.

        ``event`` must have an ``"event"`` member naming one of :data:`EVENTS`
        and be JSON-serialisable; otherwise :class:`ValueError` or
        :class:`TypeError` is raised to the caller (a daemon bug), not to clients.
        """
        name = event.get("event")
        if name not in EVENTS:
            raise ValueError(f"cannot publish event {name!r}; expected one of {sorted(EVENTS)}")
        if not self._watchers:
            return
        line = _line(event)  # encoded once for every watcher
        for client in list(self._watchers):
            assert client.queue is not None
            try:
                client.queue.put_nowait(line)
            except asyncio.QueueFull:
                self._drop(client)

    def publish_threadsafe(self, event: Mapping[str, Any]) -> None:
        """:meth:`publish` from another thread (a GPIO or MQTT callback)."""
        if self._loop is None:
            raise RuntimeError("the control server is not started")
        self._loop.call_soon_threadsafe(self.publish, dict(event))

    def _drop(self, client: _Client) -> None:
        self._watchers.discard(client)
        log.warning("dropping a control watcher that fell %d lines behind", self._watch_queue)
        transport = client.writer.transport
        if not transport.is_closing():
            # Past the queue, straight into the transport: it is the last line,
            # and the lines already written there keep their order before it.
            transport.write(_TOO_SLOW)
            self._close(client.writer)
        if client.task is not None:
            client.task.cancel()

    def _close(self, writer: asyncio.StreamWriter) -> None:
        """Close gracefully; a peer that does not read is aborted after :data:`DROP_GRACE`."""
        if writer.transport.is_closing():
            return
        writer.close()
        reaper = asyncio.ensure_future(_reap(writer))
        self._reapers.add(reaper)
        reaper.add_done_callback(self._reapers.discard)

    # -- one connection ----------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer, asyncio.current_task())
        if len(self._clients) >= self._max_clients:
            writer.write(error_line(f"too many control clients ({self._max_clients}); try later"))
            with contextlib.suppress(OSError):
                await writer.drain()
            self._close(writer)
            return
        self._clients.add(client)
        try:
            await self._requests(client, reader)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except Exception:  # never let one client's trouble reach the loop
            log.exception("control connection failed")
        finally:
            self._clients.discard(client)
            self._watchers.discard(client)
            self._close(writer)

    async def _requests(self, client: _Client, reader: asyncio.StreamReader) -> None:
        writer = client.writer
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), self._idle_timeout)
            except TimeoutError:
                writer.write(error_line(f"closed after {self._idle_timeout:g} s without a request"))
                await writer.drain()
                return
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip():
                    return  # the client closed
                line = exc.partial  # a last request without its newline
            except asyncio.LimitOverrunError:
                writer.write(error_line(f"the request line is over the limit of {MAX_LINE} bytes"))
                await writer.drain()
                return
            if not line.strip():
                continue  # blank lines are harmless keep-alives
            try:
                request = parse_request(line.rstrip(b"\r\n"))
            except RequestError as exc:
                writer.write(error_line(str(exc)))
            else:
                if request.cmd == "watch" and len(self._watchers) >= self._max_watchers:
                    writer.write(error_line(f"too many watchers ({self._max_watchers}); try later"))
                    await writer.drain()
                    return
                writer.write(await self._answer(request))
                if request.cmd == "watch":
                    await writer.drain()
                    await self._watch(client, reader)
                    return
            await writer.drain()
            if reader.at_eof():
                return

    async def _answer(self, request: Request) -> bytes:
        handler = self._handler
        try:
            if request.cmd == "status":
                status = handler.status()
                if inspect.isawaitable(status):
                    status = await status
                assert isinstance(status, Mapping)
                return _line({**status, "ok": True})
            if request.cmd == "watch":
                return _OK
            result: Awaitable[None] | None
            if request.cmd == "hook":
                result = handler.hook("off" if request.arg == "off" else "on")
            elif request.cmd == "key":
                assert request.arg is not None
                result = handler.key(request.arg)
            elif request.cmd == "dial":
                assert request.arg is not None
                result = handler.dial(request.arg)
            elif request.cmd == "reset":
                result = handler.reset()
            else:
                result = handler.pull()
            if inspect.isawaitable(result):
                await result
            return _OK
        except ControlRefused as exc:
            return error_line(str(exc) or f"the phone refused the {request.cmd} request")
        except Exception:
            log.exception("control handler failed on %s", request.cmd)
            return error_line(f"the phone failed to carry out {request.cmd}; see its log")

    async def _watch(self, client: _Client, reader: asyncio.StreamReader) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(self._watch_queue)
        client.queue = queue
        self._watchers.add(client)
        writer = client.writer
        # Input after "watch" is read and ignored, only to see the client close.
        closed: asyncio.Future[Any] = asyncio.ensure_future(_until_eof(reader))
        try:
            while True:
                if client.get is None:
                    client.get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {client.get, closed}, return_when=asyncio.FIRST_COMPLETED
                )
                if closed in done:
                    return
                writer.write(client.get.result())
                client.get = None
                await writer.drain()
        finally:
            self._watchers.discard(client)
            closed.cancel()
            if client.get is not None:
                client.get.cancel()


async def _reap(writer: asyncio.StreamWriter) -> None:
    """Wait up to :data:`DROP_GRACE` for a closing connection to flush, then abort it."""
    lost = asyncio.ensure_future(writer.wait_closed())
    try:
        await asyncio.wait({lost}, timeout=DROP_GRACE)
    finally:
        if lost.done():
            if not lost.cancelled():
                lost.exception()  # a peer that reset is no news
        else:
            # Only while the connection is not yet lost: asyncio's transports
            # do not tolerate abort() after a graceful close has completed.
            lost.cancel()
            writer.transport.abort()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(ConnectionError, asyncio.LimitOverrunError, ValueError):
        while await reader.read(MAX_LINE):
            pass


__all__ = [
    "COMMANDS",
    "DEFAULT_PATH",
    "EVENTS",
    "MAX_LINE",
    "SOCKET_MODE",
    "WATCH_QUEUE",
    "ControlError",
    "ControlHandler",
    "ControlRefused",
    "ControlServer",
    "Request",
    "RequestError",
    "error_line",
    "parse_request",
]
