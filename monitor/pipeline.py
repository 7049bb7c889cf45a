"""Batch mode: a whole recording through the pipeline, every tick at once.

records → beats (beats.py) → artifact correction (artifacts.py) → metrics and quality
(stages.py) → baseline and activation (baseline.py) → linkage (linkage.py) → detector
(detector.py) → events. ``live.py`` runs the same stages one tick at a time; the two
give identical arrays and events (tests/monitor/test_live.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Iterable

import numpy as np

from devices.records import Annotation, Notification, Record, SessionHeader, StatusChange
from monitor.artifacts import correct_beats
from monitor.baseline import Baseline
from monitor.beats import BeatSeries
from monitor.beats_batch import PartnerRecords, time_partner_beats
from monitor.config import Config
from monitor.detector import Detector
from monitor.events import Event
from monitor.linkage import resample_hr
from monitor.linkage_batch import linkage_at
from monitor.metrics import session_ticks
from monitor.prompts import PromptCatalogue
from monitor.quality import artifact_starts
from monitor.baseline import settle_baseline
from monitor.stages import (
    NNBeats,
    PartnerTicks,
    partner_activation,
    partner_ticks,
    quality_changes,
    quality_codes,
    raw_available_t_s,
    settle_index,
)

PARTNERS = ("a", "b")


@dataclass(frozen=True, eq=False)
class PartnerResult:
    """One partner's per-tick arrays, baseline and beat counts."""

    ticks: PartnerTicks
    delta_bpm: np.ndarray
    activation_sd: np.ndarray
    vagal_index: np.ndarray
    baseline: Baseline | None
    settled_t_s: float | None
    n_raw_beats: int
    n_corrected_beats: int
    malformed: dict[str, int]

    def columns(self) -> dict[str, np.ndarray]:
        cols = self.ticks.columns()
        cols.update(delta_bpm=self.delta_bpm, activation_sd=self.activation_sd, vagal_index=self.vagal_index)
        return cols


@dataclass(frozen=True, eq=False)
class Analysis:
    """Everything the pipeline says about a session."""

    tick_t_s: np.ndarray
    partners: dict[str, PartnerResult]
    linkage_r: np.ndarray
    linkage_lag_s: np.ndarray
    events: list[Event]
    config: Config
    duration_s: float
    names: dict[str, str] = field(default_factory=dict)


def partner_nn(beats: BeatSeries, cfg: Config) -> tuple[NNBeats, int]:
    """Artifact-corrected NN beats of one partner with their availability times."""
    if len(beats) == 0:
        return NNBeats.empty(), 0
    cb = correct_beats(beats.rr_units, beats.t_s, beats.contiguous, cfg.artifacts)
    avail_raw = raw_available_t_s(beats.arrival_t_s, beats.contiguous)
    nn = NNBeats(
        t_s=cb.t_s,
        nn_units=cb.nn_units,
        contiguous=cb.contiguous,
        corrected=cb.corrected,
        artifact_start=artifact_starts(cb.corrected, cb.contiguous),
        available_t_s=avail_raw[cb.raw_index],
    )
    return nn, int(cb.corrected.sum())


def scan_records(records: Iterable[Record], partners: tuple[str, ...]) -> tuple[dict[str, PartnerRecords], list[Record], float]:
    """One pass over a recording's records: each partner's notifications and connection
    changes (as ``beats_batch.split_by_partner`` gives them, the times as a float64
    array), every record that is not a notification, in order, and the latest record
    time (s; 0 without records)."""
    streams = {p: PartnerRecords([], [], []) for p in partners}
    others: list[Record] = []
    latest = -math.inf
    for r in records:
        if type(r) is Notification or isinstance(r, Notification):  # the fast test first
            stream = streams.get(r.partner)
            if stream is None:
                latest = max(latest, r.t_s)
            else:  # its time counts below, from the partner's list
                stream.t_s.append(r.t_s)
                stream.payloads.append(r.payload)
            continue
        if isinstance(r, StatusChange) and r.partner in streams:
            streams[r.partner].status_before.append(len(streams[r.partner].payloads))
        others.append(r)
        latest = max(latest, r.t_s)
    arrays = {}
    for p, stream in streams.items():
        # As a float64 array once here: beat timing needs one, and its max is quick.
        t_s = np.fromiter(stream.t_s, dtype=np.float64, count=len(stream.t_s))
        if len(t_s):
            latest = max(latest, float(t_s.max()))
        arrays[p] = PartnerRecords(t_s, stream.payloads, stream.status_before)
    return arrays, others, latest if latest > -math.inf else 0.0


def connection_by_tick(records: list[Record], partner: str, tick_t_s: np.ndarray) -> np.ndarray:
    """Whether the partner's strap is connected at each tick (True until told otherwise)."""
    changes = [(r.t_s, r.status == "connected") for r in records if isinstance(r, StatusChange) and r.partner == partner]
    if not changes:
        return np.ones(len(tick_t_s), dtype=bool)
    t = np.array([c[0] for c in changes])
    state = np.array([c[1] for c in changes])
    idx = np.searchsorted(t, tick_t_s, side="right") - 1
    return np.where(idx >= 0, state[np.maximum(idx, 0)], True)


def record_events(records: Iterable[Record]) -> list[Event]:
    """Connection changes and annotations, at their own times."""
    out = []
    for r in records:
        if isinstance(r, StatusChange):
            out.append(Event(r.t_s, r.status, r.partner))
        elif isinstance(r, Annotation):
            out.append(Event(r.t_s, "annotation", None, {"text": r.text, "author": r.author}))
    return out


_RANK = {"settled": 0, "quality_low": 1, "quality_ok": 1}
_time = attrgetter("t_s")


def tick_event_key(e: Event) -> tuple:
    """Order of the events of one tick, the same in batch and live mode: baselines,
    then quality changes (a before b), then the detector's in the order it made them."""
    rank = _RANK.get(e.kind, 2)
    return (e.t_s, rank, (e.partner or "") if rank < 2 else "")


def quality_events(ticks: np.ndarray, pt: PartnerTicks, partner: str) -> list[Event]:
    """A partner's quality changes (stages.quality_changes) as events, in time order."""
    low, ok = quality_changes(quality_codes(pt))
    low_data = zip(ticks[low].tolist(), np.nan_to_num(pt.corrected_share[low]).tolist(), pt.gap_s[low].tolist())
    events = [Event(t, "quality_low", partner, {"corrected_share": share, "gap_s": gap}) for t, share, gap in low_data]
    events += [Event(t, "quality_ok", partner) for t in ticks[ok].tolist()]
    events.sort(key=_time)  # two interleaved runs: low, ok, low, ...
    return events


def analyze_records(
    header: SessionHeader,
    records: list[Record],
    cfg: Config | None = None,
    *,
    catalogue: PromptCatalogue | None = None,
    baselines: dict[str, Baseline] | None = None,
) -> Analysis:
    """Run the whole pipeline over a recording's records (batch mode)."""
    cfg = cfg or Config()
    catalogue = catalogue or PromptCatalogue.load()
    # As in live mode: the header says who wears a strap; a bare header means both.
    present = [p for p in PARTNERS if p in header.partners] or list(PARTNERS)
    streams, others, duration_s = scan_records(records, tuple(present))
    ticks = session_ticks(duration_s)
    beats = {p: time_partner_beats(streams[p], cfg.beats).series for p in present}
    names = {p: header.partners[p].name for p in present if p in header.partners}

    per: dict[str, PartnerTicks] = {}
    nn_by: dict[str, NNBeats] = {}
    n_corr: dict[str, int] = {}
    for p in present:
        nn_by[p], n_corr[p] = partner_nn(beats[p], cfg)
        connected = connection_by_tick(others, p, ticks)
        per[p] = partner_ticks(ticks, nn_by[p], beats[p].t_s, beats[p].arrival_t_s, connected, cfg)

    settled: list[Event] = []
    quality: list[Event] = []
    stored = baselines or {}
    results = {}
    settled_at: dict[str, int | None] = {}
    deltas: dict[str, np.ndarray] = {}
    for p in present:
        pt = per[p]
        i = settle_index(ticks, pt.quality_ok, cfg.baseline, stored.get(p))
        settled_at[p] = i
        base = None
        if i is not None:
            base = stored.get(p) or settle_baseline(
                ticks[: i + 1], pt.metrics.hr10_bpm[: i + 1], pt.metrics.ln_rmssd30[: i + 1], pt.quality_ok[: i + 1], cfg.baseline
            )
            settled.append(Event(float(ticks[i]), "settled", p, {"baseline": base.to_json()}))
        delta, act_sd, vagal = partner_activation(pt, base, cfg.baseline)
        if i is not None:
            for arr in (delta, act_sd, vagal):
                arr[:i] = np.nan
        deltas[p] = delta
        quality += quality_events(ticks, pt, p)
        results[p] = PartnerResult(
            pt, delta, act_sd, vagal, base, float(ticks[i]) if i is not None else None,
            len(beats[p]), n_corr[p], dict(beats[p].malformed),
        )
    detected: list[Event] = []
    if len(present) == 2 and all(settled_at[p] is not None for p in PARTNERS):
        start = max(settled_at[p] for p in PARTNERS)
        detector = Detector(cfg.detector, catalogue, cfg.prompts, names)
        detected = detector.run(
            ticks[start:],
            {p: deltas[p][start:] for p in PARTNERS},
            {p: per[p].metrics.hr10_bpm[start:] for p in PARTNERS},
            {p: per[p].quality_ok[start:] for p in PARTNERS},
        )
    # Each list is in time order, and within a time they come as live mode orders
    # them: record events, then tick events by tick_event_key (baselines, quality
    # changes of a then b, the detector's). A stable sort by time alone keeps that.
    events = record_events(others) + settled + quality + detected
    events.sort(key=_time)

    link_r, link_lag = batch_linkage(ticks, nn_by, present, cfg)
    return Analysis(ticks, results, link_r, link_lag, events, cfg, duration_s, names)


def batch_linkage(ticks: np.ndarray, nn_by: dict[str, NNBeats], present: list[str], cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Linkage at every tick: of the window ending ``delay_s`` before it (NaN without
    two partners)."""
    if len(present) < 2 or len(ticks) == 0:
        nan = np.full(len(ticks), np.nan)
        return nan, nan.copy()
    lk = cfg.linkage
    until = ticks.astype(np.int64) - lk.delay_s  # each window ends delay_s before its tick
    stop = max(int(until[-1]), 0) * lk.fs_hz + 1
    hr = {p: resample_hr(nn_by[p].t_s, nn_by[p].nn_units, nn_by[p].available_t_s, 1, stop, lk) for p in PARTNERS}
    return linkage_at(hr["a"], hr["b"], until * lk.fs_hz, lk)


def malformed_total(analysis: Analysis) -> Counter[str]:
    """Malformed notifications of both partners, per reason."""
    total: Counter[str] = Counter()
    for res in analysis.partners.values():
        total.update(res.malformed)
    return total
