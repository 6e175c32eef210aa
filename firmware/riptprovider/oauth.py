"""The reference provider's OAuth authority: device codes, grants, tokens, rotation (no HTTP).

It implements the login of profile section 2 (RFC 8628 device authorization
grant, RFC 6749 refresh grant with RFC 9700 rotation) on the provider's
SQLite file (:class:`~riptprovider.db.ProviderDb`), with the core's injected
wall clock (Unix seconds), so that every code and token survives a restart
and a test can move time.  The HTTP layers (:mod:`riptprovider.login_web`)
only decode forms and encode the documents of :mod:`ript.protocol.oauth`.

What is stored:

* a *device code* row per ``POST /oauth/device``: the SHA-256 of the device
  code, the user code (8 letters of :data:`USER_CODE_ALPHABET`), the client,
  the device's name, its expiry and polling interval (grown by ``slow_down``),
  the last poll, its status (``pending``, ``approved``, ``denied``, ``used``,
  ``dead`` after :data:`MAX_FAILED_SIGN_INS`), and the sign-in's one-time
  consent token (SHA-256) for the page's Approve/Deny form;
* a *login* per approved code that was exchanged for tokens: the family of
  refresh tokens and access tokens one device holds; revoked as a whole when
  a rotated refresh token is used again after its successor was used, or
  after :attr:`IssuerSettings.refresh_reuse_grace` (RFC 9700 section 4.14.2);
  before that, it is a lost answer and honoured again (see
  :meth:`Issuer._refresh_grant` and docs/provider-oauth.md);
* access tokens (the ``tokens`` table the core authenticates with) and
  refresh tokens, as SHA-256 only.

Refusals on the token and device endpoints raise :class:`IssuerRefusalError` (the
RFC 6749 section 5.2 error code); refusals on the verification page and the
admin commands raise :class:`SignInError` (one sentence for a person).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ript.protocol.oauth import (
    DEVICE_CODE_GRANT,
    REFRESH_GRANT,
    SCOPE,
    SLOW_DOWN_S,
    DeviceAuthorization,
    ServerMetadata,
    TokenResponse,
)
from riptprovider.accounts import Account
from riptprovider.db import ProviderDb, token_hash
from riptprovider.passwords import PasswordHashError, hash_password, verify_password

log = logging.getLogger(__name__)

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
"""RFC 8628 section 6.1: no vowels (no words), no digits (no 0/O, 1/I)."""
USER_CODE_LENGTH = 8
MAX_FAILED_SIGN_INS = 5
"""Failed sign-ins (wrong account or password) a code survives; then it is dead."""
MAX_PENDING_CODES = 1000
"""Device codes alive at once; more answer ``temporarily_unavailable`` (a flood fills no disk)."""
POLL_LEEWAY = 0.25
"""Seconds a poll may come early without ``slow_down``: network jitter between two polls."""
MAX_DEVICE_NAME = 64
"""Characters of ``device_name`` kept (the page shows it; the rest is cut)."""
MAX_CLIENT_ID = 128
PRUNE_AFTER = 86400.0
"""Seconds after expiry a device code or token row is deleted."""

_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Checked against when the account is unknown, so a wrong account id takes as long."""


class IssuerRefusalError(Exception):
    """An RFC 6749 section 5.2 error: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class SignInError(Exception):
    """The verification page's or the admin's refusal: one sentence for a person."""


@dataclass(frozen=True, slots=True)
class IssuerSettings:
    """The ``[oauth]`` section: allowed clients and lifetimes in seconds."""

    client_ids: tuple[str, ...] = ("ript-phone",)
    access_token_lifetime: int = 3600
    refresh_token_lifetime: int = 30 * 86400
    device_code_lifetime: int = 600
    poll_interval: int = 5
    refresh_reuse_grace: int = 86400
    """Seconds a rotated refresh token may be presented again while its successor is unused."""


@dataclass(frozen=True, slots=True)
class CodeForPage:
    """What the verification page shows of a live code."""

    user_code: str
    device_name: str | None


@dataclass(frozen=True, slots=True)
class Consent:
    """A successful sign-in: who signed in for which code, and the one-time Approve/Deny token."""

    user_code: str
    device_name: str | None
    account: Account
    token: str


def normalize_user_code(text: str) -> str | None:
    """``bcdf-ghjk``, ``BCDFGHJK``, ``bcdf ghjk`` -> ``BCDFGHJK``; None when it is not a code."""
    code = "".join(text.split()).replace("-", "").upper()
    if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def display_user_code(code: str) -> str:
    """``BCDFGHJK`` -> ``BCDF-GHJK`` (RFC 8628 section 6.1: easier to read and type)."""
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


class Issuer:
    """The OAuth authority of one provider: ``origin`` is ``https://host[:port]``."""

    def __init__(
        self,
        db: ProviderDb,
        accounts: Mapping[str, Account],
        origin: str,
        clock: Callable[[], float],
        settings: IssuerSettings | None = None,
    ) -> None:
        self.db = db
        self._accounts = accounts
        self.origin = origin.rstrip("/")
        self._clock = clock
        self.settings = settings or IssuerSettings()
        # One device code's poll, sign-in or decision at a time (the db lock
        # covers single statements; these read, decide, then write).
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ documents

    def metadata(self) -> ServerMetadata:
        return ServerMetadata(
            issuer=self.origin,
            device_authorization_endpoint=f"{self.origin}/oauth/device",
            token_endpoint=f"{self.origin}/oauth/token",
        )

    @property
    def verification_uri(self) -> str:
        return f"{self.origin}/device"

    def verification_uri_complete(self, code: str) -> str:
        # Upper case throughout: QR alphanumeric mode (profile section 2, step 3).
        return f"{self.origin.upper()}/D/{code}"

    # ------------------------------------------------------------------ device endpoint

    def _client(self, form: Mapping[str, str]) -> str:
        client_id = form.get("client_id", "")
        if not client_id:
            raise IssuerRefusalError("invalid_request", "client_id is required")
        if client_id not in self.settings.client_ids:
            # 400, not 401: a public client presents no credentials (profile section 2).
            raise IssuerRefusalError("invalid_client", "this client_id is not known here")
        return client_id

    def authorize_device(self, form: Mapping[str, str]) -> DeviceAuthorization:
        """``POST /oauth/device``: a new device code and user code."""
        client_id = self._client(form)
        scope = form.get("scope", SCOPE)
        if scope.split() != [SCOPE]:
            raise IssuerRefusalError("invalid_scope", f"the only scope is {SCOPE!r}")
        name = " ".join(form.get("device_name", "").split())[:MAX_DEVICE_NAME] or None
        settings = self.settings
        now = self._clock()
        device_code = secrets.token_urlsafe(32)
        with self._lock, self.db.transaction() as conn:
            self._prune(conn, now)
            (alive,) = conn.execute(
                "SELECT count(*) FROM device_codes WHERE expires > ? AND status = 'pending'",
                (now,),
            ).fetchone()
            if alive >= MAX_PENDING_CODES:
                raise IssuerRefusalError(
                    "temporarily_unavailable", "too many logins are in progress; try later", 503
                )
            while True:
                code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
                taken = conn.execute(
                    "SELECT 1 FROM device_codes WHERE user_code = ?", (code,)
                ).fetchone()
                if taken is None:
                    break
            conn.execute(
                "INSERT INTO device_codes (device_sha256, user_code, client_id, device_name, "
                "created, expires, interval, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending')",
                (
                    token_hash(device_code),
                    code,
                    client_id,
                    name,
                    now,
                    now + settings.device_code_lifetime,
                    settings.poll_interval,
                ),
            )
        log.info("device code issued for %s (%s)", client_id, name or "no name")
        return DeviceAuthorization(
            device_code=device_code,
            user_code=display_user_code(code),
            verification_uri=self.verification_uri,
            verification_uri_complete=self.verification_uri_complete(code),
            expires_in=settings.device_code_lifetime,
            interval=settings.poll_interval,
        )

    @staticmethod
    def _prune(conn: sqlite3.Connection, now: float) -> None:
        old = now - PRUNE_AFTER
        conn.execute("DELETE FROM device_codes WHERE expires < ?", (old,))
        conn.execute("DELETE FROM tokens WHERE login IS NOT NULL AND expires < ?", (old,))
        conn.execute("DELETE FROM refresh_tokens WHERE expires < ?", (old,))

    # ------------------------------------------------------------------ token endpoint

    def token(self, form: Mapping[str, str]) -> TokenResponse:
        """``POST /oauth/token``: either grant; raise :class:`IssuerRefusalError`."""
        grant = form.get("grant_type", "")
        if grant == DEVICE_CODE_GRANT:
            return self._device_grant(self._client(form), form.get("device_code", ""))
        if grant == REFRESH_GRANT:
            client_id = self._client(form)
            scope = form.get("scope")
            if scope is not None and scope.split() != [SCOPE]:
                raise IssuerRefusalError("invalid_scope", f"the only scope is {SCOPE!r}")
            return self._refresh_grant(client_id, form.get("refresh_token", ""))
        if not grant:
            raise IssuerRefusalError("invalid_request", "grant_type is required")
        raise IssuerRefusalError("unsupported_grant_type", "this grant_type is not supported here")

    def _device_grant(self, client_id: str, device_code: str) -> TokenResponse:
        if not device_code:
            raise IssuerRefusalError("invalid_request", "device_code is required")
        now = self._clock()
        digest = token_hash(device_code)
        with self._lock:
            rows = self.db.read(
                "SELECT client_id, device_name, expires, interval, last_poll, status, account "
                "FROM device_codes WHERE device_sha256 = ?",
                (digest,),
            )
            if not rows:
                raise IssuerRefusalError("invalid_grant", "this device code is not known")
            owner, name, expires, interval, last_poll, status, account_id = rows[0]
            if owner != client_id:
                raise IssuerRefusalError(
                    "invalid_grant", "this device code was issued to another client"
                )
            if status == "used":
                raise IssuerRefusalError("invalid_grant", "this device code was already used")
            if now >= expires:
                raise IssuerRefusalError("expired_token", "the device code expired; start again")
            if status in ("denied", "dead"):
                raise IssuerRefusalError("access_denied", "the user refused this login")
            if status == "approved":
                account = self._accounts.get(account_id)
                with self.db.transaction() as conn:
                    conn.execute(
                        "UPDATE device_codes SET status = 'used', last_poll = ? "
                        "WHERE device_sha256 = ?",
                        (now, digest),
                    )
                    if account is None:
                        raise IssuerRefusalError("invalid_grant", "the approving account is gone")
                    login = str(uuid.uuid4())
                    conn.execute(
                        "INSERT INTO logins VALUES (?, ?, ?, ?, ?, NULL)",
                        (login, account.id, client_id, name, now),
                    )
                    tokens = self._issue(conn, account.id, login, now)
                log.info("login %s: tokens issued to %s for account %s", login, name, account.id)
                return tokens
            early = last_poll is not None and now - last_poll < interval - POLL_LEEWAY
            new_interval = interval + SLOW_DOWN_S if early else interval
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE device_codes SET last_poll = ?, interval = ? WHERE device_sha256 = ?",
                    (now, new_interval, digest),
                )
            if early:
                raise IssuerRefusalError(
                    "slow_down", f"poll at most every {new_interval} s (the interval grew by 5 s)"
                )
            raise IssuerRefusalError("authorization_pending", "the user has not answered yet")

    def _issue(
        self, conn: sqlite3.Connection, account_id: str, login: str, now: float
    ) -> TokenResponse:
        settings = self.settings
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        conn.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?, ?)",
            (token_hash(access), account_id, now, now + settings.access_token_lifetime, login),
        )
        conn.execute(
            "INSERT INTO refresh_tokens (token_sha256, login, created, expires) "
            "VALUES (?, ?, ?, ?)",
            (token_hash(refresh), login, now, now + settings.refresh_token_lifetime),
        )
        return TokenResponse(
            access_token=access,
            expires_in=settings.access_token_lifetime,
            refresh_token=refresh,
            scope=SCOPE,
        )

    def _refresh_grant(self, client_id: str, refresh_token: str) -> TokenResponse:
        if not refresh_token:
            raise IssuerRefusalError("invalid_request", "refresh_token is required")
        now = self._clock()
        digest = token_hash(refresh_token)
        with self._lock:
            rows = self.db.read(
                # s.token_sha256, not r.successor: a successor row already pruned is none.
                "SELECT r.login, r.expires, r.used, s.token_sha256, s.used, l.account, "
                "l.client_id, l.revoked FROM refresh_tokens r JOIN logins l ON r.login = l.id "
                "LEFT JOIN refresh_tokens s ON s.token_sha256 = r.successor "
                "WHERE r.token_sha256 = ?",
                (digest,),
            )
            if not rows:
                raise IssuerRefusalError("invalid_grant", "this refresh token is not known")
            login, expires, used, successor, successor_used, account_id, owner, revoked = rows[0]
            if revoked is not None:
                raise IssuerRefusalError("invalid_grant", "this login was ended; log in again")
            lost_answer = (
                used is not None
                and successor is not None
                and successor_used is None
                and now - used < self.settings.refresh_reuse_grace
            )
            if used is not None and not lost_answer:
                # A rotated token came back after its successor was used (or superseded,
                # or after the grace): two holders of one family, and nobody can tell the
                # thief from the owner: end the login (RFC 9700 section 4.14.2).
                self._revoke(login, now)
                log.warning("login %s: a rotated refresh token was used again; login ended", login)
                raise IssuerRefusalError("invalid_grant", "this refresh token was already used")
            if now >= expires:
                raise IssuerRefusalError(
                    "invalid_grant", "this refresh token expired; log in again"
                )
            if owner != client_id:
                raise IssuerRefusalError(
                    "invalid_grant", "this refresh token belongs to another client"
                )
            if account_id not in self._accounts:
                raise IssuerRefusalError("invalid_grant", "the login's account is gone")
            with self.db.transaction() as conn:
                if lost_answer:
                    # The device never stored the answer (a power cut between our commit
                    # and its save): honour the old token once more.  The unredeemed
                    # successor is superseded (used, no successor of its own), so the
                    # family keeps one live refresh token, and if that answer did arrive
                    # after all (a thief replayed the old token), its holder's next
                    # refresh is a replay that ends the login.
                    conn.execute(
                        "UPDATE refresh_tokens SET used = ? WHERE token_sha256 = ?",
                        (now, successor),
                    )
                    log.info("login %s: a refresh answer was lost; the old token honoured", login)
                tokens = self._issue(conn, account_id, login, now)
                assert tokens.refresh_token is not None
                # ``used`` keeps the first rotation's time: the grace never grows.
                conn.execute(
                    "UPDATE refresh_tokens SET used = coalesce(used, ?), successor = ? "
                    "WHERE token_sha256 = ?",
                    (now, token_hash(tokens.refresh_token), digest),
                )
                return tokens

    def _revoke(self, login: str, now: float) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE logins SET revoked = ? WHERE id = ? AND revoked IS NULL", (now, login)
            )

    # ------------------------------------------------------------------ verification page

    def _live_code(self, user_code: str) -> tuple[str | None, str, int, str | None, str | None]:
        """``(device name, status, failures, consent hash, consent account)`` of a live code."""
        code = normalize_user_code(user_code)
        if code is None:
            raise SignInError("That is not a code: it is 8 letters, like BCDF-GHJK.")
        rows = self.db.read(
            "SELECT device_name, status, failures, consent_sha256, consent_account, expires "
            "FROM device_codes WHERE user_code = ?",
            (code,),
        )
        if not rows or rows[0][5] <= self._clock():
            raise SignInError("That code is not known or has expired; the phone shows a new one.")
        name, status, failures, consent, consent_account, _ = rows[0]
        if status == "dead":
            raise SignInError("That code was tried too often; the phone must show a new one.")
        if status != "pending":
            raise SignInError("That code was already answered.")
        return name, status, failures, consent, consent_account

    def code_for_page(self, user_code: str) -> CodeForPage:
        """The live, unanswered code ``user_code`` (any case, dash optional); or SignInError."""
        with self._lock:
            name = self._live_code(user_code)[0]
        code = normalize_user_code(user_code)
        assert code is not None
        return CodeForPage(display_user_code(code), name)

    def sign_in(self, user_code: str, account_id: str, password: str) -> Consent:
        """Check the account's password for a live code; the consent to approve or deny.

        Slow on purpose (scrypt): call it off the event loop.  Every failure
        counts against the code; after :data:`MAX_FAILED_SIGN_INS` it is dead.
        """
        with self._lock:
            name = self._live_code(user_code)[0]
        code = normalize_user_code(user_code)
        assert code is not None
        account = self._accounts.get(account_id.strip())
        stored = account.password if account is not None else None
        try:
            ok = verify_password(password, stored or _DUMMY_HASH) and stored is not None
        except PasswordHashError:  # checked when the configuration was read
            ok = False
        with self._lock:
            failures = self._live_code(code)[2]  # still live after the slow check?
            if not ok or account is None:
                failures += 1
                status = "dead" if failures >= MAX_FAILED_SIGN_INS else "pending"
                with self.db.transaction() as conn:
                    conn.execute(
                        "UPDATE device_codes SET failures = ?, status = ?, consent_sha256 = NULL "
                        "WHERE user_code = ?",
                        (failures, status, code),
                    )
                log.info("verification page: failed sign-in %d for a code", failures)
                if status == "dead":
                    raise SignInError(
                        "Too many failed sign-ins: this code no longer works; the phone must "
                        "show a new one."
                    )
                # One sentence for every cause: the page must not tell which accounts exist.
                raise SignInError("The account or the password is wrong.")
            token = secrets.token_urlsafe(24)
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE device_codes SET consent_sha256 = ?, consent_account = ? "
                    "WHERE user_code = ?",
                    (token_hash(token), account.id, code),
                )
        return Consent(display_user_code(code), name, account, token)

    def decide(self, user_code: str, consent_token: str, approve: bool) -> Account:
        """Approve or deny with the one-time token from :meth:`sign_in`; the account."""
        with self._lock:
            _, _, _, consent, account_id = self._live_code(user_code)
            code = normalize_user_code(user_code)
            assert code is not None
            if consent is None or not secrets.compare_digest(consent, token_hash(consent_token)):
                raise SignInError("This page is out of date; sign in again.")
            account = self._accounts.get(account_id or "")
            if account is None:
                raise SignInError("This account is gone; sign in again.")
            self._answer(code, account.id if approve else None)
            return account

    def _answer(self, code: str, account_id: str | None) -> None:
        status = "denied" if account_id is None else "approved"
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE device_codes SET status = ?, account = ?, consent_sha256 = NULL "
                "WHERE user_code = ?",
                (status, account_id, code),
            )
        log.info("device code %s", status)

    # ------------------------------------------------------------------ admin

    def admin_approve(self, user_code: str, account_id: str) -> str:
        """Approve a live code for an account without a password; the code shown ``XXXX-XXXX``."""
        with self._lock:
            self._live_code(user_code)
            if account_id not in self._accounts:
                raise SignInError(f"there is no account {account_id!r}")
            code = normalize_user_code(user_code)
            assert code is not None
            self._answer(code, account_id)
        return display_user_code(code)

    def admin_deny(self, user_code: str) -> str:
        with self._lock:
            self._live_code(user_code)
            code = normalize_user_code(user_code)
            assert code is not None
            self._answer(code, None)
        return display_user_code(code)
