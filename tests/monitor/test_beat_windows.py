"""Windows over raw beats (monitor.beat_windows).

References: numpy quantiles per window; each window sorted on its own with the same
interpolation, to the bit; np.sort for the order statistics of sliding windows; every
0-1 input for the sorting network.
"""

import itertools

import numpy as np
import pytest

from monitor.beat_windows import MISSING, Segments, _comparators, _window_ranks, window_quantiles, window_quantiles_many


def sorted_window_quantiles(values, usable, segs, before, after, qs):
    """Each window on its own: its usable values sorted, position q * (m - 1), then
    a + frac * (b - a) as in the module (the bits a batch call must give)."""
    n = len(values)
    out = [np.full(n, np.nan) for _ in qs]
    counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        lo, hi = max(i - before, segs.start[i]), min(i + after + 1, segs.end[i])
        window = np.sort(values[lo:hi][usable[lo:hi]])
        counts[i] = len(window)
        if len(window):
            for value, q in zip(out, qs):
                pos = q * (len(window) - 1)
                j = int(np.floor(pos))
                a, b = float(window[j]), float(window[min(j + 1, len(window) - 1)])
                value[i] = a + (pos - j) * (b - a)
    return out, counts


def test_window_quantiles_match_numpy_on_every_window():
    rng = np.random.default_rng(7)
    values = rng.integers(0, 400, 300)
    usable = rng.random(300) > 0.1
    contiguous = rng.random(300) > 0.03
    segs = Segments(contiguous)
    for before, after in ((88, 2), (8, 2), (90, 0)):
        (q1, q3), m = window_quantiles(values, usable, segs, before, after, (0.25, 0.75))
        for i in range(300):
            lo, hi = max(i - before, segs.start[i]), min(i + after + 1, segs.end[i])
            window = values[lo:hi][usable[lo:hi]]
            assert m[i] == len(window)
            if len(window):
                assert np.isclose(q1[i], np.quantile(window, 0.25), rtol=0, atol=1e-9)
                assert np.isclose(q3[i], np.quantile(window, 0.75), rtol=0, atol=1e-9)
            else:
                assert np.isnan(q1[i]) and np.isnan(q3[i])



@pytest.mark.parametrize("shares", [(0.0, 0.0), (0.003, 0.05), (0.0, 0.6), (0.6, 0.003)])
@pytest.mark.parametrize("gaps", [[], [300, 301, 640], list(range(20, 997, 37))])  # none, few (slices), many (scatter)
def test_window_quantiles_many_equal_each_series_sorted_to_the_bit(shares, gaps):
    # Two series of one width in one pass (the Th1 and Th2 windows): each must get what
    # sorting its own windows gives, whichever path (blocks or rows) the pass takes.
    rng = np.random.default_rng(len(gaps) + int(sum(shares) * 1000))
    n = 997
    contiguous = np.ones(n, dtype=bool)
    contiguous[gaps] = False
    segs = Segments(contiguous)
    jobs = [(rng.integers(0, 60, n), rng.random(n) >= share, before, after) for share, (before, after) in zip(shares, ((88, 2), (90, 0)))]
    results = window_quantiles_many(jobs, segs, (0.25, 0.75))
    for (values, usable, before, after), (got, m) in zip(jobs, results):
        want, counts = sorted_window_quantiles(values, usable, segs, before, after, (0.25, 0.75))
        np.testing.assert_array_equal(m, counts)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_window_quantiles_many_refuses_mixed_widths():
    segs = Segments(np.ones(50, dtype=bool))
    values, usable = np.arange(50), np.ones(50, dtype=bool)
    with pytest.raises(ValueError):
        window_quantiles_many([(values, usable, 8, 2), (values, usable, 90, 0)], segs, (0.5,))

@pytest.mark.parametrize("unusable_share", [0.0, 0.003, 0.05, 0.6])
@pytest.mark.parametrize("before, after, qs", [(88, 2, (0.25, 0.75)), (8, 2, (0.5,)), (90, 0, (0.25, 0.75)), (5, 1, (0.1, 0.5, 0.9))])
def test_window_quantiles_equal_sorting_each_window_to_the_bit(unusable_share, before, after, qs):
    # Mostly full windows take the block path; many cut or holey ones the per-row sort.
    rng = np.random.default_rng(int(unusable_share * 1000) + before)
    n = 997  # not a multiple of any block size
    values = rng.integers(0, 60, n)  # many ties
    usable = rng.random(n) >= unusable_share
    contiguous = np.ones(n, dtype=bool)
    contiguous[[300, 301, 640]] = False  # gaps, one of them a segment of a single beat
    segs = Segments(contiguous)
    got, m = window_quantiles(values, usable, segs, before, after, qs)
    want, counts = sorted_window_quantiles(values, usable, segs, before, after, qs)
    np.testing.assert_array_equal(m, counts)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("width, ranks", [(91, [22, 23, 67, 68]), (11, [5]), (11, [4, 5, 6]), (7, [3])])
def test_window_ranks_equal_sorted_rows(width, ranks):
    rng = np.random.default_rng(width)
    n = 1003
    for block in range(2, min(ranks[0] + 1, width - ranks[-1]) + 1):
        nb = -(-n // block)
        pad = np.full(nb * block + width - 1, MISSING, dtype=np.int32)
        pad[: n + width - 1] = rng.integers(0, 30, n + width - 1)
        rows = np.lib.stride_tricks.sliding_window_view(pad, width)[:n]
        want = np.sort(rows, axis=1)
        for r, got in zip(ranks, _window_ranks(pad, n, width, ranks, block)):
            assert got.shape == (block, nb)
            np.testing.assert_array_equal(got.T.reshape(-1)[:n], want[:, r], err_msg=f"block {block}, rank {r}")


@pytest.mark.parametrize("n", range(1, 13))
def test_comparators_sort_every_zero_one_input(n):
    # The 0-1 principle: a comparator network that sorts every 0-1 input sorts every input.
    pairs = _comparators(n)
    assert all(0 <= x < y < n for x, y in pairs)
    for bits in itertools.product((0, 1), repeat=n):
        v = list(bits)
        for x, y in pairs:
            v[x], v[y] = min(v[x], v[y]), max(v[x], v[y])
        assert v == sorted(bits)
