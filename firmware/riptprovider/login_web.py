"""The login's HTTP resources, the same over HTTPS/1.1 (:mod:`riptprovider.https`) and HTTP/3.

:class:`LoginWeb` maps one decoded request (:class:`WebRequest`) onto the
core's :class:`~riptprovider.oauth.Issuer` and answers a :class:`WebReply`:

* ``GET /.well-known/ript-oauth`` — the RFC 8414 metadata;
* ``POST /oauth/device``, ``POST /oauth/token`` — forms in, JSON out, errors
  as RFC 6749 section 5.2 JSON (``400``; ``503`` ``temporarily_unavailable``);
* ``GET /device``, ``GET /D/{CODE}``, ``POST /device`` — the verification
  page (:mod:`riptprovider.device_page`).

Paths it does not know answer None, so the caller tries its own.  Token
responses carry ``Cache-Control: no-store`` (RFC 6749 section 5.1).  No
form value, token or password is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ript.protocol.oauth import FORM, METADATA_PATH, ErrorResponse, OAuthError, form_decode
from riptprovider.device_page import PAGE_HEADERS, consent_page, result_page, sign_in_page
from riptprovider.oauth import Issuer, IssuerRefusalError, SignInError

log = logging.getLogger(__name__)

JSON = "application/json"
HTML = "text/html; charset=utf-8"
DEVICE_PATH = "/device"
SHORT_PREFIX = "/D/"
NO_STORE = (("cache-control", "no-store"), ("pragma", "no-cache"))


@dataclass(frozen=True, slots=True)
class WebRequest:
    """One request: method, path (no query), query string, lower-case headers, whole body."""

    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class WebReply:
    """One answer: status, body, content type and extra headers."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def is_login_path(path: str) -> bool:
    """Whether ``path`` is one of :class:`LoginWeb`'s (they need no bearer token)."""
    return path in (
        METADATA_PATH,
        "/oauth/device",
        "/oauth/token",
        DEVICE_PATH,
    ) or path.upper().startswith(SHORT_PREFIX)


def _text(status: int, message: str, allow: str | None = None) -> WebReply:
    headers = (("allow", allow),) if allow else ()
    return WebReply(status, (message + "\n").encode(), "text/plain; charset=utf-8", headers)


def _oauth_error(refusal: IssuerRefusalError) -> WebReply:
    body = ErrorResponse(refusal.error, refusal.description).to_bytes()
    return WebReply(refusal.status, body, JSON, NO_STORE)


def _page(body: bytes, status: int = 200) -> WebReply:
    return WebReply(status, body, HTML, PAGE_HEADERS)


class LoginWeb:
    """The login resources of one provider, over the core's issuer."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer

    async def answer(self, request: WebRequest) -> WebReply | None:
        """The reply to ``request``, or None when its path is not a login path."""
        path, method = request.path, request.method
        if path == METADATA_PATH:
            if method not in ("GET", "HEAD"):
                return _text(405, f"{method} is not allowed here", "GET")
            return WebReply(200, self.issuer.metadata().to_bytes(), JSON)
        if path in ("/oauth/device", "/oauth/token"):
            if method != "POST":
                return _text(405, f"{method} is not allowed here", "POST")
            return self._endpoint(request)
        if path == DEVICE_PATH:
            if method == "GET":
                code = _query_code(request.query)
                return self._code_page(code) if code else _page(sign_in_page())
            if method == "POST":
                return await self._post_page(request)
            return _text(405, f"{method} is not allowed here", "GET, POST")
        if path.upper().startswith(SHORT_PREFIX):
            if method != "GET":
                return _text(405, f"{method} is not allowed here", "GET")
            return self._code_page(path[len(SHORT_PREFIX) :])
        return None

    def _endpoint(self, request: WebRequest) -> WebReply:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if ctype != FORM:
                raise IssuerRefusalError("invalid_request", f"the body must be {FORM}")
            try:
                form = form_decode(request.body)
            except OAuthError as exc:
                raise IssuerRefusalError("invalid_request", str(exc)) from None
            if request.path == "/oauth/device":
                return WebReply(200, self.issuer.authorize_device(form).to_bytes(), JSON, NO_STORE)
            return WebReply(200, self.issuer.token(form).to_bytes(), JSON, NO_STORE)
        except IssuerRefusalError as refusal:
            return _oauth_error(refusal)

    def _code_page(self, code: str) -> WebReply:
        """The sign-in page with ``code`` filled in, or with why it cannot be used."""
        try:
            shown = self.issuer.code_for_page(code).user_code
        except SignInError as exc:
            return _page(sign_in_page(code, error=str(exc)))
        return _page(sign_in_page(shown))

    async def _post_page(self, request: WebRequest) -> WebReply:
        try:
            form = form_decode(request.body)
        except OAuthError:
            return _page(sign_in_page(error="The form could not be read; try again."), 400)
        code = form.get("user_code", "")
        step = form.get("step")
        if step == "decide":
            decision = form.get("decision")
            if decision not in ("approve", "deny"):
                # Never read a missing answer as either: the user must press a button.
                error = "The page sent neither Approve nor Deny; sign in again."
                return _page(sign_in_page(code, error=error), 400)
            approve = decision == "approve"
            try:
                self.issuer.decide(code, form.get("csrf", ""), approve)
            except SignInError as exc:
                return _page(sign_in_page(code, error=str(exc)))
            return _page(result_page(approve))
        account = form.get("account", "")
        if step != "sign-in":
            return _page(sign_in_page(code, account, "The form could not be read; try again."))
        try:
            # scrypt takes a tenth of a second: not on the event loop.
            consent = await asyncio.to_thread(
                self.issuer.sign_in, code, account, form.get("password", "")
            )
        except SignInError as exc:
            return _page(sign_in_page(code, account, str(exc)))
        return _page(
            consent_page(consent.user_code, consent.device_name, consent.account.id, consent.token)
        )


def _query_code(query: str) -> str:
    """``user_code`` of the query string (RFC 8628 section 3.3.1's usual form), if any."""
    try:
        return form_decode(query.encode("utf-8")).get("user_code", "") if query else ""
    except OAuthError:
        return ""
