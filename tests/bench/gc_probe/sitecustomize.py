"""``bench_provider_load.py --gc-probe``: the provider's garbage-collector pauses, from outside.

Put on the provider's ``PYTHONPATH`` by the bench (never installed), so the
firmware is unchanged: each collection's pause, with its generation and the
``time.time()`` it ended, is appended to the file ``RIPT_GC_PROBE`` names
(one ``end pause_ms generation`` line; pauses under 0.5 ms are counted, not written).
"""

from __future__ import annotations

import gc
import os
import time

_path = os.environ.get("RIPT_GC_PROBE")
if _path:
    _out = open(_path, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    _start = [0.0]

    def _note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            _start[0] = time.perf_counter()
            return
        pause = (time.perf_counter() - _start[0]) * 1000
        if pause >= 0.5:
            _out.write(f"{time.time():.3f} {pause:.2f} {info.get('generation', -1)}\n")

    gc.callbacks.append(_note)
