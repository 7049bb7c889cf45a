"""Beat timing from notifications: hand-worked chains, the real Polar H10 recording,
and live (one record at a time) against batch on every prefix."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hrs import encode_hrm
from devices.records import Annotation, Notification, StatusChange
from monitor.beats import (
    BeatSeries,
    BeatTimer,
    BeatTimingConfig,
    beats_by_partner,
    beats_from_notifications,
)

_REPO_COPY = Path(__file__).resolve().parents[2] / "fixtures" / "polar_h10_pvc.jsonl"
POLAR = _REPO_COPY if _REPO_COPY.exists() else Path("/work/shared/data/polar_h10_pvc.jsonl")
CFG = BeatTimingConfig()


def note(t_s: float, *rr_units: int, partner: str = "a") -> Notification:
    return Notification(t_s, partner, encode_hrm(60, rr_units))


def run(records, cfg: BeatTimingConfig = CFG) -> BeatSeries:
    return beats_from_notifications(records, "a", cfg)


def polar_notifications() -> list[Notification]:
    records = []
    with POLAR.open(encoding="utf-8") as lines:
        next(lines)  # header
        for line in lines:
            obj = json.loads(line)
            records.append(Notification(obj["t"], obj["partner"], bytes.fromhex(obj["hrm"])))
    return records


def test_first_notification_ends_at_its_arrival():
    s = run([note(10.0, 512, 1024)])
    np.testing.assert_array_equal(s.t_s, [9.0, 10.0])
    np.testing.assert_array_equal(s.rr_units, [512, 1024])
    np.testing.assert_array_equal(s.contiguous, [False, True])
    np.testing.assert_array_equal(s.rr_ms, [500.0, 1000.0])


def test_arrival_jitter_does_not_move_the_chain():
    # Beats every 1 s; arrivals early and late by up to 0.25 s.
    s = run([note(10.0, 1024), note(11.1, 1024), note(11.75, 1024), note(13.25, 1024)])
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 12.0, 13.0])
    np.testing.assert_array_equal(s.contiguous, [False, True, True, True])


def test_chain_ahead_of_arrival_is_reanchored_without_losing_contiguity():
    # The chain puts the third beat at 12.0 but it arrived at 11.6: 0.4 s > 0.3 s ahead.
    timer = BeatTimer("a")
    for r in [note(10.0, 1024), note(11.0, 1024), note(11.6, 1024), note(12.6, 1024)]:
        timer.feed(r)
    s = timer.series()
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 11.6, 12.6])
    np.testing.assert_array_equal(s.contiguous, [False, True, True, True])
    assert timer.reanchor_count == 2


def test_chain_far_behind_arrivals_means_lost_beats():
    # Intervals of 0.5 s reported every 1.0 s: the chain falls 0.5 s further behind
    # at each notification and is re-anchored once it is more than 2.5 s behind.
    records = [note(10.0 + k, 512) for k in range(8)]
    s = run(records)
    # drift at notification k (k >= 1, before re-anchoring) is -0.5 * k
    np.testing.assert_array_equal(s.t_s, [10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 16.0, 16.5])
    np.testing.assert_array_equal(s.contiguous, [False] + [True] * 5 + [False, True])


def test_gap_restarts_the_chain_and_breaks_contiguity():
    records = [note(10.0, 1024), note(11.0, 1024), note(14.5, 1024, 1024), note(15.5, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 13.5, 14.5, 15.5])
    np.testing.assert_array_equal(s.contiguous, [False, True, False, True, True])


def test_gap_limit_is_configurable():
    records = [note(10.0, 1024), note(11.0, 1024), note(13.0, 1024)]
    assert run(records).contiguous.tolist() == [False, True, True]
    tight = BeatTimingConfig(max_gap_s=1.5)
    assert run(records, tight).contiguous.tolist() == [False, True, False]


def test_empty_notifications_do_not_hide_a_gap():
    # Notifications kept coming but carried no beat for 4 s.
    records = [note(10.0, 1024), note(11.0), note(12.0), note(13.0), note(14.0), note(15.0, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 15.0])
    np.testing.assert_array_equal(s.contiguous, [False, False])


@pytest.mark.parametrize("status", ["disconnected", "connected"])
def test_connection_change_breaks_the_chain(status):
    records = [note(10.0, 1024), StatusChange(10.5, "a", status), note(11.2, 1024), note(12.2, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.2, 12.2])
    np.testing.assert_array_equal(s.contiguous, [False, False, True])


def test_other_partner_and_annotations_are_ignored():
    records = [
        note(10.0, 1024),
        note(10.3, 700, partner="b"),
        StatusChange(10.4, "b", "disconnected"),
        Annotation(10.5, "pursuit starts", "practitioner"),
        note(11.0, 1024),
    ]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0])
    np.testing.assert_array_equal(s.contiguous, [False, True])
    assert len(beats_from_notifications(records, "b")) == 1
    both = beats_by_partner(records)
    assert both["a"].t_s.tolist() == [10.0, 11.0] and both["b"].rr_units.tolist() == [700]


def test_malformed_payloads_are_counted_and_skipped():
    records = [
        note(10.0, 1024),
        Notification(11.0, "a", b""),  # no flags byte
        Notification(11.1, "a", bytes([0x10, 60, 0x00])),  # odd RR byte
        Notification(11.2, "a", bytes([0x00, 0])),  # HR 0 and no RR
        note(12.0, 1024),
        note(13.0, 1024),
        Notification(14.0, "a", encode_hrm(60, [0, 1024])),  # RR of 0
        note(15.0, 1024),
    ]
    s = run(records)
    assert dict(s.malformed) == {"truncated": 1, "odd_rr_bytes": 1, "hr_zero_no_rr": 1, "rr_zero": 1}
    np.testing.assert_array_equal(s.t_s, [10.0, 12.0, 13.0, 14.0, 15.0])
    np.testing.assert_array_equal(s.rr_units, [1024] * 5)
    # a lost notification breaks the chain; a dropped zero spoils the differences
    # next to it, i.e. the beat that came with it
    np.testing.assert_array_equal(s.contiguous, [False, False, True, False, True])


def test_reanchor_never_puts_a_beat_before_the_previous_one():
    # Chain says 13.0 (two 1-s beats after 11.0), arrival 11.5: the re-anchored
    # first beat would fall at 10.5, before the beat at 11.0.
    s = run([note(10.0, 1024), note(11.0, 1024), note(11.5, 1024, 1024)])
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 11.0, 11.5])
    assert np.all(np.diff(s.t_s) >= 0)


def test_real_polar_recording():
    records = polar_notifications()
    s = run(records)
    assert len(s) == 798
    # Every RR value exactly as sent: flags 0x10, uint8 HR, then uint16 LE values.
    sent = [
        int.from_bytes(r.payload[i : i + 2], "little")
        for r in records
        for i in range(2, len(r.payload), 2)
    ]
    assert s.rr_units.dtype == np.int64
    np.testing.assert_array_equal(s.rr_units, sent)
    assert np.all(np.diff(s.t_s) >= 0)
    # No gap in this recording: only the first beat lacks a predecessor.
    assert s.contiguous.tolist() == [False] + [True] * 797
    # The chain absorbs arrival jitter: successive beat times differ by the RR
    # itself, except where the chain was re-anchored (here once, about 70 s in).
    steps = np.diff(s.t_s) - s.rr_units[1:] / 1024
    assert np.count_nonzero(np.abs(steps) > 1e-9) == 1
    # Each notification's beats end within the drift band around its arrival, and
    # the earlier ones precede the last by exactly the RR values in between.
    k = 0
    for r in records:
        n = (len(r.payload) - 2) // 2
        if not n:
            continue
        t, rr = s.t_s[k : k + n], s.rr_units[k : k + n]
        assert r.t_s - CFG.max_behind_s <= t[-1] <= r.t_s + CFG.max_ahead_s
        np.testing.assert_allclose(t[-1] - t, (np.cumsum(rr[::-1])[::-1] - rr) / 1024, atol=1e-9)
        k += n
    assert k == 798


@st.composite
def record_streams(draw):
    records, t = [], 0.0
    for _ in range(draw(st.integers(0, 30))):
        t = round(t + draw(st.floats(0.0, 4.0)), 4)
        kind = draw(st.sampled_from(["hrm"] * 6 + ["status", "bad", "zero", "other"]))
        rr = draw(st.lists(st.integers(250, 2100), min_size=0, max_size=4))
        if kind == "hrm":
            records.append(note(t, *rr))
        elif kind == "status":
            records.append(StatusChange(t, "a", draw(st.sampled_from(["connected", "disconnected"]))))
        elif kind == "bad":
            records.append(Notification(t, "a", bytes([0x10, 70, 1])))
        elif kind == "zero":
            records.append(Notification(t, "a", encode_hrm(70, rr + [0])))
        else:
            records.append(note(t, *rr, partner="b"))
    return records


def assert_same(x: BeatSeries, y: BeatSeries) -> None:
    assert x.t_s.view(np.int64).tolist() == y.t_s.view(np.int64).tolist()
    assert x.rr_units.tolist() == y.rr_units.tolist()
    assert x.contiguous.tolist() == y.contiguous.tolist()
    assert dict(x.malformed) == dict(y.malformed)


@settings(max_examples=60, deadline=None)
@given(record_streams())
def test_live_equals_batch_on_every_prefix(records):
    timer = BeatTimer("a")
    fed = []
    for k, record in enumerate(records, start=1):
        fed.append(timer.feed(record))
        assert_same(timer.series(), run(records[:k]))
    whole = run(records)
    assert whole.t_s.tolist() == [t for chunk in fed for t in chunk.t_s.tolist()]
    assert np.all(np.diff(whole.t_s) >= 0)
    assert np.all(whole.rr_units >= 250)


@settings(max_examples=60, deadline=None)
@given(record_streams())
def test_last_beat_of_each_notification_stays_in_the_drift_band(records):
    timer = BeatTimer("a")
    for record in records:
        new = timer.feed(record)
        if len(new):
            assert record.t_s - CFG.max_behind_s <= new.t_s[-1] <= record.t_s + CFG.max_ahead_s
