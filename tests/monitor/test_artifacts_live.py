"""The beat-by-beat corrector (monitor.artifacts_live) against correct_beats.

Reference: ``correct_beats`` over the whole series. Every raw beat's flags and every NN
beat (time, value, contiguity, corrected, raw index) must be the same, bit for bit, and
each beat must come out exactly when ``final_count`` says it is final. Series: every
fixture recording's beats, and synthetic series with each kind of artifact the method
knows, gaps of every spacing, and several configurations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devices.recording import read_records
from monitor.artifacts import ArtifactConfig, ArtifactInputError, BeatFlag, correct_beats, final_count
from monitor.artifacts_live import TrailingCorrector
from monitor.beats_batch import time_partner_beats
from monitor.config import Config
from monitor.pipeline import scan_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECORDINGS = sorted(p.name for p in FIXTURES.glob("*.jsonl*"))
CONFIGS = [
    ArtifactConfig(),
    ArtifactConfig(threshold_cap=0.0, threshold_floor=0.0),  # the paper's thresholds
    ArtifactConfig(threshold_cap=0.0),  # floor only
    ArtifactConfig(threshold_floor=0.0, threshold_cap=0.15),
    ArtifactConfig(threshold_window_beats=25, median_window_beats=5, min_window_beats=8),
    ArtifactConfig(threshold_window_beats=3, median_window_beats=3, min_window_beats=1, alpha=3.0),
    ArtifactConfig(threshold_window_beats=40, median_window_beats=8, min_window_beats=40, mrr_limit=2.0),
]


def run_corrector(rr: np.ndarray, t_s: np.ndarray, contiguous: np.ndarray, cfg: ArtifactConfig):
    """Push every beat; check each comes out when it becomes final; return the raw flags
    and the NN columns (t_s, nn_units, contiguous, corrected, raw_index)."""
    corrector = TrailingCorrector(cfg)
    done = []
    for i in range(len(rr)):
        done += corrector.push(int(rr[i]), float(t_s[i]), bool(contiguous[i]))
        assert len(done) == final_count(contiguous[: i + 1]), i
    done += corrector.finish()
    assert [f.raw_index for f in done] == list(range(len(rr)))
    nn = [b for f in done for b in f.nn]
    return np.array([f.flags for f in done], np.int8), (
        np.array([b.t_s for b in nn], np.float64),
        np.array([b.nn_units for b in nn], np.int64),
        np.array([b.contiguous for b in nn], bool),
        np.array([b.corrected for b in nn], bool),
        np.array([b.raw_index for b in nn], np.int64),
    )


def assert_same_as_batch(rr, t_s, contiguous, cfg: ArtifactConfig):
    """The corrector's results equal correct_beats' over the whole series, to the bit."""
    batch = correct_beats(rr, t_s, contiguous, cfg)
    flags, (nn_t, nn, nn_cont, corrected, raw_index) = run_corrector(rr, t_s, contiguous, cfg)
    assert np.array_equal(flags, batch.beat_flags), np.flatnonzero(flags != batch.beat_flags)[:5]
    assert np.array_equal(nn, batch.nn_units)
    assert nn_t.tobytes() == batch.t_s.tobytes()  # float bits, not just values
    assert np.array_equal(nn_cont, batch.contiguous)
    assert np.array_equal(corrected, batch.corrected)
    assert np.array_equal(raw_index, batch.raw_index)
    return batch


def synthetic(seed: int, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RR (1/1024 s), beat times (s) and contiguity with every kind of artifact and gap.

    A drifting breathing series; then, at random places: ectopic pairs, missed beats,
    runs of 1-3 extra beats, lone long and short beats, bigeminy and trigeminy stretches,
    out-of-range values both ways, values on exact half-units of the median, and gaps
    alone, in clusters 1-3 beats apart and at the start. Half the seeds jitter the beat
    times off the RR chain (as re-anchored strap clocks do).
    """
    rng = np.random.default_rng(seed)
    level = rng.uniform(450, 1300)
    rr_f = level + np.cumsum(rng.normal(0, 6, n)) + 30 * np.sin(np.arange(n) * 2 * np.pi / rng.uniform(3, 6))
    rr_f += rng.normal(0, rng.choice([0.5, 5, 15]), n)
    rr = [int(x) for x in np.clip(rr_f, 350, 1900)]
    out: list[int] = []
    i = 0
    while i < n:
        kind = rng.choice(10, p=[0.80, 0.03, 0.02, 0.03, 0.02, 0.02, 0.01, 0.01, 0.03, 0.03])
        v = rr[i]
        if kind == 1:  # ectopic pair: early, then the compensatory pause
            early = int(v * rng.uniform(0.6, 0.8))
            out += [early, 2 * v - early]
        elif kind == 2:  # missed: two intervals merged
            out.append(v + rr[min(i + 1, n - 1)])
            i += 1
        elif kind == 3:  # 1-3 extra beats: the interval cut in 2-4 pieces
            cuts = np.sort(rng.uniform(0.15, 0.85, rng.integers(1, 4)))
            edges = np.round(np.concatenate(([0.0], cuts, [1.0])) * v).astype(int)
            out += [int(x) for x in np.diff(edges) if x > 0]
        elif kind == 4:  # a lone long or short beat
            out.append(int(v * rng.choice([0.7, 0.75, 1.3, 1.45])))
        elif kind == 5:  # bigeminy stretch
            for k in range(int(rng.integers(6, 30))):
                out.append(int(v * (0.72 if k % 2 == 0 else 1.28)))
        elif kind == 6:  # trigeminy stretch
            for k in range(int(rng.integers(9, 30))):
                out.append(int(v * (0.7, 1.3, 1.0)[k % 3]))
        elif kind == 7:  # out of range: a spike (< 300 ms) or a dropout (> 2000 ms)
            out.append(int(rng.choice([rng.uniform(40, 307), rng.uniform(2049, 4500)])))
        elif kind == 8:  # exactly twice or half a neighbour: medians and means on .5
            out += [v, 2 * v + 1, v // 2 + 1, v]
        else:
            out.append(v)
        i += 1
    rr_units = np.array(out, dtype=np.int64)
    m = len(rr_units)
    contiguous = np.ones(m, bool)
    contiguous[0] = bool(rng.integers(2))  # the first beat's own flag must not matter
    for _ in range(int(rng.integers(0, 6))):  # gap clusters: 1-4 gaps, 1-3 beats apart
        at = int(rng.integers(1, m))
        for _ in range(int(rng.integers(1, 5))):
            if at < m:
                contiguous[at] = False
            at += int(rng.integers(1, 4))
    if seed % 3 == 0:
        contiguous[1 : 1 + int(rng.integers(1, 4))] = False  # gaps right at the start
    t_s = 3.0 + np.cumsum(rr_units / 1024 + np.where(contiguous, 0.0, rng.uniform(0.5, 9.0, m)))
    if seed % 2:
        jitter_s = rng.normal(0, 0.15, m) * rng.choice([1.0, 8.0], m, p=[0.9, 0.1])
        t_s = np.maximum.accumulate(t_s + jitter_s)  # off the chain (split times clamp), still sorted
    return rr_units, t_s, contiguous


@pytest.mark.parametrize("name", RECORDINGS)
def test_same_as_batch_on_every_fixture(name: str) -> None:
    header, records = read_records(FIXTURES / name)
    present = tuple(header.partners) or ("a", "b")
    streams, _, _ = scan_records(records, present)
    for partner in present:
        beats = time_partner_beats(streams[partner], Config().beats).series
        assert len(beats) > 500
        rr = beats.rr_units.astype(np.int64)
        for cfg in CONFIGS[:2]:
            assert_same_as_batch(rr, beats.t_s, beats.contiguous, cfg)


def test_same_as_batch_on_synthetic_series_with_every_artifact() -> None:
    found = np.zeros(len(BeatFlag), int)
    for seed in range(70):
        rr, t_s, contiguous = synthetic(seed)
        batch = assert_same_as_batch(rr, t_s, contiguous, CONFIGS[seed % len(CONFIGS)])
        found += [np.count_nonzero(batch.beat_flags & f) for f in BeatFlag]
    # The series reach every class, so every rule's path has been compared.
    assert np.all(found > 20), dict(zip([f.name for f in BeatFlag], found))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4])
def test_same_as_batch_on_very_short_series(n: int) -> None:
    for seed in range(12):
        rr, t_s, contiguous = synthetic(seed, 30)
        for cfg in CONFIGS:
            assert_same_as_batch(rr[:n], t_s[:n], contiguous[:n], cfg)


def test_a_beat_is_out_as_soon_as_it_is_final() -> None:
    corrector = TrailingCorrector()
    assert corrector.push(840, 1.0, False) == [] and corrector.push(850, 1.8, True) == []
    (first,) = corrector.push(830, 2.6, True)  # beat 0 has its two beats of look-ahead
    assert first.raw_index == 0 and first.flags == 0
    assert [(b.nn_units, b.contiguous, b.corrected) for b in first.nn] == [(840, False, False)]
    assert [f.raw_index for f in corrector.push(845, 9.0, False)] == [1, 2]  # a gap: all final
    assert [f.raw_index for f in corrector.finish()] == [3]


def test_state_stays_bounded_over_a_long_series() -> None:
    cfg = ArtifactConfig()
    rr, t_s, contiguous = synthetic(4, 6000)
    contiguous[1:] = True  # one segment: every window at its widest
    corrector = TrailingCorrector(cfg)
    for i in range(len(rr)):
        corrector.push(int(rr[i]), float(t_s[i]), bool(contiguous[i]))
    held = [len(w.entries) for w in (corrector._med, corrector._th1, corrector._th2)]
    assert held == [cfg.median_window_beats, cfg.threshold_window_beats, cfg.threshold_window_beats]
    assert len(corrector._beats) <= 7


def test_input_errors_say_what_and_where() -> None:
    corrector = TrailingCorrector()
    corrector.push(800, 5.0, False)
    with pytest.raises(ArtifactInputError, match="beat 1 must be a whole number"):
        corrector.push(800.0, 6.0, True)
    with pytest.raises(ArtifactInputError, match="back in time at beat 1"):
        corrector.push(800, 4.0, True)
    corrector.finish()
    with pytest.raises(ArtifactInputError, match="beat 1 pushed after finish"):
        corrector.push(800, 6.0, True)
