"""``ript-phone diagnose``: one redacted text bundle to attach to a bug report.

It says what a support engineer asks first, without a shell on the phone:
versions; the configuration (no secrets are in it, and the bundle never reads
the token or key files' contents); what the state directory holds (present or
not, dates, the handler URI, the certificate's expiry); the audio devices
alsa-lib sees; GPIO and I2C devices; whether the provider is reachable (DNS,
a QUIC handshake on UDP, a TLS handshake on TCP); and the last log lines.

Each probe is independent and bounded in time: one that fails says why in
its section and the rest go on.  A last pass removes anything that looks
like a bearer token, a password or a PEM block, in case one slipped into a
log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from ript.version import version
from riptphone.config import Config

PROBE_TIMEOUT_S = 5.0
LOG_LINES = 80
PACKAGES = (
    "aioquic",
    "cryptography",
    "paho-mqtt",
    "gpiozero",
    "luma.oled",
    "opuslib",
    "pyalsaaudio",
)

_SECRETS = [
    (re.compile(r"-----BEGIN [A-Z ]+-----.*?-----END [A-Z ]+-----", re.S), "[PEM block removed]"),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1[removed]"),
    (
        re.compile(
            r"(?i)((?:access_token|refresh_token|token|password|psk|secret)[\"']?\s*[=:]\s*)"
            r"[\"']?[^\s\"',}]+"
        ),
        r"\1[removed]",
    ),
]


def redact(text: str) -> str:
    """``text`` without bearer tokens, passwords, keys or PEM blocks."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _section(title: str, body: str) -> str:
    return f"== {title}\n{body.rstrip()}\n"


def _guard(probe: Callable[[], str]) -> str:
    try:
        return probe()
    except Exception as exc:  # a probe that fails says so; the bundle goes on
        return f"(failed: {type(exc).__name__}: {exc})"


def versions() -> str:
    lines = [f"ript-phone {version()}", f"python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    lines.append(f"openssl {ssl.OPENSSL_VERSION}")
    lines.append(f"kernel {platform.release()} {platform.machine()}")
    release = Path("/etc/os-release")
    if release.is_file():
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', release.read_text(), re.M)
        if pretty:
            lines.append(f"os {pretty.group(1)}")
    model = Path("/proc/device-tree/model")
    if model.is_file():
        board = model.read_bytes().rstrip(b"\0").decode(errors="replace")
        lines.append(f"board {board}")
    return "\n".join(lines)


def configuration(config: Config, path: Path) -> str:
    lines = [f"file {path}"]
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for item in dataclasses.fields(values):
            value = getattr(values, item.name)
            shown = repr(str(value)) if isinstance(value, Path) else repr(value)
            lines.append(f"[{section.name}] {item.name} = {shown}")
    return "\n".join(lines)


def state(config: Config) -> str:
    """What the state directory holds: names, sizes, dates; never a secret's contents."""
    directory = config.phone.state_dir
    if not directory.is_dir():
        return f"{directory}: missing (a phone that never started, or was reset)"
    lines = [f"{directory} mode {oct(directory.stat().st_mode & 0o777)}"]
    for entry in sorted(directory.iterdir()):
        info = entry.stat()
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.st_mtime))
        lines.append(
            f"  {entry.name} {info.st_size} bytes mode {oct(info.st_mode & 0o777)} {stamp}Z"
        )
    from riptphone.store import StateStore  # noqa: PLC0415 - only this probe needs it

    store = StateStore(directory)
    registration = store.load_registration()
    if registration.data is not None:
        lines.append(f"handler {registration.data.handler_uri} (tg {registration.data.tg_uri})")
    if registration.problem:
        lines.append(f"registration: {registration.problem}")
    tokens = store.load_tokens()
    if tokens.data is not None:
        expires = tokens.data.expires_at
        left = "unknown" if expires is None else f"{expires - time.time():.0f} s"
        lines.append(f"logged in: access token expires in {left}")
    else:
        lines.append("logged in: no tokens")
    identity = store.load_identity()
    if identity.data is not None and identity.data.cert_chain_pem:
        from cryptography import x509  # noqa: PLC0415

        cert = x509.load_pem_x509_certificates(identity.data.cert_chain_pem)[0]
        lines.append(f"certificate until {cert.not_valid_after_utc:%Y-%m-%d %H:%M}Z")
    return "\n".join(lines)


def audio(config: Config) -> str:
    import alsaaudio  # noqa: PLC0415 - the bundle works without a sound card too

    lines = [f"configured capture {config.audio.capture!r}, playback {config.audio.playback!r}"]
    lines.append("cards: " + (", ".join(alsaaudio.cards()) or "none"))
    lines.append("playback PCMs: " + ", ".join(alsaaudio.pcms(alsaaudio.PCM_PLAYBACK)))
    lines.append("capture PCMs: " + ", ".join(alsaaudio.pcms(alsaaudio.PCM_CAPTURE)))
    return "\n".join(lines)


def devices() -> str:
    lines = []
    for pattern in ("/dev/gpiochip*", "/dev/i2c-*", "/dev/spidev*", "/dev/snd/*"):
        found = sorted(glob.glob(pattern))
        readable = [p for p in found if os.access(p, os.R_OK | os.W_OK)]
        lines.append(f"{pattern}: {len(found)} found, {len(readable)} usable by this user")
    return "\n".join(lines)


def _host_port(domain: str) -> tuple[str, int]:
    host, _, port = domain.rpartition(":") if domain.count(":") == 1 else (domain, "", "")
    return (host, int(port)) if port.isdigit() else (domain, 443)


def reachability(config: Config) -> str:
    host, port = _host_port(config.provider.domain)
    lines = [f"provider {host} port {port}"]
    try:
        addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port)})
        lines.append("DNS: " + ", ".join(addresses))
    except OSError as exc:
        return "\n".join([*lines, f"DNS: cannot resolve {host}: {exc}"])
    context = ssl.create_default_context()
    if config.provider.ca_file is not None:
        context.load_verify_locations(cafile=str(config.provider.ca_file))
    started = time.monotonic()
    try:
        with (
            socket.create_connection((host, port), PROBE_TIMEOUT_S) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            lines.append(
                f"HTTPS (TCP): {tls.version()} in {1000 * (time.monotonic() - started):.0f} ms"
            )
    except (OSError, ssl.SSLError) as exc:
        lines.append(f"HTTPS (TCP): {exc}")
    lines.append(f"QUIC (UDP): {asyncio.run(_quic(config, host, port))}")
    return "\n".join(lines)


async def _quic(config: Config, host: str, port: int) -> str:
    from riptphone.net.h3 import H3Client, H3Error  # noqa: PLC0415

    started = time.monotonic()
    try:
        async with H3Client(
            ca_file=config.provider.ca_file, connect_timeout=PROBE_TIMEOUT_S
        ) as http:
            await asyncio.wait_for(http.connection(f"https://{host}:{port}"), PROBE_TIMEOUT_S)
    except (H3Error, OSError, TimeoutError) as exc:
        return f"no handshake: {exc or type(exc).__name__}"
    return f"HTTP/3 handshake in {1000 * (time.monotonic() - started):.0f} ms"


def recent_log() -> str:
    if shutil.which("journalctl") is None:
        return "(no journal here)"
    done = subprocess.run(
        ["journalctl", "-u", "ript-phone", "-n", str(LOG_LINES), "--no-pager", "-o", "short-iso"],
        check=False,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
    )
    return done.stdout or done.stderr or "(empty)"


def bundle(config: Config, path: Path, *, network: bool = True) -> str:
    """The whole report, redacted."""
    parts: list[tuple[str, Callable[[], str]]] = [
        ("versions", versions),
        ("configuration", lambda: configuration(config, path)),
        ("state", lambda: state(config)),
        ("audio", lambda: audio(config)),
        ("devices", devices),
    ]
    if network:
        parts.append(("provider reachability", lambda: reachability(config)))
    parts.append(("log", recent_log))
    header = f"ript-phone diagnose {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n"
    text = header + "\n".join(_section(title, _guard(probe)) for title, probe in parts)
    return redact(text)


def main(config_path: Path, out: Path | None, *, network: bool = True) -> int:
    from riptphone.config import ConfigError, load_config  # noqa: PLC0415

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"ript-phone: {exc}", flush=True)
        return 2
    text = bundle(config, config_path, network=network)
    if out is None:
        print(text, end="")
        return 0
    out.write_text(text)
    os.chmod(out, 0o600)
    print(f"ript-phone: wrote {out}")
    return 0
