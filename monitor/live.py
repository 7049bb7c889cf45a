"""Live mode: the pipeline one tick at a time, as notifications arrive.

Feed records in arrival order; each whole second of session time that passes is a
tick. Artifact correction carries its windows from beat to beat (artifacts_live); the
tick's metrics, quality and linkage come from running sums that grow by one entry per
beat (metrics_live, quality_live, linkage_live). Both do the float arithmetic of the
batch stages, so a tick costs the same whatever the session's length and memory stays
bounded. The per-tick values and events equal batch mode's exactly, which
tests/monitor/test_live.py checks on every fixture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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


class _PartnerLive:
    """One partner's live state: beat timer, artifact corrector, settle-in, and the
    running sums the tick values come from: final NN beats (metrics, share of corrected
    beats, resampled HR) and raw beats (gaps)."""

    def __init__(self, partner: str, cfg: Config, stored: Baseline | None) -> None:
        self.partner = partner
        self.cfg = cfg
        self.timer = BeatTimer(partner, cfg.beats, keep_beats=False)  # beats live on in the sums
        self.corrector = TrailingCorrector(cfg.artifacts)
        self.nn = LiveNN(cfg.metrics)
        self.gaps = LiveGaps()
        self._final: list[NNBeat] = []  # NN beats final since the last finalise
        self._last_corrected = False
        self.connected = True
        self.settler = Settler(cfg.baseline, stored)
        self.settled_t_s: float | None = None
        self.quality = 0  # the last known quality code (see stages.quality_codes)

    def feed(self, record: Record) -> None:
        if isinstance(record, StatusChange) and record.partner == self.partner:
            self.connected = record.status == "connected"
        new = self.timer.feed(record)
        for t, rr, cont, arrival in zip(new.t_s.tolist(), new.rr_units.tolist(), new.contiguous.tolist(), new.arrival_t_s.tolist()):
            self.gaps.append(t, arrival)
            for beat in self.corrector.push(rr, t, cont):
                self._final += beat.nn

    def finalise(self, t_s: float) -> None:
        """Add the NN beats that became final since the last call, available at ``t_s``."""
        for beat in self._final:
            corr, cont = beat.corrected, beat.contiguous
            start = corr and not (self._last_corrected and cont)  # as quality.artifact_starts
            self.nn.append(beat.t_s, beat.nn_units, cont, start, t_s)
            self._last_corrected = corr
        self._final.clear()

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
        self.next_tick = 1
        self.ticks: list[TickState] = []
        self._taken = 0  # ticks handed out by take_ticks()
        self.events: list[Event] = []
        # Beats older than this before a tick are in no window (nor hold) of it or later.
        self._lookback_s = max(cfg.metrics.lookback_s, cfg.artifacts.quality_window_s, cfg.linkage.max_hold_s + cfg.linkage.delay_s + 1.0) + 5.0

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
            metrics = part.nn.metrics_at(t)
            row = dict(zip(METRIC_NAMES, metrics))
            hr10, ln_rmssd30 = row["hr10_bpm"], row["ln_rmssd30"]
            share = part.nn.correction_share_at(t, quality_cfg.quality_window_s)
            gap = part.gaps.max_gap_at(t, quality_cfg.quality_window_s)
            quality = tick_quality(share, gap, part.connected, hr10, quality_cfg)
            part.trim(t - self._lookback_s)
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
        lk = cfg.linkage
        until = int(t) - lk.delay_s  # the linkage window ends delay_s before the tick
        if len(self._p) == 2 and until >= 1:
            first, stop = (until - 1) * lk.fs_hz + 1, until * lk.fs_hz + 1
            hr = {p: resample_hr_live(self._p[p].nn, first, stop, lk) for p in PARTNERS}
            self.linkage.feed(hr["a"], hr["b"])
            link_r, link_lag = self.linkage.at_tick(until * lk.fs_hz)
            self.linkage.trim()

        active = [{"pattern": a.pattern, "partner": a.partner, "start_t": a.start_t_s} for a in self.detector.active.values()]
        self.ticks.append(TickState(t, values, link_r, link_lag, active))
        return events
