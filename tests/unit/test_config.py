"""The TOML configuration: defaults, every kind of bad value, and the docs staying true."""

from __future__ import annotations

from pathlib import Path

import pytest

from riptphone.config import ConfigError, load_config, parse_config, reference
from riptprovider.tls import load_or_create_ca

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "phone.toml"
    path.write_text(text)
    return path


def test_the_example_file_loads() -> None:
    config = load_config(ROOT / "provisioning" / "ript-phone.example.toml")
    assert config.provider.domain == "voice.example.net"
    assert config.hardware.backend == "gpio"
    plan = config.dialplan.plan()
    assert plan.normalise("9529999") == "+14089529999"


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(load_or_create_ca(tmp_path / "provider").ca_pem)
    path = write(tmp_path, '[provider]\ndomain = "localhost:4433"\nca_file = "ca.pem"\n')
    config = load_config(path)
    assert config.provider.ca_file == tmp_path / "ca.pem"
    assert config.phone.state_dir == Path("/var/lib/ript-phone")
    assert config.audio.ptime == 20
    assert config.audio.codecs == ["opus", "PCMU", "PCMA"]
    assert config.dialplan.plan().normalise("14089529999") == "+14089529999"


def test_a_generic_country_plan(tmp_path: Path) -> None:
    config = parse_config(
        {"provider": {"domain": "p.example"}, "dialplan": {"country_code": "44"}}, base=tmp_path
    )
    plan = config.dialplan.plan()
    assert plan.normalise("02079460000") == "+442079460000"
    assert plan.normalise("0014085551002") == "+14085551002"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"\[provider\] domain: is required"),
        ('[provider]\ndomain = "a"\n[phnoe]\n', r"\[phnoe\]: unknown section"),
        ('[provider]\ndomian = "a"\n', r"\[provider\] domian: unknown key \(known: ca_file"),
        ("[provider]\ndomain = 5\n", r"\[provider\] domain: must be a string, not 5"),
        ('[provider]\ndomain = "http://x/"\n', r"\[provider\] domain: must be host or host:port"),
        ('[provider]\ndomain = "x:99999"\n', r"\[provider\] domain: has a bad port"),
        ('[provider]\ndomain = "x"\n[audio]\nptime = 25\n', r"\[audio\] ptime: must be one of 10"),
        ('[provider]\ndomain = "x"\n[audio]\nptime = true\n', r"ptime: must be an integer"),
        ('[provider]\ndomain = "x"\n[audio]\ncodecs = ["G729"]\n', r"'G729' is not a codec"),
        ('[provider]\ndomain = "x"\n[audio]\ncodecs = "opus"\n', r"codecs: must be a list of"),
        ('[provider]\ndomain = "x"\n[audio]\ncodecs = [1]\n', r"codecs\[0\]: must be a string"),
        ('[provider]\ndomain = "x"\n[phone]\nnumber = "555"\n', r"number: must be an E.164"),
        ('[provider]\ndomain = "x"\n[hardware]\nbackend = "usb"\n', r"backend: must be one of"),
        ('[provider]\ndomain = "x"\n[dialplan]\narea_code = "12"\n', r"\[dialplan\]: .*area code"),
        ('phone = 3\n[provider]\ndomain = "x"\n', r"\[phone\]: must be a table"),
        ("[provider\n", r"not valid TOML"),
    ],
)
def test_bad_files_are_one_error_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


def test_a_missing_or_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config(tmp_path / "nope.toml")
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_docs_list_every_key() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert reference() in doc, "regenerate docs/configuration.md from riptphone.config.reference()"


def test_the_keypad_columns_must_match_the_keypad(tmp_path: Path) -> None:
    path = tmp_path / "phone.toml"
    path.write_text('[provider]\ndomain = "p.example"\n[hardware]\nkeypad = "4x4"\n')
    with pytest.raises(ConfigError, match=r"keypad_columns: a 4x4 keypad has 4 columns, not 3"):
        load_config(path)
    path.write_text(
        '[provider]\ndomain = "p.example"\n[hardware]\nkeypad = "4x4"\n'
        "keypad_columns = [12, 16, 25, 7]\n"
    )
    assert load_config(path).hardware.keypad_columns == [12, 16, 25, 7]
