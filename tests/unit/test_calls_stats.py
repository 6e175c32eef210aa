"""The in-call quality bars from the media counters (riptphone.calls.stats.QualityWindow)."""

from __future__ import annotations

import pytest

from phonefakes import media_stats
from riptphone.calls.stats import QualityWindow


def window(
    received: int, lost_in: int, sent: int, lost_out: int, rtt: float | None = 20.0
) -> QualityWindow:
    return QualityWindow.of(
        media_stats(
            chunks_received=received,
            chunks_lost=lost_in,
            chunks_sent=sent,
            chunks_unacked=lost_out,
            rtt_ms=rtt,
        )
    )


START = window(1000, 0, 1000, 0)


@pytest.mark.parametrize(
    ("lost_in", "lost_out", "bars"),
    [(0, 0, 4), (1, 0, 3), (0, 3, 2), (8, 0, 1), (0, 30, 0), (30, 1, 0)],
)
def test_loss_either_way_costs_bars(lost_in: int, lost_out: int, bars: int) -> None:
    # 100 chunks each way in the window.
    now = window(1100 - lost_in, lost_in, 1100, lost_out)
    assert now.quality_since(START) == bars


def test_long_delay_caps_at_two_bars() -> None:
    assert window(1100, 0, 1100, 0, rtt=600.0).quality_since(START) == 2


def test_nothing_flowing_is_not_a_measure_and_silence_received_is_bad() -> None:
    assert START.quality_since(START) is None
    assert window(1000, 0, 1100, 0).quality_since(START) == 0  # sending, receiving nothing
