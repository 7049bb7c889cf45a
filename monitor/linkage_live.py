"""Linkage for live mode: one tick's 4 Hz HR samples and the tracker fed with them.

Batch mode resamples a whole session with ``resample.resample_hr`` and works it with
``linkage_batch.linkage_at``. A live tick adds ``fs_hz`` samples per partner: here they
are read from the partner's running beat lists (``metrics_live.LiveNN``) with a binary
search each and added to running integer sums (``Prefix``: exact, so they hold what
batch mode's sums over the same samples hold, see monitor/linkage.py), and
``LiveLinkageTracker.at_tick`` works the tick's one window in scalars with the float
operations of ``linkage.window_terms``, ``pearson`` and ``strongest``, in the same
order, so every r and lag keeps batch mode's bits (tests/monitor/test_linkage_live.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from monitor.linkage import HR_SCALE, LinkageConfig, fixed_point
from monitor.metrics_live import LiveNN
from monitor.resample import UNITS_PER_MINUTE


def resample_hr_live(nn: LiveNN, first_sample: int, stop_sample: int, cfg: LinkageConfig) -> list[float]:
    """``resample.resample_hr`` over the beats of ``nn``: HR (bpm) of the latest beat at
    or before each sample j / fs_hz, j in [first_sample, stop_sample), counting only
    beats final ``cfg.delay_s`` after the whole second that first covers the sample;
    NaN past max_hold_s."""
    t_s, nn_units, available = nn.t_s, nn.nn_units, nn.available_t_s
    out = []
    for j in range(first_sample, stop_sample):
        s_t = j / cfg.fs_hz
        known = bisect_right(available, float(math.ceil(s_t) + cfg.delay_s))
        last = min(bisect_right(t_s, s_t), known) - 1
        # Kept beats start at or before any tick still to come (LiveNN.trim), so a
        # sample never needs a forgotten beat.
        if last >= 0 and s_t - t_s[last] <= cfg.max_hold_s:
            out.append(UNITS_PER_MINUTE / float(nn_units[last]))
        else:
            out.append(math.nan)
    return out


class Prefix:
    """Running prefix sums of several integer series (int64, wrapping), extendable
    without changing past values (live mode's linkage sums).

    Column j of ``sums`` is the sum of samples 1..(base + j). Live mode calls ``trim``
    to hold only the last ``keep`` columns (windows never reach further back), so a
    session of any length uses bounded memory; dropping old columns changes no value.
    """

    def __init__(self, n_series: int, keep: int) -> None:
        self.keep = keep
        self.base = 0
        # ``sums`` is the used front of a buffer with room to spare, so that a live feed
        # of a few samples writes into it instead of copying every column kept.
        self._buffer = np.zeros((n_series, 64), dtype=np.int64)
        self.sums = self._buffer[:, :1]
        self._pending = 1  # first column not yet summed (see reserve)

    def extend(self, values: np.ndarray) -> None:
        """Append ``values`` (n_series × m) to the running sums."""
        self.reserve(values.shape[1])[...] = values
        self.accumulate()

    def reserve(self, m: int) -> np.ndarray:
        """Add ``m`` columns and return them (n_series × m, a view) for the caller to
        fill with the new samples; ``accumulate`` then turns them into sums.

        Filling in place spares the copies of stacking the samples first.
        """
        used = self.sums.shape[1]
        if used + m > self._buffer.shape[1]:  # grow by doubling (or to fit a long feed)
            grown = np.empty((self._buffer.shape[0], max(2 * self._buffer.shape[1], used + m)), dtype=np.int64)
            grown[:, :used] = self.sums
            self._buffer = grown
        self.sums = self._buffer[:, : used + m]
        self._pending = used
        return self.sums[:, used:]

    def accumulate(self) -> None:
        """Turn the columns filled since ``reserve`` into running sums, continuing the
        last sum before them."""
        tail = self.sums[:, self._pending - 1 :]
        np.cumsum(tail, axis=1, out=tail)
        self._pending = self.sums.shape[1]

    def trim(self) -> None:
        """Forget columns that no window can reach any more (live mode's memory bound).

        Trims only once the excess is as large as what is kept, so trimming is rare; the
        kept columns move to the buffer's front (the two places do not overlap then).
        """
        used = self.sums.shape[1]
        excess = used - self.keep
        if excess > self.keep:
            self._buffer[:, : self.keep] = self._buffer[:, excess:used]
            self.sums = self._buffer[:, : self.keep]
            self.base += excess

    def window(self, row: int | slice, stop: np.ndarray, n: int) -> np.ndarray:
        """Sum of series ``row`` (or rows) over samples (stop - n, stop], 1-based."""
        sums = self.sums[row]  # one row first: indexing it is faster than sums[row, stop]
        return sums[..., stop - self.base] - sums[..., stop - n - self.base]



class LiveLinkageTracker:
    """Linkage of two 4 Hz HR series fed a tick at a time: running integer sums of
    each partner's samples and of every lag's products (``feed``), and the one window
    of each tick worked in scalars (``at_tick``). Equal to ``linkage_batch.linkage_at``
    to the bit (tests/monitor/test_linkage_live.py).
    """

    def __init__(self, cfg: LinkageConfig) -> None:
        self.cfg = cfg
        self.lags = np.arange(-cfg.max_lag_n, cfg.max_lag_n + 1)
        self._shift_a = np.maximum(self.lags, 0)[:, None]  # a's window ends this early
        self._shift_b = np.maximum(-self.lags, 0)[:, None]  # b's window ends this early
        self.n_samples = 0
        self._history = np.zeros((2, 2 * cfg.max_lag_n), dtype=np.int64)  # a, b before the new samples
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # rows: a, a², k·a, ok_a, b, b², k·b, ok_b, then a_k·b_{k+lag} for each lag
        self._prefix = Prefix(8 + len(self.lags), keep=4 * (cfg.window_n + 2 * cfg.max_lag_n))
        # Per lag: where a's and b's window ends lie among the ends lag_n .. 0 samples
        # before the window's own end (a's end moves back by a's shift, b's by b's).
        lag_n = cfg.max_lag_n
        self._own_at = list(zip((lag_n - self._shift_a[:, 0]).tolist(), (lag_n - self._shift_b[:, 0]).tolist()))
        self._own_by_end: dict[int, tuple[tuple[float, float, float], ...]] = {}

    def feed(self, hr_a_bpm: np.ndarray, hr_b_bpm: np.ndarray) -> None:
        """Append new 4 Hz samples of both partners (NaN where missing)."""
        x, ok = fixed_point(np.array([hr_a_bpm, hr_b_bpm], dtype=np.float64), self.cfg.hr_offset_bpm)
        m = x.shape[1]
        k = np.arange(self.n_samples + 1, self.n_samples + m + 1, dtype=np.int64)
        block = self._prefix.reserve(m)
        # rows: a, a², k·a, ok_a, b, b², k·b, ok_b (every fourth row is one partner's)
        block[0:8:4] = x
        np.multiply(x, x, out=block[1:8:4])
        np.multiply(k, x, out=block[2:8:4])
        block[3:8:4] = ok
        # With the 2 * max_lag_n samples before the new ones (zeros before the session
        # starts; a missing sample is a zero too, its ok row says it is missing), each
        # lag's products pair a at sample k - max(lag, 0) with b at k - max(-lag, 0): the
        # later sample of each pair is a new one, so nothing needs the future.
        both = np.concatenate([self._history, x], axis=1)
        at_a, at_b = self._pair_index(m)  # every lag's products in one gather
        np.multiply(both[0][at_a], both[1][at_b], out=block[8:])
        self._prefix.accumulate()
        self._history = both[:, m:]
        self.n_samples += m

    def _pair_index(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Per lag and new sample: where its a and its b lie in history + new samples."""
        if m not in self._pairs:
            h, new = 2 * self.cfg.max_lag_n, np.arange(m)
            self._pairs[m] = (h - self._shift_a + new, h - self._shift_b + new)
        return self._pairs[m]

    def trim(self) -> None:
        """Drop sums older than any future window needs (live mode)."""
        self._prefix.trim()

    def at_tick(self, stop_sample: int) -> tuple[float, float]:
        """Linkage r and its lag (s) of the one window ending at 1-based sample
        ``stop_sample`` (a live tick), NaN where data are missing. Scalar arithmetic, the
        same operations in the same order as ``window_terms``, ``pearson`` and ``strongest``,
        so the same bits; each window end's own terms are worked out once and kept
        while a window needs them."""
        cfg, p = self.cfg, self._prefix
        n, lag_n, end = cfg.window_n, cfg.max_lag_n, int(stop_sample)
        if end - n - lag_n < 0:
            return math.nan, math.nan
        for key in [e for e in self._own_by_end if e < end - lag_n]:
            del self._own_by_end[key]
        own = [self._own_by_end.get(e) or self._own_terms(e) for e in range(end - lag_n, end + 1)]
        # int64 differences first: the running sums may have wrapped, their windows not
        sab = (p.sums[8:, end - p.base] - p.sums[8:, end - n - p.base]).tolist()
        best_abs, best_r, best_row = -1.0, math.nan, -1
        for row, (at_a, at_b) in enumerate(self._own_at):
            ua, va, wa = own[at_a][0]
            ub, vb, wb = own[at_b][1]
            if wa != wa or wb != wb:
                continue  # a window not full or too flat: no r at this lag
            r = (float(sab[row]) - ua * ub - va * vb) * wa * wb
            r = min(max(r, -1.0), 1.0)  # as pearson clips
            if abs(r) > best_abs:  # strictly: the first lag of largest |r| wins
                best_abs, best_r, best_row = abs(r), r, row
        if best_row < 0:
            return math.nan, math.nan
        return best_r, int(self.lags[best_row]) / cfg.fs_hz

    def _own_terms(self, end: int) -> tuple[tuple[float, float, float], ...]:
        """Both partners' (u, v, w) for the window ending at sample ``end``, as
        ``linkage.window_terms`` computes them (w NaN where the window is not usable)."""
        cfg, p, n = self.cfg, self._prefix, self.cfg.window_n
        w = (p.sums[:8, end - p.base] - p.sums[:8, end - n - p.base]).tolist()  # rows as in feed
        root_n, root_stt = math.sqrt(n), math.sqrt(n * (n * n - 1) / 12.0)
        first, t_mean = end - n + 1, (n - 1) / 2
        flat = n * (cfg.min_sd_bpm * HR_SCALE) ** 2
        out = []
        for total, squares, kx, full in (w[:4], w[4:]):
            s1 = float(total)
            ct = float(kx - first * total) - t_mean * s1
            u = s1 / root_n
            v = ct / root_stt
            rss = float(squares) - u * u - v * v
            out.append((u, v, 1.0 / math.sqrt(rss) if full == n and rss > flat else math.nan))
        own = self._own_by_end[end] = (out[0], out[1])
        return own
