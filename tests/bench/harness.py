"""One phone case's processes: the provider (transport key, origin), the phone (codec), a call.

Used by the comparison (:mod:`bench.compare`) and the quality run
(:mod:`bench.quality`).  Each measurement starts its own provider and phone,
so the phone's VmHWM is the peak of that one call's process and no state
carries from one case to the next.

Transport: the provider's ``[server] webtransport = true|false`` (false forces
media byways).  A provider that does not know the key yet refuses its
configuration; the case then runs on a provider without it and says so.

Codec: the phone's ``[audio] codecs`` names the one codec of the case.  A
phone that does not honour the key still advertises every codec it has and the
provider would pick Opus; the bench then replaces the handler's advertisement
with the case's codec alone (``PUT {handler}``, as any client of the account
may) before the call, and says so.  Either way the call's codec and transport
are read back from ``status.call`` and a mismatch is flagged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alsa.fileplugin import FilePluginAlsa
from bench.benchlib import (
    CONFIG_CODEC,
    Case,
    only_codec_advertisement,
    with_audio_codecs,
    with_server_key,
)
from faultnet import UdpProxy
from integration.procs import TOKEN, PhoneProcess, ProviderDb, provider_process
from ript.protocol.advertisement import negotiate, parse_advertisement
from riptdev.processes import ProcessError, ProviderProcess, stop_process
from riptphone.control.client import ControlConnection, request
from riptphone.net.h3 import H3Client
from riptphone.net.ript_client import RiptClient, StaticToken
from riptprovider.core import PROVIDER_ADVERTISEMENT

AT_ONCE = "+14089520000"
WAIT = 20.0
CARRIED = ("opus", "pcmu")
PROVIDER_ADV = parse_advertisement(PROVIDER_ADVERTISEMENT)
_refused: set[str] = set()
"""Provider keys refused once in this run: not tried again (the refusal is logged once)."""


def bench_provider_toml(base: str, media: str = "echo") -> str:
    """``base`` plus a far end that answers at once and echoes the media (or ``media``)."""
    return (
        base
        + f"""
[[accounts.bob.far-end]]
match = "{AT_ONCE}"
outcome = "answer"
answer-after = 0.0
media = "{media}"
"""
    )


def start_provider(work: Path, base_toml: str, case: Case, notes: list[str]) -> ProviderProcess:
    """The provider for ``case``: with the webtransport key, or without if it is refused."""
    wanted = "true" if case.transport == "webtransport" else "false"
    if "webtransport" not in _refused:
        try:
            return provider_process(work, with_server_key(base_toml, "webtransport", wanted))
        except ProcessError:
            log = (work / "provider.log").read_text(errors="replace")
            if "webtransport" not in log:
                raise
            _refused.add("webtransport")
    notes.append("provider refused [server] webtransport: ran without it")
    return provider_process(work, base_toml)


PHONE_AUDIO: list[str] = []
"""``--phone-audio`` of bench_call.py: ``KEY=VALUE`` lines for every phone's ``[audio]``."""


def phone_process(
    work: Path, provider: ProviderProcess, case: Case, alsa: FilePluginAlsa
) -> PhoneProcess:
    """A phone (not started) whose ``[audio] codecs`` is the case's codec alone."""
    phone = PhoneProcess(work, provider, alsa=alsa)
    config = phone.config.read_text()
    phone.config.write_text(with_audio_codecs(config, [CONFIG_CODEC[case.codec]], PHONE_AUDIO))
    return phone


def negotiated_codec(advertisement: str) -> str | None:
    """The codec the phone would send with this advertisement: the provider's choice.

    The reference provider's own negotiation (its advertisement, its preference),
    then the first codec of the client directive the phone carries, as the
    phone's media session picks it.
    """
    directive = negotiate(parse_advertisement(advertisement), PROVIDER_ADV)
    for stream in directive.streams:
        for codec in stream.codecs:
            if codec.name.lower() in CARRIED:
                return codec.name.lower()
    return None


def force_codec(provider: ProviderProcess, case: Case, notes: list[str]) -> None:
    """If the phone's handler offers another carried codec, offer the case's codec alone."""
    db = ProviderDb(provider)
    try:
        handlers = db.handlers()
    finally:
        db.close()
    if not handlers:
        raise SystemExit("bench: the phone registered no handler")
    uri = handlers[-1]

    async def go() -> bool:
        async with H3Client(ca_file=provider.ca_file) as http:
            client = RiptClient(http, provider.domain, StaticToken(TOKEN))
            handler = await client.get_handler(uri)
            if handler is None:
                raise SystemExit(f"bench: the provider does not know the handler {uri}")
            if negotiated_codec(handler.advertisement) == case.codec:
                return False
            only = only_codec_advertisement(case.codec)
            await client.update_handler(uri, dataclasses.replace(handler, advertisement=only))
            return True

    if asyncio.run(asyncio.wait_for(go(), WAIT)):
        notes.append(f"phone's advertisement led to another codec: replaced by {case.codec} alone")


@contextmanager
def case_processes(
    work: Path,
    base_toml: str,
    case: Case,
    alsa: FilePluginAlsa,
    notes: list[str],
    *,
    net: UdpProxy | None = None,
) -> Iterator[tuple[ProviderProcess, PhoneProcess]]:
    """Provider and phone for ``case``, started and ready to call; both stopped after.

    With ``net`` the phone reaches the provider through that proxy (whose upstream
    is set here, once the provider has its port; the provider's origin must
    already name the proxy).
    """
    provider = start_provider(work / "provider", base_toml, case, notes)
    phone: PhoneProcess | None = None
    try:
        seen = provider
        if net is not None:
            net.upstream = ("127.0.0.1", provider.port)
            seen = with_domain_port(provider, net.address[1])
        phone = phone_process(work / "phone", seen, case, alsa)
        phone.start()
        force_codec(provider, case, notes)
        yield provider, phone
    finally:
        if phone is not None:
            phone.stop()
        stop_process(provider.process)


def with_domain_port(provider: ProviderProcess, port: int) -> ProviderProcess:
    """The same provider as seen through a proxy on ``port`` (for the phone's configuration)."""
    return dataclasses.replace(provider, port=port)


def until_state(watch: ControlConnection, *states: str) -> str:
    while True:
        event = watch.receive()
        if event is None:
            raise SystemExit("bench: the phone closed the control socket")
        if event.get("event") == "error":
            raise SystemExit(f"bench: the phone reported an error: {event.get('error')}")
        if event.get("event") == "state" and event.get("state") in states:
            return str(event["state"])


def dial(phone: PhoneProcess, watch: ControlConnection) -> float:
    """Dial the at-once far end; seconds from the dial request to ``in-call``."""
    start = time.perf_counter()
    request(phone.socket, {"cmd": "dial", "number": AT_ONCE})
    if until_state(watch, "in-call", "idle") != "in-call":
        raise SystemExit("bench: a call ended without being answered")
    return time.perf_counter() - start


def hang_up(phone: PhoneProcess, watch: ControlConnection) -> None:
    request(phone.socket, {"cmd": "hook", "state": "on"})
    until_state(watch, "idle")


def call_info(status: dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(transport, codec, stats) of the status's call."""
    call = status.get("call") or {}
    codec = call.get("codec")
    return (
        call.get("transport"),
        None if codec is None else str(codec).lower(),
        call.get("stats") or {},
    )


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/PID/status`` figure in kB (VmHWM, VmRSS)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {key}")
