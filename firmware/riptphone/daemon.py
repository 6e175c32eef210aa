"""The phone daemon: ``ript-phone run --config FILE``.

One asyncio loop holds everything: the HTTP/3 client, the phone
(:class:`riptphone.phone.Phone`) and the control socket.  :func:`serve` is
the one place the phone's parts are built and joined (:func:`build_phone`);
none is changed after it is built.  At start it reads
the configuration (exit status 2 with one line naming the fault when it
cannot be used), opens the state store, serves the control socket, then
logs in and comes online in the background (:mod:`riptphone.session`,
retrying while the provider cannot be reached).  Credentials: the lab token
file ``<state_dir>/token`` (mode 0600) when there is one, a fixed bearer
token; else the OAuth tokens of the state store, kept fresh
(:mod:`riptphone.line.tokens`); with none, the phone shows the device flow's
login code (``provisioning``).  SIGTERM and
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
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from riptphone import logs
from riptphone.app.inputs import Input
from riptphone.app.machine import PhoneMachine
from riptphone.bus import Bus, Event
from riptphone.calllog_store import load_call_log
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.registry import CallRegistry
from riptphone.config import Config, ConfigError, load_config
from riptphone.control.handler import PhoneControl
from riptphone.control.server import ControlError, ControlServer
from riptphone.driver import PhoneDriver
from riptphone.handset import Handset, HandsetError
from riptphone.hw.tone_player import TonePlayer
from riptphone.line.login import DeviceLogin
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.line.tokens import OAuthCredentials, OAuthServer
from riptphone.net.h3 import H3Client
from riptphone.net.https import HttpsClient
from riptphone.net.ript_client import Credentials, RiptClient, StaticToken
from riptphone.phone import Phone
from riptphone.reload import Reloader
from riptphone.reset import finish_pending
from riptphone.screen import ScreenOut
from riptphone.sdnotify import Notifier
from riptphone.session import Session
from riptphone.status import PhoneStatus
from riptphone.store import TOKENS, StateStore, StoreError, Tokens
from riptphone.tasks import Tasks

log = logging.getLogger("riptphone.daemon")

TOKEN_FILE = "token"


class DaemonError(Exception):
    """The daemon cannot start; the message is one sentence for the operator."""


def read_token(state_dir: Path) -> str | None:
    """The lab bearer token in ``state_dir/token`` (None: no such file, log in with OAuth);
    refused unless only its owner can read it."""
    path = state_dir / TOKEN_FILE
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise DaemonError(f"cannot read the bearer token {path}: {exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise DaemonError(f"the bearer token {path} must be mode 0600, not {stat.S_IMODE(mode):o}")
    if not text or any(c.isspace() for c in text):
        raise DaemonError(f"the bearer token {path} must be one line without spaces")
    return text


def build_phone(
    config: Config,
    store: StateStore,
    client: RiptClient,
    *,
    handset: Handset,
    inputs: Bus[Input],
    events: Bus[Event],
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Phone:
    """The phone's parts, each given what it uses; ``inputs`` and ``events`` join them.

    The driver is the one subscriber of ``inputs``; the control server
    subscribes to ``events`` once it is serving.
    """
    tasks = Tasks()
    line = Line(config, store, client, inputs.publish)
    login = None
    if isinstance(client.credentials, OAuthCredentials):
        login = DeviceLogin(client.credentials.server, config.phone.name, inputs.publish)
        inputs.subscribe(login.on_input)
    machine = PhoneMachine(
        config.dialplan.plan(),
        config.dialplan.interdigit_timeout_ms / 1000,
        log=load_call_log(store),
        volume=config.audio.volume,
        check_destination=line.check_destination,
    )
    earpiece = Earpiece(
        TonePlayer(config.audio.playback), TonePlayer(config.audio.ringer or config.audio.playback)
    )
    registry = CallRegistry(
        client,
        line,
        audio=config.audio,
        earpiece=earpiece,
        tasks=tasks,
        feed=inputs.publish,
        publish=events.publish,
        wall=wall,
    )
    push = PushLine(line, registry, tasks, inputs.publish, ca_file=config.provider.ca_file)
    session = Session(store, line, push, client, login=login, feed=inputs.publish, wall=wall)
    screen = ScreenOut(handset, lambda: machine.screen, wall=wall)
    status = PhoneStatus(machine, line, push, registry, screen)
    driver = PhoneDriver(
        machine,
        registry,
        screen=screen,
        handset=handset,
        status=status,
        store=store,
        tasks=tasks,
        publish=events.publish,
        clock=clock,
        wall=wall,
        on_reset=session.request_reset,
    )
    inputs.subscribe(driver.feed)
    control = PhoneControl(
        driver, status, session.wait_reset, login.on_input if login is not None else None
    )
    return Phone(line, push, registry, driver, control, earpiece, tasks, session)


def credentials(config: Config, store: StateStore, token: str | None) -> Credentials:
    """A fixed token (the lab option, a test), else the OAuth tokens of the store (or none)."""
    if token is not None:
        return StaticToken(token)
    server = OAuthServer(
        HttpsClient(config.provider.ca_file), config.provider.domain, config.provider.client_id
    )
    loaded = store.load_tokens()
    if loaded.problem is not None:
        log.warning("event=tokens_unreadable reason=%r", loaded.problem)

    async def save(tokens: Tokens) -> None:
        await asyncio.to_thread(store.save_tokens, tokens)

    async def forget() -> None:
        await asyncio.to_thread(store.delete, TOKENS)

    return OAuthCredentials(server, save, forget, tokens=loaded.data)


async def serve(
    config: Config,
    token: str | None = None,
    *,
    pin_factory: Any = None,
    display_device: Any = None,
    stop: asyncio.Event | None = None,
    config_path: Path | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Run the phone until SIGTERM or SIGINT, or until ``stop`` is set.

    ``token``: a fixed bearer token (the lab token file's); None: OAuth.
    ``config_path``: the file SIGHUP re-reads (:mod:`riptphone.reload`).
    ``notifier``: systemd's (READY once the control socket serves, STATUS with the
    phone's state, WATCHDOG from this loop, RELOADING, STOPPING).

    ``pin_factory`` (a gpiozero pin factory) and ``display_device`` (a luma
    device) replace the Pi's pins and the I2C OLED: a test runs the daemon on
    mock pins and luma's dummy display.  Signals can only be caught in the
    main thread; a daemon run on another thread (a test's) stops by ``stop``.
    """
    store = StateStore(config.phone.state_dir)
    stop = stop if stop is not None else asyncio.Event()
    notifier = notifier if notifier is not None else Notifier({})
    loop = asyncio.get_running_loop()
    stopped_by: list[signal.Signals] = []  # the signal that stopped the phone, for the log
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _stop_on, stop, sig, stopped_by)
    ca_file = config.provider.ca_file
    async with H3Client(ca_file=ca_file) as http:
        # Before anything reads the state: a reset a power cut interrupted is finished.
        await asyncio.to_thread(finish_pending, store)
        creds = await asyncio.to_thread(credentials, config, store, token)
        client = RiptClient(http, config.provider.domain, creds)
        inputs: Bus[Input] = Bus()  # handset, line, push and calls -> the phone machine
        events: Bus[Event] = Bus()  # the phone -> control-socket watchers
        try:
            handset = Handset(
                config.hardware,
                loop,
                inputs.publish,
                pin_factory=pin_factory,
                display_device=display_device,
            )
        except HandsetError as exc:
            raise DaemonError(str(exc)) from None
        try:
            phone = build_phone(
                config, store, client, handset=handset, inputs=inputs, events=events
            )
            async with ControlServer(config.phone.control_socket, phone.control) as server:
                events.subscribe(server.publish)
                events.subscribe(lambda event: _tell_systemd(notifier, event))
                phone.start()
                handset.start()
                if main_thread and config_path is not None:
                    reloader = Reloader(
                        config_path,
                        config,
                        feed=inputs.publish,
                        registry=phone.registry,
                        earpiece=phone.earpiece,
                        reopen_display=lambda new: handset.reopen_display(new.hardware),
                    )
                    loop.add_signal_handler(
                        signal.SIGHUP, lambda: phone.tasks.spawn(_reload(reloader, notifier))
                    )
                log.info(
                    "event=started socket=%s provider=%s handset=%s",
                    server.path,
                    config.provider.domain,
                    config.hardware.backend,
                )
                notifier.ready(_systemd_status(phone.control.status()))
                watchdog = loop.create_task(notifier.run_watchdog())
                online = loop.create_task(phone.connect())
                await stop.wait()
                # Which signal: a Ctrl-C at the terminal (SIGINT) tells a demo sharing that
                # terminal that its user stopped the phone (riptdev.demo reads this line).
                log.info("event=stopping signal=%s", stopped_by[0].name if stopped_by else "none")
                notifier.stopping()
                if main_thread:
                    loop.remove_signal_handler(signal.SIGHUP)
                for task in (online, watchdog):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await phone.close()
        finally:
            await asyncio.to_thread(handset.close)
    log.info("event=stopped")


def _stop_on(stop: asyncio.Event, sig: signal.Signals, stopped_by: list[signal.Signals]) -> None:
    if not stopped_by:
        stopped_by.append(sig)
    stop.set()


async def _reload(reloader: Reloader, notifier: Notifier) -> None:
    notifier.reloading()
    try:
        await reloader.reload()
    finally:
        notifier.ready()


def _systemd_status(status: Mapping[str, Any]) -> str:
    """``systemctl status``'s line: the state and, when not ready, why."""
    state = str(status.get("state", "?"))
    reason = status.get("reason")
    return f"{state}: {reason}" if reason and state in ("offline", "provisioning") else state


def _tell_systemd(notifier: Notifier, event: Mapping[str, Any]) -> None:
    if event.get("event") == "state":
        notifier.status(_systemd_status(event))


def main(config_path: Path) -> int:
    """Entry point of ``ript-phone run``: the exit status."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"ript-phone: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log.level)
    notifier = Notifier()
    try:
        os.makedirs(config.phone.state_dir, mode=0o700, exist_ok=True)
        token = read_token(config.phone.state_dir)
        asyncio.run(serve(config, token, config_path=config_path, notifier=notifier))
    except (DaemonError, ControlError, StoreError, OSError) as exc:
        print(f"ript-phone: {exc}", file=sys.stderr)
        return 2
    finally:
        notifier.close()
    return 0
