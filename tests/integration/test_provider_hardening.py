"""The provider under abuse and bad luck (issue #14): registration cost and limits, per-device
authorization of handlers, deadlines on the monotonic clock.

Real components: the provider over real HTTP/3 on loopback (driven by the phone's own H3
client), its real mosquitto (tests/integration/mqtt.py), its SQLite file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioquic.asyncio.client import connect as quic_connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

import riptprovider.broker as broker_module
from ript.protocol.descriptions import HandlerDescription, PlaceCallRequest
from ript.protocol.events import CallStatus
from ript.protocol.oauth import DEVICE_CODE_GRANT, TokenResponse
from riptphone.net.h3 import H3Client, Response
from riptphone.net.ript_client import RiptClient, StaticToken
from riptphone.store import StateStore
from riptprovider.accounts import Account, load_accounts
from riptprovider.broker import MosquittoBroker, PushService
from riptprovider.config import ProviderConfigError, load_config
from riptprovider.core import ProviderCore
from riptprovider.oauth import IssuerRefusalError
from riptprovider.quic_limits import QuicLimits
from riptprovider.server import RunningServer, ServerConfig, serve

from .mqtt import TIMEOUT as WAIT
from .mqtt import device_client, mosquitto, tap_publisher

ADV = "1 in: PCMU;\n1 out: PCMU;"
ORIGIN = "https://localhost:4433"
TOKEN = "alice-token-0123456789"
ACCOUNTS = load_accounts({"alice": {"numbers": ["+14085551002"], "tokens": [TOKEN]}})


@dataclass
class Env:
    server: RunningServer
    client: H3Client

    def url(self, path: str) -> str:
        return f"https://localhost:{self.server.port}{path}"

    async def send(
        self, method: str, path: str, body: bytes | None = None, token: str = TOKEN
    ) -> Response:
        headers = {"authorization": f"Bearer {token}"}
        if body is not None:
            headers["content-type"] = "application/json"
        url = path if path.startswith("https://") else self.url(path)
        return await self.client.request(method, url, headers=headers, body=body)

    async def register(self, handler_id: str, token: str = TOKEN) -> Response:
        body = HandlerDescription(handler_id, ADV, "Desk").to_bytes()
        return await self.send("POST", "/tgs/alice/handlers", body, token)


@asynccontextmanager
async def running(state: Path, **config: Any) -> AsyncIterator[Env]:
    accounts = config.pop("accounts", ACCOUNTS)
    server = await serve(ServerConfig(state_dir=state, accounts=accounts, **config))
    try:
        async with H3Client(ca_file=str(server.ca.ca_file)) as client:
            yield Env(server, client)
    finally:
        await server.close()


def run(state: Path, body: Callable[[Env], Awaitable[None]], **config: Any) -> None:
    async def main() -> None:
        async with running(state, **config) as env:
            await asyncio.wait_for(body(env), 30)

    asyncio.run(main())


def alice() -> Account:
    return ACCOUNTS["alice"]


# --- row 4: the cost of a registration, and a limit ----------------------------------------


def test_a_new_device_hashes_one_password_not_every_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mosquitto(tmp_path) as broker:
        for i in range(20):
            broker.add_device(f"handler-{i}", "alice")
        hashed: list[str] = []
        real = broker_module.password_hash

        def counting(password: str, salt: bytes | None = None) -> str:
            hashed.append(password)
            return real(password, salt)

        monkeypatch.setattr(broker_module, "password_hash", counting)
        binding = broker.add_device("handler-new", "alice")
        assert len(hashed) == 1  # the new user's password, once; not the 21 others again
        assert broker.remove_device("handler-3")
        assert len(hashed) == 1
        # The files were written from the kept hashes: old and new users log in.
        old = broker.registry.device("handler-0")
        assert old is not None
        for device in (binding, broker.registry.binding(old)):
            with device_client(broker, device) as client:
                assert not client.connacks.get(timeout=WAIT).is_failure


def test_the_core_lock_is_free_while_the_broker_reloads(tmp_path: Path) -> None:
    core = ProviderCore(str(tmp_path / "provider.sqlite3"), ACCOUNTS, ORIGIN, time.time)
    with mosquitto(tmp_path) as broker, tap_publisher(broker) as publisher:
        reloading, gate = threading.Event(), threading.Event()
        real_reload = broker.registry.reload
        assert real_reload is not None

        def slow_reload() -> None:
            reloading.set()
            gate.wait(WAIT)  # a broker slow to re-read thousands of users
            real_reload()

        broker.registry.reload = slow_reload
        service = PushService(broker.registry, publisher)
        service.attach(core, ACCOUNTS.values())
        registered: list[HandlerDescription] = []
        worker = threading.Thread(
            target=lambda: registered.append(
                core.register_handler(alice(), HandlerDescription("handler-1", ADV))
            )
        )
        try:
            worker.start()
            assert reloading.wait(WAIT)
            # The registration is answered without waiting for the broker...
            worker.join(2.0)
            assert registered, "register_handler waited for the broker's reload"
            # ... and the core serves others meanwhile: its lock is not held.
            others: list[int] = []
            reader = threading.Thread(target=lambda: others.append(len(core.handlers(alice()))))
            reader.start()
            reader.join(2.0)
            assert others == [1], "the core lock was held across the broker's reload"
            settled = broker.registry.settled()
            assert not settled.done()  # not live yet: the reload has not happened
        finally:
            gate.set()
            worker.join(WAIT)
        settled.result(WAIT)
        push = registered[0].push
        assert push is not None
        with device_client(broker, push) as client:
            assert not client.connacks.get(timeout=WAIT).is_failure
        broker.registry.close()
    core.close()


def test_handlers_per_account_are_limited(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        first = await env.register("phone-1")
        assert first.status == 201, first.body
        assert (await env.register("phone-2")).status == 201
        refused = await env.register("phone-3")
        assert refused.status == 403
        assert b"already has 2 handlers, the most allowed" in refused.body
        again = await env.register("phone-1")  # re-registering is not a new handler
        assert again.status == 201 and again.get("location") == first.get("location")
        deleted = await env.send("DELETE", first.get("location") or "")
        assert deleted.status == 204
        assert (await env.register("phone-3")).status == 201

    run(tmp_path, body, max_handlers_per_account=2)


def test_the_limit_has_a_default_of_16(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        for i in range(16):
            assert (await env.register(f"phone-{i}")).status == 201
        assert (await env.register("phone-16")).status == 403

    run(tmp_path, body)


def test_max_handlers_per_account_is_a_checked_server_key(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    base = '[server]\nstate_dir = "s"\n{}\n[accounts.bob]\nnumbers = "+14085551003"\n'
    path.write_text(base.format("max_handlers_per_account = 40"))
    assert load_config(path).server_config().max_handlers_per_account == 40
    path.write_text(base.format(""))
    assert load_config(path).server_config().max_handlers_per_account == 16
    for bad in ("0", "true", "2.5", '"16"', "10001"):
        path.write_text(base.format(f"max_handlers_per_account = {bad}"))
        with pytest.raises(ProviderConfigError, match=r"\[server\] max_handlers_per_account: must"):
            load_config(path)


# --- row 5: a device's handler and push password are its own --------------------------------

OTHER = "alice-other-device-token-42"
TWO_LAB_PHONES = load_accounts(
    {"alice": {"numbers": ["+14085551002"], "destinations": "+1408*", "tokens": [TOKEN, OTHER]}}
)


def with_push(
    state: Path, body: Callable[[Env, MosquittoBroker], Awaitable[None]], **config: Any
) -> None:
    """``run`` with the provider's real mosquitto attached, as ``ript-provider serve`` does."""
    accounts = config.get("accounts", ACCOUNTS)
    with mosquitto(state) as broker, tap_publisher(broker) as publisher:
        service = PushService(broker.registry, publisher)

        async def attached(env: Env) -> None:
            assert env.server.core is not None
            service.attach(env.server.core, accounts.values())
            await body(env, broker)

        try:
            run(state, attached, **config)
        finally:
            broker.registry.close()


def described(response: Response) -> HandlerDescription:
    return HandlerDescription.from_bytes(response.body)


def test_a_device_cannot_read_or_take_another_devices_handler(tmp_path: Path) -> None:
    async def body(env: Env, broker: MosquittoBroker) -> None:
        mine = await env.register("phone-a")
        assert mine.status == 201, mine.body
        handler = described(mine)
        assert handler.uri is not None and handler.push is not None
        password = handler.push.password
        assert password is not None
        # Another device of the same account sees the handler, never its password.
        seen = await env.send("GET", handler.uri, token=OTHER)
        assert seen.status == 200
        assert described(seen).push is not None
        assert described(seen).push.password is None  # type: ignore[union-attr]
        assert password.encode() not in seen.body
        # It can neither re-register, update nor delete it.
        taken = await env.register("phone-a", token=OTHER)
        assert taken.status == 403
        assert b"registered by another device of this account" in taken.body
        body = HandlerDescription("phone-a", "1 in: PCMA;\n1 out: PCMA;").to_bytes()
        for method, payload in (("PUT", body), ("DELETE", None)):
            refused = await env.send(method, handler.uri, payload, token=OTHER)
            assert refused.status == 403, (method, refused.body)
            assert b"belongs to another device of this account" in refused.body
        # Nor place a call as it.
        call = PlaceCallRequest(
            handler=handler.uri, destination="+14089529999", passport="e30.e30.c2ln"
        )
        placed = await env.send("POST", "/tgs/alice/calls", call.to_bytes(), token=OTHER)
        assert placed.status == 403 and b"another device" in placed.body
        # The owner reads its password, and re-registers keeping it.
        own = await env.send("GET", handler.uri)
        assert described(own).push == handler.push
        again = await env.register("phone-a")
        assert again.status == 201 and described(again).push == handler.push
        # The other device's own handler is its own.
        theirs = await env.register("phone-b", token=OTHER)
        assert theirs.status == 201 and described(theirs).push is not None

    with_push(tmp_path, body, accounts=TWO_LAB_PHONES)


def test_each_oauth_login_is_a_device_and_a_new_login_takes_over_an_ended_ones(
    tmp_path: Path,
) -> None:
    async def body(env: Env, broker: MosquittoBroker) -> None:
        core = env.server.core
        assert core is not None

        def login() -> TokenResponse:
            code = core.issuer.authorize_device({"client_id": "ript-phone", "scope": "ript"})
            core.issuer.admin_approve(code.user_code, "alice")
            form = {
                "grant_type": DEVICE_CODE_GRANT,
                "device_code": code.device_code,
                "client_id": "ript-phone",
            }
            return core.issuer.token(form)

        first, second = login(), login()
        mine = await env.register("phone-a", token=first.access_token)
        assert mine.status == 201
        handler = described(mine)
        assert handler.uri is not None and handler.push is not None

        # A refresh keeps the device (same login): the handler is still its own.
        def refresh(token: str | None) -> TokenResponse:
            assert token is not None
            form = {
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": "ript-phone",
            }
            return core.issuer.token(form)

        refreshed = refresh(first.refresh_token)
        own = await env.send("GET", handler.uri, token=refreshed.access_token)
        assert described(own).push == handler.push
        # Another login of the same account is another device.
        refused = await env.register("phone-a", token=second.access_token)
        assert refused.status == 403
        seen = await env.send("GET", handler.uri, token=second.access_token)
        assert described(seen).push.password is None  # type: ignore[union-attr]
        # The first login ends: once its successor was used, a rotated refresh token used
        # again revokes the family (RFC 9700), as a stolen one would; the phone is sent
        # back to login.  (Before the successor is used it would be a lost answer:
        # docs/provider-oauth.md, "Rotation and lost answers".)
        later = refresh(refreshed.refresh_token)
        with pytest.raises(IssuerRefusalError):
            refresh(first.refresh_token)
        assert (await env.send("GET", handler.uri, token=later.access_token)).status == 401
        # A new login of the phone (or any device of the account) takes the handler over:
        # the same URI, a fresh push password; the ended login's password stops working.
        again = await env.register("phone-a", token=second.access_token)
        assert again.status == 201, again.body
        taken = described(again)
        assert taken.uri == handler.uri and taken.push is not None
        assert taken.push.password not in (None, handler.push.password)
        with device_client(broker, taken.push) as client:
            assert not client.connacks.get(timeout=WAIT).is_failure
        with device_client(broker, handler.push) as client:
            assert client.connacks.get(timeout=WAIT).is_failure

    with_push(tmp_path, body)


def test_the_phone_keeps_its_push_password_when_an_update_answers_without_it(
    tmp_path: Path,
) -> None:
    async def body(env: Env, broker: MosquittoBroker) -> None:
        core = env.server.core
        assert core is not None
        client = RiptClient(env.client, f"localhost:{env.server.port}", StaticToken(TOKEN))
        store = StateStore(tmp_path / "phone")
        tg = await client.discover()
        first, done = await client.ensure_registration(store, tg, name="Desk", advertisement=ADV)
        assert done == "registered" and first.handler_uri is not None
        assert first.push is not None and first.push.password is not None
        # A provider that hands the password out only when it makes it: the PUT's answer
        # has the binding without it, then none at all.
        without = dataclasses.replace(first.push, password=None)
        for answered, advertisement in ((without, "1 in: PCMA;\n1 out: PCMA;"), (None, ADV)):
            core.set_push_binding(alice(), first.handler_uri, answered)
            kept, done = await client.ensure_registration(
                store, tg, name="Desk", advertisement=advertisement
            )
            assert done == "updated"
            assert kept.push == first.push
            assert StateStore(store.directory).load_registration().data == kept
        with device_client(broker, first.push) as mqtt:
            assert not mqtt.connacks.get(timeout=WAIT).is_failure

    with_push(tmp_path, body)


# --- row 7: deadlines on the monotonic clock ------------------------------------------------


class Clocks:
    """A wall clock and a monotonic clock, moved by hand (NTP steps only the first)."""

    def __init__(self, wall: float = 1_800_000_000.0, mono: float = 1000.0) -> None:
        self.wall_now, self.mono_now = wall, mono

    def wall(self) -> float:
        return self.wall_now

    def mono(self) -> float:
        return self.mono_now

    def advance(self, seconds: float) -> None:
        self.wall_now += seconds
        self.mono_now += seconds


FAR_END = load_accounts(
    {
        "alice": {
            "numbers": ["+14085551002"],
            "tokens": [TOKEN],
            "far-end": [{"match": "*", "outcome": "answer", "answer-after": 3}],
        }
    }
)


def two_clock_core(path: Path, clocks: Clocks) -> ProviderCore:
    return ProviderCore(str(path), FAR_END, ORIGIN, clocks.wall, monotonic=clocks.mono)


def test_a_wall_clock_step_moves_no_deadline(tmp_path: Path) -> None:
    clocks = Clocks()
    core = two_clock_core(tmp_path / "p.sqlite3", clocks)
    account = FAR_END["alice"]
    try:
        inbound = core.inject_inbound(account, "+14089520100")  # rings 60 s
        assert core.next_deadline() == pytest.approx(clocks.mono_now + 60)
        clocks.wall_now -= 3600  # set back an hour: still due in 60 s, not 3,660
        assert core.next_deadline() == pytest.approx(clocks.mono_now + 60)
        # An outbound call whose far end alerts after 0.2 s and answers 3 s later.
        handler = core.register_handler(account, HandlerDescription("phone-1", ADV))
        assert handler.uri is not None
        request = PlaceCallRequest(handler.uri, "+14089529999", "e30.e30.c2ln")
        outbound = core.place_call(account, request, lambda token, dest: None)
        clocks.wall_now += 7200  # set forward two hours: nothing is due yet
        core.tick(clocks.mono_now)
        assert core.get_call(account, outbound.uri).state is CallStatus.PROCEEDING
        clocks.advance(0.2)
        core.tick(clocks.mono_now)
        assert core.get_call(account, outbound.uri).state is CallStatus.ALERTING
        clocks.wall_now -= 3600
        clocks.advance(3)
        core.tick(clocks.mono_now)
        assert core.get_call(account, outbound.uri).state is CallStatus.ANSWERED
        # The idle timer too: nobody holds a byway of the answered call.
        assert core.next_deadline() == pytest.approx(clocks.mono_now - 3.2 + 30)
        clocks.wall_now += 86400
        assert core.next_deadline() == pytest.approx(clocks.mono_now - 3.2 + 30)
        # The ring timeout comes on time; the stamps on the wire are the wall clock's.
        clocks.advance(60 - 3.2 - 0.01)
        core.tick(clocks.mono_now)
        assert core.db.call_state(inbound.uri) is CallStatus.PROCEEDING
        clocks.advance(0.01)
        core.tick(clocks.mono_now)
        assert core.db.call_state(inbound.uri) is CallStatus.NOANSWER
        assert core.db.call_state(outbound.uri) is CallStatus.ENDED  # 30 s idle, long since
        stored = core.db.read("SELECT ended FROM calls WHERE uri = ?", (outbound.uri,))
        assert stored[0][0] == pytest.approx(clocks.wall_now - (60 - 3.2 - 30))
    finally:
        core.close()


def test_after_a_restart_deadlines_run_from_the_stored_times_never_from_the_future(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.sqlite3"
    clocks = Clocks()
    core = two_clock_core(path, clocks)
    call = core.inject_inbound(FAR_END["alice"], "+14089520100")
    core.close()
    # Restarted 20 s later (a reboot: the monotonic clock starts again).
    later = Clocks(wall=clocks.wall_now + 20, mono=5.0)
    again = two_clock_core(path, later)
    assert again.next_deadline() == pytest.approx(later.mono_now + 40)
    again.close()
    # Restarted with the wall clock an hour behind the stored creation time: the call
    # counts as made now (60 s), not in an hour's time (3,660 s).
    behind = Clocks(wall=clocks.wall_now - 3600, mono=7.0)
    restarted = two_clock_core(path, behind)
    try:
        assert restarted.next_deadline() == pytest.approx(behind.mono_now + 60)
        assert restarted.db.call_state(call.uri) is CallStatus.PROCEEDING
    finally:
        restarted.close()


def test_the_running_server_times_out_a_ring_after_the_wall_clock_is_set_back(
    tmp_path: Path,
) -> None:
    step = [0.0]
    accounts = load_accounts(
        {"alice": {"numbers": ["+14085551002"], "tokens": [TOKEN], "inbound-ring-timeout": 1}}
    )

    async def body(env: Env) -> None:
        core = env.server.core
        assert core is not None
        call = core.inject_inbound(accounts["alice"], "+14089520100")
        env.server.wake()
        step[0] = -3600.0  # NTP sets the wall clock back an hour
        deadline = time.monotonic() + 5
        while core.db.call_state(call.uri) is not CallStatus.NOANSWER:
            assert time.monotonic() < deadline, "the ring timeout moved with the wall clock"
            await asyncio.sleep(0.05)

    run(tmp_path, body, accounts=accounts, clock=lambda: time.time() + step[0])


# --- row 13: QUIC connections are bounded, Retry under load -----------------------------------


@asynccontextmanager
async def bare_quic(env: Env) -> AsyncIterator[QuicConnectionProtocol]:
    """A QUIC connection to the provider that never sends a request (an abuser's)."""
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=list(H3_ALPN), server_name="localhost"
    )
    configuration.load_verify_locations(str(env.server.ca.ca_file))
    async with quic_connect("127.0.0.1", env.server.port, configuration=configuration) as conn:
        yield conn


async def providertgs(client: H3Client, env: Env) -> int:
    headers = {"authorization": f"Bearer {TOKEN}"}
    response = await client.request(
        "GET", env.url("/.well-known/ript/v1/providertgs"), headers=headers
    )
    return response.status


def test_quic_connections_are_bounded_retried_and_refused_past_the_bound(
    tmp_path: Path,
) -> None:
    async def body(env: Env) -> None:
        quic = env.server.quic
        assert quic is not None
        assert await providertgs(env.client, env) == 200  # the phone: 1 connection, trusted
        async with AsyncExitStack() as held:
            for _ in range(3):
                await held.enter_async_context(bare_quic(env))
            assert quic.connection_count == 4
            # From 2 open connections on, a new one had to prove its address first.
            assert quic.retries == 2
            started = time.monotonic()
            with pytest.raises(ConnectionError):
                await held.enter_async_context(bare_quic(env))
            assert time.monotonic() - started < 2  # told at once, not left to time out
            assert quic.refused == 1 and quic.connection_count == 4
            # The authenticated phone goes on working meanwhile.
            assert await providertgs(env.client, env) == 200
            assert quic.evicted == 0  # nobody is past the grace: nothing closed for room

    run(
        tmp_path,
        body,
        quic_limits=QuicLimits(max_connections=4, retry_above=2, unauthenticated_grace=60),
    )


def test_connections_that_never_authenticate_make_room_for_a_phone(tmp_path: Path) -> None:
    async def body(env: Env) -> None:
        quic = env.server.quic
        assert quic is not None
        assert await providertgs(env.client, env) == 200
        async with AsyncExitStack() as held:
            for _ in range(2):
                await held.enter_async_context(bare_quic(env))
            assert quic.connection_count == 3
            await asyncio.sleep(0.5)  # past their grace, never authenticated
            # A second phone connects: the oldest idle stranger is closed for it.
            async with H3Client(ca_file=str(env.server.ca.ca_file)) as second:
                assert await providertgs(second, env) == 200
                assert quic.evicted == 1 and quic.refused == 0
                assert quic.connection_count == 3
                await asyncio.sleep(0.5)
                # Both phones are trusted now: a third stranger finds no room.
                await held.enter_async_context(bare_quic(env))  # evicts the last stranger
                with pytest.raises(ConnectionError):
                    await held.enter_async_context(bare_quic(env))
                assert quic.evicted == 2 and quic.refused == 1
                assert await providertgs(second, env) == 200
            assert await providertgs(env.client, env) == 200

    run(
        tmp_path,
        body,
        quic_limits=QuicLimits(max_connections=3, retry_above=100, unauthenticated_grace=0.3),
    )


def test_max_connections_and_retry_above_are_checked_server_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    base = '[server]\nstate_dir = "s"\n{}\n[accounts.bob]\nnumbers = "+14085551003"\n'
    path.write_text(base.format("max_connections = 50\nretry_above = 0"))
    limits = load_config(path).server_config().quic_limits
    assert (limits.max_connections, limits.retry_above) == (50, 0)
    path.write_text(base.format(""))
    assert load_config(path).server_config().quic_limits == QuicLimits(1000, 100, 10.0)
    for bad in ("max_connections = 0", "retry_above = -1", "max_connections = true"):
        path.write_text(base.format(bad))
        with pytest.raises(ProviderConfigError, match=r"\[server\] \w+: must be an integer"):
            load_config(path)
