"""Write an asoundrc whose PCMs read and write plain files, for tests and the demo.

``phone_out`` writes everything played to ``playback.raw``; ``phone_in``
captures from ``capture_in.raw`` (and copies what it captured to
``capture_copy.raw``).  Both are bit-exact for S16_LE mono at whatever rate the
PCM is opened with, and neither is paced: the reader/writer keeps time.  Past
the end of ``capture_in.raw`` capture does not fail; its content is not
meaningful (silence or stale samples), so give tests enough input.

Point alsa-lib at it with ``ALSA_CONFIG_PATH`` (see :attr:`FilePluginAlsa.config_path`);
the variable is read at the next PCM open, so ``monkeypatch.setenv`` before
opening is enough, and a child process gets it through :meth:`FilePluginAlsa.env`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SYSTEM_ALSA_CONF", "FilePluginAlsa", "write_asoundrc"]

SYSTEM_ALSA_CONF = "/usr/share/alsa/alsa.conf"


@dataclass(frozen=True, slots=True)
class FilePluginAlsa:
    """Where the asoundrc and its files are, and the PCM names it defines."""

    asoundrc: Path
    playback_file: Path
    capture_in: Path
    capture_copy: Path
    playback_device: str = "phone_out"
    capture_device: str = "phone_in"

    @property
    def config_path(self) -> str:
        """The value for ``ALSA_CONFIG_PATH``: the system alsa.conf first, then ours."""
        return f"{SYSTEM_ALSA_CONF}:{self.asoundrc}"

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment (default: this process's) with ``ALSA_CONFIG_PATH`` set."""
        env = dict(os.environ if base is None else base)
        env["ALSA_CONFIG_PATH"] = self.config_path
        return env


def _quoted(path: Path) -> str:
    text = str(path)
    # alsa-lib expands %-sequences in the file plugin's names (%r = rate, ...), and
    # ALSA_CONFIG_PATH is split on ':'; refuse rather than silently use another file.
    if "%" in text or ":" in text or "\n" in text:
        raise ValueError(f"path {text!r} holds '%', ':' or a newline, which alsa-lib mangles")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_asoundrc(
    directory: Path,
    capture_input: bytes = b"",
    *,
    playback_format: str = "raw",
    playback_device: str = "phone_out",
    capture_device: str = "phone_in",
) -> FilePluginAlsa:
    """Write ``directory/asoundrc`` and ``capture_in.raw`` (``capture_input``).

    ``playback_format`` is ``"raw"`` (bytes exactly as played) or ``"wav"``
    (alsa-lib writes a WAV header first, handy for listening to a demo).
    """
    if playback_format not in ("raw", "wav"):
        raise ValueError(f"playback_format must be 'raw' or 'wav', not {playback_format!r}")
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    suffix = "raw" if playback_format == "raw" else "wav"
    files = FilePluginAlsa(
        asoundrc=directory / "asoundrc",
        playback_file=directory / f"playback.{suffix}",
        capture_in=directory / "capture_in.raw",
        capture_copy=directory / "capture_copy.raw",
        playback_device=playback_device,
        capture_device=capture_device,
    )
    files.capture_in.write_bytes(capture_input)
    files.asoundrc.write_text(
        f"pcm.{playback_device} {{\n"
        f'    type file\n    slave.pcm "null"\n'
        f"    file {_quoted(files.playback_file)}\n"
        f'    format "{playback_format}"\n'
        f"}}\n"
        f"pcm.{capture_device} {{\n"
        f'    type file\n    slave.pcm "null"\n'
        f"    file {_quoted(files.capture_copy)}\n"
        f"    infile {_quoted(files.capture_in)}\n"
        f'    format "raw"\n'
        f"}}\n"
    )
    return files
