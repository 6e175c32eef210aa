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


def serve(port_file: Path, cert: Path, key: Path) -> None:
    from aioquic.asyncio import QuicConnectionProtocol
    from aioquic.asyncio import serve as quic_serve
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic import events
    from aioquic.quic.configuration import QuicConfiguration

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

    async def main() -> None:
        config = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        config.load_cert_chain(str(cert), str(key))
        server = await quic_serve("127.0.0.1", 0, configuration=config, create_protocol=Far)
        port_file.write_text(str(server._transport.get_extra_info("sockname")[1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def one_pass(port: int, ca_file: Path, seconds: float) -> dict[str, float]:
    from riptphone.calls.transport import GETS, BywaysTransport
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
        deadline = time.monotonic() + 5
        while len(transport._gets) < GETS and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
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
        before = os.times()
        loop.call_at(start, tick)
        await done
        after = os.times()
        user, system = after.user - before.user, after.system - before.system
        cpu = user + system
        transport.stop()
        if got[1] < ticks * 0.98 or transport.put_failures or transport.get_failures:
            raise SystemExit(f"bodies lost: {got} of {ticks}, {transport.put_failures} failures")
        return {
            "us_per_tick": cpu / ticks * 1e6,
            "user_us_per_tick": user / ticks * 1e6,
            "s_per_min": cpu / (ticks * TICK_S) * 60,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]), Path(args.serve[2]))
        return 0
    from integration.h3_test_server import make_pki

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
