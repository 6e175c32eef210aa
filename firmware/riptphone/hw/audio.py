"""Audio interfaces the daemon uses, independent of ALSA, and the pacing clock.

* :class:`AudioFormat` - the one PCM shape the phone handles: 16-bit signed
  little-endian mono, ``frame_ms`` (20) per frame, at ``rate`` Hz.
* :class:`AudioSource` / :class:`AudioSink` - what the media engine sees of a
  microphone and an earpiece.  A source delivers whole frames (bytes of exactly
  ``format.bytes_per_frame``) into the asyncio loop; a sink takes frames with a
  non-blocking :meth:`AudioSink.write` into a bounded queue and, when the queue
  runs dry at a frame's turn, plays what the caller's filler returns (silence,
  or PLC) and counts an underrun, so its output stays time-continuous.
* :class:`FrameClock` - sans-IO monotonic pacing.  Frame ``i`` is due at
  ``start + i * period`` (integer nanoseconds, so it never drifts however long
  the call); after a stall longer than ``max_late_frames`` it skips to the
  frame due now and reports how many it skipped instead of bursting them.
* :class:`XrunLog` - sans-IO helper that turns a stream of xruns into one log
  line per burst.

Nothing here touches a device; ``riptphone.hw.alsa`` implements the protocols.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "SAMPLE_BYTES",
    "AudioDeviceError",
    "AudioError",
    "AudioFormat",
    "AudioSink",
    "AudioSource",
    "AudioStats",
    "FrameCallback",
    "FrameClock",
    "XrunLog",
]

SAMPLE_BYTES = 2  # S16_LE mono
NS_PER_MS = 1_000_000

FrameCallback = Callable[[bytes], None]
"""Receives one captured frame, called in the asyncio loop's thread."""


class AudioError(Exception):
    """An audio value or device is unusable."""


class AudioDeviceError(AudioError):
    """An audio device cannot be opened or used; names the device and ALSA's reason."""

    def __init__(self, device: str, reason: str) -> None:
        super().__init__(f"audio device {device!r} is unusable: {reason}")
        self.device = device
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """16-bit mono PCM at ``rate`` Hz in frames of ``frame_ms`` milliseconds."""

    rate: int
    frame_ms: int = 20

    def __post_init__(self) -> None:
        if not 8000 <= self.rate <= 192_000:
            raise AudioError(f"audio rate {self.rate} Hz is outside 8000..192000")
        if not 1 <= self.frame_ms <= 1000 or (self.rate * self.frame_ms) % 1000:
            raise AudioError(
                f"audio frame of {self.frame_ms} ms is not a whole number of samples "
                f"at {self.rate} Hz"
            )

    @property
    def samples_per_frame(self) -> int:
        return self.rate * self.frame_ms // 1000

    @property
    def bytes_per_frame(self) -> int:
        return self.samples_per_frame * SAMPLE_BYTES

    @property
    def period_ns(self) -> int:
        return self.frame_ms * NS_PER_MS

    def silence(self) -> bytes:
        """One frame of digital silence."""
        return bytes(self.bytes_per_frame)


@dataclass(frozen=True, slots=True)
class AudioStats:
    """Counters since start.

    ``frames``: frames delivered (source) or handed to the device (sink, filler
    included).  ``underruns``: sink turns with no queued frame, filled by the
    filler.  ``dropped``: frames discarded because a bounded queue was full (the
    oldest go first).  ``missed``: frame turns skipped after a stall of the I/O
    thread.  ``xruns``: ALSA overruns/underruns recovered by re-preparing.
    ``error``: why the device is unusable right now (gone), else None.
    ``recoveries``: times the device came back after such an error.
    """

    frames: int
    underruns: int
    dropped: int
    missed: int
    xruns: int
    error: str | None
    recoveries: int = 0


class AudioSource(Protocol):
    """A microphone: delivers frames of ``format`` into the asyncio loop once started."""

    @property
    def format(self) -> AudioFormat: ...

    def start(self) -> None:
        """Open the device and begin delivering; raises AudioDeviceError if it cannot."""

    def stop(self) -> None:
        """Stop delivering and release the device; idempotent."""

    def stats(self) -> AudioStats: ...


class AudioSink(Protocol):
    """An earpiece/speaker: plays frames of ``format`` at real time once started."""

    @property
    def format(self) -> AudioFormat: ...

    def start(self) -> None:
        """Open the device and begin playing; raises AudioDeviceError if it cannot."""

    def stop(self) -> None:
        """Stop playing and release the device; idempotent."""

    def write(self, frame: bytes) -> bool:
        """Queue one frame without blocking; False if the queue was full (oldest dropped)."""

    def stats(self) -> AudioStats: ...


class FrameClock:
    """Monotonic pacing for a stream of fixed-length frames (sans-IO, integer ns).

    Frame ``index`` is due at ``start_ns + index * period_ns``.  The owner asks
    :meth:`wait_ns` how long to sleep before the next frame (0 when a paced
    device already made it late), calls :meth:`catch_up` to skip turns lost to a
    stall, handles the frame, then :meth:`advance`.  Due times are computed, never
    accumulated, so there is no drift.
    """

    __slots__ = ("_index", "_max_late", "_period", "_start")

    def __init__(self, period_ns: int, start_ns: int, max_late_frames: int = 5) -> None:
        if period_ns <= 0:
            raise AudioError(f"frame period must be positive, not {period_ns} ns")
        if max_late_frames < 1:
            raise AudioError(f"max_late_frames must be at least 1, not {max_late_frames}")
        self._period = period_ns
        self._start = start_ns
        self._max_late = max_late_frames
        self._index = 0

    @property
    def index(self) -> int:
        """The index of the next frame to handle."""
        return self._index

    @property
    def period_ns(self) -> int:
        return self._period

    def due_ns(self, index: int) -> int:
        """When frame ``index`` is due."""
        return self._start + index * self._period

    def due_index(self, now_ns: int) -> int:
        """The highest frame index due at ``now_ns`` (-1 before the first is due)."""
        return (now_ns - self._start) // self._period

    def wait_ns(self, now_ns: int) -> int:
        """How long to wait before the next frame is due; 0 if it is due already."""
        return max(0, self._start + self._index * self._period - now_ns)

    def catch_up(self, now_ns: int) -> int:
        """Skip frame turns that are more than ``max_late_frames`` overdue; return how many.

        After a stall the owner handles the frame due now instead of bursting
        through every turn it slept through.  Lateness up to the bound is worked
        off by not waiting, which keeps a paced device's buffer intact.
        """
        due = self.due_index(now_ns)
        if due - self._index < self._max_late:
            return 0
        missed = due - self._index
        self._index = due
        return missed

    def advance(self) -> None:
        """The next frame has been handled."""
        self._index += 1

    def rebase(self, now_ns: int) -> None:
        """Make the next frame due at ``now_ns``, and later ones a period apart from it.

        For a device that paces itself: when a read or write blocked, the device
        says when it is ready, and its crystal, not the CPU clock, sets the pace.
        """
        self._start = now_ns - self._index * self._period


class XrunLog:
    """Decides which xruns deserve a log line: the first of each burst.

    A burst ends after ``quiet_frames`` frames without an xrun.  Sans-IO: the
    owner calls :meth:`xrun` on each xrun (True = log now) and :meth:`frame`
    after each good frame.
    """

    __slots__ = ("_count", "_in_burst", "_quiet", "_quiet_frames")

    def __init__(self, quiet_frames: int = 50) -> None:
        self._quiet_frames = quiet_frames
        self._quiet = 0
        self._in_burst = False
        self._count = 0

    @property
    def count(self) -> int:
        """Xruns seen in total."""
        return self._count

    def xrun(self) -> bool:
        self._count += 1
        self._quiet = 0
        if self._in_burst:
            return False
        self._in_burst = True
        return True

    def frame(self) -> None:
        if self._in_burst:
            self._quiet += 1
            if self._quiet >= self._quiet_frames:
                self._in_burst = False
