"""Unauthenticated QUIC connections against ``ript-provider serve`` (issue #14 row 13).

    .venv/bin/python tests/bench/bench_quic_flood.py [--open 600] [--max-connections 200]

Starts ``ript-provider serve`` (no push) with ``[server] max_connections`` and
``retry_above`` as given, opens ``--open`` QUIC connections that complete
their handshake and never send a request (as an abuser's would), holds them,
and reports the provider's RSS before and after, how many were refused, and
whether a phone (the phone's own H3 client, with a token) is still answered.
Run it against an older tree (``PYTHONPATH=old/firmware``, which has no bound:
the two keys are then left out of the file) to compare.  Not collected by
pytest.  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

from aioquic.asyncio.client import connect
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration

from riptdev.processes import start_provider, stop_process
from riptphone.net.h3 import H3Client

TOKEN = "flood-bench-token-0123456789"
BATCH = 50
CONFIG = """[server]
port = 0
state_dir = "state"
{limits}
[accounts.alice]
numbers = ["+14085551002"]
tokens = ["{token}"]
"""


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def flood(port: int, ca_file: str, count: int, pid: int) -> None:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=list(H3_ALPN), server_name="localhost"
    )
    configuration.load_verify_locations(ca_file)
    url = f"https://localhost:{port}/.well-known/ript/v1/providertgs"
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with H3Client(ca_file=ca_file) as phone:
        assert (await phone.request("GET", url, headers=headers)).status == 200
        before = rss_kb(pid)
        opened = refused = 0
        started = time.monotonic()
        async with AsyncExitStack() as held:

            async def one() -> None:
                nonlocal opened, refused
                try:
                    async with asyncio.timeout(5):
                        await held.enter_async_context(
                            connect("127.0.0.1", port, configuration=configuration)
                        )
                    opened += 1
                except (ConnectionError, TimeoutError):
                    refused += 1

            # In batches, so that the flood is over before the bound's 10 s grace.
            for first in range(0, count, BATCH):
                await asyncio.gather(*(one() for _ in range(min(BATCH, count - first))))
            took = time.monotonic() - started
            await asyncio.sleep(1)
            after = rss_kb(pid)
            t0 = time.monotonic()
            status = (await phone.request("GET", url, headers=headers)).status
            answer_ms = (time.monotonic() - t0) * 1000
            print(
                f"opened {opened}, refused {refused} in {took:.1f} s; provider RSS "
                f"{before / 1024:.1f} -> {after / 1024:.1f} MB "
                f"(+{(after - before) / max(opened, 1):.0f} KB per connection held); "
                f"the phone's next request: {status} in {answer_ms:.0f} ms"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=600)
    parser.add_argument("--max-connections", type=int, default=200)
    parser.add_argument("--retry-above", type=int, default=50)
    parser.add_argument("--no-limits", action="store_true", help="an older tree: no keys")
    args = parser.parse_args()
    limits = (
        ""
        if args.no_limits
        else f"max_connections = {args.max_connections}\nretry_above = {args.retry_above}"
    )
    print(f"# {platform.machine()} python {platform.python_version()} {limits!r}")
    with tempfile.TemporaryDirectory() as tmp:
        provider = start_provider(Path(tmp), CONFIG.format(limits=limits, token=TOKEN))
        try:
            asyncio.run(flood(provider.port, provider.ca_file, args.open, provider.process.pid))
        finally:
            with contextlib.suppress(Exception):
                stop_process(provider.process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
