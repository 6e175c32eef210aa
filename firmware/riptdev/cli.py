"""The ``python -m riptdev`` command line: ``demo``, ``selfcheck``, ``gallery``, ``states``."""

from __future__ import annotations

import argparse
import sys

from riptdev import demo, gallery, phone_states, selfcheck


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m riptdev",
        description="Developer tools for ript-phone, run from the checkout (PYTHONPATH=firmware).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_demo = commands.add_parser(
        "demo",
        help="start the reference provider and the phone; a call out to the echo and one in",
        description="Start the reference provider (with its MQTT broker) and the phone daemon "
        "on this machine. Scripted (the default): lift the handset, type the number, make a "
        "real call over HTTP/3 to the echo far end, hang up and show that the audio made the "
        "round trip; then the provider calls the phone, which rings, answers and hangs up. "
        "Interactive: this terminal is the phone's virtual handset and screen; the provider "
        "calls once, then dial what you like; Ctrl-C stops.",
    )
    mode = run_demo.add_mutually_exclusive_group()
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
    run_demo.add_argument(
        "--seconds",
        type=float,
        default=4.0,
        help="seconds to stay in the outbound call (scripted; default 4)",
    )
    run_demo.add_argument(
        "--number",
        default=demo.ECHO_NUMBER,
        help="the number the scripted phone calls (default: the echo)",
    )
    run_demo.add_argument(
        "--sound-card",
        action="store_true",
        help="use the ALSA default devices instead of files (needs a sound card)",
    )
    check = commands.add_parser(
        "selfcheck", help="play one whole call through the protocol core in memory"
    )
    check.add_argument("-v", "--verbose", action="store_true", help="show every action")
    gallery.add_arguments(
        commands.add_parser(
            "gallery",
            help="render every screen to PNG and write the index (docs/screens, docs/screens.md)",
        )
    )
    commands.add_parser(
        "states",
        help="print docs/phone-states.md (the phone machine's transition table)",
        description="Print docs/phone-states.md: python -m riptdev states > docs/phone-states.md",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        return demo.run(
            sys.stdout,
            seconds=args.seconds,
            number=args.number,
            sound_card=args.sound_card,
            interactive=args.interactive,
        )
    if args.command == "selfcheck":
        return selfcheck.main(sys.stdout, verbose=args.verbose)
    if args.command == "gallery":
        return gallery.run(args.outdir, args.index)
    sys.stdout.write(phone_states.document())
    return 0
