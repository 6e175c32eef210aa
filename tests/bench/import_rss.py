"""The phone's imports alone, on aioquic or with qh3 in its place: RSS in MB (issue #12).

    PYTHONPATH=firmware python tests/bench/import_rss.py [--quic aioquic|qh3] [--qh3-path DIR]

Imports the daemon and the modules a call uses (``riptphone.daemon``,
``riptphone.calls.media``, ``riptphone.net.h3``, ``riptphone.net.push``) in this
fresh interpreter, connects nothing, starts nothing, and prints VmRSS.  With
``--quic qh3`` every ``aioquic`` module is qh3's of the same name (a meta-path
alias: qh3 is aioquic's fork with the same layout), so the figure says what the
phone's imports would weigh if it ran on qh3, without a port.  Memory only: the
alias does not make the phone work on qh3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType


class _QuicAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``aioquic.x`` is imported as ``qh3.x``."""

    def find_spec(
        self,
        name: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if name == "aioquic" or name.startswith("aioquic."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module("qh3" + spec.name[len("aioquic") :])

    def exec_module(self, module: ModuleType) -> None:
        """qh3 ran it already."""


def vm_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("import_rss: no VmRSS in /proc/self/status")


def main() -> int:
    args = sys.argv[1:]
    quic = args[args.index("--quic") + 1] if "--quic" in args else "aioquic"
    if "--qh3-path" in args:
        sys.path.insert(0, args[args.index("--qh3-path") + 1])
    if quic == "qh3":
        sys.meta_path.insert(0, _QuicAlias())
    elif quic != "aioquic":
        raise SystemExit(f"import_rss: --quic aioquic or qh3, not {quic!r}")
    for name in ("riptphone.daemon", "riptphone.calls.media", "riptphone.net.h3",
                 "riptphone.net.push"):  # fmt: skip
        importlib.import_module(name)
    loaded = {name.split(".")[0] for name in sys.modules}
    real = "qh3" if "qh3" in loaded else "aioquic"
    print(f'{{"quic": "{real}", "vm_rss_mb": {vm_rss_mb():.1f}, "modules": {len(sys.modules)}}}')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
