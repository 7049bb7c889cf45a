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

from monitor.linkage import LinkageConfig, LinkageTracker, Prefix
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
    and ``at``, with a cheaper ``feed`` and ``at_tick`` for one window."""

    def __init__(self, cfg: LinkageConfig) -> None:
        super().__init__(cfg)
        self._prefix = _GrowingPrefix(self._prefix.sums.shape[0], self._prefix.keep)
        self._history = np.zeros((2, 2 * cfg.max_lag_n))  # a and b before the new samples
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # Per lag: where a's and b's window ends lie among the ends lag_n .. 0 samples
        # before the window's own end (a's end moves back by a's shift, b's by b's).
        lag_n = cfg.max_lag_n
        self._own_at = list(zip((lag_n - self._shift_a[:, 0]).tolist(), (lag_n - self._shift_b[:, 0]).tolist()))
        self._own_by_end: dict[int, tuple[tuple[float, float, float, bool], ...]] = {}

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
        if not finite.all():  # a missing sample adds 0 (nan_to_num, slow on small arrays,
            # only where an infinity needs its other replacements)
            x = np.nan_to_num(x, nan=0.0) if np.isinf(hr).any() else np.where(finite, x, 0.0)
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

    def at_tick(self, stop_sample: int) -> tuple[float, float]:
        """``at`` for the one window ending at 1-based sample ``stop_sample`` (a live
        tick): its r and lag (s), NaN where data are missing. Scalar arithmetic, the
        same operations in the same order as _own and _pearson, so the same bits; each
        window end's own sums are worked out once and kept while a window needs them."""
        cfg, p = self.cfg, self._prefix
        n, lag_n, end = cfg.window_n, cfg.max_lag_n, int(stop_sample)
        if end - n - lag_n < 0:
            return math.nan, math.nan
        for key in [e for e in self._own_by_end if e < end - lag_n]:
            del self._own_by_end[key]
        own = [self._own_by_end.get(e) or self._own_sums(e) for e in range(end - lag_n, end + 1)]
        hi = p.sums[8:, end - p.base].tolist()
        lo = p.sums[8:, end - n - p.base].tolist()
        stt = n * (n * n - 1) / 12.0
        best_abs, best_r, best_row = -1.0, math.nan, -1
        for row, (at_a, at_b) in enumerate(self._own_at):
            s1a, rssa, cta, good_a = own[at_a][0]
            s1b, rssb, ctb, good_b = own[at_b][1]
            if not (good_a and good_b):
                continue
            rab = (hi[row] - lo[row]) - s1a * s1b / n - cta * ctb / stt
            r = min(max(rab / math.sqrt(rssa * rssb), -1.0), 1.0)  # as _pearson clips
            if abs(r) > best_abs:  # strictly: the first lag of largest |r| wins
                best_abs, best_r, best_row = abs(r), r, row
        if best_row < 0:
            return math.nan, math.nan
        return best_r, int(self.lags[best_row]) / cfg.fs_hz

    def _own_sums(self, end: int) -> tuple[tuple[float, float, float, bool], ...]:
        """Both partners' (sum, residual sum of squares, centred Σ t·x, usable) for the
        window ending at sample ``end``, as LinkageTracker._own computes them."""
        cfg, p, n = self.cfg, self._prefix, self.cfg.window_n
        hi = p.sums[:8, end - p.base].tolist()
        lo = p.sums[:8, end - n - p.base].tolist()
        stt = n * (n * n - 1) / 12.0
        first = float(end - n + 1)
        t_mean, flat = (n - 1) / 2, n * cfg.min_sd_bpm**2
        w = [h - l for h, l in zip(hi, lo)]  # rows a, a², k·a, ok_a, b, b², k·b, ok_b
        out = []
        for s1, s2, kx, full in (w[:4], w[4:]):
            ct = kx - first * s1 - t_mean * s1
            rss = s2 - s1 * s1 / n - ct * ct / stt
            out.append((s1, rss, ct, full == n and rss > flat))
        own = self._own_by_end[end] = (out[0], out[1])
        return own
