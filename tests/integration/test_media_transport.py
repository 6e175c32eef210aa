"""The phone's choice of media transport and its datagram path, against the real provider.

:func:`riptphone.calls.transport.open_transport` over real HTTP/3 on loopback,
with the phone's own :class:`RiptClient`; what the provider received is read
from its call media state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ript.protocol.chunks import DATAGRAM_LIMIT, PayloadType, frame
from ript.protocol.descriptions import CallDescription
from ript.protocol.events import Direction
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from riptphone.calls.transport import GETS, BywaysTransport, DatagramTransport, open_transport
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, StaticToken
from riptprovider.core import RiptHttpError
from riptprovider.server import RunningServer, ServerConfig, serve

from .test_provider_server import ACCOUNTS, TOKEN, Env, until, waiting
from .test_provider_webtransport import answered_call, keys_of

Body = Callable[[Env, RiptClient], Awaitable[None]]


def run(tmp_path: Path, body: Body, *, webtransport: bool = True) -> None:
    async def main() -> None:
        config = ServerConfig(
            state_dir=tmp_path / "provider", accounts=ACCOUNTS, webtransport=webtransport
        )
        server = await serve(config)
        try:
            async with H3Client(ca_file=str(server.ca.ca_file)) as http:
                client = RiptClient(http, f"localhost:{server.port}", StaticToken(TOKEN))
                await asyncio.wait_for(body(Env(server, http), client), 20)
        finally:
            await server.close()

    asyncio.run(main())


def received_by_provider(env: Env, call: CallDescription) -> int:
    media = env.server._media.get(call.uri)
    return 0 if media is None else media.receiver.stats().received


def test_offered_and_accepted_gives_datagrams_and_a_big_body_is_split_at_chunks(
    tmp_path: Path,
) -> None:
    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        transport = await open_transport(client, call.uri)
        assert isinstance(transport, DatagramTransport) and transport.name == "webtransport"
        got: list[bytes] = []
        sizes: list[int] = []

        def datagram(data: bytes) -> None:
            got.append(data)
            sizes.append(len(data))

        transport.start(datagram)
        sender = ChunkSender(Direction.C2S, keys_of(call))
        # Three chunks of ~950 bytes in one body (as many acks owed after a fade would
        # make): it cannot be one datagram, so it leaves as three, split between chunks.
        chunks = [
            sender.media(0, 0, PayloadType.PCMU, 1000 + 20 * n, bytes([n]) * 950, now=0)
            for n in range(3)
        ]
        big = frame(chunks)
        assert len(big) > 2 * DATAGRAM_LIMIT
        transport.send(big)
        await until(lambda: received_by_provider(env, call) == 3)
        # The echo comes back as datagrams of at most 1000 bytes, all three chunks (a
        # datagram of acks alone may come first: count the media, not the datagrams).
        receiver = ChunkReceiver(Direction.S2C, keys_of(call))
        echoed: list[bytes] = []

        def echoed_all() -> bool:
            while got:
                echoed.extend(c.payload for c in receiver.receive(got.pop(0), 0.0).media)
            return len(echoed) >= 3

        await until(echoed_all)
        assert echoed == [bytes([n]) * 950 for n in range(3)]
        assert sizes and max(sizes) <= DATAGRAM_LIMIT
        assert transport.put_failures == 0
        transport.stop()
        await until(lambda: not env.server._media[call.uri].sessions)

    run(tmp_path, body)


def test_a_session_the_provider_ended_counts_what_could_not_be_sent(tmp_path: Path) -> None:
    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        transport = await open_transport(client, call.uri)
        assert isinstance(transport, DatagramTransport)
        transport.start(lambda _: None)
        env.server._media[call.uri].end_sessions()  # as a handler change does
        await until(lambda: transport.ended)  # the provider's FIN reached the phone
        assert not env.server._media[call.uri].sessions
        sender = ChunkSender(Direction.C2S, keys_of(call))
        for n in range(3):
            chunk = sender.media(0, 0, PayloadType.PCMU, 1000 + 20 * n, bytes(160), now=0)
            transport.send(frame([chunk]))
        assert transport.put_failures == 3
        await asyncio.sleep(0.05)
        assert received_by_provider(env, call) == 0
        transport.stop()

    run(tmp_path, body)


def test_not_offered_gives_the_byways(tmp_path: Path) -> None:
    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        transport = await open_transport(client, call.uri)
        assert isinstance(transport, BywaysTransport) and transport.name == "byways"
        transport.stop()
        assert env.server.sessions_opened == 0

    run(tmp_path, body, webtransport=False)


def test_refused_or_unanswered_gives_the_byways_and_leaves_no_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    answer: dict[str, Any] = {"refuse": True}

    async def slow_or_refused(self: RunningServer, *args: Any) -> None:
        if answer["refuse"]:
            raise RiptHttpError(403, "not for this account")
        await asyncio.sleep(30)  # a provider that never answers the CONNECT

    monkeypatch.setattr(RunningServer, "_media_session", slow_or_refused)

    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        caplog.set_level("INFO", "riptphone.calls.transport")
        refused = await open_transport(client, call.uri)
        assert isinstance(refused, BywaysTransport)
        assert "policy does not allow it" in caplog.text
        answer["refuse"] = False
        started = time.monotonic()
        unanswered = await open_transport(client, call.uri, timeout=0.3)
        assert isinstance(unanswered, BywaysTransport)
        assert time.monotonic() - started < 2.0
        assert "no answer to the WebTransport CONNECT within 0.3 s" in caplog.text
        # The phone reset the unanswered CONNECT: the provider's request ends.
        (conn,) = env.server._connections
        await until(lambda: all(r.method != "CONNECT" for r in conn.requests.values()))
        # The byways work.
        byways = await client.media_byways(call.uri)
        status, _ = await byways.put(b"")
        assert status == 200

    run(tmp_path, body)


def test_byways_carry_media_both_ways_without_a_task_per_body(tmp_path: Path) -> None:
    # The 20 ms path over media byways: once the first GETs (coroutines: they connect and
    # take the token) are up, each PUT and each reopened GET starts and ends in a
    # callback.  Tasks are counted through the loop's task factory.
    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        transport = await open_transport(client, call.uri)
        assert isinstance(transport, BywaysTransport)
        loop = asyncio.get_running_loop()
        created: list[str] = []

        def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            # The provider runs in this loop too (a task per request): count the phone's.
            code = getattr(coro, "cr_code", None)
            if code is not None and "riptphone" in code.co_filename:
                created.append(coro.__qualname__)
            return asyncio.Task(coro, loop=loop, **kwargs)

        got: list[bytes] = []
        transport.start(got.append)
        sender = ChunkSender(Direction.C2S, keys_of(call))
        receiver = ChunkReceiver(Direction.S2C, keys_of(call))
        echoed: list[bytes] = []

        def send(n: int) -> None:
            transport.send(
                frame([sender.media(0, 0, PayloadType.PCMU, 20 * n, bytes([n]) * 160, now=0)])
            )

        def echoes(count: int) -> Callable[[], bool]:
            def done() -> bool:
                while got:
                    echoed.extend(c.payload for c in receiver.receive(got.pop(0), 0.0).media)
                return len(echoed) >= count

            return done

        send(0)  # the first PUT prepares the headers (a coroutine)
        await until(echoes(1))
        loop.set_task_factory(factory)
        try:
            for n in range(1, 11):
                send(n)
                await asyncio.sleep(0.02)
            await until(echoes(11))
        finally:
            loop.set_task_factory(None)
        assert echoed == [bytes([n]) * 160 for n in range(11)]  # the far end echoes
        assert created == [], created
        assert (transport.put_failures, transport.get_failures) == (0, 0)
        transport.stop()

    run(tmp_path, body, webtransport=False)


def test_a_receive_path_that_raises_loses_no_get(tmp_path: Path) -> None:
    # Each answered GET is reopened after its body is delivered: a delivery that raised
    # (a bug further in) left its slot closed for the rest of the call, from a callback
    # or from a GET's coroutine alike; 20 such and no media came back at all.
    async def body(env: Env, client: RiptClient) -> None:
        call = await answered_call(env)
        transport = await open_transport(client, call.uri)
        assert isinstance(transport, BywaysTransport)
        delivered: list[bytes] = []

        def deliver(data: bytes) -> None:
            delivered.append(data)
            raise RuntimeError("a bug in the receive path")

        transport.start(deliver)
        await until(lambda: waiting(env, call.uri) == GETS)
        sender = ChunkSender(Direction.C2S, keys_of(call))
        for n in range(6):
            transport.send(
                frame([sender.media(0, 0, PayloadType.PCMU, 20 * n, bytes([n]) * 160, now=0)])
            )
            await asyncio.sleep(0.02)
        await until(lambda: len(delivered) >= 12)  # each PUT's acks, each echo
        async with asyncio.timeout(5):
            await until(lambda: waiting(env, call.uri) == GETS)
        assert transport.receive_failures == len(delivered)
        transport.stop()

    run(tmp_path, body, webtransport=False)


def test_a_datagram_the_receive_path_raises_on_stays_out_of_aioquic() -> None:
    # DatagramTransport.receive is called inside the connection's handling of a packet:
    # what the session's receive path raises must not leave it (the packet's other
    # events and its transmit would wait for the next packet).
    transport = DatagramTransport()
    delivered: list[bytes] = []

    def deliver(data: bytes) -> None:
        delivered.append(data)
        raise RuntimeError("a bug in the receive path")

    transport.start(deliver)
    transport.receive(b"one")
    transport.receive(b"two")
    assert delivered == [b"one", b"two"] and transport.receive_failures == 2
