"""tick_counts: the per-second counting gives np.searchsorted's counts exactly."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.tick_counts import count_at_or_before, counts_back, window_bounds


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


@pytest.mark.parametrize(
    "ticks",
    [np.arange(1.0, 400.0), np.arange(1.0, 400.0, 0.5), np.arange(1.0, 20.0), np.array([42.0])],
)
@pytest.mark.parametrize("windows_s", [(10.0, 30.0, 60.0, 15.0, 30.0), (12.5,)])
def test_window_bounds_are_the_searched_windows(ticks: np.ndarray, windows_s: tuple[float, ...]) -> None:
    t = _beat_times(3)[:-2]
    available = np.maximum.accumulate(t + np.random.default_rng(3).uniform(0.0, 2.5, len(t)))
    available[-5:] = np.inf  # the last beats never become known
    for avail in (None, available):
        hi, los = window_bounds(t, ticks, windows_s, avail)
        want_hi = np.searchsorted(t, ticks, side="right")
        if avail is not None:
            want_hi = np.minimum(want_hi, np.searchsorted(avail, ticks, side="right"))
        assert np.array_equal(hi, want_hi)
        assert len(los) == len(windows_s)
        for w, lo in zip(windows_s, los):
            assert np.array_equal(lo, np.minimum(np.searchsorted(t, ticks - w, side="right"), want_hi)), w
