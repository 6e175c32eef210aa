"""Hand the C heap's free pages back to the system after a call (glibc ``malloc_trim``).

Why: each call's C state (libopus encoder and decoder, OpenSSL and aioquic
buffers, alsa-lib's PCM) is malloc'd and freed again, but glibc keeps freed
memory in its arenas, and scattered between live blocks the free chunks are
rarely given back on their own: over a 1,000-call soak the daemon's RSS grew in
steps with no live Python object to show for it (docs/performance.md, "Soak").
``malloc_trim(0)`` gives back every free page of every arena (``madvise``), so
the memory a call used returns to the system when the call ends.  A full
garbage collection runs first: a call leaves reference cycles (tasks, futures,
exceptions with their tracebacks, aioquic's stream state) that only the
collector's oldest generation frees, and it runs rarely; until it does, their
memory pins pages the trim cannot give back (a probe in the soak freed 1,000 to
1,600 such objects and 0.4 to 0.8 MB more every 10 s).  A full collection of the
phone's heap takes a few milliseconds here, tens on a Pi Zero: idle time only.

Called by :class:`~riptphone.driver.PhoneDriver` once the phone has been idle
for a moment (no call, no tone: never beside the 20 ms media path); not at the
end of the call itself, since the tones' and the call's audio threads free their
share after it.  On a C library without ``malloc_trim``
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
from collections.abc import Callable

__all__ = ["release_freed_memory"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """libc's ``malloc_trim``, looked up once; ``None`` where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Collect garbage cycles, then give free heap pages back to the system.

    True if some pages went back (False: none, or no glibc).
    """
    gc.collect()
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
