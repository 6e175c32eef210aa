"""The first-boot file on the boot partition: what a person sets on the SD card before booting.

``/boot/firmware/ript-phone.toml`` (``[phone] boot_file``) is the one file a
user edits from a laptop after flashing the image (docs/install.md)::

    [provider]
    domain = "voice.example.net"

    [phone]
    name = "Kitchen phone"

    [wifi]
    country = "GB"
    ssid = "Home"        # optional: Ethernet needs neither
    psk = "secret"

Its ``[provider] domain`` and ``[phone] name`` win over the installed
configuration (:func:`overlay`, used by :func:`riptphone.config.load_config`).
``[wifi]`` is applied once by the image's first-boot unit as root
(``python -m riptphone.boot_file wifi``, :func:`apply_wifi`): the regulatory
country through ``raspi-config``, and a network through NetworkManager. The
daemon itself never touches the network settings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ript.atomic import atomic_write
from ript.tomlcheck import TomlError, check_keys, check_sections, read_toml

DEFAULT_PATH = Path("/boot/firmware/ript-phone.toml")
SECTIONS = ("provider", "phone", "wifi")
KEYS = {"provider": ("domain",), "phone": ("name",), "wifi": ("country", "ssid", "psk")}
_COUNTRY = re.compile(r"[A-Z]{2}\Z")


class BootFileError(ValueError):
    """The first-boot file cannot be used; one sentence naming the file and the key."""


@dataclass(frozen=True, slots=True)
class WifiSettings:
    country: str | None
    ssid: str | None
    psk: str | None


def read(path: Path) -> dict[str, dict[str, str]]:
    """The file's settings, checked; BootFileError names the file and the key."""
    try:
        doc = read_toml(path)
        check_sections(doc, SECTIONS)
        settings: dict[str, dict[str, str]] = {}
        for section, keys in KEYS.items():
            if section not in doc:
                continue
            table = check_keys(section, doc[section], keys)
            for key, value in table.items():
                if not isinstance(value, str) or not value.strip():
                    raise TomlError(f"[{section}] {key}: must be a non-empty string")
            settings[section] = {k: v.strip() for k, v in table.items()}
    except TomlError as exc:
        raise BootFileError(f"{path}: {exc}" if str(path) not in str(exc) else str(exc)) from None
    country = settings.get("wifi", {}).get("country")
    if country is not None and not _COUNTRY.match(country):
        raise BootFileError(
            f"{path}: [wifi] country: two capital letters (ISO 3166), not {country!r}"
        )
    wifi = settings.get("wifi", {})
    if ("ssid" in wifi) != ("psk" in wifi):
        raise BootFileError(f"{path}: [wifi] ssid and psk go together")
    return settings


def _exists(path: Path) -> bool:
    """Whether there is a boot file at ``path``; a path no file can have is a BootFileError.

    ``Path.is_file`` is False only for a missing file: a name too long (ENAMETOOLONG)
    or a directory that cannot be searched (EACCES) raises OSError.
    """
    try:
        return path.is_file()
    except OSError as exc:
        raise BootFileError(f"{path}: cannot read the boot file: {exc.strerror}") from None


def overlay(doc: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``doc`` (a decoded phone.toml) with the first-boot file's domain and name put in.

    A missing file changes nothing; a broken one is a :class:`BootFileError`.
    """
    merged = {
        name: dict(table) if isinstance(table, Mapping) else table for name, table in doc.items()
    }
    if not _exists(path):
        return merged
    settings = read(path)
    for section in ("provider", "phone"):
        values = settings.get(section)
        if values:
            table = merged.setdefault(section, {})
            if isinstance(table, dict):
                table.update(values)
    return merged


def wifi_settings(path: Path) -> WifiSettings:
    wifi = read(path).get("wifi", {}) if _exists(path) else {}
    return WifiSettings(wifi.get("country"), wifi.get("ssid"), wifi.get("psk"))


Runner = Callable[[Sequence[str]], int]


def _run(command: Sequence[str]) -> int:
    return subprocess.run(list(command), check=False).returncode


NM_CONNECTIONS = Path("/etc/NetworkManager/system-connections")


def nm_keyfile(ssid: str, psk: str) -> bytes:
    """A NetworkManager keyfile for a WPA-PSK network that connects by itself."""
    for value in (ssid, psk):
        if any(c in value for c in "\n\r"):
            raise BootFileError("[wifi] ssid and psk must be one line each")
    return (
        "[connection]\nid=ript-phone-wifi\ntype=wifi\nautoconnect=true\n\n"
        f"[wifi]\nmode=infrastructure\nssid={ssid}\n\n"
        f"[wifi-security]\nkey-mgmt=wpa-psk\npsk={psk}\n\n"
        "[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n"
    ).encode()


def apply_wifi(
    settings: WifiSettings, run: Runner = _run, connections: Path = NM_CONNECTIONS
) -> list[str]:
    """Set the Wi-Fi country and add the network; the steps that failed, in words.

    The network goes into a NetworkManager keyfile of mode 0600 (the password
    never appears on a command line, where any user could read it).
    """
    failed: list[str] = []
    if settings.country is not None and run(
        ["raspi-config", "nonint", "do_wifi_country", settings.country]
    ):
        failed.append(f"setting the Wi-Fi country to {settings.country}")
    if settings.ssid is not None and settings.psk is not None:
        try:
            connections.mkdir(parents=True, exist_ok=True)
            atomic_write(
                connections / "ript-phone-wifi.nmconnection",
                nm_keyfile(settings.ssid, settings.psk),
                0o600,
            )
        except (OSError, BootFileError):
            failed.append(f"saving the Wi-Fi network {settings.ssid!r}")
        else:
            if run(["nmcli", "connection", "reload"]):
                failed.append("reloading NetworkManager's connections")
    return failed


def main(argv: list[str] | None = None) -> int:
    """``python -m riptphone.boot_file wifi [PATH]``: the image's first-boot step (as root)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "wifi" or len(args) > 2:
        print("usage: python -m riptphone.boot_file wifi [PATH]", file=sys.stderr)
        return 2
    path = Path(args[1]) if len(args) == 2 else DEFAULT_PATH
    try:
        settings = wifi_settings(path)
    except BootFileError as exc:
        print(f"ript-phone first boot: {exc}", file=sys.stderr)
        return 2
    failed = apply_wifi(settings)
    for step in failed:
        print(f"ript-phone first boot: {step} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
