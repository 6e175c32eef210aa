"""The provider's ``[push]`` section: spawn or external broker, strict keys, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from riptprovider.broker import MOSQUITTO, PushSettings
from riptprovider.config import ProviderConfigError, parse_config

BASE: dict[str, Any] = {
    "server": {"state_dir": "state"},
    "accounts": {"alice": {"numbers": ["+14085551002"]}},
}
PATH = Path("/etc/ript/provider.toml")


def parse(push: object) -> PushSettings | None:
    return parse_config({**BASE, "push": push}, PATH).push


def test_no_push_section_means_no_push() -> None:
    assert parse_config(BASE, PATH).push is None


def test_spawn_defaults_and_keys() -> None:
    assert parse({"broker": "spawn"}) == PushSettings("spawn", port=0, mosquitto=MOSQUITTO)
    settings = parse({"broker": "spawn", "port": 8883, "mosquitto": "bin/mosquitto"})
    assert settings == PushSettings("spawn", port=8883, mosquitto="/etc/ript/bin/mosquitto")
    assert settings.spawn


def test_external_broker_keys_relative_to_the_file() -> None:
    settings = parse(
        {
            "broker": "mqtts://mqtt.example.net:8883",
            "ca_file": "broker-ca.pem",
            "password_file": "/etc/mosquitto/ript.passwd",
            "acl_file": "ript.acl",
            "reload_command": ["systemctl", "reload", "mosquitto"],
        }
    )
    assert settings == PushSettings(
        "mqtts://mqtt.example.net:8883",
        ca_file=Path("/etc/ript/broker-ca.pem"),
        password_file=Path("/etc/mosquitto/ript.passwd"),
        acl_file=Path("/etc/ript/ript.acl"),
        reload_command=("systemctl", "reload", "mosquitto"),
    )
    assert not settings.spawn
    minimal = parse({"broker": "mqtt://127.0.0.1:1883", "password_file": "p", "acl_file": "a"})
    assert minimal is not None and minimal.ca_file is None and minimal.reload_command == ()


@pytest.mark.parametrize(
    ("push", "message"),
    [
        ("spawn", r"^\[push\]: must be a table"),
        ({}, r"^\[push\] broker: is required"),
        ({"broker": "mosquitto"}, r"^\[push\] broker: must be \"spawn\" or mqtts://"),
        ({"broker": "https://x.example"}, r"^\[push\] broker: must be"),
        ({"broker": "mqtt://broker.example.net"}, r"^\[push\] broker: .*not loopback"),
        ({"broker": "mqtts://h.example/path"}, r"^\[push\] broker: must be"),
        ({"broker": "spawn", "port": 70000}, r"^\[push\] port: must be an integer from 0"),
        ({"broker": "spawn", "port": True}, r"^\[push\] port: must be an integer"),
        ({"broker": "spawn", "port": "8883"}, r"^\[push\] port: must be an integer"),
        ({"broker": "spawn", "mosquitto": ""}, r"^\[push\] mosquitto: must be a file path"),
        ({"broker": "spawn", "acl_file": "a"}, r'^\[push\] acl_file: not used with broker = "'),
        ({"broker": "spawn", "prot": 1}, r"^\[push\] prot: unknown key \(known: acl_file, "),
        (
            {"broker": "mqtts://h.example", "port": 1, "password_file": "p", "acl_file": "a"},
            r"^\[push\] port: not used with an external broker",
        ),
        ({"broker": "mqtts://h.example", "acl_file": "a"}, r"^\[push\] password_file: is required"),
        ({"broker": "mqtts://h.example", "password_file": "p"}, r"^\[push\] acl_file: is required"),
        (
            {
                "broker": "mqtts://h.example",
                "password_file": "p",
                "acl_file": "a",
                "reload_command": "systemctl reload mosquitto",
            },
            r"^\[push\] reload_command: must be a list of strings",
        ),
        (
            {"broker": "mqtts://h.example", "password_file": 1, "acl_file": "a"},
            r"^\[push\] password_file: must be a file path",
        ),
    ],
)
def test_bad_push_sections_name_the_key(push: object, message: str) -> None:
    with pytest.raises(ProviderConfigError, match=message):
        parse(push)
