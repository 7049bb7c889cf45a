"""The detector's per-tick conditions, computed for many ticks at once.

Each partner's rise is judged against the lowest HR10 of their last
``rise_lookback_s`` (the "floor"), restarted whenever their data are missing, and a
rise starts ("onset") at the last tick it was less than ``onset_bpm`` above that floor.
Batch mode computes floors and onsets for all ticks here, vectorised; live mode keeps
them incrementally in the detector and calls ``conditions`` with one tick. The
comparisons are the same float operations on the same numbers, so both agree exactly.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

KEYS: tuple[tuple[str, str | None], ...] = (
    ("divergence", "a"),
    ("divergence", "b"),
    ("escalation", None),
    ("flooding", "a"),
    ("flooding", "b"),
)


def rolling_floor(delta_bpm: np.ndarray, known: np.ndarray, n_look: int) -> np.ndarray:
    """Lowest value of the last ``n_look`` known ticks, never reaching back past a tick
    with missing data; NaN where the tick itself is unknown."""
    n = len(delta_bpm)
    idx = np.arange(n)
    last_unknown = np.maximum.accumulate(np.where(known, -1, idx)) if n else idx
    padded = np.concatenate([np.full(n_look - 1, np.inf), np.where(known, delta_bpm, np.inf)])
    floor = np.empty(n)
    step = 4096  # rows per chunk: bounds the window matrix's memory on long sessions
    offsets = np.arange(n_look)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        win = sliding_window_view(padded, n_look)[rows]
        first = idx[rows, None] - (n_look - 1) + offsets  # original index of each column
        win = np.where(first > last_unknown[rows, None], win, np.inf)
        floor[rows] = win.min(axis=1)
    return np.where(known, floor, np.nan)


def onset_times(t_s: np.ndarray, delta_bpm: np.ndarray, floor_bpm: np.ndarray, known: np.ndarray, onset_bpm: float) -> np.ndarray:
    """Time (s) of the last tick at or before each tick that was not (yet) risen."""
    with np.errstate(invalid="ignore"):
        not_risen = ~known | (delta_bpm - floor_bpm < onset_bpm)
    idx = np.maximum.accumulate(np.where(not_risen, np.arange(len(t_s)), -1))
    return np.where(idx >= 0, t_s[np.maximum(idx, 0)], -np.inf)


def conditions(
    delta: dict[str, np.ndarray],
    hr10: dict[str, np.ndarray],
    floor: dict[str, np.ndarray],
    onset: dict[str, np.ndarray],
    cfg,
) -> dict[tuple[str, str | None], np.ndarray]:
    """Per pattern key, whether its entry condition holds at each tick (bool arrays).

    ``cfg`` is a DetectorConfig. Divergence: one partner risen by rise_bpm (and
    rise_min_bpm above their floor) while the other stays at most other_max_bpm up.
    Escalation: both risen by escalation_bpm, their onsets within onset_gap_s.
    Flooding: HR10 at or above flood_hr_bpm, or flood_delta_bpm above baseline.
    """
    with np.errstate(invalid="ignore"):
        known = {p: np.isfinite(delta[p]) & np.isfinite(hr10[p]) for p in ("a", "b")}
        both = known["a"] & known["b"]

        def rising(p: str, level: float) -> np.ndarray:
            return (delta[p] >= level) & (delta[p] - floor[p] >= cfg.rise_min_bpm)

        cond = {
            ("divergence", "a"): both & rising("a", cfg.rise_bpm) & (delta["b"] <= cfg.other_max_bpm),
            ("divergence", "b"): both & rising("b", cfg.rise_bpm) & (delta["a"] <= cfg.other_max_bpm),
            ("escalation", None): both
            & rising("a", cfg.escalation_bpm)
            & rising("b", cfg.escalation_bpm)
            & (np.abs(onset["a"] - onset["b"]) <= cfg.onset_gap_s),
        }
        for p in ("a", "b"):
            cond[("flooding", p)] = known[p] & ((hr10[p] >= cfg.flood_hr_bpm) | (delta[p] >= cfg.flood_delta_bpm))
    return cond
