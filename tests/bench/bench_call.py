"""Call benchmark on loopback: set-up time and the phone daemon's CPU. Run on demand.

    .venv/bin/python tests/bench/bench_call.py [--runs 3] [--calls 20] [--seconds 30]

    # the phone against baresip in the same run, one JSON line per case:
    .venv/bin/python tests/bench/bench_call.py --peer baresip \
        [--transport webtransport|byways]... [--codec opus|pcmu]... [--runs 3] [--seconds 30]
    # audio quality (PESQ) of speech through the echo far end under loss:
    .venv/bin/python tests/bench/bench_call.py --pesq [--loss 0 --loss 3 --loss 10] [--no-cpu]

Without ``--transport``, ``--codec``, ``--peer`` or ``--pesq`` it measures what
follows; with any of them it runs the cases of tests/bench/compare.py and
tests/bench/quality.py instead (docs/performance.md says more).

Starts ``ript-provider serve`` and ``ript-phone run`` as subprocesses (the same
way as the end-to-end tests, tests/integration/procs.py), the phone's audio
through alsa-lib's file plugin (a 1 kHz tone in, a file out), and calls a far
end that answers at once and echoes the media.

* Set-up: ``--calls`` calls per run; each is timed from sending ``dial`` on the
  control socket to the ``in-call`` state line on an open ``watch`` connection,
  then hung up.  The reference provider's far end alerts 0.2 s after the call
  is placed (riptprovider.core.ALERT_AFTER) and answers then, so 0.2 s of every
  figure is the simulated far end, not the phone or the network.
* CPU: the daemon's utime + stime (/proc/PID/stat, all threads) over
  ``--seconds`` of an answered call with audio both ways, and over as long idle
  (registered, no call); given as CPU seconds per minute.  The provider's CPU
  during the same call is shown for comparison (it echoes every chunk).

Each figure is printed per run and as the median of the runs.  Not collected by
pytest (the file name does not start with ``test_``).  Results go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: alsa, integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))  # riptdev: not installed

from alsa.fileplugin import write_asoundrc
from bench.benchlib import parse_options
from bench.harness import bench_provider_toml, hang_up
from bench.harness import dial as answered_call
from integration.procs import PROVIDER_TOML, PhoneProcess, provider_process
from riptdev.processes import stop_process, tone_pcm
from riptphone.control.client import ControlConnection, request

BENCH_PROVIDER_TOML = bench_provider_toml(PROVIDER_TOML)
WAIT = 20.0
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def nearest_rank(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def setup_run(phone: PhoneProcess, calls: int) -> list[float]:
    times = []
    with ControlConnection(phone.socket, timeout=WAIT) as watch:
        watch.request({"cmd": "watch"})
        for _ in range(calls):
            times.append(answered_call(phone, watch))
            hang_up(phone, watch)
            time.sleep(0.2)  # let the provider finish the last call's teardown
    return times


def cpu_run(phone: PhoneProcess, provider_pid: int, seconds: float) -> tuple[float, float, float]:
    """CPU s per minute: the phone in a call, the phone idle, the provider in the call."""
    assert phone.process is not None
    pid = phone.process.pid
    with ControlConnection(phone.socket, timeout=WAIT) as watch:
        watch.request({"cmd": "watch"})
        answered_call(phone, watch)
        time.sleep(1.0)  # past the first second: media sessions and jitter buffer settled
        before, provider_before = cpu_seconds(pid), cpu_seconds(provider_pid)
        time.sleep(seconds)
        in_call = cpu_seconds(pid) - before
        provider = cpu_seconds(provider_pid) - provider_before
        status = request(phone.socket, {"cmd": "status"})
        hang_up(phone, watch)
    stats = (status.get("call") or {}).get("stats") or {}
    if not stats.get("chunks_received"):
        raise SystemExit(f"bench: no media came back during the call ({stats})")
    time.sleep(1.0)
    before = cpu_seconds(pid)
    time.sleep(seconds)
    idle = cpu_seconds(pid) - before
    return in_call * 60 / seconds, idle * 60 / seconds, provider * 60 / seconds


def ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


PEERBENCH = Path(__file__).resolve().parents[3] / "shared" / "peerbench"
"""``../shared/peerbench`` beside the checkout: baresip's side of the comparison."""


def compare(args: argparse.Namespace) -> int:
    """The comparison and quality cases (imported here: they need numpy and pesq)."""
    from bench import harness
    from bench.compare import run_compare
    from bench.quality import run_quality

    harness.PHONE_AUDIO[:] = args.phone_audio
    work = Path(tempfile.mkdtemp(prefix="ript-bench-"))
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs"
        + (f"; phone [audio] {', '.join(args.phone_audio)}" if args.phone_audio else ""),
        flush=True,
    )
    peerbench = None
    if "baresip" in args.peers:
        peerbench = Path(args.peerbench) if args.peerbench else PEERBENCH
        if not (peerbench / "run_baresip_bench.sh").exists():
            raise SystemExit(f"bench: no run_baresip_bench.sh in {peerbench}")
    try:
        if not (args.pesq and args.no_cpu):
            run_compare(work, args.cases, args.runs, args.seconds, peerbench)
        if args.pesq:
            run_quality(work, args.cases, args.losses, args.jitter_ms, args.runs, peerbench)
    finally:
        print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    shutil.rmtree(work)
    return 0


def main() -> int:
    args = parse_options()
    if args.compare:
        return compare(args)
    work = Path(tempfile.mkdtemp(prefix="ript-bench-"))
    provider = provider_process(work / "provider", BENCH_PROVIDER_TOML)
    longest = args.seconds + 10
    alsa = write_asoundrc(work / "alsa", tone_pcm(longest))
    phone = PhoneProcess(work / "phone", provider, alsa=alsa)
    try:
        phone.start()
        print(
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}; {args.runs} runs"
        )
        print(f"\ndial → in-call, {args.calls} calls per run")
        print(f"{'run':<8}{'median':>10}{'p90':>10}{'min':>10}{'max':>10}")
        medians, p90s, mins, maxs = [], [], [], []
        for run in range(1, args.runs + 1):
            times = setup_run(phone, args.calls)
            medians.append(statistics.median(times))
            p90s.append(nearest_rank(times, 0.9))
            mins.append(min(times))
            maxs.append(max(times))
            print(
                f"{run:<8}{ms(medians[-1]):>10}{ms(p90s[-1]):>10}"
                f"{ms(mins[-1]):>10}{ms(maxs[-1]):>10}",
                flush=True,
            )
        print(
            f"{'median':<8}{ms(statistics.median(medians)):>10}"
            f"{ms(statistics.median(p90s)):>10}{ms(statistics.median(mins)):>10}"
            f"{ms(statistics.median(maxs)):>10}"
        )
        print(f"\nphone daemon CPU, {args.seconds:g} s samples (CPU seconds per minute)")
        print(f"{'run':<8}{'in a call':>12}{'idle':>10}{'provider, in the call':>24}")
        in_calls, idles, providers = [], [], []
        for run in range(1, args.runs + 1):
            in_call, idle, by_provider = cpu_run(phone, provider.process.pid, args.seconds)
            in_calls.append(in_call)
            idles.append(idle)
            providers.append(by_provider)
            print(f"{run:<8}{in_call:>12.2f}{idle:>10.3f}{by_provider:>24.2f}", flush=True)
        print(
            f"{'median':<8}{statistics.median(in_calls):>12.2f}"
            f"{statistics.median(idles):>10.3f}{statistics.median(providers):>24.2f}"
        )
    finally:
        phone.stop()
        stop_process(provider.process)
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
