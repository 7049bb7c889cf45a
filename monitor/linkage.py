"""Linkage: how the two partners' heart rates move together, second by second.

Following DESIGN.md: both HR series are resampled to 4 Hz, each 30 s window is linearly
detrended, and the Pearson correlation of the residuals is taken at every lag within
±5 s; the linkage is the correlation at the lag whose magnitude is largest. Positive
means in phase, negative anti-phase. (Windowed cross-correlation of interbeat series is
the usual dyadic-synchrony measure, e.g. Reed et al. 2013; Palumbo et al. 2017 review.)

Every windowed sum comes from running prefix sums of whole numbers: HR is summed in
fixed point, in units of 1/16384 bpm (``HR_SCALE``), a thousand times finer than the
HR's own step (one NN unit is 0.07 bpm at 70 bpm). Integer sums are exact whatever
their order, so a live run that extends them one tick at a time holds the same values
as a batch run that builds them at once, window sums carry no rounding noise however
long the session, and the running sums take a sixth of the time of float ones. A
window's sums wrap around int64 only beyond ~10 days; their differences stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.resample import UNITS_PER_MINUTE, resample_hr

__all__ = ["UNITS_PER_MINUTE", "LinkageConfig", "LinkageTracker", "Prefix", "resample_hr"]
_CHUNK_WINDOWS = 4096  # windows per pass in LinkageTracker.at: 1-D temporaries of 32 KiB
_LAG_LOOP_WINDOWS = 32  # from this many windows on, LinkageTracker._best loops over the lags
_GATHER_SAMPLES = 64  # feeds up to this many samples gather every lag's products at once
HR_SCALE = 16384  # fixed-point units per bpm of the summed HR (see the module notes)


@dataclass(frozen=True)
class LinkageConfig:
    """Linkage settings.

    fs_hz: resampling rate of the HR series (samples per second; ticks fall on samples).
    window_s: correlation window.
    max_lag_s: lags searched on either side.
    max_hold_s: an HR sample older than this since the last beat is missing (a gap).
    hr_offset_bpm: subtracted before summing, to keep the sums small.
    min_sd_bpm: a window whose detrended HR has a smaller SD (bpm) is flat: it has no
        variation to correlate, so the linkage is NaN. The smallest real variation,
        one beat one NN unit off (0.015 bpm at 30 bpm), gives an SD of about 0.003 bpm;
        a flat window's sums are exact, so its SD is 0 up to the float rounding of
        the final arithmetic (~1e-6 bpm).
    """

    fs_hz: int = 4
    window_s: float = 30.0
    max_lag_s: float = 5.0
    max_hold_s: float = 3.0
    hr_offset_bpm: float = 70.0
    min_sd_bpm: float = 0.001

    def __post_init__(self) -> None:
        if not isinstance(self.fs_hz, int) or isinstance(self.fs_hz, bool) or self.fs_hz < 1:
            raise ValueError(f"fs_hz must be a whole number of samples per second, got {self.fs_hz!r}")
        if self.window_n < 3:
            raise ValueError(f"window_s = {self.window_s} s gives fewer than 3 samples at {self.fs_hz} Hz")
        if self.max_lag_s < 0 or self.max_hold_s <= 0 or self.min_sd_bpm <= 0:
            raise ValueError(
                "need max_lag_s >= 0, max_hold_s > 0 and min_sd_bpm > 0, got "
                f"{self.max_lag_s}, {self.max_hold_s}, {self.min_sd_bpm}"
            )

    @property
    def window_n(self) -> int:
        return int(round(self.window_s * self.fs_hz))

    @property
    def max_lag_n(self) -> int:
        return int(round(self.max_lag_s * self.fs_hz))


class Prefix:
    """Running prefix sums of several integer series (int64, wrapping), extendable
    without changing past values.

    Column j of ``sums`` is the sum of samples 1..(base + j). Live mode calls ``trim``
    to hold only the last ``keep`` columns (windows never reach further back), so a
    session of any length uses bounded memory; dropping old columns changes no value.
    """

    def __init__(self, n_series: int, keep: int) -> None:
        self.keep = keep
        self.base = 0
        # ``sums`` is the used front of a buffer with room to spare, so that a live feed
        # of a few samples writes into it instead of copying every column kept.
        self._buffer = np.zeros((n_series, 64), dtype=np.int64)
        self.sums = self._buffer[:, :1]
        self._pending = 1  # first column not yet summed (see reserve)

    def extend(self, values: np.ndarray) -> None:
        """Append ``values`` (n_series × m) to the running sums."""
        self.reserve(values.shape[1])[...] = values
        self.accumulate()

    def reserve(self, m: int) -> np.ndarray:
        """Add ``m`` columns and return them (n_series × m, a view) for the caller to
        fill with the new samples; ``accumulate`` then turns them into sums.

        Filling in place spares the copies of stacking the samples first: on a long
        batch the sums run to megabytes, and each fresh copy costs page faults.
        """
        used = self.sums.shape[1]
        if used + m > self._buffer.shape[1]:  # grow by doubling (a batch feed: to fit)
            grown = np.empty((self._buffer.shape[0], max(2 * self._buffer.shape[1], used + m)), dtype=np.int64)
            grown[:, :used] = self.sums
            self._buffer = grown
        self.sums = self._buffer[:, : used + m]
        self._pending = used
        return self.sums[:, used:]

    def accumulate(self) -> None:
        """Turn the columns filled since ``reserve`` into running sums, continuing the
        last sum before them."""
        tail = self.sums[:, self._pending - 1 :]
        np.cumsum(tail, axis=1, out=tail)
        self._pending = self.sums.shape[1]

    def trim(self) -> None:
        """Forget columns that no window can reach any more (live mode's memory bound).

        Trims only once the excess is as large as what is kept, so trimming is rare; the
        kept columns move to the buffer's front (the two places do not overlap then).
        """
        used = self.sums.shape[1]
        excess = used - self.keep
        if excess > self.keep:
            self._buffer[:, : self.keep] = self._buffer[:, excess:used]
            self.sums = self._buffer[:, : self.keep]
            self.base += excess

    def window(self, row: int | slice, stop: np.ndarray, n: int) -> np.ndarray:
        """Sum of series ``row`` (or rows) over samples (stop - n, stop], 1-based."""
        sums = self.sums[row]  # one row first: indexing it is faster than sums[row, stop]
        return sums[..., stop - self.base] - sums[..., stop - n - self.base]


class LinkageTracker:
    """Per-tick linkage of two 4 Hz HR series, fed as samples arrive.

    Batch and live use it alike: batch feeds all samples once, live feeds each tick's
    four new samples; the prefix sums, and so the results, are identical.
    """

    def __init__(self, cfg: LinkageConfig) -> None:
        self.cfg = cfg
        self.lags = np.arange(-cfg.max_lag_n, cfg.max_lag_n + 1)
        self._shift_a = np.maximum(self.lags, 0)[:, None]  # a's window ends this early
        self._shift_b = np.maximum(-self.lags, 0)[:, None]  # b's window ends this early
        self.n_samples = 0
        self._history = np.zeros((2, 2 * cfg.max_lag_n), dtype=np.int64)  # a, b before the new samples
        self._pairs: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # rows: a, a², k·a, ok_a, b, b², k·b, ok_b, then a_k·b_{k+lag} for each lag
        self._prefix = Prefix(8 + len(self.lags), keep=4 * (cfg.window_n + 2 * cfg.max_lag_n))

    def feed(self, hr_a_bpm: np.ndarray, hr_b_bpm: np.ndarray) -> None:
        """Append new 4 Hz samples of both partners (NaN where missing)."""
        x, ok = _fixed_point(np.array([hr_a_bpm, hr_b_bpm], dtype=np.float64), self.cfg.hr_offset_bpm)
        m = x.shape[1]
        k = np.arange(self.n_samples + 1, self.n_samples + m + 1, dtype=np.int64)
        block = self._prefix.reserve(m)
        # rows: a, a², k·a, ok_a, b, b², k·b, ok_b (every fourth row is one partner's)
        block[0:8:4] = x
        np.multiply(x, x, out=block[1:8:4])
        np.multiply(k, x, out=block[2:8:4])
        block[3:8:4] = ok
        # With the 2 * max_lag_n samples before the new ones (zeros before the session
        # starts; a missing sample is a zero too, its ok row says it is missing), each
        # lag's products pair a at sample k - max(lag, 0) with b at k - max(-lag, 0): the
        # later sample of each pair is a new one, so nothing needs the future.
        both = np.concatenate([self._history, x], axis=1)
        if m <= _GATHER_SAMPLES:  # a live tick: every lag's products in one gather
            at_a, at_b = self._pair_index(m)
            np.multiply(both[0][at_a], both[1][at_b], out=block[8:])
        else:  # a batch feed: lag by lag over contiguous slices
            h = 2 * self.cfg.max_lag_n
            for row, (sa, sb) in enumerate(zip(self._shift_a[:, 0].tolist(), self._shift_b[:, 0].tolist())):
                np.multiply(both[0, h - sa : h - sa + m], both[1, h - sb : h - sb + m], out=block[8 + row])
        self._prefix.accumulate()
        self._history = both[:, m:]
        self.n_samples += m

    def _pair_index(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Per lag and new sample: where its a and its b lie in history + new samples."""
        if m not in self._pairs:
            h, new = 2 * self.cfg.max_lag_n, np.arange(m)
            self._pairs[m] = (h - self._shift_a + new, h - self._shift_b + new)
        return self._pairs[m]

    def trim(self) -> None:
        """Drop sums older than any future window needs (live mode)."""
        self._prefix.trim()

    def at(self, stop_samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linkage (r) and its lag (s, positive = b follows a) for windows ending at
        each 1-based sample index in ``stop_samples``; NaN where data are missing.
        """
        n = self.cfg.window_n
        stop = np.asarray(stop_samples, dtype=np.int64)
        best_r = np.full(stop.shape, np.nan)
        best_lag = np.full(stop.shape, np.nan)
        where = np.flatnonzero(stop - n - self.cfg.max_lag_n >= 0)
        # In chunks of windows: every temporary then stays small enough to stay in cache
        # and be reused, instead of megabytes of fresh pages per operation.
        # Each window's arithmetic is the same whatever chunk it falls in.
        for lo in range(0, len(where), _CHUNK_WINDOWS):
            sel = where[lo : lo + _CHUNK_WINDOWS]
            best_r[sel], best_lag[sel] = self._best(stop[sel])
        return best_r, best_lag

    def _own(self, first_row: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One partner's window terms for every window end lo .. hi (1-based samples).

        With x the window's samples, t their position in it, the linear fit's residuals
        have cross products Σ x_a x_b - Σx_a Σx_b / n - Σt·x_a Σt·x_b / Stt (t centred)
        and sums of squares of the same form. Returned, so that a correlation is three
        products: u = Σx / √n, v = centred Σ t·x / √Stt, and w = 1 / √(residual sum of
        squares), NaN where the window is not full or too flat to correlate.
        """
        n = self.cfg.window_n
        t_mean = (n - 1) / 2
        stt = n * (n * n - 1) / 12.0
        p = self._prefix
        end = np.arange(lo, hi + 1)
        cols = slice(lo - p.base, hi + 1 - p.base)
        back = slice(lo - n - p.base, hi + 1 - n - p.base)
        w = p.sums[first_row : first_row + 4, cols] - p.sums[first_row : first_row + 4, back]
        s1 = w[0].astype(np.float64)  # exact: a window's sums stay far below 2**53
        # Σ t·x with t counted from the window's first sample (t = k - (end - n) - 1);
        # the first step in integers, exact, the centring in floats.
        ct = (w[2] - (end - n + 1) * w[0]) - t_mean * s1
        u = s1 / np.sqrt(n)
        v = ct / np.sqrt(stt)
        rss = w[1] - u * u - v * v  # in HR_SCALE² units, as every term here: r is unitless
        good = (w[3] == n) & (rss > n * (self.cfg.min_sd_bpm * HR_SCALE) ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            inv = np.where(good, 1.0 / np.sqrt(np.where(good, rss, 1.0)), np.nan)
        return u, v, inv

    def _best(self, st: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``at`` for windows that all have enough samples before them.

        Each partner's own window terms depend only on where the window ends: they are
        computed once for every end sample any lag needs (windows 1 s apart share most
        ends), then picked per lag and window. Few windows (live mode) are worked as
        one lags × windows block; many (batch) lag by lag into one lags × windows
        array, which spares the block's large temporaries. Both evaluate the same
        expressions on the same numbers and take the first lag of largest |r|: the
        same bits.
        """
        lo = int(st.min()) - self.cfg.max_lag_n
        own_a = self._own(0, lo, int(st.max()))
        own_b = self._own(4, lo, int(st.max()))
        at = st - lo  # index into the own arrays of a window ending at its stop
        if len(st) < _LAG_LOOP_WINDOWS:
            ua, va, wa = (x[at[None, :] - self._shift_a] for x in own_a)
            ub, vb, wb = (x[at[None, :] - self._shift_b] for x in own_b)
            sab = self._prefix.window(slice(8, None), st, self.cfg.window_n)  # a row per lag, a column per window
            r_all = _pearson(sab, ua, ub, va, vb, wa, wb)
        else:
            r_all = self._r_by_lag(st, at, own_a, own_b)
        return self._strongest(r_all)

    def _strongest(self, r_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per window (column), the r of largest magnitude over the lags (rows), the
        first such lag on a tie, and that lag (s); NaN where no lag has an r."""
        size = np.abs(r_all)
        np.fmax(size, -1.0, out=size)  # NaN (no r) becomes -1: below every real |r|
        pick = np.argmax(size, axis=0)
        cols = np.arange(r_all.shape[1])
        r_best = r_all[pick, cols]
        finite = np.isfinite(r_best)
        return r_best, np.where(finite, self.lags[pick] / self.cfg.fs_hz, np.nan)

    def _r_by_lag(self, st: np.ndarray, at: np.ndarray, own_a: tuple, own_b: tuple) -> np.ndarray:
        """r of every lag (row) and window (column) for many windows, one lag at a
        time (``at``: where each window's stop falls in the own arrays)."""
        p, n, width = self._prefix, self.cfg.window_n, len(st)
        if width > 1 and (at[1:] - at[:-1] == at[1] - at[0]).all():
            # Evenly spaced windows (batch: one per tick). Each own array is split once
            # into its ``step`` phases, contiguous, so that every lag's values are a
            # contiguous slice of one phase: arithmetic on strided views is slower.
            step = int(at[1] - at[0])
            own_a = tuple([np.ascontiguousarray(x[k::step]) for k in range(step)] for x in own_a)
            own_b = tuple([np.ascontiguousarray(x[k::step]) for k in range(step)] for x in own_b)

            def take(phases: list[np.ndarray], first: int) -> np.ndarray:
                return phases[first % step][first // step : first // step + width]

            def take_sums(x: np.ndarray, first: int) -> np.ndarray:
                return x[..., first : first + step * (width - 1) + 1 : step]
        else:

            def take(x: np.ndarray, first: int) -> np.ndarray:
                return x[..., at + (first - int(at[0]))]

            take_sums = take

        first_at, base = int(at[0]), p.base
        hi_col, lo_col = int(st[0]) - base, int(st[0]) - n - base
        r_all = np.empty((len(self.lags), width))
        # Every lag's Σ a·b in one subtraction of two lags × windows blocks.
        sums = p.sums[8 : 8 + len(self.lags)]
        sab_all = take_sums(sums, hi_col) - take_sums(sums, lo_col)
        shifts = zip(self._shift_a[:, 0].tolist(), self._shift_b[:, 0].tolist())
        for row, (shift_a, shift_b) in enumerate(shifts):
            ua, va, wa = (take(x, first_at - shift_a) for x in own_a)
            ub, vb, wb = (take(x, first_at - shift_b) for x in own_b)
            _pearson(sab_all[row], ua, ub, va, vb, wa, wb, out=r_all[row])
        return r_all


def _fixed_point(hr_bpm: np.ndarray, offset_bpm: float) -> tuple[np.ndarray, np.ndarray]:
    """HR less the offset in HR_SCALE units (int64, 0 where missing), and 1 where the
    sample is there, else 0."""
    ok = np.isfinite(hr_bpm)
    scaled = np.rint(np.where(ok, hr_bpm - offset_bpm, 0.0) * HR_SCALE)
    return scaled.astype(np.int64), ok.astype(np.int64)


def _pearson(sab, ua, ub, va, vb, wa, wb, out: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of two detrended windows from Σ x_a x_b (integer) and each window's
    terms (see ``LinkageTracker._own``); NaN where either window is not usable.
    Writes to ``out`` if given."""
    r = np.subtract(sab, ua * ub, out=out)
    r -= va * vb
    r *= wa
    r *= wb
    # |r| <= 1 in exact arithmetic; rounding may step just outside (as np.corrcoef clips).
    # np.clip is max then min in one pass, and keeps NaN as they do.
    return np.clip(r, -1.0, 1.0, out=r)
