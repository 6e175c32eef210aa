"""A short, deterministic run of every fuzz target (docs/fuzzing.md).

The long runs (a million inputs each) are ``tests/bench/fuzz.py``; here each
target gets its seeds and a few hundred mutants from a fixed seed, so the run
is the same every time and cannot flake, and a parser that lets anything but
its own error escape fails the suite.
"""

from __future__ import annotations

import pytest

from fuzzing.engine import Target, fuzz, outcome
from fuzzing.targets import all_targets

# Inputs per target: the cheap parsers get more; the ones that go through a file, a
# database or an event loop fewer.  About 15 s in all on the development machine.
INPUTS = 3000
SLOW = {
    "phone-config": 1000,
    "boot-file": 1000,
    "provider-config": 1000,
    "state-store": 1000,
    "provider-http": 1000,
    "dial-plan": 1500,
    "certificate": 1500,
    "chunk-receiver": 2000,
}


@pytest.mark.parametrize("name", list(all_targets()))
def test_only_the_parsers_own_errors_escape(name: str) -> None:
    target = all_targets()[name]
    report = fuzz(target, SLOW.get(name, INPUTS), seed=20261207)
    assert report.inputs == SLOW.get(name, INPUTS)
    assert not report.findings, "\n".join(f.describe() for f in report.findings)


def test_every_seed_is_read_without_a_finding() -> None:
    """The vectors and valid examples the corpora start from are all handled."""
    for target in all_targets().values():
        for seed in target.seeds():
            _signal, finding = outcome(target, seed)
            assert finding is None, finding.describe()


def _crashes_on_a_zero_byte(data: bytes) -> None:
    if b"\x00" in data:
        raise IndexError("list index out of range")
    if data.startswith(b"x"):
        raise ValueError("the parser's own error")


def test_the_engine_reports_an_escaped_exception_once_and_passes_the_allowed_one() -> None:
    target = Target(
        "selftest",
        "a parser that crashes on NUL",
        _crashes_on_a_zero_byte,
        (ValueError,),
        lambda: [b"xabc", b"hello"],
    )
    report = fuzz(target, 3000, seed=1)
    assert [f.error for f in report.findings] == ["IndexError"]
    assert b"\x00" in report.findings[0].data
    assert "_crashes_on_a_zero_byte" in report.findings[0].where


def test_a_run_is_reproducible() -> None:
    target = all_targets()["advertisement"]
    first = fuzz(target, 500, seed=7)
    second = fuzz(target, 500, seed=7)
    assert (first.inputs, first.corpus) == (second.inputs, second.corpus)
