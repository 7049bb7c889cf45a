"""Windows over raw beats for artifact detection: segments between gaps, and quantiles
of sliding windows of integers (the RR median and the quartile deviations).

The quantiles need only a few order statistics of each window (ranks 22, 23, 67 and 68
of 91 values; rank 5 of 11), so whole windows are not sorted one by one. Rows are taken
in blocks of B consecutive windows: all windows of a block share a core of width - B + 1
values, sorted once per block, and each window adds B - 1 values of its own. Rank r of
a window is rank B - 1 of the core's ranks r - B + 1 .. r together with those B - 1
values (see ``_window_ranks``), found with element-wise minima and maxima over every
block at once. Order statistics are exact integers, so the quantiles have the same bits
as from a sorted window, in a batch call and in a live call alike.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

MISSING = np.iinfo(np.int32).max  # an unusable value in a window; sorts after every real one
_BLOCK = 5  # windows per block: the cheapest on the 91-wide windows (4..8 are close)


class Segments:
    """Stretches between gaps: per beat, its segment's first beat and one past its last."""

    def __init__(self, contiguous: np.ndarray) -> None:
        n = len(contiguous)
        self.brk = ~contiguous
        if n:
            self.brk[0] = True  # nothing before the array is known
        self.seg = np.cumsum(self.brk) - 1
        self.starts = np.flatnonzero(self.brk).tolist()  # each segment's first beat
        self.ends = self.starts[1:] + [n]  # and one past its last
        self.start = np.array(self.starts, dtype=np.int64)[self.seg]
        self.end = np.array(self.ends, dtype=np.int64)[self.seg]
        self.idx = np.arange(n)

    def shift(self, values: np.ndarray, k: int, at: np.ndarray | None = None) -> np.ndarray:
        """values[i + k] as float, NaN where i + k is outside i's segment; for every
        beat i, or only for the beats ``at`` (indices)."""
        if at is None:
            j, start, end = self.idx + k, self.start, self.end
        else:
            j, start, end = at + k, self.start[at], self.end[at]
        inside = (j >= start) & (j < end)
        return np.where(inside, values.take(j, mode="clip").astype(np.float64), np.nan)

    def bounds(self, before: int, after: int) -> tuple[np.ndarray, np.ndarray]:
        """Window i-before .. i+after clipped to i's segment, as [lo, hi)."""
        return np.maximum(self.idx - before, self.start), np.minimum(self.idx + after + 1, self.end)


def window_quantiles(
    values: np.ndarray, usable: np.ndarray, s: Segments, before: int, after: int, qs: tuple[float, ...]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Quantiles of the usable integer values in beats i-before .. i+after of i's segment.

    Linear interpolation between order statistics (numpy's default), NaN for an empty
    window; also returns the count of values per window. See ``window_quantiles_many``.
    """
    return window_quantiles_many([(values, usable, before, after)], s, qs)[0]


def window_quantiles_many(
    jobs: list[tuple[np.ndarray, np.ndarray, int, int]], s: Segments, qs: tuple[float, ...]
) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """``window_quantiles`` for several (values, usable, before, after) over the same
    segments, all with the same window width, done in one pass: each step is a few
    NumPy calls on short arrays, so two series laid end to end cost little more than one.

    Full windows (every value usable, none cut by a gap or an array end) take their
    order statistics from ``_window_ranks``; the others (about one in ten in a recording
    with artifacts) are sorted one by one. The arithmetic after the order statistics is
    per window, so a window gives the same bits in a batch call and in a live call.
    """
    n = len(s.idx)
    width = jobs[0][2] + jobs[0][3] + 1
    if any(before + after + 1 != width for _, _, before, after in jobs):
        raise ValueError("window_quantiles_many needs windows of one width")
    ms, parts, kept = [], [], []
    for values, usable, before, after in jobs:
        kept.append(np.where(usable, values, MISSING))
        lo, hi = s.bounds(before, after)
        count = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(usable, out=count[1:])
        ms.append(count[hi] - count[lo])
        parts.append(np.flatnonzero(ms[-1] != width))  # cut by a gap or an array end, or holding unusable values
    # Positions q * (width - 1) of a full window; where the fraction is 0 the upper
    # neighbour is not needed (a + 0 * (b - a) is a).
    full = [(q * (width - 1), int(np.floor(q * (width - 1)))) for q in qs]
    ranks = sorted({r for pos, lo_r in full for r in ((lo_r, lo_r + 1) if pos > lo_r else (lo_r,))})
    block = min(_BLOCK, ranks[0] + 1, width - ranks[-1])
    if block < 2 or any(2 * len(part) > n for part in parts):  # no room for blocks, or mostly cut (a short array)
        parts = [np.arange(n) for _ in jobs]
    outs: list[list[np.ndarray]] = []
    pad = None
    if len(parts[0]) < n:
        # The series one after another in one pad, each in a stretch of a whole number
        # of blocks with at least width - 1 MISSING values after it.
        nb = -(-n // block)
        stretch = -(-(nb * block + width - 1) // block) * block
        pad = np.full(len(jobs) * stretch, MISSING, dtype=np.int32)
        for j, (_, _, before, _) in enumerate(jobs):
            pad[j * stretch + before : j * stretch + before + n] = kept[j]
        by_rank = dict(zip(ranks, _window_ranks(pad, (len(jobs) - 1) * stretch + n, width, ranks, block)))
        flat = []
        for pos, lo_r in full:
            a = by_rank[lo_r].astype(np.float64)
            b = by_rank[lo_r + 1].astype(np.float64) if pos > lo_r else a
            flat.append((a + (pos - lo_r) * (b - a)).T.reshape(-1))  # back to beat order
        outs = [[f[j * stretch : j * stretch + n] for f in flat] for j in range(len(jobs))]
    else:
        outs = [[np.empty(n) for _ in qs] for _ in jobs]
    if sum(len(part) for part in parts):
        # Beyond the array ends the rows hold MISSING. Across a gap, width - 1 MISSING
        # values between segments keep every window inside its own.
        gaps = int(s.seg[-1])
        if pad is not None and not gaps:  # the blocks' pad has the rows already
            rows_pad, ats = pad, [j * stretch + part for j, part in enumerate(parts)]
        else:
            size = n + (gaps + 1) * (width - 1)
            rows_pad = np.full(len(jobs) * size, MISSING, dtype=np.int32)
            shift = s.seg * (width - 1)
            ats = []
            for j, ((_, _, before, _), part) in enumerate(zip(jobs, parts)):
                base = j * size + before
                if gaps < 16:  # a slice per segment: cheaper than a scatter while they are few
                    for g, (a, b) in enumerate(zip(s.starts, s.ends)):
                        rows_pad[base + a + g * (width - 1) : base + b + g * (width - 1)] = kept[j][a:b]
                else:
                    rows_pad[base + s.idx + shift] = kept[j]
                ats.append(j * size + part + shift[part])
        # Row i is rows_pad[i : i + width] (sliding_window_view's result, without its
        # checks; the ndarray constructor builds the view several times faster than as_strided)
        step = rows_pad.strides[0]
        win = np.ndarray((len(rows_pad) - width + 1, width), dtype=np.int32, buffer=rows_pad, strides=(step, step))
        rows = win[np.concatenate(ats)]
        rows.sort(axis=1)
        got = pick(rows, np.concatenate([m[part] for m, part in zip(ms, parts)]), qs)
        done = 0
        for out, part in zip(outs, parts):
            for value, g in zip(out, got):
                value[part] = g[done : done + len(part)]
            done += len(part)
    return list(zip(outs, ms))


def pick(srt: np.ndarray, m: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles of rows sorted with their m usable values first (linear interpolation):
    position q * (m - 1), then a + frac * (b - a); NaN where m is 0."""
    width = srt.shape[1]
    flat = srt.reshape(-1)
    row = np.arange(0, len(srt) * width, width)  # where each row starts in flat
    top = np.maximum(m - 1, 0)
    some = m > 0
    out = []
    for q in qs:
        pos = q * top
        lo = np.floor(pos).astype(np.int64)
        a = flat.take(row + lo).astype(np.float64)
        b = flat.take(row + np.minimum(lo + 1, top)).astype(np.float64)
        out.append(np.where(some, a + (pos - lo) * (b - a), np.nan))
    return out


def _window_ranks(pad: np.ndarray, n: int, width: int, ranks: list[int], block: int) -> list[np.ndarray]:
    """Order statistics ``ranks`` (0-based, each in block - 1 .. width - block) of the
    rows pad[i : i + width], i < n, each of shape (block, ceil(n / block)): row kB + o at
    [o, k]. pad holds at least ceil(n / block) * block + width - 1 values.

    The windows of block k (rows kB .. kB + B - 1) share the core pad[kB + e : kB + width],
    e = B - 1; row kB + o adds its own e values: o of them after the core and e - o
    before it. Rank r of a row is rank e of D = core ranks r - e .. r plus those e values:
    each core value below rank r - e is at most every value of D that is rank e or less
    (at least one of those comes from the core), so exactly r - e values of the row lie
    below D's rank e, which makes it the row's rank r. With both parts sorted, rank e of
    their union is min over j = 0..e of max(core[r - j], own[j - 1]) (own[-1] = -inf):
    taking j own values and e + 1 - j core values, the largest taken is never below
    rank e and equals it for the right j.
    """
    e = block - 1
    c = width - e
    nb = -(-n // block)
    step = pad.strides[0]
    core = np.ndarray((nb, c), dtype=pad.dtype, buffer=pad, offset=e * step, strides=(block * step, step)).copy()
    core.sort(axis=1)
    # own[j][o, k]: value j of row kB + o, that is pad[kB + o + j] while o + j < e (before
    # the core) and pad[kB + c + o + j] from there on (after it): row o + j of ``near``.
    # Blocks run along the last axis, so that every operation works on long rows.
    near = np.empty((2 * e, nb), dtype=pad.dtype)
    near[:e] = np.ndarray((e, nb), dtype=pad.dtype, buffer=pad, strides=(step, block * step))
    near[e:] = np.ndarray((e, nb), dtype=pad.dtype, buffer=pad, offset=(c + e) * step, strides=(step, block * step))
    own = [near[j : j + block] for j in range(e)]
    for x, y in _comparators(e):
        own[x], own[y] = np.minimum(own[x], own[y]), np.maximum(own[x], own[y])
    need = sorted({t for r in ranks for t in range(r - e, r + 1)})
    band = dict(zip(need, core.T[need]))  # the core ranks needed, each along the blocks (one gather)
    out = []
    for r in ranks:
        value = np.maximum(band[r - 1], own[0])
        np.minimum(value, band[r], out=value)
        for k in range(2, e + 1):
            np.minimum(value, np.maximum(band[r - k], own[k - 1]), out=value)
        out.append(value)
    return out


@lru_cache(maxsize=None)
def _comparators(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort for n values, as (lower, upper) position pairs
    (built for the next power of two; pairs reaching past n are left out, as if those
    values were larger than all others)."""
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)
