"""Debouncing and long presses (sans-IO), with a fake clock and bouncing contacts."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riptphone.hw.debounce import Debouncer, Press, PressDetector

# (time s, level) samples every 1 ms: a contact that closes with 12 ms of chatter,
# stays closed 300 ms, and opens with 9 ms of chatter.
CHATTER_CLOSE = [(0.000, True), (0.002, False), (0.003, True), (0.007, False), (0.012, True)]
CHATTER_OPEN = [(0.300, False), (0.301, True), (0.305, False), (0.306, True), (0.309, False)]


def sampled(edges: list[tuple[float, bool]], start: bool, end: float) -> list[tuple[float, bool]]:
    """Every-millisecond samples of a contact that changes at ``edges``."""
    out = []
    level, i = start, 0
    for ms in range(round(end * 1000) + 1):
        now = ms / 1000
        while i < len(edges) and edges[i][0] <= now + 1e-9:
            level = edges[i][1]
            i += 1
        out.append((now, level))
    return out


def run_debouncer(samples: list[tuple[float, bool]], polls: Sequence[float] = ()) -> list[bool]:
    d = Debouncer(0.02, initial=False)
    out: list[bool] = []
    pending = sorted(polls)
    for now, level in samples:
        while pending and pending[0] <= now:
            changed = d.poll(pending.pop(0))
            if changed is not None:
                out.append(changed)
        changed = d.feed(level, now)
        if changed is not None:
            out.append(changed)
    return out


def run_press(
    samples: list[tuple[float, bool]], polls: Sequence[float] = (), long_press_s: float = 0.8
) -> list[Press]:
    p = PressDetector(0.02, long_press_s)
    out: list[Press] = []
    pending = sorted(polls)
    for now, level in samples:
        while pending and pending[0] <= now:
            out += p.poll(pending.pop(0))
        out += p.feed(level, now)
    return out


def test_a_clean_change_counts_after_the_debounce_time_not_before() -> None:
    d = Debouncer(0.05, initial=False)
    assert d.feed(True, 10.0) is None
    assert d.poll(10.049) is None
    assert d.deadline() == pytest.approx(10.05)
    assert d.poll(10.05) is True
    assert d.stable is True
    assert d.poll(11.0) is None
    assert d.deadline() is None


def test_a_bouncing_contact_gives_one_transition_each_way() -> None:
    samples = sampled(CHATTER_CLOSE + CHATTER_OPEN, False, 0.4)
    assert run_debouncer(samples) == [True, False]


def test_chatter_shorter_than_the_debounce_time_is_ignored() -> None:
    samples = sampled([(0.0, True), (0.01, False), (0.015, True), (0.019, False)], False, 0.2)
    assert run_debouncer(samples) == []


def test_unknown_initial_level_is_reported_once_stable() -> None:
    d = Debouncer(0.05)
    assert d.stable is None
    assert d.feed(False, 0.0) is None
    assert d.feed(True, 0.01) is None  # chatter at start restarts the wait
    assert d.feed(False, 0.02) is None
    assert d.poll(0.069) is None
    assert d.poll(0.07) is False


def test_polls_at_any_sample_boundary_change_nothing() -> None:
    samples = sampled(CHATTER_CLOSE + CHATTER_OPEN, False, 0.4)
    expected = run_debouncer(samples)
    for now, _ in samples:
        for poll in (now, now + 0.0005):
            assert run_debouncer(samples, [poll]) == expected, poll


def test_a_late_sample_does_not_hide_a_change_that_was_already_stable() -> None:
    d = Debouncer(0.02, initial=False)
    d.feed(True, 0.0)
    # The next sample comes 100 ms later and reads open: the 100 ms closed still counted.
    assert d.feed(False, 0.1) is True
    assert d.poll(0.12) is False


def test_a_short_press() -> None:
    samples = sampled([(0.0, True), (0.003, False), (0.005, True), (0.2, False)], False, 0.4)
    assert run_press(samples) == [Press.DOWN, Press.UP]


def test_a_held_press_gives_one_long_press_and_a_long_release() -> None:
    samples = sampled([*CHATTER_CLOSE, (1.5, False), (1.502, True), (1.504, False)], False, 2.0)
    assert run_press(samples) == [Press.DOWN, Press.LONG, Press.LONG_UP]


def test_the_long_press_is_timed_from_the_first_contact() -> None:
    p = PressDetector(0.02, 0.8)
    assert p.feed(True, 0.0) == []
    assert p.poll(0.02) == [Press.DOWN]
    assert p.deadline() == pytest.approx(0.8)
    assert p.poll(0.799) == []
    assert p.poll(0.8) == [Press.LONG]
    assert p.poll(5.0) == []  # once per press


def test_a_release_just_before_the_long_press_time_stays_short_even_if_sampled_late() -> None:
    p = PressDetector(0.02, 0.8)
    out = p.feed(True, 0.0) + p.poll(0.05) + p.feed(False, 0.79)
    # No sample or poll between 0.79 and 1.0: the hold ended at 0.79 all the same.
    out += p.poll(1.0)
    assert out == [Press.DOWN, Press.UP]


def test_a_release_after_the_long_press_time_is_long_even_if_sampled_late() -> None:
    p = PressDetector(0.02, 0.8)
    out = p.feed(True, 0.0) + p.feed(True, 0.05) + p.feed(False, 0.9) + p.poll(1.0)
    assert out == [Press.DOWN, Press.LONG, Press.LONG_UP]


def test_press_events_do_not_depend_on_where_polls_fall() -> None:
    edges = [*CHATTER_CLOSE, (0.81, False), (0.812, True), (0.9, False), (1.0, True), (1.1, False)]
    samples = sampled(edges, False, 1.2)
    expected = run_press(samples)
    assert expected == [Press.DOWN, Press.LONG, Press.LONG_UP, Press.DOWN, Press.UP]
    for now, _ in samples:
        assert run_press(samples, [now + 0.0005]) == expected, now


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 60), min_size=1, max_size=40),
    start=st.booleans(),
    polls=st.lists(st.integers(0, 1500), max_size=10),
    stride=st.integers(1, 50),
)
def test_any_chatter_and_polls_give_the_same_events(
    gaps: list[int], start: bool, polls: list[int], stride: int
) -> None:
    edges, t, level = [], 0, start
    for gap in gaps:
        t += gap
        level = not level
        edges.append((t / 1000, level))
    every_ms = sampled(edges, start, (t + 1000) / 1000)
    samples = every_ms[::stride]
    poll_times = [ms / 1000 + 0.0003 for ms in polls]
    expected = run_press(samples, long_press_s=0.1)
    assert run_press(samples, poll_times, long_press_s=0.1) == expected
    # Downs and ups alternate, each long press sits inside a press.
    state = "up"
    for press in expected:
        if press is Press.DOWN:
            assert state == "up"
            state = "down"
        elif press is Press.LONG:
            assert state == "down"
            state = "long"
        elif press is Press.UP:
            assert state == "down"
            state = "up"
        else:
            assert state == "long"
            state = "up"


def test_bad_times_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Debouncer(-0.01)
    with pytest.raises(ValueError, match="must exceed"):
        PressDetector(0.05, 0.05)


def test_debounce_and_events_are_sans_io() -> None:
    import ast
    from pathlib import Path

    import riptphone.hw.debounce
    import riptphone.hw.events

    forbidden = {"asyncio", "socket", "threading", "time", "gpiozero", "luma", "alsaaudio"}
    for module in (riptphone.hw.debounce, riptphone.hw.events):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        roots = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert roots & forbidden == set(), module.__name__
