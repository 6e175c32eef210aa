"""Soak: 1,000 consecutive calls; the phone's and the provider's memory and descriptors.

    nice -n 10 .venv/bin/python tests/bench/bench_soak.py [--calls 1000] [--every 100] \\
        [--media 1.0] [--smaps DIR]

One line (account ``bob``) with two phones, "Desk A" and "Desk B" (two ``ript-phone run``
daemons, their audio through alsa-lib's file plugin), ``ript-provider serve`` and its
mosquitto: real processes, as in ``tests/integration/scenario.py``.  Calls, in turn
(each of ten):

* 4 outbound: A dials the echo far end (``dial`` on its control socket), ``--media``
  seconds in the call, hangs up;
* 3 inbound: the provider's admin ``inbound``; both phones ring, A answers, hangs up;
* 1 pulled: inbound, answered on A, pulled to B (``pull``), B hangs up;
* 1 busy: A dials a far end that answers busy;
* 1 unreachable: A dials a number the provider cannot reach (refused at once).

Every ``--every`` calls: VmRSS (/proc/PID/status) and open descriptors (/proc/PID/fd) of
phone A, phone B and the provider.  The first ``--every`` calls are the warm-up; growth
is measured from the end of the warm-up to the end: at most 2 MB and 0 descriptors for
each process (issue #14 item 4).  A call that does not go as expected is counted and
the line settled before the next.  Exits 1 if a limit is exceeded or a call failed.
With ``--smaps DIR``, each sample also copies every process's ``/proc/PID/smaps`` to
``DIR/<calls>-<who>.smaps`` and the end prints which mappings grew after the warm-up
([heap], anonymous arenas, a library's): to tell C-level growth apart.
Not collected by pytest.  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: alsa, integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))  # riptdev

from integration.procs import ECHO, UNREACHABLE
from integration.scenario import CALLER, LINE_TOML, Line, PhoneProc, running_line
from riptphone.control.client import ControlClientError

BUSY = "+14089520486"
SOAK_TOML = (
    LINE_TOML.replace('answer-after = 0.3\nmedia = "echo"', 'answer-after = 0.0\nmedia = "echo"')
    + f"""
[[accounts.bob.far-end]]
match = "{BUSY}"
outcome = "busy"
"""
)
KINDS = ("out", "out", "out", "out", "in", "in", "in", "pulled", "busy", "unreachable")
RSS_LIMIT_KB = 2048
WAIT = 20.0
SETTLE_TRIES = 5


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_targets(pid: int) -> list[str]:
    """What each open descriptor is (a socket, a file, a pipe): to name a leak."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return sorted(found)


def smaps_rss(text: str) -> Counter[str]:
    """Rss (kB) by mapping name in a /proc/PID/smaps: anonymous ones as ``[anon]``."""
    by_name: Counter[str] = Counter()
    name = ""
    for line in text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 else "[anon]"
        elif fields and fields[0] == "Rss:":
            by_name[name] += int(fields[1])
    return by_name


class Soak:
    def __init__(self, line: Line, media: float, smaps: Path | None = None) -> None:
        self.line = line
        self.media = media
        self.smaps = smaps
        self.a: PhoneProc = line.phone("Desk A")
        self.b: PhoneProc = line.phone("Desk B")
        self.failures: list[str] = []
        self.targets: dict[str, list[str]] = {}
        self.maps: dict[str, str] = {}

    def pids(self) -> dict[str, int]:
        assert self.a.process is not None and self.b.process is not None
        return {
            "phone A": self.a.process.pid,
            "phone B": self.b.process.pid,
            "provider": self.line.provider.process.pid,
        }

    def sample(self) -> dict[str, tuple[int, int]]:
        """Taken with both phones idle (not on the ended screen, audio closed) a moment."""
        for phone in (self.a, self.b):
            phone.wait_state("idle", 10)
        time.sleep(1.0)
        self.targets = {who: fd_targets(pid) for who, pid in self.pids().items()}
        self.maps = {
            who: Path(f"/proc/{pid}/smaps").read_text() for who, pid in self.pids().items()
        }
        return {who: (rss_kb(pid), fds(pid)) for who, pid in self.pids().items()}

    # -- one call of each kind

    def _down(self, phone: PhoneProc) -> None:
        phone.hook("on")
        phone.wait_status(lambda s: s.get("state") in ("idle", "ended"), "back on hook")

    def out(self) -> None:
        self.a.hook("off")
        self.a.dial(ECHO)
        self.a.wait_state("in-call")
        time.sleep(self.media)
        self._down(self.a)

    def inbound(self) -> str:
        uri = self.line.inbound(CALLER)
        self.a.wait_state("ringing")
        self.b.wait_state("ringing")
        self.a.hook("off")
        self.a.wait_state("in-call")
        return uri

    def in_(self) -> None:
        self.inbound()
        time.sleep(self.media)
        self._down(self.a)
        self.b.wait_status(lambda s: s.get("state") in ("idle", "ended"), "B idle")

    def pulled(self) -> None:
        self.inbound()
        time.sleep(self.media / 2)
        self.b.pull()
        self.b.wait_state("in-call")
        self.a.wait_state("remote-in-use")
        time.sleep(self.media / 2)
        self._down(self.b)
        self._down(self.a)
        self.a.wait_status(lambda s: s.get("state") in ("idle", "ended"), "A idle")

    def failed(self, number: str) -> None:
        self.a.hook("off")
        with contextlib.suppress(ControlClientError):  # unreachable: refused at once
            self.a.dial(number)
        self.a.wait_status(
            lambda s: (
                s.get("state") in ("ended", "dialing")
                and (s.get("state") == "ended" or number == UNREACHABLE)
            ),
            f"{number} failed",
        )
        self._down(self.a)

    def one(self, kind: str) -> None:
        try:
            if kind == "out":
                self.out()
            elif kind == "in":
                self.in_()
            elif kind == "pulled":
                self.pulled()
            elif kind == "busy":
                self.failed(BUSY)
            else:
                self.failed(UNREACHABLE)
        except (AssertionError, ControlClientError, OSError) as exc:
            self.failures.append(f"{kind}: {str(exc)[:300]}")
            self.settle()

    def settle(self) -> None:
        """Hang everything up; a phone slow to answer (a machine under load) gets retries."""
        for attempt in range(SETTLE_TRIES):
            try:
                self._settle()
                return
            except (AssertionError, ControlClientError, OSError) as exc:
                if attempt == SETTLE_TRIES - 1:
                    raise
                self.failures.append(f"settling: {str(exc)[:300]}")
                time.sleep(5.0)

    def _settle(self) -> None:
        self.line.hang_up_everything()
        for phone in (self.a, self.b):
            phone.hook("on")
        for phone in (self.a, self.b):
            phone.wait_state("idle", 10)


def table(rows: list[tuple[int, dict[str, tuple[int, int]]]]) -> str:
    who = list(rows[0][1])
    head = "| calls | " + " | ".join(f"{w} RSS (MB) | {w} fds" for w in who) + " |"
    rule = "|" + "---|" * (1 + 2 * len(who))
    lines = [head, rule]
    for calls, sample in rows:
        cells = " | ".join(f"{sample[w][0] / 1024:.1f} | {sample[w][1]}" for w in who)
        lines.append(f"| {calls} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--media", type=float, default=1.0, help="seconds in each call")
    parser.add_argument("--smaps", type=Path, help="keep /proc/PID/smaps of each sample here")
    args = parser.parse_args()
    start = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="soak-") as tmp,
        running_line(Path(tmp), SOAK_TOML) as line,
    ):
        soak = Soak(line, args.media)
        rows = [(0, soak.sample())]
        warm_targets: dict[str, list[str]] = {}
        warm_maps: dict[str, str] = {}
        if args.smaps:
            args.smaps.mkdir(parents=True, exist_ok=True)
        kinds: dict[str, int] = {}
        for i in range(args.calls):
            kind = KINDS[i % len(KINDS)]
            kinds[kind] = kinds.get(kind, 0) + 1
            soak.one(kind)
            if (i + 1) % args.every == 0:
                rows.append((i + 1, soak.sample()))
                if len(rows) == 2:
                    warm_targets, warm_maps = soak.targets, soak.maps
                if args.smaps:
                    for who, text in soak.maps.items():
                        name = f"{i + 1}-{who.replace(' ', '')}.smaps"
                        (args.smaps / name).write_text(text)
                print(
                    f"{i + 1} calls, {time.monotonic() - start:.0f} s, "
                    f"{len(soak.failures)} failed: {rows[-1][1]}",
                    flush=True,
                )
    print(f"calls by kind: {kinds}; {time.monotonic() - start:.0f} s")
    print(table(rows))
    ok = not soak.failures
    for failure in soak.failures:
        print(f"FAILED {failure}")
    if len(rows) > 2:
        warm, last = rows[1][1], rows[-1][1]
        for who in warm:
            grew_kb, grew_fds = last[who][0] - warm[who][0], last[who][1] - warm[who][1]
            verdict = "ok" if grew_kb <= RSS_LIMIT_KB and grew_fds <= 0 else "OVER"
            ok &= verdict == "ok"
            print(f"{who}: after warm-up RSS {grew_kb / 1024:+.2f} MB, fds {grew_fds:+d} {verdict}")
            if grew_fds > 0:
                extra = Counter(soak.targets[who]) - Counter(warm_targets[who])
                print(f"  new descriptors: {dict(extra)}")
            if args.smaps:
                before, after = smaps_rss(warm_maps[who]), smaps_rss(soak.maps[who])
                grew = {n: after[n] - before[n] for n in after | before}
                top = sorted(grew.items(), key=lambda kv: -abs(kv[1]))[:6]
                print("  by mapping (kB): " + ", ".join(f"{n} {kb:+d}" for n, kb in top))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
