"""The far end's recorded audio: a WAV file played in a loop (``media = "file"``).

The file is read once per call and converted to the codec's rate (16-bit
mono PCM; other sample widths and stereo are refused with one clear line), so
the 20 ms generator only slices.  A file that cannot be used makes the far end
send silence and logs why: a bad test file must not stop the provider.
"""

from __future__ import annotations

import functools
import itertools
import logging
import wave
from collections.abc import Callable
from pathlib import Path

from ript.media.codecs import FRAME_MS
from ript.media.resample import Resampler

log = logging.getLogger(__name__)

MAX_SECONDS = 600  # a longer file is cut: the provider keeps it in memory


class FarEndAudioError(ValueError):
    """The far end's audio file cannot be played; the message says why."""


@functools.lru_cache(maxsize=8)
def load_wav(path: str, rate: int) -> bytes:
    """The file's audio as 16-bit mono PCM at ``rate``, a whole number of 20 ms frames."""
    try:
        with wave.open(path, "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise FarEndAudioError(
                    f"{path}: must be 16-bit mono PCM, not {8 * wav.getsampwidth()}-bit "
                    f"with {wav.getnchannels()} channel(s)"
                )
            in_rate = wav.getframerate()
            pcm = wav.readframes(min(wav.getnframes(), in_rate * MAX_SECONDS))
    except (OSError, EOFError, wave.Error) as exc:
        raise FarEndAudioError(f"{path}: cannot read the WAV file: {exc}") from None
    except RuntimeError:  # the wave module's: a chunk whose size runs past the file
        raise FarEndAudioError(f"{path}: cannot read the WAV file: a chunk is cut short") from None
    if in_rate != rate:
        try:
            pcm = Resampler(in_rate, rate).process(pcm)
        except ValueError as exc:
            raise FarEndAudioError(
                f"{path}: cannot convert {in_rate} Hz to {rate} Hz: {exc}"
            ) from None
    frame = 2 * rate * FRAME_MS // 1000
    pcm = pcm[: len(pcm) - len(pcm) % frame]
    if not pcm:
        raise FarEndAudioError(f"{path}: holds less than {FRAME_MS} ms of audio")
    return pcm


def file_frames(path: str | Path, rate: int, frame_ms: int = FRAME_MS) -> Callable[[], bytes]:
    """A function handing out the file's next ``frame_ms`` frame, looping; silence if unusable."""
    frame = 2 * rate * frame_ms // 1000
    try:
        pcm = load_wav(str(path), rate)
    except FarEndAudioError as exc:
        log.warning("far end plays silence: %s", exc)
        return itertools.repeat(bytes(frame)).__next__
    frames = [pcm[i : i + frame] for i in range(0, len(pcm), frame)]
    return itertools.cycle(frames).__next__
