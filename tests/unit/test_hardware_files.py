"""hardware/: the ALSA configurations load in real alsa-lib, and the pinout matches the config."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from riptphone.config import HardwareConfig

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"
README = HARDWARE / "README.md"
CONFS = {"asound-usb.conf": "Device", "asound-i2s.conf": "wm8960soundcard"}
RESERVED = {2: "I2C", 3: "I2C", 14: "UART", 15: "UART", 18: "I2S", 19: "I2S", 20: "I2S", 21: "I2S"}


class AlsaConfig:
    """A configuration file parsed by alsa-lib itself (snd_config_load), read by key."""

    lib = ctypes.CDLL(ctypes.util.find_library("asound") or "libasound.so.2")

    def __init__(self, path: Path) -> None:
        self.top = ctypes.c_void_p()
        assert self.lib.snd_config_top(ctypes.byref(self.top)) == 0
        stream = ctypes.c_void_p()
        rc = self.lib.snd_input_stdio_open(ctypes.byref(stream), str(path).encode(), b"r")
        assert rc == 0, f"cannot open {path}"
        try:
            self.load_rc = self.lib.snd_config_load(self.top, stream)
        finally:
            self.lib.snd_input_close(stream)

    def get(self, key: str) -> str | int | None:
        node = ctypes.c_void_p()
        if self.lib.snd_config_search(self.top, key.encode(), ctypes.byref(node)) < 0:
            return None
        text = ctypes.c_char_p()
        if self.lib.snd_config_get_string(node, ctypes.byref(text)) == 0:
            return (text.value or b"").decode()
        number = ctypes.c_long()
        if self.lib.snd_config_get_integer(node, ctypes.byref(number)) == 0:
            return number.value
        return "<compound>"

    def close(self) -> None:
        self.lib.snd_config_delete(self.top)


@pytest.mark.parametrize("name", sorted(CONFS))
def test_alsa_lib_loads_the_conf_and_the_chain_is_plug_mix_card(name: str) -> None:
    conf = AlsaConfig(HARDWARE / name)
    try:
        assert conf.load_rc == 0
        card = CONFS[name]
        assert conf.get("pcm.phone_card.type") == "hw"
        assert conf.get("pcm.phone_card.card") == card
        assert conf.get("ctl.phone_card.card") == card
        for pcm, shared, kind in [
            ("phone_playback", "phone_mix", "dmix"),
            ("phone_capture", "phone_snoop", "dsnoop"),
        ]:
            assert conf.get(f"pcm.{pcm}.type") == "plug"
            assert conf.get(f"pcm.{pcm}.slave.pcm") == shared
            assert conf.get(f"pcm.{pcm}.hint.show") == "on"
            assert conf.get(f"pcm.{shared}.type") == kind
            assert conf.get(f"pcm.{shared}.slave.pcm") == "phone_card"
            assert conf.get(f"pcm.{shared}.slave.rate") == 48000
        # dmix and dsnoop share one card: their IPC keys must differ.
        assert conf.get("pcm.phone_mix.ipc_key") != conf.get("pcm.phone_snoop.ipc_key")
    finally:
        conf.close()


def test_the_loader_rejects_a_broken_conf(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text((HARDWARE / "asound-usb.conf").read_text().replace("}", "", 1))
    conf = AlsaConfig(broken)
    try:
        assert conf.load_rc < 0
    finally:
        conf.close()


OPEN_BOTH = """
import alsaaudio
names = alsaaudio.pcms(alsaaudio.PCM_PLAYBACK)
print("listed", "phone_playback" in names, "phone_capture" in names)
for kind, device in [(alsaaudio.PCM_PLAYBACK, "phone_playback"),
                     (alsaaudio.PCM_CAPTURE, "phone_capture")]:
    try:
        alsaaudio.PCM(kind, device=device, channels=1, rate=16000)
        print("opened", device)
    except alsaaudio.ALSAAudioError as error:
        print("refused", device, error)
"""


@pytest.mark.parametrize("name", sorted(CONFS))
def test_opening_the_pcms_gets_as_far_as_the_missing_card(name: str) -> None:
    # This machine has no sound card: alsa-lib must resolve plug -> dmix/dsnoop -> the
    # card and stop only there, which it cannot do if a name or a block were wrong.
    env = dict(os.environ, ALSA_CONFIG_PATH=f"/usr/share/alsa/alsa.conf:{HARDWARE / name}")
    done = subprocess.run(
        [sys.executable, "-c", OPEN_BOTH],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "listed True True" in done.stdout
    if "opened" in done.stdout:
        pytest.skip("this machine has the sound card")
    assert done.stdout.count("refused") == 2
    assert done.stderr.count(f"Cannot get card index for {CONFS[name]}") == 2, done.stderr
    for bad in ("Unknown PCM", "Unexpected", "corrupted", "Invalid"):
        assert bad not in done.stderr


def pinout() -> list[dict[str, str]]:
    """The pinout table of hardware/README.md as rows of cells by header."""
    lines = README.read_text().splitlines()
    start = lines.index("## Pinout")
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    header, _rule, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def bcm(row: dict[str, str]) -> int:
    match = re.fullmatch(r"GPIO (\d+)", row["BCM"])
    assert match, row
    return int(match.group(1))


def default_pins() -> dict[str, int]:
    cfg = HardwareConfig()
    pins = {"hook_pin": cfg.hook_pin}
    pins.update({f"keypad_rows[{i}]": p for i, p in enumerate(cfg.keypad_rows)})
    pins.update({f"keypad_columns[{i}]": p for i, p in enumerate(cfg.keypad_columns)})
    for item in cfg.buttons:
        name, _, pin = item.partition(":")
        pins[f"buttons {name}"] = int(pin)
    return pins


def test_the_pinout_table_lists_exactly_the_config_defaults() -> None:
    table = {
        row["Config"].replace("`", ""): bcm(row) for row in pinout() if row["Status"] == "default"
    }
    assert table == default_pins()
    cfg = HardwareConfig()
    assert (cfg.ringer_pin, cfg.led_pin) == (-1, -1)  # the table calls them suggested, off


def test_header_pins_match_the_board_and_nothing_collides() -> None:
    board = MockFactory().board_info
    used: dict[int, str] = {}
    for row in pinout():
        header = {info.number for _, info in board.find_pin(f"GPIO{bcm(row)}")}
        assert header == {int(row["Pin"])}, row
        assert bcm(row) not in used, f"GPIO {bcm(row)} is listed twice"
        used[bcm(row)] = row["Status"]
    reserved = {pin for pin, status in used.items() if status == "reserved"}
    assert reserved == set(RESERVED)
    in_use = set(default_pins().values())
    suggested = {pin for pin, status in used.items() if status == "suggested"}
    assert not in_use & set(RESERVED)
    assert not suggested & (in_use | set(RESERVED))


def test_the_readme_config_block_is_the_default_config() -> None:
    text = README.read_text()
    block = re.search(r"```toml\n(\[hardware\].*?)```", text, re.S)
    assert block
    values = tomllib.loads(block.group(1))["hardware"]
    cfg = HardwareConfig()
    for key, value in values.items():
        if key == "backend":
            continue  # the example turns the GPIO handset on; the default is "none"
        assert getattr(cfg, key) == value, key
