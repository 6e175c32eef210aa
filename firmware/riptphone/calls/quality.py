"""The in-call quality bars: every few seconds, what the media counters show since last time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from ript.protocol.call import CallState
from riptphone.app.inputs import CallProgress, Input
from riptphone.calls.runner import CallRunner
from riptphone.calls.stats import QualityWindow

QUALITY_EVERY_S = 2.0


class QualityMeter:
    """Measures the active calls' media every ``every`` seconds while any is active.

    The bars go to the phone machine as ``CallProgress(uri, "in-call", codec,
    quality, no_audio)``; the first reading of a call only opens its window.
    A lost or recovered audio device is said at the next reading, bars or not
    (the screen's "no audio device" line).
    """

    def __init__(
        self,
        runners: Callable[[], Iterable[CallRunner]],
        feed: Callable[[Input], object],
        *,
        every: float = QUALITY_EVERY_S,
    ) -> None:
        self._runners = runners
        self._feed = feed
        self._every = every
        self._timer: asyncio.TimerHandle | None = None
        self._seen: dict[str, QualityWindow] = {}
        self._shown: dict[str, tuple[int | None, bool]] = {}  # (quality, no audio) last fed

    @property
    def running(self) -> bool:
        return self._timer is not None

    def start(self) -> None:
        """Measure from now on (media started); a meter already running goes on as it was."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._every, self.measure)

    def measure(self) -> None:
        """Take one reading of every active call; go on while any is active."""
        self._timer = None
        measured: set[str] = set()
        for runner in tuple(self._runners()):
            media = runner.media
            if media is None or runner.call.state is not CallState.ACTIVE:
                continue
            name = runner.call.first_uri  # the phone's name for the call (see calls/actions.py)
            measured.add(name)
            window = QualityWindow.now(media)
            before = self._seen.get(name)
            self._seen[name] = window
            shown_quality, shown_no_audio = self._shown.get(name, (None, False))
            quality = None if before is None else window.quality_since(before)
            no_audio = media.audio_error() is not None
            if quality is None and no_audio == shown_no_audio:
                continue
            quality = shown_quality if quality is None else quality
            self._shown[name] = (quality, no_audio)
            self._feed(CallProgress(name, "in-call", media.codec, quality, no_audio))
        # Forget the calls not measured now (ended, held elsewhere): the readings stay
        # bounded by the calls active at once, not by every call the phone ever had.
        for name in self._seen.keys() - measured:
            del self._seen[name]
        for name in self._shown.keys() - measured:
            del self._shown[name]
        if measured:
            self.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
