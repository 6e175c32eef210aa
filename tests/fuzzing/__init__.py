"""Fuzzing of every parser that reads bytes from the network or the disk (docs/fuzzing.md).

``engine`` holds the target type, the rule (only a parser's own error may
escape) and a small deterministic mutation fuzzer; ``targets`` holds one
target per parser, seeded from ``tests/vectors`` and valid examples.  The
on-demand runner is ``tests/bench/fuzz.py`` (atheris when installed); the
suite's short run is ``tests/unit/test_fuzz_short.py``.
"""
