"""How many of a sorted series of times lie at or before each tick.

Every windowed value of the pipeline starts from such counts: the beats in
(T - W, T] are those counted at T less those counted at T - W. For one tick (live mode)
or scattered ticks this is ``np.searchsorted``; for a batch's run of whole-second ticks
it is cheaper to count per time than to search per tick, with exactly the same result.
"""

from __future__ import annotations

import numpy as np

_MIN_TICKS_TO_COUNT = 64  # fewer ticks than this: searching is as quick


def count_at_or_before(t_s: np.ndarray, tick_t_s: np.ndarray) -> np.ndarray:
    """``np.searchsorted(t_s, tick_t_s, side="right")``: for each tick (s), how many of
    the sorted times ``t_s`` (s; +inf allowed) are at or before it.

    When the ticks are consecutive whole numbers, t <= T holds exactly when
    ceil(t) <= T, so the times are counted per whole second instead (bincount).
    """
    ticks = np.asarray(tick_t_s, dtype=np.float64)
    m = len(ticks)
    if m < _MIN_TICKS_TO_COUNT or not _whole_seconds_in_a_row(ticks):
        return np.searchsorted(t_s, ticks, side="right")
    return _count_per_second(t_s, float(ticks[0]), m)


def _count_per_second(t_s: np.ndarray, first: float, m: int) -> np.ndarray:
    """count_at_or_before at the m whole-second ticks first, first + 1, ... (s)."""
    # Seconds past the first tick at which each time is counted; times after the last
    # tick (or +inf) land in the overflow bin m, times before the first in bin 0.
    late = np.fmin(np.ceil(t_s) - first, m)  # fmin: a NaN is never counted, as in the search
    counts = np.bincount(np.maximum(late, 0).astype(np.int64), minlength=m + 1)
    return np.cumsum(counts[:m])


def counts_back(t_s: np.ndarray, tick_t_s: np.ndarray, back_s: tuple[float, ...]) -> list[np.ndarray]:
    """``count_at_or_before(t_s, tick_t_s - b)`` for each b (s) of ``back_s``.

    For a batch's whole-second ticks in a row and whole-second b >= 0 (the metrics'
    window lengths), every shifted tick is one of the seconds from the first tick less
    the largest b up to the last tick: those are counted once and each b takes its
    slice. Otherwise each b is counted on its own. The counts are the same either way.
    """
    ticks = np.asarray(tick_t_s, dtype=np.float64)
    if _countable(ticks, back_s):
        return _counts_back_per_second(t_s, ticks, back_s)
    return [count_at_or_before(t_s, ticks - b) for b in back_s]


def _countable(ticks: np.ndarray, back_s: tuple[float, ...]) -> bool:
    """Can counts_back count per whole second at these ticks (s) and shifts (s)?"""
    whole = all(b >= 0 and float(b).is_integer() for b in back_s)
    return bool(back_s) and whole and len(ticks) >= _MIN_TICKS_TO_COUNT and _whole_seconds_in_a_row(ticks)


def _counts_back_per_second(t_s: np.ndarray, ticks: np.ndarray, back_s: tuple[float, ...]) -> list[np.ndarray]:
    """counts_back once _countable has said yes."""
    m = len(ticks)
    reach = int(max(back_s))
    # The shifted seconds are whole and in a row too: count them without testing again.
    counts = _count_per_second(t_s, float(ticks[0]) - reach, m + reach)
    return [counts[reach - int(b) : reach - int(b) + m] for b in back_s]


def _whole_seconds_in_a_row(ticks: np.ndarray) -> bool:
    """Are the ticks first, first + 1, ... (whole numbers, small enough to be exact)?"""
    first = ticks[0]
    if not (np.isfinite(first) and first == np.floor(first) and abs(first) < 2.0**52):
        return False
    # The steps as a slice difference and the array's own all(): the same test as
    # np.all(np.diff(...)), at half the cost (this runs some 26 times per batch).
    return ticks[-1] - first == len(ticks) - 1 and bool((ticks[1:] - ticks[:-1] == 1.0).all())


def window_bounds(
    t_s: np.ndarray, tick_t_s: np.ndarray, windows_s: tuple[float, ...], available_t_s: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The times in each window (T - w, T] that are known by T, per tick T (s) and
    window length w (s), as index ranges [lo, hi) into the sorted times ``t_s`` (s).

    ``available_t_s`` (non-decreasing, or None for "known at once"): when each time
    became known. Returns hi, the same for every window, and one lo per window; all
    windows come from one count (counts_back) where the ticks allow it.
    """
    ticks = np.asarray(tick_t_s, dtype=np.float64)
    back_s = (0.0, *windows_s)
    if _countable(ticks, back_s):  # tested once here for both counts (26 tests a batch before)
        hi, *before = _counts_back_per_second(t_s, ticks, back_s)
        if available_t_s is not None:
            known = _count_per_second(np.asarray(available_t_s, dtype=np.float64), float(ticks[0]), len(ticks))
            hi = np.minimum(hi, known)
    else:
        hi, *before = counts_back(t_s, ticks, back_s)
        if available_t_s is not None:
            hi = np.minimum(hi, count_at_or_before(np.asarray(available_t_s, dtype=np.float64), ticks))
    return hi, [np.minimum(b, hi) for b in before]
