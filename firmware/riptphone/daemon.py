"""The phone daemon: ``ript-phone run --config FILE``.

One asyncio loop holds everything: the HTTP/3 client, the phone
(:class:`riptphone.phone.Phone`) and the control socket.  At start it reads
the configuration (exit status 2 with one line naming the fault when it
cannot be used), the bearer token from ``<state_dir>/token`` (mode 0600),
opens the state store, serves the control socket, then comes online in the
background (retrying while the provider cannot be reached).  SIGTERM and
SIGINT hang up a call in progress and stop it cleanly (exit status 0).

Log lines are ``key=value``; tokens and keys never appear in them.
See docs/daemon.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from riptphone.config import Config, ConfigError, load_config
from riptphone.control.server import ControlError, ControlServer
from riptphone.handset import Handset, HandsetError
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, StaticToken
from riptphone.phone import Phone
from riptphone.store import StateStore, StoreError

log = logging.getLogger("riptphone.daemon")

TOKEN_FILE = "token"


class DaemonError(Exception):
    """The daemon cannot start; the message is one sentence for the operator."""


def read_token(state_dir: Path) -> str:
    """The bearer token in ``state_dir/token``; refused unless only its owner can read it."""
    path = state_dir / TOKEN_FILE
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise DaemonError(f"no bearer token: write it to {path} (mode 0600)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DaemonError(f"cannot read the bearer token {path}: {exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise DaemonError(f"the bearer token {path} must be mode 0600, not {stat.S_IMODE(mode):o}")
    if not text or any(c.isspace() for c in text):
        raise DaemonError(f"the bearer token {path} must be one line without spaces")
    return text


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    )


async def serve(
    config: Config,
    token: str,
    *,
    pin_factory: Any = None,
    display_device: Any = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the phone until SIGTERM or SIGINT, or until ``stop`` is set.

    ``pin_factory`` (a gpiozero pin factory) and ``display_device`` (a luma
    device) replace the Pi's pins and the I2C OLED: a test runs the daemon on
    mock pins and luma's dummy display.  Signals can only be caught in the
    main thread; a daemon run on another thread (a test's) stops by ``stop``.
    """
    store = StateStore(config.phone.state_dir)
    stop = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    ca_file = config.provider.ca_file
    async with H3Client(ca_file=ca_file) as http:
        client = RiptClient(http, config.provider.domain, StaticToken(token))
        phone = Phone(config, store, client)
        try:
            handset = Handset(
                config.hardware,
                loop,
                phone.feed,
                pin_factory=pin_factory,
                display_device=display_device,
            )
        except HandsetError as exc:
            raise DaemonError(str(exc)) from None
        try:
            async with ControlServer(config.phone.control_socket, phone) as server:
                phone.publish = server.publish
                phone.attach_handset(handset)
                handset.start()
                log.info(
                    "event=started socket=%s provider=%s handset=%s",
                    server.path,
                    config.provider.domain,
                    config.hardware.backend,
                )
                online = loop.create_task(phone.connect())
                await stop.wait()
                log.info("event=stopping")
                online.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await online
                await phone.close()
        finally:
            await asyncio.to_thread(handset.close)
    log.info("event=stopped")


def main(config_path: Path) -> int:
    """Entry point of ``ript-phone run``: the exit status."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"ript-phone: {exc}", file=sys.stderr)
        return 2
    _logging(config.log.level)
    try:
        os.makedirs(config.phone.state_dir, mode=0o700, exist_ok=True)
        token = read_token(config.phone.state_dir)
        asyncio.run(serve(config, token))
    except (DaemonError, ControlError, StoreError, OSError) as exc:
        print(f"ript-phone: {exc}", file=sys.stderr)
        return 2
    return 0
