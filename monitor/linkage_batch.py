"""Linkage of a whole session at once (batch mode), in small pieces of memory.

The windows are worked through in chunks of evenly spaced window ends (batch mode: one
per tick), about 17 minutes each. For each chunk the running sums are taken afresh
over just the samples its windows reach, so no array grows past about a MiB. Summed
over a whole hour at once, the sums of 41 lags took 5 MiB (10 MiB at the peak), and
fresh megabytes cost a page fault per 4 KiB whenever the allocator has handed freed
memory back to the system: in a process that had imported neurokit2 that doubled the
time of the linkage. Window sums are differences of exact integer sums, the same
whatever the sums start from, and each window's float arithmetic is
``linkage.window_terms``, ``pearson`` and ``strongest``, as in live mode: the same bits.

Within a chunk every lag is worked at once. For lags L >= 0 partner a's window ends L
samples early and b's does not; for L < 0 it is the other way round. So each half is
one lags × windows block: the early partner's terms as a strided view (one row per
lag, each starting one sample earlier), the other partner's as one row.
"""

from __future__ import annotations

import numpy as np

from monitor.linkage import LinkageConfig, fixed_point, pearson, strongest, window_terms

_CHUNK_SAMPLES = 4096  # span of window ends per chunk: sums of 1.4 MiB for 41 lags


def linkage_at(hr_a_bpm: np.ndarray, hr_b_bpm: np.ndarray, stops: np.ndarray, cfg: LinkageConfig) -> tuple[np.ndarray, np.ndarray]:
    """Linkage r and its lag (s, positive = b follows a) of the windows ending at each
    1-based sample index of ``stops``, from the two whole 4 Hz HR series (bpm, NaN
    where missing; sample k is element k - 1). NaN where a window has no r at any lag,
    or reaches before the first sample at some lag.
    """
    stop = np.asarray(stops, dtype=np.int64)
    n_samples = len(hr_a_bpm)
    if len(hr_b_bpm) != n_samples:
        raise ValueError(f"the HR series differ in length: {n_samples} and {len(hr_b_bpm)} samples")
    if len(stop) and int(stop.max()) > n_samples:
        raise ValueError(f"a window ends at sample {int(stop.max())}, after the last sample ({n_samples})")
    best_r = np.full(stop.shape, np.nan)
    best_lag = np.full(stop.shape, np.nan)
    usable = stop - cfg.window_n - cfg.max_lag_n >= 0
    ends, where = np.unique(stop[usable], return_inverse=True)  # ascending, each once
    r, lag = np.empty(len(ends)), np.empty(len(ends))
    for run in _even_runs(ends, _CHUNK_SAMPLES):
        r[run], lag[run] = _chunk(hr_a_bpm, hr_b_bpm, ends[run], cfg)
    best_r[usable], best_lag[usable] = r[where], lag[where]
    return best_r, best_lag


def _even_runs(ends: np.ndarray, span: int) -> list[slice]:
    """``ends`` (ascending, distinct) cut into evenly spaced runs of at most ``span``
    samples from first to last (batch mode's one-per-tick ends: equal chunks)."""
    runs, lo, n = [], 0, len(ends)
    step = np.diff(ends)
    while lo < n:
        within = max(int(np.searchsorted(ends, ends[lo] + span, side="right")), lo + 1)
        uneven = np.flatnonzero(step[lo : within - 1] != step[lo]) if within - lo > 2 else []
        hi = lo + 1 + int(uneven[0]) if len(uneven) else within
        runs.append(slice(lo, hi))
        lo = hi
    return runs


def _chunk(hr_a: np.ndarray, hr_b: np.ndarray, stop: np.ndarray, cfg: LinkageConfig) -> tuple[np.ndarray, np.ndarray]:
    """r and lag of windows ending at the evenly spaced, ascending ``stop`` (>= n + lags)."""
    n, lag_n = cfg.window_n, cfg.max_lag_n
    n_win = len(stop)
    d = int(stop[1] - stop[0]) if n_win > 1 else 1
    first, last = int(stop[0]), int(stop[-1])
    base = first - n - lag_n  # the samples used are base + 1 .. last
    x, ok = fixed_point(np.array([hr_a[base:last], hr_b[base:last]], dtype=np.float64), cfg.hr_offset_bpm)
    m = last - base

    # Each partner's window terms for every window end from first - lag_n to last.
    k = np.arange(1, m + 1, dtype=np.int64)  # sample position counted from base
    sums = np.empty((2, 4, m + 1), dtype=np.int64)
    sums[:, :, 0] = 0  # a leading zero column
    sums[:, 0, 1:] = x
    np.multiply(x, x, out=sums[:, 1, 1:])
    np.multiply(k, x, out=sums[:, 2, 1:])
    sums[:, 3, 1:] = ok
    np.cumsum(sums, axis=2, out=sums)
    win = sums[:, :, n:] - sums[:, :, : m + 1 - n]  # per partner: Σx, Σx², Σk·x, Σok
    t0 = np.arange(1, m + 2 - n, dtype=np.int64)  # each window's first sample, from base
    own = [window_terms(w[0], w[1], w[2] - t0 * w[0], w[3], cfg) for w in win]

    # Σ a·b of every lag (a row each, from -lag_n up) over samples first - n + 1 ..
    # last: column c + 1 after the cumulative sum holds the sum through sample
    # first - n + 1 + c, whose value is x[lag_n + c].
    span = last - first + n
    xa, xb = x[0], x[1]
    prod = np.empty((2 * lag_n + 1, span + 1), dtype=np.int64)
    prod[:, 0] = 0  # a leading zero column
    # L < 0: b's sample |L| before a's; L >= 0: a's sample L before b's
    np.multiply(xa[lag_n : lag_n + span], _slide(xb, lag_n, span, 1), out=prod[:lag_n, 1:])
    np.multiply(_slide(xa, lag_n + 1, span, 1)[::-1], xb[lag_n : lag_n + span], out=prod[lag_n:, 1:])
    np.cumsum(prod, axis=1, out=prod)
    reach = d * (n_win - 1) + 1
    sab = prod[:, n : n + reach : d] - prod[:, :reach:d]  # lags × windows

    # The own terms of window w ending `back` samples before its stop are at index
    # lag_n - back + d * w: one lags × windows view for each half of the lags.
    r = np.empty((2 * lag_n + 1, n_win))
    (ua, va, wa), (ub, vb, wb) = own
    on_time = slice(lag_n, lag_n + reach, d)
    # L < 0 (rows 0 .. lag_n - 1, back = -L): b's window ends early, a's on time
    b_early = (_slide(y, lag_n, n_win, d) for y in (ub, vb, wb))
    pearson(sab[:lag_n], *_pairs((y[on_time] for y in (ua, va, wa)), b_early), out=r[:lag_n])
    # L >= 0 (rows lag_n ..., back = L): a's window ends early, b's on time
    a_early = (_slide(y, lag_n + 1, n_win, d)[::-1] for y in (ua, va, wa))
    pearson(sab[lag_n:], *_pairs(a_early, (y[on_time] for y in (ub, vb, wb))), out=r[lag_n:])
    return strongest(r, cfg)


def _pairs(a_terms, b_terms) -> list[np.ndarray]:
    """(ua, va, wa), (ub, vb, wb) in pearson's order: ua, ub, va, vb, wa, wb."""
    return [t for pair in zip(a_terms, b_terms) for t in pair]


def _slide(x: np.ndarray, n_rows: int, width: int, step: int) -> np.ndarray:
    """A read-only view of the contiguous 1-D ``x``: row i is x[i : i + step * width : step]."""
    item = x.strides[0]
    view = np.ndarray((n_rows, width), dtype=x.dtype, buffer=x, strides=(item, step * item))
    view.flags.writeable = False
    return view
