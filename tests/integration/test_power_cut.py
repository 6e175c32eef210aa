"""Power cuts in the suite: a few SIGKILLs of the phone and of the provider (issue #14 item 2).

The short run of ``tests/bench/bench_power_cut.py`` (1,000 cuts, on demand): every phase
of the phone (enrolment, restart, token refresh, call-log write) is cut at least once at
a random instant, and the provider a few times while handlers are registered and calls
placed.  The checks are those of :mod:`powercut`; the seed is printed so that a failure
can be run again.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .powercut import PHASES, PhoneCuts, ProviderCuts

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def seeded() -> random.Random:
    seed = random.randrange(1 << 30)
    print(f"power-cut seed {seed}")
    return random.Random(seed)


def test_the_phone_cut_in_every_phase_comes_back_registered_with_its_handler(
    tmp_path: Path,
) -> None:
    cuts = PhoneCuts(tmp_path, seeded())
    try:
        report = cuts.run(2 * len(PHASES))
    finally:
        cuts.close()
    assert report.failures == [], report.line()
    assert set(report.cuts) == set(PHASES)


def test_the_provider_cut_keeps_its_database_whole_and_its_handlers(tmp_path: Path) -> None:
    cuts = ProviderCuts(tmp_path, seeded())
    try:
        report = cuts.run(6)
    finally:
        cuts.close()
    assert report.failures == [], report.line()
    assert report.cuts["provider"] == 6
