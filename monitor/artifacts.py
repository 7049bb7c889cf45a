"""RR artifact detection and correction: Lipponen & Tarvainen (2019), in trailing form.

Follows J. A. Lipponen and M. P. Tarvainen, "A robust algorithm for heart rate
variability time series artefact correction using novel beat classification",
J Med Eng Technol 43(3):173-181, 2019: the dRR and mRR series, the time-varying
thresholds Th1 and Th2, subspaces S1 (ectopic) and S2 (long/short), and the missed and
extra tests. The paper centres every window on the beat; here every window ends at
most LOOKAHEAD_BEATS = 2 beats after beat i, so beat i is final once i + 2 has arrived:

    dRR(j) = RR(j) - RR(j-1)
    med(i) = median RR over beats i-8 .. i+2                      (11 beats)
    Th1(i) = alpha * QD(|dRR(j)|), j = i-88 .. i+2                (91 values)
    mRR(j) = RR(j) - med(j), doubled where negative (as in the paper)
    Th2(i) = alpha * QD(|mRR(j)|), j = i-90 .. i                  (91; mRR(j) needs j+2)

QD is the quartile deviation (Q3 - Q1) / 2, quartiles by linear interpolation. All dRR
values in the rules for beat i (S11 = dRR(i), S12 from dRR(i-1), dRR(i+1), S22 from
dRR(i+1), dRR(i+2)) are divided by the same Th1(i). Windows never reach across a gap
(``contiguous`` False): each stretch between gaps is a segment of its own, and near its
start the windows simply hold fewer beats. Out-of-range RR values take part in the
rules but not in the medians and quartile deviations.

Additions to the paper, each for a case the recorded PVC fixture or the simulator shows:
- Th1 and Th2 are kept between ``threshold_floor`` (8 %) and ``threshold_cap`` (25 %)
  of med(i). The quartile deviation is robust while fewer than a quarter of the beats
  are ectopic; in bigeminy or trigeminy it grows until nothing is found, hence the cap.
  When variability is very low (a flooded heart at 110 bpm) or lags behind a change of
  state (trailing windows), it shrinks until ordinary jitter of a few ms is flagged,
  hence the floor. Both 0 gives the paper's thresholds.
- Right after a beat found ectopic the S2 (long/short) tests are skipped: that dRR
  measures the ectopic beat's compensation, not the beat itself (in trigeminy every
  sinus beat would otherwise look short).
- Until a window holds ``min_window_beats`` values (after a gap), the threshold is the
  cap: a spread from a handful of beats says little.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND
from monitor.beat_windows import Segments, pick, window_quantiles, window_quantiles_many

LOOKAHEAD_BEATS = 2


class BeatFlag(IntFlag):
    """What a raw beat (the RR interval ending at it) was found to be; 0 = normal.

    A beat carries at most one rule class, plus OUT_OF_RANGE when its RR is implausible.
    """

    NORMAL = 0
    ECTOPIC = 1  # subspace S1: a short-long or long-short pair member. Interpolated.
    LONG = 2  # subspace S2, or mRR > 3 Th2. Interpolated.
    SHORT = 4  # subspace S2, or mRR < -3 Th2. Interpolated.
    MISSED = 8  # long, and half of it is near the median. Split in two.
    EXTRA = 16  # short, and it plus the next is near the median. Removed, merged into the next.
    OUT_OF_RANGE = 32  # outside rr_min_ms .. rr_max_ms. Dropped unless merged or split.


class ArtifactInputError(ValueError):
    """Beats or ticks the artifact functions cannot work on; says which and where."""


@dataclass(frozen=True)
class ArtifactConfig:
    """Thresholds of artifact detection and of the signal-quality rule.

    alpha: Th = alpha * quartile deviation (dimensionless; paper: 5.2).
    c1, c2: slope and offset of the ectopic region in subspace S1 (paper: 0.13, 0.17).
    mrr_limit: |mRR| / Th2 above this is a long or short beat (paper: 3).
    threshold_window_beats: values in each quartile-deviation window (beats; paper: 91).
    median_window_beats: beats in the RR median (paper: 11).
    threshold_cap, threshold_floor: Th1 and Th2 stay between these fractions of the
        local median RR (dimensionless; 0 = no cap / no floor: the paper's
        thresholds). See the module notes.
    min_window_beats: fewest values (beats) a quartile deviation is taken from; with
        fewer (just after a gap) the threshold is the cap (none if there is no cap).
    rr_min_ms, rr_max_ms: plausible RR range (ms); outside, a beat is out of range
        whatever the rules say.
    quality_window_s: window of the quality figures (s), ending at the tick.
    max_corrected_share: above this share (0-1) of corrected beats in the window the
        signal is low quality.
    max_gap_s: a stretch without a beat longer than this (s) is low quality.
    """

    alpha: float = 5.2
    c1: float = 0.13
    c2: float = 0.17
    mrr_limit: float = 3.0
    threshold_window_beats: int = 91
    median_window_beats: int = 11
    threshold_cap: float = 0.25
    threshold_floor: float = 0.08
    min_window_beats: int = 20
    rr_min_ms: float = 300.0
    rr_max_ms: float = 2000.0
    quality_window_s: float = 30.0
    max_corrected_share: float = 0.05
    max_gap_s: float = 3.0

    def __post_init__(self) -> None:
        for name in ("threshold_window_beats", "median_window_beats", "min_window_beats"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a whole number of beats, got {value!r}")
        for name in ("threshold_window_beats", "median_window_beats"):
            if getattr(self, name) < LOOKAHEAD_BEATS + 1:
                raise ValueError(f"{name} must be at least {LOOKAHEAD_BEATS + 1} beats")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")
        floor, cap = self.threshold_floor, self.threshold_cap
        if floor < 0 or cap < 0 or 0 < cap <= floor:
            raise ValueError(f"need 0 <= threshold_floor < threshold_cap (or cap 0), got {floor}, {cap}")
        if not 0 < self.rr_min_ms < self.rr_max_ms:
            raise ValueError(f"need 0 < rr_min_ms < rr_max_ms, got {self.rr_min_ms}, {self.rr_max_ms}")

    @property
    def history_beats(self) -> int:
        """Raw beats a live caller keeps so that its newest final beat is exact.

        Beat i's rule class depends on beats i - B .. i + 2, B = (threshold window - 1)
        + (median window - 3); its correction also on the classes of the 4 beats before.
        """
        back = (self.threshold_window_beats - 1) + (self.median_window_beats - 1 - LOOKAHEAD_BEATS)
        return back + 4 + LOOKAHEAD_BEATS + 1


@dataclass(frozen=True, eq=False)
class CorrectedBeats:
    """The corrected NN series, and what happened to each raw beat.

    NN side (satisfies metrics.NNSeriesLike): ``t_s`` beat times (s, sorted),
    ``nn_units`` NN intervals (int64, 1/1024 s), ``contiguous`` (False after a gap or
    a dropped beat), ``corrected`` (interpolated, split, merged, or first after a
    dropped beat), ``raw_index`` (the raw beat each NN beat comes from: both halves of
    a split name the missed beat; a merge names the beat after the removed one).
    Raw side: ``beat_flags`` (int8 BeatFlag bits), ``raw_changed`` (the raw interval
    does not reach the NN series as measured), ``n_final`` (leading raw beats whose
    results no later beat can change).
    """

    t_s: np.ndarray
    nn_units: np.ndarray
    contiguous: np.ndarray
    corrected: np.ndarray
    raw_index: np.ndarray
    beat_flags: np.ndarray
    raw_changed: np.ndarray
    n_final: int

    def counts(self) -> dict[str, int]:
        """Raw beats per flag, by lower-case name (an out-of-range beat may count twice)."""
        return {flag.name.lower(): int(np.count_nonzero(self.beat_flags & flag)) for flag in BeatFlag if flag}


def _threshold(q1: np.ndarray, q3: np.ndarray, m: np.ndarray, cfg: ArtifactConfig, cap: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """alpha * quartile deviation, kept between ``floor`` and ``cap`` (both from med)."""
    th = q3 - q1
    np.multiply(cfg.alpha, th, out=th)
    np.divide(th, 2.0, out=th)
    np.copyto(th, cap, where=m < cfg.min_window_beats)
    np.fmin(th, cap, out=th)
    np.fmax(th, floor, out=th)
    np.copyto(th, np.nan, where=~((th > 0) & (th < np.inf)))  # no spread: nothing can be judged
    return th


def _validated(rr_units: np.ndarray, contiguous: np.ndarray, beat_t_s: np.ndarray | None = None):
    rr, cont = np.asarray(rr_units), np.asarray(contiguous)
    if rr.ndim != 1 or not np.issubdtype(rr.dtype, np.integer):
        raise ArtifactInputError(f"rr_units must be a 1-D integer array (1/1024 s), got {rr.dtype}{rr.shape}")
    if cont.shape != rr.shape or cont.dtype != np.bool_:
        raise ArtifactInputError(
            f"contiguous must be a bool array of shape {rr.shape}, got {cont.dtype}{cont.shape}"
        )
    if beat_t_s is not None:
        check_times(np.asarray(beat_t_s, dtype=np.float64), rr.shape)
    return rr.astype(np.int64), cont


def check_times(t: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    if shape is not None and t.shape != shape:
        raise ArtifactInputError(f"beat_t_s has shape {t.shape}, expected {shape}")
    if len(t) > 1 and (t[1:] < t[:-1]).any():  # the array methods: cheaper than np.any(np.diff(t) < 0)
        raise ArtifactInputError(f"beat_t_s goes back in time at beat {int(np.argmax(np.diff(t) < 0)) + 1}")


def _classify(rr: np.ndarray, out_of_range: np.ndarray, s: Segments, cfg: ArtifactConfig):
    """Rule class per beat (one BeatFlag value, or 0) and the median med(i)."""
    n, la = len(rr), LOOKAHEAD_BEATS
    tw, mw = cfg.threshold_window_beats, cfg.median_window_beats
    drr = np.zeros(n, dtype=np.int64)
    np.subtract(rr[1:], rr[:-1], out=drr[1:])
    usable = ~out_of_range
    d_usable = usable & ~s.brk
    d_usable[1:] &= usable[:-1]

    (med,), _ = window_quantiles(rr, usable, s, mw - 1 - la, la, (0.5,))
    cap = cfg.threshold_cap * med if cfg.threshold_cap > 0 else np.full(n, np.inf)
    floor = cfg.threshold_floor * med
    has_med = np.isfinite(med)  # false only where every beat in reach is out of range
    every_med = bool(has_med.all())
    if every_med:  # nearly always: no masks needed
        mrr2 = (2.0 * rr - 2.0 * med).astype(np.int64)
    else:
        mrr2 = np.where(has_med, 2.0 * rr - 2.0 * np.where(has_med, med, 0.0), 0.0).astype(np.int64)
        usable &= has_med
    np.multiply(mrr2, 2, out=mrr2, where=mrr2 < 0)  # twice mRR: whole even when med ends in .5
    # Both quartile-deviation windows are 91 wide: one pass of window_quantiles_many.
    ((q1, q3), m1), ((p1, p3), m2) = window_quantiles_many(
        [(np.abs(drr), d_usable, tw - 1 - la, la), (np.abs(mrr2), usable, tw - 1, 0)], s, (0.25, 0.75)
    )
    th1 = _threshold(q1, q3, m1, cfg, cap, floor)
    th2 = _threshold(p1 / 2.0, p3 / 2.0, m2, cfg, cap, floor)

    # dRR of beat i + k within i's segment, NaN outside it. d is NaN at each segment's
    # first beat, so a beat after a gap needs no mask; only a step over one does.
    d = drr.astype(np.float64)
    d[s.brk] = np.nan
    d_prev, d_next, d_next2 = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    d_prev[1:] = d[:-1]
    d_prev[s.brk] = np.nan
    d_next[:-1] = d[1:]
    d_next2[:-2] = d[2:]
    d_next2[:-1][s.brk[1:]] = np.nan
    s11 = d / th1
    s12 = np.where(s11 > 0, np.fmax(d_prev, d_next), np.fmin(d_prev, d_next)) / th1
    s22 = np.where(s11 >= 0, np.fmin(d_next, d_next2), np.fmax(d_next, d_next2)) / th1
    nmrr = (mrr2 / 2.0 if every_med else np.where(has_med, mrr2 / 2.0, np.nan)) / th2

    slope = -cfg.c1 * s11
    ectopic = ((s11 > 1) & (s12 < slope - cfg.c2)) | ((s11 < -1) & (s12 > slope + cfg.c2))
    after_ectopic = np.zeros(n, dtype=bool)
    after_ectopic[1:] = ectopic[:-1] & ~s.brk[1:]
    long_s2 = (s11 > 1) & (s22 < -1) & ~after_ectopic
    short_s2 = (s11 < -1) & (s22 > 1) & ~after_ectopic
    big_m = np.abs(nmrr) > cfg.mrr_limit

    rule = np.zeros(n, dtype=np.int8)
    np.copyto(rule, BeatFlag.LONG, where=long_s2 | (big_m & (nmrr > 0) & ~short_s2))
    np.copyto(rule, BeatFlag.SHORT, where=short_s2 | (big_m & (nmrr < 0) & ~long_s2))
    at = np.flatnonzero(long_s2)
    rule[at[np.abs(rr[at] / 2.0 - med[at]) < th2[at]]] = BeatFlag.MISSED
    # A short S2 beat has a dRR after it (s22 is NaN otherwise): beat i + 1 is in its segment.
    at = np.flatnonzero(short_s2)
    rule[at[np.abs(rr[at] + rr[at + 1].astype(np.float64) - med[at]) < th2[at]]] = BeatFlag.EXTRA
    np.copyto(rule, BeatFlag.ECTOPIC, where=ectopic)
    return rule, med


def final_count(contiguous: np.ndarray) -> int:
    """How many leading raw beats have final results: those followed by two more
    beats, or by a gap (no window reaches across one)."""
    cont = np.asarray(contiguous, dtype=bool)
    gaps = np.flatnonzero(~cont[1:])
    return max(len(cont) - LOOKAHEAD_BEATS, int(gaps[-1]) + 1 if len(gaps) else 0, 0)


def correct_beats(
    rr_units: np.ndarray,
    beat_t_s: np.ndarray,
    contiguous: np.ndarray,
    config: ArtifactConfig = ArtifactConfig(),
) -> CorrectedBeats:
    """Classify raw beats and build the corrected NN series (Lipponen & Tarvainen 2019).

    rr_units: RR intervals (int, 1/1024 s); beat_t_s: their beat times (s, sorted);
    contiguous: False where a gap precedes the beat. As in the paper, a missed beat is
    split in two (a beat inserted half-way, in time too), an extra beat is removed and
    its interval merged into the next, and ectopic, long and short beats are
    interpolated: the median of beats i-2, i-1 (if accepted as normal), i+1, i+2 (as
    measured: their classes are not known yet) and the mean RR of beats i-8 .. i+2
    (the average beat period, right even in bigeminy), rounded to a whole unit; they
    keep their measured time. In a run of beats found extra, the first merges with the
    next and the rest count as short. An out-of-range beat is only merged or split,
    never interpolated; otherwise it is dropped and a gap follows. A caller keeping only
    the last ``config.history_beats`` raw beats gets, for every beat below ``n_final``,
    exactly the flags and NN values of a batch call over the whole recording (live mode
    uses ``artifacts_live.TrailingCorrector``, the same rules carried beat to beat).
    """
    rr, cont = _validated(rr_units, contiguous, beat_t_s)
    t = np.asarray(beat_t_s, dtype=np.float64)
    n = len(rr)
    if n == 0:
        none = np.zeros(0, dtype=bool)
        return CorrectedBeats(t, rr, none, none, rr, rr.astype(np.int8), none, 0)
    s = Segments(cont)
    rr_ms = rr * (1000.0 / RR_UNITS_PER_SECOND)
    out_of_range = (rr_ms < config.rr_min_ms) | (rr_ms > config.rr_max_ms)
    rule, med = _classify(rr, out_of_range, s, config)

    was_extra = rule == BeatFlag.EXTRA
    rule[1:][was_extra[1:] & was_extra[:-1] & ~s.brk[1:]] = BeatFlag.SHORT  # runs: first one merges
    merged = np.zeros(n, dtype=bool)  # this beat absorbs the removed beat before it
    merged[1:] = rule[:-1] == BeatFlag.EXTRA
    rule[merged] = BeatFlag.NORMAL
    split = rule == BeatFlag.MISSED
    removed = rule == BeatFlag.EXTRA
    dropped = out_of_range & ~(split | removed | merged)
    replaced = ((rule == BeatFlag.ECTOPIC) | (rule == BeatFlag.LONG) | (rule == BeatFlag.SHORT)) & ~dropped
    after_drop = np.zeros(n, dtype=bool)
    after_drop[1:] = dropped[:-1]

    accepted = (rule == BeatFlag.NORMAL) & ~merged & ~out_of_range
    in_range = np.where(out_of_range, np.nan, rr.astype(np.float64))
    # The interpolated value is needed only at the replaced beats: work out only those.
    at = np.flatnonzero(replaced)
    lo, hi = s.bounds(config.median_window_beats - 1 - LOOKAHEAD_BEATS, LOOKAHEAD_BEATS)
    lo, hi = lo[at], hi[at]
    total = np.concatenate(([0], np.cumsum(np.where(out_of_range, 0, rr))))
    count = np.concatenate(([0], np.cumsum(~out_of_range)))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rr = (total[hi] - total[lo]) / (count[hi] - count[lo])
    hood = np.stack(
        [
            np.where(s.shift(accepted, -2, at) == 1.0, s.shift(in_range, -2, at), np.nan),
            np.where(s.shift(accepted, -1, at) == 1.0, s.shift(in_range, -1, at), np.nan),
            s.shift(in_range, 1, at),
            s.shift(in_range, 2, at),
            mean_rr,
        ],
        axis=1,
    )
    (local,) = pick(np.sort(hood, axis=1), np.count_nonzero(~np.isnan(hood), axis=1), (0.5,))
    local = np.where(np.isnan(local), med[at], local)

    value = rr.copy()
    value[at] = np.rint(local).astype(np.int64)
    value[1:][merged[1:]] += rr[:-1][merged[1:]]
    per_raw = np.where(dropped | removed, 0, np.where(split, 2, 1))
    raw_index = np.repeat(np.arange(n, dtype=np.int64), per_raw)
    emitting = np.flatnonzero(per_raw > 0)
    first = (np.cumsum(per_raw) - per_raw)[emitting]  # first NN slot of each emitting raw beat

    raw_contiguous = cont & ~after_drop
    starts_contiguous = raw_contiguous.copy()
    starts_contiguous[1:][merged[1:]] = raw_contiguous[:-1][merged[1:]]
    nn = value[raw_index]
    nn_t = t[raw_index]
    nn_cont = np.ones(len(raw_index), dtype=bool)
    nn_cont[first] = starts_contiguous[emitting]
    nn_corr = (replaced | merged | split | after_drop)[raw_index]

    inserted = first[split[emitting]]  # a split beat's first slot is the inserted beat
    m = raw_index[inserted]
    nn[inserted] = rr[m] // 2
    nn[inserted + 1] = rr[m] - rr[m] // 2
    # Half-way in time as well, never before the previous beat (times stay sorted).
    nn_t[inserted] = np.maximum(t[m] - nn[inserted + 1] / RR_UNITS_PER_SECOND, t[m - 1])

    flags = rule | np.where(out_of_range, np.int8(BeatFlag.OUT_OF_RANGE), np.int8(0))
    return CorrectedBeats(
        t_s=nn_t,
        nn_units=nn,
        contiguous=nn_cont,
        corrected=nn_corr,
        raw_index=raw_index,
        beat_flags=flags.astype(np.int8),
        raw_changed=(flags != 0) | merged,
        n_final=final_count(cont),
    )
