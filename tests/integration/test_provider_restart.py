"""A provider killed (SIGKILL) and restarted mid-call: the call goes on (issue 13, item 3).

Real processes: ``ript-provider serve`` and ``ript-phone run`` over loopback
HTTP/3, the phone on file-plugin ALSA.  The phone makes an echo call; the
provider is killed without a chance to save anything, then started again on
the same port and state directory.  What the call needs (its legs and
``ript-leg`` cookies, its media key, where the provider's chunk numbering had
got to) is in the provider's SQLite file, so the phone, once it has given up
the dead connection, re-establishes its byways and media on a new one and the
echo comes back: the same call, media both ways.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from alsa.fileplugin import write_asoundrc
from riptdev.processes import ProviderProcess, stop_process, tone_pcm
from riptphone.control.client import request

from .procs import (
    ECHO,
    PROVIDER_TOML,
    PhoneProcess,
    ProviderApi,
    provider_process,
    relaunch_provider,
)

pytestmark = pytest.mark.e2e

RESUME_WAIT = 40.0
"""Seconds the call has to carry media again after the restart (5 s without an answer to
the byways, then the retry-backoff of 2 s or more, on a loaded machine)."""


def status(phone: PhoneProcess) -> dict[str, Any]:
    """One ``status`` on the control socket (not the CLI: its start-up would blur the times)."""
    return request(phone.socket, {"cmd": "status"})


def wait_status(
    phone: PhoneProcess, accept: Any, what: str, timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert phone.process is not None and phone.process.poll() is None, phone.log_text()
        last = status(phone)
        if accept(last):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout:g} s: {last}\n{phone.log_text()[-4000:]}")


def stats_of(status: dict[str, Any]) -> dict[str, Any]:
    call = status.get("call")
    return {} if not call else dict(call["stats"])


@pytest.mark.parametrize("transport", ["webtransport", "byways"])
def test_a_call_goes_on_after_the_provider_is_killed_and_restarted(
    tmp_path: Path, transport: str
) -> None:
    config = PROVIDER_TOML
    if transport == "byways":
        config = config.replace("[server]\n", "[server]\nwebtransport = false\n", 1)
    provider: ProviderProcess | None = provider_process(tmp_path / "provider", config)
    assert provider is not None
    alsa = write_asoundrc(tmp_path / "alsa", tone_pcm(60))
    phone = PhoneProcess(tmp_path / "phone", provider, alsa=alsa)
    try:
        phone.start()
        assert phone.cli("hook", "off").returncode == 0
        assert phone.cli("dial", ECHO).returncode == 0
        before = wait_status(
            phone,
            lambda s: s["state"] == "in-call" and stats_of(s).get("chunks_received", 0) > 50,
            "echoed media",
        )
        uri = before["call"]["uri"]
        assert before["call"]["transport"] == transport
        described = ProviderApi(provider).get_call(uri)
        assert described is not None and described.media_key is not None

        killed_at = time.monotonic()
        provider.process.send_signal(signal.SIGKILL)
        assert provider.process.wait(10) == -signal.SIGKILL
        killed = stats_of(status(phone))
        started = time.monotonic()
        provider = relaunch_provider(provider, "restarted")
        ready = time.monotonic()

        first = wait_status(
            phone,
            lambda s: stats_of(s).get("chunks_received", 0) > killed["chunks_received"],
            "a first echoed chunk after the restart",
            RESUME_WAIT,
        )
        back = time.monotonic()
        # Media both ways again: the echo of the phone's chunks comes back, acked.
        after = wait_status(
            phone,
            lambda s: (
                stats_of(s).get("chunks_received", 0) > killed["chunks_received"] + 50
                and stats_of(s).get("acks_received", 0) > killed["acks_received"] + 50
            ),
            "echoed media after the restart",
            RESUME_WAIT,
        )
        print(
            f"\nprovider restart ({transport}): ready {ready - started:.2f} s after the relaunch; "
            f"the first echoed chunk {back - ready:.2f} s after ready "
            f"({back - killed_at:.2f} s after the kill); stats then {stats_of(first)}"
        )
        call = after["call"]
        assert (call["uri"], call["state"], after["state"]) == (uri, "answered", "in-call")
        assert call["transport"] == transport
        stats = call["stats"]
        assert (stats["auth_failures"], stats["duplicates"], stats["malformed"]) == (0, 0, 0)
        # The same leg: no new claim, the same media key (from the provider's file).
        again = ProviderApi(provider).get_call(uri)
        assert again is not None and again.media_key == described.media_key
        log = phone.log_text()
        assert "event=connection_abandoned" in log, log[-4000:]
        assert "event=call_ended" not in log
        # The same call at the provider, still answered; it ends when the phone hangs up.
        assert phone.cli("hangup").returncode == 0
        wait_status(phone, lambda s: s["call"] is None, "the call over")
    finally:
        phone.stop()
        if provider is not None:
            stop_process(provider.process)
