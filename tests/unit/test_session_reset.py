"""The session (login, online, logout, reset), the reset marker, the reset key hold,
the plain-words reasons and the control socket's ``reset``."""

from __future__ import annotations

import asyncio
import errno
import io
import socket
from pathlib import Path
from typing import Any

import pytest

from phonefakes import FakeClient, config, registration
from ript.protocol.descriptions import ProviderTgs
from ript.protocol.oauth import OAuthError, TokenResponse
from riptphone.app.inputs import (
    HookOn,
    Input,
    Key,
    KeyLong,
    LineOffline,
    LineOnline,
    ResetRequested,
)
from riptphone.control import client as control_client
from riptphone.control.server import parse_request
from riptphone.handset import ResetChord, to_input
from riptphone.hw.events import HookChanged, KeyDown, KeyLongPress, KeyUp
from riptphone.hw.keypad import LAYOUTS, KeyMatrix
from riptphone.line import reasons
from riptphone.line.login import LoggedIn
from riptphone.line.registration import Line
from riptphone.line.tokens import InvalidGrantError, OAuthCredentials
from riptphone.net.h3 import ConnectionLostError, TLSVerificationError
from riptphone.net.https import HttpsError
from riptphone.net.ript_client import NoTrunkGroupError, RiptError
from riptphone.reset import MARKER, finish_pending, mark
from riptphone.session import Session
from riptphone.store import StateStore, Tokens

# ---------------------------------------------------------------- the reset marker


def filled_store(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "state")
    store.save_registration(registration())
    store.save_tokens(Tokens("a", "r", 2e9))
    store.save("calllog", {"entries": []}, secret=False)
    return store


def test_a_reset_cut_by_a_power_failure_is_finished_at_start(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    mark(store)  # ... and the power goes
    assert (store.directory / MARKER).stat().st_mode & 0o777 == 0o600
    reopened = StateStore(tmp_path / "state")
    assert finish_pending(reopened) is True
    assert reopened.names() == []
    assert not (store.directory / MARKER).exists()
    assert finish_pending(reopened) is False


def test_without_a_marker_nothing_is_wiped(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    assert finish_pending(store) is False
    assert store.names() == ["calllog", "registration", "tokens"]


def test_the_lab_token_file_survives_a_reset(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    (store.directory / "token").write_text("lab\n")
    mark(store)
    finish_pending(store)
    assert (store.directory / "token").read_text() == "lab\n"


# ---------------------------------------------------------------- the key hold


def test_star_and_hash_are_not_a_ghosting_pattern() -> None:
    matrix = KeyMatrix(LAYOUTS["4x3"], debounce_ms=0, long_press_ms=800)
    matrix.feed({(3, 0), (3, 2)}, 0.0)
    matrix.feed({(3, 0), (3, 2)}, 0.01)
    assert matrix.pressed == {"*", "#"}
    assert matrix.ghost_scans == 0


def test_the_chord_is_held_only_on_hook_and_swallows_the_keys() -> None:
    chord = ResetChord()
    assert chord.feed(HookChanged(False)) is False
    assert chord.feed(KeyDown("*")) is False
    assert not chord.held
    assert chord.feed(KeyDown("#")) is False
    assert chord.held
    # Held past the long-press time: '#' alone would toggle do-not-disturb.
    assert chord.feed(KeyLongPress("#")) is True
    assert chord.feed(KeyLongPress("*")) is True
    assert chord.feed(HookChanged(True)) is False
    assert not chord.held  # lifted: no reset
    assert chord.feed(HookChanged(False)) is False
    assert chord.held
    assert chord.feed(KeyUp("#", long=True)) is True
    assert not chord.held
    assert chord.feed(KeyUp("*", long=True)) is True
    # A lone '#' afterwards is itself again.
    assert chord.feed(KeyDown("#")) is False
    assert chord.feed(KeyLongPress("#")) is False
    assert to_input(KeyLongPress("#")) == KeyLong("#")
    assert chord.feed(KeyUp("5")) is False
    assert to_input(KeyUp("5")) == Key("5")


def test_the_chord_off_hook_is_not_held() -> None:
    chord = ResetChord()
    chord.feed(HookChanged(True))
    chord.feed(KeyDown("*"))
    chord.feed(KeyDown("#"))
    assert not chord.held


# ---------------------------------------------------------------- plain words


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            HttpsError("p.example cannot be found: Name or service not known", "dns"),
            "provider not found",
        ),
        (
            HttpsError("p.example cannot be found: Temporary failure in name resolution", "dns"),
            "no network",
        ),
        (
            HttpsError("cannot connect to p.example:443: Network is unreachable", "connect"),
            "no network",
        ),
        (
            HttpsError("cannot connect to p.example:443: Connection refused", "connect"),
            "provider unreachable",
        ),
        (HttpsError("p.example did not answer within 15 s", "timeout"), "provider unreachable"),
        (
            HttpsError("p.example's certificate: unable to get local issuer", "tls"),
            "provider not trusted",
        ),
        (HttpsError("p.example answered more than 65536 bytes", "protocol"), "provider error"),
        (RiptError("TG discovery at p.example: the provider did not accept", 401), "login refused"),
        (RiptError("x: the provider's policy does not allow it", 403), "refused by provider"),
        (RiptError("x: the provider reported an internal error", 500), "provider error"),
        (
            NoTrunkGroupError("TG discovery at p.example: 'tgs' must list at least one TG", 200),
            "account has no line",
        ),
        (
            ValueError(
                "the phone has no number: set [phone] number, the TG lists no inbound number"
            ),
            "no phone number",
        ),
        (OAuthError("token response: 'access_token' must be a non-empty string"), "provider error"),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "provider not found"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "no network"),
    ],
)
def test_reasons_are_short_and_plain(exc: BaseException, reason: str) -> None:
    assert reasons.plain_reason(exc) == reason
    assert len(reason) <= 21


def _chained(cause: BaseException) -> RiptError:
    try:
        raise RiptError(f"TG discovery at p.example: {cause}") from cause
    except RiptError as exc:
        return exc


def test_reasons_of_http3_failures_look_at_the_cause() -> None:
    resolve = ConnectionLostError(
        "https://voice.example.invalid", "cannot resolve host: [Errno -2] Name or service not known"
    )
    assert reasons.plain_reason(_chained(resolve)) == "provider not found"
    lost = ConnectionLostError("https://p.example", "no handshake within 5 s")
    assert reasons.plain_reason(_chained(lost)) == "provider unreachable"
    tls = TLSVerificationError("https://p.example", "certificate verify failed", 0x12A)
    assert reasons.plain_reason(_chained(tls)) == "provider not trusted"
    refresh = HttpsError("cannot connect to p.example:443: Connection refused", "connect")
    assert reasons.plain_reason(_chained(refresh)) == "provider unreachable"


def test_every_reason_fits_a_line() -> None:
    assert all(len(r) <= 21 for r in reasons.REASONS)


def test_an_empty_tg_list_is_a_no_trunk_group_error() -> None:
    with pytest.raises(Exception, match="at least one TG"):
        ProviderTgs.from_bytes(b'{"tgs": []}')


# ---------------------------------------------------------------- the session


class FakeLogin:
    def __init__(self, feed: Any) -> None:
        self.runs = 0
        self.feed = feed

    async def run(self) -> LoggedIn:
        self.runs += 1
        return LoggedIn(TokenResponse(f"access-{self.runs}", 3600, f"refresh-{self.runs}"), 0.0)


class FakePush:
    def __init__(self) -> None:
        self.started = 0
        self.closed = 0

    def start(self) -> None:
        self.started += 1

    async def close(self) -> None:
        self.closed += 1


class FakeTokenServer:
    def __init__(self) -> None:
        self.fail: BaseException | None = None

    async def refresh(self, refresh_token: str) -> TokenResponse:
        if self.fail is not None:
            raise self.fail
        return TokenResponse("access-new", 3600, "refresh-new")


class SessionRig:
    def __init__(self, tmp_path: Path, tokens: Tokens | None = None) -> None:
        self.store = StateStore(tmp_path / "state")
        self.fed: list[Input] = []
        self.client = FakeClient()
        self.server = FakeTokenServer()

        async def save(t: Tokens) -> None:
            await asyncio.to_thread(self.store.save_tokens, t)

        async def forget() -> None:
            await asyncio.to_thread(self.store.delete, "tokens")

        self.creds = OAuthCredentials(self.server, save, forget, tokens=tokens)  # type: ignore[arg-type]
        self.client.credentials = self.creds  # type: ignore[attr-defined]
        self.deleted: list[str] = []

        async def delete_handler(uri: str) -> None:
            self.deleted.append(uri)

        self.client.delete_handler = delete_handler  # type: ignore[attr-defined]
        self.line = Line(config(tmp_path), self.store, self.client, self.fed.append)  # type: ignore[arg-type]
        self.push = FakePush()
        self.login = FakeLogin(self.fed.append)
        self.session = Session(
            self.store,
            self.line,
            self.push,  # type: ignore[arg-type]
            self.client,  # type: ignore[arg-type]
            login=self.login,  # type: ignore[arg-type]
            feed=self.fed.append,
        )

    async def until(self, check: Any) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("not reached")


def test_no_tokens_logs_in_saves_them_then_comes_online(tmp_path: Path) -> None:
    rig = SessionRig(tmp_path)

    async def main() -> None:
        task = asyncio.create_task(rig.session.run())
        await rig.until(lambda: rig.push.started == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert rig.login.runs == 1
    saved = rig.store.load_tokens().data
    assert saved is not None and saved.refresh_token == "refresh-1"
    assert isinstance(rig.fed[-1], LineOnline)


def test_stored_tokens_skip_the_login(tmp_path: Path) -> None:
    rig = SessionRig(tmp_path, Tokens("a", "r", 2e9))

    async def main() -> None:
        task = asyncio.create_task(rig.session.run())
        await rig.until(lambda: rig.push.started == 1)
        task.cancel()

    asyncio.run(main())
    assert rig.login.runs == 0


def test_invalid_grant_goes_back_to_login_and_keeps_the_registration(tmp_path: Path) -> None:
    rig = SessionRig(tmp_path, Tokens("a", "r", 2e9))
    rig.store.save_registration(registration())
    rig.server.fail = InvalidGrantError("used")

    async def main() -> None:
        task = asyncio.create_task(rig.session.run())
        await rig.until(lambda: rig.push.started == 1)
        assert await rig.creds.refresh() is False  # a 401 somewhere, then invalid_grant
        await rig.until(lambda: rig.login.runs == 1 and rig.push.started == 2)
        task.cancel()

    asyncio.run(main())
    assert rig.push.closed >= 1
    assert rig.store.load_registration().data == registration()  # the handler URI is kept
    assert rig.deleted == []
    assert rig.creds.logged_in


def test_a_reset_deletes_the_handler_wipes_and_logs_in_again(tmp_path: Path) -> None:
    rig = SessionRig(tmp_path, Tokens("a", "r", 2e9))
    rig.store.save_registration(registration())
    rig.store.save("calllog", {"entries": []}, secret=False)

    async def main() -> None:
        task = asyncio.create_task(rig.session.run())
        await rig.until(lambda: rig.push.started == 1)
        rig.session.request_reset()
        await asyncio.wait_for(rig.session.wait_reset(), 5)
        assert rig.store.names() in ([], ["tokens"])  # tokens: the new login's
        await rig.until(lambda: rig.login.runs == 1 and rig.push.started == 2)
        task.cancel()

    asyncio.run(main())
    assert rig.deleted == [registration().handler_uri]
    assert rig.session.resets == 1
    assert not (rig.store.directory / MARKER).exists()


def test_a_reset_with_the_provider_unreachable_still_wipes(tmp_path: Path) -> None:
    rig = SessionRig(tmp_path, Tokens("a", "r", 2e9))
    rig.store.save_registration(registration())

    async def unreachable(uri: str) -> None:
        raise RiptError("deleting the handler: connection lost")

    rig.client.delete_handler = unreachable  # type: ignore[attr-defined]

    async def main() -> None:
        task = asyncio.create_task(rig.session.run())
        await rig.until(lambda: rig.push.started == 1)
        rig.session.request_reset()
        await asyncio.wait_for(rig.session.wait_reset(), 5)
        task.cancel()

    asyncio.run(main())
    assert rig.store.load_registration().data is None
    assert any(isinstance(f, LineOffline) for f in rig.fed)


# ---------------------------------------------------------------- the control socket


def test_reset_is_a_control_request() -> None:
    assert parse_request(b'{"cmd": "reset"}').cmd == "reset"
    with pytest.raises(ValueError, match="unexpected member"):
        parse_request(b'{"cmd": "reset", "now": true}')


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_cli_asks_at_a_terminal_and_refuses_without_one() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert control_client._confirm_reset(out, err, io.StringIO("yes\n")) is False
    assert "needs --yes" in err.getvalue()
    assert control_client._confirm_reset(out, err, _Tty("no\n")) is False
    assert control_client._confirm_reset(out, err, _Tty("yes\n")) is True
    assert "Type yes" in out.getvalue()


def test_reset_request_for() -> None:
    parser = __import__("argparse").ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    control_client.add_subcommands(sub)
    args = parser.parse_args(["reset", "--yes"])
    assert control_client.request_for(args) == {"cmd": "reset"}
    assert args.yes is True


def test_a_machine_reset_is_refused_in_a_call_text() -> None:
    assert ResetRequested().source == "keypad"


def test_the_handset_times_the_hold_and_asks_for_a_reset(tmp_path: Path) -> None:
    from riptphone.handset import Handset

    got: list[Input] = []

    async def main() -> None:
        cfg = config(tmp_path, state_dir=str(tmp_path / "s"))
        handset = Handset(
            __import__("dataclasses").replace(cfg.hardware, backend="none"),
            asyncio.get_running_loop(),
            got.append,
        )
        handset.reset_hold_s = 0.1
        try:
            post = handset._post
            post(HookChanged(False))
            post(KeyDown("*"))
            post(KeyDown("#"))
            post(KeyLongPress("#"))  # swallowed: no do-not-disturb on the way
            await asyncio.sleep(0.05)
            post(KeyUp("#", long=True))  # let go too early: nothing
            await asyncio.sleep(0.2)
            assert ResetRequested() not in got
            post(KeyDown("#"))
            await asyncio.sleep(0.2)
            post(KeyUp("#", long=True))
            post(KeyUp("*", long=True))
            await asyncio.sleep(0.05)
        finally:
            handset.close()

    asyncio.run(main())
    # The hook's own input, then the reset: no key of the chord went through.
    assert got == [HookOn(), ResetRequested("keypad")]
