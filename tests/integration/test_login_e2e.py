"""The phone's OAuth login against the REAL provider: both as subprocesses, real HTTPS.

``ript-provider serve`` runs with an ``[oauth]`` section and an account whose
``password`` is an scrypt hash; ``ript-phone run`` starts with only a domain
and a CA file: no lab token file.  The phone is driven as a user or a script
would (``ript-phone status|key|dial|reset``), the provider answered as its
admin would (``ript-provider admin approve|deny``) or by a person in a real
browser (the last test).  What the provider does not log per request (polls,
refresh grants) is read from its SQLite database; a few faults are made there
too, as comments say (an access token revoked, a login ended, a poll the
provider believes it saw), because the provider has no admin command for them.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from luma.core.device import dummy
from PIL import Image

from riptdev.processes import ProviderProcess, start_provider, stop_process
from riptphone.ui.model import NotProvisioned
from riptphone.ui.render import render
from riptprovider.passwords import hash_password

from .procs import ECHO, NUMBER, WAIT, PhoneProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ACCOUNT = "bob"
PASSWORD = "bob-e2e-password-7f3a"
PASSWORD_HASH = hash_password(PASSWORD, n=2**14)  # half the default cost: a quicker test
LONG = 30.0
ZBARIMG = shutil.which("zbarimg")


def provider_toml(**oauth: int) -> str:
    settings = {"poll_interval": 1, **oauth}
    lines = "\n".join(f"{key} = {value}" for key, value in settings.items())
    return f"""
[server]
host = "127.0.0.1"
port = 0
state_dir = "provider-state"

[oauth]
client_ids = ["ript-phone"]
{lines}

[accounts.{ACCOUNT}]
name = "Bob"
numbers = ["{NUMBER}"]
destinations = "+1408*"
password = "{PASSWORD_HASH}"

[[accounts.{ACCOUNT}.far-end]]
match = "{ECHO}"
outcome = "answer"
answer-after = 0.3
media = "echo"
"""


class LoginDb:
    """The provider's database: read what it logs no line for; write the few faults."""

    def __init__(self, provider: ProviderProcess) -> None:
        path = provider.config.parent / "provider-state" / "provider.sqlite3"
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=WAIT)

    def close(self) -> None:
        self._conn.close()

    def one(self, sql: str, *args: object) -> Any:
        row = self._conn.execute(sql, args).fetchone()
        return None if row is None else row[0]

    def run(self, sql: str, *args: object) -> int:
        return self._conn.execute(sql, args).rowcount

    def logins(self) -> int:
        return int(self.one("SELECT count(*) FROM logins"))

    def device_codes(self) -> int:
        return int(self.one("SELECT count(*) FROM device_codes"))

    def refresh_grants(self) -> int:
        """Refresh tokens presented and accepted (each rotation marks the old one used)."""
        return int(self.one("SELECT count(*) FROM refresh_tokens WHERE used IS NOT NULL"))

    def code_row(self, user_code: str) -> tuple[Any, ...]:
        row = self._conn.execute(
            "SELECT status, interval, last_poll FROM device_codes WHERE user_code = ?",
            (user_code.replace("-", ""),),
        ).fetchone()
        assert row is not None, user_code
        return tuple(row)


class Lab:
    """The provider and the phone of one test (started on demand), stopped at its end."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.provider: ProviderProcess | None = None
        self.phone: PhoneProcess | None = None
        self.db: LoginDb | None = None

    def start(
        self, *, level: str = "info", **oauth: int
    ) -> tuple[ProviderProcess, PhoneProcess, LoginDb]:
        """The provider (``[oauth]`` settings ``oauth``) and a phone for it, not started."""
        (self.work / "provider").mkdir()
        self.provider = start_provider(
            self.work / "provider", provider_toml(**oauth), log_level=level
        )
        self.db = LoginDb(self.provider)
        self.phone = PhoneProcess(
            self.work / "phone", self.provider, token=None, level=level, number=None
        )
        return self.provider, self.phone, self.db

    def close(self) -> None:
        if self.phone is not None and self.phone.process is not None:
            self.phone.stop()
        if self.db is not None:
            self.db.close()
        if self.provider is not None:
            stop_process(self.provider.process)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    running = Lab(tmp_path)
    try:
        yield running
    finally:
        running.close()


# ---------------------------------------------------------------------------- helpers


def on_device(image: Image.Image) -> Image.Image:
    """What the OLED shows: the picture through luma's dummy SSD1306 stand-in."""
    device = dummy(width=128, height=64, mode="1")
    device.display(image)
    shown: Image.Image = device.image
    return shown


def until(
    phone: PhoneProcess, check: Callable[[dict[str, Any]], bool], wait: float = LONG
) -> dict[str, Any]:
    """Poll ``ript-phone status --json`` until ``check`` accepts it."""
    deadline = time.monotonic() + wait
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert phone.process is not None
        if phone.process.poll() is not None:
            raise AssertionError(
                f"the phone exited ({phone.process.returncode}):\n{phone.log_text()}"
            )
        status = phone.status()
        if check(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"never reached within {wait:g} s; last status {status}")


def shown(status: dict[str, Any]) -> tuple[str, str]:
    """The QR URL and the user code the phone shows (its ``status`` screen lines)."""
    screen: list[str] = status["screen"]
    assert screen[0] == "Not set up. Visit", screen
    at = next(i for i, line in enumerate(screen) if line.startswith("code "))
    return "".join(screen[1:at]), screen[at].removeprefix("code ")


def provisioning(phone: PhoneProcess, other_than: str = "") -> tuple[str, str]:
    """Wait for a code on the screen (one other than ``other_than``); (URL, code)."""

    def showing(status: dict[str, Any]) -> bool:
        if status["state"] != "provisioning" or status["screen"][:1] != ["Not set up. Visit"]:
            return False
        return shown(status)[1] != other_than

    return shown(until(phone, showing))


def admin(provider: ProviderProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riptprovider", "admin", "--config", str(provider.config), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def approve(provider: ProviderProcess, code: str) -> None:
    done = admin(provider, "approve", code, "--account", ACCOUNT)
    assert done.returncode == 0, done.stderr


def registered(phone: PhoneProcess) -> dict[str, Any]:
    return until(phone, lambda s: s["state"] == "idle" and bool(s["registered"]))


def tokens_of(phone: PhoneProcess) -> dict[str, Any]:
    """The phone's stored tokens (its state store's ``tokens`` record)."""
    record = json.loads((phone.state_dir / "tokens.json").read_text())
    data: dict[str, Any] = record["data"]
    return data


def log_in(phone: PhoneProcess, provider: ProviderProcess) -> dict[str, Any]:
    """First boot to idle through ``ript-provider admin approve``; the status."""
    phone.start("provisioning")
    _, code = provisioning(phone)
    approve(provider, code)
    return registered(phone)


def place_echo_call(phone: PhoneProcess) -> None:
    """Lift, dial the echo number, wait for the far end's answer, hang up."""
    with phone.watching() as watch:
        assert phone.cli("hook", "off").returncode == 0
        dialled = phone.cli("dial", ECHO)
        assert dialled.returncode == 0, dialled.stderr
        until(phone, lambda s: s["state"] == "in-call")
        assert phone.cli("hangup").returncode == 0
        until(phone, lambda s: s["state"] == "idle")
        del watch


# ---------------------------------------------------------------------------- tests


def test_first_boot_shows_a_qr_code_that_decodes_and_an_admin_approval_registers(
    lab: Lab, tmp_path: Path
) -> None:
    provider, phone, db = lab.start()
    phone.start("provisioning")
    url, code = provisioning(phone)
    assert re.fullmatch(r"[B-Z]{4}-[B-Z]{4}", code)
    assert url == f"HTTPS://LOCALHOST:{provider.port}/D/{code.replace('-', '')}"
    assert db.code_row(code)[0] == "pending"
    printed = phone.cli("status")
    assert printed.returncode == 0 and f"code {code}" in printed.stdout
    assert not (phone.state_dir / "token").exists()

    # What the OLED shows for that status, decoded by a QR reader.
    if ZBARIMG is not None:
        image = render(NotProvisioned(url, code, 600), strict=True)
        png = tmp_path / "screen.png"
        on_device(image).save(png)
        done = subprocess.run(
            [ZBARIMG, "--quiet", "--raw", str(png)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == url

    approve(provider, code)
    status = registered(phone)
    assert status["handler"].startswith(f"https://localhost:{provider.port}/")
    assert db.logins() == 1 and db.code_row(code)[0] == "used"
    assert (phone.state_dir / "tokens.json").stat().st_mode & 0o077 == 0
    assert "event=logged_in" in phone.log_text()


def polls_seen(db: LoginDb, code: str, count: int) -> list[tuple[Any, ...]]:
    """Wait for ``count`` more polls of ``code`` (its ``last_poll`` changing); their rows."""
    rows: list[tuple[Any, ...]] = []
    last = db.code_row(code)[2]
    deadline = time.monotonic() + LONG
    while len(rows) < count:
        assert time.monotonic() < deadline, f"only {len(rows)} polls of {count} seen"
        row = db.code_row(code)
        if row[2] != last:
            rows.append(row)
            last = row[2]
        time.sleep(0.02)
    return rows


def test_the_phone_polls_no_faster_than_the_interval_and_slows_down_when_told(
    lab: Lab,
) -> None:
    provider, phone, db = lab.start(poll_interval=1)
    phone.start("provisioning")
    _, code = provisioning(phone)
    # The provider judges every poll: one sooner than the interval is slow_down and
    # grows the stored interval.  Three polls at 1 s: none too soon.
    assert [row[1] for row in polls_seen(db, code, 3)] == [1, 1, 1]
    # The provider believes it just saw a poll (as if a copy of one came in late):
    # its next answer is slow_down, and the interval grows to 6 s for this code.
    while db.code_row(code)[1] == 1:
        db.run(
            "UPDATE device_codes SET last_poll = ? WHERE user_code = ? AND interval = 1",
            time.time() + 3600,
            code.replace("-", ""),
        )
        polls_seen(db, code, 1)
    assert db.code_row(code)[1] == 6
    # Two more polls, each judged against 6 s: neither too soon, so it stays 6.
    assert [row[1] for row in polls_seen(db, code, 2)] == [6, 6]
    assert phone.log_text().count("event=login_slow_down interval=6") == 1
    approve(provider, code)
    registered(phone)


def test_an_expired_code_is_replaced_by_a_new_code_and_qr_code(lab: Lab) -> None:
    provider, phone, db = lab.start(device_code_lifetime=10)
    phone.start("provisioning")
    first_url, first = provisioning(phone)
    url, code = provisioning(phone, other_than=first)
    assert url != first_url and url.endswith(code.replace("-", ""))
    assert "event=login_code_expired" in phone.log_text()
    assert db.code_row(code)[0] == "pending"
    approve(provider, code)
    registered(phone)
    assert db.logins() == 1


def test_a_denied_login_says_so_and_a_key_press_starts_again(lab: Lab) -> None:
    provider, phone, db = lab.start()
    phone.start("provisioning")
    _, first = provisioning(phone)
    done = admin(provider, "deny", first)
    assert done.returncode == 0, done.stderr
    status = until(phone, lambda s: "login refused" in " ".join(s["screen"]))
    assert "press a key" in " ".join(status["screen"])
    assert db.code_row(first)[0] == "denied"
    assert phone.cli("key", "5").returncode == 0
    _, code = provisioning(phone, other_than=first)
    approve(provider, code)
    registered(phone)
    assert db.logins() == 1 and db.device_codes() == 2


def test_a_401_on_a_call_is_one_refresh_and_one_retry_and_no_secret_is_logged(
    lab: Lab,
) -> None:
    provider, phone, db = lab.start(level="debug")
    log_in(phone, provider)
    before = tokens_of(phone)
    assert db.refresh_grants() == 0
    # The login's access token stops working at the provider (it has no admin command
    # for that): the phone learns it from the 401 on its next request.
    assert db.run("UPDATE tokens SET expires = 0 WHERE login IS NOT NULL") == 1
    place_echo_call(phone)
    assert db.refresh_grants() == 1
    assert db.logins() == 1 and db.device_codes() == 1  # no new device login
    assert int(db.one("SELECT count(*) FROM calls")) == 1  # the retried POST, once
    assert phone.log_text().count("event=refreshed") == 1
    after = tokens_of(phone)
    assert after != before
    assert phone.stop() == 0
    stop_process(provider.process)
    logs = {
        "phone": phone.log_text(),
        "provider": provider.log.read_text(errors="replace"),
    }
    assert " DEBUG: " in logs["provider"] and "level=DEBUG" in logs["phone"]
    secrets = [PASSWORD, PASSWORD_HASH.split("$")[-1]]
    for stored in (before, after):
        secrets += [str(v) for k, v in stored.items() if "token" in k and isinstance(v, str)]
    assert len(secrets) >= 6, (before.keys(), secrets)
    for who, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"a secret in the {who}'s log"


def test_a_refused_refresh_goes_back_to_login_and_keeps_the_handler(lab: Lab) -> None:
    provider, phone, db = lab.start()
    handler = log_in(phone, provider)["handler"]
    # The login ends at the provider (its refresh family revoked): the next request's
    # 401 leads to a refresh answered invalid_grant.
    assert db.run("UPDATE logins SET revoked = ?", time.time()) == 1
    assert phone.cli("hook", "off").returncode == 0
    phone.cli("dial", ECHO)  # refused: the login is over
    assert phone.cli("hook", "on").returncode == 0
    _, code = provisioning(phone)
    assert "event=logged_out" in phone.log_text()
    assert not (phone.state_dir / "tokens.json").exists()
    approve(provider, code)
    status = registered(phone)
    assert status["handler"] == handler
    assert db.logins() == 2
    assert int(db.one("SELECT count(*) FROM handlers")) == 1


def test_a_reset_from_the_cli_deletes_the_handler_wipes_the_state_and_logs_in_anew(
    lab: Lab,
) -> None:
    provider, phone, db = lab.start()
    handler = log_in(phone, provider)["handler"]
    done = phone.cli("reset", "--yes")
    assert done.returncode == 0, done.stderr
    _, code = provisioning(phone)  # was idle: any code shown is a new one
    assert "event=factory_reset_done" in phone.log_text()
    assert int(db.one("SELECT count(*) FROM handlers")) == 0  # deleted at the provider
    left = {p.name for p in phone.state_dir.iterdir()}
    assert not left & {"tokens.json", "registration.json", "identity.json", "reset-pending"}
    approve(provider, code)
    assert registered(phone)["handler"] != handler  # a new phone to the provider
    assert db.logins() == 2


def test_a_reset_cut_by_a_power_failure_is_finished_at_the_next_start(lab: Lab) -> None:
    provider, phone, db = lab.start()
    handler = log_in(phone, provider)["handler"]
    assert (phone.state_dir / "tokens.json").exists()
    marker = phone.state_dir / "reset-pending"
    # The provider frozen: the reset's handler DELETE hangs (3 s at most), so the
    # phone is mid-way, marker written and nothing wiped, when the power goes.
    provider.process.send_signal(signal.SIGSTOP)
    try:
        reset = subprocess.Popen(
            [sys.executable, "-m", "riptphone", "reset", "--yes", "--socket", str(phone.socket)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + LONG
        while not marker.exists():
            assert time.monotonic() < deadline, "the reset marker never appeared"
            time.sleep(0.005)
        assert phone.process is not None
        phone.process.kill()  # the power cut
        phone.process.wait()
        phone.process = None
        reset.wait(WAIT)
    finally:
        provider.process.send_signal(signal.SIGCONT)
    assert marker.exists() and (phone.state_dir / "tokens.json").exists()  # half-way
    phone.start("provisioning")
    assert "event=reset_resumed" in phone.log_text()
    assert not marker.exists()
    left = {p.name for p in phone.state_dir.iterdir()}
    assert not left & {"tokens.json", "registration.json", "identity.json"}, left
    _, code = provisioning(phone)
    approve(provider, code)
    status = registered(phone)
    assert status["handler"] != handler  # a new phone as far as the provider knows
    assert db.logins() == 2
