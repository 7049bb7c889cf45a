"""Artifact correction beat by beat: ``artifacts.correct_beats`` carried from beat to beat.

A live session learns its beats one at a time. Re-running ``correct_beats`` over the
trailing ~100 raw beats at every tick costs ~100 small NumPy calls for one or two new
beats; ``TrailingCorrector`` instead keeps what the method needs between beats: the
usable values of the three trailing windows (RR for the median, |dRR| for Th1, |mRR|
for Th2), each kept sorted, and the few neighbours and classes of the beats around the
one being decided. Beat i is decided when beat i + 2 arrives, or at once when a gap
follows (``artifacts.final_count``), and from then on nothing can change it.

The rules are those of ``monitor.artifacts`` (read its module notes); what is new here
is only the bookkeeping. Every figure is worked out with the same float64 operations
in the same order as the batch code (one Python float operation per NumPy element-wise
operation), so each beat's flags, NN values and times equal a batch call's over the
whole recording to the last bit; tests/monitor/test_artifacts_live.py checks it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from dataclasses import dataclass
from operator import index

from devices.hrs import RR_UNITS_PER_SECOND
from monitor.artifacts import LOOKAHEAD_BEATS, ArtifactConfig, ArtifactInputError, BeatFlag

_NAN = math.nan
_RR_MS_PER_UNIT = 1000.0 / RR_UNITS_PER_SECOND
_NORMAL, _ECTOPIC, _LONG, _SHORT = int(BeatFlag.NORMAL), int(BeatFlag.ECTOPIC), int(BeatFlag.LONG), int(BeatFlag.SHORT)
_MISSED, _EXTRA, _OUT_OF_RANGE = int(BeatFlag.MISSED), int(BeatFlag.EXTRA), int(BeatFlag.OUT_OF_RANGE)


@dataclass(frozen=True, slots=True)
class NNBeat:
    """One beat of the corrected NN series, as in ``artifacts.CorrectedBeats``.

    t_s: beat time (s); nn_units: NN interval (1/1024 s); contiguous: False after a gap
    or a dropped beat; corrected: interpolated, split, merged or first after a drop;
    raw_index: the raw beat it comes from (0-based, in push order).
    """

    t_s: float
    nn_units: int
    contiguous: bool
    corrected: bool
    raw_index: int


@dataclass(frozen=True, slots=True)
class FinalBeat:
    """A raw beat whose result is final: its BeatFlag bits and the NN beats it yields
    (none if removed or dropped, two if split)."""

    raw_index: int
    flags: int
    nn: tuple[NNBeat, ...]


def _fmin(a: float, b: float) -> float:
    """np.fmin on two floats: a NaN loses to a number."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a <= b else b


def _fmax(a: float, b: float) -> float:
    """np.fmax on two floats: a NaN loses to a number."""
    if a != a:
        return b
    if b != b:
        return a
    return a if a >= b else b


def _quantile(srt: list[int], q: float) -> float:
    """Quantile q of sorted integers by linear interpolation (NaN if empty), as
    ``beat_windows.pick`` computes it: position q * (m - 1), then a + frac * (b - a)."""
    m = len(srt)
    if m == 0:
        return _NAN
    pos = q * (m - 1)
    lo = math.floor(pos)
    a = float(srt[lo])
    b = float(srt[lo + 1 if lo + 1 < m else m - 1])
    return a + (pos - lo) * (b - a)


class _Window:
    """A trailing stretch of one segment: per beat its value (None if unusable), and
    the usable values kept sorted, with their sum."""

    __slots__ = ("entries", "sorted", "total", "lo")

    def __init__(self) -> None:
        self.entries: deque[int | None] = deque()
        self.sorted: list[int] = []
        self.total = 0
        self.lo = 0  # segment-local index of the oldest entry

    def add(self, value: int | None) -> None:
        self.entries.append(value)
        if value is not None:
            insort(self.sorted, value)
            self.total += value

    def drop_before(self, lo: int) -> None:
        """Forget the entries of beats before segment-local index ``lo``."""
        while self.lo < lo:
            value = self.entries.popleft()
            self.lo += 1
            if value is not None:
                del self.sorted[bisect_left(self.sorted, value)]
                self.total -= value


class TrailingCorrector:
    """Lipponen & Tarvainen correction fed one raw beat at a time (see module notes).

    ``push`` each raw beat in order; it returns the beats that became final with it,
    oldest first. ``finish`` ends the recording and returns the beats still pending.
    State is bounded: about a threshold window of values, whatever the session length.
    """

    def __init__(self, config: ArtifactConfig = ArtifactConfig()) -> None:
        self.cfg = config
        self._med_back = config.median_window_beats - 1 - LOOKAHEAD_BEATS
        self._th1_back = config.threshold_window_beats - 1 - LOOKAHEAD_BEATS
        self._th2_back = config.threshold_window_beats - 1
        self._cap_inf = config.threshold_cap <= 0
        self.n_pushed = 0
        self._last_t_s = -math.inf
        self._finished = False
        # Across segments: what beat i needs to know of beat i - 1 wherever it is.
        self._prev_rule = _NORMAL  # its class after the extra-run rule
        self._prev_dropped = False
        self._prev_raw_contiguous = True
        self._new_segment(0)

    def _new_segment(self, first: int) -> None:
        self._seg_first = first  # raw index of the segment's first beat
        self._seg_len = 0  # beats of the segment pushed so far
        self._decided = 0  # beats of the segment decided so far
        # Segment-local index base .. : [rr, t_s, contiguous, out_of_range, dRR, accepted]
        self._beats: list[list] = []
        self._base = 0
        self._med, self._th1, self._th2 = _Window(), _Window(), _Window()
        self._prev_ectopic = self._prev_extra = False  # of beat i - 1, in this segment

    def push(self, rr_units: int, t_s: float, contiguous: bool) -> list[FinalBeat]:
        """Take the next raw beat: RR (1/1024 s), beat time (s, not before the previous
        beat's), and False if a gap precedes it. Returns the beats now final."""
        i = self.n_pushed
        if self._finished:
            raise ArtifactInputError(f"beat {i} pushed after finish()")
        try:
            rr = index(rr_units)
        except TypeError:
            raise ArtifactInputError(f"rr_units of beat {i} must be a whole number (1/1024 s), got {rr_units!r}") from None
        t_s = float(t_s)
        if t_s < self._last_t_s:
            raise ArtifactInputError(f"beat_t_s goes back in time at beat {i}: {t_s} < {self._last_t_s}")
        out: list[FinalBeat] = []
        brk = i == 0 or not contiguous
        if brk and i:
            self._close(out)
            self._new_segment(i)
        oor = not (self.cfg.rr_min_ms <= rr * _RR_MS_PER_UNIT <= self.cfg.rr_max_ms)
        if brk:
            d, d_value = _NAN, None
        else:
            prev = self._beats[-1]
            d = float(rr - prev[0])
            d_value = None if oor or prev[3] else abs(rr - prev[0])
        self._med.add(None if oor else rr)
        self._th1.add(d_value)
        self._beats.append([rr, t_s, bool(contiguous), oor, d, False])
        self._seg_len += 1
        self.n_pushed += 1
        self._last_t_s = t_s
        if self._seg_len > LOOKAHEAD_BEATS:
            out.append(self._decide())
        return out

    def finish(self) -> list[FinalBeat]:
        """End of the recording: decide the beats still waiting for their look-ahead
        (as ``correct_beats`` does at the end of its arrays). No push after this."""
        out: list[FinalBeat] = []
        if not self._finished:
            self._close(out)
            self._finished = True
        return out

    def _close(self, out: list[FinalBeat]) -> None:
        while self._decided < self._seg_len:
            out.append(self._decide())

    def _beat(self, j: int) -> list | None:
        """Segment-local beat j if the segment holds it (so far), else None."""
        k = j - self._base
        return self._beats[k] if 0 <= k < len(self._beats) else None

    def _threshold(self, q1: float, q3: float, m: int, med: float) -> float:
        """As ``artifacts._threshold`` for one beat: alpha * QD between floor and cap."""
        cfg = self.cfg
        cap = math.inf if self._cap_inf else cfg.threshold_cap * med
        spread = cfg.alpha * (q3 - q1) / 2.0 if m >= cfg.min_window_beats else cap
        th = _fmax(_fmin(spread, cap), cfg.threshold_floor * med)
        return th if th > 0 and th != math.inf else _NAN  # NaN fails both tests too

    def _decide(self) -> FinalBeat:
        """Decide the oldest undecided beat j of the segment (as ``_classify`` and
        ``correct_beats`` do for it); its look-ahead beats are those pushed so far."""
        cfg, j = self.cfg, self._decided
        rr, t_s, contiguous, oor, d, _ = self._beats[j - self._base]
        nxt, nxt2, prv = self._beat(j + 1), self._beat(j + 2), self._beat(j - 1)

        self._med.drop_before(j - self._med_back)
        med = _quantile(self._med.sorted, 0.5)
        self._th1.drop_before(j - self._th1_back)
        srt = self._th1.sorted
        th1 = self._threshold(_quantile(srt, 0.25), _quantile(srt, 0.75), len(srt), med)
        has_med = med == med
        mrr2 = int(2.0 * rr - 2.0 * med) if has_med else 0  # int() truncates, as astype
        if mrr2 < 0:
            mrr2 = 2 * mrr2
        self._th2.add(abs(mrr2) if has_med and not oor else None)
        self._th2.drop_before(j - self._th2_back)
        srt = self._th2.sorted
        th2 = self._threshold(_quantile(srt, 0.25) / 2.0, _quantile(srt, 0.75) / 2.0, len(srt), med)

        d_prev = prv[4] if prv is not None else _NAN
        d_next = nxt[4] if nxt is not None else _NAN
        d_next2 = nxt2[4] if nxt2 is not None else _NAN
        s11 = d / th1
        s12 = (_fmax(d_prev, d_next) if s11 > 0 else _fmin(d_prev, d_next)) / th1
        s22 = (_fmin(d_next, d_next2) if s11 >= 0 else _fmax(d_next, d_next2)) / th1
        nmrr = (mrr2 / 2.0 if has_med else _NAN) / th2
        c1, c2 = cfg.c1, cfg.c2
        ectopic = (s11 > 1 and s12 < -c1 * s11 - c2) or (s11 < -1 and s12 > -c1 * s11 + c2)
        after_ectopic = self._prev_ectopic  # reset at a segment's first beat
        long_s2 = s11 > 1 and s22 < -1 and not after_ectopic
        short_s2 = s11 < -1 and s22 > 1 and not after_ectopic
        big_m = abs(nmrr) > cfg.mrr_limit
        rule = _NORMAL
        if long_s2 or (big_m and nmrr > 0 and not short_s2):
            rule = _LONG
        if short_s2 or (big_m and nmrr < 0 and not long_s2):
            rule = _SHORT
        if long_s2 and abs(rr / 2.0 - med) < th2:
            rule = _MISSED
        if short_s2 and abs(rr + (float(nxt[0]) if nxt is not None else _NAN) - med) < th2:
            rule = _EXTRA
        if ectopic:
            rule = _ECTOPIC

        was_extra = rule == _EXTRA
        if was_extra and self._prev_extra:
            rule = _SHORT  # in a run of extra beats only the first merges
        merged = self._prev_rule == _EXTRA
        self._prev_ectopic, self._prev_extra, self._prev_rule = ectopic, was_extra, rule
        if merged:
            rule = _NORMAL
        split, removed = rule == _MISSED, rule == _EXTRA
        dropped = oor and not (split or removed or merged)
        replaced = rule in (_ECTOPIC, _LONG, _SHORT) and not dropped
        after_drop = self._prev_dropped
        self._beats[j - self._base][5] = rule == _NORMAL and not merged and not oor  # accepted

        value = rr
        if replaced:
            value = self._interpolated(j, med, nxt, nxt2)
        elif merged:
            value = rr + prv[0]
        raw_contiguous = contiguous and not after_drop
        starts_contiguous = self._prev_raw_contiguous if merged else raw_contiguous
        corrected = replaced or merged or split or after_drop
        raw_index = self._seg_first + j
        if split:
            half = rr // 2
            t_inserted = t_s - (rr - half) / RR_UNITS_PER_SECOND
            t_inserted = t_inserted if t_inserted >= prv[1] else prv[1]  # never before the previous beat
            nn = (NNBeat(t_inserted, half, starts_contiguous, corrected, raw_index),
                  NNBeat(t_s, rr - half, True, corrected, raw_index))
        elif dropped or removed:
            nn = ()
        else:
            nn = (NNBeat(t_s, value, starts_contiguous, corrected, raw_index),)
        self._prev_dropped, self._prev_raw_contiguous = dropped, raw_contiguous
        self._decided += 1
        if len(self._beats) > 2 * LOOKAHEAD_BEATS + 3:  # keep beats j - 2 .. j + 2 and a little more
            del self._beats[:LOOKAHEAD_BEATS]
            self._base += LOOKAHEAD_BEATS
        return FinalBeat(raw_index, rule | (_OUT_OF_RANGE if oor else 0), nn)

    def _interpolated(self, j: int, med: float, nxt: list | None, nxt2: list | None) -> int:
        """The replacement RR of beat j: median of beats j-2, j-1 (if accepted), j+1, j+2
        (if in range) and the mean in-range RR of the median window, rounded half to even."""
        hood = []
        for other in (self._beat(j - 2), self._beat(j - 1)):
            if other is not None and other[5]:
                hood.append(float(other[0]))
        for other in (nxt, nxt2):
            if other is not None and not other[3]:
                hood.append(float(other[0]))
        count = len(self._med.sorted)
        if count:
            hood.append(self._med.total / count)  # both exact in float64, as numpy divides
        hood.sort()
        local = _quantile(hood, 0.5)
        return round(local if local == local else med)  # round() on a float: half to even, as np.rint
