"""The phone's life at its provider: log in, come online, and start over when that ends.

:meth:`Session.run` is the one long task of the daemon:

1. (:func:`riptphone.daemon.serve` has already finished a factory reset
   that a power cut interrupted, before it read any state: :mod:`riptphone.reset`);
2. without tokens (and without the lab token file), the device flow logs in
   (:mod:`riptphone.line.login`; the phone shows ``provisioning``), and the
   tokens are saved;
3. the line comes online (:meth:`riptphone.line.registration.Line.connect`)
   and the push channel opens, exactly as with a static token;
4. it then waits: a refresh answered ``invalid_grant`` (the login ended)
   closes push and goes back to 2, keeping the handler registration, so that
   logging in again to the same account keeps the handler URI; a factory
   reset (:meth:`request_reset`, from the keypad or the control socket)
   deletes the handler at the provider (best effort, short timeout), wipes
   the state directory and goes back to 2 without restarting the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from riptphone.app.inputs import Input, LineOffline
from riptphone.line import reasons
from riptphone.line.login import DeviceLogin
from riptphone.line.push import PushLine
from riptphone.line.registration import Line
from riptphone.line.tokens import OAuthCredentials, tokens_from
from riptphone.net.ript_client import RiptClient, RiptError
from riptphone.reset import mark, wipe
from riptphone.store import StateStore

log = logging.getLogger("riptphone.session")

T = TypeVar("T")

FAILED_RETRY_S = 5.0
"""After an unexpected error in a turn of the session."""
DELETE_TIMEOUT_S = 3.0
"""A reset waits this long at most for the provider to delete the handler."""


class Session:
    """Login, online, logout and reset, in order; see the module docstring."""

    def __init__(
        self,
        store: StateStore,
        line: Line,
        push: PushLine,
        client: RiptClient,
        *,
        login: DeviceLogin | None,
        feed: Callable[[Input], object],
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.line = line
        self.push = push
        self.client = client
        self.login = login
        self._feed = feed
        self._wall = wall
        self._reset_wanted = asyncio.Event()
        self._reset_done: asyncio.Future[None] | None = None
        self.resets = 0

    @property
    def oauth(self) -> OAuthCredentials | None:
        creds = self.client.credentials
        return creds if isinstance(creds, OAuthCredentials) else None

    def request_reset(self) -> None:
        """Start a factory reset (the machine has shown its screen); :meth:`wait_reset` ends."""
        if self._reset_done is None or self._reset_done.done():
            self._reset_done = asyncio.get_running_loop().create_future()
        self._reset_wanted.set()

    async def wait_reset(self) -> None:
        """Until the reset asked for has been carried out (at once if none is pending)."""
        if self._reset_done is not None:
            await asyncio.shield(self._reset_done)

    async def run(self) -> None:
        """Log in, come online, and start over after a logout or a reset; until cancelled."""
        while True:
            try:
                await self._round()
            except Exception:
                # A bug must not leave the phone dead on its screen: say it, wait, go on.
                log.exception("event=session_failed retry_in=%g", FAILED_RETRY_S)
                await asyncio.sleep(FAILED_RETRY_S)

    async def _round(self) -> None:
        """One turn: a reset, or a login and the time online until it ends."""
        if self._reset_wanted.is_set():
            await self._reset()
            return
        oauth = self.oauth
        if oauth is not None and not oauth.logged_in:
            assert self.login is not None
            done = await self._until_interrupted(self.login.run())
            if done is None:
                return
            response = done.response
            await oauth.set(tokens_from(response, self._wall()), response.expires_in)
        await self._until_interrupted(self._online())
        await self.push.close()
        if oauth is not None and oauth.ended.is_set():
            log.warning("event=login_ended")
            oauth.ended.clear()
            self.line.forget(reasons.LOGIN_REFUSED)

    async def _online(self) -> None:
        await self.line.connect()
        self.push.start()
        await asyncio.Event().wait()  # online until a logout or a reset interrupts

    async def _until_interrupted(self, work: Coroutine[Any, Any, T]) -> T | None:
        """``work``'s result, or None when a reset or the end of the login came first."""
        task = asyncio.ensure_future(work)
        waits = [asyncio.ensure_future(self._reset_wanted.wait())]
        oauth = self.oauth
        if oauth is not None:
            waits.append(asyncio.ensure_future(oauth.ended.wait()))
        try:
            await asyncio.wait([task, *waits], return_when=asyncio.FIRST_COMPLETED)
        finally:
            leftovers = [pending for pending in (task, *waits) if not pending.done()]
            for pending in leftovers:
                pending.cancel()
            if leftovers:
                # asyncio.wait, not await: our own cancellation must not be swallowed.
                await asyncio.wait(leftovers)
        if task.done() and not task.cancelled():
            return task.result()
        return None

    async def _reset(self) -> None:
        log.warning("event=factory_reset")
        await asyncio.to_thread(mark, self.store)
        await self.push.close()
        loaded = await asyncio.to_thread(self.store.load_registration)
        handler = loaded.data.handler_uri if loaded.data is not None else None
        oauth = self.oauth
        if handler is not None and (oauth is None or oauth.logged_in):
            try:
                async with asyncio.timeout(DELETE_TIMEOUT_S):
                    await self.client.delete_handler(handler)
                log.info("event=handler_deleted handler=%s", handler)
            except (RiptError, TimeoutError) as exc:
                log.warning("event=handler_not_deleted reason=%r", str(exc) or "timed out")
        await asyncio.to_thread(wipe, self.store)
        if oauth is not None:
            oauth.drop()
        self.line.forget("factory reset")
        self._reset_wanted.clear()
        self.resets += 1
        log.warning("event=factory_reset_done")
        if self.oauth is None:
            # A lab phone (static token) registers again; say so until it is online.
            self._feed(LineOffline("connecting to the provider", registering=True))
        if self._reset_done is not None and not self._reset_done.done():
            self._reset_done.set_result(None)
