"""Adaptive jitter buffer for received media chunks, keyed by 64-bit sequence number.

Feed it every received chunk with :meth:`JitterBuffer.push` (in any order,
duplicated, late, in bursts) and call :meth:`JitterBuffer.pop` once per frame
interval (20 ms).  ``pop`` returns a :class:`Frame` to decode, or a
:class:`Gap` that says what to play instead: with a ``seq``, that chunk is lost
(conceal it; ``next`` carries the following chunk when it is already here, for
Opus in-band FEC); with ``stretch``, nothing is lost but a chunk is late and the
buffer adds a frame of delay (play one frame of concealment); otherwise nothing
is due (before the first chunk, or after the stream paused): play silence or
comfort noise.

Guarantees, whatever arrives:

* every sequence number is handed out (as a Frame or a Gap) at most once, in
  strictly increasing order; a chunk that arrives after its turn is counted as
  ``late`` and dropped;
* the buffer never holds more than ``capacity_ms`` of media: older chunks are
  dropped (``discarded``);
* the playout delay follows the network: the target is about three times the
  RFC 3550 interarrival jitter estimate, rounded up to whole frames and kept
  within ``[min_delay_ms, max_delay_ms]`` (the phone's ``[audio] jitter_max_ms``);
  it starts at ``initial_delay_ms`` (default: the minimum), grows at once when
  jitter rises and comes down by one frame per ``shrink_every_ms`` (500 ms) of
  media flowing while the estimate stays below it (not in the sender's silences).
  A missing chunk is waited for (stretch) only while nothing after it has arrived
  either (the stream is late, a delay spike); once later chunks are here it is
  taken as lost and concealed in its own turn (Opus FEC from the next), so a loss
  costs one frame of concealment and no delay.  Above target the buffer catches
  up: more than two frames above, it drops one frame in every ``compress_every``
  pops (up to two frames over are left for the next silence of the sender to
  drain, so a target coming down costs no speech); more than ``skip_excess_ms``
  above (the burst that follows a 5 s migration), it skips
  straight to the target.  Dropped frames count as ``discarded``;
* after ``underrun_frames`` missing frames in a row with nothing buffered, the
  stream is taken as paused: concealment stops and playout restarts at the
  next chunk that arrives, after the target delay;
* a talkspurt after the sender's own silence (Opus DTX, or CN: the sequence
  numbers go on but the timestamps jump) starts behind the target delay too:
  the chunk that ends the silence waits (``pop`` says nothing is due) until
  the target's worth of media is buffered or the target has passed.  Its
  predecessor's silence is lengthened, which nobody hears, instead of the
  first jitter of the talkspurt being stretched into its speech; the buffer
  drains in every silence, so without this each talkspurt would rebuild its
  cushion out of concealed speech.

Each chunk is assumed to carry one frame (``frame_ms``, the call's ptime) of
audio; timestamps serve the jitter estimate (``timed=False`` keeps an RFC 4733
event, whose timestamp is its press's start, out of it).  A Frame carries its
payload type, so telephone-event chunks hold their turn rather than leave a gap.
``now`` is in seconds on any monotonic clock.  Pure: no I/O, no clock of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["IDLE", "STRETCH", "Frame", "Gap", "JitterBuffer", "JitterError", "JitterStats"]

SEQ_LIMIT = 1 << 64


class JitterError(ValueError):
    """A value handed to the jitter buffer is out of range (a bug in the caller)."""


class Frame(NamedTuple):
    """A received chunk whose turn has come (a NamedTuple: one is made per chunk, cheaply)."""

    seq: int
    timestamp_ms: int
    payload: bytes
    payload_type: int = 0
    """The chunk's payload type: the session's codec, or a telephone-event or CN chunk."""
    timed: bool = True
    """False for a chunk whose timestamp is not its media time (an RFC 4733 event's)."""


class Gap(NamedTuple):
    """No chunk to play this turn; what the caller plays instead depends on the fields.

    * ``seq`` set: that chunk is lost; conceal it, with FEC from ``next`` when present.
    * ``seq`` None and ``stretch``: nothing is lost, the buffer is adding a frame of delay
      (a chunk is late); play one frame of concealment.
    * ``seq`` None, no ``stretch``: nothing is due (no stream yet, or it paused); play
      silence or comfort noise.
    """

    seq: int | None
    next: Frame | None = None
    stretch: bool = False


IDLE = Gap(None)
STRETCH = Gap(None, None, True)


@dataclass(frozen=True, slots=True)
class JitterStats:
    """Counters since creation, and the current delays in ms.

    ``received`` counts chunks taken into the buffer (not late, not duplicates);
    ``concealed`` counts Gaps that asked for concealment (``lost`` ones and
    ``stretched`` ones); ``discarded`` counts chunks dropped unplayed (stale,
    over capacity, or skipped to catch up).
    """

    received: int
    duplicates: int
    late: int
    lost: int
    concealed: int
    discarded: int
    stretched: int
    delay_ms: int
    target_ms: int
    jitter_ms: float


class JitterBuffer:
    """See the module docstring."""

    __slots__ = (
        "_calm_pops",
        "_capacity",
        "_compress_count",
        "_compress_every",
        "_concealed",
        "_discarded",
        "_duplicates",
        "_first_arrival",
        "_frame_ms",
        "_gaps_in_row",
        "_jitter",
        "_last_emitted",
        "_last_ts",
        "_late",
        "_lost",
        "_max_delay",
        "_max_seq",
        "_min_delay",
        "_next",
        "_packets",
        "_prev_transit",
        "_received",
        "_shrink_pops",
        "_skip_excess",
        "_stretched",
        "_target",
        "_underrun_frames",
    )

    def __init__(
        self,
        frame_ms: int = 20,
        *,
        min_delay_ms: int = 20,
        max_delay_ms: int = 200,
        capacity_ms: int = 5000,
        skip_excess_ms: int = 200,
        compress_every: int = 4,
        underrun_frames: int = 10,
        shrink_every_ms: int = 500,
        initial_delay_ms: int | None = None,
    ) -> None:
        if frame_ms <= 0 or not frame_ms <= min_delay_ms <= max_delay_ms <= capacity_ms:
            raise JitterError(
                "need 0 < frame_ms <= min_delay_ms <= max_delay_ms <= capacity_ms, got "
                f"{frame_ms}, {min_delay_ms}, {max_delay_ms}, {capacity_ms}"
            )
        if skip_excess_ms < frame_ms or compress_every < 1 or underrun_frames < 1:
            raise JitterError("skip_excess_ms, compress_every and underrun_frames must be positive")
        self._frame_ms = frame_ms
        self._min_delay = min_delay_ms
        self._max_delay = max_delay_ms
        self._capacity = capacity_ms // frame_ms
        self._skip_excess = skip_excess_ms
        self._compress_every = compress_every
        self._shrink_pops = max(1, shrink_every_ms // frame_ms)
        self._calm_pops = 0
        # Where the target starts: before any chunk the jitter is unknown, so a phone may
        # start above the minimum and come down as the path proves calm.
        initial = min_delay_ms if initial_delay_ms is None else initial_delay_ms
        initial = initial // frame_ms * frame_ms
        self._target = min(max_delay_ms, max(min_delay_ms, initial))
        self._underrun_frames = underrun_frames
        self._packets: dict[int, Frame] = {}
        self._next: int | None = None  # next seq to play; None while waiting to (re)start
        self._last_emitted = -1
        self._last_ts: int | None = None  # timestamp of the last timed frame handed out
        self._max_seq = -1
        self._first_arrival: float | None = None
        self._prev_transit: float | None = None
        self._jitter = 0.0
        self._gaps_in_row = 0
        self._compress_count = 0
        self._received = self._duplicates = self._late = self._lost = 0
        self._concealed = self._discarded = self._stretched = 0

    # -- input ---------------------------------------------------------------------------------

    def push(
        self,
        seq: int,
        timestamp_ms: int,
        payload: bytes,
        now: float,
        payload_type: int = 0,
        *,
        timed: bool = True,
    ) -> bool:
        """Add a received chunk; False if it was a duplicate, late, or at once dropped as stale.

        ``timed=False``: the chunk's timestamp is not its media time (an RFC 4733 event
        carries its press's start), so it does not feed the jitter estimate.
        """
        if not 0 <= seq < SEQ_LIMIT or not 0 <= timestamp_ms < SEQ_LIMIT:
            raise JitterError(f"sequence number {seq} or timestamp {timestamp_ms} is not 64-bit")
        # Before the estimate: a chunk whose turn has passed (mostly a lost one the sender
        # re-sent, a round trip late) or a second copy of one says more about the re-send
        # than about the path's jitter, and one such step (twice: it would also be the next
        # chunk's reference) would raise the delay of everything after it.
        if seq <= self._last_emitted:
            self._late += 1
            return False
        if seq in self._packets:
            self._duplicates += 1
            return False
        if timed:
            # RFC 3550 section 6.4.1 interarrival jitter, each step clipped to the largest delay
            # we would ever use so that one outage (a migration) cannot blow the estimate up.
            transit = now * 1000.0 - timestamp_ms
            if self._prev_transit is not None:
                step = min(abs(transit - self._prev_transit), float(self._max_delay))
                self._jitter += (step - self._jitter) / 16.0
            self._prev_transit = transit
        if seq <= self._max_seq - self._capacity:
            self._discarded += 1  # further behind the newest chunk than we keep
            return False
        self._received += 1
        if self._first_arrival is None:
            self._first_arrival = now
        # Bounded memory: nothing more than capacity behind the newest chunk.  The buffer
        # holds only seqs in [max_seq - capacity + 1, max_seq], so when the newest seq moves
        # up by a little only the few seqs it uncovers need checking.
        prev_max = self._max_seq
        if seq > prev_max:
            self._max_seq = seq
            low = seq - self._capacity + 1
            if low > 0 and self._packets:
                step = seq - prev_max
                if step <= self._capacity:
                    stale = [s for s in range(max(0, low - step), low) if s in self._packets]
                else:
                    stale = [s for s in self._packets if s < low]
                for old in stale:
                    del self._packets[old]
                self._discarded += len(stale)
        self._packets[seq] = Frame(seq, timestamp_ms, payload, payload_type, timed)
        return True

    # -- output --------------------------------------------------------------------------------

    @property
    def target_ms(self) -> int:
        """The playout delay aimed at now (see :meth:`_adapt`)."""
        return self._target

    def _wanted_ms(self) -> int:
        """~3x the jitter estimate, whole frames, within ``[min_delay_ms, max_delay_ms]``."""
        frames = math.ceil(3.0 * self._jitter / self._frame_ms)
        return min(self._max_delay, max(self._min_delay, frames * self._frame_ms))

    def _adapt(self) -> None:
        """Grow the target at once when jitter rises; shrink it one frame per ``shrink_every_ms``.

        Growing late costs audible gaps; shrinking early costs them again at the next
        burst of jitter, so the delay comes down slowly (a frame every half second by
        default) while the estimate stays below it.
        """
        wanted = self._wanted_ms()
        if wanted >= self._target:
            self._target = wanted
            self._calm_pops = 0
            return
        if not self._packets:
            return  # nothing flowing (the sender's silence): no evidence the path is calm
        self._calm_pops += 1
        if self._calm_pops >= self._shrink_pops:
            self._calm_pops = 0
            self._target -= self._frame_ms

    @property
    def delay_ms(self) -> int:
        """Media buffered ahead of the playout point, in ms."""
        if self._next is None:
            if not self._packets:
                return 0
            return (self._max_seq - min(self._packets) + 1) * self._frame_ms
        return max(0, self._max_seq - self._next + 1) * self._frame_ms

    def _skip_to(self, seq: int) -> None:
        """Move the playout point to ``seq``: buffered chunks before it are discarded, missing
        ones lost; none of them is handed out."""
        assert self._next is not None
        dropped = [s for s in self._packets if s < seq]
        for old in dropped:
            del self._packets[old]
        self._discarded += len(dropped)
        self._lost += seq - self._next - len(dropped)
        self._last_emitted = seq - 1
        self._last_ts = None
        self._next = seq

    def pop(self, now: float) -> Frame | Gap:
        """What to play for the next frame interval."""
        self._adapt()
        if self._next is None:
            if not self._packets:
                return IDLE
            waited = self._first_arrival is not None and (
                (now - self._first_arrival) * 1000.0 >= self.target_ms
            )
            if not waited and self.delay_ms < self.target_ms:
                return IDLE
            self._next = min(self._packets)
            self._gaps_in_row = 0
            self._compress_count = 0
        # Per frame: the target and the delay (playout running: _next is set) without
        # the properties' calls.
        target = self._target
        frame_ms = self._frame_ms
        target_frames = target // frame_ms
        excess_ms = max(0, self._max_seq - self._next + 1) * frame_ms - target
        if excess_ms > self._skip_excess:
            self._skip_to(self._max_seq - target_frames + 1)
        elif excess_ms > 2 * frame_ms:
            self._compress_count += 1
            if self._compress_count >= self._compress_every:
                self._compress_count = 0
                self._skip_to(self._next + 1)
        else:
            self._compress_count = 0
        seq = self._next
        frame = self._packets.pop(seq, None)
        if frame is not None:
            last_ts = self._last_ts
            if (
                self._gaps_in_row
                and last_ts is not None
                and frame.timed
                and frame.timestamp_ms - last_ts > (seq - self._last_emitted) * frame_ms
                and (self._max_seq - seq + 1) * frame_ms < target
            ):
                # The first chunk after the sender's silence, with less than the target
                # buffered: the talkspurt starts behind the target delay (module docstring).
                self._packets[seq] = frame
                self._next = None
                self._first_arrival = now
                self._last_ts = None
                return IDLE
            self._next = seq + 1
            self._last_emitted = seq
            self._last_ts = frame.timestamp_ms if frame.timed else None
            self._gaps_in_row = 0
            return frame
        self._gaps_in_row += 1
        if not self._packets and self._gaps_in_row > self._underrun_frames:
            # The far end has gone quiet (or the path is down): stop concealing and wait for
            # chunks to come back, then restart playout behind the target delay.
            self._next = None
            self._first_arrival = None
            return IDLE
        if self._max_seq < seq:
            # Nothing after it has come either: the stream is late, not this chunk lost.
            # Play one frame of concealment without using up its turn (a frame of delay).
            self._concealed += 1
            self._stretched += 1
            return STRETCH
        self._next = seq + 1
        self._last_emitted = seq
        if self._last_ts is not None:
            # Taken as the frame after the last one, so the next chunk does not look
            # like the start of a talkspurt (its timestamp is a frame further on).
            self._last_ts += frame_ms
        self._lost += 1
        self._concealed += 1
        return Gap(seq, self._packets.get(seq + 1))

    def stats(self) -> JitterStats:
        """A snapshot of the counters and delays."""
        return JitterStats(
            received=self._received,
            duplicates=self._duplicates,
            late=self._late,
            lost=self._lost,
            concealed=self._concealed,
            discarded=self._discarded,
            stretched=self._stretched,
            delay_ms=self.delay_ms,
            target_ms=self.target_ms,
            jitter_ms=self._jitter,
        )
