"""The provider's OAuth authority (riptprovider.oauth) on a real SQLite file with a fake clock.

Every grant and error path of profile section 2: device authorization,
authorization_pending, slow_down (remembered), access_denied, expired_token,
invalid_grant, refresh rotation and reuse revocation, token -> account,
persistence across a reopened database, the page's sign-in and its limits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ript.protocol.oauth import DEVICE_CODE_GRANT, DeviceAuthorization, TokenResponse
from riptprovider.accounts import AccountsError, load_accounts
from riptprovider.core import ProviderCore
from riptprovider.db import SCHEMA_VERSION, ProviderDb
from riptprovider.oauth import (
    IssuerRefusalError,
    IssuerSettings,
    SignInError,
    display_user_code,
    normalize_user_code,
)
from riptprovider.passwords import (
    PasswordHashError,
    check_password_hash,
    hash_password,
    verify_password,
)

ORIGIN = "https://provider.test:4433"
PASSWORD = "correct horse battery"
# Cheap costs keep the tests fast; the format and the check are the same.
HASH = hash_password(PASSWORD, n=2**10)
STATIC = "alice-static-token-0123"
SETTINGS = IssuerSettings(
    client_ids=("ript-phone", "other-client"),
    access_token_lifetime=60,
    refresh_token_lifetime=600,
    device_code_lifetime=120,
    poll_interval=5,
    refresh_reuse_grace=300,
)
ACCOUNTS = load_accounts(
    {
        "alice": {"numbers": ["+14085551002"], "tokens": [STATIC], "password": HASH},
        "bob": {"numbers": ["+16505550100"]},  # no password: admin approval only
    }
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "provider.sqlite3"


@pytest.fixture
def core(db_path: Path, clock: Clock) -> Iterator[ProviderCore]:
    core = ProviderCore(str(db_path), ACCOUNTS, ORIGIN, clock, SETTINGS)
    yield core
    core.close()


def device(core: ProviderCore, **extra: str) -> DeviceAuthorization:
    form = {"client_id": "ript-phone", "scope": "ript", **extra}
    return core.issuer.authorize_device(form)


def poll(
    core: ProviderCore, code: DeviceAuthorization, client: str = "ript-phone"
) -> TokenResponse:
    form = {"grant_type": DEVICE_CODE_GRANT, "device_code": code.device_code, "client_id": client}
    return core.issuer.token(form)


def refresh(core: ProviderCore, token: str | None, client: str = "ript-phone") -> TokenResponse:
    assert token is not None
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client}
    return core.issuer.token(form)


class _refused:  # noqa: N801 - used like pytest.raises, checks the RFC 6749 error code
    def __init__(self, error: str) -> None:
        self.error = error

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: object, tb: object) -> bool:
        assert exc is not None, f"expected {self.error}, nothing was raised"
        assert isinstance(exc, IssuerRefusalError), f"expected {self.error}, got {exc!r}"
        assert exc.error == self.error, f"expected {self.error}, got {exc.error}"
        return True


def approved_tokens(core: ProviderCore, clock: Clock, account: str = "alice") -> TokenResponse:
    code = device(core)
    core.issuer.admin_approve(code.user_code, account)
    return poll(core, code)


# ----------------------------------------------------------------------------- documents


def test_metadata_and_device_authorization(core: ProviderCore) -> None:
    meta = core.issuer.metadata()
    assert meta.issuer == ORIGIN
    assert meta.device_authorization_endpoint == f"{ORIGIN}/oauth/device"
    assert meta.token_endpoint == f"{ORIGIN}/oauth/token"
    code = device(core, device_name="Desk phone")
    assert code.verification_uri == f"{ORIGIN}/device"
    plain = normalize_user_code(code.user_code)
    assert plain is not None and code.user_code == display_user_code(plain)
    assert len(code.user_code) == 9 and code.user_code[4] == "-"
    assert set(plain) <= set("BCDFGHJKLMNPQRSTVWXZ")
    assert code.verification_uri_complete == f"HTTPS://PROVIDER.TEST:4433/D/{plain}"
    assert (code.expires_in, code.interval) == (120, 5)
    assert DeviceAuthorization.from_bytes(code.to_bytes()) == code
    assert len(code.device_code) >= 32


def test_user_codes_read_in_any_case_with_or_without_dash() -> None:
    assert normalize_user_code("bcdf-ghjk") == "BCDFGHJK"
    assert normalize_user_code(" BCDF GHJK ") == "BCDFGHJK"
    assert normalize_user_code("bcdfghjk") == "BCDFGHJK"
    for bad in ("", "BCDF-GHJ", "BCDF-GHJKL", "ABCD-EFGH", "BCDF-GHJ1"):
        assert normalize_user_code(bad) is None


def test_device_endpoint_refusals(core: ProviderCore) -> None:
    with _refused("invalid_client"):
        core.issuer.authorize_device({"client_id": "stranger", "scope": "ript"})
    with _refused("invalid_request"):
        core.issuer.authorize_device({"scope": "ript"})
    with _refused("invalid_scope"):
        core.issuer.authorize_device({"client_id": "ript-phone", "scope": "admin"})
    with _refused("invalid_scope"):
        core.issuer.authorize_device({"client_id": "ript-phone", "scope": "ript admin"})


def test_device_name_is_kept_short_and_on_one_line(core: ProviderCore) -> None:
    code = device(core, device_name="  Desk\n phone " + "x" * 200)
    shown = core.issuer.code_for_page(code.user_code).device_name
    assert shown is not None and shown.startswith("Desk phone x") and len(shown) == 64
    assert core.issuer.code_for_page(device(core).user_code).device_name is None


# ----------------------------------------------------------------------------- device grant


def test_pending_then_approved_then_used(core: ProviderCore, clock: Clock) -> None:
    code = device(core)
    with _refused("authorization_pending"):
        poll(core, code)
    clock.now += 5
    with _refused("authorization_pending"):
        poll(core, code)
    assert core.issuer.admin_approve(code.user_code.lower().replace("-", ""), "alice")
    clock.now += 5
    tokens = poll(core, code)
    assert tokens.token_type == "Bearer" and tokens.scope == "ript"
    assert tokens.expires_in == 60
    assert tokens.refresh_token and tokens.refresh_token != tokens.access_token
    assert core.authenticate(tokens.access_token) == ACCOUNTS["alice"]
    clock.now += 5
    with _refused("invalid_grant"):
        poll(core, code)  # a device code is good for one exchange


def test_slow_down_grows_the_interval_for_good(core: ProviderCore, clock: Clock) -> None:
    code = device(core)
    with _refused("authorization_pending"):
        poll(core, code)
    clock.now += 2
    with _refused("slow_down"):
        poll(core, code)
    clock.now += 6  # the interval is 10 s now: 6 s is too soon again
    with _refused("slow_down"):
        poll(core, code)
    clock.now += 15  # 15 s: the interval is 15 s now
    with _refused("authorization_pending"):
        poll(core, code)
    clock.now += 14.9  # within the leeway
    with _refused("authorization_pending"):
        poll(core, code)
    clock.now += 10
    with _refused("slow_down"):
        poll(core, code)


def test_denied_by_admin_and_expiry(core: ProviderCore, clock: Clock) -> None:
    code = device(core)
    core.issuer.admin_deny(code.user_code)
    with _refused("access_denied"):
        poll(core, code)
    other = device(core)
    clock.now += 121
    with _refused("expired_token"):
        poll(core, other)
    with pytest.raises(SignInError, match="not known or has expired"):
        core.issuer.admin_approve(other.user_code, "alice")


def test_device_grant_refusals(core: ProviderCore) -> None:
    code = device(core)
    with _refused("invalid_grant"):
        poll(core, DeviceAuthorization("not-a-code", "BCDF-GHJK", f"{ORIGIN}/device", None, 1))
    with _refused("invalid_grant"):
        poll(core, code, client="other-client")  # issued to ript-phone
    with _refused("invalid_client"):
        poll(core, code, client="stranger")
    with _refused("invalid_request"):
        core.issuer.token({"grant_type": DEVICE_CODE_GRANT, "client_id": "ript-phone"})
    with _refused("invalid_request"):
        core.issuer.token({"client_id": "ript-phone"})
    with _refused("unsupported_grant_type"):
        core.issuer.token({"grant_type": "password", "client_id": "ript-phone"})


def test_admin_refusals(core: ProviderCore) -> None:
    code = device(core)
    with pytest.raises(SignInError, match="no account 'carol'"):
        core.issuer.admin_approve(code.user_code, "carol")
    with pytest.raises(SignInError, match="not a code"):
        core.issuer.admin_deny("hello")
    with pytest.raises(SignInError, match="not known"):
        core.issuer.admin_deny("BCDF-GHJK")
    core.issuer.admin_approve(code.user_code, "bob")
    with pytest.raises(SignInError, match="already answered"):
        core.issuer.admin_deny(code.user_code)


# ----------------------------------------------------------------------------- tokens


def test_access_tokens_expire_and_are_stored_hashed(core: ProviderCore, clock: Clock) -> None:
    tokens = approved_tokens(core, clock, "bob")
    assert core.authenticate(tokens.access_token) == ACCOUNTS["bob"]
    conn = sqlite3.connect(core.db.path)
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert tokens.access_token not in dump
    assert tokens.refresh_token is not None and tokens.refresh_token not in dump
    clock.now += 60
    assert core.authenticate(tokens.access_token) is None
    assert core.authenticate(STATIC) == ACCOUNTS["alice"]  # static tokens never expire


def test_refresh_rotates(core: ProviderCore, clock: Clock) -> None:
    first = approved_tokens(core, clock)
    clock.now += 30
    second = refresh(core, first.refresh_token)
    assert second.refresh_token not in (None, first.refresh_token)
    assert second.access_token != first.access_token
    assert core.authenticate(second.access_token) == ACCOUNTS["alice"]
    assert core.authenticate(first.access_token) == ACCOUNTS["alice"]  # until it expires
    clock.now += 590  # the new refresh token lives 600 s from its own issue
    third = refresh(core, second.refresh_token)
    assert core.authenticate(third.access_token) == ACCOUNTS["alice"]


def test_a_rotated_refresh_token_used_again_ends_the_login(
    core: ProviderCore, clock: Clock
) -> None:
    first = approved_tokens(core, clock)
    other_login = approved_tokens(core, clock)
    second = refresh(core, first.refresh_token)
    clock.now += 1
    third = refresh(core, second.refresh_token)  # the device got and used its new token
    # Its predecessor coming back now is a replay (RFC 9700 section 4.14.2), not a lost answer.
    with _refused("invalid_grant"):
        refresh(core, first.refresh_token)
    # The whole family is gone: its newest refresh token and every access token.
    with _refused("invalid_grant"):
        refresh(core, third.refresh_token)
    assert core.authenticate(first.access_token) is None
    assert core.authenticate(third.access_token) is None
    # Another login of the same account is untouched.
    assert core.authenticate(other_login.access_token) == ACCOUNTS["alice"]
    assert refresh(core, other_login.refresh_token).access_token


def test_a_lost_refresh_answer_does_not_end_the_login(db_path: Path, clock: Clock) -> None:
    """The power-cut case: the provider rotated, the phone never stored the answer.

    The phone presents its old refresh token again (after a restart of either
    side: the grace is in the database): it gets new tokens, not invalid_grant.
    """
    core = ProviderCore(str(db_path), ACCOUNTS, ORIGIN, clock, SETTINGS)
    first = approved_tokens(core, clock)
    lost = refresh(core, first.refresh_token)  # the answer is lost in the cut
    core.close()
    core = ProviderCore(str(db_path), ACCOUNTS, ORIGIN, clock, SETTINGS)
    try:
        clock.now += SETTINGS.refresh_reuse_grace - 1
        again = refresh(core, first.refresh_token)
        assert again.refresh_token not in (first.refresh_token, lost.refresh_token)
        assert core.authenticate(again.access_token) == ACCOUNTS["alice"]
        again = refresh(core, first.refresh_token)  # lost twice: still the same rule
        clock.now += 1
        newest = refresh(core, again.refresh_token)  # the phone goes on with what it stored
        assert core.authenticate(newest.access_token) == ACCOUNTS["alice"]
    finally:
        core.close()


def test_the_grace_of_a_rotated_refresh_token_is_bounded(core: ProviderCore, clock: Clock) -> None:
    first = approved_tokens(core, clock)
    refresh(core, first.refresh_token)
    clock.now += SETTINGS.refresh_reuse_grace
    with _refused("invalid_grant"):
        refresh(core, first.refresh_token)


def test_a_superseded_answer_used_later_ends_the_login(core: ProviderCore, clock: Clock) -> None:
    """A thief replays the old token in the grace: the owner's next refresh ends the family."""
    first = approved_tokens(core, clock)
    owners = refresh(core, first.refresh_token)  # the owner got it, and is off for a while
    thiefs = refresh(core, first.refresh_token)  # within the grace: looks like a lost answer
    clock.now += 1
    with _refused("invalid_grant"):
        refresh(core, owners.refresh_token)  # superseded: two holders of one family
    with _refused("invalid_grant"):
        refresh(core, thiefs.refresh_token)
    assert core.authenticate(thiefs.access_token) is None


def test_refresh_refusals(core: ProviderCore, clock: Clock) -> None:
    tokens = approved_tokens(core, clock)
    with _refused("invalid_grant"):
        refresh(core, "not-a-refresh-token")
    with _refused("invalid_grant"):
        refresh(core, tokens.refresh_token, client="other-client")
    with _refused("invalid_client"):
        refresh(core, tokens.refresh_token, client="stranger")
    with _refused("invalid_request"):
        core.issuer.token({"grant_type": "refresh_token", "client_id": "ript-phone"})
    assert tokens.refresh_token is not None
    with _refused("invalid_scope"):
        core.issuer.token(
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens.refresh_token,
                "client_id": "ript-phone",
                "scope": "other",
            }
        )
    clock.now += 600
    with _refused("invalid_grant"):
        refresh(core, tokens.refresh_token)


def test_everything_survives_a_reopened_database(db_path: Path, clock: Clock) -> None:
    core = ProviderCore(str(db_path), ACCOUNTS, ORIGIN, clock, SETTINGS)
    tokens = approved_tokens(core, clock)
    pending = device(core)
    with _refused("authorization_pending"):
        poll(core, pending)
    clock.now += 1
    with _refused("slow_down"):
        poll(core, pending)  # interval is now 10 s
    core.close()
    core = ProviderCore(str(db_path), ACCOUNTS, ORIGIN, clock, SETTINGS)
    try:
        assert core.authenticate(tokens.access_token) == ACCOUNTS["alice"]
        clock.now += 6
        with _refused("slow_down"):
            poll(core, pending)  # the grown interval was remembered
        core.issuer.admin_approve(pending.user_code, "bob")
        clock.now += 20
        assert core.authenticate(poll(core, pending).access_token) == ACCOUNTS["bob"]
        assert refresh(core, tokens.refresh_token).access_token
    finally:
        core.close()


def test_a_version_1_database_is_migrated(db_path: Path, clock: Clock) -> None:
    conn = sqlite3.connect(db_path)
    conn.executescript(
        "CREATE TABLE tokens (token_sha256 TEXT PRIMARY KEY, account TEXT NOT NULL, "
        "created REAL NOT NULL, expires REAL); "
        # The handlers table of version 1 (version 3 adds its owner column).
        "CREATE TABLE handlers (uri TEXT PRIMARY KEY, account TEXT NOT NULL, "
        "handler_id TEXT NOT NULL, name TEXT, advertisement TEXT NOT NULL, push TEXT, "
        "created REAL NOT NULL, UNIQUE (account, handler_id)); "
        # The calls table of version 1 (version 4 adds the legs and the s2c numbering).
        "CREATE TABLE calls (uri TEXT PRIMARY KEY, account TEXT NOT NULL, "
        "direction TEXT NOT NULL, from_number TEXT NOT NULL, to_number TEXT NOT NULL, "
        "state TEXT NOT NULL, handler TEXT, client_directives TEXT, server_directives TEXT, "
        "media_key BLOB, media_salt BLOB, media_tag_length INTEGER, created REAL NOT NULL, "
        "state_since REAL NOT NULL, ended REAL); "
        "INSERT INTO calls VALUES ('https://p/calls/1', 'alice', 'inbound', '+1', '+2', "
        "'answered', NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL); "
        "PRAGMA user_version = 1;"
    )
    conn.close()
    db = ProviderDb(db_path)
    db.add_token("alice", "old-issued-token-0123", clock.now, None)
    assert db.token_account("old-issued-token-0123", clock.now) == "alice"
    assert [c.uri for c in db.load_open_calls()] == ["https://p/calls/1"]
    assert db.load_legs() == {"https://p/calls/1": (None, set())}
    db.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute("SELECT successor FROM refresh_tokens")  # version 5: lost answers
    conn.close()


# ----------------------------------------------------------------------------- the page


def test_sign_in_then_approve(core: ProviderCore, clock: Clock) -> None:
    code = device(core, device_name="Kitchen")
    page = core.issuer.code_for_page(code.user_code.lower())
    assert (page.user_code, page.device_name) == (code.user_code, "Kitchen")
    consent = core.issuer.sign_in(code.user_code, "alice", PASSWORD)
    assert (consent.account.id, consent.device_name) == ("alice", "Kitchen")
    with pytest.raises(SignInError, match="out of date"):
        core.issuer.decide(code.user_code, "forged-token", approve=True)
    assert core.issuer.decide(code.user_code, consent.token, approve=True).id == "alice"
    with pytest.raises(SignInError, match="already answered"):
        core.issuer.decide(code.user_code, consent.token, approve=False)  # one time only
    assert core.authenticate(poll(core, code).access_token) == ACCOUNTS["alice"]


def test_sign_in_then_deny(core: ProviderCore) -> None:
    code = device(core)
    consent = core.issuer.sign_in(code.user_code, "alice", PASSWORD)
    core.issuer.decide(code.user_code, consent.token, approve=False)
    with _refused("access_denied"):
        poll(core, code)


def test_a_new_sign_in_voids_the_previous_consent(core: ProviderCore) -> None:
    code = device(core)
    old = core.issuer.sign_in(code.user_code, "alice", PASSWORD)
    new = core.issuer.sign_in(code.user_code, "alice", PASSWORD)
    with pytest.raises(SignInError, match="out of date"):
        core.issuer.decide(code.user_code, old.token, approve=True)
    core.issuer.decide(code.user_code, new.token, approve=True)


def test_five_failed_sign_ins_kill_the_code(core: ProviderCore) -> None:
    code = device(core)
    wrong = [("alice", "wrong"), ("bob", ""), ("bob", "anything"), ("carol", PASSWORD)]
    for account, password in wrong:
        with pytest.raises(SignInError, match="account or the password is wrong"):
            core.issuer.sign_in(code.user_code, account, password)
    with pytest.raises(SignInError, match="Too many failed sign-ins"):
        core.issuer.sign_in(code.user_code, "alice", "wrong again")
    with pytest.raises(SignInError, match="tried too often"):
        core.issuer.sign_in(code.user_code, "alice", PASSWORD)  # even the right one now
    with _refused("access_denied"):
        poll(core, code)


def test_sign_in_refusals(core: ProviderCore, clock: Clock) -> None:
    with pytest.raises(SignInError, match="not a code"):
        core.issuer.sign_in("12345678", "alice", PASSWORD)
    with pytest.raises(SignInError, match="not known"):
        core.issuer.sign_in("BCDF-GHJK", "alice", PASSWORD)
    code = device(core)
    clock.now += 120
    with pytest.raises(SignInError, match="expired"):
        core.issuer.sign_in(code.user_code, "alice", PASSWORD)


# ----------------------------------------------------------------------------- passwords


def test_password_hashes() -> None:
    stored = hash_password("s3cret")
    scheme, n, r, p, _, _ = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "32768", "8", "1")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret ", stored)
    assert hash_password("s3cret") != stored  # a fresh salt each time
    for bad in ("", "plain-text", "scrypt$3$8$1$AAAA$AAAA", "scrypt$1024$8$1$!!$AAAA"):
        with pytest.raises(PasswordHashError):
            check_password_hash(bad)


def test_an_account_password_must_be_a_hash() -> None:
    with pytest.raises(AccountsError, match=r"accounts.alice.password: a password must be a hash"):
        load_accounts({"alice": {"numbers": ["+14085551002"], "password": "alice-demo-password"}})
    with pytest.raises(AccountsError, match=r"accounts.alice.password must be a hash string"):
        load_accounts({"alice": {"numbers": ["+14085551002"], "password": 7}})
    assert HASH not in repr(ACCOUNTS["alice"])
