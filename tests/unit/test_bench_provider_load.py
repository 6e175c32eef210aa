"""The provider load benchmark's pure parts (tests/bench/bench_provider_load.py).

The benchmark runs on demand; these check in milliseconds that the provider
configuration it writes is one the provider accepts, that its slip verdict
says what docs/performance.md says it does, and that the calls are shared out
among the workers without losing one.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bench.bench_provider_load import Window, idle_workers, parse, pct, provider_toml, split
from riptprovider.config import parse_config


def window(late: list[float], *, lost: int = 0, alive: int = 1, cpu: float = 0.1) -> Window:
    return Window(
        late=late,
        rtt=late,
        send_late=[0.5] * len(late),
        lost=lost,
        alive=alive,
        transports=["webtransport"],
        provider_cpu=0.2,
        broker_cpu=None,
        worker_cpu=[cpu],
    )


def test_the_provider_accepts_the_configuration_with_push(tmp_path: Path) -> None:
    text = provider_toml(False, call_accounts=2, idle_accounts=3)
    settings = parse_config(tomllib.loads(text), tmp_path / "provider.toml")
    assert len(settings.accounts) == 5
    assert settings.max_handlers_per_account == 10000
    assert settings.webtransport is False
    assert settings.push is not None


def test_no_push_section_without_idle_phones(tmp_path: Path) -> None:
    settings = parse_config(tomllib.loads(provider_toml(True, 1, 0)), tmp_path / "p.toml")
    assert settings.push is None and settings.webtransport is True


def test_a_window_slips_on_p99_lateness_loss_or_an_ended_call() -> None:
    on_time = [2.0] * 99 + [19.0]
    assert window(on_time).slipped(20.0, 1.0, calls=1) == []
    # 2 of 100 chunks late: the p99 is a late one.
    late = [2.0] * 98 + [25.0, 30.0]
    assert window(late).slipped(20.0, 1.0, calls=1) == ["p99 lateness 25.0 ms > 20"]
    lossy = window([2.0] * 98, lost=2)
    assert lossy.loss_pct == pytest.approx(2.0)
    assert lossy.slipped(20.0, 1.0, calls=1) == ["loss 2.00 % > 1"]
    assert window(on_time, alive=3).slipped(20.0, 1.0, calls=4) == ["1 calls ended"]


def test_the_generator_is_flagged_when_it_is_busy_or_late() -> None:
    assert window([1.0]).generator_flags() == []
    assert window([1.0], cpu=0.9).generator_flags() == ["worker 0 at 90%"]
    late_sender = window([1.0] * 100)
    late_sender.send_late = [0.5] * 98 + [8.0, 9.0]
    assert late_sender.generator_flags() == ["send lateness p99 8.0 ms"]


def test_nearest_rank_percentiles() -> None:
    assert pct([], 0.99) is None
    assert pct([3.0, 1.0, 2.0], 0.5) == 2.0
    assert pct(list(range(1, 101)), 0.99) == 99


def test_calls_are_shared_out_among_workers_without_losing_one() -> None:
    assert split(7, 2) == [4, 3]
    assert split(1, 3) == [1, 0, 0]
    assert all(sum(split(n, w)) == n for n in range(50) for w in range(1, 5))


def test_options() -> None:
    args = parse(["--steps", "1,4", "--idle", "10", "--transport", "byways"])
    assert args.steps == [1, 4] and args.idle == [10] and args.transports == ("byways",)
    assert parse([]).transports == ("webtransport", "byways")
    with pytest.raises(SystemExit):
        parse(["--steps", "1,x"])
    with pytest.raises(SystemExit):
        parse(["--steps", "0"])


def test_idle_phones_get_enough_workers_for_pahos_select() -> None:
    assert idle_workers(500, 2) == 2
    assert idle_workers(1450, 4) == 5  # 4 workers failed at 1,348 (337 each)
    assert idle_workers(2000, 2) * 337 > 2000
