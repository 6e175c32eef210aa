"""Hand the C heap's free pages back to the system after a call (glibc ``malloc_trim``).

Why: each call's C state (libopus encoder and decoder, OpenSSL and aioquic
buffers, alsa-lib's PCM) is malloc'd and freed again, but glibc keeps freed
memory in its arenas, and scattered between live blocks the free chunks are
rarely given back on their own: over a 1,000-call soak the daemon's RSS grew in
steps with no live Python object to show for it (docs/performance.md, "Soak").
``malloc_trim(0)`` gives back every free page of every arena (``madvise``), so
the memory a call used returns to the system when the call ends.

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
    """Give free heap pages back to the system; True if some were (False: none, or no glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
