"""Baseline and activation: settle-in statistics from good ticks only, readiness rules,
config validation, and activation / vagal index against hand-computed values."""

import math

import numpy as np
import pytest

from monitor.baseline import Baseline, BaselineConfig, activation, settle_baseline

CFG = BaselineConfig()


def ticks(n: int) -> np.ndarray:
    return np.arange(1, n + 1, dtype=float)


# --- settle_baseline -------------------------------------------------------------


def test_mean_and_sd_come_from_good_ticks_only():
    rng = np.random.default_rng(7)
    t = ticks(200)
    hr = 70 + rng.normal(0, 3, 200)
    ln = 3.5 + rng.normal(0, 0.2, 200)
    good = rng.random(200) > 0.2
    # bad ticks carry wild values: any leak into the statistics shows at once
    hr[~good] = 250.0
    ln[~good] = -9.0
    base = settle_baseline(t, hr, ln, good, CFG)
    assert base is not None
    assert base.n_ticks == int(good.sum())
    assert base.hr_mean_bpm == pytest.approx(np.mean(hr[good]), abs=1e-12)
    assert base.hr_sd_bpm == pytest.approx(np.std(hr[good], ddof=1), abs=1e-12)
    assert base.ln_rmssd_mean == pytest.approx(np.mean(ln[good]), abs=1e-12)
    assert base.ln_rmssd_sd == pytest.approx(np.std(ln[good], ddof=1), abs=1e-12)
    assert base.source == "settle-in"


def test_hand_computed_small_case():
    # settle-in 120 s, half must be good: 60 good ticks alternate 60 and 64 bpm
    cfg = BaselineConfig(settle_in_s=120, min_valid_share=0.5)
    t = ticks(120)
    good = np.zeros(120, bool)
    good[::2] = True
    hr = np.where(np.arange(120) % 4 == 0, 60.0, 64.0)
    ln = np.full(120, 4.0)
    base = settle_baseline(t, hr, ln, good, cfg)
    assert base is not None
    assert base.n_ticks == 60
    assert base.hr_mean_bpm == 62.0
    # 30 values at 60 and 30 at 64: squared deviations 4 each, sum 240, / 59
    assert base.hr_sd_bpm == pytest.approx(math.sqrt(240 / 59), rel=1e-15)
    assert base.ln_rmssd_mean == 4.0 and base.ln_rmssd_sd == 0.0


def test_nan_hr10_on_a_good_tick_is_not_used():
    t = ticks(180)
    hr = np.full(180, 80.0)
    hr[:10] = np.nan
    ln = np.full(180, 3.0)
    base = settle_baseline(t, hr, ln, np.ones(180, bool), CFG)
    assert base is not None and base.n_ticks == 170 and base.hr_mean_bpm == 80.0


def test_nan_ln_rmssd_skipped_in_its_own_statistics():
    t = ticks(180)
    hr = np.linspace(60, 80, 180)
    ln = np.full(180, 3.0)
    ln[::3] = np.nan
    ln[1::3] = 5.0
    base = settle_baseline(t, hr, ln, np.ones(180, bool), CFG)
    assert base is not None
    assert base.n_ticks == 180  # HR uses every tick
    assert base.ln_rmssd_mean == pytest.approx(4.0)
    assert base.ln_rmssd_sd == pytest.approx(np.std([5.0, 3.0] * 60, ddof=1))


def test_not_ready_before_settle_in_ends():
    t = ticks(179)
    ones = np.ones(179, bool)
    assert settle_baseline(t, np.full(179, 70.0), np.full(179, 3.0), ones, CFG) is None
    t = ticks(180)
    assert settle_baseline(t, np.full(180, 70.0), np.full(180, 3.0), np.ones(180, bool), CFG) is not None
    empty = np.zeros(0)
    assert settle_baseline(empty, empty, empty, np.zeros(0, bool), CFG) is None


def test_not_ready_with_too_few_good_ticks_then_extended():
    # default: 180 s and 60 % -> 108 good ticks needed
    assert CFG.min_good_ticks == 108
    n = 300
    t = ticks(n)
    hr = np.full(n, 72.0)
    ln = np.full(n, 3.2)
    good = np.zeros(n, bool)
    good[:107] = True
    assert settle_baseline(t, hr, ln, good, CFG) is None
    good[200] = True  # the 108th good tick, well after 180 s: the settle-in was extended
    base = settle_baseline(t, hr, ln, good, CFG)
    assert base is not None and base.n_ticks == 108


def test_integer_good_mask_selects_not_indexes():
    t = ticks(180)
    hr = np.arange(180, dtype=float) + 50.0
    good = np.zeros(180, dtype=np.int64)
    good[100:] = 1
    base = settle_baseline(t, hr, np.full(180, 3.0), good, BaselineConfig(min_valid_share=0.4))
    assert base is not None
    assert base.n_ticks == 80
    assert base.hr_mean_bpm == pytest.approx(np.mean(hr[100:]))


@pytest.mark.parametrize(
    ("settle_in_s", "share", "needed"),
    [(180, 0.6, 108), (180, 0.55, 99), (120, 0.5, 60), (121, 0.5, 61), (200, 1.0, 200)],
)
def test_min_good_ticks_is_the_exact_ceiling(settle_in_s, share, needed):
    # 180 * 0.55 is 99.00000000000001 in floating point: still 99 ticks
    assert BaselineConfig(settle_in_s=settle_in_s, min_valid_share=share).min_good_ticks == needed


# --- BaselineConfig ------------------------------------------------------------


def test_config_refuses_a_settle_in_below_the_minimum():
    with pytest.raises(ValueError, match="settle_in_s"):
        BaselineConfig(settle_in_s=119.0)
    with pytest.raises(ValueError, match="settle_in_s"):
        BaselineConfig(settle_in_s=90.0, min_settle_in_s=100.0)
    assert BaselineConfig(settle_in_s=120.0).settle_in_s == 120.0
    assert BaselineConfig(settle_in_s=60.0, min_settle_in_s=60.0).settle_in_s == 60.0


@pytest.mark.parametrize(("field", "value"), [("min_valid_share", 0.0), ("min_valid_share", 1.5), ("sd_floor_bpm", 0.0)])
def test_config_refuses_impossible_shares_and_floors(field, value):
    with pytest.raises(ValueError, match=field):
        BaselineConfig(**{field: value})


# --- activation --------------------------------------------------------------------


def test_activation_hand_computed_with_sd_above_floor():
    base = Baseline(hr_mean_bpm=70.0, hr_sd_bpm=4.0, ln_rmssd_mean=3.5, ln_rmssd_sd=0.3, n_ticks=150)
    hr = np.array([70.0, 78.0, 66.0, np.nan])
    ln = np.array([3.5, 3.0, 4.0, 3.5])
    delta, act, vagal = activation(hr, ln, base, CFG)
    np.testing.assert_array_equal(delta, [0.0, 8.0, -4.0, np.nan])
    np.testing.assert_array_equal(act, [0.0, 2.0, -1.0, np.nan])
    # positive vagal index = lower ln RMSSD than baseline = less vagal tone
    np.testing.assert_allclose(vagal, [0.0, 0.5, -0.5, 0.0], atol=1e-15)
    assert vagal[1] > 0 > vagal[2]


def test_activation_uses_the_2_bpm_floor_for_a_steady_baseline():
    base = Baseline(hr_mean_bpm=60.0, hr_sd_bpm=0.5, ln_rmssd_mean=4.0, ln_rmssd_sd=0.1, n_ticks=150)
    delta, act, _ = activation(np.array([63.0, 50.0]), np.array([4.0, 4.0]), base, CFG)
    np.testing.assert_array_equal(delta, [3.0, -10.0])
    np.testing.assert_array_equal(act, [1.5, -5.0])  # / 2 bpm, not / 0.5 bpm
    # a zero SD (one good tick) would divide by zero without the floor
    zero = Baseline(60.0, 0.0, 4.0, float("nan"), 1)
    assert activation(np.array([66.0]), np.array([4.0]), zero, CFG)[1][0] == 3.0
    # a custom floor is honoured
    _, act3, _ = activation(np.array([63.0]), np.array([4.0]), base, BaselineConfig(sd_floor_bpm=3.0))
    assert act3[0] == 1.0


def test_baseline_to_json():
    base = Baseline(70.5, 3.25, 3.1, 0.2, 140)
    assert base.to_json() == {
        "hr_mean_bpm": 70.5,
        "hr_sd_bpm": 3.25,
        "ln_rmssd_mean": 3.1,
        "ln_rmssd_sd": 0.2,
        "n_ticks": 140,
        "source": "settle-in",
    }


@pytest.mark.parametrize("seed", range(4))
def test_mean_and_sd_are_numpys_to_the_bit(seed: int) -> None:
    # settle_baseline writes np.mean and np.std(ddof=1) out by hand (for speed); the
    # stored baselines of earlier sessions must come out the same.
    rng = np.random.default_rng(seed)
    n = int(rng.integers(180, 2000))
    t = ticks(n)
    hr = np.round(rng.normal(rng.uniform(55, 95), rng.uniform(0.5, 12), n), int(rng.integers(1, 6)))
    ln = rng.normal(3.5, 0.4, n)
    ln[rng.random(n) < 0.1] = np.nan
    good = rng.random(n) > 0.2
    base = settle_baseline(t, hr, ln, good, CFG)
    use = good & np.isfinite(hr)
    ln_use = ln[use & np.isfinite(ln)]
    assert base is not None
    assert base.hr_mean_bpm == float(np.mean(hr[use]))
    assert base.hr_sd_bpm == float(np.std(hr[use], ddof=1))
    assert base.ln_rmssd_mean == float(np.mean(ln_use))
    assert base.ln_rmssd_sd == float(np.std(ln_use, ddof=1))
