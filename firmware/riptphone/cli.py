"""The ``ript-phone`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riptphone import control_client, selfcheck


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ript-phone", description="RIPT desk phone firmware (calls over HTTP/3)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "selfcheck", help="play one whole call through the protocol core in memory"
    )
    check.add_argument("-v", "--verbose", action="store_true", help="show every action")
    demo = commands.add_parser(
        "demo",
        help="the demo; until the phone can reach a provider (issue #3) it is the self-check",
    )
    demo.add_argument("-v", "--verbose", action="store_true", help="show every action")
    run = commands.add_parser("run", help="run the phone daemon")
    run.add_argument("--config", required=True, type=Path, help="the configuration file (TOML)")
    control_client.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("selfcheck", "demo"):
        return selfcheck.main(sys.stdout, verbose=args.verbose)
    if args.command == "run":
        # Only the daemon needs the HTTP/3 stack; `status` and friends start faster without it.
        from riptphone import daemon  # noqa: PLC0415

        return daemon.main(args.config)
    return control_client.run(args)


if __name__ == "__main__":
    sys.exit(main())
