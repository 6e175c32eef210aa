"""The device-flow poll machine (riptphone.line.login.DevicePoll): bytes and a clock in,
steps out."""

from __future__ import annotations

import pytest

from ript.backoff import Backoff, BackoffPolicy
from ript.protocol.oauth import (
    DeviceAuthorization,
    ErrorResponse,
    ServerMetadata,
    TokenResponse,
    form_decode,
)
from riptphone.line.login import (
    DevicePoll,
    LoggedIn,
    Send,
    ShowCode,
    ShowProblem,
    Wait,
    WaitForKey,
)
from riptphone.line.reasons import LOGIN_REFUSED, PROVIDER_ERROR, UNREACHABLE

META = ServerMetadata(
    "https://p.example", "https://p.example/oauth/device", "https://p.example/oauth/token"
)


def code(n: int = 1, *, interval: int = 5, expires_in: int = 600) -> bytes:
    return DeviceAuthorization(
        device_code=f"dev-{n}",
        user_code=f"BCDF-GH{n:02d}",
        verification_uri="https://p.example/device",
        verification_uri_complete=f"HTTPS://P.EXAMPLE/D/BCDFGH{n:02d}",
        expires_in=expires_in,
        interval=interval,
    ).to_bytes()


def error(name: str) -> bytes:
    return ErrorResponse(name).to_bytes()


TOKENS = TokenResponse("access-1", 3600, "refresh-1", "ript").to_bytes()


def polling(now: float = 0.0, **kwargs: int) -> DevicePoll:
    """A poll machine that has its metadata and a code (shown), at ``now``."""
    poll = DevicePoll(
        "ript-phone",
        "Desk phone",
        "https://p.example/.well-known/ript-oauth",
        Backoff(BackoffPolicy(2.0, 60.0)),
    )
    first = poll.action(now)
    assert isinstance(first, Send) and first.step == "metadata" and first.method == "GET"
    poll.answer("metadata", 200, META.to_bytes(), now)
    device = poll.action(now)
    assert isinstance(device, Send) and device.step == "device"
    assert device.url == META.device_authorization_endpoint
    assert device.form == {"client_id": "ript-phone", "scope": "ript", "device_name": "Desk phone"}
    poll.answer("device", 200, code(**kwargs), now)
    shown = poll.action(now)
    assert isinstance(shown, ShowCode)
    assert shown.authorization.shown_uri.startswith("HTTPS://P.EXAMPLE/D/")
    return poll


def test_polls_no_sooner_than_the_interval_while_pending() -> None:
    poll = polling(interval=5)
    assert poll.action(0.0) == Wait(5.0)
    assert poll.action(4.9) == Wait(5.0)
    send = poll.action(5.0)
    assert isinstance(send, Send) and send.step == "token"
    assert send.form is not None
    assert send.form["grant_type"] == "urn:ietf:params:oauth:grant-type:device_code"
    assert send.form["device_code"] == "dev-1"
    poll.answer("token", 400, error("authorization_pending"), 5.2)
    assert poll.action(6.0) == Wait(10.2)
    assert isinstance(poll.action(10.2), Send)


def test_slow_down_adds_five_seconds_for_good() -> None:
    poll = polling(interval=5)
    poll.answer("token", 400, error("slow_down"), 5.0)
    assert poll.action(5.0) == Wait(15.0)
    poll.answer("token", 400, error("authorization_pending"), 15.0)
    assert poll.action(15.0) == Wait(25.0)
    poll.answer("token", 400, error("slow_down"), 25.0)
    assert poll.action(25.0) == Wait(40.0)


def test_tokens_end_the_flow() -> None:
    poll = polling()
    poll.answer("token", 200, TOKENS, 5.0)
    done = poll.action(5.0)
    assert isinstance(done, LoggedIn)
    assert done.response.access_token == "access-1" and done.at == 5.0


def test_expired_token_starts_over_with_a_new_code() -> None:
    poll = polling()
    poll.answer("token", 400, error("expired_token"), 5.0)
    again = poll.action(5.0)
    assert isinstance(again, Send) and again.step == "device"
    poll.answer("device", 200, code(2), 5.1)
    shown = poll.action(5.1)
    assert isinstance(shown, ShowCode) and shown.authorization.user_code == "BCDF-GH02"
    assert poll.codes == 2


def test_a_code_past_its_life_is_replaced_without_asking() -> None:
    poll = polling(expires_in=30, interval=5)
    for t in range(5, 30, 5):
        assert isinstance(poll.action(float(t)), Send)
        poll.answer("token", 400, error("authorization_pending"), float(t))
    again = poll.action(30.0)
    assert isinstance(again, Send) and again.step == "device"


def test_access_denied_waits_for_a_key_then_starts_over() -> None:
    poll = polling()
    poll.answer("token", 400, error("access_denied"), 5.0)
    assert poll.action(5.0) == ShowProblem(LOGIN_REFUSED, 0)
    assert poll.action(100.0) == WaitForKey()
    assert poll.action(1000.0) == WaitForKey()
    poll.restart()
    again = poll.action(1000.0)
    assert isinstance(again, Send) and again.step == "device"


def test_an_unreachable_provider_is_retried_with_backoff() -> None:
    poll = DevicePoll(
        "c", "", "https://p.example/.well-known/ript-oauth", Backoff(BackoffPolicy(2.0, 60.0))
    )
    delays = []
    now = 0.0
    for _ in range(6):
        send = poll.action(now)
        assert isinstance(send, Send) and send.step == "metadata"
        poll.failed(UNREACHABLE, "cannot connect to p.example:443: refused", now)
        problem = poll.action(now)
        assert isinstance(problem, ShowProblem) and problem.reason == UNREACHABLE
        wait = poll.action(now)
        assert isinstance(wait, Wait)
        delays.append(wait.until - now)
        now = wait.until
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0]
    poll.answer("metadata", 200, META.to_bytes(), now)
    device = poll.action(now)
    assert isinstance(device, Send) and device.form == {"client_id": "c", "scope": "ript"}


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>oops</html>", b"[1,2]", b'{"error": 5}', b'{"access_token": "x"}'],
)
def test_garbage_is_one_problem_and_a_retry_never_faster_than_the_interval(body: bytes) -> None:
    poll = polling(interval=5)
    poll.answer("token", 200 if body.startswith(b'{"access') else 400, body, 5.0)
    wait = poll.action(5.0)
    assert isinstance(wait, Wait) and wait.until >= 10.0  # the code stays up, no problem shown
    assert isinstance(poll.action(wait.until), Send)


def test_a_garbled_device_answer_says_provider_error() -> None:
    poll = DevicePoll("c", "", "https://p.example/m", Backoff(BackoffPolicy(2.0, 60.0)))
    poll.answer("metadata", 200, META.to_bytes(), 0.0)
    poll.answer("device", 200, b'{"user_code": 1}', 0.0)
    problem = poll.action(0.0)
    assert isinstance(problem, ShowProblem) and problem.reason == PROVIDER_ERROR
    poll.answer("device", 400, error("invalid_client"), 0.0)
    assert isinstance(poll.action(0.0), ShowProblem)


def test_the_forms_are_url_encoded() -> None:
    poll = polling()
    send = poll.action(5.0)
    assert isinstance(send, Send) and send.form is not None
    from ript.protocol.oauth import form_encode

    assert form_decode(form_encode(send.form)) == send.form
