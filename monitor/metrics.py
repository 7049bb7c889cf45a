"""Per-partner windowed heart metrics at each tick: HR10, RMSSD, SDNN, mean NN, HR slope.

Every tick is evaluated at once from prefix sums over the beats (no loop per tick).
NN intervals are int64 counts of 1/1024 s, so every windowed sum is an exact integer
and a metric depends only on the beats inside its window: evaluating one tick on the
trailing beats (live) and all ticks on the whole session (batch) gives the same bits.
Definitions follow the Task Force of the ESC/NASPE (1996) HRV standards, as computed
by NeuroKit2's ``hrv_time`` (Makowski et al. 2021): SDNN with ddof = 1, RMSSD over
successive differences of adjacent beats only.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Protocol

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND
from monitor.tick_counts import window_bounds

MS_PER_UNIT = 1000.0 / RR_UNITS_PER_SECOND  # exact in binary (0.9765625)
BPM_UNITS = 60 * RR_UNITS_PER_SECOND  # HR in bpm = BPM_UNITS / NN in units
_HR_MILLI_BPM_UNITS = 1000 * BPM_UNITS
_SLOPE_CHUNK_ELEMENTS = 1 << 20  # ticks per pass of the slope's window sums (bounds temporaries)


class MetricsInputError(ValueError):
    """Beats or ticks that the windowed metrics cannot be computed from."""


class NNSeriesLike(Protocol):
    """Beats of one partner: time (s), NN interval (1/1024 s), adjacency to the previous."""

    t_s: np.ndarray
    nn_units: np.ndarray
    contiguous: np.ndarray


@dataclass(frozen=True, eq=False)
class NNSeries:
    """A plain container satisfying NNSeriesLike (t_s float64, nn_units int64, contiguous bool)."""

    t_s: np.ndarray
    nn_units: np.ndarray
    contiguous: np.ndarray


@dataclass(frozen=True)
class MetricsConfig:
    """Windows (s) and the fewest beats a window needs for a metric (else NaN).

    The metric names carry the default window lengths (hr10, rmssd30, ...).
    A window of W s at tick T holds the beats with time in (T - W, T].
    """

    hr_window_s: float = 10.0  # HR10: mean HR
    short_window_s: float = 30.0  # RMSSD, ln RMSSD, SDNN, mean NN "30"
    long_window_s: float = 60.0  # the same "60"
    slope_window_s: float = 15.0  # least-squares HR slope
    min_beats_hr: int = 3
    min_beats_short: int = 5  # RMSSD also needs min_beats_short - 1 successive differences
    min_beats_long: int = 10  # likewise min_beats_long - 1 for RMSSD 60
    min_beats_slope: int = 5

    @property
    def lookback_s(self) -> float:
        """The longest window: live callers pass at least the beats of the last lookback_s."""
        return max(self.hr_window_s, self.short_window_s, self.long_window_s, self.slope_window_s)


@dataclass(frozen=True, eq=False)
class MetricFrame:
    """Per-tick metrics of one partner; every array is float64, one value per tick.

    NaN where the window holds too few beats; ln_rmssd is NaN when RMSSD is 0.
    """

    tick_t_s: np.ndarray
    hr10_bpm: np.ndarray
    n_beats10: np.ndarray
    mean_nn30_ms: np.ndarray
    rmssd30_ms: np.ndarray
    ln_rmssd30: np.ndarray
    sdnn30_ms: np.ndarray
    n_beats30: np.ndarray
    mean_nn60_ms: np.ndarray
    rmssd60_ms: np.ndarray
    ln_rmssd60: np.ndarray
    sdnn60_ms: np.ndarray
    n_beats60: np.ndarray
    hr_slope15_bpm_per_min: np.ndarray

    def columns(self) -> dict[str, np.ndarray]:
        """All arrays by name, tick_t_s first."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Rows of the prefix-sum table that _prefix builds; element [row, k] sums beats [0, k).
_S1, _S2, _D2, _ND = 0, 1, 2, 3  # NN, NN², squared successive differences, their count
_ST, _STT, _STY, _SY = 4, 5, 6, 7  # the slope's quantised t, t², t·HR, HR (see _hr_slope)


def _prefix(t_s: np.ndarray, nn: np.ndarray, contiguous: np.ndarray) -> np.ndarray:
    """Exact int64 prefix sums of every per-beat term a window needs, one row each (the
    rows above): one cumsum builds them all and one gather per window bound reads them
    all, instead of a call per term, per window and per bound."""
    m = len(nn)
    terms = np.empty((8, m), np.int64)
    terms[_S1] = nn
    np.multiply(nn, nn, out=terms[_S2])
    valid = contiguous.copy()
    valid[:1] = False  # the first beat given has no predecessor here
    diff = terms[_D2]
    diff[:1] = 0
    np.subtract(nn[1:], nn[:-1], out=diff[1:])
    diff[~valid] = 0
    np.multiply(diff, diff, out=diff)
    terms[_ND] = valid
    t_q = np.rint(t_s * RR_UNITS_PER_SECOND).astype(np.int64)
    hr_q = (2 * _HR_MILLI_BPM_UNITS + nn) // (2 * nn)  # round(1000 * 61440 / nn)
    terms[_ST] = t_q
    np.multiply(t_q, t_q, out=terms[_STT])
    np.multiply(t_q, hr_q, out=terms[_STY])
    terms[_SY] = hr_q
    out = np.zeros((8, m + 1), np.int64)
    # The slope rows may wrap (see _hr_slope); integer array arithmetic wraps silently.
    np.cumsum(terms, axis=1, out=out[:, 1:])
    return out


def _nan_unless(ok: np.ndarray, value: np.ndarray) -> np.ndarray:
    return np.where(ok, value, np.nan)


def _hrv_windows(
    p: np.ndarray, at_end: np.ndarray, lo: np.ndarray, hi: np.ndarray, min_beats: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Mean NN, RMSSD, ln RMSSD, SDNN (ms) and beat count for windows [lo, hi), one row
    per window (lo has a row per window, hi is shared; at_end is p at hi). Rows are
    worked together: the same element-wise arithmetic, fewer NumPy calls."""
    n = hi - lo
    # np.take of two rows at once: a third of the time of two fancy indexings.
    s1, s2 = at_end[_S1 : _S2 + 1, None] - np.take(p[_S1 : _S2 + 1], lo, axis=1)
    # Differences end at beats lo+1 .. hi-1: both beats of a pair lie in the window.
    first_pair = np.minimum(lo + 1, hi)
    d2, nd = at_end[_D2 : _ND + 1, None] - np.take(p[_D2 : _ND + 1], first_pair, axis=1)
    need = np.array(min_beats, dtype=np.int64)[:, None]
    enough = n >= np.maximum(need, 2)
    enough_d = enough & (nd >= np.maximum(need - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_nn = (s1 * 1000).astype(np.float64) / (n * RR_UNITS_PER_SECOND)
        # n*S2 - S1^2 is an exact integer: no cancellation before the one division.
        # Range: a 60-s window of NN >= 300 ms holds <= 200 beats of <= 2048 units,
        # so n*S2 <= 200^2 * 2048^2 ~ 1.7e11, far inside int64 (9.2e18).
        var = (n * s2 - s1 * s1).astype(np.float64) / (n * (n - 1))
        sdnn = np.sqrt(var) * MS_PER_UNIT
        rmssd = np.sqrt(d2.astype(np.float64) / nd) * MS_PER_UNIT
        ln_rmssd = np.log(np.where(rmssd > 0, rmssd, np.nan))
    return {
        "mean_nn": _nan_unless(enough, mean_nn),
        "rmssd": _nan_unless(enough_d, rmssd),
        "ln_rmssd": _nan_unless(enough_d, ln_rmssd),
        "sdnn": _nan_unless(enough, sdnn),
        "n": n.astype(np.float64),
    }


def _hr_slope(
    p: np.ndarray,
    at_end: np.ndarray,
    tick_t_s: np.ndarray,
    cfg: MetricsConfig,
    lo: np.ndarray,
    hi: np.ndarray,
) -> np.ndarray:
    """Least-squares slope (bpm/min) of instantaneous HR against beat time, per tick,
    over the beats [lo, hi) of each tick's slope window (p, at_end: as _hrv_windows).

    Beat times are quantised to 1/1024 s and HR to milli-bpm, and the times are
    centred on the middle of each window, so the fit's sums are exact integers
    over the window's own beats: the result cannot depend on where the arrays start.
    They come from int64 prefix sums of t, t², t·HR and HR over the beats, shifted to
    the window's centre (Σx = Σt - n·c, Σx² = Σt² - 2c·Σt + n·c², Σxy = Σt·y - c·Σy).
    The prefix sums of a long session may wrap around int64, but wrapping is
    arithmetic modulo 2**64 and the shifted window sums are small, so they are exact.
    """
    w = cfg.slope_window_s
    n = hi - lo
    centre_q = np.rint((tick_t_s - w / 2) * RR_UNITS_PER_SECOND).astype(np.int64)
    sx = np.zeros(len(tick_t_s), np.int64)
    sy, sxx, sxy = sx.copy(), sx.copy(), sx.copy()
    for start in range(0, len(tick_t_s), _SLOPE_CHUNK_ELEMENTS):  # ticks per pass: bounds the temporaries
        part = slice(start, start + _SLOPE_CHUNK_ELEMENTS)
        c, m = centre_q[part], n[part]
        s_t, s_tt, s_ty, s_y = at_end[_ST:, part] - np.take(p[_ST:], lo[part], axis=1)
        sy[part] = s_y
        sx[part] = s_t - m * c
        sxx[part] = s_tt - 2 * c * s_t + m * c * c
        sxy[part] = s_ty - c * s_y
    den = n * sxx - sx * sx  # exact: |x| <= w/2 in 1/1024 s
    num = n.astype(np.float64) * sxy - sx.astype(np.float64) * sy
    ok = (n >= max(cfg.min_beats_slope, 2)) & (den > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # milli-bpm per 1/1024 s -> bpm per minute: * 1024 * 60 / 1000
        slope = num / den * (RR_UNITS_PER_SECOND * 60 / 1000)
    return _nan_unless(ok, slope)


def _validated(beats: NNSeriesLike, tick_t_s: np.ndarray) -> tuple[np.ndarray, ...]:
    t_s = np.asarray(beats.t_s, dtype=np.float64)
    nn = np.asarray(beats.nn_units)
    contiguous = np.asarray(beats.contiguous, dtype=bool)
    ticks = np.asarray(tick_t_s, dtype=np.float64)
    if not (len(t_s) == len(nn) == len(contiguous)):
        raise MetricsInputError(
            f"beat arrays differ in length: t_s {len(t_s)}, nn_units {len(nn)}, "
            f"contiguous {len(contiguous)}"
        )
    if nn.dtype.kind not in "iu":
        raise MetricsInputError(f"nn_units must be integer 1/1024 s counts, got dtype {nn.dtype}")
    nn = nn.astype(np.int64, copy=False)  # only read: no copy when already int64
    if len(nn) and nn.min() < 1:
        bad = int(np.argmin(nn))
        raise MetricsInputError(f"nn_units[{bad}] = {nn[bad]}: NN intervals must be >= 1 unit")
    if not np.isfinite(t_s).all() or not np.isfinite(ticks).all():
        raise MetricsInputError("beat times and tick times must be finite")
    if len(t_s) > 1 and (t_s[1:] < t_s[:-1]).any():
        bad = int(np.argmax(np.diff(t_s) < 0)) + 1
        raise MetricsInputError(f"beat times go back in time at beat {bad}: t_s must be sorted")
    return t_s, nn, contiguous, ticks


def compute_metrics(
    beats: NNSeriesLike,
    tick_t_s: np.ndarray,
    cfg: MetricsConfig = MetricsConfig(),
    available_t_s: np.ndarray | None = None,
) -> MetricFrame:
    """Windowed metrics of one partner at every tick, vectorised over ticks.

    beats: beat times (s since session start, sorted), NN intervals (int64, 1/1024 s,
    already artifact-corrected or not: not this function's concern) and contiguity
    (False where the previous beat is not the adjacent one: no successive
    difference is taken there). tick_t_s: tick times (s). Live callers pass the
    beats of at least the last ``cfg.lookback_s`` before the tick; the values are
    bit-identical to a batch call over the whole session.
    HR10 = 60 * n / sum(NN) over the window (bpm); RMSSD, SDNN, mean NN in ms as
    in NeuroKit2 hrv_time (SDNN ddof = 1); slope in bpm per minute.
    ``available_t_s`` (optional, non-decreasing, per beat): when each beat became
    known. A batch caller passes it so that tick T uses only beats known by T, as a
    live caller (who only has those) does.
    """
    return metrics_and_windows(beats, tick_t_s, cfg, available_t_s)[0]


def metrics_and_windows(
    beats: NNSeriesLike,
    tick_t_s: np.ndarray,
    cfg: MetricsConfig = MetricsConfig(),
    available_t_s: np.ndarray | None = None,
    more_windows_s: tuple[float, ...] = (),
) -> tuple[MetricFrame, np.ndarray, list[np.ndarray]]:
    """compute_metrics, and the beats [lo, hi) of ``more_windows_s`` (s) at each tick,
    from the same counts (a caller with other windowed values need not count again).

    Returns the frame, hi (shared by every window) and one lo per extra window, as
    ``tick_counts.window_bounds`` gives them.
    """
    t_s, nn, contiguous, ticks = _validated(beats, tick_t_s)
    # A window [lo, hi) holds the beats in (tick - window, tick] known at the tick.
    windows_s = (cfg.hr_window_s, cfg.short_window_s, cfg.long_window_s, cfg.slope_window_s)
    ends, starts = window_bounds(t_s, ticks, (*windows_s, *more_windows_s), available_t_s)
    lo10, lo30, lo60, lo_slope = starts[:4]
    p = _prefix(t_s, nn, contiguous)
    at_end = np.take(p, ends, axis=1)
    n10 = ends - lo10
    s10 = at_end[_S1] - np.take(p[_S1], lo10)
    with np.errstate(divide="ignore", invalid="ignore"):
        hr10 = (n10 * BPM_UNITS).astype(np.float64) / s10
    hr10 = _nan_unless(n10 >= max(cfg.min_beats_hr, 1), hr10)

    hrv = _hrv_windows(p, at_end, np.stack((lo30, lo60)), ends, (cfg.min_beats_short, cfg.min_beats_long))
    short, long = ({k: v[row] for k, v in hrv.items()} for row in (0, 1))
    frame = MetricFrame(
        tick_t_s=ticks,
        hr10_bpm=hr10,
        n_beats10=n10.astype(np.float64),
        mean_nn30_ms=short["mean_nn"],
        rmssd30_ms=short["rmssd"],
        ln_rmssd30=short["ln_rmssd"],
        sdnn30_ms=short["sdnn"],
        n_beats30=short["n"],
        mean_nn60_ms=long["mean_nn"],
        rmssd60_ms=long["rmssd"],
        ln_rmssd60=long["ln_rmssd"],
        sdnn60_ms=long["sdnn"],
        n_beats60=long["n"],
        hr_slope15_bpm_per_min=_hr_slope(p, at_end, ticks, cfg, lo_slope, ends),
    )
    return frame, ends, starts[4:]


def compute_metrics_by_partner(
    beats_by_partner: Mapping[str, NNSeriesLike],
    tick_t_s: np.ndarray,
    cfg: MetricsConfig = MetricsConfig(),
) -> dict[str, MetricFrame]:
    """compute_metrics for each partner ("a", "b") on the same ticks (batch entry point)."""
    return {key: compute_metrics(beats, tick_t_s, cfg) for key, beats in beats_by_partner.items()}


def session_ticks(duration_s: float) -> np.ndarray:
    """Tick times of a session: whole seconds 1, 2, ... up to duration_s (float64)."""
    return np.arange(1, int(np.floor(duration_s)) + 1, dtype=np.float64)
