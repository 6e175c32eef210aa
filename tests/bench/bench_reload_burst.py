"""Registrations in a burst: is every new MQTT user live when its batch is settled?

    PYTHONPATH=firmware .venv/bin/python tests/bench/bench_reload_burst.py \
        [--devices 10000] [--threads 6] [--each 8]

Starts the provider's real mosquitto (:class:`MosquittoBroker`) with
``--devices`` users (write-behind on, as in ``ript-provider serve``), then
``--threads`` threads each add ``--each`` users one after another: add, wait
for ``settled()`` (what ``POST {tg}/handlers`` awaits), log in at once as the
new user.  Reports the logins refused, the ``settled`` wait (p50, max) and
the reloads mosquitto logged.  A refused login is the bug of a lost SIGHUP
(docs/push.md): a reload signalled while mosquitto was still reloading.  Run
it against an older tree with ``PYTHONPATH=old/firmware``.  Not collected by
pytest.  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integration.mqtt import device_client, mosquitto


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--each", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory, mosquitto(Path(directory)) as broker:
        registry = broker.registry
        registry.write_behind()
        for i in range(args.devices):
            registry.add_device(f"bulk-{i}", "bench")
        registry.settled().result(120)
        refused: list[str] = []
        waits: list[float] = []

        def worker(t: int) -> None:
            for k in range(args.each):
                started = time.monotonic()
                binding = registry.add_device(f"new-{t}-{k}", "bench")
                registry.settled().result(30)
                waits.append(time.monotonic() - started)
                with device_client(broker, binding) as client:
                    if client.connacks.get(timeout=30).is_failure:
                        refused.append(f"new-{t}-{k}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        reloads = broker.log_file.read_text().count("Reloading config")
    print(
        f"refused {len(refused)} of {len(waits)}; settled p50 {statistics.median(waits):.2f} s, "
        f"max {max(waits):.2f} s; mosquitto logged {reloads} reloads"
    )


if __name__ == "__main__":
    main()
