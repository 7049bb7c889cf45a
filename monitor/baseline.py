"""Each partner's calm baseline, and activation measured against it.

DESIGN.md: a settle-in at the start (default 3 min, at least 2) gives the mean and SD of
HR10 and of ln RMSSD; activation is HR10 above that mean in baseline SDs (SD floored at
2 bpm so a very steady baseline does not turn small changes into large scores); the
vagal index is baseline ln RMSSD minus the current one (positive = less vagal tone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BaselineConfig:
    """Settle-in and activation settings.

    settle_in_s: length of the settle-in (no prompt before it ends), seconds.
    min_settle_in_s: the shortest settle-in allowed, seconds.
    min_valid_share: share of settle-in ticks that must have good data; if fewer, the
        settle-in is extended until that many good ticks are in hand.
    sd_floor_bpm: the smallest HR SD used to scale activation, bpm.
    """

    settle_in_s: float = 180.0
    min_settle_in_s: float = 120.0
    min_valid_share: float = 0.6
    sd_floor_bpm: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.min_valid_share <= 1.0:
            raise ValueError(f"min_valid_share must be in (0, 1], got {self.min_valid_share}")
        if not self.sd_floor_bpm > 0.0:
            # the floor is what keeps activation finite when the baseline SD is 0
            raise ValueError(f"sd_floor_bpm must be positive, got {self.sd_floor_bpm} bpm")
        if self.settle_in_s < self.min_settle_in_s:
            raise ValueError(
                f"settle_in_s = {self.settle_in_s} s is shorter than the minimum "
                f"{self.min_settle_in_s} s"
            )

    @property
    def min_good_ticks(self) -> int:
        """Good ticks (1 s each) a settle-in needs: min_valid_share of settle_in_s.

        Rounded to 1e-9 before the ceiling, because products such as 180 * 0.55 come
        out as 99.00000000000001 in binary floating point and would ask for one tick more.
        """
        return math.ceil(round(self.settle_in_s * self.min_valid_share, 9))


@dataclass(frozen=True)
class Baseline:
    """One partner's calm reference: HR10 and ln RMSSD means and SDs."""

    hr_mean_bpm: float
    hr_sd_bpm: float
    ln_rmssd_mean: float
    ln_rmssd_sd: float
    n_ticks: int
    source: str = "settle-in"

    def to_json(self) -> dict:
        return {
            "hr_mean_bpm": self.hr_mean_bpm,
            "hr_sd_bpm": self.hr_sd_bpm,
            "ln_rmssd_mean": self.ln_rmssd_mean,
            "ln_rmssd_sd": self.ln_rmssd_sd,
            "n_ticks": self.n_ticks,
            "source": self.source,
        }


def settle_baseline(
    tick_t_s: np.ndarray,
    hr10_bpm: np.ndarray,
    ln_rmssd: np.ndarray,
    good: np.ndarray,
    cfg: BaselineConfig,
) -> Baseline | None:
    """The baseline from the settle-in ticks given, or None if it is not ready yet.

    Arrays are per tick from the session start up to now. Ready once the settle-in time
    has passed and at least ``min_valid_share`` of a settle-in's worth of ticks had good
    data (quality ok, connected, HR10 known); the baseline uses those good ticks.
    """
    if len(tick_t_s) == 0 or tick_t_s[-1] < cfg.settle_in_s:
        return None
    # as bool: a 0/1 integer mask would index elements 0 and 1 instead of selecting
    use = np.asarray(good, dtype=bool) & np.isfinite(hr10_bpm)
    if int(use.sum()) < cfg.min_good_ticks:
        return None
    hr = hr10_bpm[use]
    ln = ln_rmssd[use & np.isfinite(ln_rmssd)]
    return Baseline(
        hr_mean_bpm=_mean(hr),
        hr_sd_bpm=_sd(hr) if len(hr) > 1 else 0.0,
        ln_rmssd_mean=_mean(ln) if len(ln) else float("nan"),
        ln_rmssd_sd=_sd(ln) if len(ln) > 1 else float("nan"),
        n_ticks=int(use.sum()),
    )


# np.mean and np.std(ddof=1) of a float64 array, written out as NumPy's own
# _methods._mean and _var do them (one pairwise sum divided by the count; deviations
# from that mean squared, summed, divided by n - 1, square root), so the bits are
# theirs, without the dispatch that makes up most of their time on a few hundred values.
def _mean(x: np.ndarray) -> float:
    return float(np.add.reduce(x) / len(x))


def _sd(x: np.ndarray) -> float:
    dev = x - np.add.reduce(x, keepdims=True) / len(x)
    dev *= dev
    return math.sqrt(float(np.add.reduce(dev) / (len(x) - 1)))


def activation(
    hr10_bpm: np.ndarray, ln_rmssd: np.ndarray, baseline: Baseline, cfg: BaselineConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HR above baseline (bpm), activation (baseline SDs) and vagal index, per tick."""
    delta_bpm = hr10_bpm - baseline.hr_mean_bpm
    act_sd = delta_bpm / max(baseline.hr_sd_bpm, cfg.sd_floor_bpm)
    vagal = baseline.ln_rmssd_mean - ln_rmssd
    return delta_bpm, act_sd, vagal
