"""CPU of the phone's media byways alone: its HTTP/3 client and BywaysTransport, no codec.

A far end in a subprocess speaks the byways as the provider does (profile section 7):
each ``PUT .../media`` is answered 200 with a short body (the provider's acks), and
its body goes back on the most recent held ``GET .../media``; the client process runs
the phone's :class:`~riptphone.net.h3.H3Client`, :class:`MediaByways` and
:class:`~riptphone.calls.transport.BywaysTransport` with :data:`GETS` held GETs and
sends an 80-byte body every 20 ms from a loop timer.  Nothing else runs in the client
(no Opus, ALSA, chunk sealing or jitter buffer), so its CPU time is what the byways
cost the phone: the request path, aioquic, asyncio.  The far end offers the QPACK
dynamic table, as the provider does (aioquic's default).

    PYTHONPATH=firmware python tests/bench/bench_byways.py --passes 5 --seconds 10

prints the client's CPU time per 20 ms tick (µs; median of the passes) and in s per
call-minute, and the bodies that came back (all of them, or the run fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))

TICK_S = 0.020
BODY = bytes(range(80))
ACK = b"\x07" * 24


def _far_protocol() -> Any:
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic import events

    from riptprovider.quic_acks import ack_now, delay_acks

    class Far(QuicConnectionProtocol):
        h3: Any = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.held: deque[int] = deque()
            self.methods: dict[int, bytes] = {}
            self.wrote = False

        def datagram_received(self, data: Any, addr: Any) -> None:
            # As the provider: one transmit per loop turn, the ACK riding on the answers.
            self._quic.receive_datagram(data, addr, now=self._loop.time())
            self._process_events()
            self._transmit_soon()

        def transmit(self) -> None:
            if self.wrote:
                self.wrote = False
                ack_now(self._quic, self._loop.time())
            super().transmit()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, events.ProtocolNegotiated):
                self.h3 = H3Connection(self._quic)
            elif isinstance(event, events.HandshakeCompleted):
                delay_acks(self._quic)
            if self.h3 is None:
                return
            for h3_event in self.h3.handle_event(event):
                sid = h3_event.stream_id
                if isinstance(h3_event, HeadersReceived):
                    method = dict(h3_event.headers)[b":method"]
                    if method == b"GET":
                        self.held.append(sid)
                    else:
                        self.methods[sid] = method
                elif isinstance(h3_event, DataReceived) and h3_event.stream_ended:
                    if self.methods.pop(sid, None) != b"PUT":
                        continue
                    self.h3.send_headers(sid, [(b":status", b"200")])
                    self.h3.send_data(sid, ACK, end_stream=True)
                    if self.held:
                        get = self.held.pop()  # the most recent, as the provider
                        self.h3.send_headers(get, [(b":status", b"200")])
                        self.h3.send_data(get, h3_event.data, end_stream=True)
                    self.wrote = True

    return Far


def serve(port_file: Path, cert: Path, key: Path) -> None:
    from aioquic.asyncio import serve as quic_serve
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    far_cls = _far_protocol()

    async def main() -> None:
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        config.load_cert_chain(str(cert), str(key))
        server = await quic_serve("127.0.0.1", 0, configuration=config, create_protocol=far_cls)
        port_file.write_text(str(server._transport.get_extra_info("sockname")[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def one_pass(port: int, ca_file: Path, seconds: float) -> dict[str, float]:
    from riptphone.calls.transport import BywaysTransport
    from riptphone.net.h3 import H3Client
    from riptphone.net.ript_client import MediaByways

    async with H3Client(ca_file=str(ca_file)) as http:
        url = f"https://localhost:{port}/calls/c0ffee/media"
        byways = MediaByways(http, url, {"authorization": "Bearer " + "t" * 40})
        transport = BywaysTransport(byways)
        got: list[int] = [0, 0]

        def deliver(body: bytes) -> None:
            got[0 if body == ACK else 1] += 1

        transport.start(deliver)
        await byways.put(BODY)  # prepares the headers; the GETs connect meanwhile
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.5)  # the first GETs are coroutines: let them all be held
        ticks = round(seconds / TICK_S)
        done = loop.create_future()
        start = loop.time()
        sent = [0]

        def tick() -> None:
            transport.send(BODY)
            sent[0] += 1
            if sent[0] < ticks:
                loop.call_at(start + sent[0] * TICK_S, tick)
            else:
                loop.call_later(0.2, done.set_result, None)

        got[:] = [0, 0]
        before, cpu = os.times(), time.process_time()
        loop.call_at(start, tick)
        await done
        after, cpu = os.times(), time.process_time() - cpu
        user = after.user - before.user  # in clock ticks (10 ms): a rough share
        transport.stop()
        if got[1] < ticks * 0.98 or transport.put_failures or transport.get_failures:
            raise SystemExit(f"bodies lost: {got} of {ticks}, {transport.put_failures} failures")
        return {
            "us_per_tick": cpu / ticks * 1e6,
            "user_us_per_tick": user / ticks * 1e6,
            "s_per_min": cpu / (ticks * TICK_S) * 60,
        }


class _Wire(asyncio.DatagramTransport):
    """A datagram path in memory: what one end sends reaches the other on the next loop turn."""

    def __init__(self, addr: Any) -> None:
        super().__init__()
        self.addr = addr
        self.peer: Any = None  # a protocol, or a callable taking (data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        asyncio.get_running_loop().call_soon(self.peer, data, self.addr)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.addr if name == "sockname" else default

    def close(self) -> None:
        pass


async def loop_pass(ca_file: Path, cert: Path, key: Path, rounds: int) -> dict[str, float]:
    """Back to back, in one process, no socket: the client's CPU per round, the far end's
    (timed around its calls) taken off.  Hot caches: less than a call's, but steady."""
    from aioquic.buffer import Buffer
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
    from aioquic.quic.packet import pull_quic_header

    from riptphone.calls.transport import GETS, BywaysTransport
    from riptphone.net import h3 as h3mod
    from riptphone.net.ript_client import MediaByways

    far_cls = _far_protocol()
    far_cpu = [0.0]
    clock = time.thread_time
    client_addr, far_addr = ("::1", 1111, 0, 0), ("::1", 4433, 0, 0)
    to_client, to_far = _Wire(far_addr), _Wire(client_addr)
    far: list[Any] = []

    def far_in(data: bytes, addr: Any) -> None:
        t = clock()
        if not far:
            config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
            config.load_cert_chain(str(cert), str(key))
            header = pull_quic_header(Buffer(data=data), host_cid_length=8)
            quic = QuicConnection(
                configuration=config, original_destination_connection_id=header.destination_cid
            )
            proto = far_cls(quic)
            proto.connection_made(to_client)
            far.append(proto)
        far[0].datagram_received(data, addr)
        far_cpu[0] += clock() - t

    to_far.peer = far_in

    async with h3mod.H3Client(ca_file=str(ca_file)) as http:
        config = QuicConfiguration(
            is_client=True, alpn_protocols=list(H3_ALPN), max_datagram_frame_size=65536
        )
        config.server_name = "localhost"
        config.load_verify_locations(cafile=str(ca_file))
        proto = h3mod._H3Protocol(QuicConnection(configuration=config), "https://localhost:4433")
        proto.connection_made(to_far)
        to_client.peer = proto.datagram_received
        entry = http._origins.setdefault("https://localhost:4433", h3mod._Origin())
        entry.protocol = proto
        proto.connect(far_addr)
        await proto.wait_connected()
        far_transmit = far[0].transmit

        def timed_transmit() -> None:
            t = clock()
            far_transmit()
            far_cpu[0] += clock() - t

        far[0].transmit = timed_transmit
        byways = MediaByways(http, "https://localhost:4433/calls/c0ffee/media", {})
        transport = BywaysTransport(byways)
        got = [0]
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def deliver(body: bytes) -> None:
            if body != ACK:
                got[0] += 1
                if got[0] < rounds:
                    loop.call_soon(transport.send, BODY)  # the next round: a fresh turn
                elif not done.done():
                    done.set_result(None)

        transport.start(lambda body: None)
        await byways.put(BODY)  # prepares the headers
        while len(far[0].held) < GETS:
            await asyncio.sleep(0.001)
        transport._deliver = deliver
        far_cpu[0] = 0.0
        cpu = clock()
        transport.send(BODY)
        await done
        cpu = clock() - cpu - far_cpu[0]
        transport.stop()
        if transport.put_failures or transport.get_failures:
            raise SystemExit(f"{transport.put_failures} PUTs, {transport.get_failures} GETs failed")
        return {"us_per_round": cpu / rounds * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--loop",
        type=int,
        metavar="ROUNDS",
        help="instead: ROUNDS back to back in one process, no socket (steadier)",
    )
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), Path(args.serve[2]))
        return 0
    from integration.h3_test_server import make_pki

    if args.loop:
        with tempfile.TemporaryDirectory(prefix="bench-byways-") as tmp:
            pki = make_pki(Path(tmp))
            us = [
                round(
                    asyncio.run(loop_pass(pki.ca_file, pki.cert_file, pki.key_file, args.loop))[
                        "us_per_round"
                    ],
                    1,
                )
                for _ in range(args.passes)
            ]
        print(json.dumps({"loop_us_per_round": statistics.median(us), "runs_us": us}))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-byways-") as tmp:
        pki = make_pki(Path(tmp))
        port_file = Path(tmp) / "port"
        far = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                str(port_file),
                str(pki.cert_file),
                str(pki.key_file),
            ]
        )
        try:
            for _ in range(100):
                if port_file.exists() and port_file.read_text():
                    break
                time.sleep(0.05)
            port = int(port_file.read_text())
            runs = [
                asyncio.run(one_pass(port, pki.ca_file, args.seconds)) for _ in range(args.passes)
            ]
        finally:
            far.kill()
            far.wait()
    us = [round(r["us_per_tick"], 1) for r in runs]
    user = [round(r["user_us_per_tick"], 1) for r in runs]
    print(
        json.dumps(
            {
                "us_per_tick": statistics.median(us),
                "s_per_min": round(statistics.median(r["s_per_min"] for r in runs), 3),
                "user_us_per_tick": statistics.median(user),
                "runs_us": us,
                "runs_user_us": user,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
