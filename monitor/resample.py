"""The 4 Hz heart-rate series that linkage correlates, resampled from NN beats.

A step hold: each sample takes the HR of the latest beat at or before it, counting only
beats already final ``delay_s`` seconds after the whole second that first covers the
sample (the tick at which live mode works it out), so a sample never changes once
computed and live and batch runs resample alike (linkage.py uses it; the exports write
the same series).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from monitor.tick_counts import count_at_or_before

if TYPE_CHECKING:
    from monitor.linkage import LinkageConfig

UNITS_PER_MINUTE = 60 * 1024  # 60 s in the strap's 1/1024 s unit


def resample_hr(
    beat_t_s: np.ndarray,
    nn_units: np.ndarray,
    available_t_s: np.ndarray,
    first_sample: int,
    stop_sample: int,
    cfg: LinkageConfig,
) -> np.ndarray:
    """Instantaneous HR (bpm) on the grid j / fs_hz for j in [first_sample, stop_sample).

    Each sample holds the HR of the latest beat at or before it (step hold: causal, so a
    sample never changes once computed), counting only beats already available
    ``cfg.delay_s`` after the whole second that first covers the sample. NaN where no
    beat is within max_hold_s.
    """
    j = np.arange(first_sample, stop_sample, dtype=np.int64)
    if len(j) == 0:
        return np.zeros(0)
    s_t = j / cfg.fs_hz
    tick_t = np.ceil(s_t)
    # Beats available by each whole second, looked up once per second, not per sample.
    seconds = np.arange(tick_t[0], tick_t[-1] + 1) + cfg.delay_s
    available = count_at_or_before(available_t_s, seconds)[(tick_t - tick_t[0]).astype(np.int64)]
    last = np.minimum(_beats_by_sample(beat_t_s, first_sample, stop_sample, cfg.fs_hz), available) - 1
    # Per beat, then picked per sample; index -1 (no beat yet) picks the NaN / -inf
    # appended at the end, which makes the sample missing.
    hr = np.append(UNITS_PER_MINUTE / nn_units, np.nan)
    beat_t = np.append(beat_t_s, -np.inf)
    fresh = s_t - beat_t[last] <= cfg.max_hold_s
    return np.where(fresh, hr[last], np.nan)


def _beats_by_sample(beat_t_s: np.ndarray, first_sample: int, stop_sample: int, fs_hz: int) -> np.ndarray:
    """How many beats lie at or before each sample time j / fs_hz, j in [first, stop):
    ``np.searchsorted(beat_t_s, j / fs_hz, side="right")``, counted per beat instead of
    searched per sample (a batch has several samples per beat)."""
    # First sample at or after each beat: ceil(t * fs), give or take one after rounding,
    # settled by the same j / fs comparison the search makes.
    first_at = np.ceil(beat_t_s * fs_hz).astype(np.int64)
    first_at -= (first_at - 1) / fs_hz >= beat_t_s
    first_at += first_at / fs_hz < beat_t_s
    m = stop_sample - first_sample
    counts = np.bincount(np.clip(first_at - first_sample, 0, m), minlength=m + 1)
    return np.cumsum(counts[:m])
