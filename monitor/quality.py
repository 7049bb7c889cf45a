"""Signal quality per tick: how much was corrected, and how long the signal was gone.

DESIGN.md: more than 5 % corrected in the last 30 s, or a gap over 3 s, is low quality,
and low quality never starts a pattern or a prompt. An artifact is counted once: an
ectopic beat and the compensatory beat corrected with it are one event, not two, so
the figure is the share of beats at which a run of corrected beats starts. (Counting
both beats of a PVC pair, a single PVC in a 30 s window at 70 bpm is already 5.7 %.)

Every function takes an optional ``available_t_s``: when each beat became known. A
batch caller passes it so that tick T counts only beats known by T, as a live caller
(who only has those) does.
"""

from __future__ import annotations

import numpy as np

from monitor.artifacts import ArtifactConfig, ArtifactInputError, check_times
from monitor.tick_counts import window_bounds


def artifact_starts(corrected: np.ndarray, contiguous: np.ndarray) -> np.ndarray:
    """True at each corrected beat that starts a run of corrected beats."""
    corr = np.asarray(corrected, dtype=bool)
    prev = np.zeros_like(corr)
    prev[1:] = corr[:-1] & np.asarray(contiguous, dtype=bool)[1:]
    return corr & ~prev


def _window_bounds(
    tick_t_s: np.ndarray, beat_t_s: np.ndarray, window_s: float, available_t_s: np.ndarray | None
):
    ticks = np.asarray(tick_t_s, dtype=np.float64)
    t = np.asarray(beat_t_s, dtype=np.float64)
    check_times(t)
    hi, (lo,) = window_bounds(t, ticks, (window_s,), available_t_s)
    return ticks, t, lo, hi


def correction_share(
    tick_t_s: np.ndarray,
    beat_t_s: np.ndarray,
    corrected: np.ndarray,
    window_s: float = 30.0,
    available_t_s: np.ndarray | None = None,
) -> np.ndarray:
    """Share (0-1) of flagged beats among the beats in (T - window_s, T], per tick T (s).

    beat_t_s: sorted beat times (s); corrected: bool per beat (CorrectedBeats.corrected,
    or artifact_starts of it to count each artifact once).
    NaN where the window holds no beat. Integer prefix sums: exact, live or batch.
    """
    ticks, t, lo, hi = _window_bounds(tick_t_s, beat_t_s, window_s, available_t_s)
    corr = np.asarray(corrected, dtype=bool)
    if corr.shape != t.shape:
        raise ArtifactInputError(f"corrected has shape {corr.shape}, beat_t_s {t.shape}")
    return share_in_windows(corr, lo, hi)


def share_in_windows(flagged: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Share (0-1) of flagged beats among the beats [lo, hi) of each window (NaN when
    empty): correction_share once the windows are known (stages.partner_ticks has them
    from the metrics' count)."""
    done = np.concatenate(([0], np.cumsum(flagged, dtype=np.int64)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hi > lo, (done[hi] - done[lo]) / (hi - lo), np.nan)


def max_gap_s(
    tick_t_s: np.ndarray,
    beat_t_s: np.ndarray,
    window_s: float = 30.0,
    available_t_s: np.ndarray | None = None,
) -> np.ndarray:
    """Longest time without a beat (s) touching (T - window_s, T], per tick T (s).

    Every interval between consecutive beats that ends inside the window counts in
    full, and so does the open one from the last beat to T; infinite before the first
    beat. Range maxima come from a sparse table: no loop over ticks.
    """
    ticks, t, lo, hi = _window_bounds(tick_t_s, beat_t_s, window_s, available_t_s)
    if len(t) == 0:
        return np.full(len(ticks), np.inf)
    tail = np.where(hi > 0, ticks - np.take(t, np.maximum(hi - 1, 0)), np.inf)
    gaps = np.diff(t)  # gaps[k - 1] ends at beat k
    a, b = np.maximum(lo, 1) - 1, hi - 1  # gaps a .. b-1 end at beats max(lo, 1) .. hi-1
    ok = b > a
    if not ok.any():  # no window holds two beats: only the time since the last beat
        return tail
    # Every tick is looked up, those without a gap (not ok) at a clipped place whose
    # value is then dropped: cheaper than picking the others out and back in.
    widths = np.maximum(b - a, 1)
    # Levels up to the widest window's: a 30-s window spans some 2**6 gaps, not all.
    levels = int(np.log2(widths.max())) + 1
    table = np.full((levels, len(gaps)), -np.inf)  # table[k, i] = max(gaps[i : i + 2**k])
    table[0] = gaps
    for k in range(1, levels):
        width = len(gaps) - 2**k + 1
        half = 2 ** (k - 1)
        table[k, :width] = np.maximum(table[k - 1, :width], table[k - 1, half : half + width])
    level = np.log2(widths).astype(np.int64)
    row = level * len(gaps)  # table[level, i] is table.ravel()[row + i]
    first = np.take(table, row + a, mode="clip")
    last = np.take(table, row + b - np.left_shift(1, level), mode="clip")
    inner = np.where(ok, np.maximum(first, last), -np.inf)
    return np.maximum(inner, tail)


def low_quality(
    tick_t_s: np.ndarray,
    nn_t_s: np.ndarray,
    nn_corrected: np.ndarray,
    config: ArtifactConfig = ArtifactConfig(),
) -> np.ndarray:
    """True per tick when the last ``quality_window_s`` hold more than
    ``max_corrected_share`` corrected beats or a gap over ``max_gap_s`` (DESIGN.md).

    Counts every corrected beat; the pipeline passes artifact_starts to count each
    artifact once."""
    share = correction_share(tick_t_s, nn_t_s, nn_corrected, config.quality_window_s)
    gap = max_gap_s(tick_t_s, nn_t_s, config.quality_window_s)
    return (np.nan_to_num(share, nan=0.0) > config.max_corrected_share) | (gap > config.max_gap_s)
