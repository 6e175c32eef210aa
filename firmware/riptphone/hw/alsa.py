"""ALSA capture and playback (pyalsaaudio), paced in real time, off the asyncio loop.

:class:`AlsaCapture` reads 20 ms frames on a thread and posts each into the
asyncio loop with ``loop.call_soon_threadsafe`` (to a callback, or to the
bounded :attr:`AlsaCapture.frames` queue, dropping the oldest when full).
:class:`AlsaPlayback` takes frames from :meth:`AlsaPlayback.write` (non-blocking,
into a bounded deque) and writes one per frame turn; when the deque is empty at
a turn it writes the caller's filler (silence by default, or PLC) and counts an
underrun, so the output stays time-continuous.

A playback either has its own thread (``start()``: tones, rings) or is driven
by a capture (``start(driven=True)`` and ``AlsaCapture(drives=playback)``: a
call).  Driven, its turns are taken on the capture's thread right after each
captured frame is posted, so a call's audio costs one thread wake-up per frame
instead of two, as a sound-device clock drives both directions in Linphone's
ticker or a duplex PortAudio callback.  The driven PCM is opened non-blocking:
a playback card on another clock than the microphone's can never hold up the
capture; a frame it has no room for is dropped and counted (``dropped``), and
one that underran is written again behind ``periods - 2`` frames of filler,
so that the card holds ``periods - 1`` frames after each turn again.  A
microphone whose reads block without an error (a stalled USB card) would
silence the earpiece with it, so a driven
playback keeps a standby thread that looks every :data:`STANDBY_CHECK_S` (5
wake-ups a second, not 50) and, after :data:`STANDBY_AFTER_FRAMES` frames
without a turn, plays on its own clock until the capture's turns come back.

Pacing: a real sound card blocks at the sample rate, but alsa-lib's ``file``
plugin over ``null`` (tests, the demo) returns at once.  So each thread keeps a
:class:`~riptphone.hw.audio.FrameClock` and sleeps only until a frame's due
time.  When a read or write blocked for a quarter period or more, the device is
pacing and the clock is re-anchored to it (no double wait, and the card's
crystal wins over the CPU clock, so a slightly fast or slow card never drifts
into xruns).  After a stall longer than ``max_late_frames`` the clock skips to
the frame due now and counts the turns as ``missed``.

Xruns (``-EPIPE``) are counted and recovered: pyalsaaudio 0.11 re-prepares the
PCM and returns ``-EPIPE`` from ``read``/``write`` (older releases raised "Broken
pipe"); the frame a write lost to an underrun is written again.  One log line
per burst.
Any other ALSA error on the thread (a USB card unplugged) is one error line
and ``stats().error``; the thread then tries to open the device again every
:data:`REOPEN_EVERY_S` and goes on when it is back (``stats().recoveries``),
while the call goes on: capture keeps delivering silence on time, playback
keeps taking (and dropping) frames, so nothing upstream stalls.  A device
that cannot be opened at ``start()`` raises
:class:`~riptphone.hw.audio.AudioDeviceError`, naming the device and ALSA's
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import alsaaudio

from riptphone.hw.audio import (
    AudioDeviceError,
    AudioError,
    AudioFormat,
    AudioStats,
    FrameCallback,
    FrameClock,
    XrunLog,
)

__all__ = ["AlsaCapture", "AlsaPlayback"]

log = logging.getLogger(__name__)

_XRUN_MESSAGES = (os.strerror(errno.EPIPE), os.strerror(errno.ESTRPIPE))
_JOIN_TIMEOUT_S = 2.0
REOPEN_EVERY_S = 1.0
"""While a device is gone, how often its thread tries to open it again."""
STANDBY_CHECK_S = 0.2
"""How often a driven playback's standby thread checks that the capture still drives it."""
STANDBY_AFTER_FRAMES = 3
"""Frames without a driven turn after which the standby thread plays on its own."""

_CheckKey = tuple[int, str, int, int, int]
_checked: set[_CheckKey] = set()
"""Configurations (direction, device, rate, samples per period, periods) whose PCM was
checked to give what was asked (see :meth:`_AlsaStream._open_pcm`).  The check calls
pyalsaaudio 0.11's ``PCM.info()``, which keeps memory at each call (3,000 opens with it:
+0.7 MB RSS, without it: +0; docs/audio.md): once per configuration and process, and
again after the device failed or was missing, rather than at every call's open."""
_checked_lock = threading.Lock()  # the threads' reopen and the loop's start() both check


def _uncheck(key: _CheckKey) -> None:
    """The device failed or was missing: what comes back under its name is checked again."""
    with _checked_lock:
        _checked.discard(key)


class _StopSignal:
    """A stream thread's stop flag and frame-turn sleep: ``threading.Event`` for one stop, cheaper.

    ``Event.wait(timeout)`` builds a Condition wait in Python at each call (a new
    lock, a waiter list, two acquires); the stream threads wait once per frame
    on a device that does not pace (the file plugin), and that Python, run with
    caches gone cold since the last frame, showed in their CPU (docs/performance.md,
    "Issue #12: the audio threads").  Here the wait is one C-level
    ``Lock.acquire(timeout)`` on a lock held until :meth:`set` releases it, so a
    stop still ends the wait at once.
    """

    __slots__ = ("_guard", "_held", "stopped")

    def __init__(self) -> None:
        self._held = threading.Lock()
        self._held.acquire()
        self._guard = threading.Lock()  # two concurrent set() calls release once
        self.stopped = False
        """True once :meth:`set` was called (read by the thread at each turn)."""

    def set(self) -> None:
        with self._guard:
            if not self.stopped:
                self.stopped = True
                self._held.release()

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, ending early on :meth:`set`; True when stopped."""
        if self._held.acquire(True, timeout):
            self._held.release()  # leave it free: every later wait returns at once
            return True
        return self.stopped


def _reason(error: Exception) -> str:
    """ALSA's reason without pyalsaaudio's trailing ``[device]``."""
    text = str(error)
    cut = text.rfind(" [")
    return text[:cut] if cut > 0 and text.endswith("]") else text


class _AlsaStream:
    """What capture and playback share: open/validate, thread, stop, counters."""

    _pcm_type: int
    _direction: str

    def __init__(self, device: str, fmt: AudioFormat, periods: int, max_late_frames: int) -> None:
        if not device:
            raise AudioError("audio device name is empty")
        if periods < 2:
            raise AudioError(f"ALSA needs at least 2 periods, not {periods}")
        self.device = device
        self._format = fmt
        self._periods = periods
        self._max_late = max_late_frames
        self._stop = _StopSignal()
        self._thread: threading.Thread | None = None
        self._frames = 0
        self._underruns = 0
        self._dropped = 0
        self._missed = 0
        self._xruns = XrunLog()
        self._error: str | None = None
        self._recoveries = 0
        self._mode = alsaaudio.PCM_NORMAL

    @property
    def format(self) -> AudioFormat:
        return self._format

    def stats(self) -> AudioStats:
        return AudioStats(
            frames=self._frames,
            underruns=self._underruns,
            dropped=self._dropped,
            missed=self._missed,
            xruns=self._xruns.count,
            error=self._error,
            recoveries=self._recoveries,
        )

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _open_device(self) -> Any:
        """Open the PCM asking for S16_LE mono at the configured rate, one frame per period."""
        fmt = self._format
        try:
            return alsaaudio.PCM(
                self._pcm_type,
                self._mode,
                device=self.device,
                channels=1,
                rate=fmt.rate,
                format=alsaaudio.PCM_FORMAT_S16_LE,
                periodsize=fmt.samples_per_frame,
                periods=self._periods,
            )
        except alsaaudio.ALSAAudioError as exc:
            raise AudioDeviceError(self.device, _reason(exc)) from None

    def _open_pcm(self) -> Any:
        """Open the PCM and check it got what it asked for, or raise AudioDeviceError.

        alsa-lib picks the nearest rate a ``hw:`` device supports instead of
        failing, which would play at the wrong speed: refuse that here.
        """
        key = self._check_key
        try:
            pcm = self._open_device()
        except AudioDeviceError:
            _uncheck(key)  # gone (a USB card pulled): another may come back in its place
            raise
        with _checked_lock:
            if key in _checked:
                return pcm  # alsa-lib picks the same for the same device and request
        info = pcm.info()
        got = (info.get("rate"), info.get("channels"), info.get("format_name"))
        if got != (self._format.rate, 1, "S16_LE"):
            pcm.close()
            raise AudioDeviceError(
                self.device,
                f"it offers {got[0]} Hz, {got[1]} channel(s), {got[2]} instead of "
                f"{self._format.rate} Hz mono S16_LE (use a plughw: device to convert)",
            )
        with _checked_lock:
            _checked.add(key)
        return pcm

    @property
    def _check_key(self) -> _CheckKey:
        fmt = self._format
        return (self._pcm_type, self.device, fmt.rate, fmt.samples_per_frame, self._periods)

    def start(self) -> None:
        if self._thread is not None:
            raise AudioError(f"audio {self._direction} on {self.device!r} was already started")
        pcm = self._open_pcm()
        self._thread = threading.Thread(
            target=self._run_and_close,
            args=(pcm,),
            name=f"alsa-{self._direction}-{self.device}",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "audio %s started device=%s rate=%d frame_ms=%d",
            self._direction,
            self.device,
            self._format.rate,
            self._format.frame_ms,
        )

    def stop(self) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(_JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.warning("audio %s thread did not stop device=%s", self._direction, self.device)
        else:
            log.info(
                "audio %s stopped device=%s frames=%d xruns=%d",
                self._direction,
                self.device,
                self._frames,
                self._xruns.count,
            )

    def _run_and_close(self, pcm: Any) -> None:
        while True:
            try:
                self._run(pcm)
                return  # stopped
            except alsaaudio.ALSAAudioError as exc:
                self._error = _reason(exc)
                _uncheck(self._check_key)
                log.error(
                    "audio %s failed device=%s reason=%s (retrying every %g s)",
                    self._direction,
                    self.device,
                    self._error,
                    REOPEN_EVERY_S,
                )
            finally:
                pcm.close()
            gone = time.monotonic()
            reopened = self._reopen()
            if reopened is None:
                return
            pcm = reopened
            self._error = None
            self._recoveries += 1
            log.info(
                "audio %s recovered device=%s after %.1f s",
                self._direction,
                self.device,
                time.monotonic() - gone,
            )

    def _reopen(self) -> Any:
        """Try the device every REOPEN_EVERY_S, keeping time meanwhile; None when stopping."""
        period = self._format.period_ns
        clock = FrameClock(period, time.monotonic_ns(), self._max_late)
        next_try = time.monotonic()
        while True:
            if time.monotonic() >= next_try:
                next_try += REOPEN_EVERY_S
                try:
                    return self._open_pcm()
                except AudioDeviceError:
                    pass
            if not self._wait_turn(clock):
                return None
            self._while_gone()
            clock.advance()

    def _while_gone(self) -> None:
        """One frame turn without a device (capture: silence; playback: drop a frame)."""

    def _run(self, pcm: Any) -> None:
        raise NotImplementedError

    def _note_xrun(self) -> None:
        if self._xruns.xrun():
            log.warning(
                "audio xrun device=%s direction=%s total=%d (recovering)",
                self.device,
                self._direction,
                self._xruns.count,
            )

    def _wait_turn(self, clock: FrameClock) -> bool:
        """Skip stalled turns and sleep until the next frame is due; False if stopping."""
        now = time.monotonic_ns()
        wait = clock.wait_ns(now)
        if wait:
            # The next frame is not due yet, so no turn is overdue: nothing to catch up.
            return not self._stop.wait(wait / 1e9)
        missed = clock.catch_up(now)
        if missed:
            self._missed += missed
        return not self._stop.stopped


class AlsaCapture(_AlsaStream):
    """A microphone on an ALSA PCM: an :class:`~riptphone.hw.audio.AudioSource`.

    Frames go to ``on_frame`` (called in the loop) when given, else into
    :attr:`frames`, an ``asyncio.Queue`` of ``queue_size`` frames that drops the
    oldest frame when full (counted as ``dropped``).  ``drives``: a playback
    started with ``start(driven=True)``, whose turn is taken on this thread after
    each frame posted (also while the microphone is gone), so a call's two
    directions share one thread; stop the capture before it.
    """

    _pcm_type = alsaaudio.PCM_CAPTURE
    _direction = "capture"

    def __init__(
        self,
        device: str,
        rate: int,
        frame_ms: int = 20,
        *,
        loop: asyncio.AbstractEventLoop,
        queue_size: int = 10,
        on_frame: FrameCallback | None = None,
        periods: int = 4,
        max_late_frames: int = 5,
        drives: AlsaPlayback | None = None,
    ) -> None:
        super().__init__(device, AudioFormat(rate, frame_ms), periods, max_late_frames)
        if queue_size < 1:
            raise AudioError(f"capture queue_size must be at least 1, not {queue_size}")
        if drives is not None and drives.format != self._format:
            raise AudioError(
                f"a capture at {self._format.rate} Hz / {frame_ms} ms cannot drive a playback "
                f"at {drives.format.rate} Hz / {drives.format.frame_ms} ms"
            )
        self._drives = drives
        self._loop = loop
        self._on_frame = on_frame
        self._silence = self._format.silence()
        self.frames: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)

    def _deliver(self, frame: bytes) -> None:
        # Runs in the loop's thread.
        if self._on_frame is not None:
            self._on_frame(frame)
            return
        if self.frames.full():
            self.frames.get_nowait()
            self._dropped += 1
        self.frames.put_nowait(frame)

    def start(self) -> None:
        drives = self._drives
        if drives is not None and not drives.driven:
            raise AudioError(f"start the playback on {drives.device!r} driven before its capture")
        super().start()

    def _while_gone(self) -> None:
        # Silence on time keeps the call's media flowing while the microphone is away,
        # and the earpiece it drives keeps its turns.
        with contextlib.suppress(RuntimeError):  # the loop is closed: stopping
            self._loop.call_soon_threadsafe(self._deliver, self._silence)
        if self._drives is not None:
            self._drives.driven_turn()

    def _emit(self, frame: bytes, clock: FrameClock) -> bool:
        """Wait for the frame's turn and post it into the loop; False when it is time to end."""
        if not self._wait_turn(clock):
            return False
        try:
            self._loop.call_soon_threadsafe(self._deliver, frame)
        except RuntimeError:
            return False  # the loop is closed: nobody is listening any more
        clock.advance()
        self._frames += 1
        self._xruns.frame()
        if self._drives is not None:
            self._drives.driven_turn()
        return True

    def _run(self, pcm: Any) -> None:
        need = self._format.bytes_per_frame
        period = self._format.period_ns
        paced = period // 4
        # The first frame is complete one period after the stream starts.
        clock = FrameClock(period, time.monotonic_ns() + period, self._max_late)
        stop = self._stop
        # Names bound once: the thread wakes with cold caches every 20 ms, and each
        # lookup less per frame shows in its CPU time (docs/performance.md, issue #12).
        monotonic_ns = time.monotonic_ns
        read = pcm.read
        emit = self._emit
        pending = bytearray()
        while not stop.stopped:
            t0 = monotonic_ns()
            count, data = read()
            t1 = monotonic_ns()
            if count < 0:
                # -EPIPE: overrun; pyalsaaudio re-prepares at the next read.
                self._note_xrun()
                continue
            if not count:
                stop.wait(period / 4e9)
                continue
            if t1 - t0 >= paced:
                # The card made us wait for this frame: it is due now, not later.
                clock.rebase(t1)
            if len(data) == need and not pending:
                if not emit(data, clock):
                    return
                continue
            # The device chose another period size: cut whole frames out.
            pending += data
            while len(pending) >= need:
                frame = bytes(pending[:need])
                del pending[:need]
                if not emit(frame, clock):
                    return


class AlsaPlayback(_AlsaStream):
    """An earpiece/speaker on an ALSA PCM: an :class:`~riptphone.hw.audio.AudioSink`.

    :meth:`write` queues a frame (any thread, never blocks); the deque holds
    ``queue_size`` frames and drops the oldest when full.  ``filler`` is called
    on the playing thread when a turn finds the deque empty and must return
    one frame (default: silence).  ``prefill_frames`` of filler are written at
    start: on a real card they are the cushion against scheduling jitter (the
    playback latency is about ``periods`` frames).  Driven by a capture
    (``start(driven=True)``), none are written at start (the card would play
    them out before the capture's first frame); the first turn, and a turn
    after an underrun, write ``min(prefill_frames, periods - 2)`` ahead of the
    frame (:meth:`_prime`).
    """

    _pcm_type = alsaaudio.PCM_PLAYBACK
    _direction = "playback"

    def __init__(
        self,
        device: str,
        rate: int,
        frame_ms: int = 20,
        *,
        queue_size: int = 10,
        filler: Callable[[], bytes] | None = None,
        periods: int = 3,
        prefill_frames: int | None = None,
        max_late_frames: int = 5,
    ) -> None:
        super().__init__(device, AudioFormat(rate, frame_ms), periods, max_late_frames)
        if queue_size < 1:
            raise AudioError(f"playback queue_size must be at least 1, not {queue_size}")
        prefill = periods if prefill_frames is None else prefill_frames
        if not 0 <= prefill <= periods:
            raise AudioError(f"prefill_frames must be within 0..{periods}, not {prefill}")
        self._prefill = prefill
        self._queue: deque[bytes] = deque(maxlen=queue_size)
        silence = self._format.silence()
        self._filler: Callable[[], bytes] = filler if filler is not None else lambda: silence
        # Driven by a capture: the PCM (None while the device is gone), and a lock
        # so that stop() never closes it under the capture thread's turn.
        self.driven = False
        self._pcm: Any = None
        self._primed = False
        self._turn_lock = threading.Lock()
        self._gone_at = 0.0
        self._next_try = 0.0
        self._driven_at_ns = 0
        self.standby_turns = 0
        """Turns the standby thread played because the capture did not drive them."""

    @property
    def running(self) -> bool:
        if self.driven:
            return not self._stop.stopped
        return super().running

    def start(self, *, driven: bool = False) -> None:
        """Open the device; then play on a thread of its own, or (``driven``) on a capture's."""
        if not driven:
            if self.driven:
                raise AudioError(f"audio playback on {self.device!r} was already started")
            super().start()
            return
        if self.driven or self._thread is not None:
            raise AudioError(f"audio playback on {self.device!r} was already started")
        self._mode = alsaaudio.PCM_NONBLOCK
        try:
            pcm = self._open_pcm()
        except AudioDeviceError:
            self._mode = alsaaudio.PCM_NORMAL  # this object may still play on its own
            raise
        # Nothing written yet: the card would play the prefill out before the
        # capture's first frame (its open and first period); the first turn primes it.
        self._primed = False
        self._pcm = pcm
        self.driven = True
        self._driven_at_ns = time.monotonic_ns()
        self._thread = threading.Thread(
            target=self._standby, name=f"alsa-standby-{self.device}", daemon=True
        )
        self._thread.start()
        log.info(
            "audio playback started device=%s rate=%d frame_ms=%d driven=capture",
            self.device,
            self._format.rate,
            self._format.frame_ms,
        )

    def stop(self) -> None:
        if not self.driven:
            super().stop()
            return
        with self._turn_lock:
            if self._stop.stopped:
                return
            self._stop.set()
            pcm, self._pcm = self._pcm, None
        if pcm is not None:
            pcm.close()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
        log.info(
            "audio playback stopped device=%s frames=%d xruns=%d",
            self.device,
            self._frames,
            self._xruns.count,
        )

    def _prefill_pcm(self, pcm: Any) -> None:
        for _ in range(self._prefill):
            self._write_frame(pcm, self._filler())

    def _prime(self, pcm: Any) -> None:
        """Driven: filler ahead of a turn's frame on a card that holds nothing (start, underrun).

        ``periods - 2`` of them, so that after each turn's write the card holds
        ``periods - 1`` frames (the margin against a late turn) and has room for
        one more (a turn a little early is not dropped).
        """
        filler = self._filler
        for _ in range(min(self._prefill, self._periods - 2)):
            pcm.write(filler())
        self._primed = True

    def driven_turn(self) -> None:
        """One frame turn, on the thread of the capture that drives this playback."""
        with self._turn_lock:
            self._driven_at_ns = time.monotonic_ns()
            self._turn()

    def _standby(self) -> None:
        """The driven playback's watchdog: play on our own while the capture is stuck."""
        period = self._format.period_ns
        quiet_ns = STANDBY_AFTER_FRAMES * period
        stop = self._stop
        while not stop.wait(STANDBY_CHECK_S):
            if time.monotonic_ns() - self._driven_at_ns < quiet_ns:
                continue
            log.warning(
                "audio playback device=%s is not driven by its capture: playing on its own",
                self.device,
            )
            clock = FrameClock(period, time.monotonic_ns(), self._max_late)
            while self._wait_turn(clock):
                clock.advance()
                with self._turn_lock:
                    if time.monotonic_ns() - self._driven_at_ns < period:
                        break  # the capture's turns are back
                    self.standby_turns += 1
                    self._turn()
            else:
                return  # stopping
            log.info("audio playback device=%s is driven by its capture again", self.device)

    def _turn(self) -> None:
        # Under _turn_lock.
        if self._stop.stopped:
            return
        pcm = self._pcm
        if pcm is None:
            self._gone_turn()
            return
        try:
            frame = self._queue.popleft()
        except IndexError:
            frame = self._filler()
            self._underruns += 1
        try:
            if not self._primed:
                self._prime(pcm)
            written = pcm.write(frame)
            if written < 0:  # -EPIPE: it underran and was re-prepared, empty
                self._note_xrun()
                self._prime(pcm)
                written = pcm.write(frame)
        except alsaaudio.ALSAAudioError as exc:
            try:
                if not str(exc).startswith(_XRUN_MESSAGES):
                    raise
                self._note_xrun()  # pyalsaaudio before 0.11 raised it; re-prepared, empty
                self._prime(pcm)
                written = pcm.write(frame)
            except alsaaudio.ALSAAudioError as failed:
                self._fail(pcm, failed)
                return
        if written == 0:
            # No room: this card's clock is slower than the microphone's. Drop
            # rather than let the delay grow.
            self._dropped += 1
        self._frames += 1
        self._xruns.frame()

    def _fail(self, pcm: Any, error: alsaaudio.ALSAAudioError) -> None:
        self._error = _reason(error)
        _uncheck(self._check_key)
        log.error(
            "audio playback failed device=%s reason=%s (retrying every %g s)",
            self.device,
            self._error,
            REOPEN_EVERY_S,
        )
        self._pcm = None
        with contextlib.suppress(alsaaudio.ALSAAudioError):
            pcm.close()
        self._gone_at = self._next_try = time.monotonic()

    def _gone_turn(self) -> None:
        """A driven turn without a device: drop the frame due, try the device every second."""
        self._while_gone()
        now = time.monotonic()
        if now < self._next_try:
            return
        self._next_try = now + REOPEN_EVERY_S
        try:
            pcm = self._open_pcm()
        except AudioDeviceError:
            return
        self._primed = False  # the next turn primes the new PCM
        self._pcm = pcm
        self._error = None
        self._recoveries += 1
        log.info(
            "audio playback recovered device=%s after %.1f s", self.device, now - self._gone_at
        )

    def write(self, frame: bytes) -> bool:
        """Queue one frame without blocking; False if the queue was full (oldest dropped)."""
        if len(frame) != self._format.bytes_per_frame:
            raise AudioError(
                f"audio frame of {len(frame)} bytes, expected {self._format.bytes_per_frame}"
            )
        queue = self._queue
        full = len(queue) == queue.maxlen
        queue.append(frame)  # deque.append is atomic; maxlen drops the oldest
        if full:
            self._dropped += 1
        return not full

    def _while_gone(self) -> None:
        # The frames due now cannot be played: drop them rather than play them late.
        with contextlib.suppress(IndexError):
            self._queue.popleft()
            self._dropped += 1

    @property
    def queued(self) -> int:
        """Frames waiting to be played."""
        return len(self._queue)

    def _write_frame(self, pcm: Any, frame: bytes) -> None:
        try:
            if pcm.write(frame) < 0:  # -EPIPE (pyalsaaudio 0.11): underran, re-prepared
                self._note_xrun()
                pcm.write(frame)
        except alsaaudio.ALSAAudioError as exc:
            self._write_again(pcm, frame, exc)

    def _write_again(self, pcm: Any, frame: bytes, exc: alsaaudio.ALSAAudioError) -> None:
        if not str(exc).startswith(_XRUN_MESSAGES):
            raise exc
        # Underrun (pyalsaaudio before 0.11 raised it): the PCM was re-prepared, so
        # write the frame again rather than lose it.
        self._note_xrun()
        pcm.write(frame)

    def _run(self, pcm: Any) -> None:
        period = self._format.period_ns
        paced = period // 4
        queue = self._queue
        filler = self._filler
        xruns = self._xruns
        self._prefill_pcm(pcm)
        # Names bound once: the thread wakes with cold caches every 20 ms, and each
        # lookup less per frame shows in its CPU time (docs/performance.md, issue #12).
        monotonic_ns = time.monotonic_ns
        write = pcm.write
        wait_turn = self._wait_turn
        clock = FrameClock(period, monotonic_ns(), self._max_late)
        while wait_turn(clock):
            try:
                frame = queue.popleft()
            except IndexError:
                frame = filler()
                self._underruns += 1
            t0 = monotonic_ns()
            try:
                if write(frame) < 0:  # -EPIPE (pyalsaaudio 0.11): underran, re-prepared
                    self._note_xrun()
                    write(frame)
            except alsaaudio.ALSAAudioError as exc:
                self._write_again(pcm, frame, exc)
            t1 = monotonic_ns()
            clock.advance()
            if t1 - t0 >= paced:
                # The card is pacing us (its buffer was full): write the next frame
                # at once so it keeps pacing; its crystal wins over the CPU clock.
                clock.rebase(t1)
            self._frames += 1
            xruns.frame()
