"""Batch mode of the detector: its state machine over a whole session's ticks.

``Detector.step`` advances the machine one tick at a time (live mode). Over a session
the entry conditions, rise floors and onsets come vectorised for all ticks
(conditions.py), and the machine itself is played only at ticks where something
happens or may happen: a pattern starts or ends, a prompt may pass the gate, a
recovery completes. In between only counters move. Each counter is a run of equal
float additions of ``tick_s`` from 0.0, so after k of them it holds the k-th total
of those additions made once, in order: a jump sets it to the value ``step`` would
have reached, and the events are those of stepping every tick. With a hold of 0 s a
pattern may start at any tick, so then every tick is played.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from monitor.conditions import KEYS, calm_runs, conditions, gone_code, next_true, onset_times, rolling_floor
from monitor.events import Event

if TYPE_CHECKING:
    from monitor.detector import Detector

PARTNERS = ("a", "b")
Key = tuple[str, str | None]


class _Tick(NamedTuple):
    """PartnerTick's fields with ``known`` worked out once: batch mode builds one per
    partner per visited tick, and a tuple is much cheaper to build than a dataclass."""

    delta_bpm: float
    hr10_bpm: float
    quality_ok: bool
    known: bool


def run_batch(
    det: Detector,
    t_s: np.ndarray,
    delta_bpm: dict[str, np.ndarray],
    hr10_bpm: dict[str, np.ndarray],
    quality_ok: dict[str, np.ndarray],
) -> list[Event]:
    """Events of a fresh detector ``det`` over ticks ``t_s`` (s), as ``det.step`` on
    every tick would give them. Inputs per partner: HR above baseline and HR10 (bpm,
    NaN when unknown), and whether the signal is usable."""
    cfg = det.config
    known = {p: np.isfinite(delta_bpm[p]) & np.isfinite(hr10_bpm[p]) for p in PARTNERS}
    n_look = int(round(cfg.rise_lookback_s / det.tick_s))
    floor = {p: rolling_floor(delta_bpm[p], known[p], n_look) for p in PARTNERS}
    onset = {p: onset_times(t_s, delta_bpm[p], floor[p], known[p], cfg.onset_bpm) for p in PARTNERS}
    cond = conditions(delta_bpm, hr10_bpm, floor, onset, cfg)
    n = len(t_s)
    runs = _Runs(det, t_s, delta_bpm, hr10_bpm, quality_ok, cond, onset)
    # The machine reads a few ticks only: their values come a row at a time.
    values = np.stack([delta_bpm["a"], delta_bpm["b"], hr10_bpm["a"], hr10_bpm["b"], onset["a"], onset["b"]], axis=1)
    flags = np.stack([quality_ok["a"], quality_ok["b"], *cond.values()], axis=1).astype(bool, copy=False)
    events: list[Event] = []
    i = 0
    while i < n:
        if runs.jump and not det._flood_hold:
            # Until a prompt is due (the gate opens for a waiting pattern) or a
            # pattern would start, only counters move: jump.
            waiting = [act for act in det.active.values() if not act.prompted]
            stop = _gate_opens(det, waiting, t_s, i, n) if waiting else n
            if stop > i:
                stop = min(stop, min((runs.next_start(k, i) for k in KEYS if k not in det.active), default=n))
            if stop > i:
                i = _coast(det, i, stop, runs)
                if i >= n:
                    break
        da, db, ha, hb, oa, ob = values[i].tolist()
        qa, qb, *held = flags[i].tolist()
        ticks = {"a": _Tick(da, ha, qa, da == da and ha == ha), "b": _Tick(db, hb, qb, db == db and hb == hb)}
        events += det._advance(t_s[i].item(), ticks, dict(zip(cond, held)), {"a": oa, "b": ob})
        i += 1
    return events


def _gate_opens(det: Detector, waiting: list, t_s: np.ndarray, i: int, n: int) -> int:
    """The first tick at or after i at which the prompt gate would let the prompt of
    one of the ``waiting`` patterns through (n if none). Whether the gate allows a
    prompt only turns from no to yes as time goes on (the cool-down runs out, old
    prompts leave the rate window), so the tick is found by bisection."""
    first = n
    for act in waiting:
        urgent = act.pattern == "flooding"  # as Detector._prompts: no cool-down for it
        if det.gate.allows(t_s[i].item(), ignore_cooldown=urgent):
            return i
        lo, hi = i + 1, first
        while lo < hi:
            mid = (lo + hi) // 2
            if det.gate.allows(t_s[mid].item(), ignore_cooldown=urgent):
                hi = mid
            else:
                lo = mid + 1
        first = lo
    return first


class _Runs:
    """How the machine's counters run over the session, for jumping over ticks.

    A hold count is ``total(k)`` with k the ticks in a row its condition held; a
    recovery's calm count, with k the ticks in a row both partners were calm, capped
    by the ticks since its prompt; a pattern's gone count, with k the ticks it was
    clearly gone since it was last not gone (ticks without data leave it as it is),
    capped likewise by those since it started. ``jump`` is False when jumping would
    not be exact (a hold or recovery of 0 s).
    """

    def __init__(self, det: Detector, t_s: np.ndarray, delta_bpm: dict, hr10_bpm: dict, quality_ok: dict, cond: dict, onset: dict) -> None:
        cfg = det.config
        n = len(t_s)
        self.t_s, self.delta_bpm, self.hr10_bpm, self.cfg = t_s, delta_bpm, hr10_bpm, cfg
        self.tick_s, self.n = det.tick_s, n
        # Jumping is exact only when every hold and recovery needs a tick at least.
        self.jump = min(cfg.recovery_s, cfg.enter_hold_s, cfg.flood_hold_s, cfg.exit_hold_s) > 0 and det.tick_s > 0
        self.sums = [0.0]
        if not self.jump:
            return
        # The count at which a recovery completes, and a pattern ends.
        self.need_n = self.count_for(cfg.recovery_s)
        self.exit_n = self.count_for(cfg.exit_hold_s)
        self.calm_n = calm_runs(delta_bpm, hr10_bpm, cfg.recovery_bpm)
        self.ready = np.append(next_true(self.calm_n >= self.need_n), n)
        # Per pattern (KEYS order): its hold run, and the ticks at which it would
        # start if it were not running: held long enough, signal usable, rises old
        # enough (the checks of Detector._advance, for every tick at once).
        idx = np.arange(n)
        held = np.stack([cond[k] for k in KEYS])
        self.held_n = idx - np.maximum.accumulate(np.where(held, -1, idx), axis=1)
        need_n = np.array([[self.count_for(det._need[k])] for k in KEYS])
        both_ok = quality_ok["a"] & quality_ok["b"]
        old = {p: t_s - onset[p] >= cfg.min_rise_age_s for p in PARTNERS}
        can = np.stack([both_ok & old["a"], both_ok & old["b"], both_ok & old["a"] & old["b"], quality_ok["a"], quality_ok["b"]])
        self._starts = {k: np.flatnonzero(v).tolist() for k, v in zip(KEYS, (self.held_n >= need_n) & can)}
        self._gone: dict[Key, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def total(self, k: int) -> float:
        """k additions of tick_s to 0.0, one after the other, as the counters make
        them (made as far as they are asked for)."""
        sums = self.sums
        while len(sums) <= k:
            sums.append(sums[-1] + self.tick_s)
        return sums[k]

    def count_for(self, s: float) -> int:
        """The fewest additions whose total reaches s (n + 1: more than the ticks)."""
        sums = self.sums
        while sums[-1] < s and len(sums) <= self.n + 1:
            sums.append(sums[-1] + self.tick_s)
        return bisect_left(sums, s)

    def next_start(self, key: Key, i: int) -> int:
        """The first tick at or after i at which pattern ``key`` would start (n if none)."""
        ticks = self._starts[key]
        k = bisect_left(ticks, i)
        return ticks[k] if k < len(ticks) else len(self.t_s)

    def start(self, t: float) -> int:
        """Index of the tick at time t (s)."""
        return int(self.t_s.searchsorted(t))

    def gone(self, key: Key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For pattern ``key``: per tick its gone run, the prefix count of gone ticks
        (one longer than the ticks), and the ticks at which a long enough run ends it.
        Made the first time the pattern runs: most sessions run few of the five."""
        if key not in self._gone:
            code = gone_code(key, self.delta_bpm, self.hr10_bpm, self.cfg)
            prefix = np.zeros(self.n + 1, dtype=np.int64)
            np.cumsum(code == 1, out=prefix[1:])
            # The prefix only grows, so its largest value at a not-gone tick is the
            # one at the last of them.
            run = prefix[1:] - np.maximum.accumulate(np.where(code == 0, prefix[1:], 0))
            self._gone[key] = (run, prefix, np.flatnonzero((code == 1) & (run >= self.exit_n)))
        return self._gone[key]


def _coast(det: Detector, i: int, stop: int, runs: _Runs) -> int:
    """From tick i up to ``stop``, when nothing can start and no prompt is due (no
    flooding hold open, every active pattern prompted or waiting for the gate), only
    counters move: the hold counts, the active patterns' gone counts and the
    recoveries' calm counts. Jump to ``stop``, or to the first tick at which a
    pattern would end or a recovery complete, set the counters as ``_advance`` would
    have left them the tick before, and return that tick."""
    starts = {key: runs.start(act.start_t_s) for key, act in det.active.items()}
    for key, s in starts.items():
        run, prefix, ends = runs.gone(key)
        # Ended at the first tick with a long run that is also that long since start.
        since = int(prefix.searchsorted(prefix[s + 1] + runs.exit_n)) - 1
        k = int(ends.searchsorted(max(i, since)))
        if k < len(ends):
            stop = min(stop, int(ends[k]))
    born = [runs.start(rec.prompt_t_s) for rec in det._recoveries]
    for b in born:
        stop = min(stop, int(runs.ready[min(max(i, b + runs.need_n - 1), len(runs.ready) - 1)]))
    if stop > i:
        last, total = stop - 1, runs.total
        for key, s in starts.items():
            run, prefix, _ = runs.gone(key)
            det.active[key].gone_s = total(min(int(run[last]), int(prefix[stop] - prefix[s + 1])))
        calm = int(runs.calm_n[last])
        for rec, b in zip(det._recoveries, born):
            rec.calm_s = total(min(calm, stop - b))
        for key, n_held in zip(KEYS, runs.held_n[:, last].tolist()):
            det._held[key] = total(n_held)
    return stop
