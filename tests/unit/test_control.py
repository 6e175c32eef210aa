"""The control socket (profile section 11) on real UNIX sockets, and the CLI commands on it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import grp
import io
import json
import os
import socket
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riptphone.control import client as control_client
from riptphone.control import server as control
from riptphone.control.server import (
    MAX_LINE,
    ControlError,
    ControlRefused,
    ControlServer,
    Request,
    RequestError,
    parse_request,
)

STATUS: dict[str, Any] = {
    "state": "in-call",
    "registered": True,
    "push": "up",
    "number": "+14085551234",
    "handler": "https://tg.example/h/7",
    "call": {
        "uri": "https://tg.example/c/1",
        "direction": "outbound",
        "peer": "+14089529999",
        "state": "active",
        "codec": "opus",
        "transport": "webtransport",
        "stats": {"lost": 0},
    },
    "screen": ["+1 408 952 9999", "00:42"],
}


class FakePhone:
    """A ControlHandler recording what it was asked; ``refuse``/``crash`` make it fail."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.refuse: str | None = None
        self.crash = False

    def _act(self, *call: str) -> None:
        self.calls.append(call)
        if self.refuse is not None:
            raise ControlRefused(self.refuse)
        if self.crash:
            raise RuntimeError("secret internals /home/pi/token")

    def status(self) -> dict[str, Any]:
        self._act("status")
        return dict(STATUS)

    def hook(self, state: Literal["off", "on"]) -> None:
        self._act("hook", state)

    def key(self, key: str) -> None:
        self._act("key", key)

    def dial(self, number: str) -> None:
        self._act("dial", number)

    async def pull(self) -> None:  # an awaitable result is awaited
        await asyncio.sleep(0)
        self._act("pull")


def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "run" / "c.sock"


class Conn:
    """A raw asyncio client on the socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path, *, limit: int = 1 << 20) -> Conn:
        # asyncio reads ahead up to twice the limit even when nobody calls
        # read(): a client meant to stall needs a small one.
        reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=limit)
        return cls(reader, writer)

    async def line(self) -> dict[str, Any] | None:
        raw = await self.reader.readline()
        if not raw:
            return None
        obj = json.loads(raw)
        assert isinstance(obj, dict)
        return obj

    async def ask(self, request: object) -> dict[str, Any]:
        raw = request if isinstance(request, bytes) else json.dumps(request).encode() + b"\n"
        self.writer.write(raw)
        await self.writer.drain()
        reply = await self.line()
        assert reply is not None, "the server closed instead of answering"
        return reply

    def close(self) -> None:
        self.writer.close()


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, phone: FakePhone | None = None, **kwargs: Any
) -> AsyncIterator[tuple[ControlServer, FakePhone]]:
    phone = phone or FakePhone()
    async with ControlServer(sock_path(tmp_path), phone, **kwargs) as server:
        yield server, phone


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


# -- requests and replies ---------------------------------------------------------


def test_every_request_reaches_the_handler_and_is_answered(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (_, phone):
            conn = await Conn.open(sock_path(tmp_path))
            assert await conn.ask({"cmd": "status"}) == {"ok": True, **STATUS}
            assert await conn.ask({"cmd": "hook", "state": "off"}) == {"ok": True}
            assert await conn.ask({"cmd": "key", "key": "5"}) == {"ok": True}
            assert await conn.ask({"cmd": "key", "key": "#"}) == {"ok": True}
            assert await conn.ask({"cmd": "key", "key": "redial"}) == {"ok": True}
            assert await conn.ask({"cmd": "dial", "number": "+1 (408) 952-9999"}) == {"ok": True}
            assert await conn.ask({"cmd": "pull"}) == {"ok": True}
            assert await conn.ask({"cmd": "hook", "state": "on"}) == {"ok": True}
            conn.close()
            assert phone.calls == [
                ("status",),
                ("hook", "off"),
                ("key", "5"),
                ("key", "#"),
                ("key", "redial"),
                ("dial", "+1 (408) 952-9999"),
                ("pull",),
                ("hook", "on"),
            ]

    run(body)


def test_a_refusal_is_the_handlers_sentence_and_the_connection_goes_on(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (_, phone):
            conn = await Conn.open(sock_path(tmp_path))
            phone.refuse = "cannot dial during a call"
            reply = await conn.ask({"cmd": "dial", "number": "5551234"})
            assert reply == {"ok": False, "error": "cannot dial during a call"}
            phone.refuse = None
            assert await conn.ask({"cmd": "pull"}) == {"ok": True}
            conn.close()

    run(body)


def test_a_handler_crash_is_a_generic_error_without_its_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (server, phone):
            conn = await Conn.open(sock_path(tmp_path))
            phone.crash = True
            reply = await conn.ask({"cmd": "key", "key": "1"})
            assert reply["ok"] is False
            assert reply["error"] == "the phone failed to carry out key; see its log"
            reply = await conn.ask({"cmd": "status"})
            assert reply["ok"] is False and "secret" not in json.dumps(reply)
            phone.crash = False
            assert (await conn.ask({"cmd": "status"}))["state"] == "in-call"
            assert server.clients == 1
            conn.close()

    run(body)
    assert "secret internals" in caplog.text  # logged on the phone, not sent


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"{nope\n", "the request is not JSON"),
        (b"\xff\xfe\n", "the request is not UTF-8"),
        (b'"status"\n', "must be a JSON object, not a string"),
        (b"[1]\n", "must be a JSON object, not an array"),
        (b'{"state": "on"}\n', 'the request has no "cmd" member'),
        (b'{"cmd": 7}\n', '"cmd" must be a string, not a number'),
        (b'{"cmd": "hangup"}\n', 'unknown command "hangup"; expected one of status, hook'),
        (b'{"cmd": "hook"}\n', 'a hook request needs a "state" member'),
        (b'{"cmd": "hook", "state": "up"}\n', '"state" must be "off" or "on", not "up"'),
        (b'{"cmd": "hook", "state": true}\n', '"state" must be "off" or "on", not a boolean'),
        (b'{"cmd": "key", "key": "55"}\n', '"key" must be 0-9, *, # or a button name'),
        (b'{"cmd": "key", "key": ""}\n', '"key" must be 0-9, *, # or a button name'),
        (b'{"cmd": "key", "key": "Redial"}\n', 'not "Redial"'),
        (b'{"cmd": "key", "key": 5}\n', "not a number"),
        (b'{"cmd": "dial", "number": 5551234}\n', '"number" must be 1 to 64 characters'),
        (b'{"cmd": "dial", "number": "sip:bob"}\n', '"number" must be 1 to 64 characters'),
        (b'{"cmd": "dial", "number": "+ -"}\n', '"number" has no digit to dial'),
        (b'{"cmd": "pull", "now": true}\n', 'unexpected member "now" in a pull request'),
        (b'{"cmd": "status", "cmd": "pull"}\n', "member 'cmd' appears twice"),
        (b'{"cmd": "dial", "number": NaN}\n', "NaN is not a JSON value"),
    ],
)
def test_each_bad_request_is_named_and_the_connection_stays_usable(
    tmp_path: Path, line: bytes, expected: str
) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (_, phone):
            conn = await Conn.open(sock_path(tmp_path))
            reply = await conn.ask(line)
            assert reply["ok"] is False
            assert expected in reply["error"], reply["error"]
            assert "Traceback" not in reply["error"]
            assert phone.calls == []
            assert await conn.ask({"cmd": "hook", "state": "off"}) == {"ok": True}
            conn.close()

    run(body)


def test_an_over_long_line_is_answered_then_the_connection_closed(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (_, phone):
            conn = await Conn.open(sock_path(tmp_path))
            reply = await conn.ask(b'{"cmd": "dial", "number": "' + b"1" * MAX_LINE + b'"}\n')
            assert reply == {
                "ok": False,
                "error": f"the request line is over the limit of {MAX_LINE} bytes",
            }
            assert await conn.reader.read() == b""  # closed
            conn.close()
            assert phone.calls == []
            # A line of exactly the limit is still a request.
            conn = await Conn.open(sock_path(tmp_path))
            request = b'{"cmd": "pull"}'
            assert await conn.ask(request.ljust(MAX_LINE) + b"\n") == {"ok": True}
            conn.close()

    run(body)


def test_requests_without_newline_before_close_and_blank_lines_are_handled(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (_, phone):
            conn = await Conn.open(sock_path(tmp_path))
            conn.writer.write(b'\n\r\n{"cmd": "key", "key": "9"}')
            conn.writer.write_eof()
            assert await conn.line() == {"ok": True}
            assert await conn.line() is None
            conn.close()
            assert phone.calls == [("key", "9")]

    run(body)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_parse_request_only_ever_raises_request_error(data: bytes) -> None:
    try:
        request = parse_request(data)
    except RequestError as exc:
        assert str(exc)
    else:
        assert isinstance(request, Request)


# -- watch ------------------------------------------------------------------------


def test_watch_receives_published_events_in_order_until_it_closes(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (server, _):
            conn = await Conn.open(sock_path(tmp_path))
            assert await conn.ask({"cmd": "watch"}) == {"ok": True}
            assert server.watchers == 1
            events = [
                {"event": "ring", "from": "+14089529999"},
                {"event": "state", **STATUS, "state": "ringing"},
                {"event": "dtmf", "digit": "5"},
                {"event": "call", "call": STATUS["call"]},
                {"event": "screen", "screen": ["hello"]},
                {"event": "error", "error": "provider unreachable"},
            ]
            for event in events:
                server.publish(event)
            assert [await conn.line() for _ in events] == events
            conn.close()
            while server.watchers:  # the server notices the close
                await asyncio.sleep(0.01)
            assert server.clients == 0
            server.publish({"event": "dtmf", "digit": "1"})  # nobody left; no error

    run(body)


def test_publish_rejects_events_outside_the_profile(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path) as (server, _):
            with pytest.raises(ValueError, match="cannot publish event 'hello'"):
                server.publish({"event": "hello"})

    run(body)


def test_a_slow_watcher_is_dropped_without_holding_up_the_others(tmp_path: Path) -> None:
    pad = "x" * 8000

    async def body() -> None:
        async with serving(tmp_path, watch_queue=4) as (server, _):
            slow = await Conn.open(sock_path(tmp_path), limit=1024)
            fast = await Conn.open(sock_path(tmp_path))
            assert await slow.ask({"cmd": "watch"}) == {"ok": True}
            assert await fast.ask({"cmd": "watch"}) == {"ok": True}
            published = 0
            while server.watchers == 2:
                assert published < 5000, "the slow watcher was never dropped"
                server.publish({"event": "screen", "screen": [str(published), pad]})
                published += 1
                got = await fast.line()  # the fast one keeps up line by line
                assert got is not None and got["screen"][0] == str(published - 1)
            assert server.watchers == 1
            server.publish({"event": "dtmf", "digit": "#"})
            assert await fast.line() == {"event": "dtmf", "digit": "#"}
            # The slow one got a prefix, in order, then the last line, then EOF.
            data = b""
            while chunk := await slow.reader.read(1 << 16):
                data += chunk
            assert data.endswith(b"\n")
            seen = [json.loads(line) for line in data.splitlines()]
            assert seen[-1] == {"event": "error", "error": "watch client too slow; closing"}
            numbers = [int(line["screen"][0]) for line in seen[:-1]]
            assert numbers == list(range(len(numbers)))
            assert 0 < len(numbers) < published
            slow.close()
            fast.close()

    run(body)


def test_closing_the_server_closes_every_client_and_removes_the_socket(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        path = sock_path(tmp_path)
        server = ControlServer(path, FakePhone())
        await server.start()
        watcher = await Conn.open(path)
        idle = await Conn.open(path)
        assert await watcher.ask({"cmd": "watch"}) == {"ok": True}
        assert await idle.ask({"cmd": "status"}) != {}
        await server.close()
        assert await watcher.reader.read() == b""
        assert await idle.reader.read() == b""
        watcher.close()
        idle.close()
        assert not path.exists()
        assert server.clients == 0
        await server.close()  # twice is harmless

    run(body)


def test_clients_over_the_limit_are_told_and_closed(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path, max_clients=1) as (_, _phone):
            first = await Conn.open(sock_path(tmp_path))
            assert await first.ask({"cmd": "pull"}) == {"ok": True}
            second = await Conn.open(sock_path(tmp_path))
            assert await second.line() == {
                "ok": False,
                "error": "too many control clients (1); try later",
            }
            assert await second.line() is None
            second.close()
            first.close()

    run(body)


# -- the socket file --------------------------------------------------------------


def test_socket_is_0660_in_a_0750_directory_and_given_to_the_group(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name

    async def body() -> None:
        path = tmp_path / "a" / "b" / "c.sock"
        async with ControlServer(path, FakePhone(), group=group):
            st = os.stat(path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == os.getgid()
            assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o750
            assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o750

    old = os.umask(0o002)  # a lax umask must not widen anything
    try:
        run(body)
    finally:
        os.umask(old)


def test_an_unknown_group_is_a_clear_error(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(ControlError, match="group 'no-such-group-zz' does not exist"):
            await ControlServer(sock_path(tmp_path), FakePhone(), group="no-such-group-zz").start()

    run(body)


def test_a_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(os.fspath(path))  # left behind as by a crash: a file nobody listens on
    dead.close()
    assert stat.S_ISSOCK(os.stat(path).st_mode)

    async def body() -> None:
        async with serving(tmp_path):
            conn = await Conn.open(path)
            assert await conn.ask({"cmd": "status"}) == {"ok": True, **STATUS}
            conn.close()

    run(body)


def test_a_live_socket_is_refused_not_stolen(tmp_path: Path) -> None:
    async def body() -> None:
        path = sock_path(tmp_path)
        async with serving(tmp_path):
            with pytest.raises(ControlError) as caught:
                await ControlServer(path, FakePhone()).start()
            assert str(caught.value) == (
                f"another ript-phone is already serving the control socket {path}"
            )
            conn = await Conn.open(path)  # the first daemon still answers
            assert await conn.ask({"cmd": "pull"}) == {"ok": True}
            conn.close()

    run(body)


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = sock_path(tmp_path)
    path.parent.mkdir()
    path.write_text("precious")

    async def body() -> None:
        with pytest.raises(ControlError, match="exists and is not a socket; not replacing it"):
            await ControlServer(path, FakePhone()).start()

    run(body)
    assert path.read_text() == "precious"


# -- the CLI ----------------------------------------------------------------------


class Threaded:
    """A ControlServer on its own loop in a thread, for the blocking CLI client."""

    def __init__(self, path: Path, phone: FakePhone) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(path, phone)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Awaitable[Any]) -> Any:
        async def wrap() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(10)

    def __enter__(self) -> Threaded:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def threaded(tmp_path: Path) -> Iterator[tuple[Threaded, FakePhone]]:
    phone = FakePhone()
    with Threaded(sock_path(tmp_path), phone) as served:
        yield served, phone


def cli(path: Path, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="ript-phone")
    subparsers = parser.add_subparsers(dest="command", required=True)
    control_client.add_subcommands(subparsers)
    args = parser.parse_args([*argv, "--socket", os.fspath(path)])
    out, err = io.StringIO(), io.StringIO()
    code = control_client.run(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_status_prints_a_readable_summary(tmp_path: Path) -> None:
    with threaded(tmp_path):
        code, out, err = cli(sock_path(tmp_path), "status")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "state:      in-call",
        "registered: yes",
        "push:       up",
        "number:     +14085551234",
        "handler:    https://tg.example/h/7",
        "call:       outbound +14089529999 active (opus over webtransport)",
        "screen:     | +1 408 952 9999",
        "            | 00:42",
    ]


def test_cli_status_json_prints_the_raw_reply(tmp_path: Path) -> None:
    with threaded(tmp_path):
        code, out, err = cli(sock_path(tmp_path), "status", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"ok": True, **STATUS}


def test_cli_actions_send_their_requests_and_hangup_is_hook_on(tmp_path: Path) -> None:
    with threaded(tmp_path) as (_, phone):
        path = sock_path(tmp_path)
        assert cli(path, "hook", "off") == (0, "", "")
        assert cli(path, "dial", "408 952 9999") == (0, "", "")
        assert cli(path, "key", "*") == (0, "", "")
        assert cli(path, "pull") == (0, "", "")
        assert cli(path, "hangup") == (0, "", "")
    assert phone.calls == [
        ("hook", "off"),
        ("dial", "408 952 9999"),
        ("key", "*"),
        ("pull",),
        ("hook", "on"),
    ]


def test_cli_errors_are_one_line_on_stderr_and_exit_1(tmp_path: Path) -> None:
    with threaded(tmp_path) as (_, phone):
        path = sock_path(tmp_path)
        phone.refuse = "nothing to pull"
        assert cli(path, "pull") == (1, "", "ript-phone: nothing to pull\n")
        phone.refuse = None
        code, out, err = cli(path, "dial", "bob")
        assert (code, out) == (1, "")
        assert err.startswith('ript-phone: "number" must be 1 to 64 characters')
        assert err.count("\n") == 1


def test_cli_says_when_the_phone_is_not_running(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.sock"
    assert cli(path, "status") == (
        1,
        "",
        f"ript-phone is not running (no control socket at {path})\n",
    )
    code, _, err = cli(path, "watch")
    assert code == 1 and "is not running" in err


@pytest.mark.parametrize("raw", [False, True])
def test_cli_watch_prints_events_until_the_daemon_goes(tmp_path: Path, raw: bool) -> None:
    with threaded(tmp_path) as (served, _):
        result: list[tuple[int, str, str]] = []
        argv = ("watch", "--json") if raw else ("watch",)
        reader = threading.Thread(target=lambda: result.append(cli(sock_path(tmp_path), *argv)))
        reader.start()
        for _ in range(2000):
            if served.server.watchers:
                break
            time.sleep(0.01)
        assert served.server.watchers == 1, "the CLI never started watching"
        for event in (
            {"event": "ring", "from": "+14089529999"},
            {"event": "dtmf", "digit": "5", "direction": "sent"},
            {"event": "dtmf", "digit": "#", "direction": "received"},
            {"event": "state", **STATUS},
            {"event": "screen", "screen": ["a", "b"]},
        ):
            served.loop.call_soon_threadsafe(served.server.publish, event)
        served.server.publish_threadsafe({"event": "error", "error": "no network"})
        # Closing the server (leaving the block) still delivers what was published.
    reader.join(10)
    code, out, err = result[0]
    assert code == 1
    assert err == f"ript-phone: the daemon closed the control socket {sock_path(tmp_path)}\n"
    lines = out.splitlines()
    if raw:
        assert [json.loads(line)["event"] for line in lines] == [
            "ring",
            "dtmf",
            "dtmf",
            "state",
            "screen",
            "error",
        ]
    else:
        assert [line.split(" ", 1)[1] for line in lines] == [
            "ringing from +14089529999",
            "dtmf 5",
            "dtmf # from the far end",
            "state in-call; call outbound +14089529999 active (opus over webtransport)",
            "screen a / b",
            "error: no network",
        ]


def test_closing_the_server_does_not_wait_forever_on_a_watcher_that_never_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "DROP_GRACE", 0.05)

    async def body() -> None:
        path = sock_path(tmp_path)
        server = ControlServer(path, FakePhone())
        await server.start()
        stuck = await Conn.open(path, limit=1024)
        assert await stuck.ask({"cmd": "watch"}) == {"ok": True}
        for n in range(200):  # far more than the socket buffers hold, under the queue
            server.publish({"event": "screen", "screen": [str(n), "y" * 8000]})
            await asyncio.sleep(0)
        assert server.watchers == 1
        await server.close()  # returns although the client never read a byte
        assert server.clients == 0 and not path.exists()
        with contextlib.suppress(ConnectionError):
            while await stuck.reader.read(1 << 16):
                pass  # what got through before the abort, then the end
        stuck.close()

    run(body)


def test_a_dropped_watcher_that_never_reads_is_aborted_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "DROP_GRACE", 0.05)

    async def body() -> None:
        async with serving(tmp_path, watch_queue=2) as (server, _):
            stuck = await Conn.open(sock_path(tmp_path), limit=1024)
            assert await stuck.ask({"cmd": "watch"}) == {"ok": True}
            published = 0
            while server.watchers:
                assert published < 5000, "the stuck watcher was never dropped"
                server.publish({"event": "screen", "screen": [str(published), "z" * 8000]})
                published += 1
                await asyncio.sleep(0)
            reapers = list(server._reapers)
            assert len(reapers) == 1
            await asyncio.gather(*reapers)  # the abort went through without an error
            assert server.clients == 0
            with contextlib.suppress(ConnectionError):
                while await stuck.reader.read(1 << 16):
                    pass
            stuck.close()

    run(body)


def test_an_idle_client_is_closed_so_it_cannot_hold_a_slot(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path, max_clients=2, idle_timeout=0.2) as (server, _phone):
            idle = await Conn.open(sock_path(tmp_path))
            watcher = await Conn.open(sock_path(tmp_path))
            assert await watcher.ask({"cmd": "watch"}) == {"ok": True}
            assert await idle.line() == {
                "ok": False,
                "error": "closed after 0.2 s without a request",
            }
            assert await idle.line() is None
            idle.close()
            await asyncio.sleep(0.3)
            # The slot is free again; the watcher, idle by design, is still there.
            fresh = await Conn.open(sock_path(tmp_path))
            assert await fresh.ask({"cmd": "pull"}) == {"ok": True}
            assert server.clients == 2
            fresh.close()
            watcher.close()

    run(body)


def test_watchers_leave_room_for_requests(tmp_path: Path) -> None:
    async def body() -> None:
        async with serving(tmp_path, max_clients=3, max_watchers=1) as (_, _phone):
            first = await Conn.open(sock_path(tmp_path))
            assert await first.ask({"cmd": "watch"}) == {"ok": True}
            second = await Conn.open(sock_path(tmp_path))
            assert await second.ask({"cmd": "watch"}) == {
                "ok": False,
                "error": "too many watchers (1); try later",
            }
            assert await second.line() is None
            third = await Conn.open(sock_path(tmp_path))
            assert await third.ask({"cmd": "pull"}) == {"ok": True}
            for conn in (first, second, third):
                conn.close()

    run(body)
