"""The ``ript-provider`` command as a real subprocess, reached by the phone's own H3 client."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ript.protocol.descriptions import ProviderTgs, TrunkGroup
from riptphone.net.h3 import H3Client, Response
from riptprovider.config import ProviderConfigError, load_config
from riptprovider.oauth import IssuerSettings
from riptprovider.passwords import verify_password

TOKEN = "alice-cli-token-0123456789"
ROOT = "/.well-known/ript/v1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "provisioning" / "ript-provider.example.toml"
READY = re.compile(r"ready: origin=(\S+) listen=\S+ ca_file=(\S+) accounts: (.*)$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, port: int, extra_server: str = "") -> Path:
    path = directory / "provider.toml"
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = {port}
state_dir = "state"
{extra_server}

[accounts.alice]
name = "Alice"
numbers = ["+14085551002"]
destinations = "+1*"
tokens = ["{TOKEN}"]

[[accounts.alice.far-end]]
match = "+14089529999"
answer-after = 1.0
"""
    )
    path.chmod(0o600)
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "riptprovider", *args]


@dataclass
class Provider:
    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}; output: {self.seen}")

    def rest(self) -> list[str]:
        """Every line after the process ended."""
        self.proc.wait(STOP_TIMEOUT)
        while (line := self.lines.get(timeout=STOP_TIMEOUT)) is not None:
            self.seen.append(line)
        return self.seen


def _pump(stream: object, lines: queue.Queue[str | None]) -> None:
    assert hasattr(stream, "readline")
    for line in iter(stream.readline, ""):
        lines.put(line.rstrip("\n"))
    lines.put(None)


@contextmanager
def provider(config: Path) -> Iterator[Provider]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "firmware")}
    proc = subprocess.Popen(
        command("serve", "--config", str(config)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    running = Provider(proc)
    threading.Thread(target=_pump, args=(proc.stderr, running.lines), daemon=True).start()
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(STOP_TIMEOUT)
        assert proc.stderr is not None
        proc.stderr.close()


def run_once(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "firmware")}
    return subprocess.run(
        command(*args), check=False, capture_output=True, text=True, timeout=START_TIMEOUT, env=env
    )


async def get(ca_file: str, url: str, token: str = TOKEN) -> Response:
    async with H3Client(ca_file=ca_file, connect_timeout=5.0) as client:
        return await asyncio.wait_for(
            client.request("GET", url, headers={"authorization": f"Bearer {token}"}), 10
        )


def test_serve_answers_the_phone_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    with provider(config) as running:
        origin, ca_file, accounts = running.wait_for(READY).groups()
        assert origin == f"https://localhost:{port}"
        assert Path(ca_file) == tmp_path / "state" / "tls" / "ca.pem"
        assert accounts == "alice (+14085551002)"

        resp = asyncio.run(get(ca_file, f"{origin}{ROOT}/providertgs"))
        assert resp.status == 200, resp.body
        tgs = ProviderTgs.from_bytes(resp.body)
        assert [tg.uri for tg in tgs.tgs] == [f"{origin}/tgs/alice"]
        resp = asyncio.run(get(ca_file, tgs.tgs[0].uri))
        assert resp.status == 200
        assert TrunkGroup.from_bytes(resp.body).uri == f"{origin}/tgs/alice"
        assert asyncio.run(get(ca_file, tgs.tgs[0].uri, "wrong-token-0123456789")).status == 401

        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(STOP_TIMEOUT) == 0
        output = running.rest()
    assert any(line.endswith("stopped") for line in output)
    assert not any("Traceback" in line or TOKEN in line for line in output)
    assert not any("readable by others" in line for line in output)  # the file is 0600
    state = tmp_path / "state"
    assert (state / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert state.stat().st_mode & 0o777 == 0o700


def test_second_start_reuses_the_ca_and_sigint_stops_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    with provider(config) as first:
        ca_file = first.wait_for(READY).group(2)
        ca_pem = Path(ca_file).read_bytes()
        first.proc.send_signal(signal.SIGINT)
        assert first.proc.wait(STOP_TIMEOUT) == 0
    config = write_config(tmp_path, free_port())  # the same state directory, a new port
    config.chmod(0o644)
    with provider(config) as second:
        origin, again, _ = second.wait_for(READY).groups()
        warning = f"{config} holds bearer tokens or password hashes but is readable by others"
        assert any(warning in line for line in second.seen)
        assert again == ca_file
        assert Path(again).read_bytes() == ca_pem
        resp = asyncio.run(get(again, f"{origin}{ROOT}/providertgs"))
        assert resp.status == 200
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(STOP_TIMEOUT) == 0


def test_ca_subcommand_prints_the_ca_file_before_and_after_serve(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    made = run_once("ca", "--config", str(config))
    assert made.returncode == 0, made.stderr
    ca_path = made.stdout.strip()
    assert ca_path == str(tmp_path / "state" / "tls" / "ca.pem")
    ca_pem = Path(ca_path).read_bytes()
    assert ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    with provider(config) as running:
        origin, ca_file, _ = running.wait_for(READY).groups()
        assert ca_file == ca_path
        assert Path(ca_file).read_bytes() == ca_pem  # serve trusts the CA `ca` made
        assert asyncio.run(get(ca_file, f"{origin}{ROOT}/providertgs")).status == 200
        again = run_once("ca", "--config", str(config))
        assert again.stdout.strip() == ca_path
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(STOP_TIMEOUT) == 0


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ript-provider: ")
    return lines[0]


def test_unknown_key_is_one_line_naming_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), extra_server="max_calls = 3")
    line = _one_error_line(run_once("serve", "--config", str(config)))
    assert str(config) in line
    assert "[server] max_calls: unknown key" in line
    assert not (tmp_path / "state").exists()  # nothing made from a rejected file
    line = _one_error_line(run_once("ca", "--config", str(config)))
    assert "max_calls" in line


def test_bad_account_and_missing_file_are_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    config.write_text(config.read_text().replace('"+14085551002"', '"4085551002"'))
    line = _one_error_line(run_once("serve", "--config", str(config)))
    assert f"{config}: accounts.alice.numbers: '4085551002' is not an E.164 number" in line
    assert TOKEN not in line
    line = _one_error_line(run_once("serve", "--config", str(tmp_path / "absent.toml")))
    assert "cannot read the configuration" in line


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = int(busy.getsockname()[1])
        config = write_config(tmp_path, port)
        line = _one_error_line(run_once("serve", "--config", str(config)))
    assert f"cannot listen on udp/tcp 127.0.0.1:{port}" in line


def test_unusable_state_dir_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    (tmp_path / "state").write_text("a file, not a directory")
    line = _one_error_line(run_once("serve", "--config", str(config)))
    assert f"state directory {tmp_path / 'state'}: not a directory" in line


def test_help_lists_the_subcommands() -> None:
    result = run_once("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout
    assert "ca" in result.stdout


# The configuration reader in process ------------------------------------------------


def test_example_file_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert (config.host, config.port, config.origin) == ("127.0.0.1", 4433, None)
    assert config.state_dir == EXAMPLE.parent / "provider-state"
    alice = config.accounts["alice"]
    assert alice.numbers == ("+14085551002",)
    assert alice.destinations.allows("+14089529999")
    echo = alice.far_end("+14089529999")
    assert (echo.outcome, echo.answer_after, echo.media) == ("answer", 1.0, "echo")
    assert (alice.far_end("+14089520001").media, alice.far_end("+14089520001").tone_hz) == (
        "tone",
        1000,
    )
    assert alice.far_end("+14089520002").outcome == "decline"
    assert alice.far_end("+14089520003").outcome == "never-answer"
    # The documented demo password signs in on the verification page.
    assert alice.password is not None and verify_password("alice-demo-password", alice.password)
    assert config.oauth == IssuerSettings()  # the example spells out the defaults


def test_oauth_section(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[server]\nstate_dir = "s"\n[accounts.bob]\nnumbers = "+14085551003"\n'
        '[oauth]\nclient_ids = ["desk", "lab"]\naccess_token_lifetime = 5\npoll_interval = 2\n'
        "refresh_reuse_grace = 0\n"
    )
    oauth = load_config(path).server_config().oauth
    assert oauth == IssuerSettings(("desk", "lab"), 5, 30 * 86400, 600, 2, 0)


def test_defaults_and_server_config(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[server]\nstate_dir = "/abs/state"\n[accounts.bob]\nnumbers = "+14085551003"\n'
    )
    config = load_config(path)
    server = config.server_config()
    assert (server.host, server.port, server.origin) == ("127.0.0.1", 4433, None)
    assert server.webtransport is True
    assert server.state_dir == Path("/abs/state")
    assert list(server.accounts) == ["bob"]


_S = '[server]\nstate_dir="s"\n[accounts.a]\nnumbers="+14085551002"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nstate_dir="s"\nport=70000', "[server] port: must be an integer"),
        ('[server]\nstate_dir="s"\nport=true', "[server] port: must be an integer"),
        ('[server]\nstate_dir="s"\nhost=""', "[server] host:"),
        ('[server]\nstate_dir="s"\norigin="http://x"', "[server] origin:"),
        ('[server]\nstate_dir="s"\norigin="https://x/path"', "[server] origin:"),
        ('[server]\nstate_dir="s"\norigin="https://x:99999"', "[server] origin:"),
        ('[server]\nstate_dir="s"\nwebtransport=1', "[server] webtransport: must be true or"),
        ('[server]\nstate_dir="s"\nwebtransport="no"', "[server] webtransport: must be true"),
        ("[server]\nport=1", "[server] state_dir: is required"),
        ('[server]\nstate_dir=""', "[server] state_dir:"),
        ('[server]\nstate_dir="s"', "[accounts]: is required"),
        ('[server]\nstate_dir="s"\n[accounts]', "[accounts]: must hold at least one"),
        ('[accounts.a]\nnumbers="+14085551002"', "[server]: is required"),
        ('[server]\nstate_dir="s"\n[logging]', "[logging]: unknown section"),
        ('[server]\nstate_dir="s"\n[accounts.a]\nnumber="+1"', "accounts.a.number is not"),
        ("[server\n", "not valid TOML"),
        (f"{_S}[oauth]\nclient_id=['x']", "[oauth] client_id: unknown key (known: access_"),
        (f"{_S}[oauth]\nclient_ids=[]", "[oauth] client_ids: must be a non-empty list"),
        (f"{_S}[oauth]\nclient_ids='ript-phone'", "[oauth] client_ids: must be a non-empty"),
        (f"{_S}[oauth]\naccess_token_lifetime=0", "[oauth] access_token_lifetime: must be a"),
        (f"{_S}[oauth]\npoll_interval=1.5", "[oauth] poll_interval: must be a whole number"),
        (f"{_S}[oauth]\ndevice_code_lifetime=99999", "[oauth] device_code_lifetime: must"),
        (f"{_S}[oauth]\nrefresh_token_lifetime=true", "[oauth] refresh_token_lifetime: must"),
        (f"{_S}[oauth]\nrefresh_reuse_grace=-1", "[oauth] refresh_reuse_grace: must be a"),
        (
            '[server]\nstate_dir="s"\n[accounts.a]\nnumbers="+14085551002"\npassword="pw"',
            "accounts.a.password: a password must be a hash",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ProviderConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_origin_is_kept_without_final_slash(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[server]\nstate_dir="s"\norigin="https://phone.example:8443/"\n'
        '[accounts.a]\nnumbers="+14085551002"\n'
    )
    config = load_config(path)
    assert config.origin == "https://phone.example:8443"
    assert config.state_dir == tmp_path / "s"


def test_webtransport_can_be_turned_off(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        '[server]\nstate_dir="s"\nwebtransport=false\n[accounts.a]\nnumbers="+14085551002"\n'
    )
    assert load_config(path).server_config().webtransport is False
