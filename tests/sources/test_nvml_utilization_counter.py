"""EngineCounter: the accounting of NVML utilization samples into busy and sampled seconds."""

from __future__ import annotations

import pytest

from exporter.sources.nvml.utilization import EngineCounter

PERIOD_US = 166_667


def _samples(start_us: int, values: list[float]) -> list[tuple[int, float]]:
    return [(start_us + (i + 1) * PERIOD_US, v) for i, v in enumerate(values)]


def test_first_sample_is_only_the_baseline() -> None:
    counter = EngineCounter()
    counter.absorb(_samples(0, [100.0]))
    assert counter.started
    assert counter.busy_seconds == 0.0
    assert counter.sampled_seconds == 0.0


def test_every_sample_counts_once_across_reads() -> None:
    counter = EngineCounter()
    batch = _samples(0, [0.0, 100.0, 100.0, 50.0])
    counter.absorb(batch[:2])
    counter.absorb(batch[1:])  # an overlapping read (same lastSeen answer twice) adds nothing twice
    assert counter.busy_seconds == pytest.approx(2.5 * PERIOD_US / 1e6)
    assert counter.sampled_seconds == pytest.approx(3 * PERIOD_US / 1e6)
    counter.absorb(batch)  # nothing new
    assert counter.sampled_seconds == pytest.approx(3 * PERIOD_US / 1e6)


def test_a_wrapped_buffer_covers_only_the_samples_read() -> None:
    counter = EngineCounter()
    counter.absorb(_samples(0, [50.0, 50.0, 50.0]))  # learns the period
    gap_start = 3 * PERIOD_US + 100 * PERIOD_US  # 100 samples were overwritten unread
    counter.absorb(_samples(gap_start, [100.0, 100.0]))
    # the first sample after the gap covers one period, not the gap
    assert counter.sampled_seconds == pytest.approx(4 * PERIOD_US / 1e6)
    assert counter.busy_seconds == pytest.approx((1.0 + 2.0) * PERIOD_US / 1e6)


def test_percent_is_clamped() -> None:
    counter = EngineCounter()
    counter.absorb(_samples(0, [0.0, 250.0, -5.0]))
    assert counter.busy_seconds == pytest.approx(PERIOD_US / 1e6)
    assert counter.sampled_seconds == pytest.approx(2 * PERIOD_US / 1e6)


def test_timestamp_jitter_counts_in_full() -> None:
    counter = EngineCounter()
    start = 1_700_000_000_000_000
    timestamps = [start + t for t in (0, 166_000, 333_500, 499_900, 667_000)]  # jitter
    counter.absorb([(t, 100.0) for t in timestamps])
    assert counter.sampled_seconds == pytest.approx(0.667)
    assert counter.busy_seconds == pytest.approx(0.667)
