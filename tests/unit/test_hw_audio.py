"""Audio in and out: the pacing clock (sans-IO) and ALSA capture/playback through real alsa-lib.

alsa-lib's ``file`` plugin over ``null`` stands in for a sound card: bit-exact
but unpaced, so these tests also show that the threads keep real time on their
own.  Xruns cannot happen on ``null``, so the xrun tests give the threads a
fake PCM that reports them as pyalsaaudio 0.11 does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import alsaaudio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riptphone.hw import alsa
from riptphone.hw.alsa import AlsaCapture, AlsaPlayback
from riptphone.hw.audio import (
    AudioDeviceError,
    AudioError,
    AudioFormat,
    AudioSink,
    AudioSource,
    FrameClock,
    XrunLog,
)

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from alsa.fileplugin import FilePluginAlsa, write_asoundrc  # noqa: E402

RATE = 16000
FMT = AudioFormat(RATE)
BPF = FMT.bytes_per_frame
MS = 1_000_000
PERIOD = 20 * MS


def tone(seconds: float, freq: float = 1000.0, rate: int = RATE) -> bytes:
    """A 1 kHz tone that swells, so that no two 20 ms frames are equal."""
    n = int(seconds * rate)
    return struct.pack(
        f"<{n}h",
        *(
            round((2000 + 10000 * i / n) * math.sin(2 * math.pi * freq * i / rate))
            for i in range(n)
        ),
    )


def numbered_frames(count: int) -> list[bytes]:
    """Frames that are all different and none is silence or the filler."""
    return [struct.pack("<h", 1000 + i) * FMT.samples_per_frame for i in range(count)]


def split(data: bytes) -> list[bytes]:
    assert len(data) % BPF == 0
    return [data[i : i + BPF] for i in range(0, len(data), BPF)]


@pytest.fixture
def alsa_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FilePluginAlsa:
    files = write_asoundrc(tmp_path, tone(1.5))
    monkeypatch.setenv("ALSA_CONFIG_PATH", files.config_path)
    return files


# --- AudioFormat -------------------------------------------------------------------------


def test_format_sizes() -> None:
    assert (FMT.samples_per_frame, FMT.bytes_per_frame, FMT.period_ns) == (320, 640, PERIOD)
    assert AudioFormat(48000).bytes_per_frame == 1920
    assert AudioFormat(8000, 10).silence() == bytes(160)


@pytest.mark.parametrize(("rate", "frame_ms"), [(4000, 20), (16000, 0), (44100, 15)])
def test_format_rejects_bad_values(rate: int, frame_ms: int) -> None:
    with pytest.raises(AudioError, match=str(rate) if rate == 4000 else f"{frame_ms} ms"):
        AudioFormat(rate, frame_ms)


# --- FrameClock --------------------------------------------------------------------------


def test_clock_due_times() -> None:
    clock = FrameClock(PERIOD, start_ns=5 * MS)
    assert [clock.due_ns(i) for i in range(3)] == [5 * MS, 25 * MS, 45 * MS]
    assert [clock.due_index(t * MS) for t in (0, 5, 24, 25, 100)] == [-1, 0, 0, 1, 4]
    assert clock.wait_ns(0) == 5 * MS
    assert clock.wait_ns(7 * MS) == 0


def test_clock_does_not_drift_over_an_hour() -> None:
    # Each frame: sleep until due, then the thread wakes 0..3 ms late and works 1 ms.
    start = 123_456_789
    clock = FrameClock(PERIOD, start)
    now = start
    frames = 3600 * 50
    worst = 0
    for i in range(frames):
        assert clock.catch_up(now) == 0
        now += clock.wait_ns(now) + (i * 7919) % (3 * MS)
        worst = max(worst, now - clock.due_ns(clock.index))
        assert now >= clock.due_ns(clock.index)
        clock.advance()
        now += MS
    assert clock.index == frames
    assert clock.due_ns(frames) == start + frames * PERIOD  # exactly: no accumulated error
    assert worst < 4 * MS  # lateness stays the wake-up jitter, it does not grow


def test_clock_reports_a_stall_instead_of_bursting() -> None:
    clock = FrameClock(PERIOD, 0, max_late_frames=5)
    for _ in range(10):
        clock.advance()
    now = 10 * PERIOD + 1_000 * MS  # the thread slept a second at frame 10
    assert clock.catch_up(now) == 50
    assert clock.index == 60
    assert clock.wait_ns(now) == 0
    clock.advance()
    assert clock.wait_ns(now) == PERIOD  # the frame after waits a full period again


def test_clock_works_off_small_lateness_without_skipping() -> None:
    clock = FrameClock(PERIOD, 0, max_late_frames=5)
    now = 4 * PERIOD + MS  # 4 frames behind: below the bound
    assert clock.catch_up(now) == 0
    handled_at_once = 0
    while clock.wait_ns(now) == 0:
        clock.advance()
        handled_at_once += 1
    assert handled_at_once == 5  # frames 0..4, all due, none skipped


def test_clock_rebase_follows_a_paced_device() -> None:
    clock = FrameClock(PERIOD, 0)
    clock.advance()
    clock.rebase(1_000 * MS + 3)
    assert clock.wait_ns(1_000 * MS + 3) == 0
    assert clock.due_ns(clock.index + 1) == 1_020 * MS + 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 500 * MS), min_size=1, max_size=300), st.integers(1, 10))
def test_clock_never_early_never_unbounded(delays: list[int], max_late: int) -> None:
    clock = FrameClock(PERIOD, 0, max_late_frames=max_late)
    now = 0
    missed = handled = 0
    for delay in delays:
        missed += clock.catch_up(now)
        assert clock.due_index(now) - clock.index < max_late  # the backlog is bounded
        now += clock.wait_ns(now)
        assert now >= clock.due_ns(clock.index)
        clock.advance()
        handled += 1
        now += delay
    assert handled + missed == clock.index  # every turn is either handled or reported


def test_clock_rejects_bad_values() -> None:
    with pytest.raises(AudioError, match="period"):
        FrameClock(0, 0)
    with pytest.raises(AudioError, match="max_late_frames"):
        FrameClock(PERIOD, 0, max_late_frames=0)


def test_xrun_log_one_line_per_burst() -> None:
    xlog = XrunLog(quiet_frames=3)
    decisions = [xlog.xrun(), xlog.xrun(), xlog.xrun()]
    xlog.frame()
    xlog.frame()
    decisions.append(xlog.xrun())  # still within the burst: quiet for only 2 frames
    for _ in range(3):
        xlog.frame()
    decisions.append(xlog.xrun())  # a new burst
    assert decisions == [True, False, False, False, True]
    assert xlog.count == 5


# --- capture through alsa-lib ------------------------------------------------------------


def test_capture_delivers_the_file_bit_exact_at_real_time(alsa_files: FilePluginAlsa) -> None:
    source = alsa_files.capture_in.read_bytes()

    async def main() -> tuple[list[bytes], float, AlsaCapture]:
        cap = AlsaCapture(alsa_files.capture_device, RATE, loop=asyncio.get_running_loop())
        got = []
        began = time.monotonic()
        cap.start()
        try:
            for _ in range(50):
                got.append(await asyncio.wait_for(cap.frames.get(), 5))
            elapsed = time.monotonic() - began
        finally:
            cap.stop()
        return got, elapsed, cap

    frames, elapsed, cap = asyncio.run(main())
    assert all(len(f) == BPF for f in frames)
    assert b"".join(frames) == source[: 50 * BPF]
    assert elapsed >= 0.9  # 1 s of audio is not delivered faster than real time
    stats = cap.stats()
    assert stats.frames >= 50
    assert (stats.xruns, stats.missed, stats.error) == (0, 0, None)
    assert not cap.running


def test_capture_callback_runs_in_the_loop_thread(alsa_files: FilePluginAlsa) -> None:
    source = alsa_files.capture_in.read_bytes()

    async def main() -> tuple[list[bytes], set[int], int]:
        loop = asyncio.get_running_loop()
        got: list[bytes] = []
        threads: set[int] = set()
        done = asyncio.Event()

        def on_frame(frame: bytes) -> None:
            got.append(frame)
            threads.add(threading.get_ident())
            if len(got) == 10:
                done.set()

        cap = AlsaCapture(alsa_files.capture_device, RATE, loop=loop, on_frame=on_frame)
        cap.start()
        try:
            await asyncio.wait_for(done.wait(), 5)
        finally:
            cap.stop()
        return got, threads, cap.frames.qsize()

    frames, threads, queued = asyncio.run(main())
    assert b"".join(frames[:10]) == source[: 10 * BPF]
    assert threads == {threading.get_ident()}
    assert queued == 0


def test_capture_queue_drops_the_oldest_when_nobody_reads(alsa_files: FilePluginAlsa) -> None:
    source = alsa_files.capture_in.read_bytes()

    async def main() -> tuple[list[bytes], int]:
        cap = AlsaCapture(
            alsa_files.capture_device, RATE, loop=asyncio.get_running_loop(), queue_size=3
        )
        cap.start()
        while cap.stats().frames < 8:
            await asyncio.sleep(0.02)
        cap.stop()
        await asyncio.sleep(0)  # let posted frames land
        got = [cap.frames.get_nowait() for _ in range(cap.frames.qsize())]
        return got, cap.stats().dropped + len(got)

    got, total = asyncio.run(main())
    assert len(got) == 3
    first = source.index(got[0])
    assert b"".join(got) == source[first : first + 3 * BPF]  # the newest, in order
    assert first > 0 and total >= 8


def test_capture_stop_is_prompt_and_idempotent(alsa_files: FilePluginAlsa) -> None:
    async def main() -> AlsaCapture:
        cap = AlsaCapture(alsa_files.capture_device, RATE, loop=asyncio.get_running_loop())
        cap.stop()  # before start: nothing to do
        cap.start()
        assert cap.running
        await asyncio.sleep(0.05)
        cap.stop()
        cap.stop()
        return cap

    cap = asyncio.run(main())
    assert not cap.running
    assert cap._thread is not None and not cap._thread.is_alive()
    with pytest.raises(AudioError, match="already started"):
        cap.start()


# --- playback through alsa-lib -----------------------------------------------------------

FILL = b"\x01\x02" * FMT.samples_per_frame


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_playback_writes_exactly_what_was_given_then_fills(alsa_files: FilePluginAlsa) -> None:
    frames = numbered_frames(25)
    sink = AlsaPlayback(alsa_files.playback_device, RATE, queue_size=50, filler=lambda: FILL)
    for frame in frames:
        assert sink.write(frame)
    sink.start()
    wait_for(lambda: sink.stats().frames >= 30)
    sink.stop()
    out = split(alsa_files.playback_file.read_bytes())
    stats = sink.stats()
    prefill = 3
    assert len(out) == prefill + stats.frames
    assert out[:prefill] == [FILL] * prefill
    assert out[prefill : prefill + 25] == frames
    assert out[prefill + 25 :] == [FILL] * stats.underruns
    assert stats.underruns >= 5
    assert (stats.dropped, stats.xruns, stats.error) == (0, 0, None)


def test_playback_fills_a_gap_so_output_stays_continuous(alsa_files: FilePluginAlsa) -> None:
    first, second = numbered_frames(20)[:10], numbered_frames(20)[10:]
    sink = AlsaPlayback(alsa_files.playback_device, RATE, prefill_frames=0)
    for frame in first:
        sink.write(frame)
    sink.start()
    wait_for(lambda: sink.queued == 0)
    time.sleep(0.1)  # the far end goes quiet for about five frames
    for frame in second:
        sink.write(frame)
    wait_for(lambda: sink.queued == 0)
    sink.stop()
    out = split(alsa_files.playback_file.read_bytes())
    silence = FMT.silence()
    assert out[:10] == first
    gap = out.index(second[0]) - 10
    assert gap >= 1 and out[10 : 10 + gap] == [silence] * gap
    assert out[10 + gap : 20 + gap] == second
    assert out[20 + gap :] == [silence] * (len(out) - 20 - gap)
    assert sink.stats().underruns == len(out) - 20


def test_playback_keeps_real_time(alsa_files: FilePluginAlsa) -> None:
    sink = AlsaPlayback(alsa_files.playback_device, RATE, queue_size=60, prefill_frames=0)
    for frame in numbered_frames(50):
        sink.write(frame)
    began = time.monotonic()
    sink.start()
    wait_for(lambda: sink.stats().frames >= 50)
    elapsed = time.monotonic() - began
    sink.stop()
    assert elapsed >= 0.9  # 50 frames of 20 ms are not played faster than real time
    assert split(alsa_files.playback_file.read_bytes())[:50] == numbered_frames(50)


def test_playback_after_a_stall_skips_the_turns_it_missed(alsa_files: FilePluginAlsa) -> None:
    calls = 0

    def stalling_filler() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 6:  # 3 of prefill, then the thread stalls at its third turn
            time.sleep(0.3)  # 15 frame turns
        return FILL

    sink = AlsaPlayback(alsa_files.playback_device, RATE, filler=stalling_filler, max_late_frames=5)
    sink.start()
    wait_for(lambda: sink.stats().frames >= 25)
    sink.stop()
    stats = sink.stats()
    # The turns slept through are counted, not played late in a burst ...
    assert 5 <= stats.missed <= 15
    # ... and every turn handled wrote exactly one frame (after the prefill).
    assert len(split(alsa_files.playback_file.read_bytes())) == 3 + stats.frames


def test_the_stop_signal_ends_a_wait_at_once_and_stays_set() -> None:
    stop = alsa._StopSignal()
    assert not stop.stopped
    assert stop.wait(0.01) is False  # nobody stopped: the turn's sleep just ends
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(stop.wait(60.0)))
    waiter.start()
    time.sleep(0.05)
    stop.set()
    waiter.join(10.0)  # a wait that ignored set() would still sleep for a minute
    assert not waiter.is_alive() and woke == [True]
    stop.set()  # twice is harmless
    assert stop.stopped
    assert stop.wait(60.0) is True and stop.wait(60.0) is True  # every later wait: at once


def test_a_stopped_stream_is_not_left_sleeping_through_its_turn(
    alsa_files: FilePluginAlsa, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Frames of a second: stop() lands while the thread sleeps towards its next turn,
    # and gives up on it after half of that, unless the stop woke it.
    monkeypatch.setattr(alsa, "_JOIN_TIMEOUT_S", 0.5)
    sink = AlsaPlayback(alsa_files.playback_device, RATE, frame_ms=1000, prefill_frames=0)
    sink.start()
    wait_for(lambda: sink.stats().frames >= 1)
    sink.stop()
    assert not sink.running
    assert sink.stats().frames == 1


def test_playback_queue_is_bounded_and_drops_the_oldest() -> None:
    sink = AlsaPlayback("phone_out", RATE, queue_size=3)
    results = [sink.write(f) for f in numbered_frames(5)]
    assert results == [True, True, True, False, False]
    assert sink.queued == 3 and sink.stats().dropped == 2
    assert list(sink._queue) == numbered_frames(5)[2:]


def test_playback_rejects_a_frame_of_the_wrong_size() -> None:
    sink = AlsaPlayback("phone_out", RATE)
    with pytest.raises(AudioError, match="639 bytes, expected 640"):
        sink.write(bytes(639))
    assert sink.queued == 0


# --- devices that cannot be used -----------------------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "playback"])
def test_a_bad_device_raises_a_clear_error(alsa_files: FilePluginAlsa, kind: str) -> None:
    async def main() -> None:
        stream: AlsaCapture | AlsaPlayback
        if kind == "capture":
            stream = AlsaCapture("no_such_pcm", RATE, loop=asyncio.get_running_loop())
        else:
            stream = AlsaPlayback("no_such_pcm", RATE)
        with pytest.raises(AudioDeviceError) as caught:
            stream.start()
        assert caught.value.device == "no_such_pcm"
        assert "no_such_pcm" in str(caught.value)
        assert caught.value.reason == "No such file or directory"
        assert not stream.running
        stream.stop()  # harmless after a failed start

    asyncio.run(main())


# --- xruns and device errors (a fake PCM: xruns cannot happen on "null") --------------------


class FakePcm:
    """Behaves like pyalsaaudio 0.11's PCM for the calls the threads make."""

    def __init__(self, script: dict[int, Any], rate: int = RATE) -> None:
        self.script = script  # call number -> what to do instead of succeeding
        self.calls = 0
        self.rate = rate
        self.written: list[bytes] = []
        self.closed = False
        self.infos = 0  # info(): pyalsaaudio 0.11's leaks memory at each call

    def info(self) -> dict[str, Any]:
        self.infos += 1
        return {"rate": self.rate, "channels": 1, "format_name": "S16_LE"}

    def _scripted(self) -> Any:
        self.calls += 1
        action = self.script.get(self.calls)
        if isinstance(action, Exception):
            raise action
        return action

    def read(self) -> tuple[int, bytes]:
        action = self._scripted()
        if action == "xrun":
            return -32, b""  # -EPIPE, as pyalsaaudio reports an overrun
        return FMT.samples_per_frame, struct.pack("<h", self.calls) * FMT.samples_per_frame

    def write(self, data: bytes) -> int:
        action = self._scripted()
        if action == "epipe":
            return -32  # pyalsaaudio 0.11: an underrun, the PCM re-prepared, nothing written
        if action == "full":
            return 0  # non-blocking and no room (-EAGAIN)
        self.written.append(bytes(data))
        return len(data) // 2

    def close(self) -> None:
        self.closed = True


class FakeCapture(AlsaCapture):
    pcm: FakePcm

    def _open_device(self) -> Any:
        return self.pcm


class FakePlayback(AlsaPlayback):
    pcm: FakePcm

    def _open_device(self) -> Any:
        return self.pcm


def test_capture_recovers_overruns_and_logs_once_per_burst(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="riptphone.hw.alsa")

    async def main() -> tuple[list[bytes], FakeCapture]:
        cap = FakeCapture("fake", RATE, loop=asyncio.get_running_loop(), queue_size=50)
        cap.pcm = FakePcm({3: "xrun", 4: "xrun", 5: "xrun"})
        cap.start()
        got = [await asyncio.wait_for(cap.frames.get(), 5) for _ in range(6)]
        cap.stop()
        return got, cap

    got, cap = asyncio.run(main())
    # Reads 3..5 overran; the frames from reads 1, 2, 6, 7, 8, 9 arrive in order.
    assert [struct.unpack_from("<h", f)[0] for f in got] == [1, 2, 6, 7, 8, 9]
    assert cap.stats().xruns == 3
    assert [r.getMessage() for r in caplog.records if "xrun" in r.getMessage()] == [
        "audio xrun device=fake direction=capture total=1 (recovering)"
    ]
    assert cap.pcm.closed


def test_playback_rewrites_the_frame_after_an_underrun() -> None:
    sink = FakePlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({2: alsaaudio.ALSAAudioError("Broken pipe [fake]")})
    frames = numbered_frames(4)
    for frame in frames:
        sink.write(frame)
    sink.start()
    wait_for(lambda: sink.stats().frames >= 4)
    sink.stop()
    assert sink.pcm.written[:4] == frames  # the frame whose write hit the xrun is not lost
    assert sink.stats().xruns == 1
    assert sink.pcm.closed


def test_playback_rewrites_the_frame_after_an_underrun_reported_as_epipe() -> None:
    # pyalsaaudio 0.11 returns -EPIPE from write() instead of raising "Broken pipe".
    sink = FakePlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({2: "epipe"})
    frames = numbered_frames(4)
    for frame in frames:
        sink.write(frame)
    sink.start()
    wait_for(lambda: sink.stats().frames >= 4)
    sink.stop()
    assert sink.pcm.written[:4] == frames
    assert sink.stats().xruns == 1


class VanishingPlayback(FakePlayback):
    """A USB card pulled out: opening fails while ``gone`` is set."""

    gone = False

    def _open_device(self) -> Any:
        if self.gone:
            raise AudioDeviceError(self.device, "No such device")
        return super()._open_device()


def test_a_vanished_device_is_one_line_retried_every_second_and_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alsa, "REOPEN_EVERY_S", 0.1)
    caplog.set_level(logging.INFO, logger="riptphone.hw.alsa")
    sink = VanishingPlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({3: alsaaudio.ALSAAudioError("No such device [fake]")})
    sink.start()
    sink.gone = True  # the error at write 3 is the card going away
    wait_for(lambda: sink.stats().error is not None)
    assert sink.stats().error == "No such device"
    assert sink.running  # the thread waits for the card, the call goes on
    for frame in numbered_frames(3):
        sink.write(frame)
    wait_for(lambda: sink.queued == 0)  # frames due meanwhile are dropped, not played late
    assert len(sink.pcm.written) == 2  # nothing reached the missing card
    sink.gone = False  # plugged in again
    wait_for(lambda: sink.stats().recoveries == 1)
    wait_for(lambda: len(sink.pcm.written) >= 4)
    sink.stop()
    assert sink.stats().error is None
    messages = [
        r.getMessage()
        for r in caplog.records
        if "fail" in r.getMessage() or "recovered" in r.getMessage()
    ]
    assert (
        messages[0]
        == "audio playback failed device=fake reason=No such device (retrying every 0.1 s)"
    )
    assert messages[1].startswith("audio playback recovered device=fake after ")
    assert len(messages) == 2


def test_a_vanished_microphone_delivers_silence_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alsa, "REOPEN_EVERY_S", 0.1)

    class VanishingCapture(FakeCapture):
        def _open_device(self) -> Any:
            if self.pcm.closed:
                raise AudioDeviceError(self.device, "No such device")
            return self.pcm

    async def main() -> list[bytes]:
        cap = VanishingCapture("fake", RATE, loop=asyncio.get_running_loop(), queue_size=50)
        cap.pcm = FakePcm({2: alsaaudio.ALSAAudioError("No such device [fake]")})
        cap.start()
        got = [await asyncio.wait_for(cap.frames.get(), 5) for _ in range(5)]
        assert cap.stats().error == "No such device"
        cap.stop()
        return got

    got = asyncio.run(main())
    assert struct.unpack_from("<h", got[0])[0] == 1
    assert all(frame == FMT.silence() for frame in got[1:])


def test_a_device_at_the_wrong_rate_is_refused_and_closed() -> None:
    # alsa-lib gives a hw: device its nearest rate instead of failing.
    sink = FakePlayback("hw:1,0", RATE)
    sink.pcm = FakePcm({}, rate=44100)
    with pytest.raises(AudioDeviceError, match=r"44100 Hz.*plughw") as caught:
        sink.start()
    assert caught.value.device == "hw:1,0"
    assert sink.pcm.closed and not sink.running


def test_the_device_is_checked_once_not_at_every_calls_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pyalsaaudio 0.11's PCM.info() leaks ~0.9 KB a call: a soak of 1,000 calls grew."""
    monkeypatch.setattr(alsa, "_checked", set(), raising=False)
    monkeypatch.setattr(alsa, "REOPEN_EVERY_S", 0.05)
    pcm = FakePcm({})
    for _ in range(5):  # five calls' playback
        sink = FakePlayback("counted", RATE, prefill_frames=0)
        sink.pcm = pcm
        sink.start()
        sink.stop()
    assert pcm.infos == 1

    async def capture_once() -> None:  # the other direction is checked on its own
        capture = FakeCapture("counted", RATE, loop=asyncio.get_running_loop())
        capture.pcm = pcm
        capture.start()
        capture.stop()

    asyncio.run(capture_once())
    assert pcm.infos == 2
    # The card fails mid-call: what comes back under its name is checked again.
    sink = FakePlayback("counted", RATE, prefill_frames=0)
    sink.pcm = FakePcm({1: alsaaudio.ALSAAudioError("No such device [counted]")})
    sink.start()
    wait_for(lambda: sink.stats().recoveries == 1)
    sink.stop()
    assert sink.pcm.infos == 1  # not at the start (checked before): at the reopen
    # Missing at a call's open (pulled between calls): checked again when back.
    missing = VanishingPlayback("counted", RATE, prefill_frames=0)
    missing.gone = True
    with pytest.raises(AudioDeviceError):
        missing.start()
    missing.gone = False
    missing.pcm = FakePcm({}, rate=44100)  # another card, at another rate
    with pytest.raises(AudioDeviceError, match="44100 Hz"):
        missing.start()


def test_the_alsa_classes_are_audio_sources_and_sinks() -> None:
    async def main() -> None:
        source: AudioSource = AlsaCapture("phone_in", RATE, loop=asyncio.get_running_loop())
        sink: AudioSink = AlsaPlayback("phone_out", RATE)
        assert source.format == sink.format == FMT

    asyncio.run(main())


# --- a playback driven by its capture: one thread for a call's audio ----------------------


def test_a_capture_drives_its_playback_on_its_own_thread_one_turn_per_frame(
    alsa_files: FilePluginAlsa,
) -> None:
    source = alsa_files.capture_in.read_bytes()
    frames = numbered_frames(30)

    async def main() -> tuple[list[bytes], set[str], AlsaCapture, AlsaPlayback]:
        loop = asyncio.get_running_loop()
        sink = AlsaPlayback(alsa_files.playback_device, RATE, queue_size=50, filler=lambda: FILL)
        got: list[bytes] = []
        done = asyncio.Event()

        def on_frame(frame: bytes) -> None:
            got.append(frame)
            if len(got) == 40:
                done.set()

        cap = AlsaCapture(
            alsa_files.capture_device, RATE, loop=loop, on_frame=on_frame, drives=sink
        )
        with pytest.raises(AudioError, match="driven before its capture"):
            cap.start()
        for frame in frames:
            sink.write(frame)
        sink.start(driven=True)
        cap.start()
        try:
            await asyncio.wait_for(done.wait(), 5)
            names = {thread.name for thread in threading.enumerate()}
        finally:
            cap.stop()
            sink.stop()
        return got, names, cap, sink

    got, names, cap, sink = asyncio.run(main())
    assert b"".join(got) == source[: 40 * BPF]
    # The capture's thread and the playback's standby, no playback thread of its own.
    assert {name for name in names if name.startswith("alsa-")} == {
        f"alsa-capture-{alsa_files.capture_device}",
        f"alsa-standby-{alsa_files.playback_device}",
    }
    out = split(alsa_files.playback_file.read_bytes())
    prefill = 1  # periods - 2, at the first turn: a card then holds periods - 1 frames
    assert out[:prefill] == [FILL] * prefill
    assert out[prefill : prefill + 30] == frames
    played = sink.stats()
    assert len(out) == prefill + played.frames
    # One turn per captured frame (the capture may be one frame past its last post).
    assert cap.stats().frames - 1 <= played.frames <= cap.stats().frames
    assert sink.standby_turns == 0
    assert (played.dropped, played.xruns, played.error) == (0, 0, None)
    assert not sink.running


def test_a_driven_playback_plays_alone_while_its_capture_is_stuck_then_hands_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(alsa, "STANDBY_CHECK_S", 0.05)
    sink = FakePlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({})
    frames = numbered_frames(10)
    for frame in frames:
        sink.write(frame)
    sink.start(driven=True)
    try:
        # Nobody drives it (a microphone whose reads block): the standby plays on time.
        wait_for(lambda: sink.standby_turns >= 10)
        assert sink.pcm.written[:10] == frames
        # The capture's turns come back: the standby stands down.
        stop_driving = threading.Event()

        def drive() -> None:
            while not stop_driving.wait(0.02):
                sink.driven_turn()

        driver = threading.Thread(target=drive)
        driver.start()
        try:
            time.sleep(0.2)
            alone = sink.standby_turns
            time.sleep(0.3)
            assert sink.standby_turns == alone  # no turn of its own while driven
        finally:
            stop_driving.set()
            driver.join()
    finally:
        sink.stop()
    assert not sink.running and sink.pcm.closed


def test_a_driven_playback_drops_a_frame_the_card_has_no_room_for() -> None:
    sink = FakePlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({2: "full", 3: "epipe"})
    frames = numbered_frames(4)
    for frame in frames:
        sink.write(frame)
    sink.start(driven=True)
    for _ in range(4):
        sink.driven_turn()
    sink.stop()
    # Frame 2 found the buffer full (a card slower than the microphone): dropped.
    # Frame 3 underran (-EPIPE) and was written again.
    assert sink.pcm.written == [frames[0], frames[2], frames[3]]
    stats = sink.stats()
    assert (stats.frames, stats.dropped, stats.xruns) == (4, 1, 1)
    sink.driven_turn()  # after stop: nothing
    assert stats.frames == sink.stats().frames


def test_a_driven_playback_that_vanishes_is_retried_and_recovers(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alsa, "REOPEN_EVERY_S", 0.1)
    caplog.set_level(logging.INFO, logger="riptphone.hw.alsa")
    sink = VanishingPlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({3: alsaaudio.ALSAAudioError("No such device [fake]")})
    sink.start(driven=True)
    sink.gone = True
    for _ in range(3):
        sink.driven_turn()
    assert sink.stats().error == "No such device"
    for frame in numbered_frames(3):
        sink.write(frame)
    sink.driven_turn()
    assert sink.queued == 2  # the frame due at a turn without the card is dropped
    sink.gone = False  # plugged in again
    sink.pcm.closed = False
    time.sleep(0.12)
    sink.driven_turn()  # the retry is due: the card is opened again
    assert sink.stats().recoveries == 1 and sink.stats().error is None
    sink.driven_turn()
    sink.stop()
    assert len(sink.pcm.written) == 3  # two turns before the card went, one after it came back
    messages = [
        r.getMessage()
        for r in caplog.records
        if "fail" in r.getMessage() or "recovered" in r.getMessage()
    ]
    assert messages[0] == (
        "audio playback failed device=fake reason=No such device (retrying every 0.1 s)"
    )
    assert messages[1].startswith("audio playback recovered device=fake after ")
    assert len(messages) == 2


def test_a_driven_playback_primes_the_card_at_its_first_turn() -> None:
    # Four periods, as a call's earpiece: two frames of filler ahead of the first
    # turn's frame, so that the card holds three after each write.
    sink = FakePlayback("fake", RATE, periods=4, filler=lambda: FILL)
    sink.pcm = FakePcm({})
    frames = numbered_frames(3)
    for frame in frames:
        sink.write(frame)
    sink.start(driven=True)
    assert sink.pcm.written == []  # nothing before the first turn: it would play out
    for _ in range(3):
        sink.driven_turn()
    sink.stop()
    assert sink.pcm.written == [FILL, FILL, *frames]


def test_a_driven_playback_primes_again_after_an_underrun() -> None:
    sink = FakePlayback("fake", RATE, periods=4, filler=lambda: FILL)
    sink.pcm = FakePcm({4: "epipe"})  # the second turn's frame finds the card underrun
    frames = numbered_frames(2)
    for frame in frames:
        sink.write(frame)
    sink.start(driven=True)
    sink.driven_turn()
    sink.driven_turn()
    sink.stop()
    assert sink.pcm.written == [FILL, FILL, frames[0], FILL, FILL, frames[1]]
    assert sink.stats().xruns == 1


def test_a_failed_driven_start_leaves_the_playback_able_to_play_on_its_own() -> None:
    sink = VanishingPlayback("fake", RATE, prefill_frames=0)
    sink.pcm = FakePcm({})
    sink.gone = True
    with pytest.raises(AudioDeviceError):
        sink.start(driven=True)
    assert not sink.driven and sink._mode == alsaaudio.PCM_NORMAL  # a blocking PCM again
    sink.gone = False
    frames = numbered_frames(3)
    for frame in frames:
        sink.write(frame)
    sink.start()  # on its own thread, which paces by blocking writes on a card
    wait_for(lambda: sink.stats().frames >= 3)
    sink.stop()
    assert sink.pcm.written[:3] == frames
