"""SIGHUP: re-read the configuration and apply what can change while the phone runs.

Applied at once, a call in progress included (it is never dropped):

* ``[log] level``;
* ``[audio] volume`` (the earpiece's gain, shown as a volume change) and the
  devices, codecs and media settings (the local tones at once, a call's
  media from the next call; a change of ``codecs`` or ``ptime`` PUTs the
  handler's new advertisement at once);
* ``[dialplan]`` (from the next number typed);
* the OLED (``[hardware] display``, its I2C port and address, rotation),
  which is reopened.

Anything else (the provider, the phone's identity and paths, the hardware
pins) needs a restart: one log line names those keys, and the running values
stay in force.  A file that cannot be read or checked changes nothing: one
line says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riptphone import logs
from riptphone.app.inputs import Input, Reconfigured
from riptphone.calls.earpiece import Earpiece
from riptphone.calls.registry import CallRegistry
from riptphone.config import Config, ConfigError, load_config
from riptphone.hw.tone_player import TonePlayer

log = logging.getLogger(__name__)

LIVE: frozenset[tuple[str, str]] = frozenset(
    {("log", "level")}
    | {("audio", name) for name in ("volume", "capture", "playback", "ringer", "codecs", "ptime")}
    | {("audio", name) for name in ("opus_bitrate", "opus_complexity", "jitter_max_ms")}
    | {("hardware", name) for name in ("display", "display_i2c_port", "display_i2c_address")}
    | {("hardware", "display_rotate")}
)
"""The (section, key) pairs applied without a restart; every ``[dialplan]`` key is too."""


def changed_keys(old: Config, new: Config) -> list[tuple[str, str]]:
    """Every (section, key) whose value differs, in the file's order."""
    changes: list[tuple[str, str]] = []
    for section in dataclasses.fields(old):
        before, after = getattr(old, section.name), getattr(new, section.name)
        for item in dataclasses.fields(before):
            if getattr(before, item.name) != getattr(after, item.name):
                changes.append((section.name, item.name))
    return changes


def is_live(key: tuple[str, str]) -> bool:
    return key in LIVE or key[0] == "dialplan"


class Reloader:
    """Holds the configuration in force and applies a re-read one (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        config: Config,
        *,
        feed: Callable[[Input], object],
        registry: CallRegistry,
        earpiece: Earpiece,
        reopen_display: Callable[[Config], None] | None = None,
        loader: Callable[[Path], Config] = load_config,
    ) -> None:
        self.path = path
        self.config = config
        self._feed = feed
        self._registry = registry
        self._earpiece = earpiece
        self._reopen_display = reopen_display
        self._loader = loader

    async def reload(self) -> list[tuple[str, str]]:
        """Re-read the file and apply it; the keys that were applied."""
        try:
            new = await asyncio.to_thread(self._loader, self.path)
        except ConfigError as exc:
            log.error("event=reload_refused reason=%r (the running configuration stays)", str(exc))
            return []
        changes = changed_keys(self.config, new)
        live = [key for key in changes if is_live(key)]
        restart = [key for key in changes if not is_live(key)]
        await self._apply(new, live)
        # What needs a restart keeps its running value: the configuration in force is the
        # old one with the live changes only.
        self.config = _merge(self.config, new, live)
        if not changes:
            log.info("event=reloaded changed=none")
        else:
            log.info("event=reloaded applied=%s", _names(live) or "none")
        if restart:
            log.warning("event=reload_needs_restart keys=%s", _names(restart))
        return live

    async def _apply(self, new: Config, live: list[tuple[str, str]]) -> None:
        sections = {section for section, _ in live}
        if ("log", "level") in live:
            logs.set_level(new.log.level)
        if "audio" in sections:
            self._registry.audio = new.audio
            if {("audio", "codecs"), ("audio", "ptime")} & set(live):
                # The advertisement says both: PUT it, so the next call's directive follows.
                await self._registry.line.readvertise(new.audio)
            if {("audio", "playback"), ("audio", "ringer")} & set(live):
                await self._earpiece.retarget(
                    TonePlayer(new.audio.playback),
                    TonePlayer(new.audio.ringer or new.audio.playback),
                )
        if ("audio", "volume") in live or "dialplan" in sections:
            self._feed(
                Reconfigured(
                    new.audio.volume,
                    new.dialplan.plan(),
                    new.dialplan.interdigit_timeout_ms / 1000,
                )
            )
        if "hardware" in sections and self._reopen_display is not None:
            self._reopen_display(new)


def _merge(old: Config, new: Config, live: list[tuple[str, str]]) -> Config:
    sections: dict[str, Any] = {}
    for section in dataclasses.fields(old):
        keep = getattr(old, section.name)
        take = {
            key: getattr(getattr(new, section.name), key) for s, key in live if s == section.name
        }
        sections[section.name] = dataclasses.replace(keep, **take) if take else keep
    return dataclasses.replace(old, **sections)


def _names(keys: list[tuple[str, str]]) -> str:
    return ",".join(f"[{section}]{key}" for section, key in keys)
