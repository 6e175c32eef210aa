"""The reference provider's WebTransport media, over real HTTP/3 on loopback.

Driven by the phone's own H3 client (:meth:`H3Client.open_webtransport`): the
session's checks and status codes, datagram framing and packing, and the
bookkeeping that forgets a session however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ript.protocol.chunks import DATAGRAM_LIMIT, MediaChunk, PayloadType, frame, unframe
from ript.protocol.descriptions import CallDescription, ClaimRequest, HandlerDescription
from ript.protocol.events import Direction
from ript.protocol.jsonstream import EventStreamReader
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.net.h3 import H3Client, WebTransportSession
from riptprovider.server import MAX_SESSIONS, ServerConfig, serve

from .test_provider_server import (
    ACCOUNTS,
    AD,
    AUTH,
    IN_ORDER_DEST,
    JSON_AUTH,
    OTHER_DEVICE_TOKEN,
    TONE_DEST,
    Env,
    next_events,
    place_ok,
    until,
)


@asynccontextmanager
async def running(state: Path, *, webtransport: bool = True) -> AsyncIterator[Env]:
    config = ServerConfig(state_dir=state, accounts=ACCOUNTS, webtransport=webtransport)
    server = await serve(config)
    try:
        async with H3Client(ca_file=str(server.ca.ca_file)) as client:
            yield Env(server, client)
    finally:
        await server.close()


async def answered_call(env: Env, destination: str | None = None) -> CallDescription:
    """A call placed and answered (its reverse byway seen to say so)."""
    call = await place_ok(env) if destination is None else await place_ok(env, destination)
    path = call.uri.removeprefix(env.server.origin)
    reverse = await env.client.open_stream(
        "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
    )
    assert [e.type for e in await next_events(reverse, EventStreamReader(), 3)][-1] == "answered"
    return call


class Datagrams:
    """What a session received, datagram by datagram, and a way to wait for more."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.more = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.got.append(data)
        self.more.set()

    async def wait(self, count: int) -> list[bytes]:
        while len(self.got) < count:
            self.more.clear()
            await asyncio.wait_for(self.more.wait(), 5)
        return self.got


async def session(
    env: Env, call: CallDescription, sink: Datagrams
) -> tuple[int, WebTransportSession]:
    opened = await env.client.open_webtransport(f"{call.uri}/media", sink, headers=AUTH)
    return (await opened.response_headers()).status, opened


def media_of(env: Env, call: CallDescription) -> list[object]:
    media = env.server._media.get(call.uri)
    return [] if media is None else list(media.sessions)


def keys_of(call: CallDescription) -> MediaKeys:
    k = call.media_key
    assert k is not None
    return MediaKeys.from_material(k.key, k.salt, k.tag_length)


def run(body: object, state: Path, *, webtransport: bool = True) -> None:
    async def main() -> None:
        async with running(state, webtransport=webtransport) as env:
            await asyncio.wait_for(body(env), 20)  # type: ignore[operator]

    asyncio.run(main())


def test_echo_over_datagrams_with_acks_riding_along_and_packed_under_1000_bytes(
    tmp_path: Path,
) -> None:
    async def body(env: Env) -> None:
        settings = await env.client.peer_settings(env.url("/"))
        assert settings.webtransport is True
        call = await answered_call(env)
        sink = Datagrams()
        status, opened = await session(env, call, sink)
        assert status == 200
        assert len(media_of(env, call)) == 1 and env.server.sessions_opened == 1
        keys = keys_of(call)
        sender = ChunkSender(Direction.C2S, keys)
        receiver = ChunkReceiver(Direction.S2C, keys)

        # A small chunk: echoed with the ack of it in one datagram.
        small = bytes(range(160))
        opened.send_datagram(frame([sender.media(0, 0, PayloadType.PCMU, 1000, small, now=0)]))
        (first,) = await sink.wait(1)
        result = receiver.receive(first, time.monotonic())
        assert [(c.payload, c.seq) for c in result.media] == [(small, 0)]
        assert [(a.acked_seq, a.direction) for a in result.acks] == [(0, Direction.C2S)]

        # A chunk of 991 bytes: its echo and its ack cannot share 1000 bytes, so they
        # leave as two datagrams, split between the chunks, each within the limit.
        big = bytes(950)
        chunk = sender.media(0, 0, PayloadType.PCMU, 1020, big, now=0)
        opened.send_datagram(frame([chunk]))
        got = await sink.wait(3)
        assert all(len(d) <= DATAGRAM_LIMIT for d in got)
        assert [len(unframe(d)) for d in got[1:]] == [1, 1]
        echoed = receiver.receive(got[1], time.monotonic())
        acked = receiver.receive(got[2], time.monotonic())
        assert [c.payload for c in echoed.media] == [big] and not echoed.acks
        assert [a.acked_seq for a in acked.acks] == [1] and not acked.media
        assert receiver.stats().malformed == 0 and receiver.stats().auth_failures == 0
        opened.close()
        await until(lambda: media_of(env, call) == [])

    run(body, tmp_path)


def test_generated_far_end_media_goes_to_the_newest_session_not_to_gets(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env, TONE_DEST)
        old, new = Datagrams(), Datagrams()
        assert (await session(env, call, old))[0] == 200
        assert (await session(env, call, new))[0] == 200
        await new.wait(5)  # the tone, every 20 ms, on the newest session
        # Until the second session was open the tone went to the first (on a loaded
        # machine it can get a few); once the newest is there, the old one gets nothing.
        got_old = len(old.got)
        await new.wait(len(new.got) + 10)
        receiver = ChunkReceiver(Direction.S2C, keys_of(call))
        media = [c for d in new.got for c in receiver.receive(d, time.monotonic()).media]
        assert len(media) >= 15 and {c.payload_type for c in media} == {PayloadType.OPUS}
        assert [c.seq for c in media] == list(range(media[0].seq, media[0].seq + len(media)))
        assert len(old.got) == got_old

    run(body, tmp_path)


def test_a_session_passes_the_checks_of_the_media_byways(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env)
        sink = Datagrams()
        no_token = await env.client.open_webtransport(f"{call.uri}/media", sink)
        assert (await no_token.response_headers()).status == 401
        missing = env.url("/calls/00000000-0000-4000-8000-000000000000/media")
        gone = await env.client.open_webtransport(missing, sink, headers=AUTH)
        assert (await gone.response_headers()).status == 404
        wrong = await env.client.open_webtransport(f"{call.uri}/events", sink, headers=AUTH)
        assert (await wrong.response_headers()).status == 405
        assert env.server.sessions_opened == 0
        assert all(not conn.sessions for conn in env.server._connections)

    run(body, tmp_path)


def test_a_leg_that_lost_the_call_is_refused_409_and_its_session_ends(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env)  # this client's jar holds the call's ript-leg cookie
        status, opened = await session(env, call, Datagrams())
        assert status == 200
        # Another device of the user pulls the call (its own client: its own jar).
        async with H3Client(ca_file=str(env.server.ca.ca_file)) as other:
            kitchen = Env(env.server, other)
            ad = HandlerDescription("phone-2", AD, "Kitchen", None, None)
            made = await other.request(
                "POST", kitchen.url("/tgs/alice/handlers"), headers=JSON_AUTH, body=ad.to_bytes()
            )
            assert made.status == 201, made.body
            handler = HandlerDescription.from_bytes(made.body)
            assert handler.uri is not None and handler.uri != call.handler
            claim = await other.request(
                "POST", call.uri, headers=JSON_AUTH, body=ClaimRequest(handler.uri).to_bytes()
            )
            assert claim.status == 200, claim.body
            # The old leg's session ends; a new one from the old leg is refused.
            await until(lambda: opened.ended)
            assert media_of(env, call) == []
            refused = await env.client.open_webtransport(
                f"{call.uri}/media", Datagrams(), headers=AUTH
            )
            assert (await refused.response_headers()).status == 409
            status, _ = await session(kitchen, call, Datagrams())
            assert status == 200

    run(body, tmp_path)


def test_sessions_are_forgotten_however_they_end_and_bounded_per_call(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env)
        sessions = []
        for _ in range(MAX_SESSIONS + 1):
            status, opened = await session(env, call, Datagrams())
            assert status == 200
            sessions.append(opened)
        # The fifth ended the first: the provider ends its side of the stream.
        await until(lambda: sessions[0].ended)
        assert len(media_of(env, call)) == MAX_SESSIONS
        assert not any(s.ended for s in sessions[1:])
        # A reset by the client forgets the session at once.
        sessions[1].close()
        await until(lambda: len(media_of(env, call)) == MAX_SESSIONS - 1)
        # The connection going forgets every session it carried.
        (conn,) = env.server._connections
        assert len(conn.sessions) == MAX_SESSIONS - 1
        await env.client.close()
        await until(lambda: media_of(env, call) == [] and not conn.sessions)

    run(body, tmp_path)


def test_the_end_of_the_call_ends_its_sessions(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env)
        status, opened = await session(env, call, Datagrams())
        assert status == 200
        assert env.server.core is not None
        env.server.core.send_event(call.uri, "end")
        await until(lambda: opened.ended)
        assert call.uri not in env.server._media
        assert all(not conn.sessions for conn in env.server._connections)

    run(body, tmp_path)


def test_turned_off_it_is_not_announced_and_a_connect_is_refused_501(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        settings = await env.client.peer_settings(env.url("/"))
        assert settings.webtransport is False
        call = await answered_call(env)
        refused = await env.client.open_webtransport(f"{call.uri}/media", Datagrams(), headers=AUTH)
        head = await refused.response_headers()
        assert head.status == 501
        assert env.server.sessions_opened == 0
        # The media byways still work.
        resp = await env.client.request("PUT", f"{call.uri}/media", headers=AUTH, body=b"")
        assert resp.status == 200

    run(body, tmp_path, webtransport=False)


def test_data_on_the_session_stream_is_not_kept_by_the_phone(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env)
        status, opened = await session(env, call, Datagrams())
        assert status == 200
        # A provider writing on the CONNECT stream (no capsule is used): the phone keeps
        # only the stream's end, not the bytes.
        (conn,) = env.server._connections
        conn.send_data(opened.stream_id, b"\0" * 60000)
        await asyncio.sleep(0.2)
        assert not opened.ended
        assert not opened._state.chunks
        env.server._media[call.uri].end_sessions()
        await until(lambda: opened.ended)
        assert not opened._state.chunks

    run(body, tmp_path)


def test_media_without_the_leg_cookie_is_refused_to_another_device_of_the_account(
    tmp_path: Path,
) -> None:
    async def body(env: Env) -> None:
        call = await answered_call(env, TONE_DEST)  # the call's handler is this device's
        other = {"authorization": f"Bearer {OTHER_DEVICE_TOKEN}"}
        async with H3Client(ca_file=str(env.server.ca.ca_file)) as jarless:
            # Another phone of the same account, no ript-leg cookie: it would take the
            # call's downlink (the tone goes to the newest session or held GET).
            stolen = await jarless.open_webtransport(
                f"{call.uri}/media", Datagrams(), headers=other
            )
            assert (await stolen.response_headers()).status == 403
            got = await jarless.request("GET", f"{call.uri}/media", headers=other)
            assert got.status == 403, got.body
            made_up = {**other, "cookie": "ript-leg=made-up"}
            got = await jarless.request("GET", f"{call.uri}/media", headers=made_up)
            assert got.status == 403, got.body
            # The handler's own device without its cookie (a re-establishment): served.
            own = Datagrams()
            mine = await jarless.open_webtransport(f"{call.uri}/media", own, headers=AUTH)
            assert (await mine.response_headers()).status == 200
            await own.wait(3)
        assert env.server.sessions_opened == 1

    run(body, tmp_path)


def test_echo_in_order_numbers_each_chunk_as_the_phone_did(tmp_path: Path) -> None:
    # Pairs sent swapped, as a path with jitter delivers them, and one chunk never sent
    # (lost on the way in): each comes back at once with the phone's own number, so the
    # phone's jitter buffer puts them back in order and sees the loss as its own.
    async def body(env: Env) -> None:
        call = await place_ok(env, IN_ORDER_DEST)
        assert call.media_key is not None
        # As after a restart under this key: the provider's numbering resumes at 5000.
        env.server._core.reserve_s2c(call.media_key, 5000)
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        events = await next_events(reverse, EventStreamReader(), 3)
        assert events[-1].type == "answered"
        sink = Datagrams()
        status, opened = await session(env, call, sink)
        assert status == 200
        keys = keys_of(call)
        sender = ChunkSender(Direction.C2S, keys)
        chunks = [
            sender.media(0, 0, PayloadType.PCMU, 5000 + 20 * i, bytes([i]) * 160, now=0)
            for i in range(8)
        ]

        def media_back() -> list[MediaChunk]:
            # Parsed afresh each time: datagrams of acks alone may come between the echoes.
            receiver = ChunkReceiver(Direction.S2C, keys)
            got = [c for d in sink.got for c in receiver.receive(d, time.monotonic()).media]
            assert receiver.stats().auth_failures == 0 and receiver.stats().malformed == 0
            return got

        sent = (1, 0, 3, 2, 5, 7, 6)  # 4 is lost
        for count, i in enumerate(sent, 1):
            opened.send_datagram(frame([chunks[i]]))
            while len(media_back()) < count:
                await sink.wait(len(sink.got) + 1)
        back = media_back()
        assert [c.payload[0] for c in back] == [1, 0, 3, 2, 5, 7, 6]  # at once, as they came
        # Numbered as the phone did, past where the provider's numbering resumed.
        assert [c.seq for c in back] == [5000 + i for i in (1, 0, 3, 2, 5, 7, 6)]
        assert [c.timestamp for c in back] == [5000 + 20 * c.payload[0] for c in back]

    run(body, tmp_path)


def test_echo_far_end_sends_back_in_arrival_order(tmp_path: Path) -> None:
    # The contrast: echo numbers chunks as they arrive, so a swapped pair stays swapped.
    async def body(env: Env) -> None:
        call = await answered_call(env)
        sink = Datagrams()
        _, opened = await session(env, call, sink)
        keys = keys_of(call)
        sender = ChunkSender(Direction.C2S, keys)
        receiver = ChunkReceiver(Direction.S2C, keys)
        first = sender.media(0, 0, PayloadType.PCMU, 5000, b"\x01" * 160, now=0)
        second = sender.media(0, 0, PayloadType.PCMU, 5020, b"\x02" * 160, now=0)
        opened.send_datagram(frame([second]))
        await sink.wait(1)
        opened.send_datagram(frame([first]))
        got = await sink.wait(2)
        back = [c for d in got for c in receiver.receive(d, time.monotonic()).media]
        assert [(c.payload[0], c.timestamp, c.seq) for c in back] == [(2, 5020, 0), (1, 5000, 1)]

    run(body, tmp_path)
