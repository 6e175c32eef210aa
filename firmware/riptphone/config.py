"""The phone's configuration: one TOML file read into frozen dataclasses.

Every key is declared once, in the dataclasses below, with its type, its
default and one line of help (the ``help`` metadata), which is also what
``docs/configuration.md`` lists.  Reading is strict: an unknown section or
key, a value of the wrong type or out of range, is one :class:`ConfigError`
naming the key (``[audio] ptime: must be one of 10, 20, 40, 60, not 25``), so
that a typo never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ssl
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ript.protocol.numbers import DialPlan, NumberError, is_e164
from ript.tomlcheck import TomlError, check_keys, check_sections, read_toml
from riptphone import boot_file


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the key."""


def _help(
    text: str, default: Any = MISSING, check: Callable[[Any], str | None] | None = None
) -> Any:
    meta = {"help": text, "check": check}
    if default is MISSING:
        return field(metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _domain(value: str) -> str | None:
    if any(c in value for c in "/@ ?#"):
        return f"must be host or host:port, not {value!r}"
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    if not host:
        return f"must be host or host:port, not {value!r}"
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return f"has a bad port in {value!r}"
    return None


def _one_of(*choices: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"must be one of {', '.join(str(c) for c in choices)}, not {value!r}"

    return check


def _between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if low <= value <= high else f"must be {low} to {high}, not {value}"

    return check


def _codecs(value: list[str]) -> str | None:
    unknown = [c for c in value if c not in ("opus", "PCMU", "PCMA")]
    if unknown:
        return f"{unknown[0]!r} is not a codec the phone has (opus, PCMU, PCMA)"
    if not value:
        return "must name at least one codec"
    return None


def _complexity(value: int | str) -> str | None:
    if value == "auto" or (isinstance(value, int) and 0 <= value <= 10):
        return None
    return f'must be 0 to 10 or "auto", not {value!r}'


def _ca_file(value: Path) -> str | None:
    """A readable file of PEM certificates, checked now: a bad one is one line at start."""
    try:
        data = value.read_bytes()
    except OSError as exc:
        return f"cannot read {value}: {exc.strerror}"
    try:
        ssl.create_default_context().load_verify_locations(cadata=data.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError):
        return f"{value} is not a PEM certificate file"
    return None


def _e164_or_empty(value: str) -> str | None:
    return None if value == "" or is_e164(value) else "must be an E.164 number like +14085551002"


def _digits(value: str) -> str | None:
    return None if value.isdigit() or value == "" else f"must be digits only, not {value!r}"


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    domain: str = _help(
        "the provider's domain, host or host:port (RIPT root and OAuth are found from it)",
        check=_domain,
    )
    ca_file: Path | None = _help(
        "an extra CA certificate (PEM) to trust besides the system's; verification is always on",
        None,
        _ca_file,
    )
    trunk_group: str = _help(
        "the name (or URI) of the TG to use when the provider offers several", ""
    )
    client_id: str = _help(
        "the OAuth client id of the device flow: sent with the device authorization, "
        "every poll and every refresh (profile section 2)",
        "ript-phone",
    )


@dataclass(frozen=True, slots=True)
class PhoneConfig:
    name: str = _help(
        "the handler's name shown to the user's other devices, and the login's device_name "
        "(the verification page shows it)",
        "Desk phone",
    )
    number: str = _help(
        "this phone's own number (E.164); empty: learn it from the TG's inbound destinations",
        "",
        _e164_or_empty,
    )
    state_dir: Path = _help(
        "where the handler URI, tokens and keys are kept (mode 0700)", Path("/var/lib/ript-phone")
    )
    control_socket: Path = _help(
        "the local control socket (JSON lines, mode 0660)", Path("/run/ript-phone/control.sock")
    )
    boot_file: Path = _help(
        "the first-boot file on the boot partition: its [provider] domain and [phone] name win "
        "over this file's (docs/install.md); ignored when missing",
        Path("/boot/firmware/ript-phone.toml"),
    )


@dataclass(frozen=True, slots=True)
class AudioConfig:
    capture: str = _help("the ALSA capture device (PCM name)", "default")
    playback: str = _help("the ALSA playback device (PCM name)", "default")
    ringer: str = _help("the ALSA device the ringer plays on (empty: the playback device)", "")
    codecs: list[str] = _help(
        "codecs to offer, most preferred first", ["opus", "PCMU", "PCMA"], _codecs
    )
    ptime: int = _help("milliseconds of audio per media chunk", 20, _one_of(10, 20, 40, 60))
    opus_bitrate: int = _help("Opus bitrate in bit/s", 24000, _between(6000, 128000))
    opus_complexity: int | str = _help(
        'Opus encoder complexity, 0 to 10, or "auto" (3 on a Raspberry Pi, else 9)',
        "auto",
        _complexity,
    )
    opus_fec: bool = _help(
        "Opus in-band FEC (a lost frame rebuilt from the next), sent while the path"
        " loses chunks (none on a clean path; more encoder time while on)",
        True,
    )
    jitter_max_ms: int = _help("the jitter buffer's largest delay in ms", 200, _between(20, 1000))
    volume: int = _help("the initial playback volume in percent", 70, _between(0, 100))


@dataclass(frozen=True, slots=True)
class DialPlanConfig:
    """The dial plan; every key left out comes from the preset of the country code.

    Country code 1 takes the North American plan (``1`` + 10 digits, ``011``
    abroad, ``911``, a digit map that dials as soon as a number is complete);
    any other takes a generic plan (``0`` national prefix, ``00`` abroad,
    ``112``, dial on ``#`` or the inter-digit timeout).
    """

    country_code: str = _help("the country calling code, digits only", "1", _digits)
    national_prefix: str = _help("the trunk prefix dialled before a national number", "", _digits)
    international_prefix: str = _help("the prefix dialled before a country code", "", _digits)
    area_code: str = _help("prepended to local numbers when set", "", _digits)
    national_number_lengths: list[int] = _help("digits of a full national number", [])
    local_number_lengths: list[int] = _help("digits of a local number (with area_code)", [])
    emergency: list[str] = _help("emergency numbers (not routed over RIPT)", [])
    digit_map: list[str] = _help(
        "patterns that complete a number so it dials without '#' (x = a digit, [2-9], '.' repeats)",
        [],
    )
    interdigit_timeout_ms: int = _help(
        "dial what was typed after this long without a key", 4000, _between(1000, 30000)
    )

    def plan(self) -> DialPlan:
        """The :class:`DialPlan`; raises :class:`NumberError` if the keys do not make one."""
        if self.country_code == "1":
            base = DialPlan.nanp(self.area_code)
        else:
            base = DialPlan.generic(self.country_code)
        overrides: dict[str, Any] = {
            "national_prefix": self.national_prefix,
            "international_prefix": self.international_prefix,
            "area_code": self.area_code,
            "national_number_lengths": tuple(self.national_number_lengths),
            "local_number_lengths": tuple(self.local_number_lengths),
            "emergency": tuple(self.emergency),
            "digit_map": tuple(self.digit_map),
        }
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v})


def _pins(count: tuple[int, ...]) -> Callable[[Any], str | None]:
    def check(value: list[int]) -> str | None:
        if len(value) not in count:
            return f"must list {' or '.join(map(str, count))} BCM pin numbers, not {len(value)}"
        for pin in value:
            if not 0 <= pin <= 27:
                return f"{pin} is not a BCM GPIO pin (0-27)"
        if len(set(value)) != len(value):
            return "lists a pin twice"
        return None

    return check


def _pin_or_none(value: int) -> str | None:
    return (
        None if -1 <= value <= 27 else f"must be a BCM GPIO pin (0-27) or -1 for none, not {value}"
    )


BUTTON_NAMES = ("pull", "mute", "volume-up", "volume-down", "redial", "dnd", "flash")


def _buttons(value: list[str]) -> str | None:
    seen: set[str] = set()
    for item in value:
        name, sep, pin = item.partition(":")
        if not sep or not pin.isdigit():
            return f'{item!r} must be NAME:PIN, like "mute:23"'
        if name not in BUTTON_NAMES:
            return f"{name!r} is not a button the phone knows ({', '.join(BUTTON_NAMES)})"
        if not 0 <= int(pin) <= 27:
            return f"{item!r}: {pin} is not a BCM GPIO pin (0-27)"
        if name in seen:
            return f"names {name!r} twice"
        seen.add(name)
    return None


@dataclass(frozen=True, slots=True)
class HardwareConfig:
    """The handset's parts (pin numbers are BCM); defaults match ``hardware/README.md``."""

    backend: str = _help(
        "'gpio' (hook, keypad and OLED on the Pi), 'virtual' (keyboard and terminal) or 'none'",
        "none",
        _one_of("gpio", "virtual", "none"),
    )
    hook_pin: int = _help("the hook switch's pin (to ground; pulled up)", 17, _between(0, 27))
    hook_wiring: str = _help(
        "'normally-open': the contact closes when the handset is lifted; "
        "'normally-closed': it opens when lifted",
        "normally-open",
        _one_of("normally-open", "normally-closed"),
    )
    hook_debounce_ms: int = _help(
        "how long the hook contact must stay put to count", 50, _between(20, 150)
    )
    keypad: str = _help(
        "the matrix keypad: '4x3' (0-9 * #), '4x4' (adds A-D) or 'none'",
        "4x3",
        _one_of("4x3", "4x4", "none"),
    )
    keypad_rows: list[int] = _help(
        "the keypad's row pins, top row first (driven low one at a time)",
        [5, 6, 13, 26],
        _pins((4,)),
    )
    keypad_columns: list[int] = _help(
        "the keypad's column pins, left first (pulled up; 3 for 4x3, 4 for 4x4)",
        [12, 16, 25],
        _pins((3, 4)),
    )
    keypad_debounce_ms: int = _help(
        "how many ms a key must read the same to count", 20, _between(5, 100)
    )
    long_press_ms: int = _help(
        "holding a key or button this long is a long press", 800, _between(300, 3000)
    )
    buttons: list[str] = _help(
        "extra buttons as NAME:PIN (names: " + ", ".join(BUTTON_NAMES) + ")",
        ["pull:22", "mute:23", "volume-up:27", "volume-down:24", "redial:4"],
        _buttons,
    )
    ringer_pin: int = _help(
        "an output driven high while the phone rings (a buzzer or relay); -1: none",
        -1,
        _pin_or_none,
    )
    led_pin: int = _help(
        "a status LED: blinks while ringing, lit in a call; -1: none", -1, _pin_or_none
    )
    display: str = _help(
        "the OLED's controller: 'ssd1306', 'sh1106' or 'none'",
        "ssd1306",
        _one_of("ssd1306", "sh1106", "none"),
    )
    display_i2c_port: int = _help("the OLED's I2C bus (1 on a Pi)", 1, _between(0, 10))
    display_i2c_address: int = _help(
        "the OLED's I2C address (0x3C or 0x3D)", 0x3C, _between(0x03, 0x77)
    )
    display_rotate: int = _help("rotate the picture by this many quarter turns", 0, _between(0, 3))
    virtual_display: str = _help(
        "how the virtual handset shows the OLED: 'text' (lines in the terminal), "
        "'asciiblock' (luma.emulator in the terminal), 'pygame' (a window) or 'none'; "
        "asciiblock and pygame need pip install luma.emulator",
        "text",
        _one_of("text", "asciiblock", "pygame", "none"),
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = _help("log level", "info", _one_of("debug", "info", "warning", "error"))


@dataclass(frozen=True, slots=True)
class Config:
    provider: ProviderConfig
    phone: PhoneConfig = field(default_factory=PhoneConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    dialplan: DialPlanConfig = field(default_factory=DialPlanConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    log: LogConfig = field(default_factory=LogConfig)


SECTIONS: dict[str, type[Any]] = {
    "provider": ProviderConfig,
    "phone": PhoneConfig,
    "audio": AudioConfig,
    "dialplan": DialPlanConfig,
    "hardware": HardwareConfig,
    "log": LogConfig,
}


def _expand(value: str, where: str) -> Path:
    """``value`` as a path with ``~`` expanded; an unknown ``~user`` is a ConfigError, not a
    RuntimeError, and a NUL byte (which no path can hold) is refused here, not when opened."""
    if "\0" in value:
        raise ConfigError(f"{where}: a path cannot hold a NUL character, not {value!r}")
    try:
        return Path(value).expanduser()
    except RuntimeError:
        raise ConfigError(f"{where}: cannot expand ~ in {value!r} (no such user)") from None


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    if annotation is Path:
        return "a path (string)"
    if annotation is str:
        return "a string"
    if annotation is int:
        return "an integer"
    if annotation is bool:
        return "true or false"
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return f"a list of {_type_name(item).removeprefix('a ').removeprefix('an ')}s"
    return str(annotation)


def _convert(annotation: Any, value: Any, where: str, base: Path) -> Any:
    if isinstance(annotation, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        for arg in args[:-1]:  # int | str: an integer if it is one, else the last type's check
            with contextlib.suppress(ConfigError):
                return _convert(arg, value, where, base)
        return _convert(args[-1], value, where, base)
    if annotation is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: must be {_type_name(Path)}, not {value!r}")
        path = _expand(value, where)
        return path if path.is_absolute() else (base / path)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: must be {_type_name(annotation)}, not {value!r}")
        return [_convert(item, v, f"{where}[{i}]", base) for i, v in enumerate(value)]
    ok = (
        isinstance(value, annotation) and not isinstance(value, bool)
        if annotation is int
        else isinstance(value, annotation)
    )
    if not ok:
        raise ConfigError(f"{where}: must be {_type_name(annotation)}, not {value!r}")
    return value


def _section(cls: type[Any], name: str, table: object, base: Path) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    try:
        table = check_keys(name, table, known)
    except TomlError as exc:
        raise ConfigError(str(exc)) from None
    values: dict[str, Any] = {}
    for key, f in known.items():
        where = f"[{name}] {key}"
        if key not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"{where}: is required")
            continue
        value = _convert(hints[key], table[key], where, base)
        check = f.metadata.get("check")
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise ConfigError(f"{where}: {problem}")
        values[key] = value
    return cls(**values)


def parse_config(doc: Mapping[str, Any], *, base: Path) -> Config:
    """Build a :class:`Config` from a decoded TOML document; paths relative to ``base``."""
    try:
        check_sections(doc, SECTIONS)
    except TomlError as exc:
        raise ConfigError(str(exc)) from None
    if "provider" not in doc:
        raise ConfigError("[provider] domain: is required")
    sections = {
        name: _section(cls, name, doc[name], base) for name, cls in SECTIONS.items() if name in doc
    }
    config = Config(**sections)
    hardware = config.hardware
    if hardware.keypad != "none":
        wanted = 4 if hardware.keypad == "4x4" else 3
        if len(hardware.keypad_columns) != wanted:
            raise ConfigError(
                f"[hardware] keypad_columns: a {hardware.keypad} keypad has {wanted} columns, "
                f"not {len(hardware.keypad_columns)}"
            )
    try:
        config.dialplan.plan()
    except NumberError as exc:
        raise ConfigError(f"[dialplan]: {exc}") from None
    return config


def load_config(path: Path) -> Config:
    """Read and check the TOML file at ``path``; raise :class:`ConfigError`."""
    try:
        doc = read_toml(path)
    except TomlError as exc:
        raise ConfigError(str(exc)) from None
    try:
        doc = boot_file.overlay(doc, _boot_file_path(doc, path.resolve().parent))
    except boot_file.BootFileError as exc:
        raise ConfigError(str(exc)) from None
    except ConfigError as exc:  # the boot_file key itself
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(doc, base=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _boot_file_path(doc: Mapping[str, Any], base: Path) -> Path:
    phone = doc.get("phone")
    value = phone.get("boot_file") if isinstance(phone, Mapping) else None
    if not isinstance(value, str) or not value:
        return boot_file.DEFAULT_PATH  # a bad value is reported by parse_config
    return base / _expand(value, "[phone] boot_file")


def reference() -> str:
    """Markdown tables of every key: the body of ``docs/configuration.md``."""
    lines: list[str] = []
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        lines += [
            f"### `[{name}]`",
            "",
            "| key | type | default | meaning |",
            "| --- | --- | --- | --- |",
        ]
        for f in fields(cls):
            if f.default is not MISSING:
                default = f.default
            elif f.default_factory is not MISSING:
                default = f.default_factory()
            else:
                default = "(required)"
            shown = (
                "(none)"
                if default is None
                else (default if default == "(required)" else f"`{_toml(default)}`")
            )
            lines.append(
                f"| `{f.name}` | {_type_name(hints[f.name])} | {shown} | {f.metadata['help']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)
