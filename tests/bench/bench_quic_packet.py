"""CPU per QUIC packet, aioquic against qh3, sans-IO in one process (issue #12). Run on demand.

    .venv/bin/python tests/bench/bench_quic_packet.py [--rounds 3000] [--idle-streams 0]

For each library a client and a server ``QuicConnection`` complete a handshake
in memory, then exchange one 160-byte DATAGRAM frame each way per round (the
size of an Opus media datagram); the figure is ``time.process_time`` per packet
(built, encrypted, then parsed and decrypted by the other side), median of 5
passes.  With ``--idle-streams N`` the client first opens N streams that stay
open (a phone with held GETs).  No sockets, no asyncio.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: integration

from integration.h3_test_server import make_pki

ADDR = ("127.0.0.1", 4433)


def pair(lib: str, pki: Any) -> tuple[Any, Any, float]:
    conf = importlib.import_module(f"{lib}.quic.configuration")
    conn = importlib.import_module(f"{lib}.quic.connection")
    client_conf = conf.QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], max_datagram_frame_size=65536
    )
    client_conf.load_verify_locations(cafile=str(pki.ca_file))
    client_conf.server_name = "localhost"
    server_conf = conf.QuicConfiguration(
        is_client=False, alpn_protocols=["h3"], max_datagram_frame_size=65536
    )
    server_conf.load_cert_chain(str(pki.cert_file), str(pki.key_file))
    client = conn.QuicConnection(configuration=client_conf)
    now = 1000.0
    client.connect(ADDR, now=now)
    server = None
    for _ in range(20):
        for data, _addr in client.datagrams_to_send(now=now):
            if server is None:
                server = conn.QuicConnection(
                    configuration=server_conf,
                    original_destination_connection_id=client.original_destination_connection_id,
                )
            server.receive_datagram(data, ADDR, now=now)
        if server is not None:
            for data, _addr in server.datagrams_to_send(now=now):
                client.receive_datagram(data, ADDR, now=now)
        now += 0.001
    drain(client)
    drain(server)
    return client, server, now


def drain(quic: Any) -> None:
    while quic.next_event() is not None:
        pass


def exchange(client: Any, server: Any, now: float, rounds: int) -> tuple[float, float]:
    payload = b"\x00" * 160
    packets = 0
    start = time.process_time()
    for _ in range(rounds):
        client.send_datagram_frame(payload)
        for data, _addr in client.datagrams_to_send(now=now):
            server.receive_datagram(data, ADDR, now=now)
            packets += 1
        server.send_datagram_frame(payload)
        for data, _addr in server.datagrams_to_send(now=now):
            client.receive_datagram(data, ADDR, now=now)
            packets += 1
        drain(client)
        drain(server)
        now += 0.02
    return (time.process_time() - start) / max(packets, 1), now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--idle-streams", type=int, default=0)
    parser.add_argument("--lib", action="append", choices=["aioquic", "qh3"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = make_pki(Path(tmp))
        for lib in args.lib or ["aioquic", "qh3"]:
            if importlib.util.find_spec(lib) is None:
                # qh3 is not a dependency (docs/performance.md): `pip install qh3` to compare.
                print(f"{lib}: not installed, skipped")
                continue
            client, server, now = pair(lib, pki)
            for _ in range(args.idle_streams):
                sid = client.get_next_available_stream_id()
                client.send_stream_data(sid, b"x", end_stream=False)
            figures = []
            for _ in range(5):
                per_packet, now = exchange(client, server, now, args.rounds // 5)
                figures.append(per_packet * 1e6)
            version = importlib.metadata.version(lib)
            print(
                f"{lib} {version}: {statistics.median(figures):.1f} us CPU per packet "
                f"(passes {' / '.join(f'{f:.1f}' for f in figures)}), "
                f"idle streams {args.idle_streams}"
            )


if __name__ == "__main__":
    main()
