"""One-tick metrics from running sums (monitor/metrics_live.py) == compute_metrics and
quality.correction_share over the whole series, to the last bit, at every tick."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.metrics import MetricsConfig, MetricsInputError, NNSeries, compute_metrics
from monitor.metrics_live import METRIC_NAMES, LiveNN
from monitor.quality import correction_share

KEEP_S = 65.0  # what the live pipeline keeps before a tick (the longest window + 5 s)


def beats(seed: int, n: int = 1500) -> dict[str, np.ndarray]:
    """Random final NN beats: 300-2000 ms, breaks in adjacency (most with a gap in time,
    some long enough to empty every window), runs of identical NN (RMSSD 0), corrected
    beats, and availability 0-3 s after the beat, rounded up to whole seconds as the
    pipeline's are."""
    rng = np.random.default_rng(seed)
    nn = rng.integers(308, 2048, size=n)
    flat = rng.integers(0, n - 40)
    nn[flat : flat + 40] = nn[flat]  # 40 equal beats: RMSSD 0, ln RMSSD NaN
    contiguous = rng.random(n) > 0.04
    gaps_s = np.where(contiguous, 0.0, rng.choice([0.7, 4.0, 70.0], size=n, p=[0.6, 0.3, 0.1]))
    t_s = 0.4137 + np.cumsum(nn / 1024 + gaps_s)
    available = np.maximum.accumulate(np.ceil(t_s + rng.uniform(0.0, 3.0, size=n)))
    return {
        "t_s": t_s,
        "nn": nn.astype(np.int64),
        "contiguous": contiguous,
        "start": rng.random(n) < 0.05,
        "available": available,
    }


def run_live(b: dict[str, np.ndarray], ticks: np.ndarray, cfg: MetricsConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Feed each beat once it is available and evaluate every tick, as live mode does;
    return the metrics per tick (columns in METRIC_NAMES order), the corrected share,
    and the most beats held at once."""
    live = LiveNN(cfg)
    rows, shares, held, fed = [], [], 0, 0
    for tick in ticks.tolist():
        while fed < len(b["t_s"]) and b["available"][fed] <= tick:
            live.append(b["t_s"][fed], b["nn"][fed], b["contiguous"][fed], b["start"][fed], b["available"][fed])
            fed += 1
        rows.append(live.metrics_at(tick))
        shares.append(live.correction_share_at(tick, 30.0))
        live.trim(tick - KEEP_S)
        held = max(held, len(live.t_s))
    return np.array(rows), np.array(shares), held


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and np.array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(
    "cfg",
    [MetricsConfig(), MetricsConfig(hr_window_s=7.5, slope_window_s=20.0, min_beats_short=3, min_beats_long=30)],
)
def test_every_tick_equals_compute_metrics_over_the_whole_series(seed: int, cfg: MetricsConfig) -> None:
    b = beats(seed)
    ticks = np.arange(1.0, math.ceil(b["available"][-1]) + 5.0)
    frame = compute_metrics(NNSeries(b["t_s"], b["nn"], b["contiguous"]), ticks, cfg, available_t_s=b["available"])
    got, shares, held = run_live(b, ticks, cfg)
    for i, name in enumerate(METRIC_NAMES):
        assert same_bits(got[:, i], getattr(frame, name)), name
    assert same_bits(shares, correction_share(ticks, b["t_s"], b["start"], 30.0, b["available"]))
    # The series exercises what it should: empty and short windows, RMSSD 0, slopes.
    assert np.isnan(frame.hr10_bpm).sum() > 50 and np.isfinite(frame.hr10_bpm).sum() > 500
    assert np.sum(np.isfinite(frame.rmssd30_ms) & np.isnan(frame.ln_rmssd30)) > 0
    assert np.isfinite(frame.hr_slope15_bpm_per_min).sum() > 500
    assert np.nanmax(shares) > 0
    # Old beats are forgotten: never much more than a lookback's worth (plus one trim step).
    assert held < 256 + 250


def test_values_by_hand() -> None:
    live = LiveNN(MetricsConfig())
    for t_s, nn in [(1.0, 1024), (2.0, 1024), (3.0, 1152), (4.0, 896), (5.0, 1024)]:
        live.append(t_s, nn, True, False, t_s)
    row = dict(zip(METRIC_NAMES, live.metrics_at(5.0)))
    assert row["hr10_bpm"] == 60 * 5 * 1024 / (1024 * 3 + 1152 + 896)
    assert row["n_beats10"] == 5.0 and row["mean_nn30_ms"] == 1000.0
    # differences 0, 128, -256, 128 units: RMSSD = sqrt(32768 / 4) units
    assert row["rmssd30_ms"] == math.sqrt((0 + 128**2 + 256**2 + 128**2) / 4) * 1000 / 1024
    assert math.isnan(row["rmssd60_ms"])  # fewer than min_beats_long beats
    assert live.correction_share_at(5.0, 30.0) == 0.0
    assert math.isnan(live.correction_share_at(100.0, 30.0))  # no beat in the window


def test_a_beat_not_yet_available_is_not_counted() -> None:
    live = LiveNN(MetricsConfig())
    for k in range(6):
        live.append(1.0 + k, 1024, True, False, 1.0 + k if k < 5 else 9.0)
    assert live.metrics_at(7.0)[1] == 5.0  # n_beats10: the sixth beat is known only at 9 s
    assert live.metrics_at(9.0)[1] == 6.0


@pytest.mark.parametrize(
    "t_s, nn, match",
    [((1.0, 0.5), (1024, 1024), "sorted"), ((1.0, 2.0), (1024, 0), ">= 1 unit"), ((1.0, math.inf), (1024, 1024), "finite")],
)
def test_bad_beats_are_refused_with_where(t_s, nn, match) -> None:
    live = LiveNN(MetricsConfig())
    live.append(t_s[0], nn[0], True, False, t_s[0])
    with pytest.raises(MetricsInputError, match="final beat 1") as err:
        live.append(t_s[1], nn[1], True, False, 3.0)
    assert match in str(err.value)
