"""The provider and the phone as real subprocesses, and ways to watch them from outside.

Processes are started with the building blocks of :mod:`riptdev.processes`
(``python -m riptdev demo`` starts the same two).  The phone is driven only as
a user or a script would: the ``ript-phone`` CLI (``status``, ``dial``,
``hangup``, ``hook``, ``watch``) on its control socket.  The provider is seen
from outside through its log, over HTTP/3 with the account's bearer token
(:class:`ProviderApi`), and through its SQLite database opened read-only
(:class:`ProviderDb`), because it logs no line per request: a write to the
database is the observable trace of a ``POST /handlers`` (it always writes,
even for a handler id it already knows) or of an accepted ``POST /calls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alsa.fileplugin import FilePluginAlsa
from ript.protocol.descriptions import CallDescription, HandlerDescription
from riptdev.processes import (
    ProviderProcess,
    phone_config,
    start_phone,
    start_provider,
    stop_process,
    wait_for_line,
    wait_for_state,
    write_secret,
)
from riptphone.control.client import ControlClientError, ControlConnection
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, StaticToken

T = TypeVar("T")

TOKEN = "bob-e2e-token-0123456789"
NUMBER = "+14085551002"
ECHO = "+14089529999"
UNREACHABLE = "+14089520404"
ABROAD = "+442079460000"
WAIT = 15.0
START_WAIT = 30.0
"""For a phone to start: a new interpreter and its imports, which on a loaded machine
(the suite on two workers beside other work) took over 15 s; a bound, not a delay."""

PROVIDER_TOML = f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "provider-state"

[accounts.bob]
name = "Bob"
numbers = ["{NUMBER}"]
destinations = "+1408*"
tokens = ["{TOKEN}"]
unreachable = ["{UNREACHABLE}"]

[[accounts.bob.far-end]]
match = "{ECHO}"
outcome = "answer"
answer-after = 0.3
media = "echo"
"""


def provider_process(work: Path, config_text: str = PROVIDER_TOML) -> ProviderProcess:
    work.mkdir(parents=True, exist_ok=True)
    return start_provider(work, config_text)


def relaunch_provider(provider: ProviderProcess, name: str) -> ProviderProcess:
    """Start ``ript-provider serve`` again on the same configuration: the same port and
    state directory (after the old process was killed); its log is ``NAME.log``."""
    log = provider.config.parent / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "riptprovider", "serve", "--config", str(provider.config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        wait_for_line(process, log, "ready:", "the restarted provider")
    except BaseException:
        stop_process(process)
        raise
    return ProviderProcess(process, log, provider.config, provider.port, provider.ca_file)


class ProviderApi:
    """The provider over HTTP/3 with the account's token, as another client of it would."""

    def __init__(self, provider: ProviderProcess, token: str = TOKEN) -> None:
        self.provider = provider
        self.token = token

    def _run(self, work: Callable[[RiptClient], Awaitable[T]]) -> T:
        async def go() -> T:
            async with H3Client(ca_file=self.provider.ca_file) as http:
                client = RiptClient(http, self.provider.domain, StaticToken(self.token))
                return await asyncio.wait_for(work(client), WAIT)

        return asyncio.run(go())

    def get_handler(self, uri: str) -> HandlerDescription | None:
        return self._run(lambda client: client.get_handler(uri))

    def delete_handler(self, uri: str) -> None:
        self._run(lambda client: client.delete_handler(uri))

    def get_call(self, uri: str) -> CallDescription | None:
        return self._run(lambda client: client.get_call(uri))

    def calls(self) -> list[CallDescription]:
        """The account's calls not over (``GET {tg}/calls``)."""

        async def work(client: RiptClient) -> list[CallDescription]:
            return list((await client.list_calls(await client.discover())).calls)

        return self._run(work)


class ProviderDb:
    """The provider's database, read-only, for what neither its log nor HTTP shows."""

    def __init__(self, provider: ProviderProcess) -> None:
        path = provider.config.parent / "provider-state" / "provider.sqlite3"
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)

    def close(self) -> None:
        self._conn.close()

    @property
    def writes(self) -> int:
        """Changes whenever the provider commits anything (``PRAGMA data_version``)."""
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def handlers(self, account: str = "bob") -> list[str]:
        rows = self._conn.execute(
            "SELECT uri FROM handlers WHERE account = ? ORDER BY created", (account,)
        )
        return [str(row[0]) for row in rows]

    def calls(self, account: str = "bob") -> list[tuple[str, str]]:
        """Every call the provider ever accepted: (callee, state)."""
        rows = self._conn.execute(
            "SELECT to_number, state FROM calls WHERE account = ? ORDER BY created", (account,)
        )
        return [(str(row[0]), str(row[1])) for row in rows]


class PhoneProcess:
    """``ript-phone run`` in ``work``: a state directory, a control socket, one log per start."""

    def __init__(
        self,
        work: Path,
        provider: ProviderProcess,
        *,
        token: str | None = TOKEN,
        alsa: FilePluginAlsa | None = None,
        level: str = "info",
        env: dict[str, str] | None = None,
        number: str | None = NUMBER,
    ) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.state_dir = work / "state"
        self.state_dir.mkdir(mode=0o700, exist_ok=True)
        if token is not None:  # None: no lab token file, the phone logs in (OAuth)
            write_secret(self.state_dir / "token", token + "\n")
        self.socket = work / "control.sock"
        self.config = work / "phone.toml"
        devices = {}
        if alsa is not None:
            devices = {"capture": alsa.capture_device, "playback": alsa.playback_device}
        self.config.write_text(
            phone_config(
                provider,
                state_dir=self.state_dir,
                control_socket=self.socket,
                level=level,
                number=number,
                **devices,
            )
        )
        self.env = alsa.env() if alsa is not None else None
        if env:  # extra variables (NOTIFY_SOCKET, JOURNAL_STREAM...) on top of the usual ones
            self.env = {**(self.env if self.env is not None else os.environ), **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        """The log of the latest start."""
        return self.work / f"run-{self.runs}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, state: str = "idle") -> dict[str, Any]:
        """Start the daemon and wait for ``state``; the status reply."""
        self.runs += 1
        self.process = start_phone(self.config, self.log, self.env)
        return wait_for_state(self.process, self.socket, self.log, state, START_WAIT)

    def stop(self) -> int | None:
        """SIGTERM and wait: the exit status."""
        code = stop_process(self.process, WAIT)
        self.process = None
        return code

    def restart(self) -> dict[str, Any]:
        assert self.stop() == 0, self.log_text()
        return self.start()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ript-phone ARGS --socket S``, as a user types it."""
        return subprocess.run(
            [sys.executable, "-m", "riptphone", *args, "--socket", str(self.socket)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        done = self.cli("status", "--json")
        assert done.returncode == 0, done.stderr
        reply: dict[str, Any] = json.loads(done.stdout)
        return reply

    @contextmanager
    def watching(self, *, cli: bool = False) -> Iterator[Watch]:
        watch = Watch(self, cli=cli)
        try:
            yield watch
        finally:
            watch.close()


class Watch:
    """The phone's watch lines, as they arrive, on a queue.

    By default through the control socket (subscribed once the constructor
    returns).  With ``cli=True`` it is ``ript-phone watch --json`` as a
    subprocess; the CLI says nothing when it has subscribed, so :meth:`lift`
    lifts the handset (``ript-phone hook off``), again if need be, until the
    watch shows ``dialing``: from then on nothing is missed.
    """

    def __init__(self, phone: PhoneProcess, *, cli: bool = False) -> None:
        self.phone = phone
        self.seen: list[dict[str, Any]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None
        self._conn: ControlConnection | None = None
        if cli:
            command = ["watch", "--json", "--socket", str(phone.socket)]
            self.process = subprocess.Popen(
                [sys.executable, "-m", "riptphone", *command],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            target = self._read_cli
        else:
            self._conn = ControlConnection(phone.socket, timeout=None)
            self._conn.request({"cmd": "watch"})
            target = self._read_socket
        self._reader = threading.Thread(target=target, daemon=True)
        self._reader.start()

    def _read_cli(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read_socket(self) -> None:
        assert self._conn is not None
        try:
            while (event := self._conn.receive()) is not None:
                self._lines.put(json.dumps(event))
        except (ControlClientError, OSError, ValueError):
            pass  # closed under the reader by close()
        self._lines.put(None)

    def lift(self) -> None:
        """Handset off hook, seen on this watch; what was seen before is forgotten."""
        for _ in range(10):
            assert self.phone.cli("hook", "off").returncode == 0
            try:
                self.until(state_is("dialing"), wait=1.0)
            except AssertionError:
                # The CLI had not subscribed yet: put the handset back and lift it again.
                assert self.phone.cli("hook", "on").returncode == 0
                continue
            self.seen = [self.seen[-1]]
            return
        raise AssertionError("ript-phone watch never showed the handset lifted")

    def until(
        self, done: Callable[[dict[str, Any]], bool], wait: float = WAIT
    ) -> list[dict[str, Any]]:
        """Lines up to and including the first that ``done`` accepts."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no awaited watch line within {wait:g} s; got {got}"
                ) from None
            if line is None:
                raise AssertionError(f"the watch ended; got {got}")
            event = json.loads(line)
            got.append(event)
            self.seen.append(event)
            if done(event):
                return got

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn._sock.shutdown(socket.SHUT_RDWR)  # wakes the reader
            self._reader.join(WAIT)
            self._conn.close()
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)  # what Ctrl-C does: exit 0
            try:
                self.process.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate()


def state_is(state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == "state" and event.get("state") == state


def phone_states(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["state"]) for e in events if e.get("event") == "state"]


def call_states(events: list[dict[str, Any]]) -> list[str]:
    """The call-description states the phone reported, in order, each once."""
    states: list[str] = []
    for event in events:
        call = event.get("call")
        if isinstance(call, dict) and call and (not states or states[-1] != call["state"]):
            states.append(str(call["state"]))
    return states
