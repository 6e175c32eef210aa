"""SIGHUP's reload: what is applied live, what needs a restart, and a broken file."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from riptphone.app.inputs import Input, Reconfigured
from riptphone.config import load_config
from riptphone.reload import Reloader, changed_keys

BASE = """
[provider]
domain = "voice.example.net"

[phone]
state_dir = "{state}"
boot_file = "{state}/no-boot-file.toml"

[audio]
volume = 70
playback = "default"

[log]
level = "info"
"""


class Line:
    def __init__(self) -> None:
        self.advertised: list[Any] = []

    async def readvertise(self, audio: Any) -> None:
        self.advertised.append(audio)


class Registry:
    def __init__(self) -> None:
        self.audio: Any = None
        self.line = Line()


class Earpiece:
    def __init__(self) -> None:
        self.retargeted = 0

    async def retarget(self, tones: Any, ringer: Any) -> None:
        self.retargeted += 1


def setup(tmp_path: Path) -> tuple[Path, Reloader, list[Input], Registry, Earpiece, list[Any]]:
    path = tmp_path / "phone.toml"
    path.write_text(BASE.format(state=tmp_path))
    fed: list[Input] = []
    registry, earpiece, displays = Registry(), Earpiece(), []
    reloader = Reloader(
        path,
        load_config(path),
        feed=fed.append,
        registry=registry,  # type: ignore[arg-type]
        earpiece=earpiece,  # type: ignore[arg-type]
        reopen_display=displays.append,
    )
    return path, reloader, fed, registry, earpiece, displays


def test_live_keys_are_applied_and_the_rest_named_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, reloader, fed, registry, earpiece, _ = setup(tmp_path)
    path.write_text(
        BASE.format(state=tmp_path)
        .replace("volume = 70", "volume = 40")
        .replace('playback = "default"', 'playback = "plughw:1"')
        .replace('level = "info"', 'level = "debug"')
        .replace("voice.example.net", "other.example.net")
    )
    with caplog.at_level(logging.INFO, logger="riptphone.reload"):
        applied = asyncio.run(reloader.reload())
    assert ("audio", "volume") in applied and ("log", "level") in applied
    assert [type(x) for x in fed] == [Reconfigured]
    assert isinstance(fed[0], Reconfigured) and fed[0].volume == 40
    assert registry.audio.playback == "plughw:1" and earpiece.retargeted == 1
    assert logging.getLogger().level == logging.DEBUG
    # The provider needs a restart: named, and the running value stays.
    assert reloader.config.provider.domain == "voice.example.net"
    assert reloader.config.audio.volume == 40
    assert any(
        "reload_needs_restart keys=[provider]domain" in r.getMessage() for r in caplog.records
    )
    logging.getLogger().setLevel(logging.WARNING)


def test_a_broken_file_changes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, reloader, fed, registry, _, _ = setup(tmp_path)
    before = reloader.config
    path.write_text("[audio\n")
    assert asyncio.run(reloader.reload()) == []
    assert reloader.config is before and fed == [] and registry.audio is None
    assert any("reload_refused" in r.getMessage() for r in caplog.records)


def test_the_dial_plan_and_the_display(tmp_path: Path) -> None:
    path, reloader, fed, _, _, displays = setup(tmp_path)
    path.write_text(
        BASE.format(state=tmp_path)
        + '\n[dialplan]\ncountry_code = "44"\n\n[hardware]\ndisplay_rotate = 2\n'
    )
    applied = asyncio.run(reloader.reload())
    assert ("dialplan", "country_code") in applied and ("hardware", "display_rotate") in applied
    assert len(fed) == 1 and len(displays) == 1
    assert changed_keys(reloader.config, load_config(path)) == []


def test_new_codecs_or_ptime_are_advertised_at_once(tmp_path: Path) -> None:
    path, reloader, _, registry, _, _ = setup(tmp_path)
    path.write_text(BASE.format(state=tmp_path).replace("volume = 70", "volume = 70\nptime = 40"))
    applied = asyncio.run(reloader.reload())
    assert applied == [("audio", "ptime")]
    assert [a.ptime for a in registry.line.advertised] == [40]
    path.write_text(
        BASE.format(state=tmp_path).replace("volume = 70", "ptime = 40\nopus_complexity = 2")
    )
    assert asyncio.run(reloader.reload()) == [("audio", "opus_complexity")]
    assert len(registry.line.advertised) == 1  # the complexity is not advertised
    assert registry.audio.opus_complexity == 2  # the next call's encoder uses it
