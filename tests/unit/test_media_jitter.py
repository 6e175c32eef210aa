"""The adaptive jitter buffer (ript.media.jitter): order, loss, adaptation, bursts, bounds."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ript.media.jitter import Frame, Gap, JitterBuffer, JitterError

TICK = 0.02


def simulate(
    jb: JitterBuffer, arrivals: list[tuple[float, int]], until: float, base_seq: int = 0
) -> list[Frame | Gap]:
    """Push (arrival time, seq) chunks and pop every 20 ms until ``until``; all pops returned."""
    out: list[Frame | Gap] = []
    pending = sorted(arrivals)
    i = 0
    tick = 0
    while tick * TICK < until:
        now = tick * TICK
        while i < len(pending) and pending[i][0] <= now:
            seq = pending[i][1]
            jb.push(base_seq + seq, seq * 20, seq.to_bytes(4, "big"), pending[i][0])
            i += 1
        out.append(jb.pop(now))
        tick += 1
    return out


def frames_of(out: list[Frame | Gap]) -> list[int]:
    return [x.seq for x in out if isinstance(x, Frame)]


def test_steady_stream_plays_every_frame_in_order_after_one_frame_of_delay() -> None:
    jb = JitterBuffer()
    out = simulate(jb, [(i * TICK + 0.005, i) for i in range(100)], 2.1)
    assert frames_of(out) == list(range(100))
    assert not any(isinstance(x, Gap) and x.seq is not None for x in out)
    assert out[0] == Gap(None)  # nothing due before the first chunk
    assert isinstance(out[1], Frame) and out[1].payload == (0).to_bytes(4, "big")
    stats = jb.stats()
    assert (stats.received, stats.lost, stats.late, stats.discarded) == (100, 0, 0, 0)
    assert stats.target_ms == 20


def test_reordered_chunks_come_out_in_order() -> None:
    jb = JitterBuffer(min_delay_ms=60)
    arrivals = [(i * TICK + (0.03 if i % 5 == 0 else 0.0), i) for i in range(50)]
    out = simulate(jb, arrivals, 1.3)
    assert frames_of(out) == list(range(50))


def test_duplicates_are_counted_and_played_once() -> None:
    jb = JitterBuffer()
    assert jb.push(7, 140, b"a", 0.0)
    assert not jb.push(7, 140, b"b", 0.001)
    frame = jb.pop(0.02)
    assert frame == Frame(7, 140, b"a")
    assert not jb.push(7, 140, b"a", 0.03)  # after its turn: late
    stats = jb.stats()
    assert (stats.received, stats.duplicates, stats.late) == (1, 1, 1)


def test_a_lost_chunk_is_a_gap_carrying_the_next_one_for_fec() -> None:
    jb = JitterBuffer(min_delay_ms=40)
    out = simulate(jb, [(i * TICK, i) for i in range(10) if i != 4], 0.6)
    gaps = [x for x in out if isinstance(x, Gap) and x.seq is not None]
    assert gaps == [Gap(4, Frame(5, 100, (5).to_bytes(4, "big")))]
    assert frames_of(out) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert jb.stats().lost == 1
    # After the last chunk the buffer stretches (concealment) for a while, then idles.
    assert out[-1] == Gap(None)
    assert Gap(None, None, stretch=True) in out[-10:]


def test_a_chunk_after_its_turn_is_late() -> None:
    jb = JitterBuffer()
    arrivals = [(i * TICK, i) for i in range(10) if i != 3] + [(0.2, 3)]
    out = simulate(jb, arrivals, 0.3)
    assert 3 not in frames_of(out)
    assert jb.stats().late == 1


def test_target_delay_follows_jitter_within_bounds() -> None:
    rng = random.Random(5)
    calm = JitterBuffer()
    simulate(calm, [(i * TICK + rng.uniform(0, 0.002), i) for i in range(200)], 4.1)
    assert calm.stats().target_ms == 20
    shaky = JitterBuffer()
    out = simulate(shaky, [(i * TICK + rng.uniform(0, 0.06), i) for i in range(300)], 6.2)
    stats = shaky.stats()
    assert 40 <= stats.target_ms <= 200
    assert stats.jitter_ms > 10
    # Once adapted, almost nothing is lost to lateness.
    late_frames = sum(1 for x in out[150:] if isinstance(x, Gap) and x.seq is not None)
    assert late_frames <= 5
    wild = JitterBuffer()
    simulate(wild, [(i * TICK + rng.uniform(0, 1.0), i) for i in range(300)], 7.0)
    assert wild.stats().target_ms == 200


def test_a_burst_after_a_5s_migration_is_drained_and_the_delay_comes_back() -> None:
    jb = JitterBuffer()
    # 2 s of steady media, then the path is down for 5 s: the sender buffers 250 chunks
    # and delivers them all at once at t=7 s, then carries on steadily.
    arrivals = [(i * TICK + 0.005, i) for i in range(100)]
    arrivals += [(7.0, i) for i in range(100, 350)]
    arrivals += [((i - 350) * TICK + 7.02, i) for i in range(350, 500)]
    out = simulate(jb, arrivals, 10.1)
    during_outage = out[int(2.5 / TICK) : int(7.0 / TICK)]
    assert all(x == Gap(None) for x in during_outage)  # concealment stopped, nothing due
    # 200 ms of concealment after the last chunk (it might only be late), then idle.
    assert out[101:111] == [Gap(None, None, stretch=True)] * 10
    played = frames_of(out)
    assert played == sorted(set(played))
    assert played[-1] == 499  # the stream keeps up: the last chunk is played by the end
    stats = jb.stats()
    assert stats.discarded > 200  # stale audio skipped rather than played 5 s late
    assert stats.delay_ms <= 2 * stats.target_ms + 20
    assert stats.target_ms <= 60


def test_memory_is_bounded_to_capacity() -> None:
    jb = JitterBuffer(capacity_ms=1000)
    for i in range(500):
        jb.push(i, i * 20, b"x", 0.0)
    assert jb.stats().delay_ms == 1000
    assert jb.stats().discarded == 450
    assert jb.pop(1.0) == Frame(450, 9000, b"x") or isinstance(jb.pop(1.0), Frame)
    assert not jb.push(10, 200, b"old", 1.0)  # far behind the newest: dropped at once


def test_a_jump_far_ahead_does_not_walk_the_sequence_space() -> None:
    jb = JitterBuffer()
    jb.push(0, 0, b"a", 0.0)
    assert jb.pop(0.02) == Frame(0, 0, b"a")
    jb.push(2**64 - 1, 2**40, b"z", 0.04)
    got = [jb.pop(0.06 + k * TICK) for k in range(20)]
    frames = [x for x in got if isinstance(x, Frame)]
    assert frames == [Frame(2**64 - 1, 2**40, b"z")]


def test_bad_values_are_refused() -> None:
    jb = JitterBuffer()
    with pytest.raises(JitterError, match="not 64-bit"):
        jb.push(-1, 0, b"", 0.0)
    with pytest.raises(JitterError, match="not 64-bit"):
        jb.push(0, 2**64, b"", 0.0)
    with pytest.raises(JitterError, match="min_delay_ms"):
        JitterBuffer(min_delay_ms=10)


event = st.one_of(
    st.tuples(st.just("push"), st.integers(0, 400), st.integers(0, 3)),
    st.tuples(st.just("pop"), st.just(0), st.integers(0, 3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(event, max_size=300), st.integers(0, 2**64 - 500))
def test_any_arrival_pattern_never_repeats_or_reorders(
    events: list[tuple[str, int, int]], base: int
) -> None:
    jb = JitterBuffer(capacity_ms=2000)
    now = 0.0
    emitted: list[int] = []
    for kind, seq, advance in events:
        now += advance * 0.01
        if kind == "push":
            jb.push(base + seq, seq * 20, b"p", now)
        else:
            got = jb.pop(now)
            if got.seq is not None:
                emitted.append(got.seq)
            if isinstance(got, Gap) and got.next is not None:
                assert got.seq is not None and got.next.seq == got.seq + 1
        stats = jb.stats()
        assert 20 <= stats.target_ms <= 200
        assert 0 <= stats.delay_ms <= 2000 + 2 * 20 * 400
    assert emitted == sorted(set(emitted))


def test_a_small_excess_is_compressed_gently() -> None:
    jb = JitterBuffer()
    # Steady stream, but the path stalls: chunks 20..28 arrive late, together with 29.
    # The buffer stretches while it waits, then holds ~180 ms too much, which it sheds.
    arrivals = [(i * TICK + 0.005, i) for i in range(150) if not 20 <= i < 29]
    arrivals += [(29 * TICK + 0.005, i) for i in range(20, 29)]
    out = simulate(jb, arrivals, 2.9)
    played = frames_of(out)
    stats = jb.stats()
    assert stats.lost == 0 and stats.late == 0
    assert stats.stretched >= 5
    # Frames are dropped one at a time (never a skip), and the excess goes away.
    assert stats.discarded >= 2
    drops = [b - a for a, b in itertools.pairwise(played) if b - a > 1]
    assert drops and all(d == 2 for d in drops)
    assert played == sorted(played)
    assert stats.delay_ms <= stats.target_ms + 20


def test_the_delay_grows_at_once_and_shrinks_a_frame_per_half_second() -> None:
    rng = random.Random(7)
    jb = JitterBuffer(max_delay_ms=120)
    shaky = [(i * TICK + rng.uniform(0, 0.15), i) for i in range(150)]
    calm = [(i * TICK, i) for i in range(150, 500)]
    out = simulate(jb, shaky, 3.0)
    assert jb.stats().target_ms == 120  # grown to the bound, never above it
    targets = []
    tick = 150
    for now_ms in range(3000, 10000, 20):
        now = now_ms / 1000
        while calm and calm[0][0] <= now:
            at, seq = calm.pop(0)
            jb.push(seq, seq * 20, b"x", at)
        out.append(jb.pop(now))
        targets.append(jb.stats().target_ms)
        tick += 1
    # It comes down in steps of one frame, never faster than one per 500 ms.
    steps = [a - b for a, b in itertools.pairwise(targets) if a != b]
    assert steps and set(steps) == {20}
    first_drop = next(i for i, t in enumerate(targets) if t < 120)
    assert first_drop >= 25
    assert targets[-1] == 20  # back to one frame once calm


def talkspurts(jitter: float, seed: int) -> tuple[list[tuple[float, int, int]], int]:
    """Talkspurts of 1 s with 120 ms of sender silence (DTX) between them, jittered:
    (arrival, seq, timestamp_ms); seqs run on through the silences, timestamps jump.
    (Silences of 200 ms and more let the buffer take the stream as paused anyway.)"""
    rng = random.Random(seed)
    arrivals = []
    seq = 0
    tick = 0
    for _ in range(12):
        for _ in range(50):
            arrivals.append((tick * TICK + rng.uniform(0, jitter), seq, tick * 20))
            seq += 1
            tick += 1
        tick += 6
    return sorted(arrivals), tick


def breaks_in_speech(jb: JitterBuffer, arrivals: list[tuple[float, int, int]], ticks: int) -> int:
    """Pops every 20 ms; how often two frames that follow in time were not played in a row."""
    played: list[tuple[int, int]] = []
    i = 0
    for tick in range(ticks + 20):
        now = tick * TICK + 0.01
        while i < len(arrivals) and arrivals[i][0] <= now:
            _, seq, ts = arrivals[i]
            jb.push(seq, 10_000 + ts, b"s", arrivals[i][0])
            i += 1
        got = jb.pop(now)
        if isinstance(got, Frame):
            played.append((tick, got.timestamp_ms))
    assert [ts for _, ts in played] == sorted(ts for _, ts in played)
    return sum(
        1 for (p1, t1), (p2, t2) in itertools.pairwise(played) if t2 - t1 == 20 and p2 != p1 + 1
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_talkspurt_after_the_senders_silence_starts_behind_the_target_delay(seed: int) -> None:
    # The buffer drains in each silence. Without waiting at the talkspurt's first chunk, the
    # first late chunks of every talkspurt were stretched into its speech (9-17 breaks in
    # these 13 s at 40 ms of jitter, seeds 1-8); with the wait, 0-2.
    arrivals, ticks = talkspurts(0.04, seed)
    jb = JitterBuffer()
    assert breaks_in_speech(jb, arrivals, ticks) <= 3
    stats = jb.stats()
    assert stats.lost == 0 and stats.late == 0 and stats.discarded <= 3
    assert stats.received == 600


def test_the_wait_at_a_talkspurt_says_nothing_is_due_and_keeps_the_chunk() -> None:
    jb = JitterBuffer(min_delay_ms=60)
    out = []
    for tick in range(16):
        if tick < 10:
            jb.push(tick, tick * 20, b"a", tick * TICK)
        out.append(jb.pop(tick * TICK + 0.01))
    assert frames_of(out) == list(range(10))
    assert isinstance(out[-1], Gap) and out[-1].stretch  # the sender went quiet
    # The next talkspurt: seq 10, but 300 ms later in media time.
    now = 16 * TICK
    jb.push(10, 500, b"b", now)
    assert jb.pop(now + 0.01) == Gap(None)  # nothing due: the silence is lengthened
    jb.push(11, 520, b"b", now + 0.02)
    assert jb.pop(now + 0.03) == Gap(None)
    jb.push(12, 540, b"b", now + 0.04)
    got = jb.pop(now + 0.05)  # 60 ms buffered: the talkspurt plays, in order
    assert isinstance(got, Frame) and got.seq == 10
    assert [f.seq for f in (jb.pop(now + 0.07), jb.pop(now + 0.09)) if isinstance(f, Frame)] == [
        11,
        12,
    ]


@pytest.mark.parametrize("min_delay_ms", [20, 60])
def test_a_lost_chunk_is_not_taken_for_a_talkspurt(min_delay_ms: int) -> None:
    # Chunks 5 and 6 lost: seq and timestamp skip together, so after the loss is declared
    # the stream plays on at once, with no wait in the middle of speech.
    jb = JitterBuffer(min_delay_ms=min_delay_ms)
    out = simulate(jb, [(i * TICK + 0.005, i) for i in range(40) if i not in (5, 6)], 0.9)
    started = next(i for i, x in enumerate(out) if isinstance(x, Frame))
    ended = max(i for i, x in enumerate(out) if isinstance(x, Frame))
    played = out[started : ended + 1]
    seqs = [x.seq for x in played if x.seq is not None]
    assert seqs == sorted(seqs) and seqs[-1] == 39
    assert [x.seq for x in played if isinstance(x, Gap) and x.seq is not None] == [5, 6]
    # A stretch may wait for 5 and 6 (and a frame be shed after), never a talkspurt's wait.
    assert Gap(None) not in played
    assert jb.stats().lost == 2


def test_the_chunk_after_a_declared_loss_plays_on_at_once() -> None:
    # 5 is lost; 6 and 7 came early, so 5 is declared lost with 60 ms buffered. Then
    # only 40 ms is buffered behind 6, and its timestamp is two frames after 4's: it
    # must still play at its turn (it follows the lost frame), not wait as a talkspurt.
    jb = JitterBuffer(min_delay_ms=60)
    out = []
    for tick in range(5):
        jb.push(tick, tick * 20, b"a", tick * TICK)
        out.append(jb.pop(tick * TICK + 0.01))
    jb.push(6, 120, b"a", 5 * TICK)
    jb.push(7, 140, b"a", 5 * TICK)
    out += [jb.pop(tick * TICK + 0.01) for tick in range(5, 10)]
    kinds = [(type(x).__name__, x.seq) for x in out]
    assert kinds == [("Gap", None), ("Gap", None)] + [("Frame", i) for i in range(5)] + [
        ("Gap", 5),
        ("Frame", 6),
        ("Frame", 7),
    ]


def test_an_event_is_not_taken_for_a_talkspurt() -> None:
    # An RFC 4733 event's timestamp is its press's start, not a jump in media time.
    jb = JitterBuffer()
    jb.push(0, 1000, b"a", 0.0)
    assert isinstance(jb.pop(0.01), Frame)
    assert isinstance(jb.pop(0.03), Gap)
    jb.push(1, 5000, b"e", 0.04, payload_type=101, timed=False)
    got = jb.pop(0.05)
    assert isinstance(got, Frame) and got.seq == 1 and not got.timed


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_loss_costs_one_frame_of_concealment_not_a_wait(seed: int) -> None:
    # An echo's round trip: 6 % loss, two legs of 0-40 ms jitter each. A chunk missing
    # while later ones are here is lost and concealed in its own turn. Waiting for it until
    # the target was buffered behind it (as before) stretched 23-27 frames and shed 8-13
    # real ones in these 30 s; now 13-14 stretches (delay spikes) and at most one shed.
    rng = random.Random(seed)
    arrivals = [
        (i * TICK + rng.uniform(0, 0.04) + rng.uniform(0, 0.04), i)
        for i in range(1500)
        if rng.random() >= 0.06
    ]
    jb = JitterBuffer()
    out = simulate(jb, arrivals, 31.0)
    stats = jb.stats()
    assert stats.lost >= 1500 - len(arrivals) - stats.late
    assert stats.stretched <= 18
    assert stats.discarded <= 3
    assert frames_of(out) == sorted(frames_of(out))


def test_the_target_starts_at_the_initial_delay_and_holds_it_through_silence() -> None:
    jb = JitterBuffer(initial_delay_ms=60)
    assert jb.target_ms == 60
    # 2 s of the sender's silence (nothing says the path is calm), then a calm stream.
    out = simulate(jb, [(2.0 + i * TICK, i) for i in range(150)], 5.2)
    assert out[:100] == [Gap(None)] * 100
    first = next(i for i, x in enumerate(out) if isinstance(x, Frame))
    assert first == 100 + 2  # the first talkspurt waits until 60 ms of it is buffered
    assert frames_of(out) == list(range(150))  # coming down drops no frame of speech
    assert jb.target_ms == 20  # a frame per half second of media
    assert jb.stats().discarded == 0
    assert JitterBuffer(initial_delay_ms=500).target_ms == 200  # within the bounds
    assert JitterBuffer(initial_delay_ms=0).target_ms == 20


def test_an_excess_left_by_a_target_coming_down_drains_in_the_next_silence() -> None:
    # A talkspurt of 1.5 s starts 60 ms behind and stays there while the target comes
    # down to 20 ms (no frame of speech dropped for it); after 120 ms of the sender's
    # silence the next talkspurt plays its first chunk at once, 20 ms behind.
    jb = JitterBuffer(initial_delay_ms=60)
    played_at = {}
    for tick in range(120):
        now = tick * TICK
        if tick < 75:
            jb.push(tick, tick * 20, b"a", now)
        elif tick >= 81:
            jb.push(tick - 6, tick * 20, b"b", now)  # numbers go on, timestamps jumped
        got = jb.pop(now + 0.01)
        if isinstance(got, Frame):
            played_at[got.seq] = tick
    assert played_at[0] == 2 and played_at[74] == 76  # 60 ms behind, all of it
    assert jb.stats().discarded == 0
    assert played_at[75] == 81  # the excess went in the silence
    assert played_at[113] == 119


def test_a_chunk_after_its_turn_does_not_feed_the_jitter_estimate() -> None:
    # A path without jitter; chunk 10 is lost and its re-send arrives 150 ms late, after
    # its turn: it is dropped as late and says nothing of the path (it used to add two
    # big steps to the estimate, this one's and the next chunk's against it).
    jb = JitterBuffer()
    arrivals = [(i * TICK + 0.005, i) for i in range(60) if i != 10]
    arrivals.append((10 * TICK + 0.155, 10))
    simulate(jb, arrivals, 1.3)
    stats = jb.stats()
    assert stats.late == 1 and stats.lost == 1
    assert stats.jitter_ms < 1.0
    assert stats.target_ms == 20
