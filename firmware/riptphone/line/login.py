"""First boot: the OAuth device flow (RFC 8628, profile section 2) that logs the phone in.

:class:`DevicePoll` is the flow without I/O: :meth:`~DevicePoll.action` takes
``now`` (monotonic seconds) and says what to do next (send a request, wait,
show the code, show a problem, wait for a key, done); the answers go back in
with :meth:`~DevicePoll.answer` and :meth:`~DevicePoll.failed`.  It fetches
the metadata, asks for a device code, and polls the token endpoint never
sooner than ``interval`` after the previous poll: ``authorization_pending``
keeps polling, ``slow_down`` adds 5 s for the rest of the code's life,
``expired_token`` (or the code's own expiry) starts over with a new code,
``access_denied`` waits for a key press.  A failure (no answer, garbage, an
unexpected error) is retried after the shared back-off, from the step that failed.

:class:`DeviceLogin` drives it: HTTPS through :class:`~riptphone.line.tokens.OAuthServer`,
the screens through the phone machine's inputs (:class:`Provisioning`
with the QR URL and the user code; :class:`LineOffline` with a short reason).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.oauth import (
    DEVICE_CODE_GRANT,
    SCOPE,
    SLOW_DOWN_S,
    DeviceAuthorization,
    OAuthError,
    ServerMetadata,
    TokenResponse,
)
from riptphone.app.inputs import Button, HookOff, Input, Key, LineOffline, Provisioning
from riptphone.line.reasons import LOGIN_REFUSED, PROVIDER_ERROR, plain_reason
from riptphone.line.tokens import OAuthServer, error_of
from riptphone.net.https import HttpsError, HttpsResponse

log = logging.getLogger("riptphone.login")

RETRY = BackoffPolicy(initial=2.0, maximum=60.0)
"""After a failure: 2, 4, 8 ... 60 s."""

Step = Literal["metadata", "device", "token"]

REFUSED_HINT = "login refused: press a key to try again"


@dataclass(frozen=True, slots=True)
class Send:
    """Send this request now; give the answer to :meth:`DevicePoll.answer`."""

    step: Step
    method: Literal["GET", "POST"]
    url: str
    form: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do until ``until`` (monotonic)."""

    until: float


@dataclass(frozen=True, slots=True)
class ShowCode:
    """A new code: show its QR code and user code."""

    authorization: DeviceAuthorization


@dataclass(frozen=True, slots=True)
class ShowProblem:
    """Something went wrong: say ``reason`` (short) and when the next try is."""

    reason: str
    retry_in_s: int


@dataclass(frozen=True, slots=True)
class WaitForKey:
    """The user refused the login: wait for a key press, then call :meth:`DevicePoll.restart`."""


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The tokens, received at ``at`` (monotonic)."""

    response: TokenResponse
    at: float


LoginAction = Send | Wait | ShowCode | ShowProblem | WaitForKey | LoggedIn


class DevicePoll:
    """The device flow as a state machine; see the module docstring."""

    def __init__(
        self, client_id: str, device_name: str, metadata_url: str, backoff: Backoff | None = None
    ) -> None:
        self.client_id = client_id
        self.device_name = device_name
        self.metadata_url = metadata_url
        self.backoff = backoff if backoff is not None else Backoff(RETRY)
        self.step: Step = "metadata"
        self.metadata: ServerMetadata | None = None
        self.authorization: DeviceAuthorization | None = None
        self.interval = 0.0
        self.expires_at = 0.0
        self.not_before = 0.0  # no request before this (the poll interval, a back-off)
        self.denied = False
        self.codes = 0  # device codes asked for so far
        self._notice: ShowCode | ShowProblem | None = None
        self._done: LoggedIn | None = None

    def action(self, now: float) -> LoginAction:
        """What to do at ``now``."""
        if self._notice is not None:
            notice, self._notice = self._notice, None
            return notice
        if self._done is not None:
            return self._done
        if self.denied:
            return WaitForKey()
        if self.step == "token" and now >= self.expires_at:
            log.info("event=login_code_expired")
            self._new_code()
        if now < self.not_before:
            return Wait(self.not_before)
        if self.step == "metadata":
            return Send("metadata", "GET", self.metadata_url)
        assert self.metadata is not None
        if self.step == "device":
            form = {"client_id": self.client_id, "scope": SCOPE}
            if self.device_name:
                form["device_name"] = self.device_name
            return Send("device", "POST", self.metadata.device_authorization_endpoint, form)
        assert self.authorization is not None
        form = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": self.authorization.device_code,
            "client_id": self.client_id,
        }
        return Send("token", "POST", self.metadata.token_endpoint, form)

    def restart(self) -> None:
        """After a refusal (a key was pressed): start over with a new code."""
        self.denied = False
        self._new_code()

    def answer(self, step: Step, status: int, body: bytes, now: float) -> None:
        """The answer to the :class:`Send` of ``step``."""
        try:
            if step == "metadata":
                if status != 200:
                    raise OAuthError(f"the OAuth metadata answered {status}")
                self.metadata = ServerMetadata.from_bytes(body)
                self.step = "device"
                self.backoff.reset()
            elif step == "device":
                self._device(status, body, now)
            else:
                self._token(status, body, now)
        except OAuthError as exc:
            self.failed(PROVIDER_ERROR, str(exc), now)

    def failed(self, reason: str, detail: str, now: float) -> None:
        """The request got no usable answer: say ``reason``, retry after the back-off."""
        delay = self.backoff.next_delay()
        if self.step == "token":
            delay = max(delay, self.interval)  # never poll faster than the interval
        log.warning("event=login_failed step=%s reason=%r retry_in=%g", self.step, detail, delay)
        self.not_before = now + delay
        if self.step != "token":
            # While a code is shown, a poll that failed once leaves it up: it is still good.
            self._notice = ShowProblem(reason, round(delay))

    def _device(self, status: int, body: bytes, now: float) -> None:
        if status != 200:
            error = error_of_bytes(status, body)
            raise OAuthError(f"the device authorization was refused: {error}")
        auth = DeviceAuthorization.from_bytes(body)
        self.authorization = auth
        self.interval = float(auth.interval)
        self.expires_at = now + auth.expires_in
        self.not_before = now + self.interval
        self.step = "token"
        self.codes += 1
        self.backoff.reset()
        self._notice = ShowCode(auth)
        log.info(
            "event=login_code user_code=%s url=%s expires_in=%d interval=%d",
            auth.user_code,
            auth.shown_uri,
            auth.expires_in,
            auth.interval,
        )

    def _token(self, status: int, body: bytes, now: float) -> None:
        if status == 200:
            self._done = LoggedIn(TokenResponse.from_bytes(body), now)
            self.backoff.reset()
            return
        error = error_of_bytes(status, body)
        self.backoff.reset()
        if error == "authorization_pending":
            self.not_before = now + self.interval
        elif error == "slow_down":
            self.interval += SLOW_DOWN_S
            self.not_before = now + self.interval
            log.info("event=login_slow_down interval=%g", self.interval)
        elif error == "expired_token":
            log.info("event=login_code_expired")
            self._new_code()
        elif error == "access_denied":
            log.info("event=login_refused")
            self.denied = True
            self._notice = ShowProblem(LOGIN_REFUSED, 0)
        else:
            raise OAuthError(f"the token endpoint answered {status} {error}")

    def _new_code(self) -> None:
        self.step = "device"
        self.authorization = None
        self.not_before = 0.0


def error_of_bytes(status: int, body: bytes) -> str:
    """The ``error`` code of an OAuth error answer (raises :class:`OAuthError` for garbage)."""
    return error_of(HttpsResponse(status, {}, body)).error


class DeviceLogin:
    """Runs :class:`DevicePoll` until the phone has tokens; feeds the phone machine its screens.

    ``clock`` is monotonic; key presses (:meth:`on_input`, subscribed to the
    inputs bus) restart a refused login.
    """

    def __init__(
        self,
        server: OAuthServer,
        device_name: str,
        feed: Callable[[Input], object],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.server = server
        self.device_name = device_name
        self._feed = feed
        self._clock = clock
        self._sleep = sleep
        self._key = asyncio.Event()
        self.poll: DevicePoll | None = None

    def on_input(self, value: Input) -> bool:
        """A key, button or lifted handset: the user is there (restarts a refused login).

        True when it does restart one: the press was for the login, not the machine.
        """
        if isinstance(value, Key | Button | HookOff):
            waiting = self.poll is not None and self.poll.denied
            self._key.set()
            return waiting
        return False

    async def run(self) -> LoggedIn:
        """Log in; returns the token response (the caller saves it)."""
        self.server.forget()
        poll = self.poll = DevicePoll(
            self.server.client_id, self.device_name, self.server.metadata_url
        )
        self._feed(LineOffline("logging in", registering=True))
        while True:
            now = self._clock()
            action = poll.action(now)
            if isinstance(action, LoggedIn):
                log.info("event=logged_in")
                return action
            if isinstance(action, Wait):
                await self._sleep(max(0.0, action.until - now))
            elif isinstance(action, ShowCode):
                auth = action.authorization
                self._feed(Provisioning(auth.shown_uri, auth.user_code, auth.expires_in))
            elif isinstance(action, ShowProblem):
                if action.reason == LOGIN_REFUSED:
                    self._feed(LineOffline(REFUSED_HINT))
                else:
                    self._feed(LineOffline(action.reason, retry_in_s=action.retry_in_s))
            elif isinstance(action, WaitForKey):
                self._key.clear()
                await self._key.wait()
                poll.restart()
            else:
                await self._send(poll, action)

    async def _send(self, poll: DevicePoll, send: Send) -> None:
        try:
            if send.method == "GET":
                response = await self.server.https.request("GET", send.url)
            else:
                assert send.form is not None
                response = await self.server.post_form(send.url, send.form)
        except HttpsError as exc:
            poll.failed(plain_reason(exc), str(exc), self._clock())
            return
        poll.answer(send.step, response.status, response.body, self._clock())
