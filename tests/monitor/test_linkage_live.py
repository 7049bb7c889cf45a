"""Live linkage (monitor/linkage_live.py) == batch: resample_hr_live against
resample_hr, and LiveLinkageTracker fed a tick at a time against linkage_at over the
whole series, to the last bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.linkage import LinkageConfig, resample_hr
from monitor.linkage_batch import linkage_at
from monitor.linkage_live import LiveLinkageTracker, resample_hr_live
from monitor.metrics import MetricsConfig
from monitor.metrics_live import LiveNN

KEEP_S = 65.0


def same_bits(got, want) -> bool:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got.shape == want.shape and np.array_equal(got.view(np.int64), want.view(np.int64))


def nn_beats(seed: int, n: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Beat times with dropouts longer than max_hold_s, NN (1/1024 s) and availability
    (whole seconds, up to 3 s after the beat)."""
    rng = np.random.default_rng(seed)
    nn = rng.integers(400, 1500, size=n)
    gaps_s = rng.choice([0.0, 2.0, 5.0, 80.0], size=n, p=[0.96, 0.02, 0.015, 0.005])
    t_s = 0.61 + np.cumsum(nn / 1024 + gaps_s)
    available = np.maximum.accumulate(np.ceil(t_s + rng.uniform(0.0, 3.0, size=n)))
    return t_s, nn.astype(np.int64), available


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("cfg", [LinkageConfig(), LinkageConfig(fs_hz=5, max_hold_s=1.5, delay_s=0)])
def test_resampling_a_tick_at_a_time_equals_resample_hr(seed: int, cfg: LinkageConfig) -> None:
    t_s, nn, available = nn_beats(seed)
    last_tick = math.ceil(available[-1]) + 10
    whole = resample_hr(t_s, nn, available, 1, last_tick * cfg.fs_hz + 1, cfg)
    live, got, fed = LiveNN(MetricsConfig()), [], 0
    for tick in range(1, last_tick + cfg.delay_s + 1):
        while fed < len(t_s) and available[fed] <= tick:
            live.append(t_s[fed], nn[fed], True, False, available[fed])
            fed += 1
        done = tick - cfg.delay_s  # as live mode: the samples of delay_s ago
        if done >= 1:
            got += resample_hr_live(live, (done - 1) * cfg.fs_hz + 1, done * cfg.fs_hz + 1, cfg)
        live.trim(tick - KEEP_S)
    assert same_bits(got, whole)
    assert np.isnan(whole).sum() > 1000 and np.isfinite(whole).sum() > 3000
    assert live.dropped > 1000  # the beats were trimmed along the way


def hr_series(seed: int, n_ticks: int, fs_hz: int) -> tuple[np.ndarray, np.ndarray]:
    """Two partners' HR samples: coupled with a lag, missing stretches, flat stretches
    (no variation: NaN linkage) and stretches in anti-phase."""
    rng = np.random.default_rng(seed)
    m = n_ticks * fs_hz
    base = np.cumsum(rng.normal(0.0, 0.6, size=m + 40))
    a = 72.0 + base[40:] + rng.normal(0.0, 0.3, size=m)
    b = 65.0 + 0.8 * base[40 - 9 : 40 - 9 + m] + rng.normal(0.0, 0.3, size=m)  # b follows a
    b[m // 2 : m // 2 + 400] = 65.0 - (a[m // 2 : m // 2 + 400] - 72.0)  # anti-phase
    a[1000:1300] = 80.0  # flat
    for lo in rng.integers(0, m - 60, size=12):
        (a if lo % 2 else b)[lo : lo + rng.integers(4, 60)] = np.nan
    a[2000:2600] = np.nan  # longer than a window
    return a, b


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("cfg", [LinkageConfig(), LinkageConfig(fs_hz=2, window_s=20.0, max_lag_s=3.0)])
def test_a_tick_at_a_time_equals_one_batch_feed(seed: int, cfg: LinkageConfig) -> None:
    n_ticks = 1500
    a, b = hr_series(seed, n_ticks, cfg.fs_hz)
    stops = np.arange(1, n_ticks + 1) * cfg.fs_hz
    want_r, want_lag = linkage_at(a, b, stops, cfg)
    live = LiveLinkageTracker(cfg)
    got_r, got_lag = [], []
    for k, stop in enumerate(stops.tolist()):
        part = slice(k * cfg.fs_hz, (k + 1) * cfg.fs_hz)
        live.feed(a[part].tolist(), b[part].tolist())
        r, lag = live.at_tick(stop)
        got_r.append(r)
        got_lag.append(lag)
        live.trim()
    assert same_bits(got_r, want_r) and same_bits(got_lag, want_lag)
    # The series covers what it should: strong in- and anti-phase, lags, and NaN windows.
    assert np.nanmax(want_r) > 0.8 and np.nanmin(want_r) < -0.8
    assert len(np.unique(want_lag[np.isfinite(want_lag)])) > 3
    assert np.isnan(want_r).sum() > 100
    assert live._prefix.base > 0  # old sums were dropped along the way


def test_of_equal_largest_r_the_first_lag_wins_as_in_batch() -> None:
    cfg = LinkageConfig()
    a = np.tile([70.0, 74.0, 79.0, 72.0, 68.0, 75.0, 71.0, 77.0], 100)  # period 2 s: r = 1 every 2 s of lag
    live = LiveLinkageTracker(cfg)
    for k in range(200):
        live.feed(a[4 * k : 4 * k + 4], a[4 * k : 4 * k + 4])
    r, lag = live.at_tick(800)
    assert r == 1.0 and lag == -4.0  # -4, -2, 0, 2, 4 s all give r = 1: the first
    assert same_bits([lag], linkage_at(a, a, np.array([800]), cfg)[1])


def test_a_sample_exactly_max_hold_s_after_the_beat_still_holds_it() -> None:
    cfg = LinkageConfig()  # 4 Hz, held for 3 s
    live = LiveNN(MetricsConfig())
    live.append(1.0, 1024, True, False, 1.0)
    assert resample_hr_live(live, 13, 17, cfg) == [60.0, 60.0, 60.0, 60.0]  # 3.25 .. 4.0 s
    assert math.isnan(resample_hr_live(live, 17, 18, cfg)[0])  # 4.25 s
