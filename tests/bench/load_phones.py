"""The load generator's phones: the phone's own client code, many times in one process.

Run by :mod:`bench.bench_provider_load` as ``python tests/bench/load_phones.py
SETUP_JSON`` (one process per worker); it reads one JSON command per line on
stdin and answers one JSON line on stdout.  Each phone is what the daemon
builds (:mod:`riptphone.net`, :mod:`riptphone.calls`), minus the sound card:

* its own :class:`H3Client` (so its own QUIC connection), :class:`RiptClient`,
  ``discover`` and ``POST {tg}/handlers``;
* a calling phone enrols a certificate (once per account and worker), signs a
  PASSporT, ``POST {tg}/calls`` to the echoing far end, and runs the call with
  the daemon's :class:`CallRunner`, whose media session is the daemon's
  :class:`MediaSession` with only the ALSA devices replaced: a timer task
  hands it a 1 kHz tone frame every ptime on an absolute 20 ms grid (as the
  capture thread would), and the received chunks are stamped instead of
  played.  Encoding, sealing, the transport (WebTransport datagrams or byways),
  acks and opening are the daemon's own code;
* an idle phone registers, closes its HTTP/3 connection (the daemon's idles
  out after 60 s with nothing to do) and keeps its :class:`PushChannel` (paho
  MQTT 5 over TLS, one thread, as in the daemon) to the provider's mosquitto.

Commands: ``calls`` (ramp to ``n`` calls, wait for each to echo), ``measure``
(stamp ``seconds`` of media: lateness of every echoed chunk against its 20 ms
schedule, the round trip, the send lateness, the losses), ``idle`` (register
up to ``n`` idle phones), ``taps`` (forget or report the taps seen), ``stop``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))

from cryptography.hazmat.primitives.asymmetric import ec

import riptphone.calls.runner as runner_module
from ript.media.tones import ToneGenerator, ToneSpec
from ript.protocol.call import Action, Call
from ript.protocol.csr import build_csr, make_key
from ript.protocol.descriptions import HandlerDescription, TrunkGroup
from ript.protocol.passport import create_passport
from ript.protocol.taps import Tap
from riptphone.calls.media import MediaSession
from riptphone.calls.runner import CallRunner
from riptphone.config import AudioConfig
from riptphone.net.h3 import H3Client
from riptphone.net.push import PushChannel, PushStatus
from riptphone.net.ript_client import RiptClient, RiptError, StaticToken

READY_WAIT = 30.0
GRACE_S = 0.5
"""After a measured window, how long a chunk sent in it may still take to come back."""
RAMP_GAP_S = 0.05
"""Between two call set-ups of one worker: a fleet does not dial in the same millisecond."""


class _Stamps:
    """Stands in for the jitter buffer: the first arrival of each chunk timestamp."""

    def __init__(self) -> None:
        self.arrived: dict[int, float] = {}

    def push(
        self, seq: int, timestamp: int, payload: bytes, now: float, *rest: Any, **kw: Any
    ) -> None:
        self.arrived.setdefault(timestamp, now)

    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(late=0, discarded=0)


class GcPauses:
    """The garbage collector's pauses in this process (a stall of the generator's loop)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._start) * 1000)


GC = GcPauses()


class LoadMediaSession(MediaSession):
    """The daemon's media session with a timer for a microphone and stamps for an earpiece."""

    frame: bytes = b""

    def start(self) -> None:
        self._stamps = _Stamps()
        self._jitter = self._stamps  # type: ignore[assignment]
        self.sent: dict[int, tuple[float, float]] = {}  # timestamp -> (due, sent)
        self._transport.start(self._take_body)
        self._spawn(self._ack_loop())
        self._spawn(self._pace())

    async def _pace(self) -> None:
        # An absolute grid from a random phase, as independent phones' capture clocks are.
        loop = asyncio.get_running_loop()
        ptime = self._ptime / 1000
        await asyncio.sleep(random.random() * ptime)
        start = loop.time()
        turn = 0
        frame = LoadMediaSession.frame
        clock = self._clock
        sent = self.sent
        while True:
            due = start + turn * ptime
            timestamp = self._timestamp
            now = clock()
            self._on_mic(frame)
            sent[timestamp] = (due, now)
            turn += 1
            await asyncio.sleep(max(0.0, start + turn * ptime - loop.time()))

    def window(self) -> None:
        self.sent.clear()
        self._stamps.arrived.clear()


@dataclass
class Phone:
    """One phone of the fleet: its HTTP/3 client, handler and (idle) push channel."""

    http: H3Client
    client: RiptClient
    tg: TrunkGroup
    handler: HandlerDescription
    account: dict[str, str]
    runner: CallRunner | None = None
    media: LoadMediaSession | None = None
    task: asyncio.Task[None] | None = None
    push: PushChannel | None = None
    ended: list[str] = field(default_factory=list)


class Worker:
    def __init__(self, setup: dict[str, Any]) -> None:
        self.setup = setup
        self.ca_file = setup["ca_file"]
        self.domain = setup["domain"]
        self.codec = setup["codec"]
        self.calls: list[Phone] = []
        self.idle: list[Phone] = []
        self.keys: dict[str, tuple[ec.EllipticCurvePrivateKey, str]] = {}
        self.taps: list[tuple[str, str, float]] = []  # (account, call uri, time.time())
        self.up: set[str] = set()  # handler ids whose push channel is up now
        self.register_ms: list[float] = []
        self.failures: list[str] = []

    async def new_phone(self, account: dict[str, str]) -> Phone:
        http = H3Client(ca_file=self.ca_file)
        client = RiptClient(http, self.domain, StaticToken(account["token"]))
        tg = await client.discover()
        started = time.perf_counter()
        wanted = HandlerDescription(
            handler_id=str(uuid.uuid4()),
            advertisement=f"1 in: {self.codec};\n1 out: {self.codec};",
            name="load",
        )
        handler = await client.register_handler(tg, wanted)
        self.register_ms.append((time.perf_counter() - started) * 1000)
        return Phone(http, client, tg, handler, account)

    async def enrolled(self, phone: Phone) -> tuple[ec.EllipticCurvePrivateKey, str]:
        name = phone.account["id"]
        if name not in self.keys:
            key = make_key()
            _, uri = await phone.client.enroll(phone.tg, build_csr(key, phone.account["number"]))
            self.keys[name] = (key, uri)
        return self.keys[name]

    async def place(self, account: dict[str, str]) -> Phone:
        phone = await self.new_phone(account)
        key, cert_uri = await self.enrolled(phone)
        dest = self.setup["far_end"]
        passport = create_passport(key, cert_uri, account["number"], dest, int(time.time()))
        assert phone.handler.uri is not None
        description = await phone.client.place_call(
            phone.tg, handler=phone.handler.uri, destination=dest, passport=passport
        )
        call = Call(
            description,
            own_handler=phone.handler.uri,
            media_timeout=phone.tg.media_timeout_ms / 1000,
            retry_backoff=phone.tg.retry_backoff_ms / 1000,
        )

        def report(action: Action) -> None:
            if type(action).__name__ == "CallEnded":
                phone.ended.append(str(getattr(action, "reason", "")))

        def on_media(media: MediaSession) -> None:
            assert isinstance(media, LoadMediaSession)
            phone.media = media

        phone.runner = CallRunner(
            phone.client,
            call,
            report,
            audio=AudioConfig(codecs=[self.codec]),
            on_media=on_media,
        )
        phone.task = asyncio.get_running_loop().create_task(phone.runner.run())
        return phone

    async def echoing(self, phone: Phone) -> None:
        deadline = time.monotonic() + READY_WAIT
        while time.monotonic() < deadline:
            if phone.media is not None and phone.media._stamps.arrived:
                return
            if phone.task is not None and phone.task.done():
                raise RiptError(f"the call ended before its echo: {phone.ended}")
            await asyncio.sleep(0.05)
        raise RiptError(f"no echo within {READY_WAIT:g} s")

    async def ramp_calls(self, n: int) -> dict[str, Any]:
        accounts = self.setup["call_accounts"]
        started = time.perf_counter()
        while len(self.calls) < n:
            i = len(self.calls)
            phone = await self.place(accounts[i % len(accounts)])
            self.calls.append(phone)
            await asyncio.sleep(RAMP_GAP_S)
        await asyncio.gather(*(self.echoing(p) for p in self.calls))
        return {"calls": len(self.calls), "ramp_s": round(time.perf_counter() - started, 2)}

    async def measure(self, seconds: float) -> dict[str, Any]:
        sessions = [p.media for p in self.calls if p.media is not None]
        for media in sessions:
            media.window()
        GC.pauses.clear()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        t1 = time.monotonic()
        pauses = list(GC.pauses)
        await asyncio.sleep(GRACE_S)
        late: list[float] = []
        rtt: list[float] = []
        send_late: list[float] = []
        lost = 0
        for media in sessions:
            arrived = media._stamps.arrived
            for timestamp, (due, sent) in list(media.sent.items()):
                if not t0 <= due < t1:
                    continue
                send_late.append(round((sent - due) * 1000, 2))
                back = arrived.get(timestamp)
                if back is None:
                    lost += 1
                    continue
                late.append(round((back - due) * 1000, 2))
                rtt.append(round((back - sent) * 1000, 2))
        alive = sum(1 for p in self.calls if p.task is not None and not p.task.done())
        return {
            "late_ms": late,
            "rtt_ms": rtt,
            "send_late_ms": send_late,
            "lost": lost,
            "alive": alive,
            "gc_max_ms": round(max(pauses, default=0.0), 2),
            "gc_ms": round(sum(pauses), 2),
            "transports": sorted({m.transport for m in sessions}),
            "codecs": sorted({m.codec for m in sessions}),
        }

    async def hang_up(self) -> dict[str, Any]:
        for phone in self.calls:
            if phone.runner is not None:
                phone.runner.hangup()
        tasks = [p.task for p in self.calls if p.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        for phone in self.calls:
            await phone.http.close()
        n = len(self.calls)
        self.calls.clear()
        return {"hung_up": n}

    async def ramp_idle(self, n: int, parallel: int) -> dict[str, Any]:
        self.register_ms.clear()
        accounts = self.setup["idle_accounts"]
        per = int(self.setup["per_account"])
        first = len(self.idle)
        todo = list(range(first, n))
        started = time.perf_counter()

        async def one(i: int) -> None:
            account = accounts[i // per]
            try:
                phone = await self.new_phone(account)
            except RiptError as exc:
                self.failures.append(str(exc))
                return
            await phone.http.close()  # an idle phone keeps its MQTT session only
            assert phone.handler.push is not None, "the provider gave no push binding"
            name = account["id"]
            phone.push = PushChannel(
                phone.handler.push,
                phone.handler.handler_id,
                phone.tg.uri,
                lambda tap, name=name: self._tap(name, tap),
                on_status=lambda status, hid=phone.handler.handler_id: self._status(hid, status),
                ca_file=self.ca_file,
            )
            phone.push.start()
            self.idle.append(phone)

        queue = list(todo)

        async def lane() -> None:
            while queue:
                await one(queue.pop(0))

        await asyncio.gather(*(lane() for _ in range(parallel)))
        registered = time.perf_counter() - started
        deadline = time.monotonic() + READY_WAIT
        while len(self.up) < len(self.idle) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return {
            "idle": len(self.idle),
            "push_up": len(self.up),
            "register_ms": [round(x, 2) for x in self.register_ms],
            "register_s": round(registered, 2),
            "all_up_s": round(time.perf_counter() - started, 2),
            "failures": self.failures[-5:],
            "failed": len(self.failures),
        }

    def _tap(self, account: str, tap: Tap) -> None:
        self.taps.append((account, tap.call, time.time()))

    def _status(self, handler_id: str, status: PushStatus) -> None:
        if status is PushStatus.UP:
            self.up.add(handler_id)
        else:
            self.up.discard(handler_id)

    async def close(self) -> None:
        await self.hang_up()
        await asyncio.gather(*(p.push.close() for p in self.idle if p.push is not None))


async def serve(setup: dict[str, Any]) -> None:
    rate = 48000 if setup["codec"] == "opus" else 8000
    LoadMediaSession.frame = ToneGenerator(ToneSpec(((1000, -10.0),)), rate, 20).frame()
    runner_module.MediaSession = LoadMediaSession  # type: ignore[misc]
    worker = Worker(setup)
    out = sys.stdout
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        cmd = command["cmd"]
        try:
            if cmd == "calls":
                reply = await worker.ramp_calls(int(command["n"]))
            elif cmd == "measure":
                reply = await worker.measure(float(command["seconds"]))
            elif cmd == "hangup":
                reply = await worker.hang_up()
            elif cmd == "idle":
                reply = await worker.ramp_idle(int(command["n"]), int(command.get("parallel", 4)))
            elif cmd == "taps":
                reply = {"taps": worker.taps}
                if command.get("clear"):
                    worker.taps = []
            elif cmd == "stop":
                await worker.close()
                out.write(json.dumps({"ok": True}) + "\n")
                out.flush()
                return
            else:
                reply = {"error": f"unknown command {cmd!r}"}
        except (RiptError, OSError, ValueError) as exc:
            reply = {"error": f"{cmd}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket per idle phone
    asyncio.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
