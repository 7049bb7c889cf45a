"""One-tick signal quality (monitor/quality_live.py) == quality.max_gap_s and the
verdict of stages.partner_ticks / stages.quality_codes, to the last bit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.artifacts import ArtifactInputError
from monitor.config import Config
from monitor.quality import max_gap_s
from monitor.quality_live import LiveGaps, tick_quality
from monitor.stages import NNBeats, partner_ticks, quality_codes

KEEP_S = 65.0


def raw_beats(seed: int, n: int = 2500) -> tuple[np.ndarray, np.ndarray]:
    """Raw beat times with short and long dropouts (some longer than what live mode
    keeps) and arrival times: in batches about a second apart, a beat up to 0.3 s
    ahead of its arrival, as the beat timer may place them."""
    rng = np.random.default_rng(seed)
    step = rng.uniform(0.3, 1.6, size=n) + rng.choice([0.0, 3.5, 40.0, 90.0], size=n, p=[0.95, 0.03, 0.015, 0.005])
    t_s = 0.87 + np.cumsum(step)
    arrival = np.maximum.accumulate(np.ceil((t_s + rng.uniform(-0.3, 1.5, size=n)) * 4) / 4)
    return t_s, arrival


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window_s", [30.0, 12.5])
def test_every_tick_equals_max_gap_s_over_the_whole_series(seed: int, window_s: float) -> None:
    t_s, arrival = raw_beats(seed)
    ticks = np.arange(0.0, math.ceil(arrival[-1]) + 100.0)
    want = max_gap_s(ticks, t_s, window_s, arrival)
    gaps, got, fed, held = LiveGaps(), [], 0, 0
    for tick in ticks.tolist():
        while fed < len(t_s) and arrival[fed] <= tick:
            gaps.append(t_s[fed], arrival[fed])
            fed += 1
        got.append(gaps.max_gap_at(tick, window_s))
        gaps.trim(tick - KEEP_S)
        held = max(held, len(gaps.t_s))
    got = np.array(got)
    assert np.array_equal(got.view(np.int64), want.view(np.int64))
    assert np.isinf(got[0]) and (got > 80.0).sum() > 10  # before the first beat; long dropouts
    assert gaps.dropped > 1000 and held < 256 + 200  # old beats were forgotten


def test_the_open_gap_after_the_last_beat_counts_after_a_trim() -> None:
    gaps = LiveGaps()
    for k in range(600):
        gaps.append(1.0 + k, 1.0 + k)
    gaps.trim(700.0)  # everything is old: only the last beat stays
    assert gaps.t_s == [600.0] and gaps.dropped == 599
    assert gaps.max_gap_at(700.0, 30.0) == 100.0  # open since the beat at 600 s
    gaps.append(701.5, 702.0)
    assert gaps.max_gap_at(702.0, 30.0) == 101.5  # the gap ending at 701.5 s, in full


def test_a_beat_placed_ahead_of_its_arrival_after_a_dropout_and_a_trim() -> None:
    gaps = LiveGaps()
    for k in range(600):
        gaps.append(1.0 + k, 1.0 + k)
    gaps.append(700.2, 699.9)  # known at 699.9 s, placed 0.3 s later
    gaps.trim(699.0)
    # At 700 s the new beat is not yet at or before the tick: the open gap since the
    # beat at 600 s is what counts, as max_gap_s gives over the whole series.
    whole = max_gap_s(np.array([700.0]), np.append(np.arange(1.0, 601.0), 700.2), 30.0, np.append(np.arange(1.0, 601.0), 699.9))
    assert gaps.max_gap_at(700.0, 30.0) == whole[0] == 100.0


def test_beats_going_back_in_time_are_refused() -> None:
    gaps = LiveGaps()
    gaps.append(5.0, 6.0)
    with pytest.raises(ArtifactInputError, match="raw beat 1 goes back in time"):
        gaps.append(4.0, 7.0)


def test_verdict_equals_partner_ticks_and_quality_codes() -> None:
    cfg = Config()
    rng = np.random.default_rng(5)
    # Beats every 0.5 s (exact in binary) with dropouts of exactly max_gap_s and longer,
    # and corrected runs 1 in 20 beats (exactly max_corrected_share) or more often.
    step = np.where(rng.random(3000) < 0.01, rng.choice([3.0, 3.5, 20.0], size=3000), 0.5)
    t_s = np.cumsum(step)
    starts = rng.random(3000) < np.repeat(rng.choice([0.0, 0.05, 0.2], size=30), 100)
    n = len(t_s)
    nn = NNBeats(t_s, np.full(n, 512, np.int64), np.ones(n, bool), starts, starts, np.ceil(t_s))
    ticks = np.arange(1.0, t_s[-1] + 10.0)
    connected = np.repeat(rng.random(len(ticks) // 50 + 1) > 0.2, 50)[: len(ticks)]
    batch = partner_ticks(ticks, nn, t_s, np.ceil(t_s), connected, cfg)
    codes = quality_codes(batch)
    got = [
        tick_quality(share, gap, bool(c), hr10, cfg.artifacts)
        for share, gap, c, hr10 in zip(batch.corrected_share.tolist(), batch.gap_s.tolist(), connected, batch.metrics.hr10_bpm.tolist())
    ]
    assert [q.ok for q in got] == batch.quality_ok.tolist()
    assert [q.code for q in got] == codes.tolist()
    assert set(codes.tolist()) == {0, 1, 2}
    assert np.any(batch.gap_s == cfg.artifacts.max_gap_s) and np.any(batch.corrected_share == cfg.artifacts.max_corrected_share)
