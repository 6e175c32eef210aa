"""Power cuts, on demand: SIGKILL the phone and the provider at random instants (issue #14).

    nice -n 10 .venv/bin/python tests/bench/bench_power_cut.py [--cuts 1000] \\
        [--provider-cuts 100] [--seed N]

The phone (``ript-phone run``, OAuth login) is cut ``--cuts`` times, in turn during
enrolment (device login to registered), a restart (re-registration), a token refresh
and a call's call-log write; the provider (``ript-provider serve``) ``--provider-cuts``
times while handlers are registered and calls placed.  The checks after each cut are
those of ``tests/integration/powercut.py``.  Prints progress and, at the end, the runs
and every failure; exits 1 if any.  Not collected by pytest; the suite runs a few cuts
(``tests/integration/test_power_cut.py``).  Results go in docs/performance.md.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))  # riptdev

from integration.powercut import CutReport, PhoneCuts, ProviderCuts


def show(who: str, report: CutReport) -> None:
    print(f"{who}: {report.line()}", flush=True)
    for failure in report.failures:
        print(f"  FAILED {failure}", flush=True)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop, clean up, show the cuts so far


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=int, default=1000, help="cuts of the phone")
    parser.add_argument("--provider-cuts", type=int, default=100, help="cuts of the provider")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"seed {seed}", flush=True)
    rng = random.Random(seed)
    signal.signal(signal.SIGTERM, _interrupted)
    failed = False
    with tempfile.TemporaryDirectory(prefix="power-cut-") as tmp:
        if args.cuts:
            phone = PhoneCuts(Path(tmp) / "phone-cuts", rng)
            phone.on_failure = lambda failure: print(f"  FAILED {failure}", flush=True)
            try:
                phone.run(args.cuts, progress=lambda line: print(line, flush=True))
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            finally:
                phone.close()
            print("phase lengths (s): " + str(phone.lengths), flush=True)
            report = phone.report
            show("phone", report)
            failed |= bool(report.failures)
        if args.provider_cuts:
            provider = ProviderCuts(Path(tmp) / "provider-cuts", rng)
            try:
                report = provider.run(
                    args.provider_cuts, progress=lambda line: print(line, flush=True)
                )
                try:
                    provider.final_call()
                except AssertionError as exc:
                    report.failures.append(str(exc))
            finally:
                provider.close()
            show("provider", report)
            failed |= bool(report.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
