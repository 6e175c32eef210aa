"""Handler registration at a provider that already has many push devices (issue #14 row 4).

    .venv/bin/python tests/bench/bench_register.py [--devices 1000 2000] [--samples 20]

For each device count, writes a ``push/devices.json`` holding that many MQTT
users, starts the provider's real mosquitto (:class:`MosquittoBroker`) on it
and a :class:`ProviderCore` with the push service attached, then registers
``--samples`` new handlers (each in an account of its own, so the per-account
limit never applies) and reports, per registration:

* ``blocking``: the time ``core.register_handler`` takes, which the provider's
  event loop spends (and the core lock is held) before it can do anything
  else, media included;
* ``live``: from the call until the new MQTT user is live at the broker
  (mosquitto has re-read its files): when the registration answer goes out.

The same script runs against an older tree (``PYTHONPATH=old/firmware``),
which has no separate "live" step: there the blocking call covers it.
Not collected by pytest.  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ript.protocol.descriptions import HandlerDescription
from riptprovider.accounts import load_accounts
from riptprovider.broker import MosquittoBroker, PushService, TapPublisher
from riptprovider.core import ProviderCore
from riptprovider.tls import load_or_create_ca

ADV = "1 in: PCMU;\n1 out: PCMU;"
ORIGIN = "https://localhost:4433"


def seed_devices(push_dir: Path, count: int) -> None:
    """A devices.json with ``count`` MQTT users, as a provider with that many phones has."""
    push_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    doc = {
        "publisher": {"username": "ript-provider", "password": secrets.token_urlsafe(32)},
        "devices": {
            f"seed-{i}": {"account": f"seed{i % 50}", "password": secrets.token_urlsafe(32)}
            for i in range(count)
        },
    }
    (push_dir / "devices.json").write_text(json.dumps(doc))


def run(devices: int, samples: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        seed_devices(state / "push", devices)
        ca = load_or_create_ca(state)
        broker = MosquittoBroker(state / "push", ca)
        broker.start()
        accounts = load_accounts(
            {f"bench{i}": {"numbers": [f"+1408555{i:04d}"]} for i in range(samples)}
        )
        core = ProviderCore(str(state / "provider.sqlite3"), accounts, ORIGIN, time.time)
        username, password = broker.registry.publisher_credentials
        publisher = TapPublisher(broker.url, username, password, broker.ca_file)
        publisher.start()
        service = PushService(broker.registry, publisher, broker)
        service.attach(core, accounts.values())
        settled = getattr(broker.registry, "settled", None)
        blocking: list[float] = []
        live: list[float] = []
        try:
            for i in range(samples):
                account = accounts[f"bench{i}"]
                start = time.perf_counter()
                described = core.register_handler(
                    account, HandlerDescription(f"bench-{i}-{secrets.token_hex(4)}", ADV)
                )
                blocked = time.perf_counter() - start
                assert described.push is not None, "no push binding"
                if settled is not None:
                    settled().result(timeout=10)
                blocking.append(blocked * 1000)
                live.append((time.perf_counter() - start) * 1000)
                time.sleep(0.05)  # one registration at a time, as a phone fleet trickles in
        finally:
            service.close()
            core.close()
        return blocking, live


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1000, 2000])
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()
    import riptprovider.core as core_module

    print(f"# {platform.machine()} python {platform.python_version()}")
    print(f"# riptprovider from {Path(inspect.getfile(core_module)).parent}")
    print("devices  blocking median/max ms   live median/max ms")
    for count in args.devices:
        blocking, live = run(count, args.samples)
        print(
            f"{count:7d}  {statistics.median(blocking):8.1f} / {max(blocking):7.1f}"
            f"        {statistics.median(live):8.1f} / {max(live):7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
