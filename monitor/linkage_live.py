"""Linkage for live mode: one tick's 4 Hz HR samples and the tracker fed with them.

Batch mode resamples a whole session with ``resample.resample_hr`` and feeds
``LinkageTracker`` once. A live tick adds ``fs_hz`` samples per partner: here they are
read from the partner's running beat lists (``metrics_live.LiveNN``) with a binary
search each, and ``LiveLinkageTracker`` appends them to its prefix sums with a handful
of array operations instead of one per lag, into a buffer that grows by doubling
instead of being copied whole on every feed. The additions and products are the same,
in the same order, so the sums and every r and lag keep batch mode's bits
(tests/monitor/test_linkage_live.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right

import numpy as np

from monitor.linkage import LinkageConfig, LinkageTracker, Prefix, _pearson
from monitor.metrics_live import LiveNN
from monitor.resample import UNITS_PER_MINUTE


def resample_hr_live(nn: LiveNN, first_sample: int, stop_sample: int, cfg: LinkageConfig) -> list[float]:
    """``resample.resample_hr`` over the beats of ``nn``: HR (bpm) of the latest beat at
    or before each sample j / fs_hz, j in [first_sample, stop_sample), counting only
    beats final by the whole second that first covers the sample; NaN past max_hold_s."""
    t_s, nn_units, available = nn.t_s, nn.nn_units, nn.available_t_s
    out = []
    for j in range(first_sample, stop_sample):
        s_t = j / cfg.fs_hz
        known = bisect_right(available, float(math.ceil(s_t)))
        last = min(bisect_right(t_s, s_t), known) - 1
        # Kept beats start at or before any tick still to come (LiveNN.trim), so a
        # sample never needs a forgotten beat.
        if last >= 0 and s_t - t_s[last] <= cfg.max_hold_s:
            out.append(UNITS_PER_MINUTE / float(nn_units[last]))
        else:
            out.append(math.nan)
    return out


class _GrowingPrefix(Prefix):
    """Prefix sums in a buffer with room to spare: a feed of a few samples writes into
    it instead of copying every column kept (``Prefix.reserve`` copies them all)."""

    def __init__(self, n_series: int, keep: int) -> None:
        super().__init__(n_series, keep)
        self._buffer = self.sums

    def reserve(self, m: int) -> np.ndarray:
        """Add ``m`` columns and return them to be filled (see Prefix.reserve)."""
        used = self.sums.shape[1]
        if used + m > self._buffer.shape[1]:
            grown = np.empty((self.sums.shape[0], max(2 * self._buffer.shape[1], used + m, 64)))
            grown[:, :used] = self.sums
            self._buffer = grown
        self.sums = self._buffer[:, : used + m]
        self._pending = used
        return self.sums[:, used:]

    def trim(self) -> None:
        """Move the last ``keep`` columns to the front once the rest outgrows them."""
        used = self.sums.shape[1]
        excess = used - self.keep
        if excess > self.keep:  # then the columns moved and their new place do not overlap
            self._buffer[:, : self.keep] = self._buffer[:, excess:used]
            self.sums = self._buffer[:, : self.keep]
            self.base += excess


class LiveLinkageTracker(LinkageTracker):
    """A LinkageTracker for feeds of a few samples at a time (live mode): the same sums
    and the same ``at``, with a cheaper ``feed``."""

    def __init__(self, cfg: LinkageConfig) -> None:
        super().__init__(cfg)
        self._prefix = _GrowingPrefix(self._prefix.sums.shape[0], self._prefix.keep)
        self._history = np.zeros((2, 2 * cfg.max_lag_n))  # a and b before the new samples
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        lag_n, n = cfg.max_lag_n, cfg.window_n
        # For one window: the window ends its lags need, as offsets from the earliest
        # (a's end moves back by a's shift, b's by b's), and each end's first sample.
        ends = np.arange(-lag_n, 1)
        self._end_first = (ends - n + 1).astype(np.float64)  # as _own's (end - n + 1), exact
        self._own_at = (lag_n - self._shift_a[:, 0], lag_n - self._shift_b[:, 0])

    def _pair_index(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Per lag and new sample: where its a and its b lie in history + new samples."""
        if m not in self._pairs:
            h, new = 2 * self.cfg.max_lag_n, np.arange(m)
            self._pairs[m] = (h - self._shift_a + new, h - self._shift_b + new)
        return self._pairs[m]

    def feed(self, hr_a_bpm, hr_b_bpm) -> None:
        """Append new 4 Hz samples of both partners (NaN where missing), as
        LinkageTracker.feed does: the same rows, products and running sums."""
        hr = np.array([hr_a_bpm, hr_b_bpm], dtype=np.float64)
        m = hr.shape[1]
        x = hr - self.cfg.hr_offset_bpm
        finite = np.isfinite(hr)
        if not finite.all():  # nan_to_num is slow on small arrays: only when needed
            x = np.nan_to_num(x, nan=0.0)  # a missing sample adds 0
        k = np.arange(self.n_samples + 1, self.n_samples + m + 1, dtype=float)
        block = self._prefix.reserve(m)
        # rows: a, a², k·a, ok_a, b, b², k·b, ok_b (every fourth row is one partner's)
        block[0:8:4] = x
        np.multiply(x, x, out=block[1:8:4])
        np.multiply(k, x, out=block[2:8:4])
        block[3:8:4] = finite
        both = np.concatenate([self._history, x], axis=1)
        at_a, at_b = self._pair_index(m)
        np.multiply(both[0][at_a], both[1][at_b], out=block[8:])
        self._prefix.accumulate()
        self._history = both[:, m:]
        self.n_samples += m

    def at(self, stop_samples) -> tuple[np.ndarray, np.ndarray]:
        """LinkageTracker.at for one window (a live tick): its r and lag (s) as arrays
        of one, with the batch path's arithmetic (_own's sums per window end, then
        _pearson per lag, the first lag of largest |r|) in fewer array operations."""
        stop = np.asarray(stop_samples, dtype=np.int64)
        if stop.shape != (1,):
            return super().at(stop)
        cfg, p = self.cfg, self._prefix
        n, lag_n, end = cfg.window_n, cfg.max_lag_n, int(stop[0])
        if end - n - lag_n < 0:
            return np.full(1, np.nan), np.full(1, np.nan)
        # Own window sums of both partners (rows a: 0-3, b: 4-7) at every end a lag needs.
        first, last = end - lag_n - p.base, end + 1 - p.base
        w = (p.sums[:8, first:last] - p.sums[:8, first - n : last - n]).reshape(2, 4, lag_n + 1)
        s1, s2, kx, full = w[:, 0], w[:, 1], w[:, 2], w[:, 3]
        stt = n * (n * n - 1) / 12.0
        ct = kx - (self._end_first + end) * s1 - (n - 1) / 2 * s1
        rss = s2 - s1 * s1 / n - ct * ct / stt
        good = (full == n) & (rss > n * cfg.min_sd_bpm**2)
        at_a, at_b = self._own_at
        sab = p.sums[8:, end - p.base] - p.sums[8:, end - n - p.base]
        usable = good[0, at_a] & good[1, at_b]
        if not usable.any():
            return np.full(1, np.nan), np.full(1, np.nan)
        r = _pearson(sab, s1[0, at_a], s1[1, at_b], ct[0, at_a], ct[1, at_b], rss[0, at_a], rss[1, at_b], usable, n)
        pick = int(np.argmax(np.where(usable, np.abs(r), -1.0)))  # the first of largest |r|
        return np.array([r[pick]]), np.array([self.lags[pick] / cfg.fs_hz])
