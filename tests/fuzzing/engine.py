"""The fuzz target type, the escape rule, and a deterministic mutation fuzzer.

A target feeds one input (bytes) to one parser.  The parser may refuse it
only with its module's documented error types (``Target.allowed``); any other
exception that escapes is a *finding*.  Findings are told apart by exception
type and the innermost frame of the firmware where it was raised, so a
million inputs hitting the same bug report it once.

The built-in engine (``fuzz``) is blind but not naive: an input whose outcome
(accepted, or the parser's error with its digits and quoted values masked) was
never seen before joins the corpus, so each new error message of a parser -
a new branch taken - becomes a seed for further mutation.  It is seeded from a
fixed ``random.Random`` seed, so a run is reproducible input for input; the
suite's short run depends on that.  ``tests/bench/fuzz.py`` runs the same
targets under atheris (libFuzzer, coverage-guided) when it is installed.
"""

from __future__ import annotations

import random
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

MAX_CORPUS = 4096
"""Inputs kept by the built-in engine; beyond this, new ones replace random old ones."""

_INTERESTING = (
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\x3f",
    b"\x40",
    b"\xc0",
    b"\xff\xff",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\xc0\x00\x00\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\xff\xff\xff\xff\xff",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"9" * 40,
    b"9" * 400,
    b"\\u0000",
    b"\\ud800",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b'"',
    b"[",
    b"{",
    b"]",
    b"}",
    b",",
    b":",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b"\n",
    b" ",
    b"%",
    b"%zz",
    b"+",
    b"=",
    b"&",
    b"..",
    b"/",
    b"~",
)


@dataclass(frozen=True, slots=True)
class Target:
    """One parser under fuzz.

    ``run`` feeds one input; ``allowed`` are the error types the parser
    documents (anything else escaping is a finding); ``seeds`` gives the
    starting corpus (vectors and valid examples); ``dictionary`` holds tokens
    of the format that mutations splice in.
    """

    name: str
    what: str
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], list[bytes]]
    dictionary: tuple[bytes, ...] = ()
    max_len: int = 4096
    instrument: tuple[str, ...] = ("ript",)


@dataclass(frozen=True, slots=True)
class Finding:
    """An exception that escaped a parser that should have refused the input with its own."""

    target: str
    error: str
    message: str
    where: str
    data: bytes

    @property
    def key(self) -> tuple[str, str]:
        return (self.error, self.where)

    def describe(self) -> str:
        shown = self.data[:200]
        more = f" (+{len(self.data) - 200} bytes)" if len(self.data) > 200 else ""
        return (
            f"{self.target}: {self.error}: {self.message[:200]}\n"
            f"    at {self.where}\n    input {shown!r}{more}"
        )


@dataclass(slots=True)
class Report:
    """What one run of one target did."""

    target: str
    engine: str
    inputs: int = 0
    seconds: float = 0.0
    coverage: int | None = None
    corpus: int = 0
    findings: list[Finding] = field(default_factory=list)

    def line(self) -> str:
        # Atheris counts libFuzzer's edges; the built-in engine firmware lines (lines_reached).
        unit = "lines" if self.engine == "builtin" else "cov"
        cov = f"{unit}={'n/a' if self.coverage is None else self.coverage}"
        rate = self.inputs / self.seconds if self.seconds else 0.0
        return (
            f"{self.target:<22} {self.engine:<8} inputs={self.inputs:<9} "
            f"time={self.seconds:8.1f}s rate={rate:8.0f}/s {cov:<11} "
            f"corpus={self.corpus:<5} findings={len(self.findings)}"
        )


def _where(exc: BaseException) -> str:
    """The innermost frame of the firmware (else the innermost at all) that raised ``exc``."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/firmware/" in f.filename] or frames
    if not ours:
        return "?"
    frame = ours[-1]
    path = frame.filename.split("/firmware/")[-1]
    return f"{path}:{frame.lineno} {frame.name}"


_MASK = re.compile(r"\d+|'[^']*'|\"[^\"]*\"|0x[0-9a-f]+")


def outcome(target: Target, data: bytes) -> tuple[str, Finding | None]:
    """Feed ``data``: ``(signal, finding)``, the signal naming the path the input took."""
    try:
        target.run(data)
    except target.allowed as exc:
        return f"{type(exc).__name__}:{_MASK.sub('#', str(exc))[:120]}", None
    except Exception as exc:  # the finding itself: anything else that escaped
        finding = Finding(target.name, type(exc).__name__, str(exc), _where(exc), data)
        return f"!{finding.error}@{finding.where}", finding
    return "ok", None


class Mutator:
    """Byte-level mutations (libFuzzer's usual set) plus the target's dictionary."""

    def __init__(self, rng: random.Random, dictionary: Sequence[bytes], max_len: int) -> None:
        self._rng = rng
        self._tokens = tuple(dictionary) + _INTERESTING
        self._max_len = max_len

    def mutate(self, data: bytes, other: bytes) -> bytes:
        rng = self._rng
        out = bytearray(data)
        for _ in range(1 + int(rng.expovariate(0.7))):
            self._once(out, other)
        return bytes(out[: self._max_len])

    def _once(self, out: bytearray, other: bytes) -> None:
        rng = self._rng
        n = len(out)
        op = rng.randrange(11)
        pos = rng.randrange(n + 1)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set a byte
            out[rng.randrange(n)] = rng.randrange(256)
        elif op == 2 and n:  # delete a run
            del out[pos : pos + 1 + int(rng.expovariate(0.3))]
        elif op == 3:  # insert random bytes
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(1 + rng.randrange(4)))
        elif op in (4, 5):  # insert a token
            out[pos:pos] = rng.choice(self._tokens)
        elif op == 6 and n:  # overwrite with a token
            token = rng.choice(self._tokens)
            out[pos : pos + len(token)] = token
        elif op == 7 and n:  # duplicate a run
            start = rng.randrange(n)
            piece = out[start : start + 1 + rng.randrange(16)]
            out[pos:pos] = piece * (1 + rng.randrange(3))
        elif op == 8 and other:  # splice another input in
            start = rng.randrange(len(other))
            out[pos:] = other[start:] if rng.random() < 0.5 else other[start:] + out[pos:]
        elif op == 9 and n:  # swap two bytes
            i, j = rng.randrange(n), rng.randrange(n)
            out[i], out[j] = out[j], out[i]
        elif op == 10 and n:  # add to a byte (lengths, counts, varint prefixes)
            i = rng.randrange(n)
            out[i] = (out[i] + rng.choice((-1, 1, -16, 16, 64, -64))) % 256
        else:
            out[pos:pos] = rng.choice(self._tokens)


def fuzz(
    target: Target,
    inputs: int,
    *,
    seed: int = 0,
    seconds: float | None = None,
    progress: Callable[[Report], None] | None = None,
    measure: bool = False,
) -> Report:
    """Run ``target`` on its seeds, then on ``inputs`` mutants in total (or until ``seconds``).

    With ``measure``, the corpus is replayed at the end to count the firmware lines it runs.
    """
    rng = random.Random(seed)
    corpus = [s[: target.max_len] for s in target.seeds()] or [b""]
    mutator = Mutator(rng, target.dictionary, target.max_len)
    report = Report(target.name, "builtin")
    seen_signals: set[str] = set()
    seen_findings: set[tuple[str, str]] = set()
    start = time.perf_counter()
    queue = list(corpus)
    while report.inputs < inputs:
        if queue:
            data = queue.pop(0)
        else:
            parent = corpus[rng.randrange(len(corpus))]
            other = corpus[rng.randrange(len(corpus))]
            data = mutator.mutate(parent, other)
        signal, finding = outcome(target, data)
        report.inputs += 1
        if finding is not None and finding.key not in seen_findings:
            seen_findings.add(finding.key)
            report.findings.append(finding)
        if signal not in seen_signals:
            seen_signals.add(signal)
            if len(corpus) < MAX_CORPUS:
                corpus.append(data)
            else:
                corpus[rng.randrange(MAX_CORPUS)] = data
        if report.inputs % 1000 == 0:
            report.seconds = time.perf_counter() - start
            if progress is not None and report.inputs % 100_000 == 0:
                progress(report)
            if seconds is not None and report.seconds > seconds:
                break
    report.seconds = time.perf_counter() - start
    report.corpus = len(corpus)
    report.coverage = lines_reached(target, corpus) if measure else None
    return report


def lines_reached(target: Target, inputs: Sequence[bytes]) -> int:
    """Distinct lines of the firmware that replaying ``inputs`` runs: the built-in engine's
    coverage figure (its corpus keeps one input per outcome, so this is what the run reached).
    """
    seen: set[tuple[str, int]] = set()

    def tracer(frame: FrameType, event: str, _arg: Any) -> Any:  # sys.settrace's own type
        if "/firmware/" not in frame.f_code.co_filename:
            return None  # no line events for the standard library or the harness
        if event == "line":
            seen.add((frame.f_code.co_filename, frame.f_lineno))
        return tracer

    previous = sys.gettrace()
    try:
        for data in inputs:
            # Set again for each input: a RecursionError raised inside the tracer itself
            # (an input that nests deeply) makes Python drop it for good.
            sys.settrace(tracer)
            outcome(target, data)
    finally:
        sys.settrace(previous)
    return len(seen)
