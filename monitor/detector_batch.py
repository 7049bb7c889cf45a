"""Batch mode of the detector: its state machine over a whole session's ticks.

``Detector.step`` advances the machine one tick at a time (live mode). Over a session
the entry conditions, rise floors and onsets come vectorised for all ticks
(conditions.py), and the machine itself is played only at ticks where something can
happen: a pattern may start or end, a prompt may be shown, a recovery may complete.
In between only counters move, and they are advanced with the same float additions
``step`` makes, so the events are identical to stepping every tick.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from monitor.conditions import (
    KEYS,
    calm_runs,
    conditions,
    gone_codes,
    next_true,
    onset_times,
    rolling_floor,
)
from monitor.events import Event

if TYPE_CHECKING:
    from monitor.detector import Detector

PARTNERS = ("a", "b")


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
    any_cond = np.zeros(n, dtype=bool)
    for holds in cond.values():
        any_cond |= holds
    busy = any_cond.copy()
    busy[1:] |= any_cond[:-1]  # the tick a condition stops, its hold count resets
    next_busy = next_true(busy).tolist()
    held_at = {k: np.flatnonzero(v).tolist() for k, v in cond.items()}  # ticks where each holds
    calm_n, need_n = _calm_counts(det)
    run_n = calm_runs(delta_bpm, hr10_bpm, cfg.recovery_bpm)
    ready = next_true(run_n >= need_n).tolist() + [n] if need_n else []
    run_n = run_n.tolist()
    busy = busy.tolist()
    gone = {k: v.tolist() for k, v in gone_codes(delta_bpm, hr10_bpm, cfg).items()}
    t, q = t_s.tolist(), {p: quality_ok[p].tolist() for p in PARTNERS}
    d, h = {p: delta_bpm[p].tolist() for p in PARTNERS}, {p: hr10_bpm[p].tolist() for p in PARTNERS}
    held = {k: v.tolist() for k, v in cond.items()}
    ons = {p: v.tolist() for p, v in onset.items()}
    events: list[Event] = []
    i = 0
    while i < n:
        if not (busy[i] or det.active or det._flood_hold):
            if not det._recoveries:
                i = next_busy[i]  # nothing open: the machine stands still until then
                continue
            if need_n:
                i = _skip_calm(det, i, next_busy[i], t, run_n, ready, calm_n, need_n)
                if i >= n:
                    break
        elif need_n and not det._flood_hold:
            # Only conditions of patterns already running may hold: nothing can start;
            # and a pattern still without its prompt waits for the gate to open.
            waiting = [act for act in det.active.values() if not act.prompted]
            stop = _gate_opens(det, waiting, t, i, n) if waiting else n
            if stop > i:
                stop = min(stop, min((_next_at(held_at[k], i, n) for k in KEYS if k not in det.active), default=n))
            if stop > i:
                i = _coast(det, i, stop, gone, run_n, held)
                if i >= n:
                    break
        ticks = {p: _Tick(d[p][i], h[p][i], q[p][i], d[p][i] == d[p][i] and h[p][i] == h[p][i]) for p in PARTNERS}
        events += det._advance(t[i], ticks, {k: v[i] for k, v in held.items()}, {p: v[i] for p, v in ons.items()})
        i += 1
    return events


def _next_at(ticks: list[int], i: int, n: int) -> int:
    """The first of the sorted ``ticks`` at or after i (n if none)."""
    k = bisect_left(ticks, i)
    return ticks[k] if k < len(ticks) else n


def _gate_opens(det: Detector, waiting: list, t: list[float], i: int, n: int) -> int:
    """The first tick at or after i at which the prompt gate would let the prompt of
    one of the ``waiting`` patterns through (n if none). Whether the gate allows a
    prompt only turns from no to yes as time goes on (the cool-down runs out, old
    prompts leave the rate window), so the tick is found by bisection."""
    first = n
    for act in waiting:
        urgent = act.pattern == "flooding"  # as Detector._prompts: no cool-down for it
        if det.gate.allows(t[i], ignore_cooldown=urgent):
            return i
        lo, hi = i + 1, first
        while lo < hi:
            mid = (lo + hi) // 2
            if det.gate.allows(t[mid], ignore_cooldown=urgent):
                hi = mid
            else:
                lo = mid + 1
        first = lo
    return first


def _calm_counts(det: Detector) -> tuple[list[float], int]:
    """A recovery's calm_s after k calm ticks in a row (the same additions ``step``
    does), for k below the count that completes it, and that count; count 0 when a
    shortcut over calm ticks would not be exact (a hold or recovery of 0 s)."""
    cfg = det.config
    calm_s = [0.0]
    if min(cfg.recovery_s, cfg.enter_hold_s, cfg.flood_hold_s, cfg.exit_hold_s) <= 0 or det.tick_s <= 0:
        return calm_s, 0
    while calm_s[-1] + det.tick_s < cfg.recovery_s:
        calm_s.append(calm_s[-1] + det.tick_s)
    return calm_s, len(calm_s)


def _skip_calm(
    det: Detector, i: int, stop: int, t: list[float], run_n: list[int], ready: list[int], calm_n: list[float], need_n: int
) -> int:
    """From tick i, where only recoveries are open, jump to the next tick where
    anything can happen: ``stop`` (the next busy tick) or the first tick at which a
    recovery completes. Recoveries have been counted at every tick since their
    prompt, so each one's count is its calm run, capped by the ticks since then."""
    born = [bisect_left(t, rec.prompt_t_s) for rec in det._recoveries]
    for b in born:
        stop = min(stop, ready[min(max(i, b + need_n - 1), len(ready) - 1)])
    if stop > i:
        for rec, b in zip(det._recoveries, born):
            rec.calm_s = calm_n[min(run_n[stop - 1], stop - b)]
    return stop


def _coast(
    det: Detector,
    i: int,
    stop: int,
    gone: dict[tuple[str, str | None], list[int]],
    run_n: list[int],
    held: dict[tuple[str, str | None], list[bool]],
) -> int:
    """From tick i, while no flooding hold is open, every active pattern has had its
    prompt or waits for the prompt gate, and no other pattern's condition holds,
    only counters move (``Detector._prompts`` changes nothing then): the active
    patterns' hold and gone counts and the recoveries' calm counts. Advance them tick
    by tick (as ``_advance`` would) up to ``stop``, or to the tick at which a pattern
    would end or a recovery complete, which is returned for ``_advance`` to play."""
    tick_s, exit_s, recovery_s = det.tick_s, det.config.exit_hold_s, det.config.recovery_s
    acts = [(act, gone[key]) for key, act in det.active.items()]
    holds = [(key, held[key]) for key in det.active]
    for key in det._held:
        if key not in det.active:
            det._held[key] = 0.0  # their conditions do not hold anywhere before stop
    recs = det._recoveries
    counts = det._held
    while i < stop:
        calm = run_n[i] > 0
        # Plain loops, not any(): there are one or two of each, at every tick.
        for act, g in acts:
            if g[i] == 1 and act.gone_s + tick_s >= exit_s:
                return i
        if calm:
            for rec in recs:
                if rec.calm_s + tick_s >= recovery_s:
                    return i
        for key, h in holds:
            counts[key] = counts[key] + tick_s if h[i] else 0.0
        for act, g in acts:
            if g[i] >= 0:  # -1: data missing, the count waits
                act.gone_s = act.gone_s + tick_s if g[i] else 0.0
        for rec in recs:
            rec.calm_s = rec.calm_s + tick_s if calm else 0.0
        i += 1
    return i
