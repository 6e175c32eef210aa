"""The loss hint for Opus's in-band FEC (ript.media.loss_hint): rises at once, falls slowly."""

from __future__ import annotations

from ript.media.loss_hint import MAX_HINT_PCT, LossHint


def _windows(hint: LossHint, windows: list[tuple[int, int]]) -> list[int]:
    """Feed (sent, resent) per window; the hint after each."""
    sent = resent = 0
    out = []
    for new_sent, new_resent in windows:
        sent, resent = sent + new_sent, resent + new_resent
        hint.update(sent, resent)
        out.append(hint.pct)
    return out


def test_a_clean_path_expects_no_loss() -> None:
    hint = LossHint()
    assert _windows(hint, [(50, 0)] * 5) == [0] * 5
    assert hint.update(250, 0) is None  # no window: no change to report


def test_loss_raises_the_hint_in_the_window_it_shows_then_it_falls_slowly() -> None:
    hint = LossHint()
    hints = _windows(hint, [(50, 0), (50, 5), *[(50, 0)] * 20])
    assert hints[:2] == [0, 10]  # 5 of 50 re-sent: 10 % at once
    falling = hints[2:]
    assert falling == sorted(falling, reverse=True)  # never back up without loss
    assert falling[0] >= 7  # a quarter of the way down per window
    assert 0 in falling[5:15]  # off again within about ten clean seconds
    assert falling[-1] == 0


def test_update_reports_only_changes() -> None:
    hint = LossHint()
    assert hint.update(50, 0) is None
    assert hint.update(100, 2) == 4
    assert hint.update(150, 4) is None  # 4 % again


def test_the_hint_is_capped_and_a_window_without_sending_changes_nothing() -> None:
    hint = LossHint()
    assert hint.update(50, 150) == MAX_HINT_PCT  # a blip's backlog re-sent at once
    assert hint.update(50, 150) is None  # nothing sent (held byways): no window
    assert hint.pct == MAX_HINT_PCT


def test_a_trickle_of_loss_under_half_a_percent_is_no_loss() -> None:
    hint = LossHint()
    assert _windows(hint, [(1000, 4), (1000, 4), (1000, 4), (1000, 6)]) == [0, 0, 0, 1]


def test_a_sparse_window_goes_on_until_it_holds_enough_chunks() -> None:
    # Opus DTX in silence: one chunk per ~400 ms, two or three a second.  One of them lost
    # is no 33 % loss rate: the windows run on until 20 chunks went out, so the hint says
    # 1 in 20 (5 %), not the 20 % cap that would keep FEC on for a dozen seconds.
    hint = LossHint()
    hints = _windows(hint, [(3, 0), (2, 1), *[(3, 0), (2, 0)] * 4])
    assert max(hints) == 5, hints
    assert hints[:5] == [0] * 5  # no window closed before 20 chunks
