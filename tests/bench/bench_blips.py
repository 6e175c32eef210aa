"""Network blips mid-call: frames lost per blip length, and the time until audio flows again.

    .venv/bin/python tests/bench/bench_blips.py [--blips 0.5,1,3,5,8,12] [--repeat 3]

Starts ``ript-provider serve`` (with its spawned mosquitto) and one
``ript-phone run`` daemon as subprocesses (tests/integration/scenario.py), with
every UDP packet between them crossing the fault network
(:class:`faultnet.UdpProxy`).  The far end sends a tone without pause (the
provider's ``media = "tone"``), so both directions carry a chunk every 20 ms
(the phone's file-plugin microphone plays a tone too).

Each sample is one call: dial, wait for 2 s of media, blackhole the path (both
directions, every packet dropped) for the blip's length, wait until the call
has settled (every chunk of the phone acked, or given up), hang up.  Then:

* **lost in**: the phone's ``chunks_lost`` (sequence gaps in what reached it);
* **lost out**: the provider's ``lost`` for the call (its ``event=media_ended``
  line): the phone's chunks that never reached it;
* **too late**: received chunks the phone's jitter buffer dropped, as they came
  after their turn to play (the backlog of a blip, re-sent in a burst);
* **back after**: from the end of the blackhole to the earpiece playing received
  audio again (``frames_played`` growing; status polled every 10 ms), which
  holds QUIC's own recovery (its probe timer backs off during the outage), the
  re-establishment of the byways when the phone noticed the fault, and the
  re-sent backlog.

Medians of ``--repeat`` calls per blip length.  Not collected by pytest.
Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: faultnet, integration

from faultnet import UdpProxy
from integration.scenario import LINE_TOML, Line, PhoneProc

TONE = "+14089528888"
BENCH_TOML = LINE_TOML.replace(
    "[push]",
    f'[[accounts.bob.far-end]]\nmatch = "{TONE}"\noutcome = "answer"\nanswer-after = 0.3\n'
    'media = "tone"\n\n[push]',
)
WAIT = 60.0


def stats(status: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = (status.get("call") or {}).get("stats") or {}
    return found


def provider_media(line: Line, uri: str) -> dict[str, int]:
    pattern = re.compile(rf"event=media_ended call={re.escape(uri)} (.*)")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = pattern.findall(line.provider.log.read_text(errors="replace"))
        if found:
            return {k: int(v) for k, v in (kv.split("=") for kv in found[-1].split())}
        time.sleep(0.1)
    raise RuntimeError(f"the provider logged no media_ended for {uri}")


def one_blip(line: Line, phone: PhoneProc, net: UdpProxy, seconds: float) -> dict[str, float]:
    phone.hook("off")
    phone.dial(TONE)
    phone.wait_state("in-call", WAIT)
    status = phone.wait_status(lambda s: stats(s).get("frames_played", 0) > 100, "media", WAIT)
    uri = status["call"]["uri"]
    net.blackhole(seconds)
    ends = time.monotonic() + seconds
    time.sleep(max(0.0, ends - time.monotonic() - 0.2))
    played = stats(phone.status())["frames_played"]
    while time.monotonic() < ends:
        time.sleep(0.002)
    ended = time.monotonic()
    played = stats(phone.status())["frames_played"]
    back = None
    while back is None:
        current = stats(phone.status())
        if current["frames_played"] > played:
            back = time.monotonic() - ended
        elif time.monotonic() - ended > WAIT:
            raise RuntimeError(f"no audio {WAIT:g} s after a {seconds:g} s blip")
        else:
            time.sleep(0.01)
    settled = stats(
        phone.wait_status(
            lambda s: (
                stats(s)["frames_played"] > played + 100
                and stats(s)["chunks_unacked"] <= stats(s)["chunks_given_up"]
            ),
            "settled",
            WAIT,
        )
    )
    phone.hook("on")
    phone.wait_state("idle", WAIT)
    provider = provider_media(line, uri)
    return {
        "lost_in": settled["chunks_lost"],
        "lost_out": provider["lost"],
        "too_late": settled["frames_too_late"],
        "resent": settled["chunks_resent"] + provider["resent"],
        "back_s": back,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blips", default="0.5,1,3,5,8,12", help="seconds, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="calls per blip length")
    args = parser.parse_args(argv)
    blips = [float(b) for b in args.blips.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-blips-"))
    rows: list[tuple[float, dict[str, float]]] = []
    try:
        with UdpProxy(("127.0.0.1", 9), seed=5) as net:
            line = Line(work, BENCH_TOML, net=net)
            try:
                phone = line.phone("Desk")
                for seconds in blips:
                    samples = [one_blip(line, phone, net, seconds) for _ in range(args.repeat)]
                    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
                    rows.append((seconds, median))
                    each = ", ".join(
                        f"{s['lost_in']:g}/{s['lost_out']:g}/{s['back_s']:.2f}" for s in samples
                    )
                    print(
                        f"blip {seconds:>4g} s: lost in {median['lost_in']:g}, "
                        f"lost out {median['lost_out']:g}, too late {median['too_late']:g}, "
                        f"re-sent {median['resent']:g}, audio back after "
                        f"{median['back_s'] * 1000:.0f} ms  (in/out/back: {each})",
                        flush=True,
                    )
            finally:
                line.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{platform.machine()}, Python {platform.python_version()}, medians of {args.repeat}")
    print(
        "| blip | frames lost in (phone) | frames lost out (provider) | too late to play "
        "| re-sent (both) | audio back after |"
    )
    print("|---|---|---|---|---|---|")
    for seconds, m in rows:
        print(
            f"| {seconds:g} s | {m['lost_in']:g} | {m['lost_out']:g} | {m['too_late']:g} | "
            f"{m['resent']:g} | {m['back_s'] * 1000:.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
