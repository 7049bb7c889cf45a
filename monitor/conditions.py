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

KEYS: tuple[tuple[str, str | None], ...] = (
    ("divergence", "a"),
    ("divergence", "b"),
    ("escalation", None),
    ("flooding", "a"),
    ("flooding", "b"),
)


def rolling_floor(delta_bpm: np.ndarray, known: np.ndarray, n_look: int) -> np.ndarray:
    """Lowest value of the last ``n_look`` known ticks, never reaching back past a tick
    with missing data; NaN where the tick itself is unknown.

    A sparse table: level k holds the minimum of the 2**k ticks ending at each tick,
    and any window of length L is the minimum of two overlapping level-k blocks (k the
    largest with 2**k <= L). A minimum picks one of the values, so this is exact.
    """
    n = len(delta_bpm)
    idx = np.arange(n)
    last_unknown = np.maximum.accumulate(np.where(known, -1, idx)) if n else idx
    length = np.minimum(n_look, idx - last_unknown)  # window length; 0 where unknown
    n_levels = max(n_look.bit_length(), 1)  # levels k with 2**k <= n_look, level 0 always
    table = np.empty((n_levels, n))  # filled level by level: no stacking afterwards
    table[0] = np.where(known, delta_bpm, np.inf)
    for k in range(1, n_levels):
        w, prev = 2 ** (k - 1), table[k - 1]
        table[k, :w] = prev[:w]
        np.minimum(prev[w:], prev[:-w], out=table[k, w:])
    level = np.frexp(np.maximum(length, 1))[1] - 1  # the largest k with 2**k <= length
    # Both blocks read from the flat table (row * n + column): cheaper than 2-D indexing.
    flat, row = table.reshape(-1), level * n
    floor = np.minimum(flat[row + idx], flat[row + np.minimum(idx - length + (1 << level), idx)])
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


def calm_runs(delta: dict[str, np.ndarray], hr10: dict[str, np.ndarray], recovery_bpm: float) -> np.ndarray:
    """Per tick, how many ticks in a row, up to and including it, both partners were
    known and within recovery_bpm (bpm) of baseline: the detector's recovery calm
    (0 where not calm). Known is tested as ``x == x``, as the detector does."""
    n = len(delta["a"])
    calm = np.ones(n, dtype=bool)
    for p in ("a", "b"):
        calm &= (delta[p] == delta[p]) & (hr10[p] == hr10[p]) & (np.abs(delta[p]) <= recovery_bpm)
    idx = np.arange(n)
    return idx - np.maximum.accumulate(np.where(calm, -1, idx)) if n else idx


def next_true(flags: np.ndarray) -> np.ndarray:
    """Per tick, the index of the first True at or after it (len(flags) if none)."""
    n = len(flags)
    return np.minimum.accumulate(np.where(flags, np.arange(n), n)[::-1])[::-1] if n else np.arange(0)


def gone_code(key: tuple[str, str | None], delta: dict[str, np.ndarray], hr10: dict[str, np.ndarray], cfg) -> np.ndarray:
    """Per tick, whether an active pattern ``key`` is clearly gone: 1 yes, 0 no, -1 when
    data are missing (the detector's ``_gone`` for many ticks: same comparisons)."""
    pattern, p = key
    with np.errstate(invalid="ignore"):
        if pattern == "flooding":
            usable = (delta[p] == delta[p]) & (hr10[p] == hr10[p])
            gone = (hr10[p] < cfg.flood_hr_bpm - cfg.flood_exit_margin_bpm) & (delta[p] < cfg.flood_delta_bpm - cfg.flood_exit_margin_bpm)
        else:
            usable = (delta["a"] == delta["a"]) & (hr10["a"] == hr10["a"]) & (delta["b"] == delta["b"]) & (hr10["b"] == hr10["b"])
            if pattern == "divergence":
                gone = (delta[p] < cfg.rise_exit_bpm) | (delta["b" if p == "a" else "a"] > cfg.other_exit_bpm)
            else:
                gone = (delta["a"] < cfg.rise_exit_bpm) | (delta["b"] < cfg.rise_exit_bpm)
    return np.where(usable, gone.astype(np.int8), np.int8(-1))
