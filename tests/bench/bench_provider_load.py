"""Load on the provider (issue #14 item 5): concurrent calls with media, and idle phones.

    .venv/bin/python tests/bench/bench_provider_load.py --nice -10
        [--transport webtransport|byways]... [--codec pcmu|opus] [--steps 1,2,4,8,...]
        [--hold 8] [--windows 3] [--workers 2] [--idle 250,500,1000] [--per-account 50]
        [--no-calls] [--no-idle] [--profile] [--gc-probe] [--provider-nice -19] [--json F]

Starts one real ``ript-provider serve`` (with its spawned mosquitto) and
``--workers`` load-generator processes (:mod:`bench.load_phones`: the phone's
own H3 client, RIPT client, call runner, media session and transports, and
paho push channel; only the sound card is replaced).  Two phases:

* **Calls** (once per transport; the provider's ``[server] webtransport``
  forces byways when false): ramp to K concurrent calls to the provider's
  echoing far end, each phone on its own QUIC connection, a 1 kHz tone sent
  as one chunk every 20 ms; then measure ``--hold`` seconds.  For every chunk
  due in the window the generator notes when it was due (its place on the
  call's 20 ms grid), when it was sent, and when its echo came back.
  *Lateness* = echo arrival - due time.  **Media deadlines slip** at K when
  the p99 lateness exceeds ``--late-ms`` (20 ms: one frame; a jitter buffer
  sized for the unloaded path would play it late or conceal it) or more than
  ``--loss-pct`` (1 %) of the chunks never come back (within 0.5 s), or a
  call ends.  Each step is measured in ``--windows`` windows and judged on
  the medians (one stall of the whole machine does not make it slip).  The
  ramp stops after two slipping steps.
* **Idle phones**: ramp to N registered phones, each having registered over
  its own QUIC connection (then closed) and holding its MQTT 5 session (TLS)
  to the provider's broker; at each N, with one *canary* call running, the
  provider's and mosquitto's RSS and CPU over ``--hold`` s, the canary's
  lateness, the ``POST /handlers`` times of the batch, and three tap probes
  (an inbound call injected on the admin socket into one account of
  ``--per-account`` idle phones: from the admin reply to each tap's arrival
  at the phones).  A step slips when the canary slips, a tap is missing
  after 3 s or the tap p99 exceeds 1 s, a registration fails or its p99
  reaches 3 s (the provider's ``PUSH_LIVE_WAIT``), or a push channel is not
  up within 30 s.

The generator must not be the bottleneck: each worker's CPU (``/proc``) and
the *send lateness* (sent - due; the generator's own timer) are printed at
every step; a worker above 80 % of a core or a send lateness p99 above 5 ms
is flagged ``GEN``; the workers' garbage-collector pauses are in the JSON.
With ``--profile`` py-spy samples the provider (100 Hz, ``--hold`` s, while
the calls go on) at the first slipping step and where its event loop spends
its time is printed; ``--gc-probe`` notes the provider's garbage-collector
pauses (:mod:`gc_probe.sitecustomize` on its path, the firmware unchanged).
``--nice`` renices the bench's processes and their session's autogroup, so
the neighbours on a shared machine do not set the figure; ``--provider-nice``
then puts the provider ahead of the workers.  Not collected by pytest (about
12 s at the least: too long for the suite); figures go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))

from riptdev.processes import ProviderProcess, start_provider, stop_process
from riptprovider.admin import request_admin

FAR_END = "+14089520000"
CALLER = "+14085550100"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
LOAD_PHONES = Path(__file__).resolve().parent / "load_phones.py"
GEN_CPU_LIMIT = 0.8
GEN_SEND_LATE_MS = 5.0
TAP_WAIT_S = 3.0
TAP_P99_LIMIT_MS = 1000.0


class Tuning:
    nice = 0
    """``--nice``: the priority the provider, mosquitto and the workers are given (all threads)."""
    provider_nice = 0
    """``--provider-nice``: then the provider's threads alone (ahead of the workers)."""


REGISTER_P99_LIMIT_MS = 3000.0
"""The provider answers a registration once the broker took the new user, or after
PUSH_LIVE_WAIT (3 s) anyway: a p99 at that bound means phones get credentials the broker
does not know yet."""


def account_toml(name: str, index: int, *, far_end: bool) -> str:
    text = f"""
[accounts.{name}]
numbers = ["+1408600{index:04d}"]
destinations = "+1408*"
tokens = ["load-token-{name}-0123456789"]
inbound-ring-timeout = 60
"""
    if far_end:
        text += f"""
[[accounts.{name}.far-end]]
match = "{FAR_END}"
outcome = "answer"
answer-after = 0.0
media = "echo"
"""
    return text


def provider_toml(webtransport: bool, call_accounts: int, idle_accounts: int) -> str:
    text = f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "provider-state"
webtransport = {"true" if webtransport else "false"}
max_handlers_per_account = 10000
"""
    for i in range(call_accounts):
        text += account_toml(f"c{i}", i, far_end=True)
    for i in range(idle_accounts):
        text += account_toml(f"i{i}", 1000 + i, far_end=False)
    if idle_accounts:
        text += '\n[push]\nbroker = "spawn"\n'
    return text


def account_entry(name: str, index: int) -> dict[str, str]:
    return {
        "id": name,
        "number": f"+1408600{index:04d}",
        "token": f"load-token-{name}-0123456789",
    }


# ---------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KB / 1024


def renice(pids: list[int | None], nice: int) -> None:
    """Every thread of these processes to ``nice`` (nice is per thread on Linux).

    With autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``) nice
    only ranks threads within their session's group, and each session gets an
    equal share: the group's own nice (``/proc/PID/autogroup``) is set too.
    """
    if not nice:
        return
    for pid in pids:
        if pid is None:
            continue
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(task), nice)


def pct(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------- workers


class Worker:
    """One load_phones.py process: one JSON command per line, one JSON answer per line."""

    def __init__(self, index: int, setup: dict[str, Any], work: Path) -> None:
        self.index = index
        self.log = work / f"worker-{index}.log"
        with self.log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(LOAD_PHONES), json.dumps(setup)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"bench: worker {self.index} exited:\n{tail}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"bench: worker {self.index}: {reply['error']}")
        return reply

    def stop(self) -> None:
        try:
            self.send({"cmd": "stop"})
            self.process.wait(30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.process.kill()
            self.process.wait()


def ask_all(workers: list[Worker], commands: list[dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Each command to its worker at once (None: nothing for that one); the answers."""
    for worker, command in zip(workers, commands, strict=True):
        if command is not None:
            worker.send(command)
    return [w.receive() if c is not None else {} for w, c in zip(workers, commands, strict=True)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# ---------------------------------------------------------------- a measured window


@dataclass
class Window:
    late: list[float]
    rtt: list[float]
    send_late: list[float]
    lost: int
    alive: int
    transports: list[str]
    provider_cpu: float
    broker_cpu: float | None
    worker_cpu: list[float]
    gc_max_ms: float = 0.0
    """The generator's longest garbage-collector pause in the window (any worker)."""

    @property
    def loss_pct(self) -> float:
        sent = len(self.late) + self.lost
        return 100.0 * self.lost / sent if sent else 0.0

    def slipped(self, late_ms: float, loss_pct: float, calls: int) -> list[str]:
        why = []
        p99 = pct(self.late, 0.99)
        if p99 is not None and p99 > late_ms:
            why.append(f"p99 lateness {p99:.1f} ms > {late_ms:g}")
        if self.loss_pct > loss_pct:
            why.append(f"loss {self.loss_pct:.2f} % > {loss_pct:g}")
        if self.alive < calls:
            why.append(f"{calls - self.alive} calls ended")
        return why

    def generator_flags(self) -> list[str]:
        flags = [
            f"worker {i} at {c:.0%}" for i, c in enumerate(self.worker_cpu) if c > GEN_CPU_LIMIT
        ]
        p99 = pct(self.send_late, 0.99)
        if p99 is not None and p99 > GEN_SEND_LATE_MS:
            flags.append(f"send lateness p99 {p99:.1f} ms")
        return flags


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def step_row(windows: list[Window], late_ms: float, loss_pct: float, calls: int) -> dict[str, Any]:
    """One step's figures: the median over its windows of each window's figure.

    The verdict is on the medians (and on any call that ended): a stall of the
    whole machine in one window (the generator's own timer late as well) does
    not make the step slip; one that recurs does.
    """
    p99 = _median([pct(w.late, 0.99) for w in windows])
    loss = _median([w.loss_pct for w in windows]) or 0.0
    send99 = _median([pct(w.send_late, 0.99) for w in windows])
    workers = [
        _median([w.worker_cpu[i] for w in windows]) or 0.0
        for i in range(len(windows[0].worker_cpu))
    ]
    why = []
    if p99 is not None and p99 > late_ms:
        why.append(f"p99 lateness {p99:.1f} ms > {late_ms:g}")
    if loss > loss_pct:
        why.append(f"loss {loss:.2f} % > {loss_pct:g}")
    alive = min(w.alive for w in windows)
    if alive < calls:
        why.append(f"{calls - alive} calls ended")
    flags = [f"worker {i} at {c:.0%}" for i, c in enumerate(workers) if c > GEN_CPU_LIMIT]
    slipped = sum(1 for w in windows if w.slipped(late_ms, loss_pct, calls))
    if send99 is not None and send99 > GEN_SEND_LATE_MS:
        flags.append(f"send lateness p99 {send99:.1f} ms")
    return {
        "late_p50_ms": _median([pct(w.late, 0.5) for w in windows]),
        "late_p99_ms": p99,
        "late_max_ms": _median([max(w.late, default=None) for w in windows]),
        "rtt_p50_ms": _median([pct(w.rtt, 0.5) for w in windows]),
        "rtt_p99_ms": _median([pct(w.rtt, 0.99) for w in windows]),
        "loss_pct": round(loss, 3),
        "provider_cpu": round(_median([w.provider_cpu for w in windows]) or 0.0, 3),
        "worker_cpu": [round(c, 3) for c in workers],
        "send_late_p99_ms": send99,
        "windows_slipped": f"{slipped}/{len(windows)}",
        "windows_p99_ms": [pct(w.late, 0.99) for w in windows],
        "generator_gc_max_ms": max(w.gc_max_ms for w in windows),
        "transports": sorted({t for w in windows for t in w.transports}),
        "slip": why,
        "generator": flags,
    }


def measure(
    workers: list[Worker],
    active: list[bool],
    seconds: float,
    provider_pid: int,
    broker_pid: int | None,
) -> Window:
    pids = [w.pid for w in workers]
    renice([provider_pid, broker_pid, *pids], Tuning.nice)
    renice([provider_pid], Tuning.provider_nice)
    before = [cpu_seconds(p) for p in pids]
    p0 = cpu_seconds(provider_pid)
    b0 = cpu_seconds(broker_pid) if broker_pid else 0.0
    t0 = time.monotonic()
    for worker, on in zip(workers, active, strict=True):
        if on:
            worker.send({"cmd": "measure", "seconds": seconds})
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    provider = (cpu_seconds(provider_pid) - p0) / elapsed
    broker = (cpu_seconds(broker_pid) - b0) / elapsed if broker_pid else None
    spent = [(cpu_seconds(p) - b) / elapsed for p, b in zip(pids, before, strict=True)]
    replies = [w.receive() for w, on in zip(workers, active, strict=True) if on]
    return Window(
        late=[x for r in replies for x in r["late_ms"]],
        rtt=[x for r in replies for x in r["rtt_ms"]],
        send_late=[x for r in replies for x in r["send_late_ms"]],
        lost=sum(r["lost"] for r in replies),
        alive=sum(r["alive"] for r in replies),
        transports=sorted({t for r in replies for t in r["transports"]}),
        provider_cpu=provider,
        broker_cpu=broker,
        worker_cpu=spent,
        gc_max_ms=max((r["gc_max_ms"] for r in replies), default=0.0),
    )


def profile(pid: int, seconds: float, out: Path) -> str:
    """py-spy on the provider: the top frames by own samples and by samples under them."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    done = subprocess.run(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds)),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
            "--idle",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not out.exists():
        return f"py-spy failed: {done.stderr.strip()[-500:]}"
    return summarize_profile(out.read_text(), str(out))


def summarize_profile(raw: str, where: str) -> str:
    """py-spy's raw (collapsed) stacks: where the event loop's thread spends its time.

    Only the loop's thread (stacks through ``_run_once``) is counted: the
    provider's other threads sleep.  Sampled with ``--idle``, so time waiting in
    ``select`` is idle, and time ready to run but without a CPU counts where
    the thread stands.
    """
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or "_run_once" not in stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf = _short(frames[-1])
        if leaf.startswith(("EpollSelector.select", "select ")):
            idle += n
            continue
        own[leaf] += n
        for name in {_short(f) for f in frames}:
            under[name] += n
    if not total:
        return f"py-spy: no sample of the event loop in {where}"
    busy = total - idle
    lines = [
        f"py-spy: {total} samples of the provider's event loop ({where}): "
        f"{100 * idle / total:.0f} % idle in select, {100 * busy / total:.0f} % busy",
        "  own time (% of busy):",
    ]
    lines += [f"    {100 * n / busy:5.1f} %  {name}" for name, n in own.most_common(15)]
    lines.append("  under (inclusive, % of busy):")
    lines += [
        f"    {100 * n / busy:5.1f} %  {name}"
        for name, n in under.most_common(40)
        if n < 0.95 * busy  # not the frames every stack goes through
    ][:25]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
    return f"{name} ({module})"


# ---------------------------------------------------------------- phases


def start(
    work: Path,
    args: argparse.Namespace,
    webtransport: bool,
    idle_accounts: int,
    count: int | None = None,
) -> tuple[ProviderProcess, list[Worker], int | None]:
    work.mkdir(parents=True, exist_ok=True)
    if args.gc_probe:
        # The probe's sitecustomize first on the provider's path (start_provider passes
        # this process's environment on); the workers are started below without it.
        probe = Path(__file__).resolve().parent / "gc_probe"
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(probe), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        os.environ["RIPT_GC_PROBE"] = str(work / "provider-gc.txt")
    call_accounts = max(1, math.ceil(max(args.steps) / args.per_account))
    saved = dict(os.environ)
    try:
        provider = start_provider(
            work,
            provider_toml(webtransport, call_accounts, idle_accounts),
            log_level=args.log_level,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved if not args.gc_probe else _without_probe(saved))
    broker_pid = None
    pid_file = provider.config.parent / "provider-state" / "push" / "mosquitto.pid"
    if idle_accounts:
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker_pid = int(pid_file.read_text())
    calls = [account_entry(f"c{i}", i) for i in range(call_accounts)]
    idle = [account_entry(f"i{i}", 1000 + i) for i in range(idle_accounts)]
    workers = []
    count = count or args.workers
    for w in range(count):
        setup = {
            "ca_file": provider.ca_file,
            "domain": provider.domain,
            "codec": "PCMU" if args.codec == "pcmu" else "opus",
            "far_end": FAR_END,
            "call_accounts": calls[w::count] or calls,
            "idle_accounts": idle[w::count],
            "per_account": args.per_account,
        }
        workers.append(Worker(w, setup, work))
    renice([provider.process.pid, broker_pid, *(w.pid for w in workers)], Tuning.nice)
    renice([provider.process.pid], Tuning.provider_nice)
    return provider, workers, broker_pid


def _without_probe(env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    env.pop("RIPT_GC_PROBE", None)
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and "gc_probe" not in p]
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        env.pop("PYTHONPATH", None)
    return env


def provider_gc(work: Path, since: float, until: float) -> tuple[float, float]:
    """The provider's GC pauses (``--gc-probe``) between two ``time.time()``: max and sum, ms."""
    path = work / "provider-gc.txt"
    if not path.exists():
        return 0.0, 0.0
    pauses = []
    for line in path.read_text().splitlines():
        end, pause, _ = line.split()
        if since <= float(end) <= until:
            pauses.append(float(pause))
    return max(pauses, default=0.0), sum(pauses)


def stop_all(provider: ProviderProcess, workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()
    stop_process(provider.process)


def call_phase(work: Path, args: argparse.Namespace, transport: str) -> dict[str, Any]:
    provider, workers, _ = start(work, args, transport == "webtransport", 0)
    pid = provider.process.pid
    print(
        f"\n## calls over {transport}, {args.codec}, {args.workers} workers, "
        f"{args.windows} windows of {args.hold:g} s per step"
    )
    print(
        f"{'calls':>5} {'late p50':>9} {'p99':>7} {'max':>7} {'rtt p50':>8} {'p99':>7} "
        f"{'loss %':>7} {'prov CPU':>9} {'gen CPU':>12} {'send p99':>9} {'slip':>5}  verdict"
    )
    rows = []
    slips = 0
    knee: int | None = None
    last_good: int | None = None
    profiled = None
    try:
        for k in args.steps:
            n = split(k, args.workers)
            ask_all(workers, [{"cmd": "calls", "n": x} if x else None for x in n])
            time.sleep(1.0)  # set-up traffic over
            since = time.time()
            windows = [
                measure(workers, [x > 0 for x in n], args.hold, pid, None)
                for _ in range(args.windows)
            ]
            row = step_row(windows, args.late_ms, args.loss_pct, k)
            row["calls"] = k
            if args.gc_probe:
                gc_max, gc_sum = provider_gc(work, since, time.time())
                row["provider_gc_max_ms"], row["provider_gc_total_ms"] = gc_max, round(gc_sum, 1)
            why, flags = row["slip"], row["generator"]
            if row["transports"] != [transport]:
                flags.append(f"transports {row['transports']}")
            verdict = ("SLIP: " + "; ".join(why)) if why else "ok"
            if flags:
                verdict += "  GEN: " + "; ".join(flags)
            print(
                f"{k:>5} {fmt(row['late_p50_ms']):>9} {fmt(row['late_p99_ms']):>7} "
                f"{fmt(row['late_max_ms']):>7} {fmt(row['rtt_p50_ms']):>8} "
                f"{fmt(row['rtt_p99_ms']):>7} {row['loss_pct']:>7.2f} "
                f"{row['provider_cpu']:>8.0%} "
                f"{'/'.join(f'{c:.0%}' for c in row['worker_cpu']):>12} "
                f"{fmt(row['send_late_p99_ms']):>9} {row['windows_slipped']:>5}  {verdict}"
                + (
                    f"  [provider GC max {row['provider_gc_max_ms']:.1f} ms, "
                    f"{row['provider_gc_total_ms']:.0f} ms in all; "
                    f"generator GC max {row['generator_gc_max_ms']:.1f} ms]"
                    if args.gc_probe
                    else ""
                ),
                flush=True,
            )
            rows.append(row)
            if why:
                slips += 1
                if knee is None:
                    knee = k
                    if args.profile:
                        profiled = profile(pid, args.hold, work / f"py-spy-{transport}-{k}.txt")
                        print(profiled, flush=True)
                if slips >= 2:
                    break
            else:
                slips = 0
                last_good = k
                knee = None
        ask_all(workers, [{"cmd": "hangup"}] * len(workers))
    finally:
        stop_all(provider, workers)
    print(f"# {transport}: last step without slip {last_good}, first slipping step {knee}")
    return {
        "phase": "calls",
        "transport": transport,
        "codec": args.codec,
        "rows": rows,
        "max_calls": last_good,
        "knee": knee,
        "profile": profiled,
    }


def tap_probe(
    provider: ProviderProcess, workers: list[Worker], account: str, expected: int
) -> tuple[list[float], int]:
    """One inbound call into ``account``: each tap's delay (ms) from the admin reply; missing."""
    admin = provider.config.parent / "provider-state" / "admin.sock"
    ask_all(workers, [{"cmd": "taps", "clear": True}] * len(workers))
    reply = request_admin(admin, {"cmd": "inbound", "account": account, "from": CALLER})
    at = time.time()
    if not reply.get("ok"):
        raise SystemExit(f"bench: admin inbound refused: {reply}")
    uri = reply["call"]["uri"]
    deadline = at + TAP_WAIT_S
    while True:
        replies = ask_all(workers, [{"cmd": "taps"}] * len(workers))
        taps = [t for r in replies for t in r["taps"] if t[0] == account and t[1] == uri]
        if len(taps) >= expected or time.time() > deadline:
            break
        time.sleep(0.05)
    request_admin(admin, {"cmd": "hangup", "call": uri})
    delays = sorted((t[2] - at) * 1000 for t in taps)
    return delays[:expected], max(0, expected - len(delays))


PHONES_PER_WORKER = 300
"""Idle phones one worker process holds: paho's loop ``select()``s, which cannot take a
descriptor past 1,023, and each paho client holds three (its socket, a socket pair to
wake its loop), so a worker fails past about 337 (docs/performance.md)."""


def idle_workers(phones: int, workers: int) -> int:
    """Worker processes for ``phones`` idle phones: ``--workers``, or more if need be."""
    return max(workers, math.ceil(phones / PHONES_PER_WORKER))


def idle_phase(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    top = max(args.idle)
    count = idle_workers(top, args.workers)
    idle_accounts = math.ceil(top / args.per_account) + count
    provider, workers, broker_pid = start(work, args, True, idle_accounts, count)
    pid = provider.process.pid
    assert broker_pid is not None
    print(
        f"\n## idle phones, {args.per_account} per account, {count} workers, "
        f"{args.hold:g} s windows, one canary call ({args.codec}, webtransport)"
    )
    print(
        f"{'phones':>6} {'reg p50':>8} {'p99':>7} {'up s':>6} {'prov MB':>8} {'mosq MB':>8} "
        f"{'prov CPU':>9} {'mosq CPU':>9} {'gen CPU':>10} {'canary p99':>11} {'tap p50':>8} "
        f"{'p99':>7} {'miss':>5}  verdict"
    )
    rows = []
    base_rss = rss_mb(pid)
    base_broker = rss_mb(broker_pid)
    try:
        ask_all(workers, [{"cmd": "calls", "n": 1}] + [None] * (len(workers) - 1))
        base_rss_call = rss_mb(pid)
        for n in args.idle:
            shares = split(n, count)
            replies = ask_all(
                workers, [{"cmd": "idle", "n": x, "parallel": args.parallel} for x in shares]
            )
            register = [x for r in replies for x in r["register_ms"]]
            up = sum(r["push_up"] for r in replies)
            have = sum(r["idle"] for r in replies)
            failed = sum(r["failed"] for r in replies)
            failures = [m for r in replies for m in r["failures"]]
            up_s = max(r["all_up_s"] for r in replies)
            time.sleep(2.0)
            window = measure(
                workers, [True] + [False] * (len(workers) - 1), args.hold, pid, broker_pid
            )
            delays: list[float] = []
            missing = 0
            for probe in range(3):
                w = probe % count
                # The worker's last account with phones: accounts are filled in order.
                filled = math.ceil(shares[w] / args.per_account)
                account = f"i{(filled - 1) * count + w}"
                expected = min(args.per_account, shares[w] - (filled - 1) * args.per_account)
                got, miss = tap_probe(provider, workers, account, expected)
                delays += got
                missing += miss
            prov_mb, mosq_mb = rss_mb(pid), rss_mb(broker_pid)
            why = [f"canary: {x}" for x in window.slipped(args.late_ms, args.loss_pct, 1)]
            if missing:
                why.append(f"{missing} taps missing after {TAP_WAIT_S:g} s")
            tap99 = pct(delays, 0.99)
            if tap99 is not None and tap99 > TAP_P99_LIMIT_MS:
                why.append(f"tap p99 {tap99:.0f} ms")
            reg99 = pct(register, 0.99)
            if failed:
                why.append(f"{failed} registrations failed")
            if reg99 is not None and reg99 > REGISTER_P99_LIMIT_MS:
                why.append(f"registration p99 {reg99:.0f} ms")
            if up < have or have < n:
                why.append(f"push up {up}/{have} of {n}")
            flags = [
                f"worker {i} at {c:.0%}"
                for i, c in enumerate(window.worker_cpu)
                if c > GEN_CPU_LIMIT
            ]
            verdict = ("SLIP: " + "; ".join(why)) if why else "ok"
            if flags:
                verdict += "  GEN: " + "; ".join(flags)
            print(
                f"{n:>6} {fmt(pct(register, 0.5)):>8} {fmt(reg99):>7} {up_s:>6.1f} "
                f"{prov_mb:>8.1f} {mosq_mb:>8.1f} {window.provider_cpu:>8.1%} "
                f"{window.broker_cpu or 0:>8.1%} "
                f"{'/'.join(f'{c:.0%}' for c in window.worker_cpu):>10} "
                f"{fmt(pct(window.late, 0.99)):>11} {fmt(pct(delays, 0.5)):>8} {fmt(tap99):>7} "
                f"{missing:>5}  {verdict}",
                flush=True,
            )
            rows.append(
                {
                    "phones": n,
                    "register_p50_ms": pct(register, 0.5),
                    "register_p99_ms": reg99,
                    "all_up_s": up_s,
                    "provider_rss_mb": round(prov_mb, 1),
                    "broker_rss_mb": round(mosq_mb, 1),
                    "provider_kb_per_phone": round((prov_mb - base_rss_call) * 1024 / n, 1),
                    "broker_kb_per_phone": round((mosq_mb - base_broker) * 1024 / n, 1),
                    "provider_cpu": round(window.provider_cpu, 4),
                    "broker_cpu": round(window.broker_cpu or 0, 4),
                    "worker_cpu": [round(c, 3) for c in window.worker_cpu],
                    "canary_late_p99_ms": pct(window.late, 0.99),
                    "tap_p50_ms": pct(delays, 0.5),
                    "tap_p99_ms": tap99,
                    "taps_missing": missing,
                    "registration_failures": failures,
                    "slip": why,
                }
            )
            if why and args.stop_on_slip:
                break
        ask_all(workers, [{"cmd": "hangup"}] * len(workers))
    finally:
        stop_all(provider, workers)
    print(
        f"# provider RSS before any phone {base_rss:.1f} MB, "
        f"with the canary {base_rss_call:.1f} MB; "
        f"mosquitto {base_broker:.1f} MB"
    )
    return {
        "phase": "idle",
        "rows": rows,
        "provider_base_mb": base_rss,
        "broker_base_mb": base_broker,
    }


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_provider_load.py", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--transport", action="append", choices=("webtransport", "byways"))
    parser.add_argument("--codec", choices=("pcmu", "opus"), default="pcmu")
    parser.add_argument("--steps", default="1,2,4,8,12,16,24,32,48,64,96,128")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds of each measured window")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--windows", type=int, default=3, help="measured windows per step (medians are judged)"
    )
    parser.add_argument("--idle", default="250,500,1000,2000")
    parser.add_argument("--per-account", type=int, default=50, help="phones per account")
    parser.add_argument("--parallel", type=int, default=4, help="registrations at once per worker")
    parser.add_argument("--late-ms", type=float, default=20.0)
    parser.add_argument("--loss-pct", type=float, default=1.0)
    parser.add_argument("--no-calls", action="store_true")
    parser.add_argument("--no-idle", action="store_true")
    parser.add_argument("--stop-on-slip", action="store_true", help="idle: stop at the first slip")
    parser.add_argument("--profile", action="store_true", help="py-spy the provider at the knee")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the provider, mosquitto and the workers at this nice value (e.g. -10: "
        "ahead of whatever else shares the machine)",
    )
    parser.add_argument(
        "--provider-nice",
        type=int,
        default=0,
        help="then the provider's threads alone at this nice value (e.g. -15: ahead of "
        "the workers, as on a machine of its own)",
    )
    parser.add_argument(
        "--gc-probe",
        action="store_true",
        help="note the provider's garbage-collector pauses (tests/bench/gc_probe)",
    )
    parser.add_argument("--log-level", default="info", help="the provider's --log-level")
    parser.add_argument("--json", type=Path, help="also write the results here (JSON)")
    args = parser.parse_args(argv)
    try:
        args.steps = [int(x) for x in args.steps.split(",") if x]
        args.idle = [int(x) for x in args.idle.split(",") if x]
    except ValueError:
        parser.error("--steps and --idle are comma-separated integers")
    if not args.steps or min(args.steps) < 1 or not args.idle or min(args.idle) < 1:
        parser.error("--steps and --idle need positive counts")
    if (
        args.workers < 1
        or args.windows < 1
        or args.hold <= 0
        or args.per_account < 1
        or args.parallel < 1
    ):
        parser.error("--workers, --hold, --per-account --windows and --parallel must be positive")
    args.transports = tuple(dict.fromkeys(args.transport or ("webtransport", "byways")))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    Tuning.nice = args.nice
    Tuning.provider_nice = args.provider_nice
    work = Path(tempfile.mkdtemp(prefix="ript-load-"))
    print(
        f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z', time.gmtime())}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    print(f"# {' '.join(sys.argv)}")
    if args.nice:
        print(f"# provider, mosquitto and workers at nice {args.nice}")
    results = []
    try:
        if not args.no_calls:
            for transport in args.transports:
                results.append(call_phase(work / transport, args, transport))
        if not args.no_idle:
            results.append(idle_phase(work / "idle", args))
    finally:
        if args.nice:
            with contextlib.suppress(OSError):
                Path("/proc/self/autogroup").write_text("0")  # the session's group back to 0
        print(f"# load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    if not args.profile:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"# profiles kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
