"""The per-tick stages shared by batch and live runs of the pipeline.

Batch evaluates each stage over every tick of a session at once; live evaluates the
very same functions at one tick on the trailing data. Every value a tick gets depends
only on what was known at that tick (``available_t_s``), so both agree to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monitor.quality import max_gap_s, share_in_windows
from monitor.baseline import Baseline, BaselineConfig, activation, settle_baseline
from monitor.config import Config
from monitor.metrics import MetricFrame, NNSeries, metrics_and_windows


@dataclass(frozen=True, eq=False)
class NNBeats:
    """One partner's final NN beats, each with the time it became known.

    t_s: beat times (s); nn_units: NN intervals (1/1024 s); contiguous: a successive
    difference to the previous beat is valid; corrected: the beat was changed by
    artifact correction; artifact_start: a run of corrected beats starts here (what
    signal quality counts); available_t_s: session time at which the beat was final.
    """

    t_s: np.ndarray
    nn_units: np.ndarray
    contiguous: np.ndarray
    corrected: np.ndarray
    artifact_start: np.ndarray
    available_t_s: np.ndarray

    @classmethod
    def empty(cls) -> "NNBeats":
        z = np.zeros(0)
        return cls(z, z.astype(np.int64), z.astype(bool), z.astype(bool), z.astype(bool), z)


def raw_available_t_s(arrival_t_s: np.ndarray, contiguous: np.ndarray) -> np.ndarray:
    """When each raw beat's artifact class is final (s): once two more beats have
    arrived, or a beat after a gap (no window reaches across a gap); inf if never."""
    out = np.full(len(arrival_t_s), np.inf)
    out[:-2] = arrival_t_s[2:]
    gap_next = ~np.asarray(contiguous, dtype=bool)[1:]  # a gap before beat i + 1 ends i's windows
    out[:-1][gap_next] = arrival_t_s[1:][gap_next]
    return out


@dataclass(frozen=True, eq=False)
class PartnerTicks:
    """One partner's per-tick values (all arrays the length of the ticks)."""

    metrics: MetricFrame
    corrected_share: np.ndarray
    gap_s: np.ndarray
    connected: np.ndarray
    quality_ok: np.ndarray

    def columns(self) -> dict[str, np.ndarray]:
        cols = {k: v for k, v in self.metrics.columns().items() if k != "tick_t_s"}
        cols.update(
            corrected_share=self.corrected_share,
            gap_s=self.gap_s,
            connected=self.connected.astype(np.float64),
            quality_ok=self.quality_ok.astype(np.float64),
        )
        return cols


def partner_ticks(
    tick_t_s: np.ndarray,
    nn: NNBeats,
    raw_t_s: np.ndarray,
    raw_arrival_t_s: np.ndarray,
    connected: np.ndarray,
    cfg: Config,
) -> PartnerTicks:
    """Metrics and signal quality of one partner at each tick (s)."""
    series = NNSeries(t_s=nn.t_s, nn_units=nn.nn_units, contiguous=nn.contiguous)
    a = cfg.artifacts
    # The correction share's window comes from the metrics' count of the same beats.
    metrics, hi, (lo,) = metrics_and_windows(series, tick_t_s, cfg.metrics, nn.available_t_s, (a.quality_window_s,))
    share = share_in_windows(np.asarray(nn.artifact_start, dtype=bool), lo, hi)
    gap = max_gap_s(tick_t_s, raw_t_s, a.quality_window_s, raw_arrival_t_s)
    # fmax counts an empty window's NaN share as 0, as nan_to_num would (shares are >= 0).
    low = (np.fmax(share, 0.0) > a.max_corrected_share) | (gap > a.max_gap_s)
    quality_ok = connected & ~low & np.isfinite(metrics.hr10_bpm)
    return PartnerTicks(metrics, share, gap, connected, quality_ok)


@dataclass
class Settler:
    """Finds the tick at which a partner's baseline is ready, fed tick by tick.

    Keeps the settle-in's per-tick values until then, and nothing after.
    """

    cfg: BaselineConfig
    stored: Baseline | None = None
    baseline: Baseline | None = None
    t_s: list[float] = field(default_factory=list)
    hr10: list[float] = field(default_factory=list)
    ln_rmssd: list[float] = field(default_factory=list)
    good: list[bool] = field(default_factory=list)

    def feed(self, t_s: float, hr10_bpm: float, ln_rmssd: float, good: bool) -> Baseline | None:
        """Take one tick; return the baseline on the tick it becomes ready."""
        if self.baseline is not None:
            return None
        if self.stored is not None:
            if good:
                self.baseline = self.stored
            return self.baseline
        self.t_s.append(t_s)
        self.hr10.append(hr10_bpm)
        self.ln_rmssd.append(ln_rmssd)
        self.good.append(good)
        if t_s < self.cfg.settle_in_s or sum(self.good) < self.cfg.min_good_ticks:
            return None
        self.baseline = settle_baseline(
            np.array(self.t_s), np.array(self.hr10), np.array(self.ln_rmssd), np.array(self.good), self.cfg
        )
        if self.baseline is not None:
            self.t_s, self.hr10, self.ln_rmssd, self.good = [], [], [], []
        return self.baseline


def settle_index(tick_t_s: np.ndarray, good: np.ndarray, cfg: BaselineConfig, stored: Baseline | None) -> int | None:
    """The tick index at which Settler would return a baseline (batch form), or None."""
    if stored is not None:
        hits = np.flatnonzero(good)
    else:
        hits = np.flatnonzero((tick_t_s >= cfg.settle_in_s) & (np.cumsum(good) >= cfg.min_good_ticks))
    return int(hits[0]) if len(hits) else None


def quality_codes(ticks: PartnerTicks) -> np.ndarray:
    """Per tick: 0 while disconnected or before the first beat, 1 ok, 2 low quality."""
    present = ticks.connected & np.isfinite(ticks.gap_s)
    return np.where(present, np.where(ticks.quality_ok, 1, 2), 0)


def quality_changes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ticks where a partner's quality turns low, and where it turns ok again.

    The state carries over ticks without data: low, then a disconnect, then ok
    is a change; ok, a disconnect, ok is none.
    """
    known = np.flatnonzero(codes > 0)  # only ticks with data can change it
    now = codes[known]
    before = np.zeros_like(now)  # the code of the known tick before (none: 0)
    before[1:] = now[:-1]
    return known[(now == 2) & (before != 2)], known[(now == 1) & (before == 2)]


def partner_activation(
    ticks: PartnerTicks, baseline: Baseline | None, cfg: BaselineConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HR above baseline (bpm), activation (SDs), vagal index; NaN before the baseline."""
    n = len(ticks.metrics.tick_t_s)
    if baseline is None:
        nan = np.full(n, np.nan)
        return nan, nan.copy(), nan.copy()
    return activation(ticks.metrics.hr10_bpm, ticks.metrics.ln_rmssd30, baseline, cfg)
