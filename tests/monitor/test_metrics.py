"""Windowed metrics: hand-computed cases, NeuroKit2's hrv_time as the reference for
RMSSD / SDNN / MeanNN, and live (one tick, trailing beats) == batch to the bit."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.records import Notification
from monitor.beats import beats_from_notifications
from monitor.metrics import (
    MetricFrame,
    MetricsConfig,
    MetricsInputError,
    NNSeries,
    compute_metrics,
    compute_metrics_by_partner,
    session_ticks,
)

POLAR = Path(__file__).resolve().parents[2] / "fixtures" / "polar_h10_pvc.jsonl"
CFG = MetricsConfig()
LIVE_LOOKBACK_S = 90.0


def series(t_s, nn_units, contiguous=None) -> NNSeries:
    nn = np.asarray(nn_units, dtype=np.int64)
    if contiguous is None:
        contiguous = np.ones(len(nn), bool)
    return NNSeries(np.asarray(t_s, dtype=np.float64), nn, np.asarray(contiguous, bool))


def polar_series() -> NNSeries:
    records = []
    with POLAR.open(encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            obj = json.loads(line)
            records.append(Notification(obj["t"], obj["partner"], bytes.fromhex(obj["hrm"])))
    beats = beats_from_notifications(records, "a")
    return series(beats.t_s, beats.rr_units, beats.contiguous)


def random_series(seed: int, n: int = 900) -> NNSeries:
    """NN of 300-2000 ms with about 4 % breaks in adjacency, each with a gap in time."""
    rng = np.random.default_rng(seed)
    nn = rng.integers(308, 2048, size=n)
    contiguous = rng.random(n) > 0.04
    gaps_s = np.where(contiguous, 0.0, rng.uniform(0.5, 6.0, size=n))
    t_s = 3.3721 + np.cumsum(nn / 1024 + gaps_s)
    return series(t_s, nn, contiguous)


def live_frame(beats: NNSeries, tick_t_s: float, cfg: MetricsConfig = CFG) -> MetricFrame:
    """What live mode computes at one tick: only the trailing beats, one tick."""
    lo = np.searchsorted(beats.t_s, tick_t_s - LIVE_LOOKBACK_S, side="right")
    hi = np.searchsorted(beats.t_s, tick_t_s + 1.0, side="right")
    part = series(beats.t_s[lo:hi], beats.nn_units[lo:hi], beats.contiguous[lo:hi])
    return compute_metrics(part, np.array([tick_t_s]), cfg)


def assert_live_equals_batch(beats: NNSeries, ticks: np.ndarray, cfg: MetricsConfig = CFG) -> None:
    batch = compute_metrics(beats, ticks, cfg).columns()
    for i, tick in enumerate(ticks):
        live = live_frame(beats, float(tick), cfg).columns()
        for name, column in batch.items():
            assert live[name].view(np.int64)[0] == column.view(np.int64)[i], (name, tick)
            assert np.array_equal(live[name], column[i : i + 1], equal_nan=True)


# --- hand-computed cases ---------------------------------------------------------------


def test_hr10_is_beats_over_summed_intervals_in_a_half_open_window():
    beats = series([1, 2, 3, 4, 10], [1024, 512, 512, 1024, 1024])
    m = compute_metrics(beats, np.array([9.0, 10.0, 11.0, 13.0, 14.0]))
    # (9): t 1..4, 3 s -> 80; (10): all five, 4 s -> 75; (11): t = 1 leaves -> 80;
    # (13): two beats, below the minimum of 3 -> NaN
    np.testing.assert_array_equal(m.hr10_bpm, [80.0, 75.0, 80.0, np.nan, np.nan])
    np.testing.assert_array_equal(m.n_beats10, [4, 5, 4, 2, 1])


def test_rmssd_sdnn_mean_nn_by_hand_and_adjacency():
    cfg = MetricsConfig(min_beats_short=2, min_beats_long=2)
    nn = [1024, 1152, 896, 1024]  # 1000, 1125, 875, 1000 ms
    m = compute_metrics(series([1, 2, 3, 4], nn), np.array([10.0]), cfg)
    # differences 125, -250, 125 ms; deviations from 1000 ms: 0, 125, -125, 0
    assert m.rmssd30_ms[0] == pytest.approx(np.sqrt(31250.0), rel=1e-15)
    assert m.ln_rmssd30[0] == pytest.approx(np.log(np.sqrt(31250.0)), rel=1e-15)
    assert m.sdnn30_ms[0] == pytest.approx(np.sqrt(31250.0 / 3), rel=1e-15)
    assert m.mean_nn30_ms[0] == 1000.0
    assert m.rmssd60_ms[0] == m.rmssd30_ms[0] and m.sdnn60_ms[0] == m.sdnn30_ms[0]
    # the third beat does not follow the second: only 125 and 125 remain
    broken = compute_metrics(series([1, 2, 3, 4], nn, [True, True, False, True]), np.array([10.0]), cfg)
    assert broken.rmssd30_ms[0] == 125.0
    assert broken.sdnn30_ms[0] == m.sdnn30_ms[0]


def test_too_few_beats_give_nan():
    m = compute_metrics(series([1, 2, 3, 4], [1024, 1152, 896, 1024]), np.array([10.0]))
    assert np.isnan(m.rmssd30_ms[0]) and np.isnan(m.sdnn30_ms[0]) and np.isnan(m.ln_rmssd30[0])
    assert m.n_beats30[0] == 4
    empty = compute_metrics(series([], []), np.array([1.0, 2.0]))
    for name, column in empty.columns().items():
        if name.startswith("n_beats"):
            np.testing.assert_array_equal(column, [0.0, 0.0])
        elif name != "tick_t_s":
            assert np.all(np.isnan(column)), name


def test_hr_slope_of_a_straight_line():
    # HR 64, 96, 128, 160, 192 bpm at 3-s steps: +32 bpm per 3 s = 640 bpm/min.
    beats = series([2, 5, 8, 11, 14], [960, 640, 480, 384, 320])
    m = compute_metrics(beats, np.array([15.0, 16.0, 18.0]))
    assert m.hr_slope15_bpm_per_min[0] == pytest.approx(640.0, rel=1e-12)
    assert m.hr_slope15_bpm_per_min[1] == pytest.approx(640.0, rel=1e-12)
    assert np.isnan(m.hr_slope15_bpm_per_min[2])  # only four beats in (3, 18]
    falling = compute_metrics(series([2, 5, 8, 11, 14], [320, 384, 480, 640, 960]), np.array([15.0]))
    assert falling.hr_slope15_bpm_per_min[0] == pytest.approx(-640.0, rel=1e-12)


def test_hr_slope_matches_least_squares_fit():
    beats = random_series(7)
    ticks = session_ticks(beats.t_s[-1])[20::11]
    slope = compute_metrics(beats, ticks).hr_slope15_bpm_per_min
    checked = 0
    for tick, value in zip(ticks, slope):
        inside = (beats.t_s > tick - 15) & (beats.t_s <= tick)
        if inside.sum() < CFG.min_beats_slope:
            assert np.isnan(value)
            continue
        t, hr = beats.t_s[inside], 61440 / beats.nn_units[inside]
        # same fit on the quantised inputs the function uses: 1/1024 s, 0.001 bpm
        fit_q = np.polyfit(np.rint(t * 1024) / 1024 - tick, np.round(hr, 3), 1)[0] * 60
        assert value == pytest.approx(fit_q, rel=1e-9, abs=1e-9)
        # and on the raw values, to within what quantising can move it
        assert value == pytest.approx(np.polyfit(t - tick, hr, 1)[0] * 60, abs=0.5)
        checked += 1
    assert checked > 50


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(MetricsInputError, match="back in time at beat 2"):
        compute_metrics(series([1, 3, 2], [1024] * 3), np.array([5.0]))
    with pytest.raises(MetricsInputError, match=r"nn_units\[1\] = 0"):
        compute_metrics(series([1, 2, 3], [1024, 0, 1024]), np.array([5.0]))
    with pytest.raises(MetricsInputError, match="integer"):
        compute_metrics(NNSeries(np.array([1.0]), np.array([1000.0]), np.array([True])), np.array([5.0]))
    with pytest.raises(MetricsInputError, match="differ in length"):
        compute_metrics(NNSeries(np.array([1.0]), np.array([1024, 1024]), np.array([True])), np.array([5.0]))


# --- NeuroKit2 as the reference ----------------------------------------------------------


def neurokit_time_domain(beats: NNSeries, tick: float, window_s: float) -> dict[str, float]:
    import neurokit2 as nk  # lazy: ~2.4 s to import

    inside = (beats.t_s > tick - window_s) & (beats.t_s <= tick)
    rri_ms = beats.nn_units[inside] * 1000 / 1024
    # Interval times that neurokit2 reads as adjacent exactly where we do: the
    # cumulative NN, with a 1-s jump in front of each beat that does not follow its
    # predecessor (hrv_time then drops that successive difference).
    jumps = np.cumsum(~beats.contiguous[inside])
    rri_time_s = np.cumsum(rri_ms) / 1000 + jumps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # indices that need longer recordings
        out = nk.hrv_time({"RRI": rri_ms, "RRI_Time": rri_time_s})
    return {key: float(out[f"HRV_{key}"].iloc[0]) for key in ("MeanNN", "SDNN", "RMSSD")}


def assert_matches_neurokit(beats: NNSeries, ticks: np.ndarray) -> int:
    m = compute_metrics(beats, ticks)
    compared = 0
    for i, tick in enumerate(ticks):
        for w, mean_nn, sdnn, rmssd in (
            (30.0, m.mean_nn30_ms, m.sdnn30_ms, m.rmssd30_ms),
            (60.0, m.mean_nn60_ms, m.sdnn60_ms, m.rmssd60_ms),
        ):
            if np.isnan(rmssd[i]):
                continue
            ref = neurokit_time_domain(beats, float(tick), w)
            assert mean_nn[i] == pytest.approx(ref["MeanNN"], rel=1e-9)
            assert sdnn[i] == pytest.approx(ref["SDNN"], rel=1e-9)
            assert rmssd[i] == pytest.approx(ref["RMSSD"], rel=1e-9)
            compared += 1
    return compared


def test_equals_neurokit_hrv_time_on_the_polar_recording():
    beats = polar_series()
    ticks = session_ticks(beats.t_s[-1])[29::13]
    assert assert_matches_neurokit(beats, ticks) == 2 * len(ticks)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equals_neurokit_hrv_time_on_random_series_with_breaks(seed):
    beats = random_series(seed, n=450)
    ticks = session_ticks(beats.t_s[-1])[35::19]
    assert assert_matches_neurokit(beats, ticks) >= len(ticks)


# --- live == batch ------------------------------------------------------------------------


def test_live_equals_batch_bit_for_bit_on_the_polar_recording():
    beats = polar_series()
    assert_live_equals_batch(beats, session_ticks(beats.t_s[-1] + 5))


def test_live_equals_batch_bit_for_bit_on_random_series():
    beats = random_series(11, n=400)
    assert_live_equals_batch(beats, session_ticks(beats.t_s[-1] + 5))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(250, 2200), st.booleans(), st.booleans(), st.floats(0.0, 5.0)),
        min_size=0,
        max_size=250,
    ),
    st.floats(0.0, 100.0),
)
def test_live_equals_batch_property(beat_specs, start_s):
    nn = np.array([s[0] for s in beat_specs], dtype=np.int64)
    contiguous = np.array([s[1] or s[2] for s in beat_specs], dtype=bool)
    gaps = np.array([0.0 if c else s[3] for c, s in zip(contiguous, beat_specs)])
    t_s = start_s + np.cumsum(nn / 1024 + gaps)
    beats = series(t_s, nn, contiguous)
    end_s = t_s[-1] if len(t_s) else start_s
    ticks = session_ticks(end_s + 2)[int(start_s) :]
    assert_live_equals_batch(beats, ticks)


def test_by_partner_is_compute_metrics_for_each():
    a, b = random_series(4, n=300), polar_series()
    ticks = session_ticks(300)
    frames = compute_metrics_by_partner({"a": a, "b": b}, ticks)
    for key, beats in (("a", a), ("b", b)):
        for name, column in compute_metrics(beats, ticks).columns().items():
            assert np.array_equal(frames[key].columns()[name], column, equal_nan=True)
    assert session_ticks(3.7).tolist() == [1.0, 2.0, 3.0]
    assert CFG.lookback_s == 60.0 <= LIVE_LOOKBACK_S


def test_slope_does_not_depend_on_how_ticks_are_chunked(monkeypatch):
    import monitor.metrics as metrics

    beats = polar_series()
    ticks = session_ticks(beats.t_s[-1])
    whole = compute_metrics(beats, ticks).hr_slope15_bpm_per_min
    monkeypatch.setattr(metrics, "_SLOPE_CHUNK_ELEMENTS", 50)  # a few ticks per chunk
    chunked = compute_metrics(beats, ticks).hr_slope15_bpm_per_min
    assert np.array_equal(whole.view(np.int64), chunked.view(np.int64))
    assert np.isfinite(whole[20:]).all()
