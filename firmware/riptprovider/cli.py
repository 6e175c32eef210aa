"""The ``ript-provider`` command line: run the reference provider, or show its CA file.

``ript-provider serve --config FILE`` runs the HTTP/3 server until SIGINT or
SIGTERM, then closes it cleanly (exit 0).  ``ript-provider ca --config FILE``
prints the path of the CA certificate the phones must trust (making the CA on
first use, so a script can hand it to a phone before the provider starts).
``ript-provider hash-password`` reads a password (one line of stdin, or asked
twice without echo at a terminal) and prints its scrypt hash for an account's
``password`` key; the password itself is never printed.

Every error a user can cause (a bad configuration, a port in use, an unusable
state directory) is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sqlite3
import sys
from pathlib import Path

from ript.version import version
from riptprovider.admin import AdminError, add_admin_parser, run_admin, start_admin
from riptprovider.broker import PushError, PushService, start_push
from riptprovider.config import ProviderConfigError, ProviderSettings, load_config
from riptprovider.db import DbError
from riptprovider.passwords import hash_password
from riptprovider.server import serve
from riptprovider.tls import CaError, ProviderCa, load_or_create_ca

log = logging.getLogger("ript-provider")

EXIT_OK = 0
EXIT_ERROR = 2
"""Exit status of every error a user can cause (argparse uses 2 for usage errors too)."""


class CliError(Exception):
    """One line for stderr: why the command cannot go on."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ript-provider",
        description="The reference RIPT provider: an HTTP/3 server for ript-phone.",
    )
    parser.add_argument("--version", action="version", version=f"ript-provider {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("serve", help="run the provider until SIGINT or SIGTERM")
    ca = commands.add_parser(
        "ca", help="print the path of the CA file phones must trust (made on first use)"
    )
    commands.add_parser(
        "hash-password",
        help="read a password from stdin (asked at a terminal) and print its scrypt hash",
    )
    add_admin_parser(commands)
    for sub in (run, ca):
        sub.add_argument(
            "--config", "-c", required=True, type=Path, metavar="FILE", help="the TOML file"
        )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning"),
        default="info",
        help="the log's level (default info); no secret is logged at any level",
    )
    return parser


def _prepare_state(config: ProviderSettings) -> ProviderCa:
    """Make the state directory (0700) and its CA; raise :class:`CliError` when unusable."""
    state_dir = config.state_dir
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not state_dir.is_dir():
            raise CliError(f"state directory {state_dir}: not a directory")
        return load_or_create_ca(state_dir)
    except FileExistsError:
        raise CliError(f"state directory {state_dir}: not a directory") from None
    except OSError as exc:
        raise CliError(f"state directory {state_dir}: {exc.strerror or exc}") from None
    except (CaError, ValueError) as exc:
        raise CliError(f"state directory {state_dir}: {exc}") from None


def _warn_if_exposed(config: ProviderSettings) -> None:
    # The file holds bearer tokens or password hashes: say so when others can
    # read it (refusing would break a checkout's example file; the operator decides).
    try:
        mode = config.path.stat().st_mode
    except OSError:
        return
    if mode & 0o077 and any(a.tokens or a.password for a in config.accounts.values()):
        log.warning(
            "%s holds bearer tokens or password hashes but is readable by others "
            "(mode %o): chmod 600 it",
            config.path,
            mode & 0o777,
        )


def _start_push(config: ProviderSettings, ca: ProviderCa) -> PushService | None:
    if config.push is None:
        return None
    try:
        return start_push(config.push, ca, config.state_dir)
    except PushError as exc:
        raise CliError(f"push: {exc}") from None


async def _serve(config: ProviderSettings) -> None:
    ca = _prepare_state(config)
    # Blocking (mosquitto start, first MQTT login) but before anything is served.
    push = await asyncio.to_thread(_start_push, config, ca)
    try:
        await _serve_http(config, push)
    finally:
        if push is not None:
            await asyncio.to_thread(push.close)


async def _serve_http(config: ProviderSettings, push: PushService | None) -> None:
    try:
        server = await serve(config.server_config())
    except OSError as exc:
        raise CliError(
            f"cannot listen on udp/tcp {config.host}:{config.port}: {exc.strerror or exc}"
        ) from None
    except (DbError, sqlite3.Error) as exc:
        raise CliError(f"the database in {config.state_dir} is unusable: {exc}") from None
    except (CaError, ValueError) as exc:
        raise CliError(f"state directory {config.state_dir}: {exc}") from None
    if push is not None:
        assert server.core is not None
        push.attach(server.core, config.accounts.values())
        log.info("push: broker=%s", push.url)
    try:
        admin = await start_admin(server)
    except AdminError as exc:
        await server.close()
        raise CliError(str(exc)) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        accounts = ", ".join(
            f"{account.id} ({' '.join(account.numbers)})" for account in config.accounts.values()
        )
        # One line, tokens never included; scripts read origin= and ca_file= from it.
        log.info(
            "ready: origin=%s listen=%s:%d ca_file=%s accounts: %s",
            server.origin,
            config.host,
            server.port,
            server.ca.ca_file,
            accounts,
        )
        await stop.wait()
        log.info("stopping")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await admin.close()
        await server.close()
    log.info("stopped")


MAX_PASSWORD = 1024
"""Characters of a password; longer input is refused rather than silently cut."""


def _read_password() -> str:
    """The password to hash: asked twice at a terminal, else the first line of stdin."""
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise CliError("the two passwords differ")
        password = first
    else:
        line = sys.stdin.readline(MAX_PASSWORD + 2)
        password = line.removesuffix("\n").removesuffix("\r")
        if len(password) > MAX_PASSWORD:
            raise CliError(f"the password is over {MAX_PASSWORD} characters")
    if not password:
        raise CliError("the password is empty")
    return password


def _run(args: argparse.Namespace) -> int:
    if args.command == "admin":
        return run_admin(args)
    if args.command == "hash-password":
        print(hash_password(_read_password()), flush=True)
        return EXIT_OK
    try:
        config = load_config(args.config)
    except ProviderConfigError as exc:
        raise CliError(str(exc)) from None
    if args.command == "ca":
        print(_prepare_state(config).ca_file)
        return EXIT_OK
    _warn_if_exposed(config)
    asyncio.run(_serve(config))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = getattr(args, "log_level", "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    try:
        return _run(args)
    except CliError as exc:
        print(f"ript-provider: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    except KeyboardInterrupt:  # SIGINT before the signal handlers were installed
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
