"""Batch pipeline pieces: availability of beats, settle-in, quality changes, stored
baselines, single-partner recordings, and how much of a session has a linkage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from devices.recording import read_records
from monitor.baseline import Baseline, BaselineConfig
from monitor.config import Config
from monitor.linkage import LinkageConfig
from monitor.pipeline import analyze_records
from monitor.stages import quality_changes, raw_available_t_s, settle_index

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_a_beat_is_known_once_two_more_arrived_or_a_gap_followed() -> None:
    arrival = np.array([1.0, 1.0, 2.0, 3.0, 4.0, 9.0, 10.0])
    contiguous = np.array([True, True, True, True, True, False, True])
    got = raw_available_t_s(arrival, contiguous)
    # beat 0 final when beat 2 arrives (2.0); beat 3 when beat 5 arrives (a gap beat,
    # 9.0); beat 4: the gap beat 5 makes it final at once (9.0); 5 and 6 never.
    np.testing.assert_array_equal(got, [2.0, 3.0, 4.0, 9.0, 9.0, np.inf, np.inf])


def test_availability_matches_a_beat_by_beat_loop_on_short_and_gappy_series() -> None:
    rng = np.random.default_rng(3)
    for n in [0, 1, 2, 3, 5, 40]:
        arrival = np.sort(rng.random(n) * 10)
        contiguous = rng.random(n) > 0.3
        want = np.full(n, np.inf)
        for i in range(n):
            for j in range(i + 1, n):  # final at the second beat after i, or at a gap beat
                if j == i + 2 or not contiguous[j]:
                    want[i] = arrival[j]
                    break
        np.testing.assert_array_equal(raw_available_t_s(arrival, contiguous), want)


def test_settle_index_waits_for_enough_good_ticks() -> None:
    cfg = BaselineConfig()  # 180 s, 60 % good → 108 good ticks
    t = np.arange(1, 301, dtype=float)
    good = np.ones(300, dtype=bool)
    assert settle_index(t, good, cfg, None) == 179  # the tick at t = 180 s
    good[:100] = False  # only 80 good by 180 s; the 108th good tick is t = 208 s
    assert settle_index(t, good, cfg, None) == 207
    stored = Baseline(70.0, 2.0, 3.5, 0.2, 180, source="stored")
    assert settle_index(t, good, cfg, stored) == 100  # first good tick


def test_quality_changes_carry_state_over_gaps() -> None:
    # codes: 0 no data, 1 ok, 2 low
    codes = np.array([0, 2, 2, 1, 0, 1, 2, 0, 2, 1])
    low, ok = quality_changes(codes)
    np.testing.assert_array_equal(low, [1, 6])  # at 8 it was already low before the gap
    np.testing.assert_array_equal(ok, [3, 9])


def test_stored_baseline_settles_at_once_and_is_used() -> None:
    header, records = read_records(FIXTURES / "sim_divergence.jsonl.gz")
    stored = {p: Baseline(75.0, 1.0, 3.4, 0.1, 180, source="stored") for p in "ab"}
    analysis = analyze_records(header, records, baselines=stored)
    settled = [e for e in analysis.events if e.kind == "settled"]
    # The first tick with a usable signal: HR10 from >= 3 beats, no gap over 3 s.
    first_good = [float(analysis.tick_t_s[np.argmax(analysis.partners[p].ticks.quality_ok)]) for p in "ab"]
    assert [e.t_s for e in settled] == first_good and max(first_good) < 10
    assert all(e.data["baseline"]["source"] == "stored" for e in settled)
    a = analysis.partners["a"]
    i = 500
    assert a.delta_bpm[i] == a.ticks.metrics.hr10_bpm[i] - 75.0
    assert a.activation_sd[i] == a.delta_bpm[i] / 2.0  # SD 1 bpm is below the 2 bpm floor


def test_single_partner_recording_has_metrics_but_no_dyad() -> None:
    header, records = read_records(FIXTURES / "polar_h10_pvc.jsonl")
    analysis = analyze_records(header, records)
    assert list(analysis.partners) == ["a"]
    assert np.isnan(analysis.linkage_r).all()
    hr = analysis.partners["a"].ticks.metrics.hr10_bpm
    assert 60 < np.nanmedian(hr) < 100


def test_linkage_is_known_wherever_both_straps_give_beats() -> None:
    # The windows end delay_s before their tick, when their beats are final: every tick
    # after the first window has a linkage, but for the seconds a strap is away.
    cfg = Config()
    lk = cfg.linkage
    first = lk.delay_s + lk.window_s + lk.max_lag_s  # the first tick with a full window at every lag
    for name, least in (("sim_calm", 1.0), ("sim_divergence", 1.0), ("sim_disconnect", 0.9), ("sim_artifacts", 0.9)):
        header, records = read_records(FIXTURES / f"{name}.jsonl.gz")
        analysis = analyze_records(header, records, cfg)
        known = np.isfinite(analysis.linkage_r)
        assert not known[analysis.tick_t_s < first].any()
        share = known[analysis.tick_t_s >= first].mean()
        assert share >= least, (name, share)
        # with no delay, a sample's newest known beat is often older than max_hold_s
        if name == "sim_calm":
            undelayed = analyze_records(header, records, replace(cfg, linkage=LinkageConfig(delay_s=0)))
            assert np.isfinite(undelayed.linkage_r).mean() < 0.2


def test_scan_records_splits_as_split_by_partner() -> None:
    from devices.records import Annotation, Notification, StatusChange
    from monitor.beats_batch import split_by_partner
    from monitor.pipeline import scan_records

    _, records = read_records(FIXTURES / "polar_h10_pvc.jsonl")
    records = [
        *records[:5],
        StatusChange(records[4].t_s, "a", "disconnected"),
        Annotation(records[5].t_s, "mark"),
        *records[5:],
        Notification(records[-1].t_s + 9.5, "c", b"\x10\x46"),  # nobody's partner: counts for the end
    ]
    streams, others, latest = scan_records(records, ("a", "b"))
    want = split_by_partner(records, ("a", "b"))
    for p in ("a", "b"):
        assert streams[p].t_s.dtype == np.float64
        assert streams[p].t_s.tolist() == want[p].t_s
        assert streams[p].payloads == want[p].payloads
        assert streams[p].status_before == want[p].status_before
    assert [type(r).__name__ for r in others] == ["StatusChange", "Annotation"]
    assert latest == records[-1].t_s
    assert scan_records([], ("a", "b"))[2] == 0.0
