"""The ``ript-phone`` command line."""

from __future__ import annotations

import argparse
import sys

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
    control_client.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("selfcheck", "demo"):
        return selfcheck.main(sys.stdout, verbose=args.verbose)
    return control_client.run(args)


if __name__ == "__main__":
    sys.exit(main())
