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
        help="make a real call: start the reference provider and the phone, dial the echo",
        description="Start the reference provider and the phone daemon on this machine, make "
        "a real call over HTTP/3 to the echo far end, hang up and show that the audio made "
        "the round trip.",
    )
    demo.add_argument(
        "--seconds", type=float, default=4.0, help="seconds to stay in the call (default 4)"
    )
    demo.add_argument(
        "--number", default="+14089529999", help="the number to call (default: the echo)"
    )
    demo.add_argument(
        "--sound-card",
        action="store_true",
        help="use the ALSA default devices instead of files (needs a sound card)",
    )
    run = commands.add_parser("run", help="run the phone daemon")
    run.add_argument("--config", required=True, type=Path, help="the configuration file (TOML)")
    control_client.add_subcommands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "selfcheck":
        return selfcheck.main(sys.stdout, verbose=args.verbose)
    if args.command == "demo":
        from riptphone import demo  # noqa: PLC0415

        return demo.run(
            sys.stdout, seconds=args.seconds, number=args.number, sound_card=args.sound_card
        )
    if args.command == "run":
        # Only the daemon needs the HTTP/3 stack; `status` and friends start faster without it.
        from riptphone import daemon  # noqa: PLC0415

        return daemon.main(args.config)
    return control_client.run(args)


if __name__ == "__main__":
    sys.exit(main())
