"""The phone against baresip in one run: CPU per call-minute and peak RSS, case by case.

For each run and each case (transport x codec): one call of the phone (a fresh
provider and phone, the capture a tone at the codec's rate, the far end
echoing), then at once the same length of a baresip call with the peerbench
script for the same codec; so the two see the same load of this shared
machine.  One JSON line per case (:func:`bench.benchlib.case_line`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alsa.fileplugin import write_asoundrc
from bench.benchlib import (
    CODEC_RATE,
    Case,
    PeerRun,
    PhoneRun,
    case_line,
    csv_path,
    mismatches,
    peerbench_runs,
    peerbench_warnings,
)
from bench.harness import (
    bench_provider_toml,
    call_info,
    case_processes,
    dial,
    hang_up,
    proc_status_kb,
)
from integration.procs import PROVIDER_TOML
from riptdev.processes import tone_pcm
from riptphone.control.client import ControlConnection, request

TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_S = 1.0  # past the first second: media sessions and jitter buffer settled


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS  # fields 14 and 15 of proc(5)


def measure_phone(work: Path, case: Case, seconds: float) -> PhoneRun:
    """One call of ``case``: CPU per minute of phone and provider over ``seconds``, VmHWM."""
    notes: list[str] = []
    alsa = write_asoundrc(work / "alsa", tone_pcm(seconds + 15, CODEC_RATE[case.codec]))
    with case_processes(work, bench_provider_toml(PROVIDER_TOML), case, alsa, notes) as (
        provider,
        phone,
    ):
        assert phone.process is not None
        pid, provider_pid = phone.process.pid, provider.process.pid
        with ControlConnection(phone.socket, timeout=20.0) as watch:
            watch.request({"cmd": "watch"})
            dial(phone, watch)
            time.sleep(SETTLE_S)
            start = time.monotonic()
            before, provider_before = cpu_seconds(pid), cpu_seconds(provider_pid)
            time.sleep(seconds)
            phone_cpu = cpu_seconds(pid) - before
            provider_cpu = cpu_seconds(provider_pid) - provider_before
            window = time.monotonic() - start
            peak_kb = proc_status_kb(pid, "VmHWM")
            transport, codec, stats = call_info(request(phone.socket, {"cmd": "status"}))
            hang_up(phone, watch)
    # The phone re-establishes its byways (a new media session) after 1 s with no ack:
    # on a starved machine that happens in a call, and is worth knowing beside its CPU.
    restarts = phone.log_text().count("event=media_started") - 1
    if restarts:
        notes.append(f"media restarted {restarts} time(s) in the call")
    if not stats.get("chunks_received"):
        raise SystemExit(f"bench: no media came back during the {case.name} call ({stats})")
    return PhoneRun(
        phone_cpu_s_per_min=phone_cpu * 60 / window,
        provider_cpu_s_per_min=provider_cpu * 60 / window,
        phone_peak_rss_mb=peak_kb / 1024,
        transport=transport,
        codec=codec,
        notes=notes,
    )


@contextmanager
def own_loopback() -> Iterator[list[str]]:
    """A network namespace of our own for baresip: the command prefix that runs in it.

    peerbench's ports are fixed (SIP 5060/5070, RTP 10000-10019): another
    engineer's baresip on the same machine makes ours fail to bind.  In its own
    namespace (root only) its loopback is its own; without root, no prefix.
    """
    name = f"ript-bench-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False)
    if made.returncode != 0:
        print("bench: no network namespace (not root?): baresip shares loopback", file=sys.stderr)
        yield []
        return
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


class PeerError(Exception):
    """A peerbench run that gave no figures; the message holds its output."""


def measure_baresip(
    peerbench: Path, scratch: Path, codec: str, seconds: float, prefix: list[str]
) -> PeerRun:
    """One rep of ``run_baresip_bench.sh`` for ``codec`` (file source, no player)."""
    env = dict(os.environ)
    env.update(
        PEERBENCH_DIR=str(scratch),
        REPS="1",
        WIN=f"{seconds:g}",
        VARIANTS=f"{codec}:none:aufile",
    )
    done = subprocess.run(
        [*prefix, "bash", str(peerbench / "run_baresip_bench.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=False,
    )
    warnings = peerbench_warnings(done.stdout)
    path = csv_path(done.stdout)
    if done.returncode != 0 or path is None or warnings:
        raise PeerError(f"status {done.returncode}:\n{done.stdout}{done.stderr}")
    runs = peerbench_runs(Path(path).read_text(), codec)
    if len(runs) != 1:
        raise PeerError(f"{len(runs)} reps of {codec}, not 1:\n{done.stdout}")
    return runs[0]


def run_compare(
    work: Path, cases: list[Case], runs: int, seconds: float, peerbench: Path | None
) -> list[dict[str, object]]:
    """Every case ``runs`` times, each phone call followed by its baresip call; the lines."""
    phone: dict[Case, list[PhoneRun]] = {case: [] for case in cases}
    peer: dict[Case, list[PeerRun | None]] = {case: [] for case in cases}
    with own_loopback() as prefix:
        for run in range(1, runs + 1):
            for case in cases:
                got = measure_phone(work / f"r{run}" / case.name, case, seconds)
                for problem in mismatches(case, got.transport, got.codec) + got.notes:
                    print(f"bench: {case.name} run {run}: {problem}", file=sys.stderr)
                phone[case].append(got)
                line = f"run {run} {case.name}: phone {got.phone_cpu_s_per_min:.2f} s/min"
                if peerbench is not None:
                    scratch = work / "peerbench"
                    try:
                        theirs = measure_baresip(peerbench, scratch, case.codec, seconds, prefix)
                    except PeerError as exc:  # one lost comparison, not the whole run
                        print(
                            f"bench: baresip {case.codec} run {run} failed: {exc}", file=sys.stderr
                        )
                        peer[case].append(None)
                    else:
                        peer[case].append(theirs)
                        line += f", baresip {theirs.caller_cpu_s_per_min:.2f} s/min"
                print(line, file=sys.stderr, flush=True)
    lines = [case_line(case, phone[case], peer[case]) for case in cases]
    for line_json in lines:
        print(json.dumps(line_json), flush=True)
    return lines
