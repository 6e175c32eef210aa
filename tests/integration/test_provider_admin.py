"""The provider's admin socket: a running provider driven through ``admin_main`` and raw lines."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from ript.protocol.descriptions import ClaimRequest, HandlerDescription, PushBinding
from ript.protocol.events import Migrate
from ript.protocol.jsonstream import EventStreamReader
from ript.protocol.taps import TapType
from riptphone.net.h3 import H3Client
from riptprovider.admin import admin_main, admin_socket_path, start_admin
from riptprovider.server import RunningServer, ServerConfig, serve

from .test_provider_server import ACCOUNTS, AD, AUTH, TOKEN, next_events

Taps = list[tuple[str | None, TapType, str]]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "provider.toml"
    path.write_text(
        f'[server]\nstate_dir = "state"\n\n[accounts.alice]\nnumbers = ["+14085551002"]\n'
        f'tokens = ["{TOKEN}"]\n'
    )
    return path


def run(tmp_path: Path, body: Callable[[RunningServer, Path, Taps], Awaitable[None]]) -> None:
    config = write_config(tmp_path)
    state = tmp_path / "state"

    async def main() -> None:
        server = await serve(ServerConfig(state_dir=state, accounts=ACCOUNTS))
        admin = await start_admin(server)
        core = server.core
        assert core is not None
        taps: Taps = []
        core.push_hook = lambda handler, tap, uri: taps.append((handler.uri, tap, uri))
        core.push_binder = lambda account, handler: PushBinding(
            "mqtt://127.0.0.1:1883", f"ript/{handler.handler_id}", "u", "push-secret"
        )
        for handler_id, name in (("id-desk", "Desk"), ("id-kitchen", "Kitchen")):
            core.register_handler(core.account("alice"), HandlerDescription(handler_id, AD, name))
        try:
            await asyncio.wait_for(body(server, config, taps), 20)
        finally:
            await admin.close()
            await server.close()

    asyncio.run(main())


async def admin(config: Path, *argv: str) -> tuple[int, dict[str, object] | str]:
    """Run ``ript-provider admin --config FILE ...`` in a thread; (status, reply or stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()

    def call() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return admin_main(["--config", str(config), *argv])

    code = await asyncio.to_thread(call)
    if code == 0:
        reply = json.loads(out.getvalue())
        assert reply["ok"] is True
        return code, reply
    return code, err.getvalue()


def test_socket_mode_handlers_inbound_calls_answer_hangup(tmp_path: Path) -> None:
    async def body(server: RunningServer, config: Path, taps: Taps) -> None:
        path = admin_socket_path(tmp_path / "state")
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        code, reply = await admin(config, "handlers", "alice")
        assert code == 0 and isinstance(reply, dict)
        handlers = reply["handlers"]
        assert isinstance(handlers, list)
        assert [(h["handler-id"], h["name"]) for h in handlers] == [
            ("id-desk", "Desk"),
            ("id-kitchen", "Kitchen"),
        ]
        assert "push-secret" not in json.dumps(reply)
        desk, kitchen = (h["uri"] for h in handlers)

        code, reply = await admin(config, "inbound", "alice", "+14085550100")
        assert code == 0 and isinstance(reply, dict)
        call = reply["call"]
        assert isinstance(call, dict)
        uri = call["uri"]
        assert (call["direction"], call["state"], call["from"]) == (
            "inbound",
            "proceeding",
            "+14085550100",
        )
        assert taps == [(desk, TapType.CALL, uri), (kitchen, TapType.CALL, uri)]
        code, reply = await admin(config, "calls", "alice")
        assert code == 0 and isinstance(reply, dict)
        assert [c["uri"] for c in reply["calls"]] == [uri]  # type: ignore[attr-defined]

        taps.clear()
        assert (await admin(config, "answer", uri, "Kitchen"))[0] == 0
        assert (await admin(config, "decline", uri.rsplit("/", 1)[1], "id-desk"))[0] == 0
        assert taps == [(kitchen, TapType.ANSWER, uri), (desk, TapType.DECLINE, uri)]
        code, err = await admin(config, "move", uri, "Desk")
        assert code == 2 and isinstance(err, str) and "use answer" in err
        assert err.count("\n") == 1 and err.startswith("ript-provider admin: ")

        code, reply = await admin(config, "event", uri, "migrate", "--uri", "https://x.test/c")
        assert code == 0 and isinstance(reply, dict)
        assert reply["event"] == {
            **reply["event"],  # type: ignore[dict-item]
            "event": "migrate",
            "uri": "https://x.test/c",
        }
        assert (await admin(config, "hangup", uri, "--reason", "caller gave up"))[0] == 0
        code, reply = await admin(config, "calls", "alice")
        assert code == 0 and isinstance(reply, dict) and reply["calls"] == []
        code, err = await admin(config, "hangup", uri)
        assert code == 2 and "unknown or over" in str(err)

    run(tmp_path, body)


def test_place_move_and_errors(tmp_path: Path) -> None:
    async def body(server: RunningServer, config: Path, taps: Taps) -> None:
        code, reply = await admin(config, "place", "alice", "Desk", "+14089529999")
        assert code == 0 and isinstance(reply, dict)
        call = reply["call"]
        assert isinstance(call, dict)
        assert (call["direction"], call["state"], call.get("handler")) == (
            "outbound",
            "proceeding",
            None,
        )
        assert [(t[1], t[2]) for t in taps] == [(TapType.CALL, call["uri"])]
        code, err = await admin(config, "place", "alice", "Nobody", "+14089529999")
        assert code == 2 and "no handler 'Nobody'" in str(err)
        code, err = await admin(config, "inbound", "carol", "+14085550100")
        assert code == 2 and "no account 'carol'" in str(err)
        code, err = await admin(config, "inbound", "alice", "anonymous")
        assert code == 2 and "E.164" in str(err)

    run(tmp_path, body)


def test_raw_lines_bad_json_unknown_command_and_several_requests(tmp_path: Path) -> None:
    async def body(server: RunningServer, config: Path, taps: Taps) -> None:
        path = admin_socket_path(tmp_path / "state")
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        writer.write(b'not json\n{"cmd": "fly"}\n[1]\n{"cmd": "calls"}\n')
        writer.write(b'{"cmd": "calls", "account": "alice"}\n')
        await writer.drain()
        replies = [json.loads(await reader.readline()) for _ in range(5)]
        writer.close()
        assert [r["ok"] for r in replies] == [False, False, False, False, True]
        assert "not JSON" in replies[0]["error"]
        assert "unknown command 'fly'" in replies[1]["error"]
        assert "JSON object" in replies[2]["error"]
        assert "'account'" in replies[3]["error"]
        assert replies[4]["calls"] == []

    run(tmp_path, body)


def test_no_provider_running_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    assert admin_main(["--config", str(config), "calls", "alice"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the provider running?" in err
    # As ``ript-provider admin ...`` passes it: with the subcommand's name first.
    assert admin_main(["admin", "--config", str(config), "handlers", "alice"]) == 2
    assert "is the provider running?" in capsys.readouterr().err


def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(admin_socket_path(state)))
    stale.close()  # the file stays; nobody listens: a provider that died

    def body_factory() -> Callable[[RunningServer, Path, Taps], Awaitable[None]]:
        async def body(server: RunningServer, config: Path, taps: Taps) -> None:
            code, reply = await admin(config, "calls", "alice")
            assert code == 0 and reply == {"ok": True, "calls": []}

        return body

    run(tmp_path, body_factory())


def test_migrate_rename_over_http3(tmp_path: Path) -> None:
    async def body(server: RunningServer, config: Path, taps: Taps) -> None:
        code, reply = await admin(config, "inbound", "alice", "+14085550100")
        assert code == 0 and isinstance(reply, dict)
        uri = reply["call"]["uri"]  # type: ignore[index]
        base = f"https://localhost:{server.port}"
        async with H3Client(ca_file=str(server.ca.ca_file)) as client:
            path = uri.removeprefix(server.origin)
            reverse = await client.open_stream(
                "GET", f"{base}{path}/events", headers=AUTH, end_stream=True
            )
            reader = EventStreamReader()
            assert [e.type for e in await next_events(reverse, reader, 1)] == ["proceeding"]
            code, reply = await admin(config, "event", uri, "migrate", "--rename")
            assert code == 0 and isinstance(reply, dict)
            new_uri = reply["event"]["uri"]  # type: ignore[index]
            (migrate,) = await next_events(reverse, reader, 1)
            assert isinstance(migrate, Migrate) and migrate.uri == new_uri
            old = await client.request("GET", f"{base}{path}", headers=AUTH)
            assert old.status == 404
            new_path = new_uri.removeprefix(server.origin)
            again = await client.open_stream(
                "GET", f"{base}{new_path}/events", headers=AUTH, end_stream=True
            )
            assert [e.type for e in await next_events(again, EventStreamReader(), 1)] == [
                "proceeding"
            ]
            code, err = await admin(
                config, "event", new_uri, "handler-changed", "--handler", "Nobody"
            )
            assert code == 2 and "no handler 'Nobody'" in str(err)

    run(tmp_path, body)


def test_migrate_rename_gives_the_leg_cookie_again_for_the_new_path(tmp_path: Path) -> None:
    """The phone's PUT {new}/events (no cookie: a re-establishment) gets its leg's cookie
    back, for the new path, so its media there says which leg it is."""

    async def body(server: RunningServer, config: Path, taps: Taps) -> None:
        base = f"https://localhost:{server.port}"
        json_auth = {**AUTH, "content-type": "application/json"}
        async with H3Client(ca_file=str(server.ca.ca_file)) as client:
            registered = await client.request(
                "POST",
                f"{base}/tgs/alice/handlers",
                headers=json_auth,
                body=HandlerDescription("id-phone", AD, "Phone").to_bytes(),
            )
            assert registered.status == 201
            handler = HandlerDescription.from_bytes(registered.body).uri
            code, reply = await admin(config, "inbound", "alice", "+14085550100")
            assert code == 0 and isinstance(reply, dict)
            uri = reply["call"]["uri"]  # type: ignore[index]
            path = uri.removeprefix(server.origin)
            claim = await client.request(
                "POST", f"{base}{path}", headers=json_auth, body=ClaimRequest(handler).to_bytes()
            )
            assert claim.status == 200
            leg = client.cookies.header(base, f"{path}/media")
            assert leg is not None and leg.startswith("ript-leg=")
            code, reply = await admin(config, "event", uri, "migrate", "--rename")
            assert code == 0 and isinstance(reply, dict)
            new_path = reply["event"]["uri"].removeprefix(server.origin)  # type: ignore[index]
            assert client.cookies.header(base, f"{new_path}/media") is None
            forward = await client.open_stream(
                "PUT", f"{base}{new_path}/events", headers=json_auth, send_cookies=False
            )
            head = await forward.response_headers()
            assert head.status == 200
            assert head.get_all("set-cookie") == [f"{leg}; Path={new_path}; Secure; HttpOnly"]
            assert client.cookies.header(base, f"{new_path}/media") == leg
            forward.reset()

    run(tmp_path, body)
