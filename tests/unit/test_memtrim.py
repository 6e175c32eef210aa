from __future__ import annotations

import weakref
from pathlib import Path

from riptphone.memtrim import release_freed_memory


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_blocks_between_live_ones_go_back_to_the_system() -> None:
    """What a call's C state leaves behind: freed chunks glibc keeps, pinned by live neighbours."""
    # 64 kB blocks (glibc's heap, under its mmap threshold), written so that their pages
    # are in RAM; every other one freed: 19 MB in holes between live blocks, which glibc
    # keeps (only a free top of the heap goes back by itself).
    blocks = [b"\x01" * 65000 for _ in range(600)]
    del blocks[::2]
    before = rss_kb()
    assert release_freed_memory() is True
    assert before - rss_kb() > 8 * 1024
    del blocks


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_garbage_cycles_are_collected_before_the_trim() -> None:
    """A call leaves cycles only a full collection frees; their memory must go back too."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    freed = []
    weakref.finalize(a, freed.append, "a")
    del a, b
    release_freed_memory()
    assert freed == ["a"]
