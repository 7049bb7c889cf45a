"""One tick's windowed heart metrics from running sums, for live mode.

``metrics.compute_metrics`` evaluates many ticks at once from prefix sums it builds on
every call; a live tick would rebuild them over a minute of beats for one tick. Here
the same exact integer prefix sums grow by one entry per final beat (Python integers:
exact, and they never wrap), and a tick reads its windows with a binary search and a
few subtractions. The float64 operations after the integer sums are those of
``metrics`` (same operands, same order), so every value has the same bits as batch
mode's; tests/monitor/test_metrics_live.py checks it against ``compute_metrics``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import fields

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND
from monitor.metrics import BPM_UNITS, MS_PER_UNIT, MetricFrame, MetricsConfig, MetricsInputError

METRIC_NAMES = tuple(f.name for f in fields(MetricFrame))[1:]  # MetricFrame's order, no tick_t_s
_HR_MILLI_BPM_UNITS = 1000 * BPM_UNITS
_SLOPE_SCALE = RR_UNITS_PER_SECOND * 60 / 1000  # milli-bpm per 1/1024 s -> bpm per minute
_TRIM_BEATS = 256  # forget old beats in steps this large, so appends stay cheap
_NAN = math.nan


def _log(x: float) -> float:
    """ln x as NumPy computes it for an array: NumPy may use its own SIMD logarithm,
    which need not match the C library's math.log in the last bit."""
    return float(np.log(np.array([x]))[0])


class LiveNN:
    """One partner's final NN beats, kept as exact running sums for one-tick metrics.

    Beats come in time order with their NN interval (1/1024 s), contiguity, whether a
    run of corrected beats starts there (quality.artifact_starts) and when they became
    final (s). Beats older than any window are forgotten (``trim``); the sums are
    rebased then, so memory and integer sizes stay bounded over any session length.
    """

    def __init__(self, cfg: MetricsConfig) -> None:
        self.cfg = cfg
        self.t_s: list[float] = []
        self.nn_units: list[int] = []
        self.available_t_s: list[float] = []
        self.dropped = 0  # beats forgotten from the front
        # Element k sums the kept beats [0, k): nn, nn², squared successive differences
        # and their count, artifact starts, and the slope's t, t², t·HR, HR (quantised).
        self._sums: tuple[list[int], ...] = tuple([0] for _ in range(9))
        self._prev_nn: int | None = None

    def __len__(self) -> int:
        return self.dropped + len(self.t_s)

    def append(self, t_s: float, nn_units: int, contiguous: bool, artifact_start: bool, available_t_s: float) -> None:
        """Add the next final beat (the checks of metrics._validated, one beat at a time)."""
        nn = int(nn_units)
        t = float(t_s)
        if nn < 1 or not math.isfinite(t) or (self.t_s and t < self.t_s[-1]):
            raise MetricsInputError(
                f"final beat {len(self)} at t = {t} s, NN {nn} units: NN intervals must be >= 1 unit "
                f"and beat times finite and sorted (the beat before at {self.t_s[-1] if self.t_s else None} s)"
            )
        # As metrics._prefix: the session's first beat has no predecessor to differ from.
        paired = bool(contiguous) and self._prev_nn is not None
        diff = nn - self._prev_nn if paired else 0
        t_q = round(t * RR_UNITS_PER_SECOND)  # round half to even, as np.rint
        hr_q = (2 * _HR_MILLI_BPM_UNITS + nn) // (2 * nn)
        s1, s2, d2, nd, starts, st, stt, sty, sy = self._sums
        s1.append(s1[-1] + nn)
        s2.append(s2[-1] + nn * nn)
        d2.append(d2[-1] + diff * diff)
        nd.append(nd[-1] + paired)
        starts.append(starts[-1] + bool(artifact_start))
        st.append(st[-1] + t_q)
        stt.append(stt[-1] + t_q * t_q)
        sty.append(sty[-1] + t_q * hr_q)
        sy.append(sy[-1] + hr_q)
        self.t_s.append(t)
        self.nn_units.append(nn)
        self.available_t_s.append(float(available_t_s))
        self._prev_nn = nn

    def trim(self, before_t_s: float) -> None:
        """Forget beats before ``before_t_s`` (s) once there are many; callers pass a
        time no window of a later tick reaches back to."""
        # The last beat at or before it stays, so the kept beats never start after a
        # tick: every count of beats at or before a later tick stays right.
        drop = bisect_right(self.t_s, before_t_s) - 1
        if drop < _TRIM_BEATS:
            return
        del self.t_s[:drop], self.nn_units[:drop], self.available_t_s[:drop]
        for i, sums in enumerate(self._sums):
            base = sums[drop]
            self._sums[i][:] = [v - base for v in sums[drop:]]
        self.dropped += drop

    def _end(self, tick_t_s: float) -> int:
        """One past the last kept beat at or before the tick and known by then."""
        return min(bisect_right(self.t_s, tick_t_s), bisect_right(self.available_t_s, tick_t_s))

    def _start(self, tick_t_s: float, window_s: float, hi: int) -> int:
        """First kept beat of the window (tick - window, tick] that ends at ``hi``."""
        return bisect_right(self.t_s, tick_t_s - window_s, 0, hi)

    def metrics_at(self, tick_t_s: float) -> tuple[float, ...]:
        """The tick's metrics, in METRIC_NAMES order (bpm, ms, beats, bpm/min; NaN
        where a window holds too few beats), bit for bit compute_metrics' values."""
        cfg, t = self.cfg, float(tick_t_s)
        hi = self._end(t)
        s1 = self._sums[0]
        lo = self._start(t, cfg.hr_window_s, hi)
        n10 = hi - lo
        hr10 = float(n10 * BPM_UNITS) / float(s1[hi] - s1[lo]) if n10 >= max(cfg.min_beats_hr, 1) else _NAN
        short = self._hrv(self._start(t, cfg.short_window_s, hi), hi, cfg.min_beats_short)
        long = self._hrv(self._start(t, cfg.long_window_s, hi), hi, cfg.min_beats_long)
        return (hr10, float(n10), *short, *long, self._slope(t, hi))

    def _hrv(self, lo: int, hi: int, min_beats: int) -> tuple[float, float, float, float, float]:
        """Mean NN, RMSSD, ln RMSSD, SDNN (ms) and beat count of beats [lo, hi), with
        metrics._hrv_windows' arithmetic."""
        s1, s2, d2, nd = self._sums[:4]
        n = hi - lo
        if n < max(min_beats, 2):
            return _NAN, _NAN, _NAN, _NAN, float(n)
        w1, w2 = s1[hi] - s1[lo], s2[hi] - s2[lo]
        mean_nn = float(w1 * 1000) / float(n * RR_UNITS_PER_SECOND)
        sdnn = math.sqrt(float(n * w2 - w1 * w1) / float(n * (n - 1))) * MS_PER_UNIT
        first_pair = min(lo + 1, hi)  # differences whose both beats lie in the window
        pairs = nd[hi] - nd[first_pair]
        if pairs < max(min_beats - 1, 1):
            return mean_nn, _NAN, _NAN, sdnn, float(n)
        rmssd = math.sqrt(float(d2[hi] - d2[first_pair]) / float(pairs)) * MS_PER_UNIT
        ln_rmssd = _log(rmssd if rmssd > 0 else _NAN)
        return mean_nn, rmssd, ln_rmssd, sdnn, float(n)

    def _slope(self, t: float, hi: int) -> float:
        """Least-squares HR slope (bpm/min) over the slope window, as metrics._hr_slope:
        exact centred integer sums, then the same float64 steps."""
        cfg = self.cfg
        w = cfg.slope_window_s
        lo = self._start(t, w, hi)
        n = hi - lo
        if n < max(cfg.min_beats_slope, 2):
            return _NAN
        _, _, _, _, _, st, stt, sty, sy_all = self._sums
        c = round((t - w / 2) * RR_UNITS_PER_SECOND)
        s_t = st[hi] - st[lo]
        sy = sy_all[hi] - sy_all[lo]
        sx = s_t - n * c
        sxx = (stt[hi] - stt[lo]) - 2 * c * s_t + n * c * c
        sxy = (sty[hi] - sty[lo]) - c * sy
        den = n * sxx - sx * sx
        if den <= 0:
            return _NAN
        num = float(n) * float(sxy) - float(sx) * float(sy)
        return num / float(den) * _SLOPE_SCALE

    def correction_share_at(self, tick_t_s: float, window_s: float) -> float:
        """Share (0-1) of artifact starts among the beats in (tick - window_s, tick],
        NaN without beats: quality.correction_share's value for one tick."""
        t = float(tick_t_s)
        hi = self._end(t)
        lo = self._start(t, window_s, hi)
        if hi <= lo:
            return _NAN
        starts = self._sums[4]
        return float(starts[hi] - starts[lo]) / float(hi - lo)
