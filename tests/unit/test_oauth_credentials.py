"""OAuthCredentials: refresh ahead of expiry and on 401, single flight, rotation saved first,
invalid_grant ends the login, other failures keep it; no token in a log line."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ript.protocol.oauth import TokenResponse
from riptphone.line.tokens import (
    InvalidGrantError,
    OAuthCredentials,
    refresh_margin,
    tokens_from,
)
from riptphone.net.https import HttpsError
from riptphone.net.ript_client import RiptError
from riptphone.store import Tokens

NOW = 1_000_000.0


class FakeServer:
    """The token endpoint: rotates refresh tokens; scripted failures."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: BaseException | None = None
        self.delay = 0.0
        self.n = 0

    async def refresh(self, refresh_token: str) -> TokenResponse:
        self.calls.append(refresh_token)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.n += 1
        return TokenResponse(f"access-{self.n + 1}", 3600, f"refresh-{self.n + 1}")


class Box:
    def __init__(self, expires_at: float = NOW + 3600, refresh: str | None = "refresh-1") -> None:
        self.server = FakeServer()
        self.saved: list[Tokens] = []
        self.forgotten = 0
        self.wall = NOW
        self.events: list[str] = []

        async def save(tokens: Tokens) -> None:
            self.events.append(f"save {tokens.refresh_token}")
            self.saved.append(tokens)

        async def forget() -> None:
            self.forgotten += 1

        self.creds = OAuthCredentials(
            self.server,  # type: ignore[arg-type]
            save,
            forget,
            tokens=Tokens("access-1", refresh, expires_at),
            wall=lambda: self.wall,
        )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_fresh_token_is_used_as_is() -> None:
    box = Box()
    assert run(box.creds.token()) == "access-1"
    assert box.server.calls == []


def test_refreshes_ahead_of_expiry_and_saves_the_rotated_token_first() -> None:
    box = Box(expires_at=NOW + 59)  # under a minute left
    assert run(box.creds.token()) == "access-2"
    assert box.server.calls == ["refresh-1"]
    assert [t.refresh_token for t in box.saved] == ["refresh-2"]
    assert box.saved[0].expires_at == NOW + 3600
    # The lifetime is now known: a tenth of it (360 s) before expiry it refreshes again.
    box.wall = NOW + 3600 - 361
    assert run(box.creds.token()) == "access-2"
    box.wall = NOW + 3600 - 359
    assert run(box.creds.token()) == "access-3"
    assert box.server.calls == ["refresh-1", "refresh-2"]


def test_the_margin() -> None:
    assert refresh_margin(None) == 60
    assert refresh_margin(3600) == 360
    assert refresh_margin(300) == 60
    assert refresh_margin(60) == 30  # never more than half the lifetime


def test_concurrent_callers_share_one_refresh() -> None:
    box = Box()
    box.server.delay = 0.05

    async def many() -> list[bool]:
        return await asyncio.gather(*(box.creds.refresh() for _ in range(10)))

    assert run(many()) == [True] * 10
    assert box.server.calls == ["refresh-1"]
    assert len(box.saved) == 1


def test_concurrent_token_calls_near_expiry_share_one_refresh() -> None:
    box = Box(expires_at=NOW + 10)
    box.server.delay = 0.05

    async def many() -> list[str]:
        return await asyncio.gather(*(box.creds.token() for _ in range(5)))

    assert run(many()) == ["access-2"] * 5
    assert box.server.calls == ["refresh-1"]


def test_invalid_grant_ends_the_login() -> None:
    box = Box()
    box.server.fail = InvalidGrantError("used")
    assert run(box.creds.refresh()) is False
    assert not box.creds.logged_in
    assert box.creds.ended.is_set()
    assert box.forgotten == 1
    with pytest.raises(RiptError) as info:
        run(box.creds.token())
    assert info.value.status == 401


def test_an_unreachable_token_endpoint_keeps_the_login() -> None:
    box = Box()
    box.server.fail = HttpsError("cannot connect to p.example:443: refused", "connect")
    with pytest.raises(RiptError, match="refreshing the login failed"):
        run(box.creds.refresh())
    assert box.creds.logged_in and not box.creds.ended.is_set()
    assert box.forgotten == 0
    # Ahead of expiry, a failed refresh still hands out the token that is still good.
    box.wall = NOW + 3600 - 30
    assert run(box.creds.token()) == "access-1"
    box.server.fail = None
    assert run(box.creds.token()) == "access-2"


def test_an_expired_token_whose_refresh_fails_is_an_error() -> None:
    box = Box(expires_at=NOW - 1)
    box.server.fail = HttpsError("x did not answer within 15 s", "timeout")
    with pytest.raises(RiptError):
        run(box.creds.token())


def test_without_a_refresh_token_a_refresh_is_not_possible() -> None:
    box = Box(refresh=None)
    assert run(box.creds.refresh()) is False
    assert box.creds.logged_in


def test_a_refresh_without_a_new_refresh_token_keeps_the_old_one() -> None:
    old = Tokens("a", "keep-me", NOW)
    new = tokens_from(TokenResponse("b", 60, None), NOW, old)
    assert new.refresh_token == "keep-me" and new.expires_at == NOW + 60


def test_no_token_in_any_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    box = Box(expires_at=NOW + 1)
    run(box.creds.token())
    box.server.fail = InvalidGrantError("used")
    run(box.creds.refresh())
    text = caplog.text + repr(box.saved)
    for secret in ("access-1", "access-2", "refresh-1", "refresh-2"):
        assert secret not in text


def test_media_byways_use_the_token_of_the_moment_and_refresh_on_401() -> None:
    from riptphone.net.h3 import Response
    from riptphone.net.ript_client import MediaByways

    class Creds:
        def __init__(self) -> None:
            self.current = "old"
            self.refreshed = 0

        async def token(self) -> str:
            return self.current

        async def refresh(self) -> bool:
            self.refreshed += 1
            self.current = "new"
            return True

    class Http:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def request(self, method: str, url: str, *, headers: Any, body: bytes) -> Any:
            self.seen.append(headers["authorization"])
            status = 200 if headers["authorization"] == "Bearer new" else 401
            return Response(status, (), b"ack")

        def prepare(self, method: str, url: str, *, headers: Any) -> Any:
            # The headers the task-free requests reuse (put_nowait, get_nowait).
            return method, headers["authorization"]

    creds, http = Creds(), Http()
    byways = MediaByways(http, "https://p.example/calls/1/media", {}, credentials=creds)  # type: ignore[arg-type]
    assert run(byways.put(b"chunk")) == (200, b"ack")
    assert http.seen == ["Bearer old", "Bearer new"]
    assert creds.refreshed == 1
    assert run(byways.put(b"chunk")) == (200, b"ack")
    assert http.seen[-1] == "Bearer new" and creds.refreshed == 1
    assert byways._prepared == (("PUT", "Bearer new"), ("GET", "Bearer new"))
    byways.refused()  # a 401 to a task-free request: nothing is reused until prepared again
    assert byways.put_nowait(b"chunk", lambda *_: None) is None
