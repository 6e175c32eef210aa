"""The push channel end to end on a real mosquitto: the provider's broker and publisher, the phone.

Every test runs its own broker (tests/integration/mqtt.py) in a temporary
directory, with TLS from a fresh provider CA, and the phone's
:class:`PushChannel` in an ``asyncio.run`` loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ript.atomic import atomic_write
from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.descriptions import HandlerDescription, PushBinding
from ript.protocol.taps import Tap, TapType, parse_tap
from riptphone.net.push import RECONNECT, PushChannel, PushStatus
from riptprovider.accounts import load_accounts
from riptprovider.broker import (
    MosquittoBroker,
    PushService,
    PushSettings,
    TapPublisher,
    password_hash,
    start_push,
    tap_payload,
)
from riptprovider.core import ProviderCore
from riptprovider.tls import load_or_create_ca

from .mqtt import device_client, mosquitto, mqtt_client, tap_publisher, wait_until

ORIGIN = "https://localhost:4433"
TG = f"{ORIGIN}/tgs/alice"
CALL = f"{ORIGIN}/calls/9f2c"
ADV = "1 in: PCMU;\n1 out: PCMU;"
WAIT = 10.0
FAST = (0.025, 0.1)
"""Backoff (initial, max; each wait up to twice that) for tests that make the channel reconnect."""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def handler(binding: PushBinding) -> HandlerDescription:
    assert binding.username is not None
    return HandlerDescription(binding.username, ADV, push=binding)


class Phone:
    """A :class:`PushChannel` with what it reported, for one ``asyncio.run``."""

    def __init__(
        self, broker: MosquittoBroker, binding: PushBinding, backoff: tuple[float, float] = FAST
    ) -> None:
        assert binding.username is not None
        self.taps: asyncio.Queue[Tap] = asyncio.Queue()
        self.connects = 0
        self.statuses: list[PushStatus] = []
        self.channel = PushChannel(
            binding,
            binding.username,
            TG,
            self.taps.put_nowait,
            on_connected=self._connected,
            on_status=self.statuses.append,
            ca_file=broker.ca_file,
            backoff=Backoff(BackoffPolicy(*backoff, jitter=1.0)),
        )

    async def _connected(self) -> None:  # a coroutine on purpose: both kinds must work
        self.connects += 1

    async def __aenter__(self) -> Phone:
        self.channel.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.channel.close()

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def up(self, connects: int = 1) -> None:
        await self.until(
            lambda: self.connects >= connects and self.channel.status == PushStatus.UP,
            f"connection #{connects}",
        )

    async def tap(self) -> Tap:
        return await asyncio.wait_for(self.taps.get(), WAIT)

    async def no_more_taps(self, publisher: TapPublisher, binding: PushBinding) -> None:
        """Publish a marker tap and check it is the next one: nothing else came first."""
        tap_id = publisher.publish(handler(binding), TapType.CALL, f"{ORIGIN}/calls/marker")
        got = await self.tap()
        assert got.id == tap_id, f"an unexpected tap arrived first: {got}"
        assert self.taps.empty()


def secrets_of(broker: MosquittoBroker) -> list[str]:
    return [broker.registry.publisher_credentials[1]] + [
        d.password for d in broker.registry.devices()
    ]


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture, broker: MosquittoBroker) -> None:
    for secret in secrets_of(broker):
        assert secret not in caplog.text
    log_file = broker.log_file.read_text()
    for secret in secrets_of(broker):
        assert secret not in log_file


# --- pure parts ---------------------------------------------------------------------------


def test_backoff_doubles_to_a_minute_with_jitter() -> None:
    backoff = Backoff(RECONNECT, random.Random(7))
    delays = [backoff.next_delay() for _ in range(10)]
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays[-4:])) == 4  # jittered, not in step
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0
    with pytest.raises(ValueError):
        BackoffPolicy(0, 1)


def test_plain_mqtt_only_to_loopback(tmp_path: Path) -> None:
    binding = PushBinding("mqtt://127.0.0.1:1883", "ript/v1/alice/h", "h", "pw")
    channel = PushChannel(binding, "h", TG, lambda tap: None)
    assert channel.status == PushStatus.DOWN
    with pytest.raises(ValueError, match="at least"):
        PushChannel(binding, "h", TG, lambda tap: None, session_expiry=3600)


# --- with mosquitto -----------------------------------------------------------------------


def test_a_published_tap_reaches_on_tap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with mosquitto(tmp_path) as broker, tap_publisher(broker) as publisher:
        binding = broker.add_device("handler-1", "alice")
        assert binding.broker == broker.url and binding.topic == "ript/v1/alice/handler-1"

        async def run() -> None:
            async with Phone(broker, binding) as phone:
                await phone.up()
                assert phone.statuses == [PushStatus.UP]
                for tap_type in TapType:
                    tap_id = publisher.publish(handler(binding), tap_type, CALL)
                    tap = await phone.tap()
                    assert (tap.id, tap.type, tap.call) == (tap_id, tap_type, CALL)
                    assert abs(tap.ts - time.time() * 1000) < 60_000
            assert phone.channel.status == PushStatus.NONE
            assert phone.statuses == [PushStatus.UP, PushStatus.NONE]

        asyncio.run(run())
        assert_no_secret_logged(caplog, broker)


def test_a_device_reads_only_its_own_topic_and_publishes_nothing(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker, tap_publisher(broker) as publisher:
        mine = broker.add_device("handler-1", "alice")
        other = broker.add_device("handler-2", "alice")
        with device_client(broker, other) as client:
            client.subscribe(other.topic)  # a session that queues while it is away
        with device_client(broker, mine) as client:
            assert not client.connacks.get(timeout=WAIT).is_failure
            # mosquitto 2.0.11 grants the subscription but never delivers what the ACL
            # does not let this user read.
            client.subscribe(other.topic)
            client.subscribe("ript/v1/#")
            client.subscribe(mine.topic)
            publisher.publish(handler(other), TapType.CALL, CALL)
            marker = publisher.publish(handler(mine), TapType.CALL, CALL)
            # Neither the other device's topic nor its own: a device never publishes.
            for topic in (other.topic, mine.topic):
                assert client.publish(topic, tap_payload(TapType.ANSWER, CALL)).is_failure
            seen = [client.messages.get(timeout=WAIT)]
            time.sleep(0.2)
            # One copy per matching subscription (MQTT 5), all of them the marker.
            while not client.messages.empty():
                seen.append(client.messages.get())
            assert {(m.topic, json.loads(m.payload)["id"]) for m in seen} == {(mine.topic, marker)}
        # The other device's queue holds only the provider's tap.
        with device_client(broker, other) as client:
            client.subscribe(other.topic)
            message = client.messages.get(timeout=WAIT)
            assert json.loads(message.payload)["type"] == "call"
            time.sleep(0.2)
            assert client.messages.empty()


def test_a_wrong_password_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")
        with mqtt_client(broker, "handler-1", "handler-1", "not-the-password") as client:
            assert client.connacks.get(timeout=WAIT).getName() == "Not authorized"
        with mqtt_client(broker, "someone", "someone", "guess") as client:
            assert client.connacks.get(timeout=WAIT).is_failure
        wrong = PushBinding(binding.broker, binding.topic, binding.username, "wrong-password-x")

        async def run() -> None:
            refusals: list[int] = []
            phone = Phone(broker, wrong)
            phone.channel.on_refused = lambda: refusals.append(1)  # the line asks GET {handler}
            async with phone:
                await phone.until(
                    lambda: "refused handler handler-1: Not authorized" in caplog.text,
                    "the refusal in the log",
                )
                await phone.until(lambda: bool(refusals), "on_refused")
                assert phone.channel.status == PushStatus.DOWN
                assert phone.connects == 0

        asyncio.run(run())
        assert "wrong-password-x" not in caplog.text
        assert_no_secret_logged(caplog, broker)


def test_a_tap_sent_while_offline_arrives_after_reconnecting(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")

        async def connect_once() -> None:
            async with Phone(broker, binding) as phone:
                await phone.up()

        async def expect(tap_ids: list[str | None]) -> None:
            async with Phone(broker, binding) as phone:
                got = [(await phone.tap()).id for _ in tap_ids]
                assert got == tap_ids
                await phone.up()
                await asyncio.sleep(0.2)
                assert phone.taps.empty()

        asyncio.run(connect_once())  # the broker now holds the session
        with tap_publisher(broker) as publisher:
            first = publisher.publish(handler(binding), TapType.CALL, CALL)
            second = publisher.publish(handler(binding), TapType.TAKE, CALL)
            assert publisher.flush()  # the broker has them before it stops
        # A clean broker restart keeps the queue (persistence true).
        broker.stop()
        broker.start()
        asyncio.run(expect([first, second]))


def test_on_connected_runs_after_every_reconnection(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")
        assert binding.username is not None and binding.password is not None

        async def run() -> None:
            async with Phone(broker, binding) as phone:
                await phone.up(1)
                # The broker goes away and comes back on the same port.
                await asyncio.to_thread(broker.stop)
                await phone.until(lambda: phone.channel.status == PushStatus.DOWN, "down")
                await asyncio.to_thread(broker.start)
                await phone.up(2)
                # Another connection with the same client id takes the session over.
                taker = device_client(broker, binding)
                await asyncio.to_thread(taker.__enter__)
                await phone.up(3)
                taker.__exit__(None, None, None)
                with tap_publisher(broker) as publisher:
                    await phone.no_more_taps(publisher, binding)
                assert phone.statuses == [
                    PushStatus.UP,
                    PushStatus.DOWN,
                    PushStatus.UP,
                    PushStatus.DOWN,
                    PushStatus.UP,
                ]

        asyncio.run(run())


def test_bad_taps_are_ignored_with_one_log_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with mosquitto(tmp_path) as broker, tap_publisher(broker) as publisher:
        binding = broker.add_device("handler-1", "alice")
        good = tap_payload(TapType.CALL, CALL)
        bad = [
            tap_payload(TapType.CALL, "https://evil.example/calls/1"),  # foreign origin
            tap_payload(TapType.CALL, "https://localhost:4434/calls/1"),  # other port
            good,  # a duplicate, below
            b"{not json",
            b'{"v": 1, "id": "x", "type": "ring", "call": "' + CALL.encode() + b'", "ts": 1}',
            b"",
        ]

        async def run() -> None:
            async with Phone(broker, binding) as phone:
                await phone.up()
                assert publisher.publish_payload(binding.topic, good)
                assert (await phone.tap()).id == json.loads(good)["id"]
                caplog.clear()
                for payload in bad:
                    assert publisher.publish_payload(binding.topic, payload)
                await phone.no_more_taps(publisher, binding)

        asyncio.run(run())
        ignored = [r.getMessage() for r in caplog.records if "ignored a" in r.getMessage()]
        assert len(ignored) == len(bad), ignored
        assert sum("foreign-origin" in line for line in ignored) == 2
        assert sum("duplicate" in line for line in ignored) == 1
        assert sum("malformed" in line for line in ignored) == 3
        assert_no_secret_logged(caplog, broker)


def test_a_removed_device_is_disconnected_and_kept_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")

        async def run() -> None:
            async with Phone(broker, binding) as phone:
                await phone.up()
                # SIGHUP: mosquitto 2.0.11 re-reads the files and drops the user.
                assert broker.remove_device("handler-1")
                await phone.until(lambda: phone.channel.status == PushStatus.DOWN, "down")
                await phone.until(lambda: "Not authorized" in caplog.text, "a refused login")
                assert phone.connects == 1

        asyncio.run(run())
        assert not broker.remove_device("handler-1")


def test_the_device_list_and_broker_files(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as broker:
        first = broker.add_device("handler-1", "alice")
        assert broker.add_device("handler-1", "alice") == first  # idempotent, same password
        second = broker.add_device("handler-2", "bob")
        with pytest.raises(Exception, match="another account"):
            broker.add_device("handler-1", "bob")
        for bad in ("a/b", "+", "#", "ript-provider", "has space", ""):
            with pytest.raises(Exception, match=r"MQTT|provider"):
                broker.add_device(bad, "alice")
        port = broker.port
        for name in ("passwd", "acl", "devices.json", "mosquitto.conf", "broker.key"):
            mode = stat.S_IMODE(os.stat(broker.directory / name).st_mode)
            assert mode == 0o600, (name, oct(mode))
        passwd = (broker.directory / "passwd").read_text().splitlines()
        assert [line.split(":")[0] for line in passwd] == [
            "ript-provider",
            "handler-1",
            "handler-2",
        ]
        assert all(line.split(":", 1)[1].startswith("$7$101$") for line in passwd)
        acl = (broker.directory / "acl").read_text()
        assert "user handler-2\ntopic read ript/v1/bob/handler-2\n" in acl
        assert "user ript-provider\ntopic write ript/v1/#\n" in acl
        conf = (broker.directory / "mosquitto.conf").read_text()
        assert "allow_anonymous false" in conf and "persistence true" in conf
        # Only the one loopback listener: a per-listener option before the listener line
        # would also open mosquitto's default listener on 0.0.0.0:1883.
        assert broker.process is not None
        assert _listening_ports(broker.process.pid) == {("127.0.0.1", broker.port)}
    # A new broker object on the same directory: same devices, same port, same passwords.
    with mosquitto(tmp_path) as again:
        assert again.port == port
        assert again.add_device("handler-2", "bob") == second
        with device_client(again, first) as client:
            assert not client.connacks.get(timeout=WAIT).is_failure


# --- wired into the provider ---------------------------------------------------------------


def test_the_provider_core_taps_every_handler_of_an_inbound_call(tmp_path: Path) -> None:
    accounts = load_accounts({"alice": {"numbers": ["+14085551002"]}})
    alice = accounts["alice"]
    core = ProviderCore(str(tmp_path / "provider.db"), accounts, ORIGIN, time.time)
    try:
        early = core.register_handler(alice, HandlerDescription("handler-0", ADV))
        assert early.push is None  # registered before push was configured
        with mosquitto(tmp_path) as broker, tap_publisher(broker) as publisher:
            PushService(broker.registry, publisher).attach(core, accounts.values())
            assert early.uri is not None
            bindings = [core.get_handler(alice, early.uri).push]
            for handler_id in ("handler-1", "handler-2"):
                described = core.register_handler(alice, HandlerDescription(handler_id, ADV))
                bindings.append(described.push)
            assert all(b is not None and b.broker == broker.url for b in bindings)

            async def run() -> None:
                phones = [Phone(broker, b) for b in bindings if b is not None]
                for phone in phones:
                    await phone.__aenter__()
                try:
                    for phone in phones:
                        await phone.up()
                    call = core.inject_inbound(alice, "+14085550100")
                    for phone in phones:
                        tap = await phone.tap()
                        assert (tap.type, tap.call) == (TapType.CALL, call.uri)
                finally:
                    for phone in phones:
                        await phone.__aexit__()

            asyncio.run(run())
            # A deleted handler loses its MQTT user: the device can no longer log in.
            assert broker.registry.device("handler-1") is not None
            handler_1 = next(h for h in core.handlers(alice) if h.handler_id == "handler-1")
            assert handler_1.uri is not None
            core.delete_handler(alice, handler_1.uri)
            assert broker.registry.device("handler-1") is None
            assert broker.registry.device("handler-2") is not None
    finally:
        core.close()


def test_ript_provider_serve_runs_and_stops_its_broker(tmp_path: Path) -> None:
    config = tmp_path / "provider.toml"
    config.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {free_udp_port()}
state_dir = "state"

[accounts.alice]
numbers = ["+14085551002"]
tokens = ["alice-push-token-0123456789"]

[push]
broker = "spawn"
"""
    )
    log = tmp_path / "provider.log"
    with log.open("wb") as out:
        provider = subprocess.Popen(
            [sys.executable, "-m", "riptprovider", "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 20
        while "ready:" not in log.read_text():
            assert provider.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        text = log.read_text()
        assert re.search(r"push: broker=mqtts://127\.0\.0\.1:\d+", text), text
        pid = int((tmp_path / "state" / "push" / "mosquitto.pid").read_text())
        assert Path(f"/proc/{pid}").exists()
        provider.send_signal(signal.SIGTERM)
        assert provider.wait(20) == 0, log.read_text()
        assert not Path(f"/proc/{pid}").exists()
        assert "alice-push-token" not in log.read_text()
    finally:
        if provider.poll() is None:
            provider.kill()
            provider.wait()


def test_a_reload_right_after_another_still_reaches_mosquitto(tmp_path: Path) -> None:
    """A user written just after a reload works once the next reload() returns.

    mosquitto's SIGHUP handler only sets a flag, which it clears at the end of
    the reload: a signal that comes while it still reads the files is lost.
    reload() returned at the first reload's log line, and the write-behind
    thread writes and signals again at once in a burst of registrations; in
    the load bench the last phone of a burst stayed "Not authorized" until
    the next change.  A big password file keeps mosquitto reading long enough
    for the second signal to land inside the first reload every time.
    """
    with mosquitto(tmp_path) as broker:
        path = broker.registry.password_file
        publisher = path.read_text()
        hashed = password_hash("filler", bytes(12))  # one hash: the file, not the hashing, is slow
        atomic_write(path, (publisher + "".join(f"f{i}:{hashed}\n" for i in range(10000))).encode())
        broker.reload()
        atomic_write(path, (publisher + f"late:{password_hash('late-pw')}\n").encode())
        broker.reload()
        with mqtt_client(broker, "late", "late", "late-pw") as client:
            reason = client.connacks.get(timeout=WAIT)
        assert not reason.is_failure, f"the user written before reload() was refused: {reason}"


def test_an_external_broker_gets_the_files_and_reload_it_needs(tmp_path: Path) -> None:
    # A mosquitto the provider did not start, reading files the provider writes.
    with mosquitto(tmp_path / "external") as external:
        assert external.process is not None
        settings = PushSettings(
            external.url,
            ca_file=external.ca_file,
            password_file=external.registry.password_file,
            acl_file=external.registry.acl_file,
            reload_command=("kill", "-HUP", str(external.process.pid)),
        )
        ca = load_or_create_ca(tmp_path / "provider")
        service = start_push(settings, ca, tmp_path / "provider")
        try:
            assert service.broker is None and service.url == external.url
            assert service.publisher.connected
            accounts = load_accounts({"alice": {"numbers": ["+14085551002"]}})
            binding = service.binder(accounts["alice"], HandlerDescription("handler-9", ADV))
            assert binding is not None and binding.broker == external.url

            async def run() -> None:
                async with Phone(external, binding) as phone:
                    await phone.up()
                    tap_id = service.publisher.publish(handler(binding), TapType.ANSWER, CALL)
                    assert (await phone.tap()).id == tap_id

            asyncio.run(run())
        finally:
            service.close()


def test_the_broker_certificate_is_verified(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")
        assert binding.username is not None

        async def run() -> None:
            # Only the system's trust anchors: the provider's CA is not among them.
            channel = PushChannel(
                binding,
                binding.username,
                TG,
                lambda tap: None,
                backoff=Backoff(BackoffPolicy(*FAST, jitter=1.0)),
            )
            channel.start()
            try:
                deadline = time.monotonic() + WAIT
                while "certificate verify failed" not in caplog.text:
                    assert time.monotonic() < deadline, caplog.text
                    await asyncio.sleep(0.01)
                assert channel.status == PushStatus.DOWN
            finally:
                await channel.close()

        asyncio.run(run())


def test_ript_provider_serve_without_mosquitto_is_one_error_line(tmp_path: Path) -> None:
    config = tmp_path / "provider.toml"
    config.write_text(
        f"""
[server]
port = {free_udp_port()}
state_dir = "state"

[accounts.alice]
numbers = ["+14085551002"]

[push]
broker = "spawn"
mosquitto = "/nonexistent/mosquitto"
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "riptprovider", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "ript-provider: push: /nonexistent/mosquitto is not an executable"
        " (apt-get install mosquitto)"
    )
    assert "Traceback" not in done.stderr


def _listening_ports(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets ``pid`` listens on, from /proc (no ss or netstat needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found: set[tuple[str, int]] = set()
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            if v6:
                host = "::" if set(address) == {"0"} else address
            else:
                host = ".".join(str(b) for b in reversed(bytes.fromhex(address)))
            found.add((host, int(port, 16)))
    return found


# -- supervision: a broker that dies is started again ---------------------------------------


def _watchers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mosquitto-watch"]


def test_a_supervised_broker_that_dies_comes_back_on_its_port_with_the_taps_of_the_outage(
    tmp_path: Path,
) -> None:
    with mosquitto(tmp_path) as broker:
        binding = broker.add_device("handler-1", "alice")
        with device_client(broker, binding) as device:  # the broker now holds its session
            assert not device.connacks.get(timeout=10).is_failure
            assert device.subscribe(binding.topic).value == 1
        broker.supervise()
        port = broker.port
        with tap_publisher(broker) as publisher:
            process = broker.process
            assert process is not None
            process.send_signal(signal.SIGTERM)  # not the provider's doing: it exits unbidden
            wait_until(lambda: not publisher.connected, what="the publisher sees it gone")
            # Published during the outage: queued by the publisher's client.
            tap_id = publisher.publish(handler(binding), TapType.CALL, CALL)
            assert tap_id is not None
            wait_until(lambda: broker.restarts == 1, 20, "mosquitto started again")
            assert broker.port == port and broker.process is not process
            assert publisher.flush(20)  # sent and acknowledged once it logged in again
        with device_client(broker, binding) as device:
            assert not device.connacks.get(timeout=10).is_failure
            message = device.messages.get(timeout=10)
            assert parse_tap(message.payload).id == tap_id
    log = broker.log_file.read_text()
    assert log.count(" running") == 2, log


def test_stop_while_a_restart_waits_starts_nothing(tmp_path: Path) -> None:
    ca = load_or_create_ca(tmp_path)
    slow = BackoffPolicy(initial=60.0, maximum=60.0)  # the wait outlasts the test
    broker = MosquittoBroker(tmp_path / "push", ca, restart_policy=slow)
    broker.start()
    try:
        broker.supervise()
        process = broker.process
        assert process is not None
        process.kill()  # a crash; the restart waits its back-off
        wait_until(lambda: broker.process is None, what="the provider notices")
        broker.stop()
        wait_until(lambda: not _watchers(), what="the watcher gives up")
        assert broker.process is None and broker.restarts == 0
    finally:
        broker.stop()
    # kill() is the provider's own doing: no restart either.
    with mosquitto(tmp_path / "again") as broker:
        broker.supervise()
        broker.kill()
        wait_until(lambda: not _watchers(), what="the watcher ends")
        assert broker.process is None and broker.restarts == 0
