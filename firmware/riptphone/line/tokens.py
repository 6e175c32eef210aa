"""Staying logged in: the provider's OAuth endpoints and the phone's OAuth credentials.

* :class:`OAuthServer`: the metadata (``/.well-known/ript-oauth``, fetched
  once and kept) and the refresh grant, over :mod:`riptphone.net.https`;
* :class:`OAuthCredentials`: the :class:`~riptphone.net.ript_client.Credentials`
  of a phone that logged in with the device flow (:mod:`riptphone.line.login`).
  :meth:`~OAuthCredentials.token` refreshes ahead of expiry,
  :meth:`~OAuthCredentials.refresh` on a ``401``; callers that need a refresh
  at the same moment share one (single flight); a rotated refresh token is
  saved (atomically, mode 0600) before it is used.  An answer lost before the
  save (a power cut, a failed write) costs nothing: the next refresh presents
  the previous token, which the provider honours while its successor is unused
  (docs/provider-oauth.md, "Rotation and lost answers").  A refresh answered
  ``invalid_grant`` ends the login: the tokens are forgotten and
  :attr:`~OAuthCredentials.ended` is set, and the phone goes back to provisioning (keeping
  its handler registration).  Any other failure (provider unreachable,
  garbage) keeps the tokens and is retried later.

No token ever appears in a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from ript.protocol.oauth import (
    FORM,
    METADATA_PATH,
    REFRESH_GRANT,
    ErrorResponse,
    OAuthError,
    ServerMetadata,
    TokenResponse,
    form_encode,
)
from riptphone.net.https import HttpsClient, HttpsError, HttpsResponse
from riptphone.net.ript_client import RiptError
from riptphone.store import Tokens

log = logging.getLogger("riptphone.tokens")

MIN_MARGIN_S = 60.0
"""Refresh at the latest this long before the access token expires..."""
MARGIN_FRACTION = 0.1
"""...or when less than this part of its lifetime is left, whichever comes first."""


class InvalidGrantError(Exception):
    """The refresh token is no longer good (``invalid_grant``): the login is over."""


class OAuthServer:
    """The OAuth endpoints of one provider domain, for one ``client_id``."""

    def __init__(self, https: HttpsClient, domain: str, client_id: str) -> None:
        self.https = https
        self.domain = domain
        self.client_id = client_id
        self.metadata_url = f"https://{domain}{METADATA_PATH}"
        self._metadata: ServerMetadata | None = None

    def forget(self) -> None:
        """Fetch the metadata anew next time (a login starts over)."""
        self._metadata = None

    async def metadata(self) -> ServerMetadata:
        """The metadata document; raises :class:`HttpsError` or :class:`OAuthError`."""
        if self._metadata is None:
            response = await self.https.request("GET", self.metadata_url)
            if response.status != 200:
                raise OAuthError(f"{self.metadata_url} answered {response.status}")
            self._metadata = ServerMetadata.from_bytes(response.body)
        return self._metadata

    async def post_form(self, url: str, fields: dict[str, str]) -> HttpsResponse:
        return await self.https.request(
            "POST",
            url,
            headers={"content-type": FORM, "accept": "application/json"},
            body=form_encode(fields),
        )

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """The refresh grant: new tokens, or :class:`InvalidGrantError`, :class:`HttpsError`,
        :class:`OAuthError` (garbage, another error)."""
        metadata = await self.metadata()
        response = await self.post_form(
            metadata.token_endpoint,
            {
                "grant_type": REFRESH_GRANT,
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            },
        )
        if response.status == 200:
            return TokenResponse.from_bytes(response.body)
        error = error_of(response)
        if error.error == "invalid_grant":
            raise InvalidGrantError(error.description or "the refresh token is no longer good")
        raise OAuthError(f"the token endpoint answered {response.status} {error.error}")


def error_of(response: HttpsResponse) -> ErrorResponse:
    """The RFC 6749 error of a non-200 answer; raises :class:`OAuthError` for anything else."""
    try:
        return ErrorResponse.from_bytes(response.body)
    except OAuthError as exc:
        raise OAuthError(f"answer {response.status} without an OAuth error: {exc}") from None


def tokens_from(response: TokenResponse, wall: float, previous: Tokens | None = None) -> Tokens:
    """The stored tokens of a token response received at ``wall`` (Unix time).

    A refresh that names no new refresh token keeps the old one (RFC 6749 section 6).
    """
    refresh = response.refresh_token
    if refresh is None and previous is not None:
        refresh = previous.refresh_token
    lifetime = response.expires_in if response.expires_in is not None else 3600
    return Tokens(
        access_token=response.access_token, refresh_token=refresh, expires_at=wall + lifetime
    )


def refresh_margin(lifetime: float | None) -> float:
    """How long before expiry :meth:`OAuthCredentials.token` refreshes."""
    if lifetime is None:
        return MIN_MARGIN_S
    # Never more than half the lifetime: a short-lived token is not refreshed all the time.
    return min(max(lifetime * MARGIN_FRACTION, MIN_MARGIN_S), lifetime / 2)


class OAuthCredentials:
    """Bearer tokens from the device flow, kept fresh; see the module docstring."""

    def __init__(
        self,
        server: OAuthServer,
        save: Callable[[Tokens], Awaitable[None]],
        forget: Callable[[], Awaitable[None]],
        *,
        tokens: Tokens | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self._save = save
        self._forget = forget
        self._tokens = tokens
        self._lifetime: float | None = None  # unknown for tokens read back from the store
        self.ended = asyncio.Event()
        """Set when a refresh was answered ``invalid_grant``: log in again."""
        self._wall = wall
        self._flight: asyncio.Future[bool] | None = None
        self.refreshes = 0

    @property
    def logged_in(self) -> bool:
        return self._tokens is not None

    async def set(self, tokens: Tokens, lifetime: float | None = None) -> None:
        """Take the tokens of a new login; they are saved before they are used."""
        await self._save(tokens)
        self._tokens, self._lifetime = tokens, lifetime
        self.ended.clear()

    def drop(self) -> None:
        """Forget the tokens in memory (a factory reset wipes the store)."""
        self._tokens = None

    async def token(self) -> str:
        tokens = self._tokens
        if tokens is None:
            raise RiptError("the phone is not logged in", 401)
        if tokens.expires_at - self._wall() < refresh_margin(self._lifetime):
            try:
                await self.refresh()
            except RiptError:
                if tokens.expires_at <= self._wall():
                    raise
                # Not expired yet: use it, and try the refresh again on the next request.
            tokens = self._tokens
            if tokens is None:
                raise RiptError("the phone's login has ended", 401)
        return tokens.access_token

    async def refresh(self) -> bool:
        """One refresh for every caller that asks while it runs; True if there is a new token.

        A failure other than ``invalid_grant`` raises :class:`RiptError` (the
        caller retries later, as after any network failure); the tokens stay.
        """
        if self._flight is None:
            self._flight = asyncio.ensure_future(self._refresh())
            self._flight.add_done_callback(self._landed)
        return await asyncio.shield(self._flight)

    def _landed(self, flight: asyncio.Future[bool]) -> None:
        if self._flight is flight:
            self._flight = None
        if not flight.cancelled():
            flight.exception()  # retrieved: each caller gets it from its own await

    async def _refresh(self) -> bool:
        tokens = self._tokens
        if tokens is None or tokens.refresh_token is None:
            return False
        try:
            response = await self.server.refresh(tokens.refresh_token)
        except InvalidGrantError as exc:
            log.warning("event=logged_out reason=%r", f"refresh refused: {exc}")
            if self._tokens is tokens:
                self._tokens = None
                await self._forget()
                self.ended.set()
            return False
        except (HttpsError, OAuthError) as exc:
            log.warning("event=refresh_failed reason=%r", str(exc))
            raise RiptError(f"refreshing the login failed: {exc}") from exc
        fresh = tokens_from(response, self._wall(), tokens)
        # Saved before use: a rotated refresh token lost in a power cut would end the login.
        await self._save(fresh)
        self._tokens, self._lifetime = fresh, response.expires_in
        self.refreshes += 1
        log.info("event=refreshed expires_in=%s", response.expires_in)
        return True
