"""The provider under abuse and bad luck (issue #14): registration cost and limits, per-device
authorization of handlers, deadlines on the monotonic clock.

Real components: the provider over real HTTP/3 on loopback (driven by the phone's own H3
client), its real mosquitto (tests/integration/mqtt.py), its SQLite file.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import riptprovider.broker as broker_module
from ript.protocol.descriptions import HandlerDescription
from riptphone.net.h3 import H3Client, Response
from riptprovider.accounts import Account, load_accounts
from riptprovider.broker import PushService
from riptprovider.config import ProviderConfigError, load_config
from riptprovider.core import ProviderCore
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
