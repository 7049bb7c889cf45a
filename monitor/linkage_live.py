"""Linkage for live mode: one tick's 4 Hz HR samples and the tracker fed with them.

Batch mode resamples a whole session with ``resample.resample_hr`` and feeds
``LinkageTracker`` once. A live tick adds ``fs_hz`` samples per partner: here they are
read from the partner's running beat lists (``metrics_live.LiveNN``) with a binary
search each, fed to the tracker as batch mode feeds its samples (the running sums are
exact integers, see monitor/linkage.py), and ``LiveLinkageTracker.at_tick`` works the
tick's one window in scalars with the float operations of the array code, in the same
order, so every r and lag keeps batch mode's bits (tests/monitor/test_linkage_live.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right

from monitor.linkage import HR_SCALE, LinkageConfig, LinkageTracker
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


class LiveLinkageTracker(LinkageTracker):
    """A LinkageTracker with ``at_tick``: the one window of a live tick in scalars."""

    def __init__(self, cfg: LinkageConfig) -> None:
        super().__init__(cfg)
        # Per lag: where a's and b's window ends lie among the ends lag_n .. 0 samples
        # before the window's own end (a's end moves back by a's shift, b's by b's).
        lag_n = cfg.max_lag_n
        self._own_at = list(zip((lag_n - self._shift_a[:, 0]).tolist(), (lag_n - self._shift_b[:, 0]).tolist()))
        self._own_by_end: dict[int, tuple[tuple[float, float, float], ...]] = {}

    def at_tick(self, stop_sample: int) -> tuple[float, float]:
        """``at`` for the one window ending at 1-based sample ``stop_sample`` (a live
        tick): its r and lag (s), NaN where data are missing. Scalar arithmetic, the
        same operations in the same order as ``_own``, ``_pearson`` and ``_strongest``,
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
            r = min(max(r, -1.0), 1.0)  # as _pearson clips
            if abs(r) > best_abs:  # strictly: the first lag of largest |r| wins
                best_abs, best_r, best_row = abs(r), r, row
        if best_row < 0:
            return math.nan, math.nan
        return best_r, int(self.lags[best_row]) / cfg.fs_hz

    def _own_terms(self, end: int) -> tuple[tuple[float, float, float], ...]:
        """Both partners' (u, v, w) for the window ending at sample ``end``, as
        ``LinkageTracker._own`` computes them (w NaN where the window is not usable)."""
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
