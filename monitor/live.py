"""Live mode: the pipeline one tick at a time, as notifications arrive.

Feed records in arrival order; each whole second of session time that passes is a
tick, evaluated with the same stage functions as batch mode on the trailing data only
(bounded memory, whatever the session's length). The per-tick values and events equal
batch mode's exactly, which tests/monitor/test_live.py checks on every fixture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devices.records import Annotation, Record, SessionHeader, StatusChange
from monitor.artifacts_live import NNBeat, TrailingCorrector
from monitor.baseline import Baseline
from monitor.beats import BeatTimer
from monitor.config import Config
from monitor.detector import Detector, PartnerTick
from monitor.events import Event
from monitor.linkage import LinkageTracker, resample_hr
from monitor.pipeline import PARTNERS, tick_event_key
from monitor.prompts import PromptCatalogue
from monitor.stages import NNBeats, PartnerTicks, Settler, partner_activation, partner_ticks, quality_codes


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

    def append(self, **values) -> None:
        for n in self.names:
            self.cols[n].append(values[n])

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

    def nn_beats(self, since_t_s: float) -> NNBeats:
        """Final NN beats with beat time after ``since_t_s``."""
        t = self.nn.array("t")
        keep = np.searchsorted(t, since_t_s, side="right")
        return NNBeats(
            t_s=t[keep:],
            nn_units=self.nn.array("nn", np.int64)[keep:],
            contiguous=self.nn.array("cont", bool)[keep:],
            corrected=self.nn.array("corr", bool)[keep:],
            artifact_start=self.nn.array("start", bool)[keep:],
            available_t_s=self.nn.array("avail")[keep:],
        )


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
        self.linkage = LinkageTracker(cfg.linkage)
        self.next_tick = 1
        self.ticks: list[TickState] = []
        self._taken = 0  # ticks handed out by take_ticks()
        self.events: list[Event] = []
        self._lookback_s = max(cfg.metrics.lookback_s, cfg.artifacts.quality_window_s) + 5.0

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
        cfg = self.config
        tick = np.array([t])
        events: list[Event] = []
        per: dict[str, PartnerTicks] = {}
        nn_by: dict[str, NNBeats] = {}
        for p, part in self._p.items():
            part.finalise(t)
            nn_by[p] = part.nn_beats(t - self._lookback_s)
            raw_start = max(len(part.raw) - 400, 0)
            raw_t = part.raw.array("t", np.float64, raw_start)
            raw_arr = part.raw.array("arr", np.float64, raw_start)
            # one beat before the window too: the gap that ends at its first beat counts
            keep = max(int(np.searchsorted(raw_t, t - self._lookback_s, side="right")) - 1, 0)
            per[p] = partner_ticks(tick, nn_by[p], raw_t[keep:], raw_arr[keep:], np.array([part.connected]), cfg)
            pt = per[p]
            if part.settled_t_s is None:
                base = part.settler.feed(t, float(pt.metrics.hr10_bpm[0]), float(pt.metrics.ln_rmssd30[0]), bool(pt.quality_ok[0]))
                if base is not None:
                    part.settled_t_s = t
                    events.append(Event(t, "settled", p, {"baseline": base.to_json()}))
            code = int(quality_codes(pt)[0])  # 0 no data, 1 ok, 2 low
            if code == 2 and part.quality != 2:
                data = {"corrected_share": float(np.nan_to_num(pt.corrected_share[0])), "gap_s": float(pt.gap_s[0])}
                events.append(Event(t, "quality_low", p, data))
            elif code == 1 and part.quality == 2:
                events.append(Event(t, "quality_ok", p))
            part.quality = code or part.quality

        deltas = {}
        for p, part in self._p.items():
            deltas[p] = partner_activation(per[p], part.settler.baseline if part.settled_t_s is not None else None, cfg.baseline)
        if len(self._p) == 2 and all(part.settled_t_s is not None for part in self._p.values()):
            a, b = (PartnerTick(float(deltas[p][0][0]), float(per[p].metrics.hr10_bpm[0]), bool(per[p].quality_ok[0])) for p in PARTNERS)
            events += self.detector.step(t, a, b)
        events.sort(key=tick_event_key)

        link_r = link_lag = float("nan")
        if len(self._p) == 2:
            lk = cfg.linkage
            first, stop = int(t - 1) * lk.fs_hz + 1, int(t) * lk.fs_hz + 1
            hr = {p: resample_hr(nn_by[p].t_s, nn_by[p].nn_units, nn_by[p].available_t_s, first, stop, lk) for p in PARTNERS}
            self.linkage.feed(hr["a"], hr["b"])
            r, lag = self.linkage.at(np.array([int(t) * lk.fs_hz]))
            link_r, link_lag = float(r[0]), float(lag[0])
            self.linkage.trim()

        values = {}
        for p in self._p:
            cols = per[p].columns()
            row = {k: float(v[0]) for k, v in cols.items()}
            row.update(delta_bpm=float(deltas[p][0][0]), activation_sd=float(deltas[p][1][0]), vagal_index=float(deltas[p][2][0]))
            values[p] = row
        active = [{"pattern": a.pattern, "partner": a.partner, "start_t": a.start_t_s} for a in self.detector.active.values()]
        self.ticks.append(TickState(t, values, link_r, link_lag, active))
        return events
