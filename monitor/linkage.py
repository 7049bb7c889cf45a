"""Linkage: how the two partners' heart rates move together, second by second.

Following DESIGN.md: both HR series are resampled to 4 Hz, each 30 s window is linearly
detrended, and the Pearson correlation of the residuals is taken at every lag within
±5 s; the linkage is the correlation at the lag whose magnitude is largest. Positive
means in phase, negative anti-phase. (Windowed cross-correlation of interbeat series is
the usual dyadic-synchrony measure, e.g. Reed et al. 2013; Palumbo et al. 2017 review.)

Every windowed sum comes from running prefix sums of whole numbers: HR is summed in
fixed point, in units of 1/16384 bpm (``HR_SCALE``), a thousand times finer than the
HR's own step (one NN unit is 0.07 bpm at 70 bpm). Integer sums are exact whatever
their order, so a live run that extends them one tick at a time holds the same values
as a batch run that builds them at once, window sums carry no rounding noise however
long the session, and the running sums take a sixth of the time of float ones. A
window's sums wrap around int64 only beyond ~10 days; their differences stay exact.

Here: the settings, the fixed point, and each window's float arithmetic
(``window_terms``, ``pearson``, ``strongest``). Batch mode works a whole session with
them in ``linkage_batch``; live mode keeps running sums and works one window per tick
in scalars, the same operations in the same order, in ``linkage_live``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.resample import UNITS_PER_MINUTE, resample_hr

__all__ = ["HR_SCALE", "UNITS_PER_MINUTE", "LinkageConfig", "fixed_point", "pearson", "resample_hr", "strongest", "window_terms"]
HR_SCALE = 16384  # fixed-point units per bpm of the summed HR (see the module notes)


@dataclass(frozen=True)
class LinkageConfig:
    """Linkage settings.

    fs_hz: resampling rate of the HR series (samples per second; ticks fall on samples).
    window_s: correlation window.
    max_lag_s: lags searched on either side.
    max_hold_s: an HR sample older than this since the last beat is missing (a gap).
    delay_s: the linkage given at a tick is that of the window ending this many whole
        seconds earlier, whose beats are all known by then. A beat is final two beats
        after it (artifact correction looks that far ahead), and the notification
        carrying that later beat can come a second after it: 2 to 3 s after the beat.
        Without the delay, the newest beat a sample could count on was often more than
        max_hold_s old, the sample counted as missing, and most windows held one (the
        calm fixture had a linkage at 3 % of its ticks).
    hr_offset_bpm: subtracted before summing, to keep the sums small.
    min_sd_bpm: a window whose detrended HR has a smaller SD (bpm) is flat: it has no
        variation to correlate, so the linkage is NaN. The smallest real variation,
        one beat one NN unit off (0.015 bpm at 30 bpm), gives an SD of about 0.003 bpm;
        a flat window's sums are exact, so its SD is 0 up to the float rounding of
        the final arithmetic (~1e-6 bpm).
    """

    fs_hz: int = 4
    window_s: float = 30.0
    max_lag_s: float = 5.0
    max_hold_s: float = 3.0
    delay_s: int = 3
    hr_offset_bpm: float = 70.0
    min_sd_bpm: float = 0.001

    def __post_init__(self) -> None:
        if not isinstance(self.fs_hz, int) or isinstance(self.fs_hz, bool) or self.fs_hz < 1:
            raise ValueError(f"fs_hz must be a whole number of samples per second, got {self.fs_hz!r}")
        if not isinstance(self.delay_s, int) or isinstance(self.delay_s, bool) or self.delay_s < 0:
            raise ValueError(f"delay_s must be a whole number of seconds >= 0, got {self.delay_s!r}")
        if self.window_n < 3:
            raise ValueError(f"window_s = {self.window_s} s gives fewer than 3 samples at {self.fs_hz} Hz")
        if self.max_lag_s < 0 or self.max_hold_s <= 0 or self.min_sd_bpm <= 0:
            raise ValueError(
                "need max_lag_s >= 0, max_hold_s > 0 and min_sd_bpm > 0, got "
                f"{self.max_lag_s}, {self.max_hold_s}, {self.min_sd_bpm}"
            )

    @property
    def window_n(self) -> int:
        return int(round(self.window_s * self.fs_hz))

    @property
    def max_lag_n(self) -> int:
        return int(round(self.max_lag_s * self.fs_hz))


def window_terms(
    s_x: np.ndarray, s_xx: np.ndarray, s_tx: np.ndarray, s_ok: np.ndarray, cfg: LinkageConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partner's terms of windows of ``cfg.window_n`` samples, from their integer
    sums (HR_SCALE units): Σx, Σx², Σt·x with t counted from the window's first sample
    (0, 1, ...), and the count of samples present.

    With t centred, the linear fit's residuals of two windows have cross products
    Σ x_a x_b - Σx_a Σx_b / n - Σt·x_a Σt·x_b / Stt, and sums of squares of the same
    form. Returned, so that a correlation is three products (``pearson``): u = Σx / √n,
    v = centred Σt·x / √Stt, and w = 1 / √(residual sum of squares), NaN where the
    window is not full or too flat to correlate. Batch and live (in scalars) evaluate
    these same operations in this order.
    """
    n = cfg.window_n
    t_mean = (n - 1) / 2
    stt = n * (n * n - 1) / 12.0
    s1 = s_x.astype(np.float64)  # exact: a window's sums stay far below 2**53
    ct = s_tx - t_mean * s1  # Σt·x exact in integers, the centring in floats
    u = s1 / np.sqrt(n)
    v = ct / np.sqrt(stt)
    rss = s_xx - u * u - v * v  # in HR_SCALE² units, as every term here: r is unitless
    good = (s_ok == n) & (rss > n * (cfg.min_sd_bpm * HR_SCALE) ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(good, 1.0 / np.sqrt(np.where(good, rss, 1.0)), np.nan)
    return u, v, inv


def strongest(r_all: np.ndarray, cfg: LinkageConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per window (column), the r of largest magnitude over the lags (rows, from
    -max_lag_n up), the first such lag on a tie, and that lag (s); NaN where no lag
    has an r."""
    size = np.abs(r_all)
    np.fmax(size, -1.0, out=size)  # NaN (no r) becomes -1: below every real |r|
    pick = np.argmax(size, axis=0)
    r_best = r_all[pick, np.arange(r_all.shape[1])]
    lag = (pick - cfg.max_lag_n) / cfg.fs_hz
    return r_best, np.where(np.isfinite(r_best), lag, np.nan)


def fixed_point(hr_bpm: np.ndarray, offset_bpm: float) -> tuple[np.ndarray, np.ndarray]:
    """HR less the offset in HR_SCALE units (int64, 0 where missing), and 1 where the
    sample is there, else 0."""
    ok = np.isfinite(hr_bpm)
    scaled = np.rint(np.where(ok, hr_bpm - offset_bpm, 0.0) * HR_SCALE)
    return scaled.astype(np.int64), ok.astype(np.int64)


def pearson(sab, ua, ub, va, vb, wa, wb, out: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of two detrended windows from Σ x_a x_b (integer) and each window's
    terms (see ``window_terms``); NaN where either window is not usable.
    Writes to ``out`` if given."""
    r = np.subtract(sab, ua * ub, out=out)
    r -= va * vb
    r *= wa
    r *= wb
    # |r| <= 1 in exact arithmetic; rounding may step just outside (as np.corrcoef clips).
    # np.clip is max then min in one pass, and keeps NaN as they do.
    return np.clip(r, -1.0, 1.0, out=r)
