"""Fuzz targets of the phone's and the provider's files and of the control socket's lines."""

from __future__ import annotations

import hashlib
import io
import json
import wave
from pathlib import Path
from typing import Any

from riptphone import config as phone_config
from riptphone.app import calllog
from riptphone.boot_file import BootFileError
from riptphone.boot_file import read as read_boot_file
from riptphone.calllog_store import CALL_LOG, load_call_log
from riptphone.control.client import (
    ControlClientError,
    ControlConnection,
    format_event,
    format_status,
)
from riptphone.control.server import RequestError, parse_request
from riptphone.store import (
    IDENTITY,
    REGISTRATION,
    TOKENS,
    Identity,
    Registration,
    StateStore,
    StoreError,
    Tokens,
)
from riptprovider import config as provider_config
from riptprovider.far_end_audio import FarEndAudioError, load_wav
from riptprovider.tls import CaError, load_or_create_ca

from .engine import Target

ROOT = Path(__file__).resolve().parents[2]

_dirs: dict[str, Path] = {}


def _dir(name: str) -> Path:
    from .targets import scratch

    if name not in _dirs:
        path = scratch() / name
        path.mkdir(mode=0o700, exist_ok=True)
        _dirs[name] = path
    return _dirs[name]


# ------------------------------------------------------------------ configuration files

TOML_TOKENS = (
    b"[provider]\n",
    b"[phone]\n",
    b"[audio]\n",
    b"[dialplan]\n",
    b"[hardware]\n",
    b"[log]\n",
    b"[server]\n",
    b"[push]\n",
    b"[oauth]\n",
    b"[accounts.a]\n",
    b"[[accounts.a.far-end]]\n",
    b' = "',
    b'"\n',
    b" = [",
    b"]\n",
    b" = 1\n",
    b" = true\n",
    b"domain",
    b"ca_file",
    b"state_dir",
    b"boot_file",
    b"control_socket",
    b"number",
    b"country_code",
    b"digit_map",
    b"keypad",
    b"origin",
    b"broker",
    b"numbers",
    b"destinations",
    b"tokens",
    b"password",
    b"match",
    b"outcome",
    b"file",
    b"~",
    b"~nobody-here",
    b"\\u0000",
    b"..",
)


def _phone_config(data: bytes) -> None:
    directory = _dir("phone-config")
    path = directory / "phone.toml"
    path.write_bytes(data)
    phone_config.load_config(path)


def _phone_config_seeds() -> list[bytes]:
    seeds = [(ROOT / "provisioning" / "deb" / "phone.toml").read_bytes()]
    seeds.append(
        b'[provider]\ndomain = "localhost:4433"\ntrunk_group = "Desk"\n'
        b'[phone]\nnumber = "+14085551002"\nstate_dir = "state"\nboot_file = "boot.toml"\n'
        b'[audio]\nptime = 20\ncodecs = ["opus", "PCMU"]\n'
        b'[dialplan]\ncountry_code = "44"\ndigit_map = ["0[1-9]x.", "999"]\n'
        b'[hardware]\nbackend = "virtual"\nkeypad = "4x4"\n[log]\nlevel = "debug"\n'
    )
    return seeds


def _boot_file(data: bytes) -> None:
    path = _dir("boot-file") / "ript-phone.toml"
    path.write_bytes(data)
    read_boot_file(path)


def _boot_file_seeds() -> list[bytes]:
    return [
        b'[provider]\ndomain = "ript.example.net"\n[phone]\nname = "Kitchen"\n'
        b'[wifi]\nssid = "home"\npsk = "secret-pass"\ncountry = "GB"\n'
    ]


def _provider_config(data: bytes) -> None:
    path = _dir("provider-config") / "provider.toml"
    path.write_bytes(data)
    provider_config.load_config(path)


def _provider_config_seeds() -> list[bytes]:
    seeds = [(ROOT / "provisioning" / "deb" / "provider.toml").read_bytes()]
    seeds.append(
        b'[server]\nstate_dir = "state"\nhost = "127.0.0.1"\nport = 4433\n'
        b'origin = "https://localhost:4433"\n'
        b'[push]\nbroker = "mqtts://b.example:8883"\npassword_file = "pw"\nacl_file = "acl"\n'
        b'reload_command = ["kill", "-HUP", "1"]\n'
        b'[oauth]\nclient_ids = ["ript-phone"]\npoll_interval = 5\n'
        b'[accounts.alice]\nname = "Alice"\nnumbers = ["+14085551002", "+14085551003"]\n'
        b'destinations = ["+1408*", "+1650*"]\ntokens = ["alice-token-0123456789"]\n'
        b'unreachable = ["+1408000*"]\n'
        b'[[accounts.alice.far-end]]\nmatch = "+14089520001"\noutcome = "decline"\n'
        b"reject-after = 2\n"
        b'[[accounts.alice.far-end]]\nmatch = "+14089520003"\noutcome = "answer"\n'
        b'media = "file"\nfile = "far.wav"\n'
    )
    return seeds


def _far_end_wav(data: bytes) -> None:
    """A far end's recorded audio file (``media = "file"``), read once per call."""
    path = _dir("far-end") / "far.wav"
    path.write_bytes(data)
    load_wav.cache_clear()
    load_wav(str(path), 8000)


def _far_end_wav_seeds() -> list[bytes]:
    seeds = []
    for rate, channels, width in ((16000, 1, 2), (8000, 1, 2), (48000, 2, 2), (8000, 1, 1)):
        out = io.BytesIO()
        with wave.open(out, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(width)
            wav.setframerate(rate)
            wav.writeframes(bytes(range(256)) * 4)
        seeds.append(out.getvalue())
    return seeds


_CA_FILES = ("ca.pem", "ca.key", "server.pem")


def _provider_ca(data: bytes) -> None:
    """The provider's CA and server certificate files, as a restart reads them.

    The input is the three files cut at NUL-NUL; a file left empty is removed,
    so the provider makes (or reissues) it as on a first start.
    """
    tls = _dir("provider-ca") / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    for name, content in zip(_CA_FILES, data.split(b"\x00\x00", 2), strict=False):
        if content:
            (tls / name).write_bytes(content)
        else:
            (tls / name).unlink(missing_ok=True)
    load_or_create_ca(tls.parent)


def _provider_ca_seeds() -> list[bytes]:
    state = _dir("provider-ca-seed")
    load_or_create_ca(state)
    files = [(state / "tls" / name).read_bytes() for name in _CA_FILES]
    return [b"\x00\x00".join(files), b"\x00\x00".join(files[:2]), b""]


# ------------------------------------------------------------------ state files

_STORE: StateStore | None = None


def _store() -> StateStore:
    global _STORE  # noqa: PLW0603 - one store directory per process
    if _STORE is None:
        _STORE = StateStore(_dir("store"))
    return _STORE


def _canonical(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _sealed(data: Any, secret: bool) -> bytes:
    """A record file with a correct checksum around ``data``, as a power-cut-free save writes."""
    body = {"format": 1, "secret": secret, "data": data}
    digest = hashlib.sha256(_canonical(body)).hexdigest()
    return _canonical({**body, "sha256": digest}) + b"\n"


_RECORDS = (REGISTRATION, TOKENS, IDENTITY, CALL_LOG)


def _state_store(data: bytes) -> None:
    """A record file: raw bytes (damaged files), or a JSON value sealed with a good checksum.

    The first byte picks the record and the mode: bit 0 seals the rest (so
    the record's own checks are reached, not only the checksum's), bits 1-2
    the record.  Loads never raise for a damaged file (docs/state-store.md).
    """
    head = data[0] if data else 0
    name = _RECORDS[(head >> 1) % len(_RECORDS)]
    body = data[1:]
    if head & 1:
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return
        try:
            body = _sealed(value, secret=name != CALL_LOG)
        except (ValueError, RecursionError):
            return
    store = _store()
    main = store.path(name)
    main.write_bytes(body)
    store.last_good_path(name).unlink(missing_ok=True)
    if name == REGISTRATION:
        store.load_registration()
    elif name == TOKENS:
        store.load_tokens()
    elif name == IDENTITY:
        store.load_identity()
    else:
        load_call_log(store)


def _key_pem() -> str:
    """The vectors' TEST ONLY phone key: a fixed key keeps the seeds, and so runs, reproducible."""
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "passport.json"
    return str(json.loads(vectors.read_text())["phone_private_key_pem"])


def _state_store_seeds() -> list[bytes]:
    from ript.protocol.descriptions import PushBinding

    registration = Registration(
        handler_id="0b1f3c0e-7a51-4d8e-9a3f-2d6c1e5b7a90",
        handler_uri="https://p.example/handlers/1",
        tg_uri="https://p.example/tgs/7",
        advertisement="1 in: opus; PCMU;\n1 out: opus; PCMU;",
        push=PushBinding("mqtts://b.example:8883", "ript/v1/h/1", "user", "pw"),
    )
    tokens = Tokens("access", "refresh", 1_800_000_000.0)
    identity = Identity(_key_pem().encode(), None, "https://p.example/certs/1")
    log = json.loads(
        calllog.to_json(
            (calllog.CallLogEntry("in", "+14085551002", 1_800_000_000.0, 61, True, "Bob"),)
        )
    )
    values = [registration.to_json(), tokens.to_json(), identity.to_json(), log]
    seeds = []
    for index, value in enumerate(values):
        seeds.append(bytes([index << 1 | 1]) + json.dumps(value).encode())
        seeds.append(bytes([index << 1]) + _sealed(value, index != 3))
    return seeds


def _call_log(data: bytes) -> None:
    calllog.from_json(data)


def _call_log_seeds() -> list[bytes]:
    entries = (
        calllog.CallLogEntry("in", "+14085551002", 1_800_000_000.0, 61, True, "Bob"),
        calllog.CallLogEntry("out", "+442079460000", 1_800_000_100.0, 0, False),
    )
    return [calllog.to_json(entries).encode()]


# ------------------------------------------------------------------ control socket lines


def _control_request(data: bytes) -> None:
    parse_request(data)


def _control_request_seeds() -> list[bytes]:
    return [
        b'{"cmd":"status"}',
        b'{"cmd":"hook","state":"off"}',
        b'{"cmd":"key","key":"5"}',
        b'{"cmd":"key","key":"redial"}',
        b'{"cmd":"dial","number":"+1 (408) 555-1002"}',
        b'{"cmd":"pull"}',
        b'{"cmd":"watch"}',
    ]


def _control_reply(data: bytes) -> None:
    """The CLI's side: the daemon's reply and watch lines, then how the CLI prints them."""
    connection = object.__new__(ControlConnection)
    connection.path = Path("/run/ript-phone/control.sock")
    connection._file = io.BytesIO(data)  # type: ignore[assignment]
    while (obj := connection.receive()) is not None:
        if "event" in obj:
            format_event(obj)
        else:
            format_status(obj)


def _control_reply_seeds() -> list[bytes]:
    return [
        b'{"ok":true,"state":"idle","line":"registered","number":"+14085551002",'
        b'"call":null,"handler":"https://p.example/h/1"}\n',
        b'{"event":"state","state":"ringing"}\n{"event":"ring","from":"+14085551003"}\n',
        b'{"event":"call","call":{"peer":"+1408","state":"active","duration":3}}\n',
        b'{"event":"screen","lines":["a","b"]}\n{"event":"dtmf","digit":"5"}\n',
    ]


CONTROL_TOKENS = (
    b'"cmd"',
    b'"status"',
    b'"hook"',
    b'"key"',
    b'"dial"',
    b'"number"',
    b'"state"',
    b'"event"',
    b'"ok"',
    b'"error"',
    b'"call"',
)


def targets() -> list[Target]:
    return [
        Target(
            "phone-config",
            "riptphone.config.load_config (TOML, the boot-file overlay, every key's check)",
            _phone_config,
            (phone_config.ConfigError,),
            _phone_config_seeds,
            TOML_TOKENS,
            instrument=("ript", "riptphone"),
        ),
        Target(
            "boot-file",
            "riptphone.boot_file.read (the first-boot file on the boot partition)",
            _boot_file,
            (BootFileError,),
            _boot_file_seeds,
            TOML_TOKENS,
            instrument=("ript", "riptphone"),
        ),
        Target(
            "provider-config",
            "riptprovider.config.load_config (server, push, oauth, accounts and far ends)",
            _provider_config,
            (provider_config.ProviderConfigError,),
            _provider_config_seeds,
            TOML_TOKENS,
            instrument=("ript", "riptprovider"),
        ),
        Target(
            "provider-ca",
            "riptprovider.tls.load_or_create_ca (the CA certificate and key, the server "
            "certificate in the provider's state directory)",
            _provider_ca,
            (CaError,),
            _provider_ca_seeds,
            (b"-----BEGIN CERTIFICATE-----\n", b"-----END CERTIFICATE-----\n", b"\x00\x00"),
            max_len=8192,
            instrument=("ript", "riptprovider"),
        ),
        Target(
            "far-end-wav",
            "riptprovider.far_end_audio.load_wav (a far end's WAV file, resampled)",
            _far_end_wav,
            (FarEndAudioError,),
            _far_end_wav_seeds,
            (b"RIFF", b"WAVE", b"fmt ", b"data", b"\x01\x00", b"\xfe\xff", b"LIST"),
            instrument=("ript", "riptprovider"),
        ),
        Target(
            "state-store",
            "riptphone.store loads (registration, tokens, identity) and the call log record; "
            "never raise on a damaged file",
            _state_store,
            (StoreError,),
            _state_store_seeds,
            (b'"handler_id"', b'"push"', b'"access_token"', b'"expires_at"', b'"key_pem"'),
            instrument=("ript", "riptphone"),
        ),
        Target(
            "call-log",
            "riptphone.app.calllog.from_json",
            _call_log,
            (calllog.CallLogError,),
            _call_log_seeds,
            (b'"direction"', b'"peer"', b'"peer_name"', b'"time"', b'"seconds"', b'"answered"'),
            instrument=("ript", "riptphone"),
        ),
        Target(
            "control-request",
            "riptphone.control.server.parse_request (one request line)",
            _control_request,
            (RequestError,),
            _control_request_seeds,
            CONTROL_TOKENS,
            instrument=("ript", "riptphone"),
        ),
        Target(
            "control-reply",
            "riptphone.control.client ControlConnection.receive, format_event, format_status",
            _control_reply,
            (ControlClientError,),
            _control_reply_seeds,
            CONTROL_TOKENS,
            instrument=("ript", "riptphone"),
        ),
    ]
