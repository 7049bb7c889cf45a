"""Linkage: linkage_at (batch) against a direct per-window computation (np.polyfit
detrend, np.corrcoef, best |r| over the lags), known lags, missing data, live
(LiveLinkageTracker) == batch to the bit (with Prefix.trim), precision over a long
session, and resample_hr step hold."""

import tracemalloc

import numpy as np
import pytest

from monitor.linkage import HR_SCALE, UNITS_PER_MINUTE, LinkageConfig, resample_hr
from monitor import linkage_batch
from monitor.linkage_batch import linkage_at
from monitor.linkage_live import LiveLinkageTracker, Prefix

CFG = LinkageConfig()
N_WIN = CFG.window_n  # 120 samples = 30 s at 4 Hz
MAX_LAG = CFG.max_lag_n  # 20 samples = 5 s
FIRST_FULL = N_WIN + MAX_LAG  # the first stop sample at which every lag has a window


def as_summed(x: np.ndarray, cfg: LinkageConfig = CFG) -> np.ndarray:
    """The HR as the tracker sums it: rounded to 1/HR_SCALE bpm from the offset (NaN kept)."""
    return np.rint((x - cfg.hr_offset_bpm) * HR_SCALE) / HR_SCALE + cfg.hr_offset_bpm


def test_fixed_point_is_far_finer_than_the_hr_step():
    # One NN unit at 200 bpm (the coarsest HR of interest is the finest step): the
    # rounding is at least a thousand times smaller.
    step_bpm = UNITS_PER_MINUTE / 307 - UNITS_PER_MINUTE / 308
    x = np.linspace(40.0, 200.0, 10_001)
    assert np.max(np.abs(as_summed(x) - x)) <= 0.5 / HR_SCALE < step_bpm / 1000


def reference(a: np.ndarray, b: np.ndarray, stop: int, cfg: LinkageConfig = CFG) -> tuple[float, float]:
    """Best-|r| linkage at 1-based ``stop`` by the definition, window by window, of
    the HR as the tracker sums it (``as_summed``).

    For lag L, a's window ends max(L, 0) samples before ``stop`` and b's max(-L, 0)
    before; each holds window_n samples (1-based (end - n, end]); both are detrended
    with a degree-1 np.polyfit and correlated with np.corrcoef. A window that is not
    full or holds a NaN gives no r at that lag.
    """
    n, max_lag = cfg.window_n, cfg.max_lag_n
    a, b = as_summed(a, cfg), as_summed(b, cfg)
    if stop - n - max_lag < 0:
        return np.nan, np.nan
    t = np.arange(n, dtype=float)
    best_r, best_lag, best_abs = np.nan, np.nan, -1.0
    for lag in range(-max_lag, max_lag + 1):
        end_a, end_b = stop - max(lag, 0), stop - max(-lag, 0)
        wa, wb = a[end_a - n : end_a], b[end_b - n : end_b]  # 0-based slice of (end - n, end]
        if not (np.isfinite(wa).all() and np.isfinite(wb).all()):
            continue
        ra = wa - np.polyval(np.polyfit(t, wa, 1), t)
        rb = wb - np.polyval(np.polyfit(t, wb, 1), t)
        r = np.corrcoef(ra, rb)[0, 1]
        if abs(r) > best_abs:
            best_r, best_lag, best_abs = r, lag / cfg.fs_hz, abs(r)
    return best_r, best_lag


def reference_all(a, b, stops, cfg=CFG):
    """``reference`` at many stops, vectorised over windows: np.polyfit fits every
    window of one lag at once (one column each); r is the centred Pearson formula that
    np.corrcoef evaluates. Checked against ``reference`` in a test below."""
    n, max_lag = cfg.window_n, cfg.max_lag_n
    a, b = as_summed(a, cfg), as_summed(b, cfg)
    stops = np.asarray(stops, dtype=np.int64)
    t = np.arange(n, dtype=float)
    r_lags = np.full((2 * max_lag + 1, len(stops)), np.nan)
    usable = stops - n - max_lag >= 0
    st = stops[usable]

    def residuals(x, ends):
        win = x[ends[:, None] - n + np.arange(n)[None, :]]  # rows: windows (end - n, end]
        good = np.isfinite(win).all(axis=1)
        win = np.where(good[:, None], win, 0.0)
        slope, icpt = np.polyfit(t, win.T, 1)
        res = win - (slope[:, None] * t + icpt[:, None])
        return res - res.mean(axis=1, keepdims=True), good

    for row, lag in enumerate(range(-max_lag, max_lag + 1)):
        if len(st) == 0:
            break
        ra, ga = residuals(a, st - max(lag, 0))
        rb, gb = residuals(b, st - max(-lag, 0))
        with np.errstate(invalid="ignore"):  # windows with a NaN were zeroed: 0 / 0
            r = (ra * rb).sum(axis=1) / np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
        r_lags[row, usable] = np.where(ga & gb, r, np.nan)
    finite = np.isfinite(r_lags).any(axis=0)
    pick = np.argmax(np.where(np.isfinite(r_lags), np.abs(r_lags), -1.0), axis=0)
    r_best = np.where(finite, r_lags[pick, np.arange(len(stops))], np.nan)
    lag_best = np.where(finite, (pick - max_lag) / cfg.fs_hz, np.nan)
    return r_best, lag_best


def test_vectorised_reference_equals_the_scalar_one():
    a, b = random_pair(20, 4 * 120)
    a[300] = np.nan  # sample 301: every lag's window holds it for stops 321 .. 420
    stops = np.concatenate([[FIRST_FULL - 1], np.arange(FIRST_FULL, len(a) + 1, 11), [320, 321, 420, 421]])
    r_vec, lag_vec = reference_all(a, b, stops)
    scalar = np.array([reference(a, b, int(s)) for s in stops])
    np.testing.assert_allclose(r_vec, scalar[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(lag_vec, scalar[:, 1])
    blank = (stops < FIRST_FULL) | ((stops >= 321) & (stops <= 420))
    assert np.isnan(r_vec[blank]).all() and np.isfinite(r_vec[~blank]).all()


def batch(a, b, stops, cfg=CFG):
    return linkage_at(a, b, np.asarray(stops), cfg)


def random_pair(seed: int, n: int, mean_a: float = 78.0, mean_b: float = 84.0):
    """Two HR series (bpm): slow swings, a shared component and independent noise."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    shared = np.convolve(rng.normal(0, 1, n + 40), np.ones(9) / 3, mode="same")[:n]
    a = mean_a + 6 * np.sin(k / 170 + rng.uniform(0, 6)) + 2 * shared + rng.normal(0, 1.5, n)
    b = mean_b + 5 * np.sin(k / 230 + rng.uniform(0, 6)) + 1.5 * np.roll(shared, 6) + rng.normal(0, 1.5, n)
    return a, b


def noise_series(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 75 + 0.01 * np.arange(n) + rng.normal(0, 3, n)


# --- against the reference -------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_on_random_series(seed):
    a, b = random_pair(seed, 4 * 400)
    stops = np.arange(1, len(a) + 1)
    stops = stops[(stops % 4 == 0) | (stops < FIRST_FULL + 8)]
    r, lag = batch(a, b, stops)
    r_ref, lag_ref = reference_all(a, b, stops)
    assert np.isnan(r[stops < FIRST_FULL]).all() and np.isnan(lag[stops < FIRST_FULL]).all()
    assert np.isfinite(r[stops >= FIRST_FULL]).all()
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag, lag_ref)
    assert np.all(np.abs(r[np.isfinite(r)]) <= 1.0)


def test_other_window_and_lag_settings_match_reference():
    cfg = LinkageConfig(fs_hz=2, window_s=20.0, max_lag_s=3.0)
    a, b = random_pair(5, 2 * 300)
    stops = np.arange(cfg.window_n + cfg.max_lag_n - 2, len(a) + 1, 2)
    r, lag = batch(a, b, stops, cfg)
    r_ref, lag_ref = reference_all(a, b, stops, cfg)
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag, lag_ref)
    assert set(np.unique(lag[np.isfinite(lag)])) <= set(np.arange(-6, 7) / 2)


def test_b_follows_a_by_two_seconds():
    n = 4 * 300
    x = noise_series(3, n + 8)
    a, b = x[8:], x[:-8]  # b[k] = a[k - 8]: b repeats a 8 samples (2 s) later
    stops = np.arange(FIRST_FULL, n + 1, 4)
    r, lag = batch(a, b, stops)
    np.testing.assert_array_equal(lag, np.full(len(stops), 2.0))
    np.testing.assert_allclose(r, 1.0, rtol=0, atol=1e-9)
    # and the mirror: a follows b
    r, lag = batch(b, a, stops)
    np.testing.assert_array_equal(lag, np.full(len(stops), -2.0))
    np.testing.assert_allclose(r, 1.0, rtol=0, atol=1e-9)


def test_anti_phase_gives_minus_one():
    n = 4 * 200
    a = noise_series(4, n)
    b = 160.0 - a  # b = -a about a constant
    stops = np.arange(FIRST_FULL, n + 1, 4)
    r, lag = batch(a, b, stops)
    np.testing.assert_allclose(r, -1.0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag, 0.0)


def test_linear_trends_are_removed():
    # adding different straight lines to each partner changes nothing (slopes on the
    # fixed-point grid, so the lines add nothing to the rounding of the samples)
    a, b = random_pair(6, 4 * 200)
    k = np.arange(len(a))
    stops = np.arange(FIRST_FULL, len(a) + 1, 4)
    r0, lag0 = batch(a, b, stops)
    r1, lag1 = batch(a + 819 / HR_SCALE * k, b - 492 / HR_SCALE * k, stops)  # ~0.05, ~-0.03 bpm per sample
    np.testing.assert_allclose(r1, r0, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag1, lag0)


@pytest.mark.parametrize("span", [1, 7, 64, 333])
def test_chunks_of_any_span_give_the_same_bits(monkeypatch, span):
    # batch works the windows in chunks; where the cuts fall must not change a bit
    a, b = with_gaps(*random_pair(20, 4 * 700), seed=20)
    stops = np.arange(4, len(a) + 1, 4)
    want = batch(a, b, stops)
    monkeypatch.setattr(linkage_batch, "_CHUNK_SAMPLES", span)
    for got, ref in zip(batch(a, b, stops), want):
        np.testing.assert_array_equal(got, ref)


def test_stops_in_any_order_and_repeated():
    a, b = random_pair(21, 4 * 300)
    stops = np.arange(FIRST_FULL - 3, len(a) + 1, 3)
    r, lag = batch(a, b, stops)
    shuffled = np.random.default_rng(21).permutation(np.concatenate([stops, stops[::5]]))
    r2, lag2 = batch(a, b, shuffled)
    where = np.searchsorted(stops, shuffled)
    np.testing.assert_array_equal(r2, r[where])
    np.testing.assert_array_equal(lag2, lag[where])


def test_a_window_past_the_series_is_refused():
    a, b = random_pair(22, 400)
    with pytest.raises(ValueError, match="sample 401, after the last sample"):
        batch(a, b, np.array([200, 401]))
    with pytest.raises(ValueError, match="differ in length"):
        batch(a, b[:-1], np.array([200]))


def test_an_hour_is_worked_in_little_memory():
    # the hour worked at once took 10 MiB (the sums of 41 lags alone 5 MiB): in
    # chunks it takes under 4
    n = 4 * 3600
    a, b = random_pair(23, n)
    stops = np.arange(4, n + 1, 4)
    tracemalloc.start()
    batch(a, b, stops)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 * 2**20, peak


# --- missing and not-yet-full windows ------------------------------------------------


def test_nan_until_every_lag_has_a_full_window():
    a, b = random_pair(7, 4 * 60)
    stops = np.arange(0, FIRST_FULL + 3)
    r, lag = batch(a, b, stops)
    assert np.isnan(r[:FIRST_FULL]).all() and np.isnan(lag[:FIRST_FULL]).all()
    assert np.isfinite(r[FIRST_FULL:]).all() and np.isfinite(lag[FIRST_FULL:]).all()


@pytest.mark.parametrize("who", ["a", "b"])
def test_one_missing_sample_blanks_exactly_the_windows_that_hold_it(who):
    a, b = random_pair(8, 4 * 200)
    k0 = 400  # 1-based sample index of the missing sample
    (a if who == "a" else b)[k0 - 1] = np.nan
    stops = np.arange(FIRST_FULL, len(a) + 1)
    r, lag = batch(a, b, stops)
    # every lag's window (shifted 0..20 samples back) holds k0 iff stop - 120 < k0 <= stop - 20
    all_blank = (stops - N_WIN < k0) & (k0 <= stops - MAX_LAG)
    assert np.isnan(r[all_blank]).all() and np.isnan(lag[all_blank]).all()
    assert np.isfinite(r[~all_blank]).all()
    assert all_blank.sum() == N_WIN - MAX_LAG
    # where only some lags hold it, the best of the other lags is taken
    r_ref, lag_ref = reference_all(a, b, stops)
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag, lag_ref)


def test_gap_of_ten_seconds():
    a, b = random_pair(9, 4 * 300)
    a[399:439] = np.nan  # samples 400..439
    b[700:705] = np.nan
    stops = np.arange(FIRST_FULL, len(a) + 1, 4)
    r, lag = batch(a, b, stops)
    r_ref, lag_ref = reference_all(a, b, stops)
    np.testing.assert_allclose(r, r_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag, lag_ref)
    assert np.isnan(r[(stops >= 439 + MAX_LAG) & (stops < 400 + N_WIN)]).all()


def test_flat_window_has_no_correlation():
    # a steady HR has no variation to correlate: NaN, not rounding noise
    n = 4 * 3600
    flat = np.full(n, UNITS_PER_MINUTE / 819)  # one NN value throughout: 75.018 bpm
    line = 70.0 + 0.002 * np.arange(n)  # a straight line detrends to nothing
    b = noise_series(10, n)
    stops = np.arange(FIRST_FULL, n + 1, 40)
    for a in (flat, line):
        r, lag = batch(a, b, stops)
        assert np.isnan(r).all() and np.isnan(lag).all()
        r, lag = batch(b, a, stops)
        assert np.isnan(r).all() and np.isnan(lag).all()


def test_flat_stretch_then_variation():
    n = 4 * 200
    a = noise_series(11, n)
    a[:400] = 80.0
    b = noise_series(12, n)
    stops = np.arange(FIRST_FULL, n + 1)
    r, _ = batch(a, b, stops)
    # a's windows (ending up to 20 samples early) are flat while they end at or before 400
    assert np.isnan(r[stops <= 400]).all()
    assert np.isfinite(r[stops > 400]).all()
    r_ref, _ = reference_all(a, b, stops[stops > 400])
    np.testing.assert_allclose(r[stops > 400], r_ref, rtol=0, atol=1e-9)


# --- live == batch ---------------------------------------------------------------------


def live(a, b, cfg=CFG, per_tick=4):
    tracker = LiveLinkageTracker(cfg)
    r = np.full(len(a) // per_tick, np.nan)
    lag = r.copy()
    for i in range(len(r)):
        s = slice(i * per_tick, (i + 1) * per_tick)
        tracker.feed(a[s], b[s])
        r[i], lag[i] = tracker.at_tick((i + 1) * per_tick)
        tracker.trim()
    return r, lag, tracker


def with_gaps(a, b, seed):
    rng = np.random.default_rng(seed)
    a, b = a.copy(), b.copy()
    for x in (a, b):
        for start in rng.integers(0, len(x) - 200, size=max(1, len(x) // 4000)):
            x[start : start + rng.integers(1, 120)] = np.nan
    return a, b


def test_live_equals_batch_bit_for_bit():
    a, b = with_gaps(*random_pair(13, 4 * 900), seed=13)
    stops = np.arange(4, len(a) + 1, 4)
    r_b, lag_b = batch(a, b, stops)
    r_l, lag_l, _ = live(a, b)
    np.testing.assert_array_equal(r_l, r_b)  # NaN in the same places, every bit equal
    np.testing.assert_array_equal(lag_l, lag_b)
    assert np.isfinite(r_b).sum() > 600


def test_live_equals_batch_over_three_hours_with_trim():
    n = 3 * 3600 * 4
    a, b = with_gaps(*random_pair(14, n, mean_a=95.0, mean_b=62.0), seed=14)
    stops = np.arange(4, n + 1, 4)
    r_b, lag_b = batch(a, b, stops)
    r_l, lag_l, tracker = live(a, b)
    assert tracker._prefix.base > n - 2 * tracker._prefix.keep  # trim has dropped old sums
    assert tracker._prefix.sums.shape[1] <= 2 * tracker._prefix.keep + 1
    np.testing.assert_array_equal(r_l, r_b)
    np.testing.assert_array_equal(lag_l, lag_b)


def test_uneven_feeds_equal_one_feed():
    a, b = random_pair(15, 4 * 300)
    stops = np.arange(FIRST_FULL, len(a) + 1)
    r_b, lag_b = batch(a, b, stops)
    tracker = LiveLinkageTracker(CFG)
    cuts = [0, 1, 5, 5, 130, 131, 600, 1199, len(a)]
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        tracker.feed(a[lo:hi], b[lo:hi])
    r, lag = np.array([tracker.at_tick(s) for s in stops.tolist()]).T
    np.testing.assert_array_equal(r, r_b)
    np.testing.assert_array_equal(lag, lag_b)


def test_zero_max_lag_matches_reference_and_keeps_little():
    cfg = LinkageConfig(max_lag_s=0.0)
    a, b = random_pair(16, 4 * 300)
    stops = np.arange(cfg.window_n, len(a) + 1, 4)
    r_ref, lag_ref = reference_all(a, b, stops, cfg)
    r, lag, tracker = live(a, b, cfg)
    np.testing.assert_allclose(r[stops // 4 - 1], r_ref, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag[stops // 4 - 1], lag_ref)
    assert tracker._history.shape[1] == 0  # no history is needed without lags


def test_prefix_trim_keeps_window_sums():
    rng = np.random.default_rng(17)
    values = rng.integers(-(2**40), 2**40, size=(2, 5000))
    whole = Prefix(2, keep=100)
    whole.extend(values)
    part = Prefix(2, keep=100)
    for lo in range(0, 5000, 7):
        part.extend(values[:, lo : lo + 7])
        part.trim()
        stop = np.array([min(lo + 7, 5000)])
        if stop[0] >= 50:
            assert part.window(1, stop, 50)[0] == whole.window(1, stop, 50)[0]
    assert part.base > 0 and part.sums.shape[1] <= 201
    np.testing.assert_array_equal(part.sums, whole.sums[:, part.base :])


# --- precision over a long session ---------------------------------------------------


def test_precision_after_ten_hours():
    n = 10 * 3600 * 4
    a, b = random_pair(18, n, mean_a=100.0, mean_b=110.0)  # far from the 70 bpm offset
    stops = np.arange(n - 4 * 1800, n + 1, 4 * 23)
    r, lag = batch(a, b, stops)
    r_ref, lag_ref = reference_all(a, b, stops)
    worst = np.max(np.abs(r - r_ref))
    assert worst < 1e-11, worst  # exact integer sums: no rounding that grows with the session
    np.testing.assert_array_equal(lag, lag_ref)


# --- resample_hr -----------------------------------------------------------------------

BEAT_T_S = np.array([0.30, 0.90, 1.70, 2.00, 6.00, 6.50])
NN_UNITS = np.array([1024, 960, 768, 512, 1024, 2048])  # 60, 64, 80, 120, 60, 30 bpm
AVAILABLE_T_S = np.array([1.0, 1.0, 2.4, 2.4, 6.2, 6.9])  # when the pipeline knew each beat


# Sample time (s) -> HR (bpm), when each sample counts the beats known at its own tick.
HAND_EXPECTED = {
    0.25: np.nan,  # no beat yet
    0.5: 60, 0.75: 60,
    1.0: 64,  # beat at 0.9, known at tick 1
    1.25: 64, 1.5: 64,
    1.75: 64,  # the 1.7 s beat (80 bpm) arrives at 2.4: not known at tick 2
    2.0: 64,  # likewise the 2.0 s beat
    2.25: 120,  # tick 3 knows both; the latest at or before 2.25 s is 2.0 s
    **{x: 120 for x in np.arange(2.5, 5.01, 0.25)},  # held until 3.0 s after the beat
    5.25: np.nan, 5.5: np.nan, 5.75: np.nan,
    6.0: np.nan,  # the 6.0 s beat arrives at 6.2: unknown at tick 6
    6.25: 60,
    6.5: 30, 6.75: 30, 7.0: 30, 7.25: 30, 7.5: 30, 7.75: 30, 8.0: 30,
}

NO_DELAY = LinkageConfig(delay_s=0)


def test_resample_step_hold_by_hand():
    hr = resample_hr(BEAT_T_S, NN_UNITS, AVAILABLE_T_S, 1, 33, NO_DELAY)
    t = np.arange(1, 33) / 4
    assert sorted(HAND_EXPECTED) == list(t)
    np.testing.assert_array_equal(hr, [HAND_EXPECTED[x] for x in t])


def test_resample_with_a_delay_counts_the_beats_known_that_much_later():
    hr = resample_hr(BEAT_T_S, NN_UNITS, AVAILABLE_T_S, 1, 33, LinkageConfig(delay_s=1))
    t = np.arange(1, 33) / 4
    expected = HAND_EXPECTED | {
        1.75: 80, 2.0: 120,  # known at 2.4, by tick 2 + 1 s
        6.0: 60,  # known at 6.2, by tick 6 + 1 s
    }
    np.testing.assert_array_equal(hr, [expected[x] for x in t])
    # a delay as long as any beat takes to be known: every sample is the true step hold
    hr = resample_hr(BEAT_T_S, NN_UNITS, AVAILABLE_T_S, 1, 33, LinkageConfig(delay_s=2))
    latest = np.searchsorted(BEAT_T_S, t, side="right") - 1
    hold = np.where((latest >= 0) & (t - BEAT_T_S[latest] <= 3.0), UNITS_PER_MINUTE / NN_UNITS[latest], np.nan)
    np.testing.assert_array_equal(hr, hold)


def test_resample_values_are_units_per_minute_over_nn():
    hr = resample_hr(np.array([0.1]), np.array([853]), np.array([0.2]), 1, 5, CFG)
    np.testing.assert_array_equal(hr, np.full(4, 60 * 1024 / 853))


def test_resample_pieces_equal_whole():
    rng = np.random.default_rng(19)
    nn = rng.integers(500, 1200, size=400)
    beat_t = np.cumsum(nn / 1024) + 0.37
    beat_t[200:] += 7.0  # a gap longer than max_hold_s
    available = np.maximum.accumulate(beat_t + rng.uniform(0, 2.0, size=400))
    stop = int(beat_t[-1] * 4) + 20
    whole = resample_hr(beat_t, nn, available, 1, stop, CFG)
    pieces = np.concatenate(
        [resample_hr(beat_t, nn, available, lo, min(lo + 4, stop), CFG) for lo in range(1, stop, 4)]
    )
    np.testing.assert_array_equal(pieces, whole)
    assert np.isnan(whole).sum() > 4 * 4  # the gap shows as missing samples


def test_resample_hold_limit_is_configurable():
    cfg = LinkageConfig(max_hold_s=1.0)
    hr = resample_hr(np.array([1.0]), np.array([1024]), np.array([1.0]), 4, 10, cfg)
    np.testing.assert_array_equal(hr, [60, 60, 60, 60, 60, np.nan])  # 1.0 .. 2.0 s, then 2.25


def test_resample_without_beats_is_all_missing():
    empty = np.zeros(0)
    hr = resample_hr(empty, np.zeros(0, dtype=np.int64), empty, 1, 9, CFG)
    assert hr.shape == (8,) and np.isnan(hr).all()
