"""The pattern detector: a small state machine over each second's activation.

Patterns (DESIGN.md, "What the detector must do"): ``divergence`` (one partner's heart
rate climbs while the other's stays level or falls), ``escalation`` (both climb,
starting close together) and ``flooding`` (one partner far above baseline). A pattern
starts after its condition has held for a while, and ends only when it has been clearly
gone for ``exit_hold_s`` (hysteresis). Each started pattern yields at most one prompt,
paced by the prompt gate, and never while a strap is away or its signal is poor.

The machine is plain Python over per-tick numbers already computed by the vectorised
pipeline; live and batch feed it the same numbers tick by tick, so they agree exactly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from monitor.conditions import conditions
from monitor.detector_batch import run_batch
from monitor.events import Event
from monitor.prompts import PromptCatalogue, PromptConfig, PromptGate

OTHER = {"a": "b", "b": "a"}
_ORDER = {"flooding": 0, "escalation": 1, "divergence": 2}  # prompt priority when several wait


@dataclass(frozen=True)
class DetectorConfig:
    """Detector thresholds (bpm are relative to each partner's baseline unless named).

    rise_bpm: HR10 this far above baseline counts as risen (divergence).
    escalation_bpm: for escalation, both partners this far above baseline: two
        rising together are less likely to be chance than one.
    rise_min_bpm: a rise must also be this far above the partner's own lowest value
        of the last rise_lookback_s, so a slow drift never counts as a rise.
    onset_bpm: a rise starts when HR10 last left (lowest of the lookback) + onset_bpm.
    min_rise_age_s: a rise must have gone on this long: standing up or a laugh lifts
        the heart rate for less than 20 s, a pattern for a minute or more.
    other_max_bpm: for divergence the other partner stays at most this far above.
    enter_hold_s: a divergence or escalation condition must hold this long to start.
    onset_gap_s: escalation needs both rises to start within this of each other (the
        table's 30 s plus HR10's 10 s smoothing).
    flood_hr_bpm / flood_delta_bpm / flood_hold_s: flooding is HR10 at or above
        flood_hr_bpm, or flood_delta_bpm above baseline, held for flood_hold_s.
    exit_hold_s: a pattern ends once clearly gone for this long.
    rise_exit_bpm: below this a rise is clearly gone.
    other_exit_bpm: above this the other partner has clearly risen too.
    flood_exit_margin_bpm: flooding is gone this far below both flooding lines.
    near_baseline_bpm / near_baseline_s: after a flooding prompt, other prompts wait
        until the flooded partner is within near_baseline_bpm for near_baseline_s.
    break_s: the length of break suggested with a flooding prompt.
    recovery_bpm / recovery_s: a prompt's recovery is the time until both partners are
        within recovery_bpm of baseline for recovery_s.
    """

    rise_bpm: float = 10.0
    escalation_bpm: float = 8.0
    rise_min_bpm: float = 8.0
    rise_lookback_s: float = 90.0
    onset_bpm: float = 4.0
    min_rise_age_s: float = 20.0
    other_max_bpm: float = 6.0
    enter_hold_s: float = 7.0
    onset_gap_s: float = 40.0
    flood_hr_bpm: float = 100.0
    flood_delta_bpm: float = 30.0
    flood_hold_s: float = 20.0
    exit_hold_s: float = 20.0
    rise_exit_bpm: float = 7.0
    other_exit_bpm: float = 9.0
    flood_exit_margin_bpm: float = 5.0
    near_baseline_bpm: float = 10.0
    near_baseline_s: float = 30.0
    break_s: float = 1200.0
    recovery_bpm: float = 5.0
    recovery_s: float = 30.0


@dataclass(frozen=True)
class PartnerTick:
    """One partner at one tick: HR above baseline, HR10, and whether data are usable.

    ``delta_bpm`` and ``hr10_bpm`` are NaN when unknown (disconnected, a gap).
    ``quality_ok`` is False when the signal is poor or the strap is away.
    """

    delta_bpm: float
    hr10_bpm: float
    quality_ok: bool

    @property
    def known(self) -> bool:
        return self.delta_bpm == self.delta_bpm and self.hr10_bpm == self.hr10_bpm


@dataclass
class _Active:
    pattern: str
    partner: str | None
    start_t_s: float
    gone_s: float = 0.0
    prompted: bool = False


@dataclass
class _Recovery:
    prompt_t_s: float
    pattern: str
    calm_s: float = 0.0


@dataclass
class Detector:
    """Turns per-tick partner values into events. Call ``step`` once per second."""

    config: DetectorConfig
    catalogue: PromptCatalogue
    prompt_config: PromptConfig = field(default_factory=PromptConfig)
    names: dict[str, str] = field(default_factory=dict)
    tick_s: float = 1.0

    def __post_init__(self) -> None:
        self.gate = PromptGate(self.prompt_config)
        self.active: dict[tuple[str, str | None], _Active] = {}
        self._held = {("divergence", "a"): 0.0, ("divergence", "b"): 0.0, ("escalation", None): 0.0,
                      ("flooding", "a"): 0.0, ("flooding", "b"): 0.0}
        n_look = int(round(self.config.rise_lookback_s / self.tick_s))
        self._recent: dict[str, deque[float]] = {"a": deque(maxlen=n_look), "b": deque(maxlen=n_look)}
        self._onset_t_s: dict[str, float] = {"a": float("-inf"), "b": float("-inf")}
        self._flood_hold: dict[str, float] = {}  # partner -> seconds near baseline so far
        self._recoveries: list[_Recovery] = []
        cfg = self.config
        self._need = {k: cfg.flood_hold_s if k[0] == "flooding" else cfg.enter_hold_s for k in self._held}

    # -- inputs -------------------------------------------------------------------

    def _old_enough(self, key: tuple[str, str | None], t_s: float, onset: dict[str, float]) -> bool:
        """Has each rise in this pattern gone on for min_rise_age_s?"""
        if key[0] == "flooding":
            return True
        partners = ("a", "b") if key[1] is None else (key[1],)
        return all(t_s - onset[p] >= self.config.min_rise_age_s for p in partners)

    def _gone(self, key: tuple[str, str | None], t: dict[str, PartnerTick]) -> bool | None:
        """True when the pattern is clearly gone this tick; None when data are missing."""
        cfg = self.config
        pattern, p = key
        if not (t["a"].known and t["b"].known) and pattern != "flooding":
            return None
        if pattern == "divergence":
            return t[p].delta_bpm < cfg.rise_exit_bpm or t[OTHER[p]].delta_bpm > cfg.other_exit_bpm
        if pattern == "escalation":
            return t["a"].delta_bpm < cfg.rise_exit_bpm or t["b"].delta_bpm < cfg.rise_exit_bpm
        x = t[p]
        if not x.known:
            return None
        return (
            x.hr10_bpm < cfg.flood_hr_bpm - cfg.flood_exit_margin_bpm
            and x.delta_bpm < cfg.flood_delta_bpm - cfg.flood_exit_margin_bpm
        )

    # -- the machine ----------------------------------------------------------------

    def step(self, t_s: float, a: PartnerTick, b: PartnerTick) -> list[Event]:
        """Advance one tick (live mode) and return the events it produced."""
        cfg = self.config
        ticks = {"a": a, "b": b}
        for p, x in ticks.items():
            if x.known:
                self._recent[p].append(x.delta_bpm)
                if x.delta_bpm - min(self._recent[p]) < cfg.onset_bpm:
                    self._onset_t_s[p] = t_s  # not (yet) risen: a rise starts after this
            else:
                self._recent[p].clear()
                self._onset_t_s[p] = t_s
        one = lambda v: np.array([v], dtype=np.float64)  # noqa: E731
        floor = {p: one(min(self._recent[p]) if self._recent[p] else np.nan) for p in ticks}
        cond = conditions(
            {p: one(x.delta_bpm) for p, x in ticks.items()},
            {p: one(x.hr10_bpm) for p, x in ticks.items()},
            floor,
            {p: one(self._onset_t_s[p]) for p in ticks},
            cfg,
        )
        return self._advance(t_s, ticks, {k: bool(v[0]) for k, v in cond.items()}, dict(self._onset_t_s))

    def run(
        self,
        t_s: np.ndarray,
        delta_bpm: dict[str, np.ndarray],
        hr10_bpm: dict[str, np.ndarray],
        quality_ok: dict[str, np.ndarray],
    ) -> list[Event]:
        """Batch mode: the same machine over many ticks, from a fresh detector; gives
        ``step``'s events (monitor/detector_batch.py says how)."""
        return run_batch(self, t_s, delta_bpm, hr10_bpm, quality_ok)

    def _advance(
        self,
        t_s: float,
        ticks: dict[str, PartnerTick],
        cond: dict[tuple[str, str | None], bool],
        onset: dict[str, float],
    ) -> list[Event]:
        """One tick of the machine, given that tick's conditions and rise onsets."""
        cfg = self.config
        a, b = ticks["a"], ticks["b"]
        events: list[Event] = []
        for key, holds in cond.items():
            self._held[key] = self._held[key] + self.tick_s if holds else 0.0

        # Ends first, so a pattern that ends and restarts is two episodes.
        for key in list(self.active):
            gone = self._gone(key, ticks)
            act = self.active[key]
            if gone is None:
                continue
            act.gone_s = act.gone_s + self.tick_s if gone else 0.0
            if act.gone_s >= cfg.exit_hold_s:
                del self.active[key]
                events.append(Event(t_s, "pattern_end", key[1], {"pattern": key[0], "duration_s": t_s - act.start_t_s}))

        for key, held in self._held.items():
            if key in self.active or not held >= self._need[key]:
                continue  # the common case, tested first: the checks below have no side effects
            pattern, p = key
            quality = ticks[p].quality_ok if p and pattern == "flooding" else a.quality_ok and b.quality_ok
            if quality and self._old_enough(key, t_s, onset):
                self.active[key] = _Active(pattern, p, t_s)
                events.append(Event(t_s, "pattern_start", p, {"pattern": pattern}))

        events += self._prompts(t_s, ticks)
        events += self._recovery(t_s, ticks)
        return events

    def _prompts(self, t_s: float, ticks: dict[str, PartnerTick]) -> list[Event]:
        cfg = self.config
        if not (ticks["a"].quality_ok and ticks["b"].quality_ok):
            return []
        if not self._flood_hold and all(act.prompted for act in self.active.values()):
            return []  # nothing to count down and nothing to prompt (the usual tick)
        for p in list(self._flood_hold):
            near = ticks[p].known and ticks[p].delta_bpm <= cfg.near_baseline_bpm
            self._flood_hold[p] = self._flood_hold[p] + self.tick_s if near else 0.0
            if self._flood_hold[p] >= cfg.near_baseline_s:
                del self._flood_hold[p]
        for act in sorted(self.active.values(), key=lambda x: _ORDER[x.pattern]):
            if act.prompted:
                continue
            urgent = act.pattern == "flooding"
            if not urgent and self._flood_hold:
                continue
            if not self.gate.allows(t_s, ignore_cooldown=urgent):
                continue
            texts = self.catalogue.for_pattern(act.pattern, act.partner, self.names)
            data = {"pattern": act.pattern, "title": texts.title, "text_a": texts.text_a, "text_b": texts.text_b}
            if urgent:
                data["break_s"] = cfg.break_s
                self._flood_hold[act.partner] = 0.0
            act.prompted = True
            self.gate.record(t_s)
            self._recoveries.append(_Recovery(t_s, act.pattern))
            return [Event(t_s, "prompt", act.partner, data)]
        return []

    def _recovery(self, t_s: float, ticks: dict[str, PartnerTick]) -> list[Event]:
        if not self._recoveries:
            return []
        cfg = self.config
        calm = all(x.known and abs(x.delta_bpm) <= cfg.recovery_bpm for x in ticks.values())
        events = []
        for rec in list(self._recoveries):
            rec.calm_s = rec.calm_s + self.tick_s if calm else 0.0
            if rec.calm_s >= cfg.recovery_s:
                self._recoveries.remove(rec)
                # Recovery counts until the calm stretch began, not until it was confirmed.
                back_t_s = t_s - rec.calm_s + self.tick_s
                data = {"pattern": rec.pattern, "prompt_t": rec.prompt_t_s, "recovery_s": back_t_s - rec.prompt_t_s}
                events.append(Event(t_s, "recovered", None, data))
        return events
