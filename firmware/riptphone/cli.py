"""The ``ript-phone`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from riptphone import selfcheck
from riptphone.control import client as control_client


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
        help="start the reference provider and the phone; a call out to the echo and one in",
        description="Start the reference provider (with its MQTT broker) and the phone daemon "
        "on this machine. Scripted (the default): lift the handset, type the number, make a "
        "real call over HTTP/3 to the echo far end, hang up and show that the audio made the "
        "round trip; then the provider calls the phone, which rings, answers and hangs up. "
        "Interactive: this terminal is the phone's virtual handset and screen; the provider "
        "calls once, then dial what you like; Ctrl-C stops.",
    )
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument(
        "--interactive",
        action="store_true",
        help="drive the phone yourself from this terminal (the virtual handset)",
    )
    mode.add_argument(
        "--scripted",
        action="store_true",
        help="the demo drives the phone through its control socket (the default)",
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help="seconds to stay in the outbound call (scripted; default 4)",
    )
    demo.add_argument(
        "--number",
        default="+14089529999",
        help="the number the scripted phone calls (default: the echo)",
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
            sys.stdout,
            seconds=args.seconds,
            number=args.number,
            sound_card=args.sound_card,
            interactive=args.interactive,
        )
    if args.command == "run":
        # Only the daemon needs the HTTP/3 stack; `status` and friends start faster without it.
        from riptphone import daemon  # noqa: PLC0415

        return daemon.main(args.config)
    return control_client.run(args)


if __name__ == "__main__":
    sys.exit(main())
