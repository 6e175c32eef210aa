"""The reference provider's configuration: one TOML file read into :class:`ProviderSettings`.

The file has two sections, and optional others::

    [server]
    host = "127.0.0.1"           # address to listen on (UDP)
    port = 4433                  # UDP port; 0 picks a free one
    state_dir = "state"          # CA, certificates, database; relative to this file
    origin = "https://localhost:4433"   # optional: the origin put in every URI
    webtransport = true          # optional: offer WebTransport media (false: byways only)
    max_handlers_per_account = 16        # optional: handlers (devices) one account may register
    max_connections = 1000               # optional: QUIC connections at once
    retry_above = 100                    # optional: open connections from which QUIC Retry is used

    [accounts.alice]             # exactly what riptprovider.accounts reads
    numbers = ["+14085551002"]
    tokens = ["..."]

    [push]                       # optional: MQTT shoulder taps (docs/push.md); absent = none
    broker = "spawn"             # run mosquitto here, or "mqtts://host:port" of an external one
    port = 8883                  # spawn: TCP port on 127.0.0.1; 0 (default) picks one, kept after
    mosquitto = "/usr/sbin/mosquitto"   # spawn: the broker's binary
    ca_file = "broker-ca.pem"    # external: CA of the broker's certificate (default: the system's)
    password_file = "/etc/mosquitto/ript.passwd"   # external: the files the provider writes
    acl_file = "/etc/mosquitto/ript.acl"           #   and the broker reads (both required)
    reload_command = ["systemctl", "reload", "mosquitto"]   # external: run after each change

    [oauth]                      # optional: the device-flow login (docs/provider-oauth.md)
    client_ids = ["ript-phone"]  # clients allowed to log in
    access_token_lifetime = 3600         # s
    refresh_token_lifetime = 2592000     # s (30 days)
    device_code_lifetime = 600           # s
    poll_interval = 5                    # s
    refresh_reuse_grace = 86400          # s a rotated refresh token is honoured again
                                         #   while its successor is unused (a lost answer)

Reading is strict, like the phone's (:mod:`riptphone.config`): an unknown
section or key, or a value of the wrong type or out of range, is one
:class:`ProviderConfigError` whose message starts with the file name and
names the key, so that a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ript.protocol.descriptions import DescriptionError, PushBinding
from ript.tomlcheck import TomlError, check_keys, check_sections, read_toml
from riptprovider.accounts import Account, AccountsError, load_accounts
from riptprovider.broker import MOSQUITTO, PushSettings
from riptprovider.core import MAX_HANDLERS_PER_ACCOUNT
from riptprovider.oauth import MAX_CLIENT_ID, IssuerSettings
from riptprovider.quic_limits import MAX_CONNECTIONS, RETRY_ABOVE, QuicLimits
from riptprovider.server import ServerConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4433
SECTIONS = ("server", "accounts", "push", "oauth")
SERVER_KEYS = (
    "host",
    "port",
    "state_dir",
    "origin",
    "webtransport",
    "max_handlers_per_account",
    "max_connections",
    "retry_above",
)
MAX_CONNECTIONS_LIMIT = 100000
"""The largest ``[server] max_connections`` and ``retry_above`` accepted."""
MAX_HANDLERS_LIMIT = 10000
"""The largest ``[server] max_handlers_per_account`` accepted."""
PUSH_SPAWN_KEYS = ("broker", "port", "mosquitto")
OAUTH_KEYS = (
    "client_ids",
    "access_token_lifetime",
    "refresh_token_lifetime",
    "device_code_lifetime",
    "poll_interval",
    "refresh_reuse_grace",
)
OAUTH_LIMITS = {
    "access_token_lifetime": (1, 86400),
    "refresh_token_lifetime": (60, 366 * 86400),
    "device_code_lifetime": (10, 3600),
    "poll_interval": (1, 60),
    # 0 turns the grace off: every reuse of a rotated token ends the login.
    "refresh_reuse_grace": (0, 366 * 86400),
}
"""Allowed range of each ``[oauth]`` lifetime, in seconds."""
PUSH_EXTERNAL_KEYS = ("broker", "ca_file", "password_file", "acl_file", "reload_command")


class ProviderConfigError(ValueError):
    """The provider's configuration file cannot be used; the message names the key."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """A read configuration file; ``state_dir`` is already absolute."""

    path: Path
    state_dir: Path
    accounts: Mapping[str, Account] = field(repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    origin: str | None = None
    push: PushSettings | None = None
    oauth: IssuerSettings = field(default_factory=IssuerSettings)
    webtransport: bool = True
    max_handlers_per_account: int = MAX_HANDLERS_PER_ACCOUNT
    quic_limits: QuicLimits = field(default_factory=QuicLimits)

    def server_config(self) -> ServerConfig:
        """What :func:`riptprovider.server.serve` needs to run this configuration."""
        return ServerConfig(
            state_dir=self.state_dir,
            accounts=self.accounts,
            host=self.host,
            port=self.port,
            origin=self.origin,
            oauth=self.oauth,
            webtransport=self.webtransport,
            max_handlers_per_account=self.max_handlers_per_account,
            quic_limits=self.quic_limits,
        )


def _host(value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() or c in "/[]" for c in value):
        raise ProviderConfigError(
            f"[server] host: must be an IP address or host name, not {value!r}"
        )
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ProviderConfigError(
            f"[server] port: must be an integer from 0 to 65535, not {value!r}"
        )
    return value


def _webtransport(value: object) -> bool:
    if not isinstance(value, bool):
        raise ProviderConfigError(f"[server] webtransport: must be true or false, not {value!r}")
    return value


def _max_handlers(value: object) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_HANDLERS_LIMIT
    ):
        raise ProviderConfigError(
            f"[server] max_handlers_per_account: must be an integer from 1 to "
            f"{MAX_HANDLERS_LIMIT}, not {value!r}"
        )
    return value


def _count(key: str, value: object, low: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not low <= value <= MAX_CONNECTIONS_LIMIT
    ):
        raise ProviderConfigError(
            f"[server] {key}: must be an integer from {low} to {MAX_CONNECTIONS_LIMIT}, "
            f"not {value!r}"
        )
    return value


def _origin(value: object) -> str:
    problem = f"[server] origin: must be https://host[:port] with no path, not {value!r}"
    if not isinstance(value, str):
        raise ProviderConfigError(problem)
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a bad port
    except ValueError:
        raise ProviderConfigError(problem) from None
    if (
        parts.scheme != "https"
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or (port is not None and port == 0)
    ):
        raise ProviderConfigError(problem)
    return value.rstrip("/")


def _path(where: str, value: str, base: Path, *, resolve: bool) -> Path:
    """``value`` relative to ``base``, ``~`` expanded; a path that cannot be one is refused.

    A NUL byte (``ValueError``), an unknown ``~user`` or a symlink loop
    (``RuntimeError``) would otherwise escape as a traceback.
    """
    try:
        path = base / Path(value).expanduser()
        return path.resolve() if resolve else path.absolute()
    except (ValueError, RuntimeError, OSError) as exc:
        raise ProviderConfigError(f"{where}: {value!r} is not a usable path ({exc})") from None


def _state_dir(value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ProviderConfigError(f"[server] state_dir: must be a directory path, not {value!r}")
    return _path("[server] state_dir", value, base, resolve=True)


def _file(key: str, value: object, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ProviderConfigError(f"[push] {key}: must be a file path, not {value!r}")
    return _path(f"[push] {key}", value, base, resolve=False)


def _push(section: object, base: Path) -> PushSettings:
    if not isinstance(section, Mapping):
        raise ProviderConfigError("[push]: must be a table of keys")
    broker = section.get("broker")
    if broker is None:
        raise ProviderConfigError('[push] broker: is required ("spawn" or "mqtts://host:port")')
    if broker != "spawn":
        try:
            PushBinding(broker, "ript/v1")
        except DescriptionError as exc:
            raise ProviderConfigError(
                f'[push] broker: must be "spawn" or mqtts://host[:port] ({exc})'
            ) from None
    allowed = PUSH_SPAWN_KEYS if broker == "spawn" else PUSH_EXTERNAL_KEYS
    for key in sorted(section):
        if key not in PUSH_SPAWN_KEYS + PUSH_EXTERNAL_KEYS:
            known = ", ".join(sorted(set(PUSH_SPAWN_KEYS + PUSH_EXTERNAL_KEYS)))
            raise ProviderConfigError(f"[push] {key}: unknown key (known: {known})")
        if key not in allowed:
            mode = 'with broker = "spawn"' if broker == "spawn" else "with an external broker"
            raise ProviderConfigError(f"[push] {key}: not used {mode}")
    if broker == "spawn":
        port = section.get("port", 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ProviderConfigError(
                f"[push] port: must be an integer from 0 to 65535, not {port!r}"
            )
        mosquitto = _file("mosquitto", section.get("mosquitto", MOSQUITTO), base)
        return PushSettings(broker, port=port, mosquitto=str(mosquitto))
    for key in ("password_file", "acl_file"):
        if key not in section:
            raise ProviderConfigError(
                f"[push] {key}: is required with an external broker (the provider writes it)"
            )
    command = section.get("reload_command", [])
    if not isinstance(command, list) or not all(isinstance(a, str) and a for a in command):
        raise ProviderConfigError(
            f"[push] reload_command: must be a list of strings (a command), not {command!r}"
        )
    ca_file = section.get("ca_file")
    return PushSettings(
        broker,
        ca_file=None if ca_file is None else _file("ca_file", ca_file, base),
        password_file=_file("password_file", section["password_file"], base),
        acl_file=_file("acl_file", section["acl_file"], base),
        reload_command=tuple(command),
    )


def _oauth(section: object) -> IssuerSettings:
    try:
        table = check_keys("oauth", section, OAUTH_KEYS)
    except TomlError as exc:
        raise ProviderConfigError(str(exc)) from None
    defaults = IssuerSettings()
    client_ids = table.get("client_ids", list(defaults.client_ids))
    if (
        not isinstance(client_ids, list)
        or not client_ids
        or not all(
            isinstance(c, str)
            and 0 < len(c) <= MAX_CLIENT_ID
            and c.isprintable()
            and c.strip() == c
            for c in client_ids
        )
    ):
        raise ProviderConfigError(
            f"[oauth] client_ids: must be a non-empty list of client id strings, not {client_ids!r}"
        )
    values: dict[str, int] = {}
    for key, (low, high) in OAUTH_LIMITS.items():
        value = table.get(key, getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ProviderConfigError(
                f"[oauth] {key}: must be a whole number of seconds from {low} to {high}, "
                f"not {value!r}"
            )
        values[key] = value
    return IssuerSettings(client_ids=tuple(client_ids), **values)


def parse_config(data: Mapping[str, Any], path: Path) -> ProviderSettings:
    """Check the parsed TOML ``data`` of the file ``path``; messages lack the file name."""
    if "server" not in data:
        raise ProviderConfigError("[server]: is required and must be a table of keys")
    try:
        check_sections(data, SECTIONS)
        server = check_keys("server", data["server"], SERVER_KEYS)
    except TomlError as exc:
        raise ProviderConfigError(str(exc)) from None
    if "state_dir" not in server:
        raise ProviderConfigError("[server] state_dir: is required")
    state_dir = _state_dir(server["state_dir"], path.parent)
    host = _host(server.get("host", DEFAULT_HOST))
    port = _port(server.get("port", DEFAULT_PORT))
    origin = server.get("origin")
    if origin is not None:
        origin = _origin(origin)
    webtransport = _webtransport(server.get("webtransport", True))
    if "accounts" not in data:
        raise ProviderConfigError("[accounts]: is required (one [accounts.<id>] table per user)")
    try:
        accounts = load_accounts(data["accounts"])
    except AccountsError as exc:
        raise ProviderConfigError(str(exc)) from None
    if not accounts:
        raise ProviderConfigError("[accounts]: must hold at least one [accounts.<id>] table")
    accounts = {key: _files_from(account, path.parent) for key, account in accounts.items()}
    push = _push(data["push"], path.parent) if "push" in data else None
    oauth = _oauth(data["oauth"]) if "oauth" in data else IssuerSettings()
    max_handlers = _max_handlers(server.get("max_handlers_per_account", MAX_HANDLERS_PER_ACCOUNT))
    limits = QuicLimits(
        max_connections=_count(
            "max_connections", server.get("max_connections", MAX_CONNECTIONS), 1
        ),
        retry_above=_count("retry_above", server.get("retry_above", RETRY_ABOVE), 0),
    )
    return ProviderSettings(
        path,
        state_dir,
        accounts,
        host,
        port,
        origin,
        push,
        oauth,
        webtransport=webtransport,
        max_handlers_per_account=max_handlers,
        quic_limits=limits,
    )


def _files_from(account: Account, base: Path) -> Account:
    """The account with its far ends' audio files relative to the configuration file."""
    rules = tuple(
        dataclasses.replace(
            rule,
            far_end=dataclasses.replace(rule.far_end, file=str(base / rule.far_end.file)),
        )
        if rule.far_end.file is not None
        else rule
        for rule in account.far_end_rules
    )
    return dataclasses.replace(account, far_end_rules=rules)


def load_config(path: Path) -> ProviderSettings:
    """Read and check the configuration file ``path``; raise :class:`ProviderConfigError`."""
    path = path.absolute()
    try:
        data = read_toml(path)
    except TomlError as exc:
        raise ProviderConfigError(str(exc)) from None
    try:
        return parse_config(data, path)
    except ProviderConfigError as exc:
        raise ProviderConfigError(f"{path}: {exc}") from None
