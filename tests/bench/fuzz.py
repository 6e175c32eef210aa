"""Fuzz every parser of network and disk bytes, on demand (docs/fuzzing.md).

    .venv/bin/python tests/bench/fuzz.py [--target NAME ...] [--inputs 1000000]
                                         [--engine atheris|builtin] [--list]

With atheris installed (the default engine then), each target runs in its own
child process under libFuzzer, coverage-guided, with the firmware packages it
parses instrumented; without it, the built-in deterministic mutation fuzzer
of tests/fuzzing/engine.py runs in this process.  Per target the report gives
the inputs run, the time, the coverage reached (libFuzzer's ``cov:`` edges,
atheris only) and every exception that escaped other than the parser's own
error type(s): each is a finding, and the exit status is 1 when there is one.

Run it niced on a shared machine:  nice -n 10 .venv/bin/python tests/bench/fuzz.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
sys.path[:0] = [str(TESTS), str(TESTS.parent / "firmware")]

from fuzzing.engine import Finding, Report, Target, fuzz  # noqa: E402

_DONE = re.compile(rb"#(\d+)\s+DONE\s+cov: (\d+)")
_STATUS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+)")


def _have_atheris() -> bool:
    try:
        import atheris  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def _dict_file(target: Target, path: Path) -> None:
    """The target's tokens in libFuzzer's dictionary syntax."""
    lines = []
    for index, token in enumerate(target.dictionary):
        escaped = "".join(
            chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\x{b:02x}" for b in token
        )
        lines.append(f'kw{index}="{escaped}"')
    path.write_text("\n".join(lines) + "\n")


def _child(name: str, inputs: int, work: Path, seconds: int | None) -> None:
    """Run in the child process: one target under atheris, findings appended to a file."""
    import atheris

    from fuzzing import engine

    with atheris.instrument_imports(include=["ript", "riptphone", "riptprovider", "fuzzing"]):
        from fuzzing.targets import all_targets, silence_logs

    silence_logs()

    target = all_targets()[name]
    findings = work / "findings.jsonl"
    seen: set[tuple[str, str]] = set()

    def one_input(data: bytes) -> None:
        _signal, finding = engine.outcome(target, data)
        if finding is not None and finding.key not in seen:
            seen.add(finding.key)
            record = {
                "error": finding.error,
                "message": finding.message[:500],
                "where": finding.where,
                "data": finding.data.hex(),
            }
            with findings.open("a") as out:
                out.write(json.dumps(record) + "\n")

    corpus = work / "corpus"
    corpus.mkdir(exist_ok=True)
    for index, seed in enumerate(target.seeds()):
        (corpus / f"seed-{index}").write_bytes(seed[: target.max_len])
    args = [
        sys.argv[0],
        f"-runs={inputs}",
        f"-max_len={target.max_len}",
        "-timeout=20",
        "-rss_limit_mb=2048",
        "-seed=1",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
    ]
    if seconds:
        args.append(f"-max_total_time={seconds}")
    if target.dictionary:
        _dict_file(target, work / "dict")
        args.append(f"-dict={work / 'dict'}")
    args.append(str(corpus))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def _run_atheris(target: Target, inputs: int, work_root: Path, seconds: int | None) -> Report:
    work = work_root / target.name
    work.mkdir(parents=True, exist_ok=True)
    (work / "findings.jsonl").unlink(missing_ok=True)
    log_path = work / "libfuzzer.log"
    start = time.perf_counter()
    with log_path.open("wb") as log:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                target.name,
                "--inputs",
                str(inputs),
                "--work",
                str(work),
                *(["--seconds", str(seconds)] if seconds else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    report = Report(target.name, "atheris", seconds=time.perf_counter() - start)
    text = log_path.read_bytes()
    done = _DONE.findall(text) or _STATUS.findall(text)
    if done:
        report.inputs = int(done[-1][0])
        report.coverage = int(done[-1][1])
    report.corpus = len(list((work / "corpus").iterdir()))
    if (work / "findings.jsonl").exists():
        for line in (work / "findings.jsonl").read_text().splitlines():
            record = json.loads(line)
            report.findings.append(
                Finding(
                    target.name,
                    record["error"],
                    record["message"],
                    record["where"],
                    bytes.fromhex(record["data"]),
                )
            )
    if proc.returncode != 0:
        # libFuzzer itself stopped: a hang (-timeout), memory (-rss_limit_mb) or a crash.
        tail = text.decode("utf-8", "replace").strip().splitlines()[-12:]
        report.findings.append(
            Finding(
                target.name,
                f"libFuzzer exit {proc.returncode}",
                " | ".join(tail),
                str(log_path),
                b"",
            )
        )
    return report


def _progress(report: Report) -> None:
    print(
        f"  {report.target}: {report.inputs} inputs, {report.seconds:.0f} s, "
        f"{len(report.findings)} findings",
        file=sys.stderr,
        flush=True,
    )
    for finding in report.findings:
        print("  so far: " + finding.describe().replace("\n", "\n  "), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", help="a target name (repeatable)")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target")
    parser.add_argument("--engine", choices=("atheris", "builtin"), default=None)
    parser.add_argument(
        "--seconds", type=int, default=None, help="stop each target after this long (time box)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the built-in engine's seed")
    parser.add_argument("--work", type=Path, default=None, help="corpus and logs (atheris)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, _rest = parser.parse_known_args(argv)
    if args.child:
        _child(args.child, args.inputs, args.work, args.seconds)
        return 0
    from fuzzing.targets import all_targets, silence_logs

    silence_logs()
    targets = all_targets()
    if args.list:
        for target in targets.values():
            print(f"{target.name:<20} {target.what}")
        return 0
    names = args.target or list(targets)
    unknown = [n for n in names if n not in targets]
    if unknown:
        parser.error(f"unknown target {unknown[0]!r}; see --list")
    engine = args.engine or ("atheris" if _have_atheris() else "builtin")
    if engine == "atheris" and not _have_atheris():
        parser.error("atheris is not installed (pip install atheris); try --engine builtin")
    work_root = args.work or Path(tempfile.gettempdir()) / f"ript-fuzz-{os.getuid()}"
    failed = False
    for name in names:
        target = targets[name]
        if engine == "atheris":
            report = _run_atheris(target, args.inputs, work_root, args.seconds)
        else:
            report = fuzz(
                target,
                args.inputs,
                seed=args.seed,
                seconds=args.seconds,
                progress=_progress,
                measure=True,
            )
        print(report.line(), flush=True)
        for finding in report.findings:
            failed = True
            print("  FINDING " + finding.describe().replace("\n", "\n  "), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
