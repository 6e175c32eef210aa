"""The reference provider over real HTTP/3 on loopback, driven by the phone's own H3 client."""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ript.media.g711 import alaw_decode, ulaw_decode
from ript.media.tones import goertzel
from ript.protocol.chunks import MediaChunk, PayloadType, frame
from ript.protocol.csr import build_csr, make_key, tn_entries_of_certificate
from ript.protocol.descriptions import (
    CallDescription,
    HandlerDescription,
    PlaceCallRequest,
    ProviderTgs,
    TrunkGroup,
)
from ript.protocol.events import (
    CallStatus,
    Direction,
    End,
    Event,
    MediaPanic,
    Ping,
    Pong,
    StateEvent,
    format_timestamp,
)
from ript.protocol.jsonstream import EventStreamReader, EventStreamWriter, InvalidEvent
from ript.protocol.media_crypto import MediaKeys
from ript.protocol.media_streams import ChunkReceiver, ChunkSender
from ript.protocol.passport import create_passport, verify_passport
from ript.protocol.tnauth import TnOne
from riptphone.net.h3 import H3Client, H3Stream, Response, StreamResetError
from riptprovider.accounts import load_accounts
from riptprovider.server import RunningServer, ServerConfig, serve

TOKEN = "alice-token-0123456789"
OTHER_DEVICE_TOKEN = "alice-second-phone-0123456789"
"""Alice's token on another phone: the same account, another device (``core.Caller``)."""
NUMBER = "+14085551002"
CALLEE = "+14089529999"
TONE_DEST = "+14089520001"
FILE_DEST = "+14089520005"
IN_ORDER_DEST = "+14089520006"
FAR_WAV = Path(__file__).resolve().parents[1] / "vectors" / "far-end-1200hz-16k.wav"
PCMU_AD = "1 in: PCMU;\n1 out: PCMU;"
AD = "1 in: opus; PCMU; PCMA; telephone-event; CN;\n1 out: opus; PCMU; PCMA; telephone-event; CN;"
ROOT = "/.well-known/ript/v1"
ACCOUNTS = load_accounts(
    {
        "alice": {
            "name": "Alice",
            "numbers": [NUMBER],
            "destinations": "+1408*",
            "tokens": [TOKEN, OTHER_DEVICE_TOKEN],
            "far-end": [
                {"match": TONE_DEST, "media": "tone", "tone-hz": 1000},
                {"match": FILE_DEST, "media": "file", "file": str(FAR_WAV)},
                {"match": IN_ORDER_DEST, "media": "echo-in-order"},
                {"match": "*", "outcome": "answer", "answer-after": 0.5},
            ],
        }
    }
)
AUTH = {"authorization": f"Bearer {TOKEN}"}
JSON_AUTH = {**AUTH, "content-type": "application/json"}


@dataclass
class Env:
    server: RunningServer
    client: H3Client

    def url(self, path: str) -> str:
        return f"https://localhost:{self.server.port}{path}"

    async def get(self, url: str) -> Response:
        return await self.client.request("GET", url, headers=AUTH)

    async def send(self, method: str, url: str, body: bytes, ctype: str = "") -> Response:
        headers = {**AUTH, "content-type": ctype} if ctype else JSON_AUTH
        return await self.client.request(method, url, headers=headers, body=body)


def header(resp: Response, name: str) -> str:
    value = resp.get(name)
    assert value is not None, f"no {name} header"
    return value


@asynccontextmanager
async def running(state: Path, port: int = 0) -> AsyncIterator[Env]:
    server = await serve(ServerConfig(state_dir=state, accounts=ACCOUNTS, port=port))
    try:
        async with H3Client(ca_file=str(server.ca.ca_file)) as client:
            yield Env(server, client)
    finally:
        await server.close()


def run(state: Path, body: Callable[[Env], Awaitable[None]]) -> None:
    async def main() -> None:
        async with running(state) as env:
            await asyncio.wait_for(body(env), 20)

    asyncio.run(main())


async def register(env: Env, advertisement: str = AD) -> HandlerDescription:
    tg = "/tgs/alice"
    ad = HandlerDescription("phone-1", advertisement, "Desk", None, None)
    resp = await env.send("POST", env.url(f"{tg}/handlers"), ad.to_bytes())
    assert resp.status == 201, resp.body
    described = HandlerDescription.from_bytes(resp.body)
    assert described.uri is not None
    assert header(resp, "location") == described.uri
    return described


async def enrol(env: Env, number: str = NUMBER) -> tuple[ec.EllipticCurvePrivateKey, str, bytes]:
    key = make_key()
    resp = await env.send(
        "POST", env.url("/tgs/alice/certs"), build_csr(key, number), "application/pkcs10"
    )
    assert resp.status == 201, resp.body
    return key, header(resp, "location"), resp.body


async def place(
    env: Env, destination: str = CALLEE, advertisement: str = AD
) -> tuple[Response, str]:
    handler = await register(env, advertisement)
    key, cert_uri, _ = await enrol(env)
    token = create_passport(key, cert_uri, NUMBER, destination, int(time.time()))
    assert handler.uri is not None
    request = PlaceCallRequest(handler.uri, destination, token)
    resp = await env.send("POST", env.url("/tgs/alice/calls"), request.to_bytes())
    return resp, handler.uri


async def place_ok(env: Env, destination: str = CALLEE, advertisement: str = AD) -> CallDescription:
    resp, _ = await place(env, destination, advertisement)
    assert resp.status == 201, resp.body
    call = CallDescription.from_bytes(resp.body)
    assert header(resp, "location") == call.uri
    return call


async def next_events(stream: H3Stream, reader: EventStreamReader, n: int) -> list[Event]:
    got: list[Event] = []
    while len(got) < n:
        chunk = await stream.read()
        assert chunk, f"the reverse byway ended after {got}"
        for item in reader.feed(chunk):
            assert not isinstance(item, InvalidEvent)
            got.append(item)
    return got


async def until(condition: Callable[[], bool]) -> None:
    """Wait for the server side to catch up (the test's overall timeout bounds it)."""
    while not condition():
        await asyncio.sleep(0.005)


def waiting(env: Env, call_uri: str) -> int:
    """Open ``GET {call}/media`` requests the provider holds for the call."""
    media = env.server._media.get(call_uri)
    return 0 if media is None else sum(not w.done() for w in media.waiting)


# ---------------------------------------------------------------------- tests


def test_no_token_is_401_and_bad_token_too(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        resp = await env.client.request("GET", env.url(f"{ROOT}/providertgs"))
        assert resp.status == 401
        assert header(resp, "www-authenticate") == "Bearer"
        bad = {"authorization": "Bearer not-a-token-at-all"}
        resp = await env.client.request("GET", env.url("/tgs/alice"), headers=bad)
        assert resp.status == 401

    run(tmp_path, body)


def test_providertgs_tg_and_unknown_paths(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        resp = await env.get(env.url(f"{ROOT}/providertgs"))
        assert resp.status == 200
        tgs = ProviderTgs.from_bytes(resp.body)
        assert [t.uri for t in tgs.tgs] == [f"{env.server.origin}/tgs/alice"]
        resp = await env.get(tgs.tgs[0].uri.replace(env.server.origin, env.url("")))
        tg = TrunkGroup.from_bytes(resp.body)
        assert tg.uri == f"{env.server.origin}/tgs/alice"
        assert (await env.get(env.url("/nothing/here"))).status == 404
        assert (await env.send("POST", env.url(f"{ROOT}/providertgs"), b"{}")).status == 405

    run(tmp_path, body)


def test_handler_register_get_put_delete(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        handler = await register(env)
        assert handler.uri is not None
        url = env.url(handler.uri.removeprefix(env.server.origin))
        resp = await env.get(url)
        assert resp.status == 200
        assert HandlerDescription.from_bytes(resp.body).handler_id == "phone-1"
        new = HandlerDescription("phone-1", "1 in: PCMU;\n1 out: PCMU;", "Desk", None, None)
        resp = await env.send("PUT", url, new.to_bytes())
        assert resp.status == 200
        assert HandlerDescription.from_bytes(resp.body).advertisement == new.advertisement
        assert (await env.client.request("DELETE", url, headers=AUTH)).status == 204
        assert (await env.get(url)).status == 404
        assert (await env.send("POST", env.url("/tgs/alice/handlers"), b"{nope")).status == 400
        big = b'{"handler-id": "x", "pad": "' + b"a" * 70000 + b'"}'
        assert (await env.send("POST", env.url("/tgs/alice/handlers"), big)).status == 413

    run(tmp_path, body)


def test_cert_enrolment_and_get(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        _, cert_uri, chain = await enrol(env)
        assert cert_uri.startswith(f"{env.server.origin}/tgs/alice/certs/")
        leaf = x509.load_pem_x509_certificate(chain)
        assert tn_entries_of_certificate(leaf) == [TnOne("14085551002")]
        # Public: no token needed to dereference x5u.
        resp = await env.client.request("GET", env.url(cert_uri.removeprefix(env.server.origin)))
        assert resp.status == 200
        assert header(resp, "content-type") == "application/pem-certificate-chain"
        assert resp.body == chain
        other = build_csr(make_key(), "+14085559999")
        resp = await env.send("POST", env.url("/tgs/alice/certs"), other, "application/pkcs10")
        assert resp.status == 403
        resp = await env.send("POST", env.url("/tgs/alice/certs"), b"junk", "application/pkcs10")
        assert resp.status == 400
        assert (await env.get(env.url("/tgs/alice/certs/abc123"))).status == 404

    run(tmp_path, body)


def test_tls_files_and_key_modes(tmp_path: Path) -> None:
    run(tmp_path, lambda env: asyncio.sleep(0))
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "tls" / name).st_mode) == 0o600
    ca_before = (tmp_path / "tls" / "ca.pem").read_bytes()
    run(tmp_path, lambda env: asyncio.sleep(0))
    assert (tmp_path / "tls" / "ca.pem").read_bytes() == ca_before


def test_place_call_and_refusals(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env)
        assert call.state is CallStatus.PROCEEDING
        resp = await env.get(env.url("/tgs/alice/calls"))
        assert resp.status == 200 and call.uri.encode() in resp.body
        resp, _ = await place(env, "+12125550100")  # outside "+1408*"
        assert resp.status == 403
        # A PASSporT signed by a key the certificate does not hold.
        handler = await register(env)
        assert handler.uri is not None
        _, cert_uri, _ = await enrol(env)
        forged = create_passport(make_key(), cert_uri, NUMBER, CALLEE, int(time.time()))
        request = PlaceCallRequest(handler.uri, CALLEE, forged)
        resp = await env.send("POST", env.url("/tgs/alice/calls"), request.to_bytes())
        assert resp.status == 403
        assert b"signature" in resp.body
        # An x5u this provider never issued.
        key, _, _ = await enrol(env)
        foreign = create_passport(key, "https://elsewhere.test/c", NUMBER, CALLEE, int(time.time()))
        request = PlaceCallRequest(handler.uri, CALLEE, foreign)
        resp = await env.send("POST", env.url("/tgs/alice/calls"), request.to_bytes())
        assert resp.status == 403
        unknown = PlaceCallRequest(f"{env.server.origin}/tgs/alice/handlers/none", CALLEE, forged)
        resp = await env.send("POST", env.url("/tgs/alice/calls"), unknown.to_bytes())
        assert resp.status == 500
        path = call.uri.removeprefix(env.server.origin)
        resp = await env.client.request("POST", env.url(path), headers=AUTH)  # empty claim
        assert resp.status == 200, resp.body
        assert CallDescription.from_bytes(resp.body).uri == call.uri
        resp = await env.client.request("DELETE", env.url(path), headers=AUTH)
        assert resp.status == 405
        assert header(resp, "allow") == "GET, POST"

    run(tmp_path, body)


def test_passport_verifies_with_the_served_chain(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        key, cert_uri, chain = await enrol(env)
        now = int(time.time())
        token = create_passport(key, cert_uri, NUMBER, CALLEE, now)
        ca = env.server.ca.ca_file.read_bytes()
        assert verify_passport(token, chain, now=now, trusted_ca_pem=ca).orig == "14085551002"

    run(tmp_path, body)


def test_reverse_byway_streams_the_far_end_and_ping_end(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env)
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        head = await reverse.response_headers()
        assert head.status == 200
        reader = EventStreamReader()
        events = await next_events(reverse, reader, 3)
        assert [e.type for e in events] == ["proceeding", "alerting", "answered"]
        assert all(isinstance(e, StateEvent) and e.call == call.uri for e in events)

        forward = await env.client.open_stream("PUT", env.url(f"{path}/events"), headers=JSON_AUTH)
        assert (await forward.response_headers()).status == 200  # before any event is sent
        writer = EventStreamWriter()
        stamp = format_timestamp(time.time())
        ping = Ping(direction=Direction.C2S, call=call.uri, timestamp=stamp, nonce="n-42")
        await forward.send(writer.open() + writer.encode(ping))
        (pong,) = await next_events(reverse, reader, 1)
        assert isinstance(pong, Pong) and pong.nonce == "n-42"

        await forward.send(
            writer.encode(End(direction=Direction.C2S, call=call.uri, timestamp=stamp))
        )
        (end,) = await next_events(reverse, reader, 1)
        assert isinstance(end, End)
        assert await reverse.read() is None  # the provider closed the byway
        reader.eof()
        assert reader.closed
        forward.end(writer.close())
        assert (await env.get(env.url(path))).status == 404

    run(tmp_path, body)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(tmp_path) as env:
            handler = await register(env)
            port = env.server.port
        assert handler.uri is not None
        async with running(tmp_path, port) as env:
            assert env.server.port == port
            resp = await env.get(env.url(handler.uri.removeprefix(env.server.origin)))
            assert resp.status == 200
            assert HandlerDescription.from_bytes(resp.body).uri == handler.uri

    asyncio.run(main())


def test_reset_reverse_byway_unsubscribes_and_bad_framing_ends_forward(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env)
        core = env.server.core
        assert core is not None
        path = call.uri.removeprefix(env.server.origin)
        url = env.url(f"{path}/events")
        reverse = await env.client.open_stream("GET", url, headers=AUTH, end_stream=True)
        reader = EventStreamReader()
        await next_events(reverse, reader, 3)  # answered: no far-end step is left
        assert core.next_deadline() is None  # held by a byway: no idle timer
        reverse.reset()
        await until(lambda: core.next_deadline() is not None)
        deadline = core.next_deadline()
        assert deadline is not None and deadline > time.monotonic() + 25  # the 30 s idle timer

        forward = await env.client.open_stream("PUT", url, headers=JSON_AUTH)
        assert (await forward.response_headers()).status == 200
        await forward.send(b"[,")
        assert await forward.read() is None  # the provider ended its answer
        assert (await env.get(env.url(path))).status == 200  # the call goes on
        missing = env.url("/calls/00000000-0000-4000-8000-000000000000/events")
        assert (await env.get(missing)).status == 404

    run(tmp_path, body)


def test_media_byways_echo_ack_and_panic(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env)
        assert call.media_key is not None
        k = call.media_key
        keys = MediaKeys.from_material(k.key, k.salt, k.tag_length)
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        reader = EventStreamReader()
        assert [e.type for e in await next_events(reverse, reader, 3)][-1] == "answered"

        sender = ChunkSender(Direction.C2S, keys)
        receiver = ChunkReceiver(Direction.S2C, keys)
        media_url = env.url(f"{path}/media")
        old = await env.client.open_stream("GET", media_url, headers=AUTH, end_stream=True)
        new = await env.client.open_stream("GET", media_url, headers=AUTH, end_stream=True)
        await until(lambda: waiting(env, call.uri) == 2)  # both GETs reached the provider
        payload = bytes(range(160))
        chunk = sender.media(0, 0, PayloadType.PCMU, 1000, payload, now=time.monotonic())
        resp = await env.send("PUT", media_url, frame([chunk]), "application/octet-stream")
        assert resp.status == 200
        acks = receiver.receive(resp.body, time.monotonic()).acks
        assert [(a.acked_seq, a.direction) for a in acks] == [(0, Direction.C2S)]

        # The echo answers the most recent GET, with the same payload.
        assert (await new.response_headers()).status == 200
        echoed = receiver.receive(await new.read_all(65536), time.monotonic()).media
        assert [(c.payload, c.payload_type, c.seq) for c in echoed] == [
            (payload, PayloadType.PCMU, 0)
        ]
        old.reset()
        await until(lambda: waiting(env, call.uri) == 0)
        # No GET left open: the provider drops the chunk and says media-panic.
        chunk = sender.media(0, 0, PayloadType.PCMU, 1020, payload, now=time.monotonic())
        resp = await env.send("PUT", media_url, frame([chunk]), "application/octet-stream")
        assert resp.status == 200
        (panic,) = await next_events(reverse, reader, 1)
        assert isinstance(panic, MediaPanic) and panic.call == call.uri

    run(tmp_path, body)


def test_far_end_tone_in_pcmu(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env, TONE_DEST, PCMU_AD)
        assert call.server_directives is not None and "PCMU" in call.server_directives
        assert call.media_key is not None
        k = call.media_key
        receiver = ChunkReceiver(Direction.S2C, MediaKeys.from_material(k.key, k.salt, 8))
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        reader = EventStreamReader()
        assert [e.type for e in await next_events(reverse, reader, 3)][-1] == "answered"
        chunks: list[MediaChunk] = []
        for _ in range(3):
            resp = await env.get(env.url(f"{path}/media"))
            assert resp.status == 200
            chunks += receiver.receive(resp.body, time.monotonic()).media
        assert [c.payload_type for c in chunks] == [PayloadType.PCMU] * 3
        assert chunks[0].seq < chunks[1].seq < chunks[2].seq
        pcm = ulaw_decode(chunks[-1].payload)
        assert len(pcm) == 320  # 20 ms at 8 kHz, 16-bit
        assert goertzel(pcm, 8000, 1000) > 100 * goertzel(pcm, 8000, 440)

    run(tmp_path, body)


def test_far_end_tone_follows_the_phones_codec_and_ptime(tmp_path: Path) -> None:
    # A handler advertising PCMA at 40 ms: the tone comes in PCMA, 40 ms a chunk, the
    # timestamps 40 ms apart.
    ad = "1 in: PCMA,ptime=40; CN;\n1 out: PCMA,ptime=40; CN;"

    async def body(env: Env) -> None:
        call = await place_ok(env, TONE_DEST, ad)
        assert call.server_directives == "1 to 1: PCMA,ptime=40; CN;"
        assert call.media_key is not None
        k = call.media_key
        receiver = ChunkReceiver(Direction.S2C, MediaKeys.from_material(k.key, k.salt, 8))
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        reader = EventStreamReader()
        assert [e.type for e in await next_events(reverse, reader, 3)][-1] == "answered"
        chunks: list[MediaChunk] = []
        while len(chunks) < 3:
            resp = await env.get(env.url(f"{path}/media"))
            assert resp.status == 200
            chunks += receiver.receive(resp.body, time.monotonic()).media
        assert {c.payload_type for c in chunks} == {PayloadType.PCMA}
        assert [len(c.payload) for c in chunks] == [320] * len(chunks)  # 40 ms at 8 kHz
        steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(chunks)}
        assert steps <= {40, 80, 120}  # 40 ms apart (a GET may miss one in between)
        pcm = alaw_decode(chunks[-1].payload)
        assert goertzel(pcm, 8000, 1000) > 100 * goertzel(pcm, 8000, 440)

    run(tmp_path, body)


def test_far_end_plays_a_wav_file_resampled_to_the_codec_rate(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        call = await place_ok(env, FILE_DEST, PCMU_AD)
        assert call.media_key is not None
        k = call.media_key
        receiver = ChunkReceiver(Direction.S2C, MediaKeys.from_material(k.key, k.salt, 8))
        path = call.uri.removeprefix(env.server.origin)
        reverse = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=True
        )
        reader = EventStreamReader()
        assert [e.type for e in await next_events(reverse, reader, 3)][-1] == "answered"
        chunks: list[MediaChunk] = []
        while len(chunks) < 3:
            resp = await env.get(env.url(f"{path}/media"))
            assert resp.status == 200
            chunks += receiver.receive(resp.body, time.monotonic()).media
        pcm = ulaw_decode(chunks[-1].payload)
        # The 16 kHz file's 1200 Hz tone, at 8 kHz in PCMU.
        assert goertzel(pcm, 8000, 1200) > 100 * goertzel(pcm, 8000, 1000)

    run(tmp_path, body)


def test_a_body_on_a_held_get_is_stopped_not_buffered(tmp_path: Path) -> None:
    """96 MiB of DATA on a held GET once grew the provider by 64 MB: now STOP_SENDING."""

    async def body(env: Env) -> None:
        call = await place_ok(env)
        path = call.uri.removeprefix(env.server.origin)
        held = await env.client.open_stream(
            "GET", env.url(f"{path}/events"), headers=AUTH, end_stream=False
        )
        assert (await held.response_headers()).status == 200
        sent = 0
        with pytest.raises(StreamResetError) as stopped:
            while sent < 8 * 1024 * 1024:
                await held.send(b"x" * 16384)
                sent += 16384
                await asyncio.sleep(0)
        assert stopped.value.stop_sending is True
        assert sent < 1024 * 1024  # stopped near the bound, long before 8 MiB
        # The connection is fine: the next request is answered.
        assert (await env.get(env.url(call.uri.removeprefix(env.server.origin)))).status == 200

    run(tmp_path, body)


def test_media_state_goes_when_a_call_ends_without_a_byway(tmp_path: Path) -> None:
    """A call ended by the core (idle timer, admin, far end) leaves no media state behind."""

    async def body(env: Env) -> None:
        call = await place_ok(env)
        path = call.uri.removeprefix(env.server.origin)
        await until(lambda: env.server.core.db.call_state(call.uri) is CallStatus.ANSWERED)
        waiting = await env.client.open_stream(
            "GET", env.url(f"{path}/media"), headers=AUTH, end_stream=True
        )
        await until(lambda: call.uri in env.server._media)
        env.server.core.hangup(call.uri, "ended by the provider")  # no byway involved
        await until(lambda: call.uri not in env.server._media)
        assert (await waiting.response_headers()).status == 404  # the held GET is told

    run(tmp_path, body)
