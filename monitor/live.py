"""Live mode: the pipeline one tick at a time, as notifications arrive.

Feed records in arrival order; each whole second of session time that passes is a
tick. Artifact correction runs the batch function on the trailing beats; the tick's
metrics, quality and linkage come from running sums that grow by one entry per beat
(metrics_live, quality_live, linkage_live), with the float arithmetic of the batch
stages, so a tick costs the same whatever the session's length and memory stays
bounded. The per-tick values and events equal batch mode's exactly, which
tests/monitor/test_live.py checks on every fixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from devices.records import Annotation, Record, SessionHeader, StatusChange
from monitor.artifacts_live import NNBeat, TrailingCorrector
from monitor.baseline import Baseline, activation
from monitor.beats import BeatTimer
from monitor.config import Config
from monitor.detector import Detector, PartnerTick
from monitor.events import Event
from monitor.linkage_live import LiveLinkageTracker, resample_hr_live
from monitor.metrics_live import METRIC_NAMES, LiveNN
from monitor.pipeline import PARTNERS, tick_event_key
from monitor.prompts import PromptCatalogue
from monitor.quality_live import LiveGaps, tick_quality
from monitor.stages import Settler


@dataclass(frozen=True)
class TickState:
    """What one tick says about the dyad: per partner values and the linkage."""

    t_s: float
    partners: dict[str, dict[str, float]]
    linkage_r: float
    linkage_lag_s: float
    active_patterns: list[dict]


class _Trail:
    """Append-only columns that keep only their recent tail (bounded memory)."""

    def __init__(self, names: tuple[str, ...], keep: int) -> None:
        self.names = names
        self.keep = keep
        self.cols: dict[str, list] = {n: [] for n in names}
        self.dropped = 0  # rows forgotten from the front
        self._followers: list[Callable[..., None]] = []

    def follow(self, follower: Callable[..., None]) -> None:
        """Have ``follower`` called with every row appended from now on (as keywords),
        before any trim can forget it."""
        self._followers.append(follower)

    def append(self, **values) -> None:
        for n in self.names:
            self.cols[n].append(values[n])
        for follower in self._followers:
            follower(**values)

    def __len__(self) -> int:
        return self.dropped + len(self.cols[self.names[0]])

    def trim(self) -> None:
        extra = len(self.cols[self.names[0]]) - self.keep
        if extra > self.keep:  # trim in large steps so appends stay cheap
            for n in self.names:
                del self.cols[n][:extra]
            self.dropped += extra

    def array(self, name: str, dtype=np.float64, start: int = 0) -> np.ndarray:
        """Rows from global index ``start`` on (clamped to what is kept)."""
        return np.array(self.cols[name][max(start - self.dropped, 0) :], dtype=dtype)


class _PartnerLive:
    """One partner's live state: beat timer, raw beats, artifact corrector, final NN beats, settle-in."""

    def __init__(self, partner: str, cfg: Config, stored: Baseline | None) -> None:
        self.partner = partner
        self.cfg = cfg
        self.timer = BeatTimer(partner, cfg.beats, keep_beats=False)  # beats live on in self.raw
        hist = cfg.artifacts.history_beats + 64
        self.raw = _Trail(("t", "rr", "cont", "arr"), keep=hist)
        self.nn = _Trail(("t", "nn", "cont", "corr", "start", "avail"), keep=400)
        self.corrector = TrailingCorrector(cfg.artifacts)
        self._final: list[NNBeat] = []  # NN beats final since the last finalise
        self._last_corrected = False
        self.n_final = 0  # raw beats whose results are final
        self._n_final_seen = 0  # n_final at the last finalise
        self.n_corrected = 0
        self.connected = True
        self.settler = Settler(cfg.baseline, stored)
        self.settled_t_s: float | None = None
        self.quality = 0  # the last known quality code (see stages.quality_codes)

    def feed(self, record: Record) -> None:
        if isinstance(record, StatusChange) and record.partner == self.partner:
            self.connected = record.status == "connected"
        new = self.timer.feed(record)
        for i in range(len(new)):
            self.raw.append(t=new.t_s[i], rr=int(new.rr_units[i]), cont=bool(new.contiguous[i]), arr=new.arrival_t_s[i])
            for beat in self.corrector.push(int(new.rr_units[i]), new.t_s[i], bool(new.contiguous[i])):
                self._final += beat.nn
                self.n_final += 1

    def finalise(self, t_s: float) -> None:
        """Keep the NN beats that became final since the last call, available at ``t_s``."""
        if self.n_final == self._n_final_seen:
            return  # no raw beat became final: nothing to keep or trim
        self._n_final_seen = self.n_final
        for beat in self._final:
            corr, cont = beat.corrected, beat.contiguous
            start = corr and not (self._last_corrected and cont)  # as quality.artifact_starts
            self.nn.append(t=beat.t_s, nn=beat.nn_units, cont=cont, corr=corr, start=start, avail=t_s)
            self._last_corrected = corr
            self.n_corrected += int(corr)
        self._final.clear()
        self.raw.trim()
        self.nn.trim()


class _PartnerSums:
    """One partner's running sums for the tick values: final NN beats (metrics, share
    of corrected beats, resampled HR) and raw beats (gaps), fed by following the
    partner's trails, so that no row is missed whatever the trails forget."""

    def __init__(self, cfg: Config, part: _PartnerLive) -> None:
        self.nn = LiveNN(cfg.metrics)
        self.gaps = LiveGaps()
        part.nn.follow(self._add_nn)
        part.raw.follow(self._add_raw)

    # Keywords as the trails name their columns; any other column is not needed here.
    def _add_nn(self, t: float, nn: int, cont: bool, start: bool, avail: float, **_) -> None:
        self.nn.append(t, nn, cont, start, avail)

    def _add_raw(self, t: float, arr: float, **_) -> None:
        self.gaps.append(t, arr)

    def trim(self, before_t_s: float) -> None:
        """Forget beats before ``before_t_s`` (s): no later tick reaches them."""
        self.nn.trim(before_t_s)
        self.gaps.trim(before_t_s)


@dataclass
class LivePipeline:
    """The pipeline for a running session. ``feed`` records; read ``events``.

    ``ticks`` holds every tick evaluated; with ``keep_ticks=False`` (a long live
    session) it holds only those not yet handed out by ``take_ticks()``.
    """

    header: SessionHeader
    config: Config = field(default_factory=Config)
    catalogue: PromptCatalogue | None = None
    baselines: dict[str, Baseline] | None = None
    partners: tuple[str, ...] | None = None
    keep_ticks: bool = True

    def __post_init__(self) -> None:
        cfg = self.config
        if self.partners is None:
            # A recording's header says who wears a strap; a bare header means both.
            self.partners = tuple(p for p in PARTNERS if p in self.header.partners) or PARTNERS
        self.catalogue = self.catalogue or PromptCatalogue.load()
        self.names = {p: info.name for p, info in self.header.partners.items()}
        self._p = {p: _PartnerLive(p, cfg, (self.baselines or {}).get(p)) for p in self.partners}
        self.detector = Detector(cfg.detector, self.catalogue, cfg.prompts, self.names)
        self.linkage = LiveLinkageTracker(cfg.linkage)
        self._sums = {p: _PartnerSums(cfg, part) for p, part in self._p.items()}
        self.next_tick = 1
        self.ticks: list[TickState] = []
        self._taken = 0  # ticks handed out by take_ticks()
        self.events: list[Event] = []
        # Beats older than this before a tick are in no window (nor hold) of it or later.
        self._lookback_s = max(cfg.metrics.lookback_s, cfg.artifacts.quality_window_s, cfg.linkage.max_hold_s + 1.0) + 5.0

    def take_ticks(self) -> list[TickState]:
        """The ticks evaluated since the last call, in order."""
        new = self.ticks[self._taken :]
        if self.keep_ticks:
            self._taken = len(self.ticks)
        else:
            self.ticks.clear()
        return new

    def feed(self, record: Record) -> list[Event]:
        """Take one record (in arrival order); return the events it caused.

        Ticks up to the record's time are evaluated first, since a tick only sees
        records that arrived by then.
        """
        new = self.advance(record.t_s, inclusive=False)
        for part in self._p.values():
            part.feed(record)
        own: list[Event] = []
        if isinstance(record, StatusChange) and record.partner in self._p:
            own.append(Event(record.t_s, record.status, record.partner))
        elif isinstance(record, Annotation):
            own.append(Event(record.t_s, "annotation", None, {"text": record.text, "author": record.author}))
        self.events += own
        return new + own

    def advance(self, now_s: float, *, inclusive: bool = True) -> list[Event]:
        """Evaluate every tick up to ``now_s`` (or strictly before it)."""
        out: list[Event] = []
        while self.next_tick < now_s or (inclusive and self.next_tick == now_s):
            out += self._tick(float(self.next_tick))
            self.next_tick += 1
        self.events += out
        return out

    def _tick(self, t: float) -> list[Event]:
        """Evaluate the tick at ``t`` (s): the values stages.partner_ticks,
        partner_activation, quality_codes and the linkage give batch mode for it, from
        running sums (monitor/*_live.py), and the events it causes."""
        cfg, quality_cfg = self.config, self.config.artifacts
        events: list[Event] = []
        values: dict[str, dict[str, float]] = {}
        detector_in: dict[str, PartnerTick] = {}
        for p, part in self._p.items():
            part.finalise(t)
            sums = self._sums[p]
            metrics = sums.nn.metrics_at(t)
            row = dict(zip(METRIC_NAMES, metrics))
            hr10, ln_rmssd30 = row["hr10_bpm"], row["ln_rmssd30"]
            share = sums.nn.correction_share_at(t, quality_cfg.quality_window_s)
            gap = sums.gaps.max_gap_at(t, quality_cfg.quality_window_s)
            quality = tick_quality(share, gap, part.connected, hr10, quality_cfg)
            sums.trim(t - self._lookback_s)
            if part.settled_t_s is None:
                base = part.settler.feed(t, hr10, ln_rmssd30, quality.ok)
                if base is not None:
                    part.settled_t_s = t
                    events.append(Event(t, "settled", p, {"baseline": base.to_json()}))
            if quality.code == 2 and part.quality != 2:
                data = {"corrected_share": 0.0 if math.isnan(share) else share, "gap_s": gap}
                events.append(Event(t, "quality_low", p, data))
            elif quality.code == 1 and part.quality == 2:
                events.append(Event(t, "quality_ok", p))
            part.quality = quality.code or part.quality
            if part.settled_t_s is not None:
                delta, act_sd, vagal = activation(hr10, ln_rmssd30, part.settler.baseline, cfg.baseline)
            else:
                delta = act_sd = vagal = math.nan
            row.update(
                corrected_share=share, gap_s=gap, connected=float(part.connected), quality_ok=float(quality.ok),
                delta_bpm=delta, activation_sd=act_sd, vagal_index=vagal,
            )
            values[p] = row
            detector_in[p] = PartnerTick(delta, hr10, quality.ok)

        if len(self._p) == 2 and all(part.settled_t_s is not None for part in self._p.values()):
            events += self.detector.step(t, detector_in["a"], detector_in["b"])
        events.sort(key=tick_event_key)

        link_r = link_lag = math.nan
        if len(self._p) == 2:
            lk = cfg.linkage
            first, stop = int(t - 1) * lk.fs_hz + 1, int(t) * lk.fs_hz + 1
            hr = {p: resample_hr_live(self._sums[p].nn, first, stop, lk) for p in PARTNERS}
            self.linkage.feed(hr["a"], hr["b"])
            link_r, link_lag = self.linkage.at_tick(int(t) * lk.fs_hz)
            self.linkage.trim()

        active = [{"pattern": a.pattern, "partner": a.partner, "start_t": a.start_t_s} for a in self.detector.active.values()]
        self.ticks.append(TickState(t, values, link_r, link_lag, active))
        return events
