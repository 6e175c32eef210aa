"""The provider's inbound side over real HTTP/3 on loopback: two phones, one user.

Each phone is its own :class:`H3Client` (own connection, own cookie jar), as
two devices would be.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from ript.protocol.chunks import PayloadType, frame
from ript.protocol.descriptions import (
    CallDescription,
    CallList,
    ClaimRequest,
    HandlerDescription,
)
from ript.protocol.events import (
    Alerting,
    Answered,
    Direction,
    Event,
    HandlerChanged,
    format_timestamp,
)
from ript.protocol.jsonstream import EventStreamReader, EventStreamWriter
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkSender
from ript.protocol.taps import TapType
from riptphone.net.h3 import H3Client, H3Stream, Response
from riptprovider.server import RunningServer, ServerConfig, serve

from .test_provider_server import ACCOUNTS, AD, AUTH, JSON_AUTH, Env, next_events, place, until

CALLER = "+16505550100"


class Phone:
    """One device of the user: its own client and handler."""

    def __init__(self, server: RunningServer, client: H3Client, handler: str) -> None:
        self.server = server
        self.client = client
        self.handler = handler
        self.reader = EventStreamReader()
        self.reverse: H3Stream | None = None

    def url(self, uri: str) -> str:
        return f"https://localhost:{self.server.port}{uri.removeprefix(self.server.origin)}"

    async def get(self, uri: str) -> Response:
        return await self.client.request("GET", self.url(uri), headers=AUTH)

    async def claim(self, call: str) -> Response:
        body = ClaimRequest(self.handler).to_bytes()
        return await self.client.request("POST", self.url(call), headers=JSON_AUTH, body=body)

    async def follow(self, call: str) -> None:
        self.reverse = await self.client.open_stream(
            "GET", self.url(f"{call}/events"), headers=AUTH, end_stream=True
        )
        assert (await self.reverse.response_headers()).status == 200

    async def events(self, n: int) -> list[Event]:
        assert self.reverse is not None
        return await next_events(self.reverse, self.reader, n)


async def start_phone(server: RunningServer, stack: AsyncExitStack, name: str) -> Phone:
    client = await stack.enter_async_context(H3Client(ca_file=str(server.ca.ca_file)))
    url = f"https://localhost:{server.port}/tgs/alice/handlers"
    ad = HandlerDescription(f"id-{name}", AD, name).to_bytes()
    resp = await client.request("POST", url, headers=JSON_AUTH, body=ad)
    assert resp.status == 201, resp.body
    uri = HandlerDescription.from_bytes(resp.body).uri
    assert uri is not None
    return Phone(server, client, uri)


Body = Callable[[RunningServer, "Phone", "Phone"], Awaitable[None]]


def run(tmp_path: Path, body: Body) -> None:
    async def main() -> None:
        server = await serve(ServerConfig(state_dir=tmp_path, accounts=ACCOUNTS))
        try:
            async with AsyncExitStack() as stack:
                desk = await start_phone(server, stack, "Desk")
                kitchen = await start_phone(server, stack, "Kitchen")
                await asyncio.wait_for(body(server, desk, kitchen), 20)
        finally:
            await server.close()

    asyncio.run(main())


def stamp() -> str:
    return format_timestamp(time.time())


def test_forked_call_first_claim_wins_then_pull_retires_the_old_device(tmp_path: Path) -> None:
    async def body(server: RunningServer, desk: Phone, kitchen: Phone) -> None:
        core = server.core
        assert core is not None
        taps: list[tuple[str | None, TapType, str]] = []
        core.push_hook = lambda handler, tap, uri: taps.append((handler.uri, tap, uri))
        call = core.inject_inbound(core.account("alice"), CALLER).uri
        assert taps == [(desk.handler, TapType.CALL, call), (kitchen.handler, TapType.CALL, call)]

        # Both phones GET the call, follow it, and ring.
        for phone in (desk, kitchen):
            got = CallDescription.from_bytes((await phone.get(call)).body)
            assert (got.state.value, got.handler) == ("proceeding", None)
            await phone.follow(call)
            assert [e.type for e in await phone.events(1)] == ["proceeding"]
        forward = await desk.client.open_stream(
            "PUT", desk.url(f"{call}/events"), headers=JSON_AUTH
        )
        assert (await forward.response_headers()).status == 200
        writer = EventStreamWriter()
        alerting = Alerting(direction=Direction.C2S, call=call, timestamp=stamp())
        await forward.send(writer.open() + writer.encode(alerting))
        for phone in (desk, kitchen):
            assert [e.type for e in await phone.events(1)] == ["alerting"]

        # The desk answers first; the kitchen's claim comes too late.
        resp = await desk.claim(call)
        assert resp.status == 200, resp.body
        assert "ript-leg=" in (resp.get("set-cookie") or "")
        taken = CallDescription.from_bytes(resp.body)
        assert taken.handler == desk.handler and taken.media_key is not None
        refused = await kitchen.claim(call)
        assert refused.status == 409, refused.body
        answered = Answered(direction=Direction.C2S, call=call, timestamp=stamp())
        await forward.send(writer.encode(answered))
        for phone in (desk, kitchen):
            changed, state = await phone.events(2)
            assert isinstance(changed, HandlerChanged) and changed.handler == desk.handler
            assert state.type == "answered"

        # The desk holds a media GET; the kitchen pulls the call.
        held = await desk.client.open_stream(
            "GET", desk.url(f"{call}/media"), headers=AUTH, end_stream=True
        )
        await until(lambda: waiting_any(server, call))
        resp = await kitchen.claim(call)
        assert resp.status == 200, resp.body
        pulled = CallDescription.from_bytes(resp.body)
        assert pulled.handler == kitchen.handler and pulled.media_key not in (
            None,
            taken.media_key,
        )
        for phone in (desk, kitchen):
            (changed,) = await phone.events(1)
            assert isinstance(changed, HandlerChanged) and changed.handler == kitchen.handler
        assert (await held.response_headers()).status == 409  # the desk's GET is let go

        # The desk's media is refused; the kitchen's flows.
        assert taken.media_key is not None and pulled.media_key is not None
        old = _media_body(taken)
        resp = await desk.client.request("PUT", desk.url(f"{call}/media"), headers=AUTH, body=old)
        assert resp.status == 409, resp.body
        resp = await kitchen.client.request(
            "PUT", kitchen.url(f"{call}/media"), headers=AUTH, body=_media_body(pulled)
        )
        assert resp.status == 200, resp.body

        # After a reconnect a phone learns everything from GET {tg}/calls.
        listed = CallList.from_bytes((await desk.get("/tgs/alice/calls")).body).calls
        assert [(c.uri, c.handler, c.state.value, c.direction.value) for c in listed] == [
            (call, kitchen.handler, "answered", "inbound")
        ]
        assert listed[0].media_key is None

    run(tmp_path, body)


def test_3pcc_call_is_taken_by_the_chosen_phone_and_then_proceeds(tmp_path: Path) -> None:
    async def body(server: RunningServer, desk: Phone, kitchen: Phone) -> None:
        core = server.core
        assert core is not None
        taps: list[tuple[str | None, TapType, str]] = []
        core.push_hook = lambda handler, tap, uri: taps.append((handler.uri, tap, uri))
        call = core.place_for(core.account("alice"), kitchen.handler, "+14089529999").uri
        server.wake()
        assert taps == [(kitchen.handler, TapType.CALL, call)]
        await kitchen.follow(call)
        assert [e.type for e in await kitchen.events(1)] == ["proceeding"]
        resp = await kitchen.claim(call)
        assert resp.status == 200, resp.body
        # Taken: the far end now rings and (per the test accounts) answers after 0.5 s.
        changed, alerting, answered = await kitchen.events(3)
        assert isinstance(changed, HandlerChanged) and changed.handler == kitchen.handler
        assert (alerting.type, answered.type) == ("alerting", "answered")

    run(tmp_path, body)


def test_outbound_call_pulled_away_from_the_phone_that_placed_it(tmp_path: Path) -> None:
    async def body(server: RunningServer, desk: Phone, kitchen: Phone) -> None:
        resp, _ = await place(Env(server, desk.client))  # through the desk's client and jar
        assert resp.status == 201, resp.body
        assert "ript-leg=" in (resp.get("set-cookie") or "")
        placed = CallDescription.from_bytes(resp.body)
        body = _media_body(placed)
        url = desk.url(f"{placed.uri}/media")
        assert (await desk.client.request("PUT", url, headers=AUTH, body=body)).status == 200
        pulled = await kitchen.claim(placed.uri)
        assert pulled.status == 200, pulled.body
        resp = await desk.client.request("PUT", url, headers=AUTH, body=body)
        assert resp.status == 409, resp.body
        new = CallDescription.from_bytes(pulled.body)
        resp = await kitchen.client.request(
            "PUT", kitchen.url(f"{placed.uri}/media"), headers=AUTH, body=_media_body(new)
        )
        assert resp.status == 200, resp.body

    run(tmp_path, body)


def waiting_any(server: RunningServer, call: str) -> bool:
    """A ``GET {call}/media`` is held by the provider."""
    media = server._media.get(call)
    return media is not None and any(not w.done() for w in media.waiting)


def _media_body(call: CallDescription) -> bytes:
    key = call.media_key
    assert key is not None
    keys = MediaKeys.from_material(key.key, key.salt, key.tag_length)
    sender = ChunkSender(Direction.C2S, keys)
    chunk = sender.media(1, 1, PayloadType.PCMU, 1000, bytes(160), now=time.monotonic())
    return frame([chunk])
