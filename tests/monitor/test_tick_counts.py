"""tick_counts: the per-second counting gives np.searchsorted's counts exactly."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.tick_counts import count_at_or_before, counts_back


def _beat_times(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.uniform(0.3, 1.4, 400))
    t[50:60] = np.round(t[50:60])  # beats exactly on whole seconds count at that tick
    return np.append(np.sort(t), [np.inf, np.inf])  # +inf: never available


@pytest.mark.parametrize("seed", range(3))
def test_count_at_or_before_is_searchsorted(seed: int) -> None:
    t = _beat_times(seed)
    for ticks in (np.arange(1.0, 300.0), np.arange(-20.0, 80.0), np.arange(1.0, 300.0) + 0.5):
        want = np.searchsorted(t, ticks, side="right")
        assert np.array_equal(count_at_or_before(t, ticks), want)


@pytest.mark.parametrize(
    "ticks, back_s",
    [
        (np.arange(1.0, 400.0), (0.0, 10.0, 30.0, 60.0, 15.0)),  # one count, sliced
        (np.arange(1.0, 400.0), (0.0, 12.5)),  # a window of a fraction of a second
        (np.arange(1.0, 400.0, 0.5), (0.0, 10.0)),  # ticks not one second apart
        (np.arange(1.0, 20.0), (0.0, 10.0)),  # a few ticks: searched
        (np.array([7.0]), (0.0, 30.0, 60.0)),  # a live tick
    ],
)
def test_counts_back_is_searchsorted_at_each_shift(ticks: np.ndarray, back_s: tuple[float, ...]) -> None:
    t = _beat_times(7)
    got = counts_back(t, ticks, back_s)
    assert len(got) == len(back_s)
    for b, counts in zip(back_s, got):
        assert np.array_equal(counts, np.searchsorted(t, ticks - b, side="right")), b
