"""The first-boot file on the boot partition: read by the config loader, Wi-Fi applied once."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from riptphone import boot_file
from riptphone.boot_file import BootFileError, WifiSettings
from riptphone.config import ConfigError, load_config

IMAGE_TEMPLATE = (
    Path(__file__).resolve().parents[2] / "provisioning" / "image" / "boot" / "ript-phone.toml"
)


def phone_toml(tmp_path: Path, boot: Path) -> Path:
    path = tmp_path / "phone.toml"
    path.write_text(
        '[provider]\ndomain = "ript.example.net"\n\n'
        f'[phone]\nname = "Desk phone"\nstate_dir = "{tmp_path / "state"}"\nboot_file = "{boot}"\n'
    )
    return path


def test_the_boot_files_domain_and_name_win(tmp_path: Path) -> None:
    boot = tmp_path / "ript-phone.toml"
    boot.write_text(
        '[provider]\ndomain = "voice.example.org:4433"\n[phone]\nname = "Kitchen"\n'
        '[wifi]\ncountry = "GB"\n'
    )
    config = load_config(phone_toml(tmp_path, boot))
    assert config.provider.domain == "voice.example.org:4433"
    assert config.phone.name == "Kitchen"
    assert config.phone.state_dir == tmp_path / "state"  # the rest stays as installed


def test_no_boot_file_changes_nothing(tmp_path: Path) -> None:
    config = load_config(phone_toml(tmp_path, tmp_path / "missing.toml"))
    assert config.provider.domain == "ript.example.net"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[provider]\nport = 1\n", r"\[provider\] port: unknown key"),
        ('[radio]\nx = "y"\n', r"\[radio\]: unknown section"),
        ('[provider]\ndomain = ""\n', r"\[provider\] domain: must be a non-empty string"),
        ('[wifi]\ncountry = "gb"\n', r"\[wifi\] country: two capital letters"),
        ('[wifi]\nssid = "Home"\n', r"ssid and psk go together"),
        ("[provider\n", "not valid TOML"),
    ],
)
def test_a_broken_boot_file_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    boot = tmp_path / "ript-phone.toml"
    boot.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(phone_toml(tmp_path, boot))
    assert str(boot) in str(caught.value) and "\n" not in str(caught.value)


def test_the_images_template_is_a_valid_boot_file(tmp_path: Path) -> None:
    settings = boot_file.read(IMAGE_TEMPLATE)
    assert settings["provider"]["domain"]
    config = load_config(phone_toml(tmp_path, IMAGE_TEMPLATE))
    assert config.provider.domain == settings["provider"]["domain"]


class Runner:
    def __init__(self, fail: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.fail = fail

    def __call__(self, command: Sequence[str]) -> int:
        self.commands.append(list(command))
        return 1 if self.fail is not None and self.fail in command else 0


def test_wifi_sets_the_country_and_saves_the_network_in_a_private_keyfile(tmp_path: Path) -> None:
    run = Runner()
    failed = boot_file.apply_wifi(WifiSettings("GB", "Home", "s3cret pass"), run, tmp_path)
    assert failed == []
    assert run.commands == [
        ["raspi-config", "nonint", "do_wifi_country", "GB"],
        ["nmcli", "connection", "reload"],
    ]
    keyfile = tmp_path / "ript-phone-wifi.nmconnection"
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    text = keyfile.read_text()
    assert "ssid=Home\n" in text and "psk=s3cret pass\n" in text
    assert all("s3cret" not in " ".join(c) for c in run.commands)  # never on a command line


def test_wifi_failures_are_named_and_nothing_without_settings(tmp_path: Path) -> None:
    assert boot_file.apply_wifi(WifiSettings(None, None, None), Runner(), tmp_path) == []
    failed = boot_file.apply_wifi(
        WifiSettings("DE", None, None), Runner("do_wifi_country"), tmp_path
    )
    assert failed == ["setting the Wi-Fi country to DE"]
    with pytest.raises(BootFileError):
        boot_file.nm_keyfile("Home\nx", "p")


def test_the_first_boot_command_reports_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    boot = tmp_path / "ript-phone.toml"
    boot.write_text('[wifi]\ncountry = "Britain"\n')
    assert boot_file.main(["wifi", str(boot)]) == 2
    assert "two capital letters" in capsys.readouterr().err
    assert boot_file.main(["nonsense"]) == 2
