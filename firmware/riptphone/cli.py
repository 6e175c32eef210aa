"""The ``ript-phone`` command line: ``run`` the daemon, and the control-socket commands.

The developer tools (the demo, the self-check) are ``python -m riptdev``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riptphone.control import client as control_client


class _VersionAction(argparse.Action):
    """``--version``, its figure read only when asked for.

    Why: the installed version comes from :mod:`importlib.metadata`, which with
    the distribution's metadata it parses costs the daemon about 1 MB of memory
    for as long as it runs (0.3 MB on a Pi, where gpiozero imports the module
    anyway: docs/performance.md, "the phone's memory in a call").
    """

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from ript.version import version  # noqa: PLC0415

        print(f"{parser.prog} {version()}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ript-phone", description="RIPT desk phone firmware (calls over HTTP/3)."
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run the phone daemon")
    run.add_argument("--config", required=True, type=Path, help="the configuration file (TOML)")
    diagnose = commands.add_parser(
        "diagnose", help="write a redacted report for a bug report (versions, state, reachability)"
    )
    diagnose.add_argument("--config", required=True, type=Path, help="the configuration file")
    diagnose.add_argument("--out", type=Path, help="write the report here (mode 0600), not stdout")
    diagnose.add_argument(
        "--no-network", action="store_true", help="skip the provider reachability probes"
    )
    control_client.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        # Only the daemon needs the HTTP/3 stack; `status` and friends start faster without it.
        from riptphone import daemon  # noqa: PLC0415

        return daemon.main(args.config)
    if args.command == "diagnose":
        from riptphone import diagnose  # noqa: PLC0415

        return diagnose.main(args.config, args.out, network=not args.no_network)
    return control_client.run(args)


if __name__ == "__main__":
    sys.exit(main())
