"""Tones the phone makes itself: dial tone, ringback, busy, and the ringer.

A desk phone plays call-progress tones locally (the provider sends no audio
before a call is answered, and a 3PCC call taken here needs ringback the far
end cannot give).  :class:`TonePlayer` plays one :class:`ToneSpec` at a time
on an ALSA device: the playback thread's filler hands out the generator's
next frame, so a tone costs one slice per 20 ms and nothing is queued.

Playing another tone, or none, stops the stream first: the device is free for
the call's media as soon as :meth:`TonePlayer.play` (``None``) returns.  A
device that cannot be opened is logged once per reason and otherwise ignored:
a phone without an earpiece still makes calls.

Opening and closing ALSA can block for a moment; the daemon calls these
methods through ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ript.media.tones import BUSY, DIAL_TONE, RING, RINGBACK, ToneGenerator, ToneSpec
from riptphone.hw.alsa import AlsaPlayback
from riptphone.hw.audio import AudioError

log = logging.getLogger(__name__)

TONES: dict[str, ToneSpec] = {
    "dial": DIAL_TONE,
    "ringback": RINGBACK,
    "busy": BUSY,
    "ring": RING,
}
"""The tones by the names the phone's state machine uses."""

Opener = Callable[[str, int, Callable[[], bytes]], AlsaPlayback]


def _open(device: str, rate: int, filler: Callable[[], bytes]) -> AlsaPlayback:
    # A one-frame queue: nothing is ever written, the filler is the source.
    return AlsaPlayback(device, rate, queue_size=1, filler=filler, prefill_frames=1)


class TonePlayer:
    """Plays at most one tone at a time on ``device``."""

    def __init__(self, device: str, *, rate: int = 48000, opener: Opener = _open) -> None:
        self.device = device
        self.rate = rate
        self._opener = opener
        self._lock = threading.Lock()
        self._stream: AlsaPlayback | None = None
        self._playing: str | None = None
        self._reported: str | None = None  # the last failure logged, so it is logged once

    @property
    def playing(self) -> str | None:
        """The name of the tone being played, or None."""
        return self._playing

    def play(self, name: str | None) -> bool:
        """Play the tone ``name`` (see :data:`TONES`), or stop with ``None``.

        Returns False when the device could not be opened (already logged).
        """
        if name is not None and name not in TONES:
            raise ValueError(f"no tone called {name!r} (known: {', '.join(TONES)})")
        with self._lock:
            if name == self._playing and (name is None or self._stream is not None):
                return True
            self._stop()
            if name is None:
                return True
            generator = ToneGenerator(TONES[name], self.rate)
            try:
                stream = self._opener(self.device, self.rate, generator.frame)
                stream.start()
            except AudioError as exc:
                reason = str(exc)
                if reason != self._reported:
                    self._reported = reason
                    log.warning("event=tone_unavailable tone=%s reason=%r", name, reason)
                return False
            self._reported = None
            self._stream, self._playing = stream, name
            return True

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        stream, self._stream, self._playing = self._stream, None, None
        if stream is not None:
            stream.stop()
